"""The Python API (`charlm.load`, `charlm.LM`, `charlm.train`): the same numbers as the commands,
the model loaded once, the task registry, the name `charlm.train`, and a typed public surface."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import api, checkpoint, tasks
import charlm
from charlm.cli import cli
from charlm.errors import CheckpointError, DataError, UsageError
from charlm.lm import scoring

from tinymodel import TEXT, build, save  # noqa: E402

TINY = dict(hidden=12, embedding=6, layers=1, seq_len=8, batch_size=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A word (lines) and a char (stream) model, and a run trained through charlm.train."""
    d = tmp_path_factory.mktemp("api")
    corpus = d / "corpus.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    out = {"dir": d, "corpus": corpus}
    for name, level, mode in (("word", "word", "lines"), ("char", "char", "stream")):
        model, vocab, _ = build(level, mode, steps=40, hidden=16, embedding=8)
        out[name] = save(d / f"{name}.npz", model, vocab)
    out["run"] = charlm.train(corpus, output=d / "run.npz", level="word", max_steps=12,
                              eval_every=4, metrics=d / "run.jsonl", **TINY)
    return out


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the same numbers as the commands ------------------------------------------------------------

SENTENCES = ["the cat sat on the mat", "the zebra sat", "a dog"]


@pytest.mark.parametrize("which", ["word", "char"])
def test_score_equals_charlm_score_json(files, stdout_of, which):
    lm = charlm.load(files[which])
    assert isinstance(lm, charlm.LM)
    got = [s.to_dict(per_token=True) for s in lm.score(SENTENCES)]
    assert got == jsonl(stdout_of("score", "-m", files[which], "--json", "--per-token", *SENTENCES))
    (one,) = lm.score("a dog")  # a lone string is one sentence (batch 1: float32 rounds apart)
    assert one.tokens == got[2]["tokens"] and one.logprob == pytest.approx(got[2]["logprob"], abs=1e-5)


def test_next_tokens_are_the_scores_per_token_probabilities(files):
    lm = charlm.load(files["word"])
    prefix = "the cat"
    n = len(lm.tokenizer.tokenize(prefix))
    got = lm.next_tokens(prefix, k=len(lm.vocab))
    assert len(got) == len(lm.vocab) and {t for t, _ in got} == set(lm.vocab.tokens)
    assert sum(p for _, p in got) == pytest.approx(1.0, abs=1e-6)
    assert [p for _, p in got] == sorted((p for _, p in got), reverse=True)
    for tok, p in got:
        if tok == "<EOS>":
            lp = lm.score(prefix)[0].per_token[-1]          # P(<EOS> | <EOS> the cat)
        elif tok == "<UNK>":
            lp = lm.score(prefix + " qwzx")[0].per_token[n]  # an unknown word is scored as <UNK>
        else:
            lp = lm.score(f"{prefix} {tok}")[0].per_token[n]
        assert p == pytest.approx(math.exp(lp), rel=1e-5), tok


def test_next_tokens_of_a_character_model(files):
    lm = charlm.load(files["char"])
    prefix = "the c"
    got = dict(lm.next_tokens(prefix, k=100))
    for tok, p in got.items():
        tokens = list(prefix) + [tok]  # "<EOS>" and "<UNK>" as tokens: no text spells them
        lp = scoring.score_token_lists(lm.network, lm.vocab, [tokens])[0].per_token[-1]
        assert p == pytest.approx(math.exp(lp), rel=1e-5), tok
    top = lm.next_tokens(prefix, k=3)
    assert len(top) == 3 and top == sorted(got.items(), key=lambda tp: -tp[1])[:3]


def test_perplexity_and_evaluate_equal_charlm_score_file(files, stdout_of, tmp_path):
    lm = charlm.load(files["word"])
    f = tmp_path / "test.txt"
    f.write_text("the cat sat on the log\n\na dog and a cat\n", encoding="utf-8")
    stream = jsonl(stdout_of("score", "-m", files["word"], "--file", f, "--stream", "--json"))[-1]
    lines = jsonl(stdout_of("score", "-m", files["word"], "--file", f, "--json"))[-1]
    assert lm.perplexity(f) == pytest.approx(stream["perplexity"], rel=1e-12)
    assert lm.perplexity(str(f)) == lm.perplexity(f.read_text(encoding="utf-8"))
    assert lm.perplexity(f, stream=False) == pytest.approx(lines["perplexity"], rel=1e-12)
    assert lm.evaluate(f).to_dict() == stream
    with open(f, encoding="utf-8") as fh:
        assert lm.perplexity(fh) == lm.perplexity(f)


def test_sample_equals_charlm_sample_json(files, stdout_of, tmp_path):
    for which in ("word", "char"):
        lm = charlm.load(files[which])
        got = [s.to_dict() for s in lm.sample(3, length=12, temperature=0.8, seed=5, prime="the")]
        assert got == jsonl(stdout_of("sample", "-m", files[which], "--json", "-n", "3", "-l", "12",
                                "-t", "0.8", "--seed", "5", "--prime", "the"))
    prime = tmp_path / "prime.txt"
    prime.write_text("the dog\na c", encoding="utf-8")
    lm = charlm.load(files["word"])
    got = [s.to_dict() for s in lm.sample(2, seed=1, prime_file=prime, stop_at=["mat", "log"])]
    assert got == jsonl(stdout_of("sample", "-m", files["word"], "--json", "-n", "2", "--seed", "1",
                            "--prime-file", prime, "--stop-at", "mat", "--stop-at", "log"))
    assert str(lm.sample(seed=1)[0]) == lm.sample(seed=1)[0].text


def test_complete_equals_charlm_sample_beam_json(files, stdout_of):
    for which in ("word", "char"):
        lm = charlm.load(files[which])
        got = [c.to_dict() for c in lm.complete("the", beam=4, nbest=3, length=20)]
        assert got == jsonl(stdout_of("sample", "-m", files[which], "--json", "--beam", "4",
                                "--nbest", "3", "-l", "20", "--prime", "the"))
        assert len(got) == 3 and all("logprob" in c for c in got)


def test_info_equals_charlm_info_json(files, stdout_of):
    d = files["dir"]
    for path in (d / "run.npz", d / "run.last.npz", files["word"]):
        assert json.loads(json.dumps(charlm.load(path).info())) == json.loads(stdout_of("info", path, "--json"))


# -- training --------------------------------------------------------------------------------

def test_train_returns_the_best_model(files):
    lm, d = files["run"], files["dir"]
    assert isinstance(lm, charlm.LM) and lm.path == str(d / "run.npz")
    assert (d / "run.last.npz").exists() and (d / "run.jsonl").exists()
    arrays, _ = checkpoint.load_checkpoint(d / "run.npz")
    for name, value in lm.network.params.items():
        assert np.array_equal(value, arrays[f"param/{name}"])
    info = lm.info()
    assert info["training"]["options"]["seq_len"] == 8 and info["tokenizer"]["level"] == "word"
    assert info["model"]["hidden"] == 12 and info["model"]["parameters"] == lm.num_params()
    run_info = charlm.load(d / "run.last.npz").info()["run"]
    assert run_info["step"] == 12 and run_info["evaluations"] == 3
    assert run_info["resume"].endswith("--resume")


def test_train_is_quiet_unless_asked(files, tmp_path, capfd):
    kw = dict(level="char", max_steps=2, **TINY)
    charlm.train(files["corpus"], output=tmp_path / "q.npz", **kw)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    charlm.train(files["corpus"], output=tmp_path / "p.npz", progress=True, **kw)
    out, err = capfd.readouterr()
    assert out == "" and "parameters" in err and "step" in err


def _options_from_cli(monkeypatch, args) -> dict:
    """The TrainOptions `charlm train ARGS` would hand to the engine (the engine is not run)."""
    import charlm.cli.train as cli_train

    seen = {}

    def fake(opts, resume=False, reporter=None, comm=None, given=None):
        seen.update(vars(opts), resume=resume, given=sorted(given))
        raise charlm.CharlmError("stop here")

    monkeypatch.setattr(cli_train, "train", fake)
    CliRunner().invoke(cli, ["train", *map(str, args)], catch_exceptions=False)
    return seen


def _options_from_api(monkeypatch, corpus, **kw) -> dict:
    seen = {}

    def fake(opts, resume=False, reporter=None, comm=None, given=None):
        seen.update(vars(opts), resume=resume, given=sorted(given))
        raise charlm.CharlmError("stop here")

    monkeypatch.setattr(api, "_train_engine", fake)
    with pytest.raises(charlm.CharlmError, match="stop here"):
        charlm.train(corpus, **kw)
    return seen


@pytest.mark.parametrize("cli_args,api_kw", [
    ([], {}),
    (["--optimizer", "sgd"], {"optimizer": "sgd"}),
    (["--optimizer", "rmsprop", "--lr", "0.01"], {"optimizer": "rmsprop", "lr": 0.01}),
    (["--optimizer", "adagrad"], {"optimizer": "adagrad"}),
    (["--level", "word", "--mode", "stream", "--split", "whitespace", "--lowercase", "--min-count", "2",
      "--max-vocab", "50", "--cell", "gru", "--layers", "3", "--hidden", "32", "--embedding", "32",
      "--dropout", "0.3", "--tie-weights", "--seq-len", "7", "--batch-size", "5", "--clip", "0",
      "--epochs", "4", "--max-steps", "9", "--time-limit", "60", "--val-fraction", "0.2",
      "--eval-every", "3", "--patience", "2", "--seed", "7", "--resume", "-o", "x.npz",
      "--metrics", "m.jsonl", "--val-file", "v.txt", "--force", "--val-tokens", "99", "--cache-dir", "cd"],
     {"level": "word", "mode": "stream", "split": "whitespace", "lowercase": True, "min_count": 2,
      "max_vocab": 50, "cell": "gru", "layers": 3, "hidden": 32, "embedding": 32, "dropout": 0.3,
      "tie_weights": True, "seq_len": 7, "batch_size": 5, "clip": 0.0, "epochs": 4, "max_steps": 9,
      "time_limit": 60.0, "val_fraction": 0.2, "eval_every": 3, "patience": 2, "seed": 7,
      "resume": True, "output": "x.npz", "metrics": "m.jsonl", "val_file": "v.txt", "force": True,
      "val_tokens": 99, "cache_dir": "cd"}),
    (["--no-cache"], {"no_cache": True}),
    (["--cell", "rnn", "--activation", "relu", "--graphemes", "--vocab", "v.json"],
     {"cell": "rnn", "activation": "relu", "graphemes": True, "vocab": "v.json"}),
    (["--peephole", "--tie-weights", "--embedding", "256"],
     {"peephole": True, "tie_weights": True, "embedding": 256}),
    (["--task", "tag", "--val-file", "dev.txt", "--format", "conllu", "--tag-column", "xpos",
      "--char-embedding", "7", "--char-hidden", "0", "--no-bidirectional", "--hidden", "16"],
     {"task": "tag", "val_file": "dev.txt", "format": "conllu", "tag_column": "xpos", "char_embedding": 7,
      "char_hidden": 0, "bidirectional": False, "hidden": 16}),
    (["--task", "classify", "--pool", "mean", "--format", "fasttext", "--split", "whitespace"],
     {"task": "classify", "pool": "mean", "format": "fasttext", "split": "whitespace"}),
])
def test_train_options_are_the_command_lines(monkeypatch, tmp_path, cli_args, api_kw):
    """charlm.train(corpus, **options) hands the engine what `charlm train` does: same names,
    same defaults (the optimizer's learning rate included)."""
    corpus = str(tmp_path / "c.txt")
    want = _options_from_cli(monkeypatch, [corpus, *cli_args])
    assert want, "the command did not reach the engine"
    assert _options_from_api(monkeypatch, corpus, **api_kw) == want


def test_train_signature_covers_the_command_line():
    from charlm.cli.train import train_command

    cli_names = {p.name for p in train_command.params}
    api_names = set(inspect.signature(charlm.train).parameters)
    assert cli_names - {"quiet"} == api_names - {"progress"}


def test_train_interrupted_saves_and_raises(files, tmp_path, monkeypatch):
    def interrupted(opts, resume=False, reporter=None, given=None):
        return {"interrupted": "SIGINT", "reason": "interrupted by SIGINT", "step": 3}

    monkeypatch.setattr(api, "_train_engine", interrupted)
    with pytest.raises(KeyboardInterrupt, match="resume=True"):
        charlm.train(files["corpus"], output=tmp_path / "i.npz")


# -- loading once, the task registry ----------------------------------------------------------

def test_queries_reuse_the_loaded_model(files, monkeypatch):
    lm = charlm.load(files["word"])
    calls = []
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(tasks, "load_checkpoint", lambda *a, **k: calls.append(a))
    for s in SENTENCES:
        lm.score(s)
        lm.next_tokens(s)
    lm.sample(2, seed=0)
    lm.complete("the", beam=2)
    assert calls == []


def test_load_dispatches_on_the_task(files, tmp_path, monkeypatch):
    arrays, meta = checkpoint.load_checkpoint(files["word"])
    assert "task" not in meta and type(charlm.load(files["word"])) is charlm.LM

    class Toy(charlm.LM):
        """A model of the toy task."""

    class ToyTask(type(tasks.get("lm"))):
        name, noun, api_class = "toy", "a toy", Toy

    monkeypatch.setitem(tasks.TASKS, "toy", ToyTask())
    checkpoint.save_checkpoint(tmp_path / "toy.npz", arrays, dict(meta, task="toy"))
    toy = charlm.load(tmp_path / "toy.npz")
    assert type(toy) is Toy and toy.task == "toy" and toy.info()["task"] == "toy"
    monkeypatch.delitem(tasks.TASKS, "toy")
    with pytest.raises(CheckpointError, match="task 'toy'"):
        charlm.load(tmp_path / "toy.npz")


def test_api_errors_are_charlm_errors(files, tmp_path):
    lm = charlm.load(files["word"])
    with pytest.raises(CheckpointError):
        charlm.load(tmp_path / "missing.npz")
    with pytest.raises(UsageError):
        lm.next_tokens("the", k=0)
    with pytest.raises(UsageError):
        lm.sample(prime="the", prime_file=files["corpus"])
    with pytest.raises(UsageError):
        lm.score(["fine", 3])
    with pytest.raises(UsageError):
        lm.score("")
    with pytest.raises(DataError):
        lm.perplexity("   \n")
    with pytest.raises(UsageError):
        lm.complete("the", beam=2, nbest=3)
    with pytest.raises(UsageError):
        charlm.train(files["corpus"], output=tmp_path / "x.npz", optimizer="adamw")


# -- the name charlm.train and the public surface ----------------------------------------------

def test_charlm_train_is_the_api_and_no_module_clashes_with_it():
    """The engine's loop is charlm.engine.loop; no module charlm.train shadows the function."""
    from charlm.engine import loop
    from charlm.tasks.training import TrainOptions, train as task_train  # noqa: F401 - where they live

    assert importlib.util.find_spec("charlm.train") is None and inspect.ismodule(loop)
    assert charlm.train is api.train and inspect.isfunction(charlm.train) and task_train is not charlm.train
    assert "corpus" in inspect.signature(charlm.train).parameters


def _public_callables():
    for name in charlm.__all__:
        obj = getattr(charlm, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, Exception):
            for meth_name in vars(obj):
                attr = getattr(obj, meth_name)
                if not meth_name.startswith("_") and inspect.isroutine(attr):
                    yield f"{name}.{meth_name}", attr


def test_public_surface_is_listed_documented_and_typed():
    assert len(set(charlm.__all__)) == len(charlm.__all__)
    for name in charlm.__all__:
        obj = getattr(charlm, name)
        assert name == "__version__" or inspect.getdoc(obj), f"{name} has no docstring"
    checked = 0
    for name, fn in _public_callables():
        if name.endswith("from_checkpoint") or not inspect.isroutine(fn):
            continue
        sig = inspect.signature(fn)
        assert inspect.getdoc(fn), f"{name} has no docstring"
        for p in sig.parameters.values():
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                assert p.annotation is not p.empty, f"{name}({p.name}) is not typed"
        assert sig.return_annotation is not sig.empty, f"{name} has no return type"
        checked += 1
    assert checked >= 12  # load, train, LM.score/evaluate/perplexity/next_tokens/sample/complete, ...
    for name in ("load", "train", "LM", "Model", "SentenceScore", "Sample", "Candidate"):
        assert name in charlm.__all__


def test_a_loaded_model_prints_what_it_is(files):
    text = repr(charlm.load(files["char"]))
    assert text.startswith("LM(") and "parameters" in text and "level=char" in text
    assert Path(files["char"]).name in text
