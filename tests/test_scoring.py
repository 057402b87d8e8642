"""Scoring: sentence log-probabilities, batching, conventions, corpus summaries."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charlm.errors import UsageError
from charlm.lm import scoring
from charlm.text.reader import iter_lines

from tinymodel import TEXT, build  # noqa: E402


SENTENCES = ["the cat sat on the mat", "the mat sat on the cat", "a dog", "the zebra and a cat",
             "dog", "the the the the the the the the the"]


@pytest.mark.parametrize("which", ["word_lines", "char_stream", "char_lines"])
def test_logprob_is_sum_of_per_token(which, request):
    model, vocab, tok = request.getfixturevalue(which)
    for s in scoring.score_sentences(model, vocab, tok, SENTENCES):
        assert len(s.per_token) == len(s.tokens) == s.n_tokens
        assert s.logprob == pytest.approx(sum(s.per_token), abs=1e-9)
        assert s.log10prob == pytest.approx(s.logprob / math.log(10))
        assert s.perplexity == pytest.approx(math.exp(-s.logprob / s.n_tokens))
        assert all(lp <= 0 for lp in s.per_token)


@pytest.mark.parametrize("which", ["word_lines", "char_stream", "char_lines"])
def test_batch_equals_one_at_a_time(which, request):
    model, vocab, tok = request.getfixturevalue(which)
    together = scoring.score_sentences(model, vocab, tok, SENTENCES, batch_size=64)
    for bs in (1, 2, 4):
        apart = scoring.score_sentences(model, vocab, tok, SENTENCES, batch_size=bs)
        for a, b in zip(together, apart):
            assert a.text == b.text and a.tokens == b.tokens
            np.testing.assert_allclose(a.per_token, b.per_token, atol=1e-5)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    single = [scoring.score_sentences(model, vocab, tok, [s])[0] for s in SENTENCES]
    for a, b in zip(together, single):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.text(alphabet="abcdot \n", min_size=1, max_size=12).filter(str.strip),
                min_size=1, max_size=6),
       st.integers(1, 4))
def test_batching_property(char_stream, sentences, bs):
    model, vocab, tok = char_stream
    a = scoring.score_sentences(model, vocab, tok, sentences, batch_size=bs)
    b = [scoring.score_sentences(model, vocab, tok, [s])[0] for s in sentences]
    for x, y in zip(a, b):
        assert x.tokens == y.tokens
        assert x.logprob == pytest.approx(y.logprob, abs=1e-5)


def test_each_step_distribution_sums_to_one(word_lines, char_stream):
    for model, vocab, tok in (word_lines, char_stream):
        ids = vocab.encode(tok.tokenize("the cat sat on the mat"))
        logp, _ = model.log_probs(ids[:, None], model.init_state(1))  # (T, 1, V)
        np.testing.assert_allclose(np.exp(logp.astype(np.float64)).sum(-1), 1.0, atol=1e-5)
        # and the scored per-token values are exactly these log-probabilities
        state = model.init_state(1)
        logits, state = model.step(np.array([vocab.eos_id if tok.config.mode == "lines"
                                             else vocab.index["\n"]]), state)
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert p.sum() == pytest.approx(1.0)


def test_exhaustive_tiny_alphabet_sums_to_one():
    """Lines-mode model over {a, b, c} (+ <UNK> for any other character): the probabilities of
    every sentence shorter than L, plus the probability of every L-token prefix, add up to 1."""
    model, vocab, tok = build("char", "lines", text="abc\nacb\nbb\nca\n", steps=5, dtype="float64")
    assert vocab.tokens == ["<UNK>", "<EOS>"] + sorted("abc", key=lambda c: (-"abcacbbbca".count(c), c))
    alphabet = ["a", "b", "c", "z"]  # "z" is out of vocabulary: it stands for <UNK>
    L = 3
    total = 0.0
    for n in range(L):
        words = [list(w) for w in itertools.product(alphabet, repeat=n)]
        total += sum(math.exp(s.logprob) for s in scoring.score_token_lists(model, vocab, words))
    words = [list(w) for w in itertools.product(alphabet, repeat=L)]
    for s in scoring.score_token_lists(model, vocab, words, batch_size=7):
        total += math.exp(sum(s.per_token[:L]))  # P(w) = product of the first L factors
    assert total == pytest.approx(1.0, abs=1e-9)


def test_one_token_continuations_sum_to_one(word_lines):
    """sum over every vocabulary token v of P(v | "the cat") is 1, read off sentence scores."""
    model, vocab, tok = word_lines
    prefix = ["the", "cat"]
    base = scoring.score_token_lists(model, vocab, [prefix])[0]
    p_prefix = sum(base.per_token[:2])
    conts = [prefix + [v] for v in vocab.tokens if v not in ("<EOS>",)]
    scores = scoring.score_token_lists(model, vocab, conts)
    total = sum(math.exp(sum(s.per_token[:3]) - p_prefix) for s in scores)
    total += math.exp(base.per_token[2])  # v = <EOS>: the sentence "the cat" ends
    assert total == pytest.approx(1.0, abs=1e-4)


def test_lines_mode_conventions(word_lines):
    model, vocab, tok = word_lines
    s = scoring.score_sentences(model, vocab, tok, ["the zebra sat"])[0]
    assert s.tokens == ["the", "<UNK>", "sat", "<EOS>"]
    assert s.oov == 1 and s.text == "the zebra sat"
    x = np.array([vocab.eos_id] + list(vocab.encode(["the", "zebra", "sat"])))[:, None]
    logp, _ = model.log_probs(x, model.init_state(1))
    y = list(vocab.encode(["the", "zebra", "sat", "<EOS>"]))
    y[-1] = vocab.eos_id
    expect = [float(logp[t, 0, y[t]]) for t in range(4)]
    np.testing.assert_allclose(s.per_token, expect, atol=1e-5)


def test_stream_mode_conditions_first_token_on_newline(char_stream):
    model, vocab, tok = char_stream
    s = scoring.score_sentences(model, vocab, tok, ["cat"])[0]
    assert s.tokens == ["c", "a", "t"] and s.oov == 0
    x = vocab.encode(["\n", "c", "a"])[:, None]
    logp, _ = model.log_probs(x, model.init_state(1))
    y = vocab.encode(["c", "a", "t"])
    np.testing.assert_allclose(s.per_token, [logp[t, 0, y[t]] for t in range(3)], atol=1e-5)


def test_stream_mode_without_newline_skips_first_token():
    model, vocab, tok = build("char", "stream", text="abcabcabc cab", steps=3)
    assert "\n" not in vocab.index
    s = scoring.score_sentences(model, vocab, tok, ["cab"])[0]
    assert s.tokens == ["a", "b"]  # "c" is context only
    x = vocab.encode(["c", "a"])[:, None]
    logp, _ = model.log_probs(x, model.init_state(1))
    y = vocab.encode(["a", "b"])
    np.testing.assert_allclose(s.per_token, [logp[t, 0, y[t]] for t in range(2)], atol=1e-5)
    one = scoring.score_sentences(model, vocab, tok, ["c"])[0]
    assert one.n_tokens == 0 and one.logprob == 0.0 and math.isnan(one.perplexity)
    assert one.to_dict()["perplexity"] is None
    summary = scoring.score_stream(model, vocab, [["c", "a"], ["b"]])
    assert summary.tokens == 2
    assert -summary.nats == pytest.approx(s.logprob, abs=1e-5)


def test_empty_sentence_is_an_error(word_lines):
    model, vocab, tok = word_lines
    with pytest.raises(UsageError, match="sentence 2 is empty"):
        scoring.score_sentences(model, vocab, tok, ["the cat", ""])
    with pytest.raises(UsageError, match="nothing to score"):
        scoring.score_sentences(model, vocab, tok, ["   "])


def test_score_stream_lines_mode_is_the_training_stream(word_lines):
    model, vocab, tok = word_lines
    text = "the cat sat\n\nthe zebra and a dog\na cat\n"
    pieces = list(tok.iter_sentences(io.StringIO(text)))
    ids = [vocab.eos_id]
    for p in pieces:
        ids += list(vocab.encode(p)) + [vocab.eos_id]
    ids = np.array(ids)
    lp, _ = model.target_log_probs(ids[:-1, None], ids[1:, None], model.init_state(1))
    for window in (3, 2048):
        summary = scoring.score_stream(model, vocab, iter(pieces), window=window)
        assert summary.tokens == len(ids) - 1
        assert summary.oov == 1 and summary.sentences == 3
        assert summary.nats == pytest.approx(-float(np.sum(lp, dtype=np.float64)), abs=1e-4)
        assert summary.chars is None and summary.bits_per_char is None
        assert summary.bits_per_token == pytest.approx(summary.nats_per_token / math.log(2))
        assert summary.perplexity == pytest.approx(math.exp(summary.nats_per_token))


def test_score_stream_stream_mode_equals_one_long_sentence(char_stream):
    model, vocab, tok = char_stream
    text = "the cat\nsat on\n\nthe log\n"
    pieces = list(tok.iter_sentences(io.StringIO(text)))
    whole = scoring.score_token_lists(model, vocab, [tok.tokenize(text)])[0]
    for window in (4, 2048):
        summary = scoring.score_stream(model, vocab, pieces, window=window)
        assert summary.tokens == len(text) == summary.chars
        assert -summary.nats == pytest.approx(whole.logprob, abs=1e-4)
        assert summary.bits_per_char == pytest.approx(summary.nats / len(text) / math.log(2))
        d = summary.to_dict()
        assert d["summary"] is True and d["tokens"] == len(text)
        assert set(d) == {"summary", "tokens", "oov", "nats_per_token", "bits_per_token",
                          "perplexity", "nats_per_char", "bits_per_char"}


def test_score_lines_skips_blank_lines_and_keeps_order(char_lines):
    model, vocab, tok = char_lines
    lines = ["the cat\n", "\n", "   \n", "a dog\r\n", "sat on the mat\n", "x\n"]
    out = list(scoring.score_lines(model, vocab, tok, lines, batch_size=2, chunk=2))
    assert [s.text for s in out] == ["the cat", "a dog", "sat on the mat", "x"]
    direct = scoring.score_sentences(model, vocab, tok, [s.text for s in out])
    for a, b in zip(out, direct):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    summary = scoring.CorpusSummary(chars=0)
    for s in out:
        summary.add(s, char_level=True)
    assert summary.tokens == sum(s.n_tokens for s in out) == summary.chars
    assert summary.sentences == 4 and summary.oov == 1
    assert summary.nats == pytest.approx(-sum(s.logprob for s in out))


def test_sentence_record_to_dict(word_lines):
    model, vocab, tok = word_lines
    s = scoring.score_sentences(model, vocab, tok, ["the cat"])[0]
    d = s.to_dict()
    assert set(d) == {"text", "tokens", "logprob", "log10prob", "perplexity", "oov"}
    assert set(s.to_dict(per_token=True)) == set(d) | {"per_token"}


def test_batch_size_must_be_positive(word_lines):
    model, vocab, tok = word_lines
    with pytest.raises(UsageError):
        scoring.score_sentences(model, vocab, tok, ["the cat"], batch_size=0)


def test_iter_lines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\nthree")
    assert list(iter_lines(str(p))) == ["one", "two", "", "three"]
    assert list(iter_lines(io.StringIO("a\nb\n"))) == ["a", "b"]


@pytest.mark.parametrize("which", ["word_lines", "char_stream"])
def test_score_stream_equals_single_stream_validation(which, request, tmp_path):
    """--stream gives the training's validation figure for the same text (evaluated as one stream)."""
    from charlm.lm import corpus
    from charlm.text.tokenids import tokenize_ids

    model, vocab, tok = request.getfixturevalue(which)
    p = tmp_path / "val.txt"
    p.write_text("the cat sat on the log\n\na dog and the zebra\nthe mat\n", encoding="utf-8")
    tids = tokenize_ids(str(p), tok)
    ids = np.array([vocab.index.get(tids.types[i], vocab.unk_id) for i in tids.ids])
    if tok.config.mode == "stream":  # our convention: the first token is conditioned on "\n"
        ids = np.concatenate(([vocab.index["\n"]], ids))
    nats, count = scoring.stream_loss_sums(model, corpus.batchify(ids, 1), 5)
    want = nats / count
    summary = scoring.score_stream(model, vocab, tok.iter_sentences(str(p)), window=7)
    assert summary.nats_per_token == pytest.approx(want, abs=1e-6)
    assert summary.tokens == len(ids) - 1


@pytest.mark.parametrize("which", ["word_lines", "char_stream", "char_lines"])
@pytest.mark.parametrize("window", [1, 5, 2048])
def test_score_ids_equals_score_stream(which, window, request, tmp_path):
    """The token-cache path (ids read through the lookup) gives score_stream's figures exactly."""
    from charlm.text.tokenids import tokenize_ids

    model, vocab, tok = request.getfixturevalue(which)
    p = tmp_path / "text.txt"
    p.write_text("the cat sat on the log\n\n  \na dog and the zebra Q\nthe mat", encoding="utf-8")
    want = scoring.score_stream(model, vocab, tok.iter_sentences(str(p)), window=window)
    got = scoring.score_ids(model, vocab, tokenize_ids(str(p), tok), window=window)
    assert got.to_dict() == want.to_dict() and got.sentences == want.sentences
