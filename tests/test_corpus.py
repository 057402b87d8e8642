"""Corpus reading, vocabulary building, splitting, batching and windows."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm import corpus
from charlm.corpus import batchify, build_vocab, fit_batch, iter_windows, read_corpus, split_point
from charlm.errors import DataError, UsageError
from charlm.tokenizer import Tokenizer, TokenizerConfig
from charlm.vocab import EOS, UNK

DATA = Path(__file__).resolve().parent.parent / "data"


def tok(**kw):
    return Tokenizer(TokenizerConfig(**kw))


def write(tmp_path, text, name="c.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- read_corpus --------------------------------------------------------------------

def test_lines_mode_layout(tmp_path):
    path = write(tmp_path, "ab\n\ncab\n")
    ids, types = read_corpus(path, tok(level="char", mode="lines"))
    assert types == [EOS, "a", "b", "c"]
    assert ids.dtype == np.int32
    assert ids.tolist() == [0, 1, 2, 0, 3, 1, 2, 0]  # [EOS, a b, EOS, c a b, EOS]


def test_word_lines_mode(tmp_path):
    path = write(tmp_path, "the cat sat\nthe dog\n")
    ids, types = read_corpus(str(path), tok(level="word"))
    assert [types[i] for i in ids] == [EOS, "the", "cat", "sat", EOS, "the", "dog", EOS]


def test_stream_mode_keeps_newlines(tmp_path):
    text = "ab\nba\n\nc"
    ids, types = read_corpus(write(tmp_path, text), tok(level="char"))
    assert "".join(types[i] for i in ids) == text
    assert types == ["a", "b", "\n", "c"]


def test_file_object_source():
    ids, types = read_corpus(io.StringIO("xyx\n"), tok(level="char", mode="lines"))
    assert [types[i] for i in ids] == [EOS, "x", "y", "x", EOS]


@pytest.mark.parametrize("text", ["", "   \n\n \t\n", "\n"])
@pytest.mark.parametrize("kw", [{"level": "char"}, {"level": "char", "mode": "lines"},
                                {"level": "word"}, {"level": "word", "mode": "stream"}])
def test_empty_or_blank_corpus_is_refused(tmp_path, text, kw):
    with pytest.raises(DataError, match="empty"):
        read_corpus(write(tmp_path, text), tok(**kw))


def test_chunked_and_spilled_reads_agree(tmp_path, monkeypatch):
    text = "".join(f"line {i} of the corpus\n" for i in range(60))
    path = write(tmp_path, text)
    plain, types = read_corpus(path, tok(level="char"))
    assert not isinstance(plain, np.memmap)

    monkeypatch.setattr(corpus, "CHUNK_TOKENS", 7)
    chunked, types2 = read_corpus(path, tok(level="char"))
    assert not isinstance(chunked, np.memmap)
    np.testing.assert_array_equal(chunked, plain)

    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    monkeypatch.setattr(corpus.tempfile, "tempdir", str(spill_dir))
    monkeypatch.setattr(corpus, "SPILL_TOKENS", 50)
    spilled, types3 = read_corpus(path, tok(level="char"))
    assert isinstance(spilled, np.memmap) and spilled.dtype == np.int32
    np.testing.assert_array_equal(spilled, plain)
    assert types == types2 == types3 and len(plain) == len(text)
    assert os.listdir(spill_dir) == []  # the temporary file is unlinked (mapping stays valid)

    # build_vocab remaps a memmap in place, chunk by chunk
    vocab, ids = build_vocab(spilled, types3, len(spilled), 1, None, TokenizerConfig())
    _, ids_plain = build_vocab(plain, types, len(plain), 1, None, TokenizerConfig())
    assert ids is spilled
    np.testing.assert_array_equal(np.asarray(ids), ids_plain)


def test_real_corpus_file():
    ids, types = read_corpus(DATA / "dinos.txt", tok(level="char", mode="lines"))
    n_lines = sum(1 for line in (DATA / "dinos.txt").read_text().splitlines() if line.strip())
    assert int((ids == 0).sum()) == n_lines + 1
    assert ids[0] == 0 and ids[-1] == 0


# -- build_vocab --------------------------------------------------------------------

def test_build_vocab_counts_training_part_only(tmp_path):
    # training: "aab" + EOS tokens; validation adds "z" (never seen in training) -> UNK
    cfg = TokenizerConfig(level="char", mode="lines")
    ids, types = read_corpus(write(tmp_path, "aab\nab\nzza\n"), Tokenizer(cfg))
    n_train = 8  # [EOS a a b EOS a b EOS] | z z a EOS
    vocab, out = build_vocab(ids, types, n_train, 1, None, cfg)
    assert vocab.tokens == [UNK, EOS, "a", "b"]
    assert vocab.counts[1:] == [2, 3, 2]  # EOS counts sentences (2 in training)
    assert out.dtype == np.int32
    assert vocab.decode(out) == [EOS, "a", "a", "b", EOS, "a", "b", EOS, UNK, UNK, "a", EOS]
    assert vocab.tokenizer == cfg


def test_build_vocab_min_count_max_vocab_and_stream_eos(tmp_path):
    cfg = TokenizerConfig(level="char")
    ids, types = read_corpus(write(tmp_path, "aaaabbbcc d"), Tokenizer(cfg))
    vocab, out = build_vocab(ids, types, len(ids), 2, None, cfg)
    assert vocab.tokens == [UNK, EOS, "a", "b", "c"]  # EOS present though never seen
    assert vocab.decode(out)[-3:] == ["c", UNK, UNK]  # " " and "d" are seen only once
    vocab, out = build_vocab(ids, types, len(ids), 1, 3, cfg)
    assert vocab.tokens == [UNK, EOS, "a"]
    assert int((out == vocab.unk_id).sum()) == len(ids) - 4


@pytest.mark.parametrize("split", ["whitespace", "regex"])
def test_literal_unk_maps_to_unk(tmp_path, split):
    cfg = TokenizerConfig(level="word", split=split)
    ids, types = read_corpus(write(tmp_path, "a <unk> b\n<UNK> a\n"), Tokenizer(cfg))
    vocab, out = build_vocab(ids, types, len(ids), 1, None, cfg)
    assert "<unk>" not in vocab.tokens
    assert vocab.decode(out) == [EOS, "a", UNK, "b", EOS, UNK, "a", EOS]
    assert vocab.counts[0] == 2


# -- split_point ----------------------------------------------------------------------

def test_split_point_values():
    assert split_point(100, 0.1) == 90
    assert split_point(100, 0) == 100
    assert split_point(10, 0.01) == 8      # at least 2 validation tokens
    assert split_point(4, 0.5) == 2
    with pytest.raises(DataError, match="too small"):
        split_point(3, 0.5)
    with pytest.raises(DataError):
        split_point(1, 0.0)
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(UsageError):
            split_point(100, bad)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 10_000), frac=st.floats(0.0001, 0.9999))
def test_split_point_property(n, frac):
    n_val = max(2, round(n * frac))
    try:
        k = split_point(n, frac)
    except DataError:
        assert n - n_val < 2
        return
    assert n - k == n_val and k >= 2 and n - k >= 2  # validation is the last n_val tokens


# -- fit_batch ----------------------------------------------------------------------

def test_fit_batch():
    assert fit_batch(10_000, 32, 100) == (32, 100, None)
    assert fit_batch(32 * 101, 32, 100) == (32, 100, None)
    b, t, warning = fit_batch(32 * 101 - 1, 32, 100)
    assert (b, t) == (31, 100) and "using batch 31 x seq-len 100" in warning
    assert fit_batch(50, 8, 100)[:2] == (1, 49)
    assert fit_batch(3, 8, 100)[:2] == (1, 2)
    assert fit_batch(3, 2, 1) == (1, 1, fit_batch(3, 2, 1)[2]) and fit_batch(3, 2, 1)[2]
    with pytest.raises(DataError, match="too small"):
        fit_batch(2, 8, 100)
    with pytest.raises(UsageError):
        fit_batch(100, 0, 10)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 5000), b=st.integers(1, 64), t=st.integers(1, 300))
def test_fit_batch_property(n, b, t):
    b2, t2, warning = fit_batch(n, b, t)
    assert 1 <= b2 <= b and 1 <= t2 <= t
    assert n // b2 >= t2 + 1                     # every stream holds a full window + target
    assert (warning is None) == ((b2, t2) == (b, t))
    data = batchify(np.arange(n), b2)
    assert data.shape == (n // b2, b2)
    pos, x, y = next(iter_windows(data, t2))
    assert x.shape == (t2, b2)


# -- batchify / iter_windows -----------------------------------------------------------

def test_batchify_streams_are_contiguous():
    ids = np.arange(23, dtype=np.int32)
    data = batchify(ids, 4)
    assert data.shape == (5, 4) and data.flags.c_contiguous and data.dtype == np.int32
    for b in range(4):
        np.testing.assert_array_equal(data[:, b], ids[b * 5:(b + 1) * 5])
    with pytest.raises(DataError):
        batchify(np.arange(5), 4)


def test_iter_windows_targets_and_resume():
    data = batchify(np.arange(60), 3)  # (20, 3)
    windows = list(iter_windows(data, 7))
    assert [pos for pos, _, _ in windows] == [0, 7, 14]
    assert [x.shape for _, x, _ in windows] == [(7, 3), (7, 3), (5, 3)]
    xs = np.concatenate([x for _, x, _ in windows])
    ys = np.concatenate([y for _, _, y in windows])
    np.testing.assert_array_equal(xs, data[:-1])
    np.testing.assert_array_equal(ys, data[1:])
    np.testing.assert_array_equal(ys, xs + 1)  # the target is the next token of the stream
    resumed = list(iter_windows(data, 7, start=7))
    assert [p for p, _, _ in resumed] == [7, 14]
    np.testing.assert_array_equal(resumed[0][1], windows[1][1])
    assert list(iter_windows(data, 7, start=19)) == []
    with pytest.raises(UsageError):
        list(iter_windows(data, 0))
