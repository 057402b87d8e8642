"""LanguageModel: whole-model gradient checks (each cell, tied weights, dropout, padding mask,
initial state), loss semantics, evaluation helpers, configuration validation."""

import numpy as np
import pytest

from charlm.errors import CharlmError
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.nn.layers import log_softmax
from gradcheck import check_grad

T, B, V, H = 4, 3, 7, 4
TOL = 1e-6

MODELS = [
    dict(cell="rnn"),
    dict(cell="rnn", activation="relu"),
    dict(cell="gru"),
    dict(cell="lstm"),
    dict(cell="lstm", peephole=True),
]
MODEL_IDS = ["rnn-tanh", "rnn-relu", "gru", "lstm", "lstm-peephole"]


def make(seed=0, **kw):
    cfg = dict(vocab_size=V, layers=2, hidden=H, embedding=H, dtype="float64")
    cfg.update(kw)
    m = LanguageModel(ModelConfig(**cfg), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for k in m.params:                                   # move away from the symmetric init
        m.params[k] += rng.normal(0, 0.3, m.params[k].shape)
    return m


def data(seed=0, T=T, B=B):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


def random_state(m, seed=0, B=B):
    rng = np.random.default_rng(seed)
    return [tuple(rng.normal(0, 0.5, s.shape) for s in layer) for layer in m.init_state(B)]


def grad_check_model(m, x, y, s0, mask=None, train=False, drop_seed=3):
    def loss():
        rng = np.random.default_rng(drop_seed) if train else None   # same masks every evaluation
        return m.loss(x, y, s0, mask=mask, train=train, rng=rng)[0]

    rng = np.random.default_rng(drop_seed) if train else None
    _, _, cache = m.loss(x, y, s0, mask=mask, train=train, rng=rng)
    grads, ds0 = m.backward(cache, return_dstate=True)
    assert {k: g.shape for k, g in grads.items()} == m.param_shapes()
    for k, p in m.params.items():
        assert check_grad(loss, p, grads[k]) < TOL, k
    for layer, dlayer in zip(s0, ds0):
        for s, d in zip(layer, dlayer):
            assert check_grad(loss, s, d) < TOL
    return grads


@pytest.mark.parametrize("opts", MODELS, ids=MODEL_IDS)
def test_model_gradients(opts):
    m = make(seed=1, **opts)
    x, y = data(2)
    grad_check_model(m, x, y, random_state(m, 3))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_model_gradients_dropout_mask_tied(cell):
    m = make(seed=4, cell=cell, dropout=0.3, tie_weights=True)
    assert "out.W" not in m.params
    x, y = data(5)
    mask = np.ones((T, B))
    mask[2:, 0] = 0
    mask[3, 2] = 0
    grads = grad_check_model(m, x, y, random_state(m, 6), mask=mask, train=True)
    assert np.abs(grads["embed.W"]).max() > 0


def test_model_gradients_three_layers_untied_dropout():
    m = make(seed=7, cell="lstm", layers=3, hidden=5, embedding=3, dropout=0.5)
    x, y = data(8)
    grad_check_model(m, x, y, random_state(m, 9), train=True)


def test_tied_logits_use_embedding():
    m = make(seed=10, cell="gru", tie_weights=True)
    x, y = data(11)
    s0 = m.init_state(B)
    logp, _ = m.log_probs(x, s0)
    a, _, _ = m.rnn.forward(m._layer_params(), m.params["embed.W"][x], s0)
    np.testing.assert_allclose(logp, log_softmax(a @ m.params["embed.W"].T + m.params["out.b"]),
                               atol=1e-12)
    with pytest.raises(CharlmError, match="embedding == hidden"):
        ModelConfig(vocab_size=V, hidden=8, embedding=4, tie_weights=True)


@pytest.mark.parametrize("opts", MODELS[2:], ids=MODEL_IDS[2:])
def test_loss_is_mean_nll_over_unmasked(opts):
    m = make(seed=12, **opts)
    x, y = data(13)
    s0 = random_state(m, 14)
    logp, s_lp = m.log_probs(x, s0)
    nll = -np.take_along_axis(logp, y[..., None], axis=2)[..., 0]
    loss, s_loss, _ = m.loss(x, y, s0)
    assert isinstance(loss, float)
    assert abs(loss - nll.mean()) < 1e-12
    mask = (np.arange(T)[:, None] < np.array([4, 2, 1])[None]).astype(float)   # padded sentences
    loss_m, _, _ = m.loss(x, y, s0, mask=mask)
    assert abs(loss_m - (nll * mask).sum() / mask.sum()) < 1e-12
    loss_1, _, _ = m.loss(x, y, s0, mask=np.ones((T, B)))
    assert abs(loss_1 - loss) < 1e-12
    for u, v in zip(s_lp, s_loss):
        for a, b in zip(u, v):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opts", MODELS, ids=MODEL_IDS)
def test_eval_helpers_agree(opts):
    m = make(seed=15, **opts)
    x, y = data(16, T=6)
    s0 = random_state(m, 17)
    logp, s_end = m.log_probs(x, s0)
    assert logp.shape == (6, B, V)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-12)
    lp, s2 = m.target_log_probs(x, y, s0)
    assert lp.shape == (6, B)
    np.testing.assert_allclose(lp, np.take_along_axis(logp, y[..., None], 2)[..., 0], atol=1e-12)
    state = s0                                           # step() repeated == the sequence forward
    for t in range(6):
        logits, state = m.step(x[t], state)
        assert logits.shape == (B, V)
        np.testing.assert_allclose(log_softmax(logits), logp[t], atol=1e-12)
    for u, v, w in zip(state, s_end, s2):
        for a, b, c in zip(u, v, w):
            np.testing.assert_allclose(a, b, atol=1e-12)
            np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_carried_across_windows(cell):
    m = make(seed=18, cell=cell)
    x, y = data(19, T=8)
    s0 = m.init_state(B)
    full, _, _ = m.loss(x, y, s0)
    l1, s1, _ = m.loss(x[:5], y[:5], s0)
    l2, _, _ = m.loss(x[5:], y[5:], s1)
    assert abs((5 * l1 + 3 * l2) / 8 - full) < 1e-12
    l2_fresh, _, _ = m.loss(x[5:], y[5:], s0)            # the carried state matters
    assert abs(l2_fresh - l2) > 1e-9


def test_batch_invariance():
    m = make(seed=20, cell="lstm", peephole=True)
    x, y = data(21)
    lp, _ = m.target_log_probs(x, y, m.init_state(B))
    for i in range(B):
        lpi, _ = m.target_log_probs(x[:, i:i + 1], y[:, i:i + 1], m.init_state(1))
        np.testing.assert_allclose(lpi[:, 0], lp[:, i], atol=1e-12)


def test_float32_default_and_agreement_with_float64():
    cfg = ModelConfig(vocab_size=V, cell="lstm", hidden=6, embedding=5)
    m32 = LanguageModel(cfg, seed=22)
    assert cfg.dtype == "float32"
    assert all(p.dtype == np.float32 for p in m32.params.values())
    m64 = LanguageModel(ModelConfig(**{**cfg.to_dict(), "dtype": "float64"}),
                        params={k: v.astype(np.float64) for k, v in m32.params.items()})
    x, y = data(23, T=10)
    l32, s32, c32 = m32.loss(x, y, m32.init_state(B))
    l64, _, c64 = m64.loss(x, y, m64.init_state(B))
    assert all(a.dtype == np.float32 for layer in s32 for a in layer)
    assert abs(l32 - l64) < 1e-5
    g32, g64 = m32.backward(c32), m64.backward(c64)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], atol=1e-4 * max(1.0, np.abs(g64[k]).max()))
    logits, _ = m32.step(x[0], m32.init_state(B))
    assert logits.dtype == np.float32


def test_dropout_only_in_training():
    m = make(seed=24, cell="gru", dropout=0.5)
    x, y = data(25)
    s0 = m.init_state(B)
    ev1, _, _ = m.loss(x, y, s0)
    ev2, _, _ = m.loss(x, y, s0, train=False, rng=np.random.default_rng(1))
    assert ev1 == ev2
    tr1, _, _ = m.loss(x, y, s0, train=True, rng=np.random.default_rng(1))
    tr1b, _, _ = m.loss(x, y, s0, train=True, rng=np.random.default_rng(1))
    tr2, _, _ = m.loss(x, y, s0, train=True, rng=np.random.default_rng(2))
    assert tr1 == tr1b and tr1 != tr2 and tr1 != ev1


def test_training_reduces_loss():
    """A few plain gradient steps on a fixed batch lower the loss (the gradients point downhill)."""
    m = LanguageModel(ModelConfig(vocab_size=V, cell="lstm", layers=1, hidden=16, embedding=8),
                      seed=26)
    x, _ = data(27, T=10)
    y = (x + 1) % V                                      # a learnable rule
    first = None
    for _ in range(60):
        loss, _, cache = m.loss(x, y, m.init_state(B))
        first = loss if first is None else first
        for k, g in m.backward(cache).items():
            m.params[k] -= 3.0 * g
    assert loss < 0.1 * first


def test_param_names_and_shapes():
    m = LanguageModel(ModelConfig(vocab_size=10, cell="lstm", layers=2, hidden=6, embedding=3,
                                  peephole=True))
    shapes = m.param_shapes()
    assert shapes == {
        "embed.W": (10, 3),
        "rnn.0.W": (9, 24), "rnn.0.b": (24,), "rnn.0.P": (3, 6),
        "rnn.1.W": (12, 24), "rnn.1.b": (24,), "rnn.1.P": (3, 6),
        "out.W": (6, 10), "out.b": (10,),
    }
    assert {k: v.shape for k, v in m.params.items()} == shapes
    assert m.num_params() == sum(int(np.prod(s)) for s in shapes.values())
    np.testing.assert_array_equal(m.params["rnn.1.b"][6:12], 1.0)   # forget bias
    state = m.init_state(5)
    assert len(state) == 2 and all(len(t) == 2 and t[0].shape == (5, 6) for t in state)
    g = LanguageModel(ModelConfig(vocab_size=10, cell="gru", layers=1, hidden=6, embedding=6,
                                  tie_weights=True))
    assert set(g.params) == {"embed.W", "rnn.0.W", "rnn.0.b", "out.b"}
    assert len(g.init_state(2)[0]) == 1
    # same seed, same parameters; the params argument is used as given
    again = LanguageModel(m.config, seed=0)
    for k in shapes:
        np.testing.assert_array_equal(again.params[k], m.params[k])
    copy = LanguageModel(m.config, params={k: v.copy() for k, v in m.params.items()})
    np.testing.assert_array_equal(copy.params["out.W"], m.params["out.W"])
    with pytest.raises(CharlmError):
        LanguageModel(m.config, params={k: v for k, v in m.params.items() if k != "out.b"})
    with pytest.raises(CharlmError):
        LanguageModel(m.config, params={**m.params, "out.b": np.zeros(11)})


def test_config_round_trip_and_validation():
    cfg = ModelConfig(vocab_size=50, cell="rnn", activation="relu", dropout=0.25, layers=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict({"vocab_size": 5}).cell == "gru"  # the language model's default
    bad = [
        {"vocab_size": 0}, {"vocab_size": 1}, {"vocab_size": 2.5}, {"vocab_size": "10"},
        {"vocab_size": 10, "cell": "transformer"}, {"vocab_size": 10, "layers": 0},
        {"vocab_size": 10, "hidden": -1}, {"vocab_size": 10, "embedding": True},
        {"vocab_size": 10, "dropout": 1.0}, {"vocab_size": 10, "dropout": -0.1},
        {"vocab_size": 10, "dropout": "0.1"}, {"vocab_size": 10, "activation": "sigmoid"},
        {"vocab_size": 10, "cell": "gru", "activation": "relu"},
        {"vocab_size": 10, "cell": "gru", "peephole": True},
        {"vocab_size": 10, "tie_weights": "yes"}, {"vocab_size": 10, "dtype": "float16"},
        {"vocab_size": 10, "hidden": 8, "embedding": 4, "tie_weights": True},
        {"vocab_size": 10, "colour": "blue"}, {"cell": "lstm"}, ["vocab_size"],
    ]
    for d in bad:
        with pytest.raises(CharlmError):
            ModelConfig.from_dict(d)


def test_embedding_initialisation_as_documented():
    """embed.W ~ N(0, 1) (input rows of useful size); tied weights start U(-0.1, 0.1)."""
    untied = LanguageModel(ModelConfig(vocab_size=500, cell="lstm", embedding=64, hidden=32, layers=1), seed=1)
    E = untied.params["embed.W"]
    assert abs(E.mean()) < 0.02 and abs(E.std() - 1.0) < 0.02
    tied = LanguageModel(ModelConfig(vocab_size=500, embedding=32, hidden=32, layers=1, tie_weights=True), seed=1)
    Et = tied.params["embed.W"]
    assert np.abs(Et).max() <= 0.1 and Et.std() > 0.05
    b = untied.params["rnn.0.b"]
    H = 32
    assert np.all(b[H:2 * H] == 1.0) and np.all(b[:H] == 0) and np.all(b[2 * H:] == 0)  # forget bias 1
