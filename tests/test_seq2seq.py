"""Sequence to sequence: finite-difference gradients (LengthCell, masked bidirectional final states,
each attention kind, the bridge, the decoder, whole models with dropout), padding that never leaks
(bit for bit in float64: log-probabilities and attention), attention weights exactly 0 on padding,
settings, and a tiny model that learns to normalise dates."""

import numpy as np
import pytest

from charlm.seq2seq.dates import date_pairs
from charlm.errors import CharlmError, DataError
from charlm.nn import cells as C
from charlm.nn import layers as L
from charlm.nn.attention import Attention
from charlm.nn.lengthcell import LengthCell
from charlm.engine.optim import Adam, clip_grad_norm
from charlm.seq2seq.pairs import PairExample, PairFile, PairVocab
from charlm.seq2seq.network import EOS, Seq2Seq, Seq2SeqConfig, pad_pairs
from charlm.seq2seq.search import greedy
from gradcheck import check_grad
from test_cells import CASES, IDS, TOL

SOURCE_LENGTHS = [4, 9, 1, 6, 3, 12, 2, 5, 7, 10]    # 10 pairs: more than one block of 8 rows
TARGET_LENGTHS = [3, 0, 7, 2, 11, 4, 1, 6, 9, 5]
D, H = 5, 4


def randomise(params, rng, scale=0.3):
    for p in params:
        for k in p:
            p[k] += rng.normal(0, scale, p[k].shape)


def pairs(seed, source_lengths=SOURCE_LENGTHS, target_lengths=TARGET_LENGTHS, Vx=9, Vy=8):
    rng = np.random.default_rng(seed)
    return ([rng.integers(0, Vx, n) for n in source_lengths], [rng.integers(0, Vy, n) for n in target_lengths])


def model(cell="lstm", opts=None, seed=0, **kw):
    settings = dict(source_vocab_size=9, target_vocab_size=8, cell=cell, layers=2, hidden=H, decoder_hidden=5,
                    embedding=D, target_embedding=3, attention="additive", attention_hidden=6, dropout=0.3,
                    dtype="float64")
    settings.update(opts or {}, **kw)
    m = Seq2Seq(Seq2SeqConfig(**settings), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for v in m.params.values():                                 # away from the initialisation
        v += rng.normal(0, 0.3, v.shape)
    return m


# -- LengthCell: the final state at each column's own length -----------------------------------------
@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_length_cell_is_the_cell_with_final_states_at_each_length(kind, opts):
    rng = np.random.default_rng(0)
    cell = C.make_cell(kind, **opts)
    p = cell.init_params(D, H, rng, "float64")
    randomise([p], rng)
    lengths = np.array([3, 5, 1, 3, 4])
    x = rng.normal(size=(5, 5, D))
    s0 = tuple(rng.normal(size=(5, H)) for _ in range(cell.n_states))
    a, final, cache = LengthCell(cell).forward(p, x, s0, lengths)
    whole, _, _ = cell.forward(p, x, s0)
    np.testing.assert_array_equal(a, whole)                     # the same steps, bit for bit
    for b, n in enumerate(lengths):
        _, alone, _ = cell.forward(p, x[:n, b:b + 1], tuple(s[b:b + 1] for s in s0))
        for f, s in zip(final, alone):                        # (one column: another BLAS path)
            np.testing.assert_allclose(f[b], s[0], rtol=0, atol=1e-13)
    if kind == "rnn" and opts["activation"] == "relu":
        return                                                  # finite differences and a kink
    wa = rng.normal(size=a.shape)
    ws = [rng.normal(size=(5, H)) for _ in range(cell.n_states)]

    def loss():
        a, final, _ = LengthCell(cell).forward(p, x, s0, lengths)
        return np.sum(wa * a) + sum(np.sum(w * f) for w, f in zip(ws, final))

    dx, grads, ds0 = LengthCell(cell).backward(p, wa, cache, tuple(ws))
    for k in p:
        assert check_grad(loss, p[k], grads[k]) < TOL, k
    assert check_grad(loss, x, dx) < TOL
    for s, d in zip(s0, ds0):
        assert check_grad(loss, s, d) < TOL


@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_final_outputs_only(peephole):
    """LengthCell(lstm, outputs_only=True): one forward, the final "state" (a<L_b>,), its gradient added
    to the outputs' at step L_b."""
    rng = np.random.default_rng(6)
    cell = C.make_cell("lstm", peephole=peephole)
    p = cell.init_params(D, H, rng, "float64")
    randomise([p], rng)
    lengths = np.array([3, 5, 1, 3])
    x = rng.normal(size=(5, 4, D))
    s0 = tuple(rng.normal(size=(4, H)) for _ in range(2))
    lc = LengthCell(cell, outputs_only=True)
    a, final, cache = lc.forward(p, x, s0, lengths)
    assert len(final) == 1 and lc.pieces is False and LengthCell(cell).pieces is True
    np.testing.assert_array_equal(final[0], a[lengths - 1, np.arange(4)])
    np.testing.assert_array_equal(final[0], LengthCell(cell).forward(p, x, s0, lengths)[1][0])
    wa, wf = rng.normal(size=a.shape), rng.normal(size=(4, H))

    def loss():
        a, final, _ = lc.forward(p, x, s0, lengths)
        return np.sum(wa * a) + np.sum(wf * final[0])

    dx, grads, ds0 = lc.backward(p, wa, cache, (wf,))
    for k in p:
        assert check_grad(loss, p[k], grads[k], n_samples=24) < TOL, k
    assert check_grad(loss, x, dx) < TOL
    for s, d in zip(s0, ds0):
        assert check_grad(loss, s, d) < TOL


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masked_bidirectional_final_states(kind):
    """Bidirectional(LengthCell) returns (→a<L_b>, ←a<1>) of each column, as the sentence run alone;
    gradients through both the outputs and the final states."""
    rng = np.random.default_rng(1)
    cell = C.make_cell(kind)
    bi = L.Bidirectional(LengthCell(cell))
    params = bi.init_params(D, H, rng, "float64")
    randomise(params, rng)
    lengths = np.array([3, 5, 1, 4])
    x = rng.normal(size=(5, 4, D))
    zero = cell.init_state(4, H, "float64")
    y, (sf, sb), cache = bi.forward(params, x, (zero, zero), lengths)
    for b, n in enumerate(lengths):
        alone, (af, ab), _ = L.Bidirectional(cell).forward(params, x[:n, b:b + 1],
                                                           (cell.init_state(1, H, "float64"),) * 2)
        np.testing.assert_allclose(y[:n, b], alone[:, 0], rtol=0, atol=1e-13)
        for mine, theirs in ((sf, af), (sb, ab)):
            for m_, t_ in zip(mine, theirs):
                np.testing.assert_allclose(m_[b], t_[0], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(sf[0], y[lengths - 1, np.arange(4), :H])    # →a<L_b>
    np.testing.assert_array_equal(sb[0], y[0, :, H:])                          # ←a<1>
    wy = rng.normal(size=y.shape)
    wf = [rng.normal(size=(4, H)) for _ in sf]
    wb = [rng.normal(size=(4, H)) for _ in sb]

    def loss():
        y, (sf, sb), _ = bi.forward(params, x, (zero, zero), lengths)
        return np.sum(wy * y) + sum(np.sum(w * s) for w, s in zip(wf + wb, list(sf) + list(sb)))

    dx, grads, _ = bi.backward(params, wy, cache, (tuple(wf), tuple(wb)))
    for d in range(2):
        for k in params[d]:
            assert check_grad(loss, params[d][k], grads[d][k], n_samples=24) < TOL, (d, k)
    assert check_grad(loss, x, dx, n_samples=24) < TOL


# -- attention -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_attention_gradients_and_masked_weights(kind):
    rng = np.random.default_rng(2)
    F, Hd, Ha, Tx, Ty, B = 6, 5, 4, 5, 3, 4
    att = Attention(kind)
    p = att.init_params(F, Hd, Ha, rng, "float64")
    randomise([p], rng)
    s, a = rng.normal(size=(Ty, B, Hd)), rng.normal(size=(Tx, B, F))
    lengths = np.array([2, 5, 1, 4])
    mask = np.arange(Tx)[:, None] < lengths
    w = rng.normal(size=(Ty, B, F))

    def run():
        return att.forward(p, s, a, att.keys(p, a), mask)

    def loss():
        return np.sum(w * run()[0])

    c, alpha, cache = run()
    assert alpha.shape == (Tx, Ty, B)
    assert (alpha[~np.broadcast_to(mask[:, None], alpha.shape)] == 0.0).all()   # exactly 0 at padding
    assert (alpha[np.broadcast_to(mask[:, None], alpha.shape)] > 0).all()
    np.testing.assert_allclose(alpha.sum(axis=0), 1.0, atol=1e-14)
    np.testing.assert_allclose(c, np.einsum("stb,sbf->tbf", alpha, a), atol=1e-14)   # c<t> = Σ α a<t'>
    ds, da, grads = att.backward(p, w, cache)
    for k in p:
        assert check_grad(loss, p[k], grads[k]) < TOL, k
    assert check_grad(loss, s, ds) < TOL
    assert check_grad(loss, a, da) < TOL
    assert np.abs(da[~mask]).max() == 0.0                       # padding gets no gradient either


def test_attention_scores_are_the_formulas():
    rng = np.random.default_rng(3)
    F, Hd, Ha = 6, 5, 4
    s, a = rng.normal(size=(1, 1, Hd)), rng.normal(size=(2, 1, F))
    for kind in ("additive", "dot"):
        att = Attention(kind)
        p = att.init_params(F, Hd, Ha, rng, "float64")
        e, _ = att.scores(p, s, att.keys(p, a))
        for t in range(2):
            expect = (p["v"] @ np.tanh(p["W1"].T @ s[0, 0] + p["W2"].T @ a[t, 0]) if kind == "additive"
                      else s[0, 0] @ (p["W"].T @ a[t, 0]))
            assert e[t, 0, 0] == pytest.approx(expect, abs=1e-14)


# -- whole models ----------------------------------------------------------------------------------------
MODELS = [  # (cell, options, extra settings): every attention kind, both encoders, bridge and none
    ("lstm", {}, dict(attention="additive")),
    ("gru", {}, dict(attention="dot")),
    ("rnn", {"activation": "tanh"}, dict(attention="none")),
    ("lstm", {"peephole": True}, dict(attention="dot", bidirectional=False, decoder_hidden=H)),
    ("gru", {}, dict(attention="additive", bidirectional=False)),
    ("lstm", {}, dict(attention="none", bidirectional=False, decoder_hidden=H)),
]
MODEL_IDS = ["lstm-additive", "gru-dot", "rnn-none", "lstm-peephole-dot-plain", "gru-additive-plain-bridge",
             "lstm-none-plain"]


@pytest.mark.parametrize("cell,opts,extra", MODELS, ids=MODEL_IDS)
def test_model_gradients(cell, opts, extra):
    m = model(cell, opts, **extra)
    batch = pad_pairs(*pairs(4, [3, 5, 1], [2, 0, 4]))

    def loss():
        return m.loss(batch, train=True, rng=np.random.default_rng(7))[0]

    value, state, cache = m.loss(batch, train=True, rng=np.random.default_rng(7))
    assert state is None and np.isfinite(value)
    enc, bridge, dec, head = cache[:4]
    assert enc[1] is not None and dec[1] is not None and head[1] is not None     # dropout masks in use
    grads = m.backward(cache)
    assert list(grads) == list(m.params)
    for k, v in m.params.items():
        assert grads[k].shape == v.shape and grads[k].dtype == v.dtype
        assert check_grad(loss, v, grads[k], n_samples=4) < TOL, k


def test_parameter_names_and_the_bridge():
    """bridge.* only when the encoder is bidirectional or of another width (both LSTM components read
    [→a<Tx>, ←a<1>]); without it the decoder starts from the encoder's final states themselves (a, and
    c for the LSTM)."""
    bi = model("lstm")
    assert {k for k in bi.params if k.startswith("bridge.")} == {
        f"bridge.{l}.{n}.{w}" for l in (0, 1) for n in ("a", "c") for w in ("W", "b")}
    assert "enc.0.fwd.W" in bi.params and "enc.1.bwd.b" in bi.params and "dec.1.W" in bi.params
    assert {"att.W1", "att.W2", "att.v", "att.Wc", "att.bc", "out.W", "src.embed.W", "tgt.embed.W"} <= set(bi.params)
    assert bi.params["bridge.0.a.W"].shape == bi.params["bridge.0.c.W"].shape == (2 * H, 5)
    srcs, _ = pairs(5)
    a, finals, _ = bi._encode(bi._check(pad_pairs(srcs), False), 0.0, None)
    state0, _ = bi._bridge(finals)
    last = np.concatenate([a[np.array(SOURCE_LENGTHS) - 1, np.arange(10), :H], a[0, :10, H:]], axis=1)
    for l, n in ((1, "a"), (1, "c")):              # the top layer's s<0> from [→a<Tx>, ←a<1>] of its outputs
        expect = np.tanh(last @ bi.params[f"bridge.{l}.{n}.W"] + bi.params[f"bridge.{l}.{n}.b"])
        np.testing.assert_allclose(state0[l][("a", "c").index(n)][:10], expect, rtol=0, atol=1e-14)
    plain = model("lstm", attention="none", bidirectional=False, decoder_hidden=H)
    assert not any(k.startswith(("bridge.", "att.")) for k in plain.params) and "enc.0.W" in plain.params
    _, state0, _ = plain.encode(srcs)
    for i, n in enumerate(SOURCE_LENGTHS):        # s[l]<0> = the encoder's (a<Tx>, c<Tx>) of the source alone
        h = plain.params["src.embed.W"][srcs[i]][:, None]
        for l in range(2):
            p = {k: plain.params[f"enc.{l}.{k}"] for k in ("W", "b")}
            h, final, _ = plain.cell.forward(p, h, plain.cell.init_state(1, H, "float64"))
            for s, f in zip(state0[l], final):
                np.testing.assert_allclose(s[i], f[0], rtol=0, atol=1e-13)
    assert plain.bridged is False and model("gru", bidirectional=False).bridged is True


def test_loss_is_the_mean_over_target_tokens_with_eos():
    m = model("gru")
    srcs, tgts = pairs(6)
    batch = pad_pairs(srcs, tgts)
    assert batch.tokens == sum(TARGET_LENGTHS) + len(TARGET_LENGTHS)
    np.testing.assert_array_equal(batch.target[np.array(TARGET_LENGTHS), np.arange(10)], EOS)
    np.testing.assert_array_equal(batch.target_in[0], EOS)                  # y<0> = <EOS>, the start
    lp = m.token_log_probs(batch)
    assert m.loss(batch)[0] == pytest.approx(-lp.sum() / batch.tokens, abs=1e-13)


# -- padding never leaks: bit for bit --------------------------------------------------------------------
@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
@pytest.mark.parametrize("attention", ["none", "additive", "dot"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_bit_for_bit(kind, opts, attention, bidirectional):
    """A pair gets exactly the same log-probabilities and attention alone as inside a padded batch of
    longer and shorter sources and targets (float64, every cell), and so the same summed loss."""
    m = model(kind, opts, attention=attention, bidirectional=bidirectional)
    srcs, tgts = pairs(8)
    whole, alpha = m.token_log_probs(pad_pairs(srcs, tgts), attention=True)
    part, _ = m.token_log_probs(pad_pairs(srcs[3:7], tgts[3:7]), attention=True)   # another batch, other Tx, Ty
    for i, (nx, ny) in enumerate(zip(SOURCE_LENGTHS, TARGET_LENGTHS)):
        alone, alpha1 = m.token_log_probs(pad_pairs(srcs[i:i + 1], tgts[i:i + 1]), attention=True)
        np.testing.assert_array_equal(alone[:ny + 1, 0], whole[:ny + 1, i])
        assert alone[:, 0].sum() == whole[:ny + 1, i].sum()
        if 3 <= i < 7:
            np.testing.assert_array_equal(part[:ny + 1, i - 3], whole[:ny + 1, i])
        if attention != "none":
            np.testing.assert_array_equal(alpha1[:, :ny + 1, 0], alpha[:nx, :ny + 1, i])
            assert (alpha[nx:, :, i] == 0.0).all()


def test_settings_round_trip_and_errors():
    c = Seq2SeqConfig(source_vocab_size=10, target_vocab_size=12, hidden=8, attention="dot")
    assert c.decoder_hidden == 8 and c.attention_hidden == 8
    assert Seq2SeqConfig.from_dict(c.to_dict()) == c
    m = Seq2Seq(c, seed=3)
    again = Seq2Seq(Seq2SeqConfig.from_dict(c.to_dict()), params=m.params)
    assert all(np.array_equal(again.params[k], v) for k, v in m.params.items())
    assert m.num_params() == sum(v.size for v in m.params.values())
    for bad in (dict(attention="multiplicative"), dict(hidden=0), dict(decoder_hidden=-1), dict(cell="tree"),
                dict(dropout=1.0), dict(peephole=True, cell="gru"), dict(target_vocab_size=1),
                dict(bidirectional="yes")):
        with pytest.raises(CharlmError):
            Seq2SeqConfig(**{**dict(source_vocab_size=10, target_vocab_size=12), **bad})
    with pytest.raises(CharlmError, match="unknown model setting"):
        Seq2SeqConfig.from_dict({**c.to_dict(), "beam": 3})
    with pytest.raises(CharlmError, match="missing"):
        Seq2Seq(c, params={k: v for k, v in m.params.items() if k != "att.W"})
    with pytest.raises(DataError, match="empty"):
        pad_pairs([[1, 2], []])
    with pytest.raises(DataError, match="source ids"):
        m.loss(pad_pairs([[1, 10]], [[2]]))
    with pytest.raises(DataError, match="no targets"):
        m.loss(pad_pairs([[1, 2]]))


def test_float32_model_matches_float64():
    m64 = model("lstm")
    m32 = Seq2Seq(Seq2SeqConfig(**{**m64.config.to_dict(), "dtype": "float32"}), params=m64.params)
    batch = pad_pairs(*pairs(9))
    np.testing.assert_allclose(m32.token_log_probs(batch), m64.token_log_probs(batch), atol=2e-5)
    assert m32.loss(batch)[0] == pytest.approx(m64.loss(batch)[0], abs=1e-5)


# -- learning ---------------------------------------------------------------------------------------------
def test_tiny_model_learns_to_normalise_dates():
    """200 Adam steps of a 16-unit GRU with attention on 1000 generated dates: the loss falls from
    ~2.5 nats to well under 0.3, and most held-out dates come out exactly right."""
    train = PairFile([PairExample(s, [t], [i]) for i, (s, t) in enumerate(date_pairs(1000, seed=1))], "dates")
    test = date_pairs(50, seed=2)
    vocab = PairVocab.build(train)
    sources, targets = vocab.training_pairs(train)
    m = Seq2Seq(Seq2SeqConfig(source_vocab_size=len(vocab.source), target_vocab_size=len(vocab.target), cell="gru", layers=1, hidden=16,
                              embedding=12, target_embedding=12), seed=0)
    opt, rng = Adam(0.02), np.random.default_rng(0)
    losses = []
    for _ in range(200):
        idx = rng.choice(len(sources), 16, replace=False)
        loss, _, cache = m.loss(pad_pairs([sources[i] for i in idx], [targets[i] for i in idx]), train=True, rng=rng)
        grads = m.backward(cache)
        clip_grad_norm(grads, 5.0)
        opt.step(m.params, grads)
        losses.append(loss)
    assert losses[0] > 2.0 and np.mean(losses[-20:]) < 0.3
    out = greedy(m, [vocab.source_ids(s) for s, _ in test])
    exact = np.mean([vocab.target_text(o.ids) == t for o, (_, t) in zip(out, test)])
    assert exact >= 0.5, exact
