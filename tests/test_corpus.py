"""Corpus reading, vocabulary building, splitting, batching and windows."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.text import reader, tokenids
from charlm.lm.corpus import (MappedStreams, batchify, build_vocab, fit_batch, iter_windows, lookup_table, split_point,
                           training_counts)
from charlm.errors import DataError, UsageError
from charlm.text.tokenids import tokenize_ids
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, UNK

DATA = Path(__file__).resolve().parent.parent / "data"


def tok(**kw):
    return Tokenizer(TokenizerConfig(**kw))


def write(tmp_path, text, name="c.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- tokenize_ids: layout --------------------------------------------------------------

def decoded(tids):
    return [tids.types[i] for i in tids.ids]


def test_lines_mode_layout(tmp_path):
    path = write(tmp_path, "ab\n\ncab\n")
    tids = tokenize_ids(path, tok(level="char", mode="lines"))
    assert tids.ids.dtype == np.uint8 and tids.types[0] == EOS
    assert decoded(tids) == [EOS, "a", "b", EOS, "c", "a", "b", EOS]
    np.testing.assert_array_equal(tids.counts, np.bincount(tids.ids, minlength=len(tids.types)))


def test_word_lines_mode(tmp_path):
    path = write(tmp_path, "the cat sat\nthe dog\n")
    assert decoded(tokenize_ids(str(path), tok(level="word"))) == [EOS, "the", "cat", "sat", EOS, "the", "dog", EOS]


def test_stream_mode_keeps_newlines(tmp_path):
    text = "ab\nba\n\nc"
    tids = tokenize_ids(write(tmp_path, text), tok(level="char"))
    assert "".join(decoded(tids)) == text
    assert tids.types == ["a", "b", "\n", "c"] and tids.mode == "stream"


def test_file_object_source():
    assert decoded(tokenize_ids(io.StringIO("xyx\n"), tok(level="char", mode="lines"))) == [EOS, "x", "y", "x", EOS]


@pytest.mark.parametrize("text", ["", "   \n\n \t\n", "\n"])
@pytest.mark.parametrize("kw", [{"level": "char"}, {"level": "char", "mode": "lines"},
                                {"level": "word"}, {"level": "word", "mode": "stream"}])
def test_empty_or_blank_corpus_is_refused(tmp_path, text, kw):
    with pytest.raises(DataError, match="empty"):
        tokenize_ids(write(tmp_path, text), tok(**kw))


def reference_stream(source, tokenizer) -> list[str]:
    """The token stream as the tokenizer defines it, sentence by sentence (the in-memory path):
    lines mode [EOS, s1..., EOS, s2..., EOS], stream mode the tokens ("\n" included)."""
    if tokenizer.config.mode == "lines":
        return [EOS] + [t for s in tokenizer.iter_sentences(source) for t in s + [EOS]]
    return [t for s in tokenizer.iter_sentences(source) for t in s]


TRICKY = ("Hello World\r\n\u0130stanbul \u03a3\u0391\u03a3 \u03c2 <unk> a\n\n   \n\t x\n<EOS> b <UNK>\n"
          "e\u0301 \U0001F44D\U0001F3FD  no-final-newline's 3.14")
CONFIGS = [dict(level="char"), dict(level="char", mode="lines"), dict(level="char", lowercase=True),
           dict(level="char", graphemes=True, mode="lines"), dict(level="word"),
           dict(level="word", mode="stream", lowercase=True), dict(level="word", split="whitespace")]


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_ids_equal_the_reference_at_every_chunk_boundary(tmp_path, monkeypatch, kw, chunk):
    """Tiny reading chunks (every boundary), tiny id buffers (flushed every 3 ids, spilled to a
    file after 5): the same tokens, counts and ids in memory, in a temporary file, in a given file."""
    path = write(tmp_path, TRICKY * 3)
    want = reference_stream(path, tok(**kw))
    monkeypatch.setattr(reader, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(tokenids, "FLUSH_TOKENS", 3)
    for spill in (1 << 30, 5):
        monkeypatch.setattr(tokenids, "SPILL_TOKENS", spill)
        tids = tokenize_ids(path, tok(**kw))
        assert isinstance(tids.ids, np.memmap) == (spill == 5)
        assert decoded(tids) == want
        np.testing.assert_array_equal(tids.counts, np.bincount(tids.ids, minlength=len(tids.types)))
    on_disk = tokenize_ids(path, tok(**kw), path=str(tmp_path / "ids.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy", mmap_mode="r"), on_disk.ids)
    assert decoded(on_disk) == want


@pytest.mark.parametrize("n_types,dtype", [(256, np.uint8), (257, np.uint16), (65_536, np.uint16),
                                           (65_537, np.int32)])
def test_smallest_id_type_widened_on_the_way(tmp_path, monkeypatch, n_types, dtype):
    """Word level, n_types distinct words, written 1,000 ids at a time: the file starts as uint8
    and is widened as types arrive; the ids stay exact."""
    words = [f"w{i}" for i in range(n_types - 1)]
    text = " ".join(words[:200]) + "\n" + " ".join(words) + "\n" + " ".join(words[:50])
    path = write(tmp_path, text)
    monkeypatch.setattr(tokenids, "FLUSH_TOKENS", 1000)
    tids = tokenize_ids(path, tok(level="word", mode="stream", split="whitespace"), path=str(tmp_path / "ids.npy"))
    assert len(tids.types) == n_types and tids.ids.dtype == dtype  # the words and "\n"
    assert decoded(tids) == reference_stream(path, tok(level="word", mode="stream", split="whitespace"))
    assert np.load(tmp_path / "ids.npy").dtype == dtype
    assert tokenids.id_dtype(n_types) == dtype


def test_real_corpus_file():
    tids = tokenize_ids(DATA / "dinos.txt", tok(level="char", mode="lines"))
    n_lines = sum(1 for line in (DATA / "dinos.txt").read_text().splitlines() if line.strip())
    assert int((tids.ids == 0).sum()) == n_lines + 1
    assert tids.ids[0] == 0 and tids.ids[-1] == 0


# -- training_counts / build_vocab / lookup_table -------------------------------------------

def vocab_and_ids(tids, n_train, min_count=1, max_vocab=None, cfg=None):
    vocab = build_vocab(training_counts(tids, n_train), tids.types, min_count, max_vocab, cfg)
    return vocab, lookup_table(vocab, tids.types)[tids.ids]


def test_build_vocab_counts_training_part_only(tmp_path):
    # training: "aab" + EOS tokens; validation adds "z" (never seen in training) -> UNK
    cfg = TokenizerConfig(level="char", mode="lines")
    tids = tokenize_ids(write(tmp_path, "aab\nab\nzza\n"), Tokenizer(cfg))
    n_train = 8  # [EOS a a b EOS a b EOS] | z z a EOS
    vocab, out = vocab_and_ids(tids, n_train, cfg=cfg)
    assert vocab.tokens == [UNK, EOS, "a", "b"]
    assert vocab.counts[1:] == [2, 3, 2]  # EOS counts sentences (2 in training)
    assert out.dtype == np.int32
    assert vocab.decode(out) == [EOS, "a", "a", "b", EOS, "a", "b", EOS, UNK, UNK, "a", EOS]
    assert vocab.tokenizer == cfg
    for n_train in range(1, len(tids.ids) + 1):  # counted from either side of the split
        want = np.bincount(tids.ids[:n_train], minlength=len(tids.types))
        want[0] -= 1
        np.testing.assert_array_equal(training_counts(tids, n_train), want)


def test_build_vocab_min_count_max_vocab_and_stream_eos(tmp_path):
    cfg = TokenizerConfig(level="char")
    tids = tokenize_ids(write(tmp_path, "aaaabbbcc d"), Tokenizer(cfg))
    n = len(tids.ids)
    vocab, out = vocab_and_ids(tids, n, 2, None, cfg)
    assert vocab.tokens == [UNK, EOS, "a", "b", "c"]  # EOS present though never seen
    assert vocab.decode(out)[-3:] == ["c", UNK, UNK]  # " " and "d" are seen only once
    vocab, out = vocab_and_ids(tids, n, 1, 3, cfg)
    assert vocab.tokens == [UNK, EOS, "a"]
    assert int((out == vocab.unk_id).sum()) == n - 4


@pytest.mark.parametrize("split", ["whitespace", "regex"])
def test_literal_unk_maps_to_unk(tmp_path, split):
    cfg = TokenizerConfig(level="word", split=split)
    tids = tokenize_ids(write(tmp_path, "a <unk> b\n<UNK> a\n"), Tokenizer(cfg))
    vocab, out = vocab_and_ids(tids, len(tids.ids), cfg=cfg)
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


def test_mapped_streams_read_rows_through_the_lookup():
    ids = np.arange(24, dtype=np.uint8) % 5
    lookup = np.array([7, 8, 9, 10, 11], dtype=np.int32)
    data = MappedStreams(batchify(ids, 4), lookup)
    plain = lookup[batchify(ids, 4)]
    assert data.shape == (6, 4) and len(data) == 6
    np.testing.assert_array_equal(data[1:4], plain[1:4])
    cols = data[:, 1::2]
    assert isinstance(cols, MappedStreams) and cols.shape == (6, 2)
    np.testing.assert_array_equal(np.asarray(cols), plain[:, 1::2])
    windows = list(iter_windows(data, 4))
    np.testing.assert_array_equal(np.concatenate([x for _, x, _ in windows]), plain[:-1])


# -- prepare_lm_data: the same data as the in-memory path --------------------------------------

def reference_data(corpus_path, cfg, n_train=None, val_fraction=0.1, val_tokens=None, min_count=1,
                   max_vocab=None, val_file=None, batch=4):
    """What the in-memory path computed: tokens -> counts of the training part -> Vocab ->
    final ids -> (N, B) training streams and (Nv, Bv) validation streams."""
    from collections import Counter

    from charlm.lm.corpus import DEFAULT_VAL_TOKENS, eval_streams
    from charlm.text.vocab import Vocab

    tokenizer = Tokenizer(cfg)
    stream = reference_stream(corpus_path, tokenizer)
    if n_train is None:
        cap = DEFAULT_VAL_TOKENS if val_tokens is None else (val_tokens or None)
        n_train = len(stream) if val_file else split_point(len(stream), val_fraction, cap)
    counts = Counter(stream[:n_train])
    if cfg.mode == "lines":
        counts[EOS] -= 1
    vocab = Vocab.from_counts(counts, min_count=min_count, max_vocab=max_vocab, tokenizer=cfg)
    encode = lambda toks: np.array([vocab.index.get(t, vocab.unk_id) for t in toks], np.int32)  # noqa: E731
    ids = encode(stream)
    val = encode(reference_stream(val_file, tokenizer))[:val_tokens or None] if val_file else ids[n_train:]
    return vocab, batchify(ids[:n_train], batch), batchify(val, eval_streams(len(val)))


@pytest.mark.parametrize("kw,opts", [
    (dict(level="char"), {}),
    (dict(level="char", mode="lines"), dict(val_tokens=9)),
    (dict(level="char"), dict(min_count=3, val_fraction=0.3)),
    (dict(level="word"), dict(max_vocab=6, val_tokens=0)),
    (dict(level="word", split="whitespace"), dict(val_file=True)),
    (dict(level="word", split="whitespace"), dict(val_file=True, val_tokens=5)),
])
def test_prepared_data_equals_the_in_memory_path(tmp_path, monkeypatch, kw, opts):
    """Tiny chunks, tiny buffers, the token cache on (written, then read back): vocabulary,
    training and validation streams equal the in-memory path's, value for value."""
    from charlm.text import tokencache
    from charlm.lm.corpus import prepare_lm_data

    path = write(tmp_path, TRICKY * 4 + "more words here\n" * 5)
    opts = dict(opts)
    if opts.pop("val_file", False):
        opts["val_file"] = str(write(tmp_path, "a b <unk> x\nthe end\n" * 3, "val.txt"))
    cfg = TokenizerConfig(**kw)
    vocab, train_want, val_want = reference_data(path, cfg, **opts)
    monkeypatch.setattr(reader, "CHUNK_SIZE", 3)
    monkeypatch.setattr(tokenids, "FLUSH_TOKENS", 4)
    monkeypatch.setattr(tokencache, "MIN_BYTES", 0)
    for _ in range(2):  # built, then used
        data = prepare_lm_data(str(path), cfg, batch_size=4, seq_len=5, cache_dir=str(tmp_path / "cache"), **opts)
        assert data.vocab.tokens == vocab.tokens and data.vocab.counts == vocab.counts
        np.testing.assert_array_equal(np.asarray(data.train), train_want)
        np.testing.assert_array_equal(np.asarray(data.val), val_want)
        assert isinstance(data.train.ids, np.memmap)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()).count(".npy") == (2 if "val_file" in opts else 1)


def test_split_point_with_a_limit():
    assert split_point(1000, 0.1, 50) == 950
    assert split_point(1000, 0.1, 500) == 900
    assert split_point(1000, 0.1, None) == 900
    assert split_point(1000, 0.0, 50) == 1000
    assert split_point(1000, 0.1, 1) == 998  # at least 2


def test_eval_streams():
    from charlm.lm.corpus import LONG_EVAL, eval_streams

    assert eval_streams(2) == 1 and eval_streams(100) == 16 and eval_streams(111_539) == 16
    assert eval_streams(LONG_EVAL) == 64
