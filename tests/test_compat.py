"""Checkpoints written by main at 27129ab (tests/data/compat-main-*, made by tests/data/make_compat.py)
still load, predict what they predicted then, show in `charlm info`, and resume to where the run that
was never interrupted ended. (The 0.1.0 files are tested in test_train.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import charlm
from charlm.checkpoint import load_checkpoint
from charlm.tasks import OPTIONS

DATA = Path(__file__).parent / "data"
RECORD = json.loads((DATA / "compat-main.json").read_text(encoding="utf-8"))
TASKS = {"lm": charlm.LM, "tag": charlm.Tagger, "classify": charlm.Classifier}
DATA_FILES = {"corpus.txt": "compat-corpus.txt", "ner.txt": "compat-ner.txt", "reviews.tsv": "compat-reviews.tsv"}


def _close(got, want):
    """Same structure; numbers equal to float32 precision (the models compute in float32)."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            _close(g, w)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (got, want)
        for k in want:
            _close(got[k], want[k])
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    else:
        assert got == want


def _predictions(model) -> dict:
    """As make_compat.predictions (kept apart: the fixture script is the record, this is the check)."""
    if isinstance(model, charlm.LM):
        return {"score": [[s.logprob, s.per_token] for s in model.score(RECORD["sentences"])],
                "next": [[t, p] for t, p in model.next_tokens(RECORD["prefix"], k=5)]}
    if isinstance(model, charlm.Tagger):
        return {"tag": [[t.tags, t.probs] for t in model.tag(RECORD["tag"])]}
    return {"classify": [c.probs for c in model.classify(RECORD["classify"], top_k=None)]}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("kind", ["best", "last"])
def test_todays_files_load_and_predict_as_they_did(task, kind):
    run = RECORD["runs"][task]
    model = charlm.load(DATA / run["files"][kind])
    assert type(model) is TASKS[task]
    _close(_predictions(model), run[kind])


@pytest.mark.parametrize("task", list(TASKS))
def test_todays_files_show_in_info(run, task):
    files = RECORD["runs"][task]["files"]
    for kind in ("best", "last"):
        r = run("info", DATA / files[kind], "--json")
        assert r.exit_code == 0, r.output
        info = json.loads(r.stdout)
        assert info["task"] == task and info["kind"] == kind
        assert info["training"]["step"] == RECORD["stop"] if kind == "last" else info["training"]["step"] <= RECORD["stop"]


@pytest.mark.parametrize("task", list(TASKS))
def test_todays_last_files_resume_where_the_straight_run_ended(task, tmp_path, monkeypatch):
    """Resuming the .last file (step STOP) to step END gives the parameters, optimizer state and
    training record of the run that went straight to END."""
    entry = RECORD["runs"][task]
    monkeypatch.chdir(tmp_path)
    for name, fixture in DATA_FILES.items():
        shutil.copy(DATA / fixture, name)
    shutil.copy(DATA / entry["files"]["last"], f"{task}.last.npz")
    resumed = charlm.train(entry["corpus"], output=f"{task}.npz", max_steps=RECORD["end"], resume=True)
    assert type(resumed) is TASKS[task]
    straight = DATA / f"compat-main-{task}-straight.last.npz"
    (got, a), (want, b) = load_checkpoint(tmp_path / f"{task}.last.npz"), load_checkpoint(straight)
    assert got.keys() == want.keys() and any(k.startswith("optim/") for k in got)
    for k in want:  # parameters, optimizer slots, carried state: one version resumes bit for bit,
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)  # 1e-6: another BLAS
    a, b = a["train"], b["train"]
    assert a["step"] == b["step"] == RECORD["end"] and a["epoch"] == b["epoch"] and a["position"] == b["position"]
    # the same options; the model settings may now list the task's defaults too (main listed those given)
    (oa, ma), (ob, mb) = [({k: v for k, v in o.items() if k != "model"}, o["model"]) for o in (a["options"], b["options"])]
    # options added since (none, or --max-length of the sentence tasks) hold their declared defaults
    added = {k: oa[k] for k in set(oa) - set(ob)}
    assert all(v is None or v == o.default for o in OPTIONS for k, v in added.items() if o.name == k), added
    assert oa == dict(ob, output=oa["output"], **added) and ma.items() >= mb.items()
    every = entry["options"]["eval_every"]  # the interrupted run also evaluated when it stopped
    assert [m["val_loss"] for m in a["metrics"] if m["step"] % every == 0] == \
        pytest.approx([m["val_loss"] for m in b["metrics"] if m["step"] % every == 0], rel=1e-6)


def test_todays_files_work_with_their_commands(stdout_of):
    runs = RECORD["runs"]
    lm, tag, cls = (DATA / runs[t]["files"]["best"] for t in ("lm", "tag", "classify"))
    scored = [json.loads(line) for line in stdout_of("score", "-m", lm, "--json", *RECORD["sentences"]).splitlines()]
    _close([[s["logprob"]] for s in scored], [[lp] for lp, _ in runs["lm"]["best"]["score"]])
    tagged = [json.loads(line) for line in stdout_of("tag", "-m", tag, "--json", RECORD["tag"][0]).splitlines()]
    want_tags, want_probs = runs["tag"]["best"]["tag"][0]
    assert tagged[0]["tags"] == want_tags and tagged[0]["probs"] == pytest.approx(want_probs, abs=2e-6)
    labels = len(runs["classify"]["best"]["classify"][0])
    out = stdout_of("classify", "-m", cls, "--json", "--top-k", labels, *RECORD["classify"])
    got = [json.loads(line)["probs"] for line in out.splitlines()]
    assert [list(g) for g in got] == [list(w) for w in runs["classify"]["best"]["classify"]]
    for g, w in zip(got, runs["classify"]["best"]["classify"]):
        assert list(g.values()) == pytest.approx(list(w.values()), abs=2e-6)  # printed to 6 places
