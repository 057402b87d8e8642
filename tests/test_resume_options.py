"""`--resume` continues exactly the run it was pointed at (issue 18, "work lost"): it writes to the
-o it was given and nowhere else (18.1, 18.21), keeps the run's metrics log (18.3), and refuses
options that would change the model, the data or the task (18.4)."""

from __future__ import annotations

import json
import shutil

import pytest

import charlm
from tasksdata import column_text, ner_sentences

TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "-q"]
TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog ran far away\n" * 6


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _one_error(result, code, *needles):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charlm: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _step(path) -> int:
    return charlm.load(path).info()["training"]["step"]


def test_resuming_a_copy_writes_to_the_copy_only(run, corpus, tmp_path):
    orig = tmp_path / "orig.npz"
    _ok(run("train", corpus, "-o", orig, *TINY, "--max-steps", "4", "--eval-every", "2"))
    before = {p: p.read_bytes() for p in (orig, tmp_path / "orig.last.npz")}
    shutil.copy(tmp_path / "orig.last.npz", tmp_path / "branch.last.npz")
    r = _ok(run("train", corpus, "-o", tmp_path / "branch.npz", *TINY[:-1], "--max-steps", "6", "--resume"))
    assert all(p.read_bytes() == b for p, b in before.items()), "the original run was written over"
    assert _step(tmp_path / "branch.last.npz") == 6 and (tmp_path / "branch.npz").exists()
    assert "branch.npz" in r.stderr.strip().splitlines()[-1] and "orig.npz" not in r.stderr


def test_resuming_from_another_folder_writes_where_the_run_is(run, corpus, tmp_path, monkeypatch):
    (tmp_path / "c").mkdir()
    monkeypatch.chdir(tmp_path / "c")
    _ok(run("train", corpus, "-o", "x.npz", *TINY, "--max-steps", "2"))
    monkeypatch.chdir(tmp_path)
    _ok(run("train", corpus, "-o", "c/x.npz", *TINY, "--max-steps", "4", "--resume"))
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.last.npz").exists()
    assert _step(tmp_path / "c" / "x.last.npz") == 4
    # a refusal names the file the user typed (18.21)
    _one_error(run("train", corpus, "-o", "c/x.npz", *TINY, "--hidden", "9", "--resume"), 2, "c/x.last.npz")


def test_a_tagger_copy_resumes_as_a_tagger_without_task(run, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text(column_text(ner_sentences(40)), encoding="utf-8")
    opts = ["--hidden", "6", "--embedding", "5", "--char-hidden", "3", "--char-embedding", "3", "--batch-size", "8",
            "-q"]
    _ok(run("train", "--task", "tag", train, "-o", tmp_path / "ner.npz", *opts, "--max-steps", "3"))
    shutil.copy(tmp_path / "ner.last.npz", tmp_path / "b.last.npz")
    before = (tmp_path / "ner.last.npz").read_bytes()
    _ok(run("train", train, "-o", tmp_path / "b.npz", "--max-steps", "5", "--resume", "-q"))
    assert (tmp_path / "ner.last.npz").read_bytes() == before
    assert _step(tmp_path / "b.last.npz") == 5
    assert charlm.load(tmp_path / "b.npz").info()["task"] == "tag"
    # a model or task option that differs from the run's is refused, naming it (18.4)
    _one_error(run("train", train, "-o", tmp_path / "b.npz", "--task", "lm", "--resume"), 2, "--task")
    _one_error(run("train", train, "-o", tmp_path / "b.npz", "--hidden", "64", "--resume"), 2, "--hidden 64", "6")


@pytest.mark.parametrize("args,needle", [
    (["--hidden", "64"], "--hidden 64"),
    (["--cell", "lstm"], "--cell lstm"),
    (["--lr", "0.01"], "--lr 0.01"),
    (["--level", "word"], "--level word"),
    (["--seed", "3"], "--seed 3"),
    (["--batch-size", "4"], "--batch-size 4"),
])
def test_resume_refuses_options_that_change_the_run(run, corpus, tmp_path, args, needle):
    out = tmp_path / "m.npz"
    _ok(run("train", corpus, "-o", out, *TINY, "--max-steps", "2"))
    before = (tmp_path / "m.last.npz").read_bytes()
    line = _one_error(run("train", corpus, "-o", out, *args, "--resume"), 2, needle, "--max-steps", "--epochs")
    assert "-q" not in line
    assert (tmp_path / "m.last.npz").read_bytes() == before


def test_resume_accepts_the_runs_own_values_and_applies_the_per_invocation_ones(run, corpus, tmp_path):
    out = tmp_path / "m.npz"
    _ok(run("train", corpus, "-o", out, *TINY, "--max-steps", "2", "--epochs", "3"))
    r = _ok(run("train", corpus, "-o", out, *TINY[:-1], "--max-steps", "4", "--resume"))  # same sizes: fine
    assert "resuming with --max-steps 4 (the run had 2)" in r.stderr
    assert _step(tmp_path / "m.last.npz") == 4
    # options not given keep the run's own values: --epochs 3, not the default 20
    last = charlm.load(tmp_path / "m.last.npz").info()
    assert last["training"]["options"]["epochs"] == 3


def test_the_metrics_log_continues_after_a_resume(run, corpus, tmp_path):
    out, log = tmp_path / "m.npz", tmp_path / "log.jsonl"
    _ok(run("train", corpus, "-o", out, *TINY, "--max-steps", "2", "--eval-every", "1", "--metrics", log))
    r = _ok(run("train", corpus, "-o", out, *TINY[:-1], "--max-steps", "4", "--eval-every", "1", "--resume"))
    assert "continuing the metrics log" in r.stderr
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    # a copy of the run elsewhere does not write into the original's log, and says so
    shutil.copy(tmp_path / "m.last.npz", tmp_path / "b.last.npz")
    r = _ok(run("train", corpus, "-o", tmp_path / "b.npz", *TINY[:-1], "--max-steps", "5", "--eval-every", "1",
                "--resume"))
    assert "--metrics" in r.stderr and len(log.read_text().splitlines()) == 4


def test_the_api_refuses_changed_options_on_resume(corpus, tmp_path):
    out = tmp_path / "m.npz"
    kw = dict(hidden=8, embedding=4, layers=1, seq_len=8, batch_size=2)
    charlm.train(corpus, output=out, max_steps=2, **kw)
    with pytest.raises(charlm.UsageError, match="--cell lstm"):
        charlm.train(corpus, output=out, resume=True, max_steps=4, cell="lstm", **kw)
    lm = charlm.train(corpus, output=out, resume=True, max_steps=4, **kw)
    assert lm.info()["training"]["step"] <= 4 and _step(tmp_path / "m.last.npz") == 4
    with pytest.raises(charlm.UsageError, match="another run"):
        charlm.train(corpus, output=out, max_steps=2, **kw)
