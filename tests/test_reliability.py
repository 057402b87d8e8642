"""Issue 18: failures found by trying the tool as a new user would — damaged files, messages,
bounds. Each test failed before its fix."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from tasksdata import classification_text, column_text, conllu_text, ner_sentences

TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "-q"]
TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog ran far away\n" * 6
SMALL_TAGGER = ["--hidden", "6", "--embedding", "5", "--char-hidden", "3", "--char-embedding", "3",
                "--batch-size", "8", "-q"]


def one_error(result, code, *needles):
    """Exit `code`, one `charlm: error:` line on stderr holding every needle, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charlm: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny language model, a tiny NER tagger and a classifier, with their data."""
    from click.testing import CliRunner

    from charlm.cli import cli

    d = tmp_path_factory.mktemp("made")
    (d / "corpus.txt").write_text(TEXT, encoding="utf-8")
    (d / "ner.txt").write_text(column_text(ner_sentences(40)), encoding="utf-8")
    (d / "pos.conllu").write_text(conllu_text(30), encoding="utf-8")
    (d / "reviews.tsv").write_text(classification_text(40), encoding="utf-8")
    runner = CliRunner()
    for args in (["train", d / "corpus.txt", "-o", d / "lm.npz", *TINY, "--max-steps", "3"],
                 ["train", "--task", "tag", d / "ner.txt", "-o", d / "ner.npz", *SMALL_TAGGER, "--max-steps", "3"],
                 ["train", "--task", "tag", d / "pos.conllu", "-o", d / "pos.npz", *SMALL_TAGGER, "--max-steps", "3"],
                 ["train", "--task", "classify", d / "reviews.tsv", "-o", d / "clf.npz", *SMALL_TAGGER,
                  "--max-steps", "3"]):
        r = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return d


# -- 16. `charlm` alone prints the help ------------------------------------------------------------

def test_charlm_alone_prints_the_help_as_click_does(run):
    r = run()
    assert r.exit_code == 2
    assert "charlm: error" not in r.stderr
    assert r.stderr.startswith("Usage: charlm") and "Commands:" in r.stderr and "\n  train" in r.stderr


def test_debug_works_after_the_command_name_too(run, tmp_path):
    with pytest.raises(Exception, match="no model at"):
        run("info", tmp_path / "none.npz", "--debug")
    one_error(run("info", tmp_path / "none.npz"), 1, "no model at")


# -- 7. a token cache with bytes overwritten is rebuilt -------------------------------------------

def test_token_cache_with_overwritten_ids_is_rebuilt(run, made, tmp_path, monkeypatch):
    from charlm.text import tokencache
    from charlm.text.tokenizer import TokenizerConfig

    monkeypatch.setattr(tokencache, "MIN_BYTES", 0)
    cache = tmp_path / "cache"
    cmd = ["train", made / "corpus.txt", "-o", tmp_path / "m.npz", *TINY[:-1], "--max-steps", "2",
           "--cache-dir", cache]
    assert run(*cmd).exit_code == 0
    files = tokencache.cache_files(made / "corpus.txt", TokenizerConfig(), cache)
    raw = bytearray(files.ids.read_bytes())
    raw[200:220] = b"\xff" * 20  # same length: the header and size checks cannot see it
    files.ids.write_bytes(bytes(raw))
    for again in (cmd + ["--force"], ["score", "-m", tmp_path / "m.npz", "--file", made / "corpus.txt",
                                      "--stream", "--cache-dir", cache]):
        files.ids.write_bytes(bytes(raw))
        r = run(*again)
        assert r.exit_code == 0 and "internal error" not in r.output, r.output
        assert "id file is damaged" in r.stderr and "tokenizing again" in r.stderr, r.stderr
    assert files.ids.read_bytes() != bytes(raw)  # rebuilt


# -- 8. every way a model file can be damaged: one line, never an internal error ---------------------

def _damaged(raw: bytes, kind: str, offset: int) -> bytes:
    if kind == "truncate":
        return raw[:offset]
    b = bytearray(raw)
    for i in range(offset, min(offset + 100, len(b))):
        b[i] = 0 if kind == "zero" else b[i] ^ 0xFF
    return bytes(b)


def _header_damage(raw: bytes) -> list[bytes]:
    """Each array's .npy header with its shape's closing parenthesis blanked: a member larger than
    zipfile's first read has its header parsed before its checksum is checked (numpy's header
    parser then failed in Python's tokenizer: 'internal error: TokenError')."""
    out = []
    for m in re.finditer(rb"'shape': \(", raw):
        j = raw.find(b")", m.end())
        out.append(raw[:j] + b" " + raw[j + 1:])
    return out


def test_damaged_model_files_give_one_clear_line(run, made, tmp_path):
    # members of tens of kB, as in a real model (a tiny one's are all read, and checked, at once)
    model = tmp_path / "m.npz"
    assert run("train", made / "corpus.txt", "-o", model, "--hidden", "64", "--embedding", "32", "--layers", "1",
               "--seq-len", "8", "--batch-size", "2", "--max-steps", "1", "-q").exit_code == 0
    raw = model.read_bytes()
    offsets = sorted(set(np.linspace(0, len(raw) - 1, 41).astype(int).tolist()) | {30, 60, 2000, len(raw) - 22})
    cases = [_damaged(raw, kind, offset) for kind in ("flip", "zero", "truncate") for offset in offsets]
    cases += _header_damage(raw)
    bad = tmp_path / "bad.npz"
    seen = 0
    for damaged in cases:
        bad.write_bytes(damaged)
        for args in (["info", bad], ["sample", "-m", bad, "--length", "5", "--seed", "1"],
                     ["score", "-m", bad, "the cat"]):
            r = run(*args)
            if r.exit_code == 0:
                continue  # bytes nothing reads (e.g. padding): the model still works
            seen += 1
            one_error(r, r.exit_code)
            assert r.exit_code == 1
            assert any(w in r.stderr for w in ("truncated or corrupt", "corrupt", "not a charlm model")), r.stderr
    assert seen > 200  # most damage is noticed


# -- 18. a forced wrong --format says the file is not in that format ---------------------------------

def test_forced_wrong_format_quotes_the_first_line_that_is_not(run, made):
    line = one_error(run("tag", "-m", made / "ner.npz", "--file", made / "ner.txt", "--format", "conllu"), 1,
                     "not in --format conllu", "line 1")
    assert "mixes formats" not in line
    line = one_error(run("classify", "-m", made / "clf.npz", "--file", made / "reviews.tsv", "--format",
                         "fasttext"), 1, "not in --format fasttext", "line 1")
    assert "mixes formats" not in line
    one_error(run("tag", "-m", made / "pos.npz", "--file", made / "pos.conllu", "--format", "columns"), 1,
              "not in --format columns")


# -- 19. an empty --val-file is named as the validation file -----------------------------------------

def test_empty_validation_file_is_named_as_such(run, made, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    one_error(run("train", made / "corpus.txt", "-o", tmp_path / "m.npz", *TINY, "--val-file", empty), 1,
              "the validation file", "empty.txt is empty")


# -- 20. plot of something that is not a run -------------------------------------------------------

@pytest.mark.parametrize("content", [b"hello\n", b"\x00\x01\x02binary", b"\xff\xfe not utf-8", None])
def test_plot_says_not_a_metrics_log_or_model_file(run, tmp_path, content):
    target = tmp_path / "bad"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    line = one_error(run("plot", target, "-o", tmp_path / "c.png"), 1, "not a metrics log or model file")
    assert "corpus" not in line


# -- 14, 15. under mpiexec ---------------------------------------------------------------------------

from test_mpi import ENV, MPIEXEC, charlm_job, needs_mpi  # noqa: E402


@needs_mpi
@pytest.mark.parametrize("args", [
    ["info", "{d}/lm.npz"],
    ["sample", "-m", "{d}/lm.npz", "--seed", "1", "--num", "3", "--length", "20"],
    ["tag", "-m", "{d}/ner.npz", "Teddy Roosevelt was there"],
    ["classify", "-m", "{d}/clf.npz", "a witty film", "a dull film"],
    ["eval", "-m", "{d}/ner.npz", "{d}/ner.txt"],
])
def test_commands_that_are_not_data_parallel_run_on_one_process_and_say_so(made, args):
    args = [a.format(d=made) for a in args]
    import subprocess
    import sys

    one = subprocess.run([sys.executable, "-m", "charlm", *args], env=ENV, capture_output=True, text=True,
                         timeout=120)
    two = charlm_job(2, *args)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout  # printed once, not once per process
    assert f"`charlm {args[0]}` runs on one process (the other process started by mpiexec has nothing to do" \
        in two.stderr


@needs_mpi
def test_processes_reading_different_corpora_of_the_same_size_are_refused(made, tmp_path):
    import subprocess

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT, encoding="utf-8")
    b.write_text(TEXT.replace("cat sat", "cta sat", 1), encoding="utf-8")  # two characters swapped
    cmd = ["-m", "charlm", "train", "-o", tmp_path / "m.npz", *TINY, "--max-steps", "2"]
    r = subprocess.run([MPIEXEC, "-n", "1", sys.executable, *map(str, cmd), a, ":",
                        "-n", "1", sys.executable, *map(str, cmd), b], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "the processes prepared different data" in r.stderr, r.stderr


# -- also found: contradicting cache options --------------------------------------------------------

def test_cache_dir_with_no_cache_is_refused(run, made, tmp_path):
    one_error(run("train", made / "corpus.txt", "-o", tmp_path / "m.npz", *TINY, "--cache-dir", tmp_path,
                  "--no-cache"), 2, "--cache-dir and --no-cache contradict each other")
    one_error(run("score", "-m", made / "lm.npz", "--file", made / "corpus.txt", "--stream", "--cache-dir", tmp_path,
                  "--no-cache"), 2, "--cache-dir and --no-cache contradict each other")


# -- 6. an absurd beam: the hint names options that go with --beam -------------------------------------

def test_an_absurd_beam_gets_a_hint_the_command_accepts(run, made):
    line = one_error(run("sample", "-m", made / "lm.npz", "--beam", "2000000000"), 1, "out of memory", "--beam")
    assert "--num" not in line


# -- 10, 11. info of a .last file: epochs as training printed them, the best model's own figures -------

def test_info_of_last_files_counts_epochs_and_shows_the_best(run, made, tmp_path):
    import charlm

    for args, out in ((["train", made / "corpus.txt", *TINY, "--max-steps", "7"], "lm"),
                      (["train", "--task", "tag", made / "ner.txt", *SMALL_TAGGER, "--max-steps", "3"], "tag"),
                      (["train", "--task", "classify", made / "reviews.tsv", *SMALL_TAGGER, "--max-steps", "2"],
                       "classify")):
        path = tmp_path / f"{out}.npz"
        r = run(*args, "-o", path, "--metrics", tmp_path / f"{out}.jsonl")
        assert r.exit_code == 0, r.output
        printed = [__import__("json").loads(line) for line in (tmp_path / f"{out}.jsonl").read_text().splitlines()]
        info = charlm.load(tmp_path / f"{out}.last.npz").info()
        assert info["run"]["epochs_done"] == pytest.approx(printed[-1]["epoch"])  # 42.24 of 20 before
        text = run("info", tmp_path / f"{out}.last.npz").stdout
        best = next(line for line in text.splitlines() if line.startswith("evaluations:"))
        assert f"best at step {info['run']['best_step']}: " in best and ": -;" not in best, best  # "-" before


# -- 12. a validation file with no tag the model knows: no loss, not 0.0000 -------------------------------

def test_validation_without_a_known_tag_has_no_loss(run, made, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("Paris X-NEW\nis X-NEW\n\nBerlin X-NEW\n", encoding="utf-8")
    r = run("train", "--task", "tag", made / "ner.txt", "-o", tmp_path / "t.npz", *SMALL_TAGGER[:-1],
            "--max-steps", "2", "--eval-every", "1", "--val-file", other)
    assert r.exit_code == 0, r.output
    assert "val 0.0000" not in r.stderr and "best validation loss 0.0000" not in r.stderr
    assert "val n/a" in r.stderr and "best validation loss n/a" in r.stderr, r.stderr


# -- 13. a column file of another tag set is read as columns, never as text ------------------------------

def test_tagging_a_column_file_of_another_tag_set(run, made):
    r = run("tag", "-m", made / "pos.npz", "--file", made / "ner.txt")
    assert r.exit_code == 0, r.output
    assert "is a column file whose tags" in r.stderr and "are not this model's" in r.stderr
    first = r.stdout.splitlines()[0]
    assert "/O " not in first + " " and "-DOCSTART-" not in r.stdout  # gold tags are not tagged as words
    tokens = [line.split()[0] for line in (made / "ner.txt").read_text().splitlines()
              if line.strip() and not line.startswith("-DOCSTART-")]
    assert [t.rsplit("/", 1)[0] for line in r.stdout.splitlines() for t in line.split()] == tokens


# -- also found: a resumed run's notice is a note, and counts epochs as info does; a slow classifier's rate

def test_resume_notice_is_a_note_with_info_epochs(run, made, tmp_path):
    import charlm

    out = tmp_path / "m.npz"
    assert run("train", made / "corpus.txt", "-o", out, *TINY, "--max-steps", "3").exit_code == 0
    done = charlm.load(tmp_path / "m.last.npz").info()["run"]["epochs_done"]
    r = run("train", made / "corpus.txt", "-o", out, *TINY[:-1], "--max-steps", "4", "--resume")
    assert r.exit_code == 0, r.output
    line = next(line for line in r.stderr.splitlines() if "resuming from" in line)
    assert line.startswith("charlm: resuming") and "warning" not in line and f"({done:.2f} epochs done)" in line


def test_the_progress_rate_of_a_slow_run_is_not_zero():
    from charlm.engine.progress import BarReporter
    from charlm.tasks import get

    class Bar:
        def update(self, n):
            pass

        def set_postfix_str(self, text, refresh=False):
            self.text = text

    rep = BarReporter(get("classify"))
    rep.bar, rep.level = Bar(), "word"
    rep.step(5, 0.7, 1e-3, 31.4)
    assert "31 ex/s" in rep.bar.text and "0.0k" not in rep.bar.text
    rep.step(10, 0.7, 1e-3, 12_345.0)
    assert "12.3k ex/s" in rep.bar.text
