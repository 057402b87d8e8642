"""The conditional language model (charlm.lm.conditional, charlm.lm.bayes): gradient checks of the label
parameters and the whole loss (each cell, both condition inputs), the label's state, the reduction
to the unconditional model, scoring/sampling/beam search given a label, and Bayes' rule."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from charlm.engine.optim import Adam
from charlm.errors import CharlmError, UsageError
from charlm.lm import beam, generate, scoring
from charlm.lm.bayes import bayes_classify, label_scores, posterior, true_label_sums
from charlm.lm.conditional import CondConfig, ConditionalLM
from charlm.lm.generate import Prime
from charlm.lm.labelled import LabelledLine, pad_lines
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.nn.cells import cell_from_config
from charlm.nn.layers import log_softmax
from charlm.tasks.conditional import classified
from charlm.tasks.conditional import prepare as prepare_condlm_data
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from gradcheck import check_grad

V, C, H, E, EC = 7, 3, 4, 3, 2
TOL = 1e-6
CELLS = [dict(cell="rnn"), dict(cell="gru"), dict(cell="lstm"), dict(cell="lstm", peephole=True)]
CELL_IDS = ["rnn", "gru", "lstm", "lstm-peephole"]


def make(mode="every", seed=0, **kw):
    cfg = dict(vocab_size=V, layers=2, hidden=H, embedding=E, label_embedding=EC, num_labels=C,
               condition_input=mode, dtype="float64")
    cfg.update(kw)
    m = ConditionalLM(CondConfig(**cfg), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for k in m.params:                                   # move away from the symmetric init (b_0 = 0)
        m.params[k] += rng.normal(0, 0.3, m.params[k].shape)
    return m


def lines(seed=0, lengths=(3, 1, 4, 2)):
    rng = np.random.default_rng(seed)
    return [LabelledLine(rng.integers(2, V, n), int(rng.integers(0, C))) for n in lengths]


def check_all_params(m, loss):
    _, _, cache = m.loss(*loss.args)
    grads = m.backward(cache)
    assert list(grads) == list(m.param_shapes())
    for k, p in m.params.items():
        assert grads[k].shape == p.shape
        assert check_grad(loss, p, grads[k]) < TOL, k
    return grads


@pytest.mark.parametrize("mode", ["every", "first"])
@pytest.mark.parametrize("opts", CELLS, ids=CELL_IDS)
def test_conditional_loss_gradients(opts, mode):
    m = make(mode, seed=1, **opts)
    batch = pad_lines(lines(2), eos=1)
    assert batch.mask.sum() < batch.mask.size                # padding is masked out

    def loss():
        return m.loss(batch)[0]
    loss.args = (batch,)
    grads = check_all_params(m, loss)
    assert np.abs(grads["label.embed.W"]).max() > 0
    for l in range(2):
        assert np.abs(grads[f"label.init.{l}.W"]).max() > 0


@pytest.mark.parametrize("mode", ["every", "first"])
def test_conditional_gradients_dropout_three_layers(mode):
    m = make(mode, seed=3, cell="gru", layers=3, dropout=0.4)
    batch = pad_lines(lines(4, lengths=(2, 5, 3)), eos=1)

    def loss():
        return m.loss(batch, train=True, rng=np.random.default_rng(7))[0]
    _, _, cache = m.loss(batch, train=True, rng=np.random.default_rng(7))
    grads = m.backward(cache)
    for k, p in m.params.items():
        assert check_grad(loss, p, grads[k]) < TOL, k


@pytest.mark.parametrize("mode", ["every", "first"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gradient_wrt_state_with_label_input(cell, mode):
    """A window read from a carried conditional state (layers' states and v): the LanguageModel's
    loss/backward through the ConditionedStack give dL/d(every state entry), v included."""
    m = make(mode, seed=5, cell=cell)
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, V, (4, 3)), rng.integers(0, V, (4, 3))
    s0 = [tuple(rng.normal(0, 0.5, s.shape) for s in layer) for layer in m.label_state([0, 2, 1])]

    def loss():
        return LanguageModel.loss(m, x, y, s0)[0]
    _, s_end, cache = LanguageModel.loss(m, x, y, s0)
    grads, ds0 = LanguageModel.backward(m, cache, return_dstate=True)
    assert len(ds0) == len(s0) == 3                      # two layers, then (v,)
    for layer, dlayer in zip(s0, ds0):
        for s, d in zip(layer, dlayer):
            assert check_grad(loss, s, d) < TOL
    v_after = s_end[-1][0]
    np.testing.assert_array_equal(v_after, s0[-1][0] if mode == "every" else 0.0)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_label_state(cell):
    m = make(seed=8, cell=cell)
    state = m.label_state([0, 1, 2, 1])
    S = 2 if cell == "lstm" else 1
    assert len(state) == 3 and [len(layer) for layer in state] == [S, S, 1]
    for l in range(2):
        z = np.tanh(m.params["label.embed.W"][[0, 1, 2, 1]] @ m.params[f"label.init.{l}.W"] + m.params[f"label.init.{l}.b"])
        for k in range(S):                               # a[l]<0> (and c[l]<0> for the LSTM)
            np.testing.assert_allclose(state[l][k], z[:, k * H:(k + 1) * H], atol=1e-14)
    np.testing.assert_array_equal(state[2][0], m.params["label.embed.W"][[0, 1, 2, 1]])
    np.testing.assert_array_equal(state[0][0][1], state[0][0][3])    # same label, same state
    with pytest.raises(UsageError, match="conditional"):
        m.init_state(2)
    with pytest.raises(UsageError, match="labels must be ids 0..2"):
        m.label_state([3])


@pytest.mark.parametrize("mode", ["every", "first"])
@pytest.mark.parametrize("opts", CELLS, ids=CELL_IDS)
def test_eval_paths_agree(opts, mode):
    """log_probs over a sequence, step after step and the training loss give the same numbers."""
    m = make(mode, seed=9, **opts)
    batch = pad_lines(lines(10, lengths=(5, 5, 5)), eos=1)
    s0 = m.label_state(batch.labels)
    logp, s_end = m.log_probs(batch.x, s0)
    nll = -np.take_along_axis(logp, batch.y[..., None], 2)[..., 0]
    assert abs(m.loss(batch)[0] - nll.mean()) < 1e-12
    lp, _ = m.target_log_probs(batch.x, batch.y, s0)
    np.testing.assert_allclose(lp, -nll, atol=1e-12)
    state = s0
    for t in range(batch.x.shape[0]):
        logits, state = m.step(batch.x[t], state)
        np.testing.assert_allclose(log_softmax(logits), logp[t], atol=1e-12)
    for u, v in zip(state, s_end):
        for a, b in zip(u, v):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_first_feeds_the_label_at_step_one_only():
    """Layer 0 reads [E[x<t>]; v<t>]: v<t> = e(c) at every step ("every"), or at the first step
    and 0 after ("first"), which the state after the window then carries (0 stays 0)."""
    for mode in ("every", "first"):
        m = make(mode, seed=11)
        s = m.label_state([0, 2])
        e = m.params["embed.W"][np.array([[1, 3], [3, 4], [4, 4]])]
        xv, layers, after = m.rnn._join(e, s)
        assert xv.shape == (3, 2, E + EC) and len(layers) == 2
        np.testing.assert_array_equal(xv[..., :E], e)
        v = m.params["label.embed.W"][[0, 2]]
        np.testing.assert_array_equal(xv[0, :, E:], v)
        np.testing.assert_array_equal(xv[1:, :, E:], np.broadcast_to(v, (2, 2, EC)) if mode == "every" else 0.0)
        np.testing.assert_array_equal(after, v if mode == "every" else 0.0)
        _, state = m.step(np.array([1, 3]), s)               # one step: the same rule
        np.testing.assert_array_equal(state[-1][0], v if mode == "every" else 0.0)


@pytest.mark.parametrize("mode", ["every", "first"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_without_its_label_parts_it_is_the_unconditional_model(cell, mode):
    """W_0 = 0, b_0 = 0 (a<0> = tanh 0 = 0) and zero rows for v in layer 0: the conditional model's
    predictions are the LanguageModel's with the same other parameters."""
    m = make(mode, seed=12, cell=cell)
    lm = LanguageModel(ModelConfig(vocab_size=V, cell=cell, layers=2, hidden=H, embedding=E, dtype="float64"))
    for k in lm.params:
        lm.params[k] = m.params[k][:H + E] if k == "rnn.0.W" else m.params[k]
    for k in m.params:
        if k.startswith("label.init."):
            m.params[k][...] = 0.0
    m.params["rnn.0.W"][H + E:] = 0.0
    x = np.random.default_rng(13).integers(0, V, (6, 3))
    np.testing.assert_allclose(m.log_probs(x, m.label_state([0, 1, 2]))[0], lm.log_probs(x, lm.init_state(3))[0],
                               atol=1e-12)


def test_the_unconditional_model_is_unchanged(tmp_path):
    """A LanguageModel has no label parameters; its shapes and initial values are those of the
    notes' model drawn in the same order (embedding, each layer's cell, output), and a saved
    unconditional model loads as a LanguageModel with the same parameters and predictions."""
    from charlm import checkpoint, tasks
    from charlm.text.vocab import Vocab
    cfg = ModelConfig(vocab_size=V, cell="lstm", layers=2, hidden=H, embedding=E)
    lm = LanguageModel(cfg, seed=3)
    assert not getattr(lm, "conditional", False)
    rng = np.random.default_rng(3)
    expect = {"embed.W": rng.standard_normal((V, E)).astype("float32")}
    cell = cell_from_config(cfg)
    for l in range(2):
        for k, v in cell.init_params(E if l == 0 else H, H, rng, "float32").items():
            expect[f"rnn.{l}.{k}"] = v
    s = 1 / np.sqrt(H)
    expect["out.W"] = rng.uniform(-s, s, (H, V)).astype("float32")
    expect["out.b"] = np.zeros(V, "float32")
    assert list(lm.params) == list(expect)
    for k in expect:
        np.testing.assert_array_equal(lm.params[k], expect[k])
    vocab = Vocab(["<UNK>", "<EOS>", *"abcde"], [0] * V)
    checkpoint.save_checkpoint(tmp_path / "lm.npz", checkpoint.model_arrays(lm),
                               {"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION,
                                "kind": "best", "task": "lm", "model": cfg.to_dict(), "vocab": vocab.to_dict()})
    loaded = tasks.load(tmp_path / "lm.npz").network
    assert type(loaded) is LanguageModel and list(loaded.params) == list(expect)
    x = np.arange(12).reshape(4, 3) % V
    np.testing.assert_array_equal(loaded.log_probs(x, loaded.init_state(3))[0], lm.log_probs(x, lm.init_state(3))[0])


@pytest.mark.parametrize("mode", ["every", "first"])
def test_it_starts_as_the_unconditional_model(mode):
    """The shared parameters are a LanguageModel's of the same seed (the same draws), the label
    pathway starts at 0 (L, b_0, layer 0's rows for v; W_0 is drawn), so the first predictions and
    the first gradients of the shared parameters are the LanguageModel's; and the label's
    embedding gets a gradient at once (through W_0)."""
    cfg = dict(vocab_size=V, cell="lstm", layers=2, hidden=H, embedding=E, dtype="float64")
    m = ConditionalLM(CondConfig(**cfg, num_labels=C, label_embedding=EC, condition_input=mode), seed=4)
    lm = LanguageModel(ModelConfig(**cfg), seed=4)
    for k, p in lm.params.items():
        np.testing.assert_array_equal(m.params[k][:H + E] if k == "rnn.0.W" else m.params[k], p)
    assert not m.params["rnn.0.W"][H + E:].any() and not m.params["label.embed.W"].any()
    assert np.abs(m.params["label.init.0.W"]).min() > 0
    batch = pad_lines(lines(5), eos=1)
    lm_loss, _, lm_cache = lm.loss(batch.x, batch.y, lm.init_state(batch.x.shape[1]), batch.mask)
    loss, _, cache = m.loss(batch)
    assert loss == lm_loss
    grads, lm_grads = m.backward(cache), lm.backward(lm_cache)
    for k, g in lm_grads.items():
        np.testing.assert_allclose(grads[k][:H + E] if k == "rnn.0.W" else grads[k], g, atol=1e-15)
    assert np.abs(grads["label.embed.W"][np.unique(batch.labels)]).max() > 0


def test_config_validation():
    with pytest.raises(CharlmError, match="at least two labels"):
        CondConfig(vocab_size=V, num_labels=1)
    with pytest.raises(CharlmError, match="every or first"):
        CondConfig(vocab_size=V, num_labels=2, condition_input="last")
    with pytest.raises(CharlmError, match="label_embedding"):
        CondConfig(vocab_size=V, num_labels=2, label_embedding=0)
    c = CondConfig.from_dict(CondConfig(vocab_size=V, num_labels=4).to_dict())
    assert (c.num_labels, c.label_embedding, c.condition_input) == (4, 32, "every")
    m = ConditionalLM(CondConfig(vocab_size=V, num_labels=4, hidden=H, embedding=E, label_embedding=5, layers=1,
                                 cell="lstm"))
    assert m.params["rnn.0.W"].shape == (H + E + 5, 4 * H)
    assert m.params["label.init.0.W"].shape == (5, 2 * H)     # a<0> and c<0> of the LSTM
    ConditionalLM(m.config, params=m.params)                   # its own parameters load back


# -- a tiny trained model: scoring, sampling, beam search and Bayes' rule given a label -----------

TEXT = "".join(f"pos\t{t}\n" for t in ["a good film", "good fun", "a fine film", "so good"]) + \
       "".join(f"neg\t{t}\n" for t in ["a bad film", "bad fun", "a dull film", "so bad"])


@pytest.fixture(scope="module", params=["every", "first"])
def trained(request, tmp_path_factory):
    """(model, data, tokenizer): a character-level conditional GRU trained for 60 full-batch steps."""
    path = tmp_path_factory.mktemp("cond") / "reviews.tsv"
    path.write_text(TEXT, encoding="utf-8")
    data = prepare_condlm_data(path, TokenizerConfig(level="char"), val_fraction=0.0)
    m = ConditionalLM(CondConfig(vocab_size=len(data.vocab), num_labels=2, cell="gru", layers=1, hidden=24,
                                 embedding=8, label_embedding=4, condition_input=request.param, dtype="float64"))
    opt, batch = Adam(0.03), pad_lines(data.train, data.vocab.eos_id)
    for _ in range(60):
        opt.step(m.params, m.backward(m.loss(batch)[2]))
    return m, data, Tokenizer(data.vocab.tokenizer)


def test_scores_given_a_label_are_the_training_loss(trained):
    m, data, _ = trained
    batch = pad_lines(data.train, data.vocab.eos_id)
    tokens = [data.vocab.decode(line.ids) for line in data.train]
    nats, count = true_label_sums(m, data.vocab, tokens, batch.labels)
    assert count.sum() == batch.tokens
    assert abs(nats.sum() / count.sum() - m.loss(batch)[0]) < 1e-12
    scores = label_scores(m, data.vocab, tokens)
    assert scores.shape == (8, 2)
    np.testing.assert_allclose(-scores[np.arange(8), batch.labels].sum(), nats.sum(), rtol=1e-12)


def test_bayes_rule_from_the_scores(trained):
    """classify's posterior = softmax over labels of log P(text | c) + log P(c), with the scores
    of `score --label c` (SentenceScore.logprob) and the training frequencies as P(c)."""
    m, data, tok = trained
    texts = ["a good film", "so bad", "a dull fun", "good"]
    token_lists = [tok.tokenize(t) for t in texts]
    prior = np.log(np.array([0.25, 0.75]))               # any prior: not only the uniform one
    result = bayes_classify(m, data.vocab, token_lists, prior)
    for i, toks in enumerate(token_lists):
        logp = [scoring.score_token_lists(m.given(c), data.vocab, [toks])[0].logprob for c in range(2)]
        joint = [lp + math.log(p) for lp, p in zip(logp, (0.25, 0.75))]
        norm = math.log(sum(math.exp(j - max(joint)) for j in joint)) + max(joint)
        np.testing.assert_allclose(result.posterior[i], [math.exp(j - norm) for j in joint], rtol=1e-10)
        assert result.labels[i] == int(np.argmax(joint))
    assert data.labels.names == ["neg", "pos"]
    assert list(result.labels[:2]) == [1, 0]             # the model learned the polarity words
    records = classified(result, data.labels.names, texts)
    assert records[0].label == "pos" and list(records[0].probs)[0] == "pos"
    assert abs(sum(records[0].probs.values()) - 1.0) < 1e-12
    np.testing.assert_allclose(posterior(np.zeros((1, 2)), prior), [[0.25, 0.75]])


def test_sampling_given_a_label(trained):
    m, data, tok = trained
    samples = {c: generate.samples(m.given(c), data.vocab, tok, Prime.from_text(tok, ""), num=6, length=30,
                                   temperature=0.5, rng=np.random.default_rng(1)) for c in (0, 1)}
    again = generate.samples(m.given(1), data.vocab, tok, Prime.from_text(tok, ""), num=6, length=30,
                             temperature=0.5, rng=np.random.default_rng(1))
    assert [s.text for s in again] == [s.text for s in samples[1]]          # same seed, same samples
    assert any("bad" in s.text or "dull" in s.text for s in samples[0])
    assert any("good" in s.text or "fine" in s.text for s in samples[1])
    assert not any("bad" in s.text or "dull" in s.text for s in samples[1])
    primed = generate.samples(m.given(1), data.vocab, tok, Prime.from_text(tok, "a "), num=3, length=30,
                              temperature=0.0, stop_at=["film"])
    assert all(s.text.startswith("a ") for s in primed)
    assert all(s.stop == "stop-at" and s.text.endswith("film") for s in primed)
    top_k = generate.samples(m.given(0), data.vocab, tok, Prime.from_text(tok, ""), num=2, length=20, top_k=2,
                             top_p=0.9, rng=np.random.default_rng(2))
    assert len(top_k) == 2


@pytest.mark.parametrize("prime", ["", "a ", "so"])
def test_beam_one_is_greedy_given_a_label(trained, prime):
    m, data, tok = trained
    for c in (0, 1):
        p = Prime.from_text(tok, prime)
        greedy = generate.sample(m.given(c), data.vocab, length=30, temperature=0.0, prime=p.tokens)[0]
        best = beam.search(m.given(c), data.vocab, tok, p, beam=1, length=30)[0]
        assert best.tokens == greedy
        wide = beam.search(m.given(c), data.vocab, tok, p, beam=4, length=30)[0]
        assert wide.logprob >= best.logprob - 1e-9
        if wide.stop == "eos":                           # the beam's log-probability is the score's
            score = scoring.score_token_lists(m.given(c), data.vocab, [p.tokens + wide.tokens])[0]
            assert abs(sum(score.per_token[len(p.tokens):]) - wide.logprob) < 1e-9
