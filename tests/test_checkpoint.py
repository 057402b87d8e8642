"""Checkpoints: round trip, atomic saves, and refusal of every unsafe or broken file."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from charlm import checkpoint as ckpt
from charlm.errors import CheckpointError
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.tasks import load as load_model
from charlm.text.tokenizer import TokenizerConfig
from charlm.text.vocab import Vocab


def sample_arrays():
    rng = np.random.default_rng(0)
    return {"param/rnn.0.W": rng.normal(size=(5, 12)).astype(np.float32),
            "param/out.b": np.zeros(3, np.float64),
            "optim/m.rnn.0.W": rng.normal(size=(5, 12)).astype(np.float32),
            "extra/ids": np.arange(7, dtype=np.int32)}


META = {"kind": "last", "train": {"step": 12, "loss": np.float32(1.25), "hist": [1, 2]}}


def write_raw(path, members, meta=None):
    """An .npz written by hand (no charlm checks): members {name: array}, meta dict or bytes."""
    with zipfile.ZipFile(path, "w") as zf:
        if meta is not None:
            blob = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
            with zf.open("__meta__.npy", "w") as f:
                np.save(f, np.frombuffer(blob, np.uint8))
        for name, arr in members.items():
            with zf.open(name + ".npy", "w") as f:
                np.save(f, arr, allow_pickle=True)


def good_meta(**kw):
    return dict({"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION}, **kw)


# -- save / load ------------------------------------------------------------------

def test_round_trip(tmp_path):
    path = tmp_path / "m.npz"
    arrays = sample_arrays()
    ckpt.save_checkpoint(path, arrays, META)
    got, meta = ckpt.load_checkpoint(path)
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype
        np.testing.assert_array_equal(got[k], v)
    assert meta["format"] == ckpt.FORMAT and meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["kind"] == "last" and meta["train"] == {"step": 12, "loss": 1.25, "hist": [1, 2]}
    assert "charlm_version" in meta
    assert os.listdir(tmp_path) == ["m.npz"]  # no temp file left behind
    with np.load(path, allow_pickle=False) as z:  # a plain npz: readable without charlm
        assert "param/rnn.0.W" in z.files


def test_overwrite_replaces_previous(tmp_path):
    path = str(tmp_path / "m.npz")
    ckpt.save_checkpoint(path, {"a": np.ones(2)}, {})
    ckpt.save_checkpoint(path, {"b": np.zeros(3)}, {})
    got, _ = ckpt.load_checkpoint(path)
    assert list(got) == ["b"]


def test_arrays_under_and_model_arrays():
    arrays = sample_arrays()
    assert set(ckpt.arrays_under(arrays, "optim")) == {"m.rnn.0.W"}
    assert set(ckpt.arrays_under(arrays, "param/")) == {"rnn.0.W", "out.b"}

    class M:
        params = {"embed.W": np.ones((2, 2))}
    out = ckpt.model_arrays(M)
    assert list(out) == ["param/embed.W"] and out["param/embed.W"] is M.params["embed.W"]


def _failing_writer(calls_before_failure):
    """A write_array that writes half an array then fails with ENOSPC on the n-th call."""
    real = np.lib.format.write_array
    count = {"n": 0}

    def writer(f, arr, **kw):
        count["n"] += 1
        if count["n"] == calls_before_failure:
            buf = io.BytesIO()
            real(buf, arr, **kw)
            f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            raise OSError(28, "No space left on device")
        return real(f, arr, **kw)
    return writer


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    ckpt.save_checkpoint(path, sample_arrays(), META)
    before = path.read_bytes()
    monkeypatch.setattr(ckpt, "_write_array", _failing_writer(3))
    new = {k: v + 1 for k, v in sample_arrays().items()}
    with pytest.raises(CheckpointError, match=r"could not save checkpoint to .*m\.npz: "
                                              r"No space left on device; the previous file is intact"):
        ckpt.save_checkpoint(path, new, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    ckpt.load_checkpoint(path)  # still a good checkpoint


def test_failed_first_save_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "_write_array", _failing_writer(2))
    with pytest.raises(CheckpointError, match="no file was written"):
        ckpt.save_checkpoint(tmp_path / "m.npz", sample_arrays(), META)
    assert os.listdir(tmp_path) == []


def test_interrupted_save_cleans_up_and_propagates(tmp_path, monkeypatch):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt, "_write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "m.npz", sample_arrays(), META)
    assert os.listdir(tmp_path) == []


def test_save_refuses_object_arrays_and_bad_meta(tmp_path):
    with pytest.raises(CheckpointError, match="dtype object"):
        ckpt.save_checkpoint(tmp_path / "m.npz", {"x": np.array([{}], dtype=object)}, {})
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        ckpt.save_checkpoint(tmp_path / "m.npz", {}, {"x": object()})
    with pytest.raises(CheckpointError, match="could not save checkpoint"):
        ckpt.save_checkpoint(tmp_path / "no" / "such" / "dir" / "m.npz", {}, {})
    assert os.listdir(tmp_path) == []


# -- refusals -----------------------------------------------------------------------

def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        ckpt.load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="is not a file"):
        ckpt.load_checkpoint(tmp_path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a model\n")
    with pytest.raises(CheckpointError, match=r"notes\.txt is not a charlm model file$"):
        ckpt.load_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    ckpt.save_checkpoint(path, sample_arrays(), META)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="m.npz is truncated or corrupt"):
        ckpt.load_checkpoint(path)


def test_corrupt_member(tmp_path):
    path = tmp_path / "m.npz"
    ckpt.save_checkpoint(path, {"w": np.arange(1000, dtype=np.float64)}, META)
    data = bytearray(path.read_bytes())
    i = data.index(np.arange(1000, dtype=np.float64)[500:504].tobytes())
    data[i:i + 8] = b"\xff" * 8  # flip bytes inside the array: the zip CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(path)


def test_no_meta(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(CheckpointError, match="not a charlm model file"):
        ckpt.load_checkpoint(path)


def test_bad_json_meta(tmp_path):
    path = tmp_path / "m.npz"
    write_raw(path, {"w": np.ones(2)}, meta=b"{not json")
    with pytest.raises(CheckpointError, match="corrupt metadata"):
        ckpt.load_checkpoint(path)


def test_wrong_format(tmp_path):
    path = tmp_path / "m.npz"
    write_raw(path, {"w": np.ones(2)}, meta={"format": "someone-else", "format_version": 1})
    with pytest.raises(CheckpointError, match="not a charlm model file"):
        ckpt.load_checkpoint(path)


def test_newer_version(tmp_path):
    path = tmp_path / "m.npz"
    write_raw(path, {"w": np.ones(2)}, meta=good_meta(format_version=ckpt.FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError,
                       match=r"made by a newer charlm \(format 2 > 1\): upgrade charlm"):
        ckpt.load_checkpoint(path)


class Booby:
    """Unpickling this creates a marker file (via builtins.open)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    arr = np.array([Booby(str(marker))], dtype=object)
    # sanity: this payload really does fire when unpickled
    probe = tmp_path / "probe.npy"
    np.save(probe, np.array([Booby(str(tmp_path / "probe-fired"))], dtype=object),
            allow_pickle=True)
    np.load(probe, allow_pickle=True)
    assert (tmp_path / "probe-fired").exists()

    path = tmp_path / "m.npz"
    write_raw(path, {"param/evil": arr, "param/w": np.ones(2)}, meta=good_meta())
    with pytest.raises(CheckpointError, match="object array .*param/evil.*refusing"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(tmp_path, bad):
    path = tmp_path / "m.npz"
    w = np.ones((2, 3), np.float32)
    w[1, 2] = bad
    ckpt.save_checkpoint(path, {"param/embed.W": np.ones(2), "param/rnn.0.W": w}, META)
    with pytest.raises(CheckpointError, match=r"contains NaN/inf in param/rnn\.0\.W: the model "
                                              r"is corrupt; retrain or use an earlier checkpoint"):
        ckpt.load_checkpoint(path)


# -- loading a model (charlm.tasks.load) ---------------------------------------------------------------------

def make_vocab(n_types):
    """A Vocab with n_types tokens: UNK, EOS and n_types-2 letters."""
    letters = "abcdefghijklmnopqrstuvwxyz"[:n_types - 2]
    counts = {ch: 10 + i for i, ch in enumerate(letters)}
    return Vocab.from_counts(counts, tokenizer=TokenizerConfig())


@pytest.fixture
def saved_model(tmp_path):
    vocab = make_vocab(6)
    config = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=8, embedding=4,
                         peephole=True)
    model = LanguageModel(config, seed=3)
    path = tmp_path / "m.npz"

    def save(arrays=None, model_meta=None, vocab_meta=None):
        meta = {"kind": "best", "model": model_meta or config.to_dict(),
                "vocab": vocab_meta or vocab.to_dict(), "train": {}}
        ckpt.save_checkpoint(path, ckpt.model_arrays(model) if arrays is None else arrays, meta)
        return path
    return model, vocab, save


def test_load_model_round_trip(saved_model):
    model, vocab, save = saved_model
    m = load_model(save())
    loaded, v2, meta = m.network, m.vocab, m.meta
    assert loaded.config == model.config and meta["kind"] == "best"
    assert len(v2) == len(vocab) and v2.tokens == vocab.tokens
    assert set(loaded.params) == set(model.params)
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
        assert loaded.params[k].dtype == np.float32


def test_load_model_casts_float64_params(saved_model):
    model, _, save = saved_model
    arrays = {k: v.astype(np.float64) for k, v in ckpt.model_arrays(model).items()}
    loaded = load_model(save(arrays)).network
    assert all(p.dtype == np.float32 for p in loaded.params.values())


def test_load_model_refuses_mismatches(saved_model):
    model, vocab, save = saved_model
    good = ckpt.model_arrays(model)
    bad_shape = dict(good, **{"param/rnn.1.W": np.zeros((3, 3), np.float32)})
    missing = {k: v for k, v in good.items() if k != "param/out.b"}
    extra = dict(good, **{"param/rnn.9.W": np.zeros(2, np.float32)})
    ints = dict(good, **{"param/out.b": np.zeros(6, np.int64)})
    for arrays, what in [(bad_shape, "rnn.1.W"), (missing, "out.b"), (extra, "rnn.9.W"),
                         (ints, "dtype int64")]:
        with pytest.raises(CheckpointError, match=what):
            load_model(save(arrays))
    with pytest.raises(CheckpointError, match="does not match its model settings"):
        load_model(save(model_meta=dict(model.config.to_dict(), hidden=9)))
    with pytest.raises(CheckpointError, match="vocabulary has 6 tokens but the model expects 7"):
        load_model(save(model_meta=dict(model.config.to_dict(), vocab_size=7)))
    with pytest.raises(CheckpointError, match="bad model settings"):
        load_model(save(model_meta={"vocab_size": 6, "cell": "transformer"}))


def test_load_model_needs_model_and_vocab(tmp_path):
    path = tmp_path / "m.npz"
    ckpt.save_checkpoint(path, {}, {"kind": "best"})
    with pytest.raises(CheckpointError, match="no model settings"):
        load_model(path)
