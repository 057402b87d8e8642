"""Sampling: determinism, greedy paths, top-k/top-p, <UNK>/<EOS> handling, length, streaming."""

from __future__ import annotations


import numpy as np
import pytest

from charlm.errors import UsageError
from charlm.lm import generate
from charlm.lm.model import LanguageModel

from tinymodel import TEXT, build as _build  # noqa: E402


def build(level="word", mode="lines", text=TEXT, steps=20, seed=0):
    """A tiny 2-layer GRU (sampling is tested on a different cell from scoring)."""
    return _build(level, mode, text=text, steps=steps, seed=seed, cell="gru", layers=2)


@pytest.fixture(scope="module")
def gru_models():
    """{"word_lines": ..., "char_stream": ...}: (model, vocab, tokenizer) of tiny 2-layer GRUs."""
    return {"word_lines": build("word", "lines"), "char_stream": build("char", "stream")}


@pytest.fixture
def word_lines(gru_models):
    return gru_models["word_lines"]


@pytest.fixture
def char_stream(gru_models):
    return gru_models["char_stream"]


def rng(seed=0):
    return np.random.default_rng(seed)


def greedy_path(model, vocab, context, length, banned, stop_at_eos):
    """Reference greedy decoding, one token at a time with model.step."""
    state = model.init_state(1)
    logits = None
    for i in context:
        logits, state = model.step(np.array([i]), state)
    out = []
    for _ in range(length):
        z = np.array(logits[0], dtype=np.float64)
        z[banned] = -np.inf
        i = int(np.argmax(z))
        if stop_at_eos and i == vocab.eos_id:
            break
        out.append(vocab.tokens[i])
        logits, state = model.step(np.array([i]), state)
    return out


def test_same_seed_same_output(word_lines, char_stream):
    for model, vocab, _ in (word_lines, char_stream):
        a = generate.sample(model, vocab, num=4, length=30, rng=rng(7))
        b = generate.sample(model, vocab, num=4, length=30, rng=rng(7))
        assert a == b
        c = generate.sample(model, vocab, num=4, length=30, rng=rng(8))
        assert c != a


def test_temperature_zero_is_the_argmax_path(word_lines, char_stream):
    model, vocab, _ = word_lines
    got = generate.sample(model, vocab, num=3, length=12, temperature=0.0, rng=rng(0))
    want = greedy_path(model, vocab, [vocab.eos_id], 12, [vocab.unk_id], True)
    assert got == [want] * 3
    model, vocab, tok = char_stream
    prime = tok.tokenize("the d")
    got = generate.sample(model, vocab, length=25, temperature=0.0, prime=prime, rng=rng(0))
    ctx = [vocab.index["\n"]] + list(vocab.encode(prime))
    assert got == [greedy_path(model, vocab, ctx, 25, [vocab.unk_id, vocab.eos_id], False)]


def test_top_k_1_is_greedy(word_lines, char_stream):
    for model, vocab, _ in (word_lines, char_stream):
        greedy = generate.sample(model, vocab, num=2, length=20, temperature=0.0, rng=rng(0))
        for seed in (1, 2):
            assert generate.sample(model, vocab, num=2, length=20, top_k=1, rng=rng(seed)) == greedy
        # a tiny top-p keeps only the likeliest token too
        assert generate.sample(model, vocab, num=2, length=20, top_p=1e-9, rng=rng(3)) == greedy


def test_never_emits_unk(word_lines, char_stream):
    for model, vocab, _ in (word_lines, char_stream):
        m = LanguageModel(model.config, params={k: v.copy() for k, v in model.params.items()})
        m.params["out.b"][vocab.unk_id] = 1e4  # the model now wants <UNK> above all else
        for kw in ({}, {"temperature": 0.0}, {"top_k": 1}, {"top_k": 3, "top_p": 0.5},
                   {"temperature": 5.0}):
            for sample in generate.sample(m, vocab, num=8, length=15, rng=rng(1), **kw):
                assert "<UNK>" not in sample


def test_stream_mode_never_emits_eos_and_writes_length_tokens(char_stream):
    model, vocab, _ = char_stream
    m = LanguageModel(model.config, params={k: v.copy() for k, v in model.params.items()})
    m.params["out.b"][vocab.eos_id] = 1e4
    for sample in generate.sample(m, vocab, num=5, length=40, rng=rng(2)):
        assert len(sample) == 40 and "<EOS>" not in sample


def test_stops_at_eos(word_lines):
    model, vocab, _ = word_lines
    m = LanguageModel(model.config, params={k: v.copy() for k, v in model.params.items()})
    m.params["out.b"][vocab.eos_id] = 1e4
    assert generate.sample(m, vocab, num=3, length=10, rng=rng(0)) == [[], [], []]
    for sample in generate.sample(model, vocab, num=16, length=50, rng=rng(0)):
        assert "<EOS>" not in sample and len(sample) < 50  # this model ends its sentences


def test_respects_length(word_lines, char_stream):
    model, vocab, _ = word_lines
    for sample in generate.sample(model, vocab, num=8, length=3, temperature=3.0, rng=rng(0)):
        assert len(sample) <= 3
    model, vocab, _ = char_stream
    out = generate.sample(model, vocab, num=3, length=17, rng=rng(0))
    assert [len(s) for s in out] == [17, 17, 17]
    assert [len(s) for s in generate.sample(model, vocab, length=1, rng=rng(0))] == [1]


def test_callback_sees_every_emitted_token(word_lines):
    model, vocab, _ = word_lines
    seen: list[list[str]] = [[] for _ in range(4)]

    def on_token(t, ids, emitted):
        assert ids.shape == (4,) and emitted.shape == (4,)
        for b in np.flatnonzero(emitted):
            seen[b].append(vocab.tokens[ids[b]])

    out = generate.sample(model, vocab, num=4, length=30, rng=rng(5), on_token=on_token)
    assert seen == out


def test_batch_rows_are_independent_samples(char_stream):
    model, vocab, _ = char_stream
    out = generate.sample(model, vocab, num=6, length=30, temperature=1.5, rng=rng(0))
    assert len({"".join(s) for s in out}) > 1


def test_prime_unknown_tokens_are_fed_as_unk(char_stream):
    model, vocab, _ = char_stream
    a = generate.sample(model, vocab, length=10, temperature=0.0, prime=["Q", "t"], rng=rng(0))
    b = generate.sample(model, vocab, length=10, temperature=0.0, prime=["<UNK>", "t"], rng=rng(0))
    assert a == b


def test_stream_mode_without_newline_starts_from_counts():
    model, vocab, _ = build("char", "stream", text="abcabcabc cab", steps=3)
    assert "\n" not in vocab.index
    out = generate.sample(model, vocab, num=4, length=8, rng=rng(0))
    assert all(len(s) == 8 and "<UNK>" not in s and "<EOS>" not in s for s in out)
    greedy = generate.sample(model, vocab, length=5, temperature=0.0, rng=rng(0))
    assert greedy[0][0] == vocab.tokens[2]  # the most frequent token comes first


# -- draw(): the vectorised inverse-CDF step ------------------------------------------------------

def test_draw_matches_softmax_frequencies():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    ids = generate.draw(np.repeat(logits, 40000, axis=0), rng(0))
    freq = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)
    hot = generate.draw(np.repeat(logits, 40000, axis=0), rng(0), temperature=0.5)
    p = np.array([0.1, 0.2, 0.3, 0.4]) ** 2
    np.testing.assert_allclose(np.bincount(hot, minlength=4) / 40000, p / p.sum(), atol=0.01)


def test_draw_top_k_and_top_p_and_banned():
    p = np.array([[0.05, 0.5, 0.15, 0.3]])
    logits = np.repeat(np.log(p), 5000, axis=0)
    assert set(generate.draw(logits, rng(0), top_k=2)) == {1, 3}
    assert set(generate.draw(logits, rng(0), top_k=1)) == {1}
    assert set(generate.draw(logits, rng(0), top_p=0.5)) == {1}
    assert set(generate.draw(logits, rng(0), top_p=0.7)) == {1, 3}
    assert set(generate.draw(logits, rng(0), top_p=0.81)) == {1, 3, 2}
    assert set(generate.draw(logits, rng(0), top_p=1.0)) == {0, 1, 2, 3}
    assert set(generate.draw(logits, rng(0), banned=[1, 3])) == {0, 2}
    assert set(generate.draw(logits, rng(0), banned=[1], top_k=1)) == {3}
    assert set(generate.draw(logits, rng(0), banned=[1], temperature=0.0)) == {3}


def test_draw_never_picks_a_zero_probability_token_when_u_rounds_up():
    class MaxRng:
        def random(self, size=None, out=None):
            out[...] = 1.0  # u == total: no cumsum entry exceeds it
            return out

    logits = np.array([[0.0, 0.0, -np.inf], [5.0, -np.inf, -np.inf]])
    assert generate.draw(logits, MaxRng()).tolist() == [1, 0]


@pytest.mark.parametrize("kw", [{"temperature": -0.1}, {"temperature": float("nan")},
                                {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5},
                                {"length": 0}, {"num": 0}])
def test_bad_options(word_lines, kw):
    model, vocab, _ = word_lines
    with pytest.raises(UsageError):
        generate.sample(model, vocab, rng=rng(0), **kw)
