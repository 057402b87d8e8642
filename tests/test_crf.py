"""The CRF output layer (charlm.nn.crf, `charlm train --task tag --crf`): log Z, the loss, marginals
and Viterbi against brute force over every tag sequence; finite-difference gradients of the CRF
loss and of the whole tagger with it (float64); padding that never leaks (bit for bit); forbidden
transitions that are never learned nor decoded; and a tiny run through the command line."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import checkpoint as ckpt
from charlm.cli import cli
from charlm.errors import CharlmError, DataError
from charlm.nn import crf
from charlm.sentence.batch import make_batch, pad_sentences
from charlm.sentence.decode import tag_constraints
from charlm.sentence.network import TaggerConfig, TaggerNetwork
from charlm.tasks import load as load_model
from gradcheck import check_grad
from tasksdata import column_text, conllu_text, ner_sentences
from test_decode import IOB2, IOBES, valid
from test_tagger import batch_for, model, sentences

TOL = 1e-6
LENGTHS = [4, 9, 1, 6, 3, 12, 2, 5, 7, 10]


def random_constraints(rng, K):
    """Random allowed transitions, starts and ends that leave a way on from every tag (tag 0 may
    start, end and follow any tag)."""
    allowed, start, end = rng.random((K, K)) < 0.5, rng.random(K) < 0.7, rng.random(K) < 0.7
    allowed[:, 0] = start[0] = end[0] = True
    return allowed, start, end


def random_crf(rng, K, constrained):
    trans, start, end = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=K)
    return trans, start, end, (random_constraints(rng, K) if constrained else None)


def ok(path, constraints) -> bool:
    if constraints is None:
        return True
    allowed, start, end = constraints
    return bool(start[path[0]] and end[path[-1]] and all(allowed[i, j] for i, j in zip(path, path[1:])))


def brute_force(e, trans, start, end, constraints):
    """Every tag sequence of one sentence e (T,K): -> (log Z, best path, marginals (T,K), {path: score})."""
    T, K = e.shape
    paths = [p for p in itertools.product(range(K), repeat=T) if ok(p, constraints)]
    score = {p: start[p[0]] + sum(e[t, y] for t, y in enumerate(p))
             + sum(trans[i, j] for i, j in zip(p, p[1:])) + end[p[-1]] for p in paths}
    values = np.array(list(score.values()))
    log_z = values.max() + np.log(np.exp(values - values.max()).sum())
    marginals = np.zeros((T, K))
    for p, s in score.items():
        marginals[np.arange(T), p] += np.exp(s - log_z)
    return log_z, max(paths, key=lambda p: (score[p], [-y for y in p])), marginals, score


def valid_tags(rng, n, constraints, K):
    """A random tag sequence of length n that `constraints` allow."""
    if constraints is None:
        return rng.integers(0, K, size=n)
    allowed, start, end = constraints
    while True:
        y = [rng.choice(np.flatnonzero(start))]
        for _ in range(n - 1):
            y.append(rng.choice(np.flatnonzero(allowed[y[-1]])))
        if end[y[-1]]:
            return np.array(y)


def padded_batch(rng, K, lengths, constraints=None):
    """Emissions (T,B,K) (padding random too) and allowed gold tags (T,B) (padding random ids)."""
    T, B = max(lengths), len(lengths)
    e = rng.normal(size=(T, B, K)) * 2
    y = rng.integers(0, K, size=(T, B))
    for b, n in enumerate(lengths):
        y[:n, b] = valid_tags(rng, n, constraints, K)
    return e, y, np.array(lengths)


# -- against brute force ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("constrained", [False, True])
def test_log_z_loss_marginals_and_viterbi_equal_brute_force(seed, constrained):
    """Sentences of 1..5 words over K = 2..4 tags, decoded in one padded batch."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 5))
    trans, start, end, cons = random_crf(rng, K, constrained)
    lengths = [int(n) for n in rng.integers(1, 6, size=4)]
    e, y, lengths = padded_batch(rng, K, lengths, cons)
    nll, _ = crf.crf_loss(e, y, lengths, trans, start, end, cons)
    log_marg = crf.log_marginals(e, lengths, trans, start, end, cons)
    paths, best = crf.viterbi(e, lengths, trans, start, end, cons)
    for b, n in enumerate(lengths):
        log_z, best_path, marginals, score = brute_force(e[:n, b], trans, start, end, cons)
        gold = tuple(y[:n, b])
        assert nll[b] == pytest.approx(log_z - score[gold], abs=1e-12)
        np.testing.assert_allclose(np.exp(log_marg[:n, b]), marginals, atol=1e-12)
        np.testing.assert_allclose(np.exp(log_marg[:n, b]).sum(axis=1), 1.0, atol=1e-12)
        assert tuple(paths[:n, b]) == best_path and best[b] == pytest.approx(score[best_path], abs=1e-12)


def test_forbidden_transitions_have_no_probability_and_are_never_decoded():
    """IOB2 and IOBES with the forbidden entries of the learned scores made the largest of all:
    nothing forbidden is decoded, and forbidden tags at a sentence's start have marginal 0."""
    rng = np.random.default_rng(0)
    for tags, scheme in ((IOB2, "iob2"), (IOBES, "iobes")):
        cons = tag_constraints(tags, scheme)
        K = len(tags)
        trans = np.where(cons[0], rng.normal(size=(K, K)), 50.0)       # forbidden: tempting
        start, end = np.where(cons[1], 0.0, 50.0), np.where(cons[2], 0.0, 50.0)
        e = rng.normal(size=(6, 40, K)) * 3
        lengths = rng.integers(1, 7, size=40)
        paths, best = crf.viterbi(e, lengths, trans, start, end, cons)
        assert np.isfinite(best).all()
        for b, n in enumerate(lengths):
            assert valid([tags[k] for k in paths[:n, b]], scheme)
        marg = np.exp(crf.log_marginals(e, lengths, trans, start, end, cons))
        assert (marg[0][:, ~cons[1]] == 0).all()
        _, dtrans, dstart, dend = crf.crf_loss_backward(np.ones(40), crf.crf_loss(
            e, np.zeros((6, 40), dtype=np.int64) + tags.index("O"), lengths, trans, start, end, cons)[1])
        assert (dtrans[~cons[0]] == 0).all() and (dstart[~cons[1]] == 0).all() and (dend[~cons[2]] == 0).all()


def test_zero_transition_scores_give_the_plain_taggers_loss():
    """With every transition allowed and scored 0 the CRF is the per-token softmax: the loss (summed
    over sentences, divided by the tokens) and its gradient are the plain tagger's."""
    b = batch_for("tag", lengths=(3, 6, 1, 4))
    plain = model("tag", dropout=0.0)
    with_crf = TaggerNetwork(TaggerConfig(**dict(plain.config.to_dict(), crf=True)),
                          params=dict(plain.params, **{k: np.zeros(s) for k, s in (
                              ("crf.trans", (3, 3)), ("crf.start", (3,)), ("crf.end", (3,)))}))
    loss, _, cache = plain.loss(b)
    loss_crf, _, cache_crf = with_crf.loss(b)
    assert loss_crf == pytest.approx(loss, abs=1e-13)
    g, g_crf = plain.backward(cache), with_crf.backward(cache_crf)
    for k in g:
        np.testing.assert_allclose(g_crf[k], g[k], atol=1e-14)


# -- gradients ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constrained", [False, True])
def test_crf_loss_gradients(constrained):
    rng = np.random.default_rng(3)
    K = 4
    trans, start, end, cons = random_crf(rng, K, constrained)
    e, y, lengths = padded_batch(rng, K, [3, 5, 1, 4], cons)
    w = rng.uniform(0.5, 2.0, size=4)                        # a weight per sentence

    def loss():
        return float(w @ crf.crf_loss(e, y, lengths, trans, start, end, cons)[0])

    de, dtrans, dstart, dend = crf.crf_loss_backward(w, crf.crf_loss(e, y, lengths, trans, start, end, cons)[1])
    assert (de[np.arange(e.shape[0])[:, None] >= lengths] == 0).all()          # nothing on padding
    for x, dx in ((e, de), (trans, dtrans), (start, dstart), (end, dend)):
        assert check_grad(loss, x, dx) < TOL


@pytest.mark.parametrize("constrained", [False, True])
def test_whole_tagger_with_crf_gradients(constrained):
    """Every parameter of a tagger with a CRF (dropout on), against finite differences."""
    labels = ["B-PER", "I-PER", "O"]
    cons = tag_constraints(labels, "iob2") if constrained else None
    m = model("tag", crf=True)
    m.constraints = cons
    rng = np.random.default_rng(5)
    words, chars, _ = sentences(6, (3, 6, 1, 4))
    tags = [valid_tags(rng, len(w), cons, 3) for w in words]
    b = pad_sentences(words, chars, tags)

    def loss():
        return m.loss(b, train=True, rng=np.random.default_rng(7))[0]

    value, _, cache = m.loss(b, train=True, rng=np.random.default_rng(7))
    grads = m.backward(cache)
    assert list(grads) == list(m.params) and {"crf.trans", "crf.start", "crf.end"} <= set(grads)
    for k, v in m.params.items():
        assert grads[k].dtype == v.dtype
        assert check_grad(loss, v, grads[k], n_samples=12) < TOL, k


# -- padding: bit for bit --------------------------------------------------------------------------------
@pytest.mark.parametrize("constrained", [False, True])
def test_padding_bit_for_bit(constrained):
    """A sentence gets exactly the same loss, gradient contribution, marginals and decoding alone as
    inside a padded batch (float64), K = 9 as in wikigold."""
    rng = np.random.default_rng(11)
    K = 9
    trans, start, end, cons = random_crf(rng, K, constrained)
    e, y, lengths = padded_batch(rng, K, LENGTHS, cons)
    args = (trans, start, end, cons)
    nll, cache = crf.crf_loss(e, y, lengths, *args)
    marg = crf.log_marginals(e, lengths, *args)
    paths, best = crf.viterbi(e, lengths, *args)
    de = crf.crf_loss_backward(np.ones(len(lengths)), cache)[0]
    for i, n in enumerate(lengths):
        one = (e[:n, i:i + 1], y[:n, i:i + 1], lengths[i:i + 1])
        nll1, cache1 = crf.crf_loss(*one, *args)
        assert nll1[0] == nll[i]
        alone = crf.crf_loss_backward(np.ones(1), cache1)
        np.testing.assert_array_equal(alone[0][:, 0], de[:n, i])
        weight = np.zeros(len(lengths))
        weight[i] = 1.0                                      # this sentence's share of the sums
        mine = crf.crf_loss_backward(weight, cache)
        for a, m in zip(alone[1:], mine[1:]):
            np.testing.assert_array_equal(a, m)
        np.testing.assert_array_equal(crf.log_marginals(one[0], one[2], *args)[:, 0], marg[:n, i])
        p1, best1 = crf.viterbi(one[0], one[2], *args)
        np.testing.assert_array_equal(p1[:, 0], paths[:n, i])
        assert best1[0] == best[i]


def test_tagger_with_crf_padding_bit_for_bit():
    """The whole CRF tagger: marginals and Viterbi paths of a sentence alone equal those in a batch."""
    m = model("tag", crf=True)
    m.constraints = tag_constraints(["B-PER", "I-PER", "O"], "iob2")
    words, chars, _ = sentences(8)
    whole_lp, whole = m.crf_decode(pad_sentences(words, chars))
    for i, n in enumerate(LENGTHS):
        lp, (path,) = m.crf_decode(pad_sentences(words[i:i + 1], chars[i:i + 1]))
        np.testing.assert_array_equal(lp[:n, 0], whole_lp[:n, i])
        np.testing.assert_array_equal(path, whole[i])
        np.testing.assert_array_equal(m.log_probs(pad_sentences(words[i:i + 1], chars[i:i + 1])), lp)


# -- the model's settings and refusals ------------------------------------------------------------------
def test_settings_parameters_and_refusals():
    m = model("tag", crf=True)
    assert m.param_shapes()["crf.trans"] == (3, 3) and m.param_shapes()["crf.start"] == (3,)
    fresh = TaggerNetwork(m.config, seed=1)
    assert all((fresh.params[k] == 0).all() for k in ("crf.trans", "crf.start", "crf.end"))
    assert "crf.trans" not in model("tag").params
    with pytest.raises(CharlmError, match="CRF output layer is for taggers"):
        TaggerConfig(task="classify", vocab_size=5, char_vocab_size=0, num_labels=2, char_hidden=0, crf=True)
    with pytest.raises(CharlmError, match="crf must be true or false"):
        TaggerConfig(task="tag", vocab_size=5, char_vocab_size=0, num_labels=2, char_hidden=0, crf="yes")
    # a gold sequence the scheme forbids is a data error, not an infinite loss
    m.constraints = tag_constraints(["B-PER", "I-PER", "O"], "iob2")
    words, chars, _ = sentences(6, (3,))
    with pytest.raises(DataError, match="forbids"):
        m.loss(pad_sentences(words, chars, [np.array([2, 1, 1])]))


def test_checkpoint_without_crf_setting_loads_as_before(tmp_path):
    """A tagger file written before the CRF (no "crf" in its settings) loads as a plain tagger."""
    from test_tagger import saved

    m = model("tag")
    settings = m.config.to_dict()
    del settings["crf"]
    loaded = load_model(saved(tmp_path, m, model=settings))
    assert loaded.network.config.crf is False and "crf.trans" not in loaded.network.params


# -- through the command line ----------------------------------------------------------------------------
TINY = ["--hidden", "8", "--embedding", "8", "--char-embedding", "4", "--char-hidden", "4", "--layers", "1",
        "--batch-size", "8", "--eval-every", "5", "--seed", "2", "-q"]


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_train_resume_tag_and_eval(tmp_path):
    """--crf: trains, resumes exactly, tags with marginals as probs (never an invalid IOB1 reading), evaluates."""
    train, dev = tmp_path / "ner.txt", tmp_path / "dev.txt"
    train.write_text(column_text(ner_sentences(40, seed=1)))
    dev.write_text(column_text(ner_sentences(10, seed=2)))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    common = ["--task", "tag", train, "--val-file", dev, "--crf", *TINY]
    assert _invoke("train", *common, "-o", tmp_path / "a/m.npz", "--max-steps", "14").exit_code == 0
    assert _invoke("train", *common, "-o", tmp_path / "b/m.npz", "--max-steps", "6").exit_code == 0
    r = _invoke("train", *common, "-o", tmp_path / "b/m.npz", "--max-steps", "14", "--resume")
    assert r.exit_code == 0, r.output
    a, _ = ckpt.load_checkpoint(tmp_path / "a/m.last.npz")
    b, _ = ckpt.load_checkpoint(tmp_path / "b/m.last.npz")
    assert {"param/crf.trans", "param/crf.start", "param/crf.end"} <= a.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith(("param/", "optim/")))
    loaded = load_model(tmp_path / "a/m.npz")
    assert loaded.network.config.crf and loaded.network.constraints is not None

    r = _invoke("tag", "-m", tmp_path / "a/m.npz", "--json", "Teddy Roosevelt visited New York .")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["tags"]) == len(out["probs"]) == 6 and all(0 < p <= 1 for p in out["probs"])
    # the probs are the CRF's marginals of the decoded tags
    enc_labels = loaded.labels
    lp, (path,) = loaded.network.crf_decode(_batch_of(loaded, out["tokens"]))
    assert out["probs"] == [round(float(np.exp(lp[t, 0, k])), 6) for t, k in enumerate(path)]
    assert [enc_labels[k] for k in path]                                   # decoded in the model's scheme
    r = _invoke("eval", "-m", tmp_path / "a/m.npz", "--json", dev)
    assert r.exit_code == 0 and 0.0 <= json.loads(r.stdout)["entity_f1"] <= 1.0


def _batch_of(loaded, tokens):
    return make_batch([loaded.predictor.encoder.encode(tokens)], with_labels=False)


def test_cli_crf_on_part_of_speech_tags(tmp_path):
    """A CRF on tags that are not entity tags: every transition allowed."""
    pos = tmp_path / "pos.conllu"
    pos.write_text(conllu_text(30, seed=1))
    r = _invoke("train", "--task", "tag", pos, "--crf", "-o", tmp_path / "pos.npz", "--max-steps", "6", *TINY)
    assert r.exit_code == 0, r.output
    loaded = load_model(tmp_path / "pos.npz")
    assert loaded.network.config.crf and loaded.network.constraints is None
    r = _invoke("tag", "-m", tmp_path / "pos.npz", "--json", "the cat saw a dog .")
    assert r.exit_code == 0 and len(json.loads(r.stdout)["tags"]) == 6
