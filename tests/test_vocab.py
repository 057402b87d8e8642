"""The vocabulary (charlm.text.vocab): ids, limits, the JSON file and corpus statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.errors import CharlmError, UsageError
from charlm.text.tokenizer import TokenizerConfig
from charlm.text.vocab import EOS, UNK, Vocab, count_summary


def test_vocab_order_is_count_then_token():
    vocab = Vocab.from_counts({"b": 2, "a": 2, "c": 5, "d": 1, EOS: 3})
    assert vocab.tokens == [UNK, EOS, "c", "a", "b", "d"]
    assert vocab.counts == [0, 3, 5, 2, 2, 1]
    assert (vocab.unk_id, vocab.eos_id, len(vocab)) == (0, 1, 6)
    assert vocab.index["a"] == 3


def test_vocab_min_count_and_max_vocab():
    counts = {"a": 5, "b": 3, "c": 3, "d": 1, "e": 1}
    v = Vocab.from_counts(counts, min_count=2)
    assert v.tokens == [UNK, EOS, "a", "b", "c"] and v.counts[0] == 2
    v = Vocab.from_counts(counts, max_vocab=4)  # the two specials count
    assert v.tokens == [UNK, EOS, "a", "b"] and v.counts[0] == 5
    v = Vocab.from_counts(counts, max_vocab=2)
    assert v.tokens == [UNK, EOS] and v.counts[0] == 13
    assert Vocab.from_counts({}).tokens == [UNK, EOS]


@pytest.mark.parametrize("kw", [{"min_count": 0}, {"min_count": -1}, {"max_vocab": 1}])
def test_vocab_rejects_bad_limits(kw):
    with pytest.raises(UsageError):
        Vocab.from_counts({"a": 1}, **kw)


def test_encode_decode_and_unknown_tokens():
    vocab = Vocab.from_counts({"a": 2, "b": 1})
    ids = vocab.encode(["a", "b", "zzz", "<unk>"])
    assert ids.dtype == np.int32 and ids.tolist() == [2, 3, 0, 0]
    assert vocab.decode(np.array([2, 3, 0, 1])) == ["a", "b", UNK, EOS]
    assert vocab.encode([]).shape == (0,)
    with pytest.raises(CharlmError):
        vocab.decode([99])


def test_vocab_json_round_trip(tmp_path):
    cfg = TokenizerConfig(level="word", mode="stream", lowercase=True)
    vocab = Vocab.from_counts({"\n": 4, "é": 2, " ": 1, "a": 1}, min_count=1, max_vocab=5,
                              tokenizer=cfg)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["format"] == "charlm-vocab" and d["version"] == 1
    assert d["tokenizer"]["level"] == "word" and d["max_vocab"] == 5
    back = Vocab.load(path)
    assert back.tokens == vocab.tokens and back.counts == vocab.counts
    assert back.tokenizer == cfg and (back.min_count, back.max_vocab) == (1, 5)
    assert Vocab.from_dict(vocab.to_dict()).to_dict() == vocab.to_dict()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "change",
    [
        {"format": "something-else"},
        {"version": 2},
        {"version": "1"},
        {"tokens": ["a", "b"]},
        {"tokens": [UNK, EOS, "a", "a"], "counts": [0, 0, 1, 1]},
        {"counts": [0, 0]},
        {"counts": [0, 0, -1]},
        {"tokenizer": {"level": "char", "split": "whitespace"}},
        {"min_count": 0},
    ],
)
def test_vocab_from_dict_rejects_nonsense(change):
    d = Vocab.from_counts({"a": 1}).to_dict()
    d.update(change)
    with pytest.raises(CharlmError):
        Vocab.from_dict(d)


def test_vocab_load_errors(tmp_path):
    with pytest.raises(CharlmError, match="no such vocabulary"):
        Vocab.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CharlmError, match="cannot read vocabulary"):
        Vocab.load(bad)


def test_count_summary():
    counts = {"a": 6, "b": 2, "c": 1, "<unk>": 1, EOS: 3}
    vocab = Vocab.from_counts(counts, min_count=2)
    s = count_summary(counts, vocab, top=2)
    assert (s["tokens"], s["sentences"], s["types"], s["singletons"]) == (10, 3, 4, 2)
    assert (s["kept_types"], s["oov_tokens"], s["vocab_size"]) == (2, 2, 4)
    assert s["oov_rate"] == pytest.approx(0.2) and s["kept_share"] == pytest.approx(0.8)
    assert s["top"] == [("a", 6), ("b", 2)]
