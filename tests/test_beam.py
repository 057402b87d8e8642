"""Beam search: K = 1 is greedy, K >= 2 is at least as probable, large K is exhaustive search,
the log-probabilities are the scoring's, and the K hypotheses go through the model as one batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from charlm.errors import UsageError
from charlm.lm import beam, generate, scoring
from charlm.lm.generate import Prime
from charlm.lm.model import LanguageModel

from tinymodel import build  # noqa: E402


# float64 models where candidates' log-probabilities are compared: in float32 a (K, H) batch and
# a (1, H) one round differently (about 1e-7), which would blur "at least as probable".
@pytest.fixture(scope="module")
def word_lines():
    return build("word", "lines", steps=40, dtype="float64")


@pytest.fixture(scope="module")
def char_lines():
    return build("char", "lines", steps=80, hidden=16, embedding=8, dtype="float64")


@pytest.fixture(scope="module")
def char_stream():
    return build("char", "stream", steps=30)


@pytest.fixture(scope="module")
def tiny():
    """A word model with two real tokens ("a", "b"): small enough to search exhaustively."""
    return build("word", "lines", text="a b\nb a\na a b\nb\n", steps=15, dtype="float64")


def search(built, prime="", **kw):
    model, vocab, tok = built
    return beam.search(model, vocab, tok, Prime.from_text(tok, prime), **kw)


def greedy(built, prime="", length=40):
    model, vocab, tok = built
    return generate.sample(model, vocab, length=length, temperature=0.0,
                           prime=Prime.from_text(tok, prime).tokens)[0]


def logprob_of(built, prime: str, tokens: list[str], with_eos: bool) -> float:
    """log P(tokens [, <EOS>] | prime) from the scoring code: score(prime + tokens) - score(prime)."""
    model, vocab, tok = built
    p = Prime.from_text(tok, prime).tokens
    full = scoring.score_token_lists(model, vocab, [p + tokens])[0].per_token
    lines = scoring.tokenizer_mode(vocab) == "lines"  # then full[-1] is the final <EOS>
    return float(np.sum(full[len(p):] if with_eos or not lines else full[len(p):-1]))


@pytest.mark.parametrize("which", ["word_lines", "char_lines", "char_stream"])
@pytest.mark.parametrize("prime", ["", "the", "a c"])
def test_beam_1_is_greedy(request, which, prime):
    built = request.getfixturevalue(which)
    (best,) = search(built, prime, beam=1, length=40)
    assert best.tokens == greedy(built, prime, 40)
    assert best.stop in ("eos", "length")


@pytest.mark.parametrize("which", ["word_lines", "char_lines"])
@pytest.mark.parametrize("prime", ["", "the", "a", "the dog"])
def test_wider_beams_find_at_least_the_greedy_probability(request, which, prime):
    built = request.getfixturevalue(which)
    g = search(built, prime, beam=1, length=60)[0]
    assert g.stop == "eos"  # compare finished sentences with finished sentences
    for k in (2, 3, 5, 8):
        best = search(built, prime, beam=k, length=60)[0]
        assert best.stop == "eos"
        assert best.logprob >= g.logprob - 1e-9, (k, best, g)


def test_a_wider_beam_can_beat_greedy(word_lines):
    """On this model greedy decoding after "a" takes a likely word into an unlikely sentence."""
    g = search(word_lines, "a", beam=1, length=60)[0]
    best = search(word_lines, "a", beam=2, length=60)[0]
    assert best.logprob > g.logprob + 0.1


@pytest.mark.parametrize("which", ["word_lines", "char_lines", "char_stream"])
def test_logprob_is_the_scoring_logprob(request, which):
    built = request.getfixturevalue(which)
    for c in search(built, "the", beam=4, nbest=4, length=30):
        want = logprob_of(built, "the", c.tokens, c.stop == "eos")
        assert c.logprob == pytest.approx(want, abs=1e-4 if which == "char_stream" else 1e-9)
        n = len(c.tokens) + (c.stop == "eos")
        assert c.score == c.logprob  # length penalty 0
        assert n >= 1


def exhaustive(built, length: int, alpha: float) -> list[tuple[list[str], float, str]]:
    """Every continuation of up to `length` tokens, ranked as beam search ranks them."""
    model, vocab, tok = built
    words = [t for t in vocab.tokens if t not in ("<UNK>", "<EOS>")]
    done, cut = [], []
    for n in range(length + 1):
        for seq in itertools.product(words, repeat=n):
            seq = list(seq)
            if n < length:
                lp = logprob_of(built, "", seq, True)
                done.append((seq, lp, lp / (n + 1) ** alpha, "eos"))
            else:
                lp = logprob_of(built, "", seq, False)
                cut.append((seq, lp, lp / n ** alpha, "length"))
    ranked = sorted(done, key=lambda c: -c[2]) + sorted(cut, key=lambda c: -c[2])
    return [(s, lp, stop) for s, lp, _, stop in ranked]


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_a_wide_beam_is_exhaustive_search(tiny, alpha):
    _, vocab, _ = tiny
    assert len(vocab) == 4  # <UNK>, <EOS>, a, b
    want = exhaustive(tiny, length=4, alpha=alpha)
    got = search(tiny, beam=64, nbest=12, length=4, length_penalty=alpha)
    assert [(c.tokens, c.stop) for c in got] == [(s, stop) for s, _, stop in want[:12]]
    for c, (_, lp, _) in zip(got, want):
        assert c.logprob == pytest.approx(lp, abs=1e-9)
        n = len(c.tokens) + (c.stop == "eos")
        assert c.score == pytest.approx(c.logprob / n ** alpha)


def test_the_k_hypotheses_are_one_batch(word_lines, char_stream):
    for model, vocab, tok in (word_lines, char_stream):
        shapes = []
        real_step = model.step

        def step(ids, state):
            shapes.append(np.shape(ids))
            return real_step(ids, state)

        model.step = step
        try:
            beam.search(model, vocab, tok, Prime.from_text(tok, "the"), beam=5, length=20)
        finally:
            del model.step
        # one step call for the prime's last token (batch 1), then one (5,) call per search step
        assert shapes[0] == (1,) and set(shapes[1:]) == {(5,)} and len(shapes) <= 20


def test_deterministic_sorted_and_distinct(word_lines):
    a = search(word_lines, "the", beam=6, nbest=6, length=20)
    b = search(word_lines, "the", beam=6, nbest=6, length=20)
    assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
    scores = [c.score for c in a]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(c.tokens) for c in a}) == len(a)
    assert [c.index for c in a] == list(range(len(a)))
    assert all(c.text.startswith("the") for c in a)


def test_never_unk_and_stream_mode_never_eos(word_lines, char_stream):
    for (model, vocab, tok), banned in ((word_lines, ["<UNK>"]), (char_stream, ["<UNK>", "<EOS>"])):
        m = LanguageModel(model.config, params={k: v.copy() for k, v in model.params.items()})
        for b in banned:
            m.params["out.b"][vocab.index[b]] = 1e4  # the model now wants them above all
        for c in beam.search(m, vocab, tok, Prime.from_text(tok, ""), beam=3, nbest=3, length=8):
            assert not set(banned) & set(c.tokens)


def test_stream_mode_runs_to_the_length(char_stream):
    for c in search(char_stream, "the", beam=3, nbest=3, length=17):
        assert len(c.tokens) == 17 and c.stop == "length"


def test_stop_at_finishes_a_hypothesis(char_stream):
    cands = search(char_stream, "the", beam=4, nbest=2, length=60, stop_at=[" "])
    for c in cands:
        assert c.stop == "stop-at" and c.tokens[-1] == " " and " " not in c.tokens[:-1]
        assert c.logprob == pytest.approx(logprob_of(char_stream, "the", c.tokens, False), abs=1e-4)
    # K = 1 with a stop string is the greedy path up to the stop string
    g = greedy(char_stream, "the", 60)
    (one,) = search(char_stream, "the", beam=1, length=60, stop_at=" ")
    assert one.tokens == g[:g.index(" ") + 1]


def test_length_penalty_favours_longer_candidates(word_lines):
    plain = search(word_lines, "", beam=8, nbest=8, length=30)
    long_ = search(word_lines, "", beam=8, nbest=8, length=30, length_penalty=2.0)
    assert len(long_[0].tokens) >= len(plain[0].tokens)
    assert long_[0].score == pytest.approx(long_[0].logprob / (len(long_[0].tokens) + 1) ** 2.0)


@pytest.mark.parametrize("kw", [{"beam": 0}, {"beam": -2}, {"beam": 2, "nbest": 3},
                                {"nbest": 0}, {"length": 0}, {"length_penalty": -0.5},
                                {"length_penalty": float("nan")}, {"stop_at": [""]}])
def test_bad_options(word_lines, kw):
    with pytest.raises(UsageError):
        search(word_lines, **kw)
