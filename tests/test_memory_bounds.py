"""Memory is bounded by a command's options, not by the longest line of its input (issue 18.5):
each command runs in a subprocess whose address space is capped, on a file with one line of
about a megabyte (250,000 words) for the sentence tasks, or 200,000 characters for the language
model, whose scoring steps through every character (e3e6a35, before the bound, ran out of memory
under the cap at that length already)."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys

import pytest

CAP = 3 << 30  # bytes of address space: NumPy, OpenBLAS and the model fit well inside
WORDS = "good bad film plot great boring witty dull moving long".split()
SMALL = ["--hidden", "8", "--embedding", "8", "--char-hidden", "4", "--char-embedding", "4", "--batch-size", "8",
         "--max-steps", "3", "-q"]


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def charlm(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "CHARLM_MODEL"}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "charlm", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=_capped)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    r = random.Random(0)

    def words(n):
        return " ".join(r.choice(WORDS) for _ in range(n))

    lines = [f"{'pos' if i % 2 else 'neg'}\t{words(8)}" for i in range(60)]
    lines.insert(5, f"pos\t{words(250_000)}")
    (d / "long.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentences = [[(w, "O") for w in words(6).split()] for _ in range(40)]
    sentences[3] = [(w, "B-X" if i % 7 == 0 else "O") for i, w in enumerate(words(250_000).split())]
    (d / "long.conll").write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n",
                                  encoding="utf-8")
    (d / "long.txt").write_text("the cat sat on the mat\n" * 50 + "a" * 200_000 + "\n", encoding="utf-8")
    return d


def test_a_classifier_trains_and_classifies_a_megabyte_line_in_bounded_memory(files):
    r = charlm("train", "--task", "classify", "long.tsv", "-o", "clf.npz", *SMALL[:-1], cwd=files)
    assert r.returncode == 0, r.stderr
    assert "1 example(s) longer than --max-length 512 words: their first 512 words are used" in r.stderr
    r = charlm("classify", "-m", "clf.npz", "--file", "long.tsv", cwd=files)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 61
    assert "their first 512 words" in r.stderr


def test_a_tagger_trains_and_tags_a_quarter_million_word_sentence_in_bounded_memory(files):
    r = charlm("train", "--task", "tag", "long.conll", "-o", "tag.npz", *SMALL, "--max-length", "300",
               cwd=files)
    assert r.returncode == 0, r.stderr
    r = charlm("tag", "-m", "tag.npz", "--file", "long.conll", "--conll", cwd=files)
    assert r.returncode == 0, r.stderr
    assert len([line for line in r.stdout.splitlines() if line.strip()]) == 250_000 + 39 * 6  # every token tagged


def test_a_language_model_scores_a_200k_character_line_in_bounded_memory(files):
    r = charlm("train", "long.txt", "-o", "lm.npz", "--hidden", "16", "--embedding", "8", "--max-steps", "2",
               "-q", cwd=files)
    assert r.returncode == 0, r.stderr
    r = charlm("score", "-m", "lm.npz", "--file", "long.txt", "--json", cwd=files)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 51 + 1  # 51 lines and the summary
