"""Decoding a seq2seq model: beam 1 is greedy exactly; beam outputs are sorted by their scores and
their log-probabilities are those the model gives the output under teacher forcing; a source decodes
the same alone as in a batch (bit for bit, float64); <UNK> never comes out; the length limit and the
attention matrices; option errors. The models are tiny GRUs half-trained to reverse digit strings
(80 Adam steps), so that their outputs vary in length and their beams disagree."""

import numpy as np
import pytest

from charlm.errors import UsageError
from charlm.engine.optim import Adam
from charlm.seq2seq.network import EOS, UNK, Seq2Seq, Seq2SeqConfig, pad_pairs
from charlm.seq2seq.search import MAX_LENGTH_A, MAX_LENGTH_B, beam_search, greedy

LENGTHS = [4, 9, 1, 6, 3, 12, 2, 5, 7, 10]


def reverser(attention: str, cell: str = "gru") -> Seq2Seq:
    m = Seq2Seq(Seq2SeqConfig(source_vocab_size=8, target_vocab_size=8, cell=cell, layers=1, hidden=8, embedding=6, target_embedding=6,
                              attention=attention, dtype="float64"), seed=0)
    rng, opt = np.random.default_rng(0), Adam(0.03)
    for _ in range(80):
        sources = [rng.integers(2, 8, rng.integers(1, 7)) for _ in range(16)]
        _, _, cache = m.loss(pad_pairs(sources, [s[::-1] for s in sources]), train=True, rng=rng)
        opt.step(m.params, m.backward(cache))
    return m


@pytest.fixture(scope="module", params=["none", "additive", "dot"])
def trained(request):
    return reverser(request.param)


def sources(seed=1, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 8, n) for n in lengths]


def same(a, b) -> bool:
    """Two outputs equal bit for bit: ids, log-probability, score, stop and attention."""
    att = (a.attention is None and b.attention is None) or np.array_equal(a.attention, b.attention)
    return a.ids == b.ids and a.logprob == b.logprob and a.score == b.score and a.stop == b.stop and att


def test_beam_one_is_greedy_exactly(trained):
    src = sources()
    g = greedy(trained, src)
    b = beam_search(trained, src, beam=1)
    assert all(len(x) == 1 and same(y, x[0]) for x, y in zip(b, g))
    assert {o.stop for o in g} == {"eos"} and len({len(o.ids) for o in g}) > 3


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_beam_outputs_are_sorted_and_scored_by_their_log_probabilities(trained, alpha):
    src = sources(2)
    results = beam_search(trained, src, beam=4, nbest=4, length_penalty=alpha)
    disagree = 0
    for s, outs in zip(src, results):
        assert len(outs) == 4 and len({tuple(o.ids) for o in outs}) == 4          # distinct
        assert [o.score for o in outs] == sorted((o.score for o in outs), reverse=True)
        disagree += len({len(o.ids) for o in outs}) > 1
        for o in outs:
            assert o.stop == "eos" and UNK not in o.ids and EOS not in o.ids
            steps = len(o.ids) + 1                                                 # <EOS> counts
            assert o.score == pytest.approx(o.logprob / steps ** alpha, abs=1e-12)
            teacher = trained.token_log_probs(pad_pairs([s], [o.ids]))[:, 0]      # log ŷ<t>[y<t>], <EOS> last
            assert o.logprob == pytest.approx(teacher.sum(), abs=1e-10)
            if o.attention is not None:
                assert o.attention.shape == (steps, len(s))
                np.testing.assert_allclose(o.attention.sum(axis=1), 1.0, atol=1e-12)
    assert disagree >= 3                                                            # beams of several lengths


def test_beam_finds_at_least_the_greedy_probability_here(trained):
    """Not a theorem for beam search, but true of these sources: a wider beam never did worse."""
    src = sources(3)
    for g, b in zip(greedy(trained, src), beam_search(trained, src, beam=6)):
        assert b[0].logprob >= g.logprob - 1e-12


def test_decoding_alone_is_decoding_in_a_batch(trained):
    """Bit for bit: a source gets the same outputs (ids, log-probabilities, attention) alone as in a
    batch of longer and shorter sources."""
    src = sources(4)
    batch_g, batch_b = greedy(trained, src), beam_search(trained, src, beam=3, nbest=3)
    part = beam_search(trained, src[3:7], beam=3, nbest=3)
    for i, s in enumerate(src):
        assert same(greedy(trained, [s])[0], batch_g[i])
        alone = beam_search(trained, [s], beam=3, nbest=3)[0]
        assert all(same(a, b) for a, b in zip(alone, batch_b[i])) and len(alone) == len(batch_b[i])
        if 3 <= i < 7:
            assert all(same(a, b) for a, b in zip(part[i - 3], batch_b[i]))


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_other_cells_decode_alike_alone_and_in_a_batch(cell):
    m = Seq2Seq(Seq2SeqConfig(source_vocab_size=8, target_vocab_size=8, cell=cell, layers=2, hidden=5, decoder_hidden=6, embedding=4,
                              target_embedding=3, attention="dot", dtype="float64"), seed=2)
    src = sources(5)
    batch = beam_search(m, src, beam=2, nbest=2)
    for i, s in enumerate(src):
        assert all(same(a, b) for a, b in zip(beam_search(m, [s], beam=2, nbest=2)[0], batch[i]))


def test_unknown_is_never_emitted_and_the_length_is_limited():
    m = reverser("additive")
    m.params["out.b"][UNK] += 50.0                    # <UNK> by far the most probable token
    m.params["out.b"][EOS] -= 50.0                    # and <EOS> never: every output runs to the limit
    src = sources(6)
    for outs in (greedy(m, src), [b[0] for b in beam_search(m, src, beam=3)]):
        for s, o in zip(src, outs):
            assert UNK not in o.ids and o.stop == "length"
            assert len(o.ids) == MAX_LENGTH_A * len(s) + MAX_LENGTH_B                # the default limit
            assert o.attention.shape == (len(o.ids), len(s))
    for outs in (greedy(m, src, max_length=3), [b[0] for b in beam_search(m, src, beam=2, max_length=3)]):
        assert all(len(o.ids) == 3 and o.stop == "length" for o in outs)


def test_finished_outputs_rank_before_cut_ones():
    """Outputs that end with <EOS> come first, even when one cut at the length limit has the better
    score (so far it is only a prefix); each group is sorted by score."""
    m = reverser("dot")
    inversions = 0
    for outs in beam_search(m, sources(7, [3, 3, 3]), beam=4, nbest=4, max_length=4):
        done = [o.score for o in outs if o.stop == "eos"]
        cut = [o.score for o in outs if o.stop == "length"]
        assert [o.stop for o in outs] == ["eos"] * len(done) + ["length"] * len(cut)
        assert done == sorted(done, reverse=True) and cut == sorted(cut, reverse=True)
        inversions += bool(done and cut and max(cut) > min(done))
    assert inversions >= 1


def test_options_and_empty_input():
    m = Seq2Seq(Seq2SeqConfig(source_vocab_size=8, target_vocab_size=8, hidden=4, embedding=3, target_embedding=3, dtype="float64"))
    for kw in (dict(beam=0), dict(beam=2, nbest=3), dict(max_length=0), dict(length_penalty=-1.0)):
        with pytest.raises(UsageError):
            beam_search(m, sources(), **kw)
    with pytest.raises(UsageError):
        greedy(m, sources(), max_length=0)
    assert greedy(m, []) == [] and beam_search(m, []) == []
