"""The bad-input matrix: every subcommand, every kind of bad corpus, model file and option value.

Each case must end with a non-zero exit (2 for usage errors, 1 otherwise), exactly one line on
stderr that starts with "charlm: error:" and says what went wrong, and no traceback. Most cases run
in-process through click's CliRunner (fast; an uncaught exception would fail the test because
catch_exceptions=False); a few run the real console entry point in a subprocess.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import checkpoint
from charlm.text import tokencache
from charlm.cli import cli
from charlm.tasks import load as load_model

REPO = Path(__file__).resolve().parent.parent
TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "-q"]
TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog ran far away\n" * 6


# ---------------------------------------------------------------------------------- helpers

def clean_error(result, code: int, *needles: str) -> str:
    """Assert: exit `code`, one "charlm: error: ..." line on stderr, no traceback; return it."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("charlm: error: "), line
    low = line.lower()
    assert any(n.lower() in low for n in needles) if needles else True, (needles, line)
    return line


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny char-level (stream) and word-level (lines) model trained by `charlm train`."""
    d = tmp_path_factory.mktemp("models")
    corpus = d / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = {"corpus": corpus}
    for name, extra in (("char", []), ("word", ["--level", "word"])):
        r = CliRunner().invoke(cli, ["train", str(corpus), "-o", str(d / f"{name}.npz"), *TINY,
                                     "--max-steps", "3", *extra], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        out[name] = d / f"{name}.npz"
    return out


def write_npz(path: Path, members: dict, allow_pickle: bool = False) -> Path:
    """A .npz written member by member (so tests can put in what save_checkpoint refuses)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in members.items():
            with zf.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=allow_pickle)
    return path


def meta_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


class _RunsCode:
    """Unpickling this creates MARKER: proof that code from the file was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# -------------------------------------------------------------------- bad corpora x commands

def _unreadable(p: Path, monkeypatch) -> Path:
    """A file the process may not read: chmod 000, and (root ignores modes) open() refuses it."""
    p.write_text("some text\n")
    p.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def guarded(file, *a, **k):
            if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)) == str(p):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real_open(file, *a, **k)

        monkeypatch.setattr(builtins, "open", guarded)
    return p


BAD_CORPORA = {
    # name: (make(path, monkeypatch) -> path, words expected in the message)
    "missing": (lambda p, mp: p, ("no such file",)),
    "directory": (lambda p, mp: (p.mkdir(), p)[1], ("directory",)),
    "unreadable": (_unreadable, ("permission denied", "cannot read")),
    "empty": (lambda p, mp: (p.write_bytes(b""), p)[1], ("empty", "nothing")),
    "whitespace-only": (lambda p, mp: (p.write_bytes(b" \n\t\n\r\n  \n"), p)[1], ("empty", "whitespace", "nothing")),
    "bom-only": (lambda p, mp: (p.write_bytes(b"\xef\xbb\xbf\n"), p)[1], ("empty", "whitespace", "nothing")),
    "latin-1": (lambda p, mp: (p.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1")), p)[1], ("not utf-8",)),
    "truncated-utf8": (lambda p, mp: (p.write_bytes("the caf\u00e9".encode()[:-1]), p)[1], ("not utf-8",)),
    "nul-bytes": (lambda p, mp: (p.write_bytes(b"hello\x00\x01\x02world\n" * 10), p)[1], ("nul", "binary")),
    "binary-png": (lambda p, mp: (p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))), p)[1],
                   ("nul", "binary", "not utf-8")),
}


def _corpus_commands(models, bad: Path, tmp_path: Path):
    good = models["corpus"]
    return {
        "tokenize": ["tokenize", bad],
        "tokenize-stats": ["tokenize", "--stats", "--level", "word", bad],
        "train": ["train", bad, "-o", tmp_path / "out.npz", *TINY, "--max-steps", "2"],
        "train-val-file": ["train", good, "--val-file", bad, "-o", tmp_path / "out.npz", *TINY, "--max-steps", "2"],
        "score-file": ["score", "-m", models["char"], "-f", bad],
        "score-stream": ["score", "-m", models["word"], "-f", bad, "--stream"],
    }


@pytest.mark.parametrize("command", ["tokenize", "tokenize-stats", "train", "train-val-file", "score-file",
                                     "score-stream"])
@pytest.mark.parametrize("case", sorted(BAD_CORPORA))
def test_bad_corpus(run, models, tmp_path, monkeypatch, case, command):
    make, needles = BAD_CORPORA[case]
    bad = make(tmp_path / "bad.txt", monkeypatch)
    r = run(*_corpus_commands(models, bad, tmp_path)[command])
    clean_error(r, 1, *needles)
    assert not (tmp_path / "out.npz").exists()  # nothing written for a corpus that cannot be used


@pytest.mark.parametrize("content", [b"", b"   \n\n"])
def test_empty_stdin(run, content):
    clean_error(run("tokenize", "-", input=content), 1, "empty")


def test_not_utf8_says_where(run, tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"line one\nline two\nbad \xff here\n")
    line = clean_error(run("tokenize", p), 1, "not utf-8")
    assert "line 3" in line and "byte offset 22" in line and "iconv" in line


@pytest.mark.parametrize("text,ok", [("ab", False), ("a", False), ("abcde", True), ("hello world\n", True)])
def test_corpus_shorter_than_one_window(run, tmp_path, text, ok):
    """Shorter than --seq-len: the batch and window shrink (with a warning) or a clear error."""
    p = tmp_path / "tiny.txt"
    p.write_text(text)
    r = run("train", p, "-o", tmp_path / "m.npz", *TINY[:-1], "--max-steps", "2")
    if ok:
        assert r.exit_code == 0, r.output
        assert "corpus too small" in r.stderr and "Traceback" not in r.output
        assert (tmp_path / "m.npz").exists()
    else:
        clean_error(r, 1, "too small")


def test_sentence_argument_not_utf8_from_the_shell(models, tmp_path):
    """Bytes that are not UTF-8 in argv (surrogate-escaped by Python) neither crash nor print junk."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("CHARLM_MODEL", None)
    args = [sys.executable, "-m", "charlm", "score", "-m", str(models["char"]), os.fsdecode(b"caf\xff the")]
    r = subprocess.run(args, capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert b"Traceback" not in r.stderr
    assert r.returncode == 0, r.stderr
    assert b"oov:          1" in r.stdout


# ------------------------------------------------------------------------ bad model files

def _good(models):
    arrays, meta = checkpoint.load_checkpoint(models["char"])
    return arrays, meta


def _with(models, path, change):
    arrays, meta = _good(models)
    arrays = dict(arrays)
    change(arrays, meta)
    return write_npz(path, {"__meta__": meta_array(meta), **arrays})


def _bad_model(kind: str, models, d: Path, monkeypatch) -> Path:
    p = d / "bad.npz"
    raw = Path(models["char"]).read_bytes()
    if kind == "missing":
        return p
    if kind == "directory":
        p.mkdir()
    elif kind == "text-file":
        p.write_text("the cat sat on the mat\n")
    elif kind == "empty-file":
        p.write_bytes(b"")
    elif kind == "unreadable":
        _unreadable(p, monkeypatch)
    elif kind in ("truncated-half", "truncated-tail", "truncated-header"):
        cut = {"truncated-half": len(raw) // 2, "truncated-tail": len(raw) - 10, "truncated-header": 30}[kind]
        p.write_bytes(raw[:cut])
    elif kind == "npy-not-npz":
        np.save(p.with_suffix(".npy"), np.zeros(3))
        p.with_suffix(".npy").rename(p)
    elif kind == "zip-not-npz":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("readme.txt", "hello")
    elif kind == "no-meta":
        arrays, _ = _good(models)
        write_npz(p, arrays)
    elif kind == "meta-not-json":
        arrays, _ = _good(models)
        write_npz(p, {"__meta__": np.frombuffer(b"{not json", dtype=np.uint8), **arrays})
    elif kind == "wrong-format":
        _with(models, p, lambda a, m: m.update(format="something-else"))
    elif kind == "newer-version":
        _with(models, p, lambda a, m: m.update(format_version=checkpoint.FORMAT_VERSION + 1))
    elif kind == "no-model-settings":
        _with(models, p, lambda a, m: m.pop("model"))
    elif kind == "bad-model-settings":
        _with(models, p, lambda a, m: m["model"].update(cell="transformer"))
    elif kind == "absurd-model-settings":
        _with(models, p, lambda a, m: m["model"].update(hidden=10**12))
    elif kind == "bad-vocab":
        _with(models, p, lambda a, m: m["vocab"].update(tokens=["x", "y"]))
    elif kind == "vocab-size-mismatch":
        _with(models, p, lambda a, m: m["vocab"].update(tokens=m["vocab"]["tokens"][:-1],
                                                        counts=m["vocab"]["counts"][:-1]))
    elif kind == "array-shape-mismatch":
        _with(models, p, lambda a, m: a.update({"param/out.b": np.zeros(3, np.float32)}))
    elif kind == "array-missing":
        _with(models, p, lambda a, m: a.pop("param/out.W"))
    elif kind == "array-extra":
        _with(models, p, lambda a, m: a.update({"param/rnn.7.W": np.zeros((2, 2), np.float32)}))
    elif kind == "array-int-dtype":
        _with(models, p, lambda a, m: a.update({"param/out.b": a["param/out.b"].astype(np.int32)}))
    elif kind == "nan-weights":
        def nan(a, m):
            w = a["param/embed.W"].copy()
            w[1, 1] = np.nan
            a["param/embed.W"] = w
        _with(models, p, nan)
    elif kind == "inf-weights":
        _with(models, p, lambda a, m: a.update({"param/out.b": np.full_like(a["param/out.b"], np.inf)}))
    elif kind == "absurd-array-header":
        # a member whose .npy header claims 2**50 float64 values (8 PiB) but holds none
        arrays, meta = _good(models)
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("__meta__.npy", _npy_bytes(meta_array(meta)))
            hdr = {"descr": "<f8", "fortran_order": False, "shape": (2 ** 50,)}
            buf = __import__("io").BytesIO()
            np.lib.format.write_array_header_1_0(buf, hdr)
            zf.writestr("param/embed.W.npy", np.lib.format.magic(1, 0) + buf.getvalue())
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


def _npy_bytes(arr) -> bytes:
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


BAD_MODELS = {
    "missing": ("no model", "no such"),
    "directory": ("directory", "not a file"),
    "text-file": ("not a charlm model",),
    "empty-file": ("not a charlm model", "corrupt", "truncated"),
    "unreadable": ("permission denied", "could not read"),
    "truncated-half": ("truncated", "corrupt"),
    "truncated-tail": ("truncated", "corrupt"),
    "truncated-header": ("truncated", "corrupt"),
    "npy-not-npz": ("not a charlm model",),
    "zip-not-npz": ("not a charlm model",),
    "no-meta": ("not a charlm model",),
    "meta-not-json": ("corrupt metadata",),
    "wrong-format": ("not a charlm model",),
    "newer-version": ("newer charlm", "upgrade"),
    "no-model-settings": ("no model settings",),
    "bad-model-settings": ("bad model settings",),
    "absurd-model-settings": ("does not match", "bad model settings"),
    "bad-vocab": ("bad vocabulary",),
    "vocab-size-mismatch": ("inconsistent",),
    "array-shape-mismatch": ("does not match", "shape"),
    "array-missing": ("does not match", "missing"),
    "array-extra": ("does not match", "unexpected"),
    "array-int-dtype": ("expected float",),
    "nan-weights": ("nan",),
    "inf-weights": ("inf",),
    "absurd-array-header": ("corrupt", "truncated"),
}


def _model_commands(bad: Path, corpus: Path, d: Path):
    return {
        "score": ["score", "-m", bad, "the cat"],
        "score-file": ["score", "-m", bad, "-f", corpus],
        "sample": ["sample", "-m", bad, "--length", "5"],
    }


@pytest.mark.parametrize("command", ["score", "score-file", "sample"])
@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_bad_model_file(run, models, tmp_path, monkeypatch, kind, command):
    bad = _bad_model(kind, models, tmp_path, monkeypatch)
    r = run(*_model_commands(bad, models["corpus"], tmp_path)[command])
    line = clean_error(r, 1, *BAD_MODELS[kind])
    if kind != "missing":
        assert str(bad) in line  # the message names the file


@pytest.mark.parametrize("kind", sorted(set(BAD_MODELS) - {"missing", "directory"}))
def test_bad_training_state_on_resume(run, models, tmp_path, monkeypatch, kind):
    """The same bad files as NAME.last.npz: `train --resume` refuses them clearly."""
    bad = _bad_model(kind, models, tmp_path, monkeypatch)
    bad.rename(tmp_path / "out.last.npz")
    if kind == "unreadable" and os.geteuid() == 0:  # the guard is tied to the old name
        monkeypatch.undo()
        _unreadable(tmp_path / "out.last.npz", monkeypatch)
    r = run("train", models["corpus"], "-o", tmp_path / "out.npz", *TINY, "--max-steps", "2", "--resume")
    clean_error(r, 1, *BAD_MODELS[kind], "training state")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("change", ["best-as-last", "no-train", "garbage-train", "bad-rng", "bad-state-shape"])
def test_corrupt_training_state_on_resume(run, models, tmp_path, change):
    """A last checkpoint that loads but whose training state is not usable."""
    out = tmp_path / "out.npz"
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    assert run("train", corpus, "-o", out, *TINY, "--max-steps", "2").exit_code == 0
    last = tmp_path / "out.last.npz"
    arrays, meta = checkpoint.load_checkpoint(last)
    if change == "best-as-last":
        arrays, meta = checkpoint.load_checkpoint(out)
    elif change == "no-train":
        del meta["train"]
    elif change == "garbage-train":
        meta["train"] = {"options": {"corpus": str(corpus), "bogus": 1}}
    elif change == "bad-rng":
        meta["train"]["rng"] = {"bit_generator": "Nope"}
    elif change == "bad-state-shape":
        arrays["state/0/0"] = np.zeros((5, 3), np.float32)
    checkpoint.save_checkpoint(last, arrays, meta)
    r = run("train", corpus, "-o", out, *TINY, "--max-steps", "4", "--resume")
    clean_error(r, 1, "training state", "nothing to resume", "no usable")


def test_pickled_object_array_is_never_unpickled(run, models, tmp_path):
    """A checkpoint with a pickled object array that would run code: refused, code never runs."""
    marker = tmp_path / "PWNED"
    arrays, meta = _good(models)
    evil = np.empty(1, dtype=object)
    evil[0] = _RunsCode(str(marker))
    # sanity: this file really would run code if unpickled
    assert pickle.loads(pickle.dumps(evil)) is not None and marker.exists()
    marker.unlink()
    variants = {
        "param": {"__meta__": meta_array(meta), "param/evil": evil, **arrays},
        "first": {"param/evil": evil, "__meta__": meta_array(meta), **arrays},
        "meta": {"__meta__": evil, **arrays},
    }
    for name, members in variants.items():
        p = write_npz(tmp_path / f"evil-{name}.npz", members, allow_pickle=True)
        for args in (["score", "-m", p, "the"], ["sample", "-m", p, "-l", "3"]):
            line = clean_error(run(*args), 1, "pickle", "object", "corrupt")
            assert str(p) in line
        last = tmp_path / "o.last.npz"
        p.replace(last)
        clean_error(run("train", models["corpus"], "-o", tmp_path / "o.npz", *TINY, "--resume"), 1)
        last.unlink()
        assert not marker.exists(), f"code in {name} was executed"


def test_no_model_in_cwd_says_how_to_make_one(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["score", "the cat"], ["sample"]):
        line = clean_error(run(*args), 1, "no model at charlm.npz")
        assert "charlm train" in line
    monkeypatch.setenv("CHARLM_MODEL", str(tmp_path / "env.npz"))
    clean_error(run("sample"), 1, "env.npz")


# ---------------------------------------------------------------------- score / sample text

@pytest.mark.parametrize("which", ["char", "word"])
@pytest.mark.parametrize("sentence", ["", "   "])
def test_score_of_an_empty_string(run, models, which, sentence):
    r = run("score", "-m", models[which], sentence)
    if which == "char" and sentence.strip() == "" and sentence:
        assert r.exit_code == 0, r.output  # spaces are characters: they have a probability
        return
    clean_error(r, 2, "empty", "nothing to score")


def test_score_and_sample_usage_errors(run, models):
    m = models["char"]
    clean_error(run("score", "-m", m), 2, "nothing to score")
    clean_error(run("score", "-m", m, "x", "-f", "y"), 2, "not both")
    clean_error(run("score", "-m", m, "x", "--stream"), 2, "--stream")


# ---------------------------------------------------------------------------- numeric options

TRAIN_USAGE = [  # (option, value): exit 2
    *[(o, v) for o in ("--layers", "--hidden", "--embedding", "--seq-len", "--batch-size", "--epochs",
                       "--max-steps", "--eval-every", "--patience", "--min-count")
      for v in ("0", "-1", "-99999999999999999999")],
    *[(o, "99999999999999999999") for o in ("--layers", "--hidden", "--embedding", "--seq-len", "--batch-size")],
    ("--max-vocab", "0"), ("--max-vocab", "1"), ("--max-vocab", "-5"),
    ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "abc"),
    ("--clip", "-1"), ("--clip", "nan"), ("--clip", "inf"),
    ("--dropout", "-0.1"), ("--dropout", "1"), ("--dropout", "1e308"), ("--dropout", "nan"),
    ("--val-fraction", "-0.1"), ("--val-fraction", "1"), ("--val-fraction", "1e308"), ("--val-fraction", "nan"),
    ("--time-limit", "0"), ("--time-limit", "-1"), ("--time-limit", "nan"),
    ("--seed", "-1"), ("--seed", "-5"), ("--seed", "1.5"),
    ("--lr-decay", "0"), ("--lr-decay", "-0.5"), ("--lr-decay", "1.5"), ("--lr-decay", "nan"),
]


@pytest.mark.parametrize("option,value", TRAIN_USAGE)
def test_train_option_out_of_range(run, models, tmp_path, option, value):
    r = run("train", models["corpus"], "-o", tmp_path / "o.npz", *TINY, "--max-steps", "2", option, value)
    line = clean_error(r, 2)
    assert option in line or option.lstrip("-") in line
    assert not (tmp_path / "o.npz").exists()


TRAIN_OK = [  # absurdly large but meaningful: they work
    ("--epochs", "99999999999999999999"), ("--max-steps", "99999999999999999999"),
    ("--eval-every", "99999999999999999999"), ("--patience", "99999999999999999999"),
    ("--min-count", "99999999999999999999"), ("--max-vocab", "99999999999999999999"),
    ("--seed", "99999999999999999999999999999999"), ("--seed", "0"), ("--clip", "0"), ("--clip", "1e308"),
    ("--time-limit", "1e308"), ("--time-limit", "inf"), ("--dropout", "0.999999"), ("--val-fraction", "0"),
    ("--val-fraction", "0.5"), ("--lr", "1e-300"), ("--lr", "1e30"), ("--batch-size", "100000"),
    ("--seq-len", "100000"),
]


@pytest.mark.parametrize("option,value", TRAIN_OK)
def test_train_option_extreme_but_valid(run, models, tmp_path, option, value):
    out = tmp_path / "o.npz"
    r = run("train", models["corpus"], "-o", out, *TINY, "--max-steps", "2", option, value)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    load_model(out)  # whatever was written is a usable model


def test_train_model_too_big_for_memory_is_refused_up_front(run, models, tmp_path):
    """In range for the options, far beyond any memory: refused before allocating anything."""
    r = run("train", models["corpus"], "-o", tmp_path / "o.npz", "--hidden", "8192", "--layers", "16",
            "--embedding", "8192", "--max-steps", "1", "-q")
    clean_error(r, 2, "memory")


def test_train_output_that_cannot_be_written_fails_before_training(run, models, tmp_path):
    clean_error(run("train", models["corpus"], "-o", tmp_path / "nodir" / "o.npz", *TINY), 2, "does not exist")
    (tmp_path / "adir").mkdir()
    clean_error(run("train", models["corpus"], "-o", tmp_path / "adir", *TINY), 2, "directory")


def test_train_non_finite_parameters_never_reach_a_checkpoint(run, models, tmp_path, monkeypatch):
    """If an update makes the weights inf/NaN, training stops and the files on disk stay loadable."""
    from charlm.engine import optim

    out = tmp_path / "o.npz"
    assert run("train", models["corpus"], "-o", out, *TINY, "--max-steps", "2", "--eval-every", "1").exit_code == 0
    before = out.read_bytes(), (tmp_path / "o.last.npz").read_bytes()
    real_step = optim.Adam.step

    def poisoned(self, params, grads):
        real_step(self, params, grads)
        params["out.b"][0] = np.inf

    monkeypatch.setattr(optim.Adam, "step", poisoned)
    r = run("train", models["corpus"], "-o", out, *TINY, "--max-steps", "6", "--eval-every", "1", "--resume")
    clean_error(r, 1, "diverged")
    assert (out.read_bytes(), (tmp_path / "o.last.npz").read_bytes()) == before
    load_model(out)


@pytest.mark.parametrize("args,code", [
    (["--batch-size", "0"], 2), (["--batch-size", "-1"], 2), (["--batch-size", "x"], 2),
    (["--batch-size", "99999999999999999999"], 0),
])
def test_score_numeric_options(run, models, args, code):
    r = run("score", "-m", models["word"], "the cat", "a dog", *args)
    if code:
        clean_error(r, code)
    else:
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output


SAMPLE_USAGE = [
    ("--temperature", "-1"), ("--temperature", "-1e308"), ("--temperature", "nan"),
    ("--top-k", "0"), ("--top-k", "-1"), ("--top-k", "1.5"),
    ("--top-p", "0"), ("--top-p", "-0.5"), ("--top-p", "1.0001"), ("--top-p", "2"), ("--top-p", "nan"),
    ("--top-p", "inf"), ("--top-p", "-inf"),
    ("--length", "0"), ("--length", "-1"), ("--num", "0"), ("--num", "-3"), ("--seed", "-1"),
]


@pytest.mark.parametrize("option,value", SAMPLE_USAGE)
def test_sample_option_out_of_range(run, models, option, value):
    line = clean_error(run("sample", "-m", models["char"], option, value), 2)
    assert option in line


SAMPLE_OK = [
    ("--temperature", "0"), ("--temperature", "1e-300"), ("--temperature", "1e308"),
    ("--top-k", "99999999999999999999"), ("--top-p", "1"), ("--top-p", "1e-300"),
    ("--seed", "99999999999999999999999999999999"), ("--length", "1"),
]


@pytest.mark.parametrize("option,value", SAMPLE_OK)
def test_sample_option_extreme_but_valid(run, models, option, value):
    r = run("sample", "-m", models["char"], "--length", "30", "--json", option, value)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # not even a numpy RuntimeWarning
    rec = json.loads(r.stdout)
    assert "<UNK>" not in rec["tokens"] and 1 <= len(rec["tokens"]) <= 30


def test_sample_infinite_temperature_is_uniform_or_refused(run, models):
    r = run("sample", "-m", models["char"], "--temperature", "inf", "--length", "200", "--json", "--seed", "1")
    if r.exit_code == 2:
        clean_error(r, 2, "--temperature")
        return
    assert r.exit_code == 0 and r.stderr == "", r.output
    assert len(set(json.loads(r.stdout)["tokens"])) > 3  # uniform over the vocabulary, not constant


@pytest.mark.parametrize("args", [["--length", "10" * 9], ["--num", "10" * 9]])
def test_sample_absurd_length_or_num_is_a_clean_error(run, models, args):
    """Beyond memory: one line that names the options to lower (not a traceback, not a hang)."""
    line = clean_error(run("sample", "-m", models["char"], *args), 1, "memory")
    assert "--length" in line or "--num" in line


@pytest.mark.parametrize("args,code", [
    (["--top", "-1"], 2), (["--top", "99999999999999999999"], 0), (["--top", "0"], 0),
    (["--min-count", "0"], 2), (["--min-count", "-1"], 2), (["--min-count", "99999999999999999999"], 0),
    (["--max-vocab", "1"], 2), (["--max-vocab", "0"], 2), (["--max-vocab", "99999999999999999999"], 0),
])
def test_tokenize_numeric_options(run, models, args, code):
    r = run("tokenize", "--stats", models["corpus"], *args)
    if code:
        clean_error(r, code)
    else:
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def test_debug_shows_the_traceback(run, tmp_path):
    r = CliRunner().invoke(cli, ["--debug", "tokenize", str(tmp_path / "nope.txt")])
    assert r.exit_code != 0 and r.exception is not None  # re-raised for a traceback
    assert "no such file" in str(r.exception)


# -------------------------------------------------------------------- the real entry point

def test_real_process_one_line_and_exit_codes(models, tmp_path):
    """Through `python -m charlm`: the exit statuses and single stderr lines are the real ones."""
    env = dict(os.environ)
    env.pop("CHARLM_MODEL", None)
    cases = [
        (["tokenize", str(tmp_path / "missing.txt")], 1),
        (["sample", "-m", str(models["char"]), "--top-p", "1.5"], 2),
        (["score", "-m", str(tmp_path / "missing.npz"), "x"], 1),
        (["train", str(models["corpus"]), "--hidden", "0"], 2),
        (["frobnicate"], 2),
    ]
    for args, code in cases:
        r = subprocess.run([sys.executable, "-m", "charlm", *args], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=60)
        assert r.returncode == code, (args, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("charlm: error: "), r.stderr


# -------------------------------------------------------------------- a 50 MB single line

_MEASURE = r"""
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(r.returncode, peak)
sys.stderr.write(r.stdout + r.stderr)
"""


def _peak_mib(args, cwd) -> tuple[int, float, str]:
    r = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "charlm", *args],
                       capture_output=True, text=True, cwd=cwd, timeout=120)
    code, kib = r.stdout.split()
    return int(code), int(kib) / 1024, r.stderr


@pytest.fixture(scope="module")
def one_line_50mb(tmp_path_factory):
    """50 MB of text on one line, no newline at all, written quickly by repeating a block."""
    p = tmp_path_factory.mktemp("big") / "oneline.txt"
    block = ("It was the best of times, it was the worst of times; caf\u00e9 na\u00efve \u00fcber 42. " * 1000).encode()
    reps = 50_000_000 // len(block) + 1
    with open(p, "wb") as f:
        for _ in range(reps):
            f.write(block)
    assert p.stat().st_size >= 50_000_000
    return p


@pytest.mark.parametrize("level", ["char", "word"])
def test_50mb_single_line_tokenize_stats_bounded_memory(one_line_50mb, tmp_path, level):
    code, peak, err = _peak_mib(["tokenize", "--stats", "--level", level, str(one_line_50mb)], tmp_path)
    assert code == 0, err
    assert "tokens:" in err
    assert peak < 300, f"peak RSS {peak:.0f} MiB for a 50 MB one-line corpus"


def test_2mb_single_line_trains(tmp_path):
    """Training on one long line works; its memory is O(corpus) (int32 ids: 4 bytes a token)."""
    p = tmp_path / "line.txt"
    p.write_bytes(b"the quick brown fox jumps over the lazy dog " * 47_000)  # ~2 MB, no newline
    code, peak, err = _peak_mib(["train", str(p), "-o", str(tmp_path / "m.npz"), *TINY, "--max-steps", "2"],
                                tmp_path)
    assert code == 0, err
    assert peak < 300, peak
    load_model(tmp_path / "m.npz")


# ---------------------------------------------------- never destroy the user's files (charlm.files)

NOTES = "my notes, not a model\n"


@pytest.fixture
def files(tmp_path):
    """A corpus, a validation file, a vocabulary and a foreign file (notes.txt) in tmp_path."""
    d = {"corpus": tmp_path / "c.txt", "val": tmp_path / "v.txt", "notes": tmp_path / "notes.txt",
         "vocab": tmp_path / "voc.json"}
    d["corpus"].write_text(TEXT, encoding="utf-8")
    d["val"].write_text(TEXT[:200], encoding="utf-8")
    d["notes"].write_text(NOTES, encoding="utf-8")
    r = CliRunner().invoke(cli, ["tokenize", str(d["corpus"]), "-q", "--vocab-out", str(d["vocab"])])
    assert r.exit_code == 0, r.output
    return d


def _unchanged(files, before: dict):
    return {k: files[k].read_bytes() for k in before} == before


@pytest.mark.parametrize("args,needle", [
    (["-o", "{corpus}"], "is the corpus"),
    (["-o", "{corpus}", "--force"], "is the corpus"),
    (["--metrics", "{corpus}"], "is the corpus"),
    (["--metrics", "{corpus}", "--force"], "is the corpus"),
    (["--val-file", "{val}", "-o", "{val}", "--force"], "validation file"),
    (["--vocab", "{vocab}", "-o", "{vocab}"], "vocabulary"),
    (["--vocab", "{vocab}", "--metrics", "{vocab}", "--force"], "vocabulary"),
    (["-o", "{notes}"], "not a charlm checkpoint"),
    (["--metrics", "{notes}"], "not a charlm metrics log"),
    (["-o", "{tmp}/m.npz", "--metrics", "{tmp}/m.npz"], "same file"),
    (["-o", "{link}"], "is the corpus"),
])
def test_train_never_writes_over_its_inputs_or_a_foreign_file(run, files, tmp_path, args, needle):
    (tmp_path / "link.npz").symlink_to(files["corpus"])
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path), "link": str(tmp_path / "link.npz")}
    before = {k: files[k].read_bytes() for k in files}
    r = run("train", files["corpus"], *TINY, "--max-steps", "2", *[a.format(**names) for a in args])
    clean_error(r, 2, needle)
    assert _unchanged(files, before)


def test_train_force_replaces_a_foreign_output_and_metrics_file(run, files):
    other = files["notes"].with_name("other.txt")
    other.write_text(NOTES, encoding="utf-8")
    r = run("train", files["corpus"], *TINY, "--max-steps", "2", "-o", files["notes"], "--metrics", other,
            "--force")
    assert r.exit_code == 0, r.output
    assert checkpoint.load_checkpoint(files["notes"])[1]["kind"] == "best"
    records = [json.loads(line) for line in other.read_text().splitlines()]
    assert records and all("step" in rec for rec in records)  # replaced, not appended to


def test_a_new_run_never_silently_replaces_another_runs_files(run, files, tmp_path):
    """Issue 18.2: a fresh run over another run's model (or metrics log) is refused, saying what is
    there and offering --resume or --force; --force replaces the model and starts the log anew."""
    out, log = tmp_path / "m.npz", tmp_path / "log.jsonl"
    r = run("train", files["corpus"], *TINY, "--max-steps", "2", "-o", out, "--metrics", log)
    assert r.exit_code == 0, r.output
    before = {p: p.read_bytes() for p in (out, tmp_path / "m.last.npz", log)}
    r = run("train", files["corpus"], *TINY, "--max-steps", "3", "-o", out, "--hidden", "5")
    clean_error(r, 2, "another run", "task lm", "2 steps", "corpus.txt", "--resume", "--force")
    assert all(p.read_bytes() == b for p, b in before.items())
    (tmp_path / "m.last.npz").unlink()  # the best model alone is another run's work too
    clean_error(run("train", files["corpus"], *TINY, "-o", out), 2, "another run", "--force")
    other = tmp_path / "other.npz"
    clean_error(run("train", files["corpus"], *TINY, "-o", other, "--metrics", log), 2, "--metrics", "--force")
    assert not other.exists()
    r = run("train", files["corpus"], *TINY, "--max-steps", "3", "-o", out, "--metrics", log, "--force")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [3]


@pytest.mark.parametrize("args,needle", [
    (["{corpus}", "--vocab-out", "{corpus}"], "is the corpus"),
    (["{corpus}", "--vocab-out", "{corpus}", "--force"], "is the corpus"),
    (["{corpus}", "--vocab-out", "{notes}"], "not a charlm vocabulary"),
])
def test_tokenize_never_writes_over_its_input_or_a_foreign_file(run, files, args, needle):
    names = {k: str(v) for k, v in files.items()}
    before = {k: files[k].read_bytes() for k in files}
    clean_error(run("tokenize", "-q", *[a.format(**names) for a in args]), 2, needle)
    assert _unchanged(files, before)


def test_tokenize_force_replaces_a_foreign_file_and_overwrites_a_vocabulary(run, files):
    assert run("tokenize", "-q", files["corpus"], "--vocab-out", files["notes"], "--force").exit_code == 0
    assert json.loads(files["notes"].read_text())["format"] == "charlm-vocab"
    assert run("tokenize", "-q", files["corpus"], "--vocab-out", files["vocab"]).exit_code == 0


# ------------------------------------------- next, info, plot and the new sample options

@pytest.mark.parametrize("command", ["next", "info", "sample-beam", "plot"])
@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_bad_model_file_new_commands(run, models, tmp_path, monkeypatch, kind, command):
    bad = _bad_model(kind, models, tmp_path, monkeypatch)
    args = {"next": ["next", "-m", bad, "the"], "info": ["info", bad],
            "sample-beam": ["sample", "-m", bad, "--beam", "2", "-l", "5"],
            "plot": ["plot", bad, "-o", tmp_path / "c.png"]}[command]
    r = run(*args)
    if command == "plot":  # a checkpoint's metadata, or else a metrics file: neither is usable
        line = clean_error(r, 1, *BAD_MODELS[kind], "metrics", "binary", "not utf-8", "no such file")
    else:
        line = clean_error(r, 1, *BAD_MODELS[kind])
    if kind != "missing":
        assert str(bad) in line
    assert not (tmp_path / "c.png").exists()


def _last_with_metrics(models, tmp_path, metrics) -> Path:
    out = tmp_path / "r.npz"
    r = CliRunner().invoke(cli, ["train", str(models["corpus"]), "-o", str(out), *TINY, "--max-steps", "2"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    last = tmp_path / "r.last.npz"
    arrays, meta = checkpoint.load_checkpoint(last)
    meta["train"]["metrics"] = metrics
    checkpoint.save_checkpoint(last, arrays, meta)
    return last


def test_plot_of_a_run_with_no_metrics_yet(run, models, tmp_path):
    last = _last_with_metrics(models, tmp_path, [])
    line = clean_error(run("plot", last, "-o", tmp_path / "c.png"), 1, "no metrics yet")
    assert str(last) in line and "--eval-every" in line
    clean_error(run("plot", tmp_path / "r.npz", "-o", tmp_path / "c.png"), 1, "without a metrics history")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("content,needles", [
    (b"", ("no metrics records",)),
    (b"\n\n", ("no metrics records",)),
    (b"{not json\n[1, 2]\n\"x\"\n{\"step\": \"one\"}\n{\"step\": NaN}\n", ("5 broken lines",)),
    (b"caf\xe9\n", ("not utf-8",)),
    (b"\x00\x01\x02", ("nul", "binary")),
])
def test_plot_of_a_metrics_file_with_nothing_usable(run, tmp_path, content, needles):
    m = tmp_path / "m.jsonl"
    m.write_bytes(content)
    clean_error(run("plot", m, "-o", tmp_path / "c.png"), 1, *needles)
    assert not (tmp_path / "c.png").exists()


def test_plot_of_a_metrics_file_with_some_broken_lines_says_how_many(run, tmp_path):
    pytest.importorskip("matplotlib")
    m = tmp_path / "m.jsonl"
    m.write_text('{"step": 1, "val_loss": 2.0, "lr": 0.1, "elapsed": 1}\n{"step": 2, "val_l\n'
                 'garbage\n{"step": 3, "val_loss": 1.5, "lr": 0.1, "elapsed": 2}\n')
    r = run("plot", m, "-o", tmp_path / "c.png")
    assert r.exit_code == 0 and "Traceback" not in r.output
    assert r.stderr.splitlines()[0] == f"charlm: warning: skipped 2 broken lines in {m}"
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize("args,code,needles", [
    (["-o", "c.jpg"], 2, ("cannot tell the image format",)),
    (["-o", "c"], 2, (".png or .svg",)),
    (["-o", "nodir/c.png"], 2, ("does not exist",)),
    (["--size", "big"], 2, ("widthxheight",)),
    (["--size", "10x10"], 2, ("between",)),
    (["--size", "100000x800"], 2, ("between",)),
    (["--size", "-1x-1"], 2, ("--size",)),
])
def test_plot_bad_options(run, models, tmp_path, monkeypatch, args, code, needles):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "val_loss": 2.0}\n')
    clean_error(run("plot", metrics, *args), code, *needles)


def test_plot_of_a_missing_run(run, tmp_path):
    clean_error(run("plot", tmp_path / "nope.jsonl"), 1, "no such file")


@pytest.mark.parametrize("args,needle", [
    (["--beam", "0"], "--beam"), (["--beam", "-1"], "--beam"), (["--beam", "x"], "--beam"),
    (["--beam", "2", "--nbest", "3"], "--nbest"), (["--beam", "2", "--nbest", "0"], "--nbest"),
    (["--nbest", "2"], "--nbest"), (["--length-penalty", "1"], "--length-penalty"),
    (["--beam", "2", "--length-penalty", "-1"], "--length-penalty"),
    (["--beam", "2", "--length-penalty", "nan"], "--length-penalty"),
    (["--beam", "2", "--temperature", "0.5"], "--temperature"),
    (["--stop-at", ""], "--stop-at"), (["--stop-at", "x", "--stop-at", ""], "--stop-at"),
    (["--prime", "a", "--prime-file", "p.txt"], "--prime-file"),
])
def test_sample_new_option_errors(run, models, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("the")
    line = clean_error(run("sample", "-m", models["word"], *args), 2)
    assert needle in line


@pytest.mark.parametrize("make,code,needles", [
    (lambda p: p, 1, ("prime file", "no such file")),
    (lambda p: (p.mkdir(), p)[1], 2, ("directory",)),
    (lambda p: (p.write_bytes("caf\xe9\n".encode("latin-1")), p)[1], 1, ("not utf-8",)),
    (lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), p)[1], 1, ("binary", "nul")),
])
@pytest.mark.parametrize("beam", [False, True])
def test_sample_prime_file_that_cannot_be_read(run, models, tmp_path, make, code, needles, beam):
    p = make(tmp_path / "prime.txt")
    line = clean_error(run("sample", "-m", models["char"], "--prime-file", p, *(["--beam", "2"] if beam else [])),
                       code, *needles)
    assert "prime" in line.lower()


def test_sample_prime_file_not_utf8_on_stdin(run, models):
    clean_error(run("sample", "-m", models["char"], "--prime-file", "-", input=b"caf\xe9"), 1, "not utf-8")


@pytest.mark.parametrize("args", [["-k", "0"], ["-k", "-3"], ["-k", "x"]])
def test_next_bad_k(run, models, args):
    line = clean_error(run("next", "-m", models["word"], "the", *args), 2)
    assert "-k" in line


def test_next_and_info_unknown_model_path(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clean_error(run("next", "the"), 1, "no model at charlm.npz")
    clean_error(run("next", "-m", tmp_path / "gone.npz", "the"), 1, "no model at")
    clean_error(run("info", tmp_path / "gone.npz"), 1, "no model at")
    clean_error(run("info"), 2, "missing argument")
    clean_error(run("plot"), 2, "missing argument")


def test_next_k_beyond_the_vocabulary_is_the_whole_vocabulary(run, models):
    r = run("next", "-m", models["word"], "the", "-k", "99999999999999999999", "--json")
    assert r.exit_code == 0 and r.stderr == "", r.output
    rec = json.loads(r.stdout)
    assert abs(sum(x["prob"] for x in rec["next"]) - 1) < 1e-6


def test_python_api_bad_inputs_raise_charlm_errors(models, tmp_path):
    """The library raises CharlmError subclasses (never prints or exits) for the same mistakes."""
    import charlm

    with pytest.raises(charlm.CheckpointError, match="no such model file"):
        charlm.load(tmp_path / "gone.npz")
    lm = charlm.load(models["word"])
    for call in (lambda: lm.next_tokens("the", k=0), lambda: lm.complete("the", beam=0),
                 lambda: lm.complete("the", beam=2, nbest=3), lambda: lm.sample(stop_at=[""]),
                 lambda: lm.sample(stop_at=""), lambda: lm.complete("x", length_penalty=-1.0)):
        with pytest.raises(charlm.UsageError):
            call()
    with pytest.raises(charlm.DataError, match="prime file"):
        lm.sample(prime_file=tmp_path / "gone.txt")


def test_plot_never_writes_over_the_run_or_a_foreign_image(run, tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "val_loss": 2.0, "lr": 0.1, "elapsed": 1}\n')
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n my holiday picture")
    clean_error(run("plot", metrics, "-o", photo), 2, "not a charlm plot", "--force")
    assert photo.read_bytes() == b"\x89PNG\r\n\x1a\n my holiday picture"
    assert run("plot", metrics, "-o", photo, "--force").exit_code == 0  # asked for: replaced
    assert photo.read_bytes()[:4] == b"\x89PNG" and b"holiday" not in photo.read_bytes()
    for name in ("again.png", "again.svg"):  # charlm's own plots are simply replaced
        for _ in range(2):
            r = run("plot", metrics, "-o", tmp_path / name)
            assert r.exit_code == 0, r.output
    named_png = tmp_path / "run.png"  # a metrics log that happens to end in .png
    named_png.write_bytes(metrics.read_bytes())
    clean_error(run("plot", named_png, "-o", named_png, "--force"), 2, "is the run")
    assert named_png.read_bytes() == metrics.read_bytes()


# -- the token cache ------------------------------------------------------------------------------

@pytest.mark.parametrize("damage,says", [
    (lambda f: f.ids.write_bytes(f.ids.read_bytes()[:-3]), "its id file is truncated"),
    (lambda f: f.ids.write_bytes(b"\x93NUMPY" + bytes(200)), "its id file"),
    (lambda f: f.record.write_text('{"format": "charlm-token-cache", "version": %d}' % tokencache.VERSION),
     "its record is damaged"),
    (lambda f: f.record.write_text("not json at all"), "is not a charlm token cache: left alone"),
])
def test_corrupt_token_cache(run, models, tmp_path, monkeypatch, damage, says):
    """A damaged token cache is never trusted: the run says so in one warning line and tokenizes
    again (rebuilding the cache when it is charlm's, leaving a file that is not alone)."""
    from charlm.text import tokencache
    from charlm.text.tokenizer import TokenizerConfig

    monkeypatch.setattr(tokencache, "MIN_BYTES", 0)
    cmd = ["train", models["corpus"], "-o", tmp_path / "m.npz", *TINY[:-1], "--max-steps", "2",
           "--cache-dir", tmp_path / "cache", "--force"]  # not -q: that would hide the warning
    assert run(*cmd).exit_code == 0
    files = tokencache.cache_files(models["corpus"], TokenizerConfig(), tmp_path / "cache")
    damage(files)
    kept = files.record.read_bytes()
    r = run(*cmd)
    assert r.exit_code == 0 and "Traceback" not in r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("charlm: warning:")]
    assert len(warnings) == 1 and says in warnings[0], r.stderr
    if "left alone" in says:
        assert files.record.read_bytes() == kept
    else:
        assert run(*cmd).stderr.count("warning") == 0  # rebuilt: the next run uses it


def test_bad_cache_dir(run, models, tmp_path):
    (tmp_path / "file").write_text("x")
    base = ["train", models["corpus"], "-o", tmp_path / "m.npz", *TINY, "--max-steps", "2"]
    clean_error(run(*base, "--cache-dir", tmp_path / "file"), 2, "--cache-dir")


# ------------------------------------------------------ tagging and classification inputs (issue 10)

TASK_TINY = ["--hidden", "6", "--embedding", "4", "--char-embedding", "3", "--char-hidden", "3", "--layers", "1",
             "--batch-size", "4", "-q"]
NER = "Teddy I-PER\nRoosevelt I-PER\nwas O\nhere O\n\nParis I-LOC\nis O\nbig O\n\n" * 4
CONLLU = "".join(f"# sent_id = {i}\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n\n"
                 for i in range(6))
LABELLED = "pos\ta great film\nneg\ta dull film\n" * 6


@pytest.fixture(scope="module")
def task_models(tmp_path_factory):
    """A tiny tagger and classifier trained by `charlm train --task ...`."""
    d = tmp_path_factory.mktemp("task_models")
    (d / "ner.txt").write_text(NER)
    (d / "cls.tsv").write_text(LABELLED)
    for name, args in (("ner", ["--task", "tag", d / "ner.txt"]), ("cls", ["--task", "classify", d / "cls.tsv"])):
        r = CliRunner().invoke(cli, ["train", *map(str, args), "-o", str(d / f"{name}.npz"), *TASK_TINY,
                                     "--max-steps", "3"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return {"ner": d / "ner.npz", "cls": d / "cls.npz", "ner_text": d / "ner.txt", "cls_text": d / "cls.tsv"}


def _task_commands(m, bad: Path, tmp_path: Path):
    return {
        "train-tag": ["train", "--task", "tag", bad, "-o", tmp_path / "out.npz", *TASK_TINY, "--max-steps", "2"],
        "train-tag-val": ["train", "--task", "tag", m["ner_text"], "--val-file", bad, "-o", tmp_path / "out.npz",
                          *TASK_TINY, "--max-steps", "2"],
        "train-classify": ["train", "--task", "classify", bad, "-o", tmp_path / "out.npz", *TASK_TINY,
                           "--max-steps", "2"],
        "tag-file": ["tag", "-m", m["ner"], "--file", bad],
        "classify-file": ["classify", "-m", m["cls"], "--file", bad],
        "eval-tag": ["eval", "-m", m["ner"], bad],
        "eval-classify": ["eval", "-m", m["cls"], bad],
    }


@pytest.mark.parametrize("command", ["train-tag", "train-tag-val", "train-classify", "tag-file", "classify-file",
                                     "eval-tag", "eval-classify"])
@pytest.mark.parametrize("case", sorted(BAD_CORPORA))
def test_bad_task_file(run, task_models, tmp_path, monkeypatch, case, command):
    make, needles = BAD_CORPORA[case]
    bad = make(tmp_path / "bad.txt", monkeypatch)
    clean_error(run(*_task_commands(task_models, bad, tmp_path)[command]), 1, *needles)
    assert not (tmp_path / "out.npz").exists()


BAD_TASK_FILES = {
    # name: (task, content, exit code, words in the message)
    "conllu-wrong-columns": ("tag", CONLLU.replace("\tNOUN\tNN\t", "\tNOUN\t", 1), 1, ("line 3", "9 tab-separated")),
    "columns-wrong-columns": ("tag", "a O\nb O\nc X O\n", 1, ("line 3", "3 columns", "line 1 has 2")),
    "sentence-without-tags": ("tag", "a O\nb O\n\nc\nd\n", 1, ("line 4", "1 column")),
    "file-without-tags": ("tag", "Teddy\nRoosevelt\n\nwas\n", 1, ("line 1", "without a tag")),
    "conllu-missing-tag": ("tag", CONLLU.replace("\tNOUN\tNN", "\t_\tNN", 2), 1, ("line 7", "no tag")),
    "mixed-conllu-columns": ("tag", CONLLU + "word TAG\n", 1, ("line 19", "mixes formats")),
    "mixed-columns-conllu": ("tag", "a O\n\n" + CONLLU, 1, ("line 4", "mixes formats")),
    "label-without-text": ("classify", "pos\tgood\nneg\t \n", 1, ("line 2", "no text")),
    "text-without-label": ("classify", "pos\tgood\njust some text\n", 1, ("line 2", "no label")),
    "fasttext-without-text": ("classify", "__label__pos good\n__label__neg\n", 1, ("line 2", "no text")),
    "mixed-label-formats": ("classify", "pos\tgood\n__label__neg bad\n", 1, ("line 2", "mixes formats")),
    "single-label": ("classify", "pos\tgood\npos\tfine\npos\tnice\n", 1, ("single label", "at least two")),
    "single-tag": ("tag", "a O\nb O\n\nc O\n", 1, ("single tag",)),
}


@pytest.mark.parametrize("case", sorted(BAD_TASK_FILES))
def test_malformed_task_files(run, tmp_path, case):
    task, content, code, needles = BAD_TASK_FILES[case]
    p = tmp_path / "bad.txt"
    p.write_text(content)
    r = run("train", "--task", task, p, "-o", tmp_path / "out.npz", "--val-fraction", "0", *TASK_TINY,
            "--max-steps", "2")
    clean_error(r, code, *needles)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("args,code,needle", [
    (["--tag-column", "5"], 2, "--tag-column 5 does not exist"),
    (["--tag-column", "upos"], 2, "applies to CoNLL-U files"),
    (["--tag-column", "nope"], 2, "--tag-column must be"),
    (["--format", "tab"], 2, "--format must be one of conllu, columns"),
])
def test_tag_column_or_format_that_does_not_exist(run, task_models, tmp_path, args, code, needle):
    r = run("train", "--task", "tag", task_models["ner_text"], "-o", tmp_path / "out.npz", *args, *TASK_TINY)
    clean_error(r, code, needle)


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_crf_for_a_task_without_tags(run, task_models, tmp_path, task):
    """--crf scores tag sequences: refused for a classifier and a language model (issue 22)."""
    corpus = task_models["cls_text"]
    r = run("train", "--task", task, corpus, "-o", tmp_path / "out.npz", "--crf", "--max-steps", "2", "-q")
    clean_error(r, 2, "--crf applies to --task tag only")
    assert f"not to --task {task}" in r.stderr and not (tmp_path / "out.npz").exists()


def test_init_from_what_is_not_a_fitting_language_model(run, models, task_models, tmp_path):
    """--init-from (issue 22): a tagger file, a character LM for a word tagger, sizes that differ, a
    file that is not there; --freeze-epochs without it; for a language model (fine-tuning), one of
    another level or size, a tagger, --freeze-epochs, --condition."""
    base = ["train", "--task", "tag", task_models["ner_text"], "-o", tmp_path / "out.npz", *TASK_TINY, "--max-steps", "2"]
    clean_error(run(*base, "--init-from", task_models["ner"]), 2, "is not a language model (task tag)")
    clean_error(run(*base, "--init-from", models["char"]), 2, "char-level language model; the tagger reading words")
    clean_error(run(*base, "--init-from", models["word"]), 2, "the language model's cell is gru, the tagger's lstm")
    clean_error(run(*base, "--init-from", models["word"], "--cell", "gru"), 2,
                "the language model's hidden is 8, the tagger's 6: train the tagger with --hidden 8")
    clean_error(run(*base, "--init-from", tmp_path / "none.npz"), 1, "--init-from: ", "no such model file")
    clean_error(run(*base, "--freeze-epochs", "1"), 2, "--freeze-epochs needs --init-from")
    clean_error(run(*base, "--freeze-epochs", "-1"), 2, "--freeze-epochs")
    lm = ["train", models["corpus"], "-o", tmp_path / "out.npz", *TINY, "--max-steps", "2", "--init-from"]
    clean_error(run(*lm, models["word"]), 2, "is a word-level language model; the new model reading chars needs")
    clean_error(run(*lm, models["word"], "--level", "word", "--hidden", "6"), 2,
                "the language model's hidden is 8, the new model's 6: train the new model with --hidden 8")
    clean_error(run(*lm, task_models["ner"]), 2, "is not a language model (task tag)")
    clean_error(run(*lm, models["word"], "--level", "word", "--freeze-epochs", "1"), 2,
                "--freeze-epochs applies to --task tag and --task classify")
    r = run("train", "--condition", task_models["cls_text"], "-o", tmp_path / "out.npz", *TINY, "--init-from",
            models["word"])
    clean_error(r, 2, "--init-from does not apply to --condition")
    assert not (tmp_path / "out.npz").exists()


def test_init_from_a_conditional_language_model(run, models, cond_model, tmp_path):
    """A language model fine-tuned from a conditional one (issue 22): refused in one line."""
    r = run("train", models["corpus"], "-o", tmp_path / "out.npz", *TINY, "--max-steps", "2", "--level", "word",
            "--init-from", cond_model)
    clean_error(r, 2, "is a conditional language model (trained with --condition)")


def test_lm_features_and_reverse_that_do_not_fit(run, models, task_models, tmp_path):
    """--lm-features (issue 22): a word-level LM, a backward model not trained with --reverse (or a
    forward one that was), a missing file, a tagger, three files; either option for the wrong task;
    a tagger with features given to charlm export; charlm next on a reversed model."""
    bwd = tmp_path / "bwd.npz"
    r = run("train", models["corpus"], "-o", bwd, *TINY, "--max-steps", "2", "--reverse")
    assert r.exit_code == 0, r.output
    char = models["char"]
    base = ["train", "--task", "tag", task_models["ner_text"], "-o", tmp_path / "out.npz", *TASK_TINY, "--max-steps", "2"]
    for spec, code, needle in (
            (models["word"], 2, "is a word-level language model: the features are states at characters"),
            (f"{char},{char}", 2, "was not trained with --reverse: the backward model (BWD.npz) must read"),
            (bwd, 2, "was trained with --reverse: give it second, as BWD.npz"),
            (f"{char},{tmp_path / 'none.npz'}", 2, "--lm-features: no language model file"),
            (task_models["ner"], 2, "is not a language model (task tag)"),
            (f"{char},{bwd},{bwd}", 2, "--lm-features takes FWD.npz or FWD.npz,BWD.npz")):
        clean_error(run(*base, "--lm-features", spec), code, needle)
    r = run("train", models["corpus"], "-o", tmp_path / "out.npz", *TINY, "--lm-features", char)
    clean_error(r, 2, "--lm-features applies to --task tag and --task classify, not to a language model")
    clean_error(run(*base, "--reverse"), 2, "--reverse applies to --task lm only (it is how a language model reads")
    r = run("train", "--condition", task_models["cls_text"], "-o", tmp_path / "out.npz", *TINY, "--reverse")
    clean_error(r, 2, "--reverse does not apply to --condition")
    clean_error(run("next", "-m", bwd, "ab"), 2, "reads text right to left (trained with --reverse): charlm next")
    clean_error(run("sample", "-m", bwd, "--beam", "2"), 2, "reads text right to left")
    assert not (tmp_path / "out.npz").exists()
    r = run(*base, "--lm-features", f"{char},{bwd}")
    assert r.exit_code == 0, r.output
    clean_error(run("export", "-m", tmp_path / "out.npz"), 2, "charlm export cannot write", "(--lm-features)")


def test_xpos_column_that_is_empty(run, tmp_path):
    p = tmp_path / "x.conllu"
    p.write_text(CONLLU.replace("\tDT\t", "\t_\t"))
    clean_error(run("train", "--task", "tag", p, "-o", tmp_path / "o.npz", "--tag-column", "xpos", *TASK_TINY),
                1, "has no xpos tags")


def test_unseen_labels_in_the_evaluation_file_are_reported_and_counted(run, task_models, tmp_path):
    p = tmp_path / "eval.txt"
    p.write_text("Teddy I-PER\nRoosevelt I-PER\nsaw O\nRome I-CITY\n\n")
    r = run("eval", "-m", task_models["ner"], p, "--json")
    assert r.exit_code == 0 and "Traceback" not in r.output
    assert "charlm: warning:" in r.stderr and "CITY" in r.stderr and "counted as errors" in r.stderr
    d = json.loads(r.stdout)
    assert d["unknown_labels"] == ["B-CITY"] and d["per_type"]["CITY"]["recall"] == 0.0
    p.write_text("pos\tgreat\nmeh\tso so\nneutral\tfine\n")
    r = run("eval", "-m", task_models["cls"], p, "--json")
    assert r.exit_code == 0 and "meh, neutral" in r.stderr
    d = json.loads(r.stdout)
    assert d["unknown_labels"] == ["meh", "neutral"] and d["accuracy"] <= 1 / 3
    # and in training, a validation file with new labels is a warning, not a failure
    r = run("train", "--task", "classify", task_models["cls_text"], "--val-file", p, "-o", tmp_path / "m.npz",
            *TASK_TINY[:-1], "--max-steps", "2")
    assert r.exit_code == 0 and "the validation data has 2 label(s) the training data does not" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["tag"], "nothing to tag"),
    (["tag", ""], "sentence 1 is empty"),
    (["classify", "   "], "text 1 is empty"),
    (["tag", "--spans", "x"], None),
    (["tag", "--conll", "--json", "x"], "--conll cannot be combined"),
    (["classify", "--top-k", "0", "x"], "--top-k"),
    (["tag", "--format", "text", "x"], "--format needs --file"),
])
def test_tag_and_classify_usage_errors(run, task_models, args, needle):
    model = task_models["cls" if args[0] == "classify" else "ner"]
    r = run(*args, "-m", model)
    if needle is None:
        assert r.exit_code == 0, r.output  # --spans on an entity tagger is fine
    else:
        clean_error(r, 2, needle)


# ---------------------------------------------------------------------------------- sequence to sequence

S2S_TINY = ["--hidden", "6", "--embedding", "4", "--layers", "1", "--batch-size", "4", "--val-fraction", "0", "-q"]
PAIRS = "cat\tK AE T\ndog\tD AO G\ndog\tD AA G\nact\tAE K T\n" * 3


@pytest.fixture(scope="module")
def s2s_model(tmp_path_factory):
    """A tiny sequence-to-sequence model trained by `charlm train --task seq2seq`."""
    d = tmp_path_factory.mktemp("s2s")
    (d / "pairs.tsv").write_text(PAIRS)
    r = CliRunner().invoke(cli, ["train", "--task", "seq2seq", str(d / "pairs.tsv"), "-o", str(d / "g2p.npz"),
                                 "--target-level", "word", "--target-split", "whitespace", *S2S_TINY,
                                 "--max-steps", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return {"model": d / "g2p.npz", "pairs": d / "pairs.tsv"}


@pytest.mark.parametrize("command", ["train", "eval", "translate-file"])
@pytest.mark.parametrize("case", ["empty", "latin-1", "missing"])
def test_bad_pair_file(run, s2s_model, tmp_path, monkeypatch, case, command):
    make, needles = BAD_CORPORA[case]
    bad = make(tmp_path / "bad.txt", monkeypatch)
    args = {"train": ["train", "--task", "seq2seq", bad, "-o", tmp_path / "out.npz", *S2S_TINY, "--max-steps", "1"],
            "eval": ["eval", "-m", s2s_model["model"], bad],
            "translate-file": ["translate", "-m", s2s_model["model"], "--file", bad]}[command]
    clean_error(run(*args), 2 if (command == "translate-file" and case == "empty") else 1,
                *needles, "no sources")
    assert not (tmp_path / "out.npz").exists()


BAD_PAIR_FILES = {
    "no-tab": ("cat\tK AE T\ndog D AO G\n", ("line 2", "tab")),
    "two-tabs": ("cat\tK AE T\ndog\tD AO G\textra\n", ("line 2", "tab")),
    "empty-source": ("cat\tK AE T\n\tD AO G\n", ("line 2", "empty source")),
    "empty-target": ("cat\tK AE T\ndog\t  \n", ("line 2", "empty target")),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIR_FILES))
def test_malformed_pair_files(run, s2s_model, tmp_path, case):
    content, needles = BAD_PAIR_FILES[case]
    p = tmp_path / "bad.tsv"
    p.write_text(content)
    clean_error(run("train", "--task", "seq2seq", p, "-o", tmp_path / "out.npz", *S2S_TINY, "--max-steps", "1"),
                1, *needles)
    clean_error(run("eval", "-m", s2s_model["model"], p), 1, *needles)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("args,needle", [
    (["translate"], "nothing to translate"),
    (["translate", ""], "empty source"),
    (["translate", "x" * 1001], "at most 1000"),
    (["translate", "--beam", "0", "cat"], "beam width must be at least 1"),
    (["translate", "--beam", "2", "--nbest", "3", "cat"], "nbest must be between 1 and the beam width 2"),
    (["translate", "--max-length", "0", "cat"], "max length must be at least 1"),
    (["translate", "--length-penalty", "-1", "cat"], "length penalty"),
    (["translate", "--attention", "cat"], "--attention needs --json"),
])
def test_translate_usage_errors(run, s2s_model, args, needle):
    clean_error(run(*args, "-m", s2s_model["model"]), 2, needle)


def test_models_of_the_wrong_task(run, s2s_model, task_models, models):
    for command in (["sample"], ["tag", "x"], ["classify", "x"], ["score", "x"]):
        clean_error(run(*command, "-m", s2s_model["model"]), 1, "sequence-to-sequence model (task seq2seq)",
                    "use `charlm translate`")
    for model, noun in ((task_models["ner"], "a tagger"), (models["char"], "a language model")):
        clean_error(run("translate", "-m", model, "x"), 1, f"{noun}", "not `charlm translate`")


def test_seq2seq_option_errors(run, s2s_model, tmp_path):
    pairs, out = s2s_model["pairs"], tmp_path / "out.npz"
    clean_error(run("train", "--task", "seq2seq", pairs, "-o", out, "--level", "word", *S2S_TINY), 2,
                "--level does not apply to --task seq2seq", "--source-level")
    clean_error(run("train", "--task", "seq2seq", pairs, "-o", out, "--source-split", "whitespace", *S2S_TINY), 2,
                "whitespace works only with --level word")
    clean_error(run("train", "--task", "seq2seq", pairs, "-o", out, "--seq-len", "5", *S2S_TINY), 2,
                "--seq-len does not apply to --task seq2seq")
    clean_error(run("train", pairs, "-o", out, "--attention", "dot", *S2S_TINY[:-3]), 2,
                "--attention applies to --task seq2seq")
    clean_error(run("eval", "-m", s2s_model["model"], pairs, "--format", "tab"), 2, "--format applies to taggers")


def test_unknown_source_tokens_are_reported(run, s2s_model, tmp_path):
    r = run("translate", "-m", s2s_model["model"], "cxz")
    assert r.exit_code == 0 and "never saw" in r.stderr and "x z" in r.stderr
    p = tmp_path / "eval.tsv"
    p.write_text("cxz\tK AE T\n")
    r = run("eval", "-m", s2s_model["model"], p, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unknown_source_tokens"] == ["x", "z"] and "<UNK>" in r.stderr


# ------------------------------------------------- the conditional language model (issue 21)

COND_LABELLED = "pos\ta good film\nneg\ta bad film\npos\tso good\nneg\tso bad\n" * 3


@pytest.fixture(scope="module")
def cond_model(tmp_path_factory):
    """A tiny conditional language model (`charlm train --condition`, 2 steps) and its file."""
    d = tmp_path_factory.mktemp("cond")
    (d / "reviews.tsv").write_text(COND_LABELLED, encoding="utf-8")
    r = CliRunner().invoke(cli, ["train", "--condition", str(d / "reviews.tsv"), "-o", str(d / "cond.npz"),
                                 "--hidden", "8", "--embedding", "4", "--label-embedding", "2", "--layers", "1",
                                 "--batch-size", "4", "--max-steps", "2", "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return d / "cond.npz"


@pytest.mark.parametrize("args,code,needle", [
    (["sample", "--label", "meh"], 2, "unknown label 'meh' (the labels are: neg, pos)"),
    (["sample", "--label", "pos", "--label", "meh"], 2, "unknown label 'meh' (the labels are: neg, pos)"),
    (["sample"], 2, "is a conditional language model: give a label (--label; the labels are: neg, pos)"),
    (["score", "a film"], 2, "give a label"),
    (["score", "--label", "meh", "a film"], 2, "unknown label 'meh'"),
    (["score", "--all-labels", "--label", "pos", "a film"], 2, "--all-labels cannot be combined with --label"),
    (["score", "--all-labels", "--per-token", "a film"], 2, "--all-labels cannot be combined with --per-token"),
    (["next", "a"], 2, "give a label"),
    (["classify"], 2, "nothing to classify"),
    (["classify", "-k", "0", "a film"], 2, "--top-k"),
])
def test_conditional_model_usage_errors(run, cond_model, args, code, needle):
    clean_error(run(*args, "-m", cond_model), code, needle)


@pytest.mark.parametrize("args,needle", [
    (["sample", "--label", "pos"], "not a conditional language model"),
    (["score", "--label", "pos", "the cat"], "not a conditional language model"),
    (["score", "--all-labels", "the cat"], "--all-labels needs a conditional language model"),
    (["classify", "the cat"], "is a language model (task lm)"),
])
def test_labels_on_an_unconditional_model(run, models, args, needle):
    clean_error(run(*args, "-m", models["word"]), 1 if args[0] == "classify" else 2, needle)


@pytest.mark.parametrize("content,code,needle", [
    ("pos\tgood\npos\tfine\npos\tgreat\n", 1, "single label ('pos'): a conditional language model needs at least two"),
    ("pos\tgood\nneg\t   \npos\tgreat\n", 1, "line 2: the label 'neg' has no text"),
    ("pos\tgood\n__label__neg bad\npos\tgreat\n", 1, "line 2: a fastText __label__ line in a LABEL<TAB>TEXT file"),
    ("__label__pos good\nneg\tbad\n", 1, "line 2: a LABEL<TAB>TEXT line in a fastText file"),
    ("good\nbad\n", 1, "line 1: no label"),
])
def test_bad_labelled_corpus(run, tmp_path, content, code, needle):
    p = tmp_path / "labelled.txt"
    p.write_text(content, encoding="utf-8")
    clean_error(run("train", "--condition", p, "-o", tmp_path / "m.npz", "--max-steps", "1", "-q"), code, needle)
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("args,needle", [
    (["--label-embedding", "8"], "--label-embedding needs --condition"),
    (["--condition-input", "first"], "--condition-input needs --condition"),
    (["--condition", "--task", "classify"], "--condition applies to --task lm, not to a classifier"),
    (["--condition", "--label-embedding", "0"], "--label-embedding"),
    (["--condition", "--condition-input", "last"], "--condition-input"),
])
def test_conditional_training_options(run, tmp_path, args, needle):
    p = tmp_path / "labelled.txt"
    p.write_text(COND_LABELLED, encoding="utf-8")
    clean_error(run("train", p, "-o", tmp_path / "m.npz", "--max-steps", "1", "-q", *args), 2, needle)


def test_unknown_label_in_the_validation_file(run, tmp_path):
    p, v = tmp_path / "labelled.txt", tmp_path / "val.txt"
    p.write_text(COND_LABELLED, encoding="utf-8")
    v.write_text("pos\tfine\nmeh\tso so\n", encoding="utf-8")
    clean_error(run("train", "--condition", p, "--val-file", v, "-o", tmp_path / "m.npz", "-q"), 1,
                "unknown label 'meh' (the labels are: neg, pos)")

def test_a_text_too_long_to_train_whole(run, tmp_path, monkeypatch):
    """The lines form back-propagates each text whole: one that cannot fit in memory (here: 1 MiB
    available) is refused with one line that names the stream form, before anything is written."""
    from charlm.engine import memory
    p = tmp_path / "labelled.txt"
    p.write_text(COND_LABELLED + "pos\t" + "so good " * 4000 + "\n", encoding="utf-8")
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 20)
    clean_error(run("train", "--condition", p, "-o", tmp_path / "m.npz", "--max-steps", "1", "-q"), 2,
                "the longest text has 32,001 tokens", "--mode stream")
    assert not (tmp_path / "m.npz").exists()

# ------------------------------------------------------------------------------------------ charlm export

@pytest.mark.parametrize("case,code,needles", [
    ("not-a-model", 1, ("is not a charlm model file",)),
    ("onto-the-model", 2, ("is the model", "never writes over one of its inputs")),
    ("onto-a-foreign-file", 2, ("exists and is not a charlm onnx export", "--force")),
    ("a-layer-it-does-not-know", 2, ("cannot write this lm model", "out.W, out.b")),
    ("a-task-it-does-not-know", 2, ("cannot write a language model (task lm) yet",)),
])
def test_export_bad_inputs(run, models, tmp_path, monkeypatch, case, code, needles):
    pytest.importorskip("onnx", reason="the export extra is not installed: pip install 'charlm[export]'")
    import dataclasses

    from charlm.export import builders
    from charlm.tasks import lm

    model, out = models["char"], tmp_path / "out.onnx"
    if case == "not-a-model":
        model = tmp_path / "notes.txt"
        model.write_text("not a model\n")
    elif case == "onto-the-model":
        out = model
    elif case == "onto-a-foreign-file":
        out.write_text("my notes\n")
    elif case == "a-layer-it-does-not-know":          # as a tagger with a CRF would be: parameters no builder reads
        monkeypatch.setitem(builders.EXPORTERS, lm.TASK,
                            dataclasses.replace(builders.EXPORTERS[lm.TASK], reads=("embed.", "rnn.")))
    else:                                             # as a sequence-to-sequence model would be
        monkeypatch.delitem(builders.EXPORTERS, lm.TASK)
    before = out.read_bytes() if out.exists() else None
    clean_error(run("export", "-m", model, "-o", out, "--no-check"), code, *needles)
    assert (out.read_bytes() if out.exists() else None) == before
    if case == "onto-a-foreign-file":                 # --force replaces it; a charlm export needs no --force
        assert run("export", "-m", model, "-o", out, "--no-check", "--force").exit_code == 0
        assert run("export", "-m", model, "-o", out, "--no-check").exit_code == 0


def test_export_without_the_extra_says_what_to_install(run, models, tmp_path, monkeypatch):
    out = tmp_path / "out.onnx"
    monkeypatch.setitem(sys.modules, "onnx", None)
    line = clean_error(run("export", "-m", models["char"], "-o", out), 1)
    assert line == "charlm: error: charlm export needs onnx: pip install 'charlm[export]'"
    assert not out.exists()


def test_export_check_without_onnxruntime_says_what_to_install(run, models, tmp_path, monkeypatch):
    pytest.importorskip("onnx", reason="the export extra is not installed: pip install 'charlm[export]'")
    out = tmp_path / "out.onnx"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    line = clean_error(run("export", "-m", models["char"], "-o", out, "--check"), 1)
    assert line == "charlm: error: checking an export needs onnxruntime: pip install 'charlm[export]'"
    assert not out.exists()
    r = run("export", "-m", models["char"], "-o", out)       # the check on by default only with onnxruntime
    assert r.exit_code == 0 and out.exists() and r.stdout == ""
    assert "not checked: checking an export needs onnxruntime: pip install 'charlm[export]'" in r.stderr
