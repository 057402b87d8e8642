"""Cells and layers: finite-difference gradients, a naive reference written from the seed's
equations, batch invariance, float32/float64 agreement, state carrying, step() == forward()."""

import numpy as np
import pytest

from charlm.nn import cells as C
from charlm.nn import layers as L
from gradcheck import check_grad, rel_error

T, B, D, H = 4, 3, 5, 4
TOL = 1e-6

CASES = [
    ("rnn", {"activation": "tanh"}),
    ("rnn", {"activation": "relu"}),
    ("gru", {}),
    ("lstm", {}),
    ("lstm", {"peephole": True}),
]
IDS = ["rnn-tanh", "rnn-relu", "gru", "lstm", "lstm-peephole"]


def setup(kind, opts, seed=0, dtype="float64", T=T, B=B, D=D, H=H):
    """A cell with randomised params (non-zero biases and peepholes), input and initial state."""
    rng = np.random.default_rng(seed)
    cell = C.make_cell(kind, **opts)
    p = cell.init_params(D, H, rng, dtype)
    for k in p:
        p[k] = (p[k] + rng.normal(0, 0.4, p[k].shape)).astype(dtype)
    x = rng.normal(0, 1, (T, B, D)).astype(dtype)
    s0 = tuple(rng.normal(0, 0.8, (B, H)).astype(dtype) for _ in range(cell.n_states))
    return cell, p, x, s0


# -- naive reference, straight from the seed (column vectors, one example, one step at a time) ----------
def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_forward(cell, p, x, s0):
    """Per-example, per-step loops; W_seed = W.T acts on the column vector [a<t-1>; x<t>].

    Returns a (T,B,H), final state tuple and the pre-activations (for the relu kink check)."""
    Tn, Bn, _ = x.shape
    Wt = p["W"].T                                        # (G*H, H+D): the seed's W_a / stacked W_·
    b = p["b"]
    Hn = Wt.shape[0] // cell.G
    rows = lambda k: slice(k * Hn, (k + 1) * Hn)         # noqa: E731  (block k of the gate rows)
    out = np.zeros((Tn, Bn, Hn))
    final = [np.zeros((Bn, Hn)) for _ in s0]
    pre = []
    for i in range(Bn):
        state = [s[i].copy() for s in s0]
        for t in range(Tn):
            xt = x[t, i]
            if cell.kind == "rnn":
                a_prev, = state
                z = Wt @ np.concatenate([a_prev, xt]) + b            # W_a[a<t-1>, x<t>] + b_a
                pre.append(z)
                a = np.tanh(z) if cell.activation == "tanh" else np.maximum(z, 0.0)
                state = [a]
            elif cell.kind == "gru":
                c_prev, = state
                W_r, W_u, W_c = Wt[rows(0)], Wt[rows(1)], Wt[rows(2)]
                b_r, b_u, b_c = b[rows(0)], b[rows(1)], b[rows(2)]
                G_r = sig(W_r @ np.concatenate([c_prev, xt]) + b_r)
                c_tilde = np.tanh(W_c @ np.concatenate([G_r * c_prev, xt]) + b_c)
                G_u = sig(W_u @ np.concatenate([c_prev, xt]) + b_u)
                c = G_u * c_tilde + (1 - G_u) * c_prev
                a = c
                state = [c]
            else:
                a_prev, c_prev = state
                W_u, W_f, W_o, W_c = (Wt[rows(k)] for k in range(4))
                b_u, b_f, b_o, b_c = (b[rows(k)] for k in range(4))
                P = p["P"] if cell.peephole else np.zeros((3, Hn))
                ax = np.concatenate([a_prev, xt])
                c_tilde = np.tanh(W_c @ ax + b_c)
                G_u = sig(W_u @ ax + b_u + P[0] * c_prev)
                G_f = sig(W_f @ ax + b_f + P[1] * c_prev)
                G_o = sig(W_o @ ax + b_o + P[2] * c_prev)
                c = G_u * c_tilde + G_f * c_prev
                a = G_o * np.tanh(c)
                state = [a, c]
            out[t, i] = a
        for k, s in enumerate(state):
            final[k][i] = s
    return out, tuple(final), np.array(pre)


# -- gradient checks ----------------------------------------------------------------------------------------
def objective(rng, a_shape, n_states):
    """Random linear functional of the outputs plus of the final state: every path gets a gradient."""
    wa = rng.normal(size=a_shape)
    ws = tuple(rng.normal(size=a_shape[1:]) for _ in range(n_states))
    f = lambda a, s: float(np.sum(wa * a) + sum(np.sum(w * v) for w, v in zip(ws, s)))  # noqa: E731
    return f, wa, ws


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_cell_gradients(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=1)
    if kind == "rnn" and opts["activation"] == "relu":
        # finite differences are valid only away from the kink: take the first seed whose
        # pre-activations all keep a margin far above the perturbation (h = 1e-3)
        seed = 1
        while np.abs(ref_forward(cell, p, x, s0)[2]).min() < 0.05:
            seed += 1
            cell, p, x, s0 = setup(kind, opts, seed=seed)
        assert np.abs(ref_forward(cell, p, x, s0)[2]).min() >= 0.05
    f, wa, ws = objective(np.random.default_rng(2), (T, B, H), cell.n_states)
    loss = lambda: f(*cell.forward(p, x, s0)[:2])        # noqa: E731
    a, s, cache = cell.forward(p, x, s0)
    dx, grads, ds0 = cell.backward(p, wa, cache, ws)
    assert set(grads) == set(p)
    for k in p:
        assert check_grad(loss, p[k], grads[k]) < TOL, k
    assert check_grad(loss, x, dx) < TOL
    for s, d in zip(s0, ds0):
        assert check_grad(loss, s, d) < TOL


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_dstate_none_means_zero(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=3)
    wa = np.random.default_rng(4).normal(size=(T, B, H))
    _, _, cache = cell.forward(p, x, s0)
    dx1, g1, d1 = cell.backward(p, wa, cache)
    _, _, cache = cell.forward(p, x, s0)
    zeros = tuple(np.zeros((B, H)) for _ in s0)
    dx2, g2, d2 = cell.backward(p, wa, cache, zeros)
    np.testing.assert_array_equal(dx1, dx2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    assert np.abs(dx1).max() > 0


# -- forward semantics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_forward_matches_seed_reference(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=5)
    a, s, _ = cell.forward(p, x, s0)
    ra, rs, _ = ref_forward(cell, p, x, s0)
    np.testing.assert_allclose(a, ra, rtol=0, atol=1e-10)
    assert len(s) == cell.n_states
    for u, v in zip(s, rs):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(s[0], a[-1])           # the final a is the last output


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_evaluation_forward_equals_forward(kind, opts):
    """keep_cache=False keeps one step of gates instead of all T: same numbers, no cache."""
    cell, p, x, s0 = setup(kind, opts, seed=20, T=5)
    a, s, _ = cell.forward(p, x, s0)
    ae, se, cache = cell.forward(p, x, s0, keep_cache=False)
    assert cache is None
    np.testing.assert_array_equal(ae, a)
    for u, v in zip(se, s):
        np.testing.assert_array_equal(u, v)
    stack = L.StackedRecurrent(cell, 2)
    params = [p, cell.init_params(H, H, np.random.default_rng(21), "float64")]
    a2, s2, _ = stack.forward(params, x, [s0, s0])
    ar, sr = stack.run(params, x, [s0, s0])
    np.testing.assert_array_equal(ar, a2)
    for lu, lv in zip(sr, s2):
        for u, v in zip(lu, lv):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_batch_invariance(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=6, B=5)
    a, s, _ = cell.forward(p, x, s0)
    for i in range(5):
        ai, si, _ = cell.forward(p, x[:, i:i + 1], tuple(v[i:i + 1] for v in s0))
        np.testing.assert_allclose(ai[:, 0], a[:, i], rtol=0, atol=1e-12)
        for u, v in zip(si, s):
            np.testing.assert_allclose(u[0], v[i], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_float32_matches_float64(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=7, T=12)
    a64, _, c64 = cell.forward(p, x, s0)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    a32, s32, c32 = cell.forward(p32, x.astype(np.float32), tuple(v.astype(np.float32) for v in s0))
    assert a32.dtype == np.float32 and all(v.dtype == np.float32 for v in s32)
    np.testing.assert_allclose(a32, a64, rtol=0, atol=1e-4)
    da = np.random.default_rng(8).normal(size=a64.shape)
    dx64, g64, _ = cell.backward(p, da, c64)
    dx32, g32, d32 = cell.backward(p32, da.astype(np.float32), c32)
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    np.testing.assert_allclose(dx32, dx64, rtol=0, atol=1e-4 * max(1.0, np.abs(dx64).max()))
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=1e-4 * max(1.0, np.abs(g64[k]).max()))


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_state_carried_across_windows(kind, opts):
    cell, p, x, s0 = setup(kind, opts, seed=9, T=7)
    a, s, _ = cell.forward(p, x, s0)
    a1, s1, _ = cell.forward(p, x[:3], s0)
    a2, s2, _ = cell.forward(p, x[3:], s1)
    np.testing.assert_allclose(np.concatenate([a1, a2]), a, rtol=0, atol=1e-12)
    for u, v in zip(s2, s):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_step_equals_forward(kind, opts, dtype):
    cell, p, x, s0 = setup(kind, opts, seed=10, dtype=dtype)
    a, s, _ = cell.forward(p, x, s0)
    state = s0
    for t in range(T):
        at, state = cell.step(p, x[t], state)
        assert at.shape == (B, H) and len(state) == cell.n_states
        np.testing.assert_allclose(at, a[t], rtol=0, atol=1e-12 if dtype == "float64" else 1e-5)
    for u, v in zip(state, s):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-12 if dtype == "float64" else 1e-5)


def test_forward_does_not_modify_inputs():
    cell, p, x, s0 = setup("lstm", {"peephole": True}, seed=11)
    copies = ({k: v.copy() for k, v in p.items()}, x.copy(), tuple(v.copy() for v in s0))
    _, _, cache = cell.forward(p, x, s0)
    cell.backward(p, np.ones((T, B, H)), cache, tuple(np.ones((B, H)) for _ in s0))
    for k in p:
        np.testing.assert_array_equal(p[k], copies[0][k])
    np.testing.assert_array_equal(x, copies[1])
    for u, v in zip(s0, copies[2]):
        np.testing.assert_array_equal(u, v)


def test_init_params():
    rng = np.random.default_rng(0)
    Hn, Dn = 50, 30
    for kind, G in [("rnn", 1), ("gru", 3), ("lstm", 4)]:
        cell = C.make_cell(kind)
        p = cell.init_params(Dn, Hn, rng, "float32")
        assert p["W"].shape == (Hn + Dn, G * Hn) and p["W"].dtype == np.float32
        assert p["b"].shape == (G * Hn,)
        assert cell.param_shapes(Dn, Hn) == {k: v.shape for k, v in p.items()}
        bound = 1 / np.sqrt(Hn)
        assert np.abs(p["W"]).max() <= bound and np.abs(p["W"]).max() > 0.9 * bound
    lstm = C.LSTMCell(peephole=True).init_params(Dn, Hn, rng)
    np.testing.assert_array_equal(lstm["b"][Hn:2 * Hn], 1.0)          # forget-gate bias
    np.testing.assert_array_equal(np.delete(lstm["b"], np.s_[Hn:2 * Hn]), 0.0)
    assert lstm["P"].shape == (3, Hn)
    with pytest.raises(ValueError):
        C.make_cell("transformer")
    with pytest.raises(ValueError):
        C.RNNCell("sigmoid")


def test_sigmoid_is_stable():
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    s = C.sigmoid(z)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1], atol=1e-15)


# -- layers -----------------------------------------------------------------------------------------------
def test_stacked_layer_gradients_with_dropout():
    rng = np.random.default_rng(12)
    cell = C.LSTMCell(peephole=True)
    stack = L.StackedRecurrent(cell, 3)
    params = stack.init_params(D, H, rng, "float64")
    assert [lp["W"].shape for lp in params] == [(H + D, 4 * H), (2 * H, 4 * H), (2 * H, 4 * H)]
    x = rng.normal(size=(T, B, D))
    s0 = [tuple(rng.normal(size=(B, H)) for _ in range(2)) for _ in range(3)]
    wa = rng.normal(size=(T, B, H))
    ws = [tuple(rng.normal(size=(B, H)) for _ in range(2)) for _ in range(3)]

    def run():                                           # same masks every evaluation
        return stack.forward(params, x, s0, dropout=0.4, rng=np.random.default_rng(13))

    def loss():
        a, s, _ = run()
        return np.sum(wa * a) + sum(np.sum(w * v) for wl, sl in zip(ws, s) for w, v in zip(wl, sl))

    a, s, cache = run()
    masks = cache[1]
    assert masks[0] is None and all(m is not None for m in masks[1:])
    assert any((m == 0).any() for m in masks[1:])
    dx, grads, ds0 = stack.backward(params, wa, cache, ws)
    for l in range(3):
        for k in params[l]:
            assert check_grad(loss, params[l][k], grads[l][k]) < TOL, (l, k)
        for sv, dv in zip(s0[l], ds0[l]):
            assert check_grad(loss, sv, dv) < TOL
    assert check_grad(loss, x, dx) < TOL
    # no dropout: the stack is the cells applied in turn; step() agrees with forward()
    a, s, _ = stack.forward(params, x, s0)
    h = x
    for l in range(3):
        h, _, _ = cell.forward(params[l], h, s0[l])
    np.testing.assert_allclose(a, h, atol=1e-14)
    st = s0
    for t in range(T):
        at, st = stack.step(params, x[t], st)
        np.testing.assert_allclose(at, a[t], atol=1e-12)


@pytest.mark.parametrize("kind,opts", [("gru", {}), ("lstm", {}), ("rnn", {"activation": "tanh"})])
def test_bidirectional_layer(kind, opts):
    rng = np.random.default_rng(14)
    cell = C.make_cell(kind, **opts)
    bi = L.Bidirectional(cell)
    params = bi.init_params(D, H, rng, "float64")
    for pp in params:
        for k in pp:
            pp[k] += rng.normal(0, 0.3, pp[k].shape)
    x = rng.normal(size=(T, B, D))
    s0 = tuple(tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states)) for _ in range(2))
    y, s, cache = bi.forward(params, x, s0)
    assert y.shape == (T, B, 2 * H)
    # →a<t> is the cell left to right; ←a<t> is the cell over the reversed sequence, re-reversed
    fa, _, _ = cell.forward(params[0], x, s0[0])
    ba = ref_forward(cell, params[1], x[::-1], s0[1])[0]
    np.testing.assert_allclose(y[:, :, :H], fa, atol=1e-12)
    np.testing.assert_allclose(y[:, :, H:], ba[::-1], atol=1e-10)
    # ←a<t> at t = 0 depends on the last input, →a<t> at t = 0 does not
    x2 = x.copy()
    x2[-1] += 1.0
    y2, _, _ = bi.forward(params, x2, s0)
    np.testing.assert_array_equal(y2[0, :, :H], y[0, :, :H])
    assert np.abs(y2[0, :, H:] - y[0, :, H:]).max() > 1e-6

    wy = rng.normal(size=y.shape)
    ws = tuple(tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states)) for _ in range(2))

    def loss():
        yy, ss, _ = bi.forward(params, x, s0)
        return np.sum(wy * yy) + sum(np.sum(w * v) for wd, sd in zip(ws, ss) for w, v in zip(wd, sd))

    dx, grads, ds0 = bi.backward(params, wy, cache, ws)
    for d in range(2):
        for k in params[d]:
            assert check_grad(loss, params[d][k], grads[d][k]) < TOL, (d, k)
        for sv, dv in zip(s0[d], ds0[d]):
            assert check_grad(loss, sv, dv) < TOL
    assert check_grad(loss, x, dx) < TOL


def test_dropout_mask():
    rng = np.random.default_rng(15)
    assert L.dropout_mask((10, 10), 0.0, rng) is None
    m = L.dropout_mask((200, 500), 0.3, rng, "float32")
    assert m.dtype == np.float32 and m.shape == (200, 500)
    assert set(np.unique(m).tolist()) == {0.0, np.float32(1 / 0.7)}
    assert abs((m == 0).mean() - 0.3) < 0.01
    assert abs(m.mean() - 1.0) < 0.02                    # inverted dropout keeps the expectation
    m1 = L.dropout_mask((5, 5), 0.5, np.random.default_rng(1), "float64")
    m2 = L.dropout_mask((5, 5), 0.5, np.random.default_rng(1), "float64")
    np.testing.assert_array_equal(m1, m2)                # reproducible from the generator


def test_embedding_forward_backward():
    rng = np.random.default_rng(16)
    V, E = 11, 3
    W = rng.normal(size=(V, E))
    ids = rng.integers(0, V, (6, 4))
    ids[0, :] = 2                                        # repeated ids must accumulate
    x = L.embedding_forward(W, ids)
    np.testing.assert_array_equal(x, np.eye(V)[ids] @ W)  # one-hot o<t> times the matrix
    dx = rng.normal(size=x.shape)
    dW = L.embedding_backward(dx, ids, V)
    np.testing.assert_allclose(dW, np.eye(V)[ids].reshape(-1, V).T @ dx.reshape(-1, E), atol=1e-12)


def test_dense_gradients():
    rng = np.random.default_rng(17)
    x, W, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 7)), rng.normal(size=7)
    wy = rng.normal(size=(6, 7))
    loss = lambda: np.sum(wy * L.dense_forward(x, W, b))  # noqa: E731
    dx, dW, db = L.dense_backward(wy, x, W)
    for arr, g in [(x, dx), (W, dW), (b, db)]:
        assert check_grad(loss, arr, g) < TOL


@pytest.mark.parametrize("use_mask", [False, True])
def test_softmax_cross_entropy(use_mask):
    rng = np.random.default_rng(18)
    N, V = 12, 7
    z = rng.normal(0, 3, (N, V))
    y = rng.integers(0, V, N)
    mask = (rng.random(N) > 0.4).astype(float) if use_mask else None
    m = np.ones(N) if mask is None else mask
    naive = -np.sum(m * np.log(np.exp(z[np.arange(N), y]) / np.exp(z).sum(1))) / m.sum()
    loss, cache = L.softmax_cross_entropy(z.copy(), y, mask)
    assert abs(loss - naive) < 1e-12
    dz = L.softmax_cross_entropy_backward(cache)
    f = lambda: L.softmax_cross_entropy(z.copy(), y, mask)[0]  # noqa: E731
    assert check_grad(f, z, dz) < TOL
    if use_mask:
        np.testing.assert_array_equal(dz[m == 0], 0.0)   # padding contributes nothing


def test_softmax_cross_entropy_is_stable():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4]], dtype=np.float32)
    loss, cache = L.softmax_cross_entropy(z.copy(), np.array([0, 1]))
    assert np.isfinite(loss)
    expected = (0.0 + np.log(1 + 2 * np.exp(-1.0)) - 0) / 2  # row 2: lse - z_y = log(1+2e^-1)
    assert abs(loss - expected) < 1e-5
    assert np.all(np.isfinite(L.softmax_cross_entropy_backward(cache)))
    lp = L.log_softmax(z.astype(np.float64).copy())
    assert np.all(np.isfinite(lp)) and np.allclose(np.exp(lp).sum(1), 1.0)


def test_target_log_probs_chunked():
    rng = np.random.default_rng(19)
    a, W, b = rng.normal(size=(10, 4)), rng.normal(size=(4, 9)), rng.normal(size=9)
    y = rng.integers(0, 9, 10)
    full = L.log_softmax(a @ W + b)[np.arange(10), y]
    np.testing.assert_allclose(L.target_log_probs(a, W, b, y, chunk=3), full, atol=1e-12)


# -- property: any small shape matches the reference ------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(case=st.sampled_from(range(len(CASES))), Tn=st.integers(1, 5), Bn=st.integers(1, 4),
       Dn=st.integers(1, 5), Hn=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_any_shape_matches_reference(case, Tn, Bn, Dn, Hn, seed):
    kind, opts = CASES[case]
    cell, p, x, s0 = setup(kind, opts, seed=seed, T=Tn, B=Bn, D=Dn, H=Hn)
    a, s, cache = cell.forward(p, x, s0)
    ra, rs, _ = ref_forward(cell, p, x, s0)
    assert a.shape == (Tn, Bn, Hn)
    np.testing.assert_allclose(a, ra, rtol=0, atol=1e-10)
    for u, v in zip(s, rs):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-10)
    dx, grads, ds0 = cell.backward(p, np.ones_like(a), cache)
    assert dx.shape == x.shape and all(grads[k].shape == p[k].shape for k in p)
    assert all(d.shape == (Bn, Hn) for d in ds0)
