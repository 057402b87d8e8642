"""Optimizers against textbook formulas, clipping, exact resume, schedules."""

import json
import math

import numpy as np
import pytest

from charlm.engine.optim import SGD, Adagrad, Adam, RMSprop, clip_grad_norm, make_optimizer
from charlm.errors import UsageError

P0 = np.array([0.5, -1.0, 2.0, 0.0])
GRADS = [np.array([0.1, -0.2, 0.3, -0.4]), np.array([-0.3, 0.1, 0.2, 0.5]),
         np.array([0.05, 0.05, -0.6, 0.0])]


def run(opt, steps=3):
    params = {"w": P0.copy()}
    for g in GRADS[:steps]:
        opt.step(params, {"w": g.copy()})
    return params["w"]


# -- textbook formulas, written out independently of charlm.engine.optim ------------------

def test_sgd_plain_matches_formula():
    p = P0.copy()
    for g in GRADS:
        p = p - 0.1 * g
    np.testing.assert_allclose(run(SGD(0.1)), p, rtol=0, atol=1e-15)


def test_sgd_momentum_matches_formula():
    p, v = P0.copy(), np.zeros(4)
    for g in GRADS:
        v = 0.9 * v + g
        p = p - 0.1 * v
    np.testing.assert_allclose(run(SGD(0.1, momentum=0.9)), p, rtol=1e-14, atol=1e-15)


def test_adam_matches_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p, m, v = P0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    got = run(Adam(lr, b1, b2, eps))
    np.testing.assert_allclose(got, p, rtol=1e-12, atol=1e-15)
    # the first Adam step moves every coordinate with a non-zero gradient by about lr
    first = run(Adam(lr), steps=1)
    np.testing.assert_allclose(np.abs(first - P0)[:4], lr, rtol=1e-5)


def test_adagrad_matches_formula():
    lr, eps = 0.1, 1e-8
    p, G = P0.copy(), np.zeros(4)
    for g in GRADS:
        G = G + g * g
        p = p - lr * g / (np.sqrt(G) + eps)
    np.testing.assert_allclose(run(Adagrad(lr, eps)), p, rtol=1e-14, atol=1e-15)


def test_rmsprop_matches_formula():
    lr, rho, eps = 0.01, 0.9, 1e-8
    p, s = P0.copy(), np.zeros(4)
    for g in GRADS:
        s = rho * s + (1 - rho) * g * g
        p = p - lr * g / (np.sqrt(s) + eps)
    np.testing.assert_allclose(run(RMSprop(lr, rho, eps)), p, rtol=1e-14, atol=1e-15)


# -- behaviour --------------------------------------------------------------------

@pytest.mark.parametrize("name,lr,kw", [("sgd", 0.1, {"momentum": 0.9}), ("adam", 0.05, {}),
                                        ("adagrad", 0.5, {}), ("rmsprop", 0.01, {})])
def test_converges_on_quadratic(name, lr, kw):
    # f(w) = 0.5 * sum(a * (w - c)^2), grad = a * (w - c); minimum at c
    rng = np.random.default_rng(0)
    a, c = rng.uniform(0.5, 2.0, 20), rng.normal(size=20)
    w = {"w": np.zeros(20)}
    opt = make_optimizer(name, lr, **kw)
    for _ in range(2000):
        opt.step(w, {"w": a * (w["w"] - c)})
    assert np.abs(w["w"] - c).max() < 1e-2


@pytest.mark.parametrize("cls", [SGD, Adam, Adagrad, RMSprop])
def test_float32_stays_float32_and_inplace(cls):
    p = np.ones((3, 5), np.float32)
    params = {"rnn.0.W": p}
    opt = cls(0.01) if cls is not SGD else SGD(0.01, momentum=0.5)
    opt.step(params, {"rnn.0.W": np.full((3, 5), 0.5, np.float32)})
    assert params["rnn.0.W"] is p and p.dtype == np.float32
    assert (p < 1).all()
    _, arrays = opt.state_dict()
    assert arrays and all(a.dtype == np.float32 for a in arrays.values())
    assert all(k.endswith(".rnn.0.W") for k in arrays)


def test_params_without_grads_are_left_alone():
    params = {"a": np.ones(3), "b": np.ones(3)}
    Adam(0.1).step(params, {"a": np.ones(3)})
    assert (params["a"] < 1).all() and (params["b"] == 1).all()


def test_clip_grad_norm_scales_to_max_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    after = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert after == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])


def test_clip_grad_norm_noop_below_and_disabled():
    grads = {"a": np.array([0.3, 0.4], np.float32)}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], np.array([0.3, 0.4], np.float32))
    big = {"a": np.array([30.0, 40.0])}
    assert clip_grad_norm(big, None) == pytest.approx(50.0)
    assert clip_grad_norm(big, 0) == pytest.approx(50.0)
    np.testing.assert_array_equal(big["a"], [30.0, 40.0])


def test_clip_grad_norm_nonfinite_is_reported_not_applied():
    grads = {"a": np.array([np.inf, 1.0])}
    assert math.isinf(clip_grad_norm(grads, 1.0))
    assert grads["a"][1] == 1.0


@pytest.mark.parametrize("name,kw", [("sgd", {"momentum": 0.9}), ("adam", {}),
                                     ("adagrad", {}), ("rmsprop", {})])
def test_exact_resume(name, kw):
    rng = np.random.default_rng(1)
    init = {"embed.W": rng.normal(size=(7, 3)).astype(np.float32),
            "rnn.0.W": rng.normal(size=(5, 8)).astype(np.float32)}
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in init.items()}
             for _ in range(10)]

    straight = {k: v.copy() for k, v in init.items()}
    opt = make_optimizer(name, 0.01, **kw)
    for g in grads:
        opt.step(straight, g)

    resumed = {k: v.copy() for k, v in init.items()}
    first = make_optimizer(name, 0.01, **kw)
    for g in grads[:5]:
        first.step(resumed, g)
    first.lr = 0.01  # settable
    scalars, arrays = first.state_dict()
    scalars = json.loads(json.dumps(scalars))  # must survive JSON
    arrays = {k: v.copy() for k, v in arrays.items()}
    second = make_optimizer(name, 0.5, **kw)  # lr comes back from the state
    second.load_state_dict(scalars, arrays)
    for g in grads[5:]:
        second.step(resumed, g)
    for k in init:
        np.testing.assert_array_equal(resumed[k], straight[k])
    assert second.t == 10 and second.lr == 0.01


def test_state_dict_is_a_copy():
    params = {"w": np.ones(3)}
    opt = Adam(0.1)
    opt.step(params, {"w": np.ones(3)})
    _, arrays = opt.state_dict()
    arrays["m.w"][:] = 99
    assert opt.state["m"]["w"][0] != 99


def test_load_state_dict_rejects_other_optimizer():
    from charlm.errors import CheckpointError
    scalars, arrays = Adam(0.1).state_dict()
    with pytest.raises(CheckpointError, match="adam"):
        SGD(0.1).load_state_dict(scalars, arrays)


def test_make_optimizer_errors():
    assert isinstance(make_optimizer("Adam", 1e-3), Adam)
    with pytest.raises(UsageError, match="unknown optimizer 'lbfgs'"):
        make_optimizer("lbfgs", 0.1)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(UsageError, match="learning rate"):
            make_optimizer("sgd", bad)
    with pytest.raises(UsageError):
        make_optimizer("sgd", 0.1, nesterov=True)
    with pytest.raises(UsageError):
        make_optimizer("sgd", 0.1, momentum=1.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad", "rmsprop"])
def test_blocked_update_is_identical(name, monkeypatch):
    import charlm.engine.optim as optim
    rng = np.random.default_rng(2)
    init = rng.normal(size=(37, 29)).astype(np.float32)
    grads = [rng.normal(size=init.shape).astype(np.float32) for _ in range(3)]
    results = []
    for block in (1 << 20, 100):  # one sweep vs 11 blocks (with a short last block)
        monkeypatch.setattr(optim, "BLOCK", block)
        p = {"w": init.copy(), "f": np.asfortranarray(init)}  # "f": not C-contiguous
        opt = make_optimizer(name, 0.01, **({"momentum": 0.9} if name == "sgd" else {}))
        for g in grads:
            opt.step(p, {"w": g, "f": g})
        results.append(p)
    np.testing.assert_array_equal(results[0]["w"], results[1]["w"])
    np.testing.assert_array_equal(results[1]["f"], results[1]["w"])
    assert not np.array_equal(results[0]["w"], init)


def test_plain_sgd_keeps_no_state_and_checks_shapes():
    opt = SGD(0.1)
    opt.step({"w": np.ones(3)}, {"w": np.ones(3)})
    assert opt.state_dict()[1] == {}
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.ones(3)}, {"w": np.ones(4)})
