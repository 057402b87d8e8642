"""charlm's recurrent layers and pooling (nn.cells, nn.layers) as ONNX nodes, for evaluation (no dropout).

    recurrent(g, cell, ps, x, D, lengths, state0) -> (y (T,B,dirs·H), final states (dirs,B,H)...)
    pool(g, y, lengths, how, split, width)        -> (B,F), as nn.layers.pool_forward

ONNX has the cells as operators. The mapping of a cell (nn.cells: W (H+D, G·H), rows [:H] on
a<t-1>, rows [H:] on x<t>; b (G·H,)) onto an operator (W (dirs, G·H, D) on x<t>, R (dirs, G·H, H)
on a<t-1>, B (dirs, 2·G·H) = [Wb | Rb], gates as row blocks):

    RNN   a<t> = g(W_a[a<t-1>, x<t>] + b_a): ONNX RNN, activations Tanh or Relu.
    GRU   ONNX GRU with linear_before_reset=0: the reset gate multiplies c<t-1> before the product,
          as the notes' Γr does in c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c). Its gates are
          [z | r | h] = [−Γu | Γr | c~]: ONNX's c<t> = (1 − z) * c~ + z * c<t-1> with
          z = σ(−(W_u[c<t-1>, x<t>] + b_u)) = 1 − Γu, so z's rows are those of Γu negated.
    LSTM  gates [i | o | f | c] = [Γu | Γo | Γf | c~]. Peepholes do NOT map: ONNX's output gate reads
          the new cell, Γo = σ(... + P_o * c<t>), the notes' reads c<t-1> (measured: equal with
          P_o = 0, 1.6e-2 apart otherwise). An LSTM with peepholes therefore runs as an ONNX Scan
          over one step of the notes' equations (`_lstm_step`), with charlm's W, b and P as they are.

Bidirectional layers (taggers, classifiers, the character encoder) pass the sentence lengths as the
operator's `sequence_lens`: ONNX Runtime's reverse direction starts at each sequence's own last
element, as charlm's (nn.layers.reverse_within) does — measured equal; steps past a length come out 0
(padding, which no real position reads). The Scan path reverses within the lengths explicitly.
"""

from __future__ import annotations

import numpy as np

from charlm.errors import UsageError
from charlm.export.graph import Graph

# ONNX's gates in its order, as (charlm's gate block, sign), per cell (see the module docstring)
ONNX_GATES = {"rnn": ((0, 1),), "gru": ((1, -1), (0, 1), (2, 1)), "lstm": ((0, 1), (2, 1), (1, 1), (3, 1))}


def _onnx_weights(cell, p: dict):
    """One direction's (W (G·H, D), R (G·H, H), B (2·G·H,)) in ONNX's layout and gate order."""
    W, b = p["W"], p["b"]
    H = W.shape[1] // cell.G
    blocks = [(s * W[:, k * H:(k + 1) * H], s * b[k * H:(k + 1) * H]) for k, s in ONNX_GATES[cell.kind]]
    return (np.concatenate([w[H:].T for w, _ in blocks]),            # rows on x<t>
            np.concatenate([w[:H].T for w, _ in blocks]),            # rows on a<t-1>
            np.concatenate([bb for _, bb in blocks] + [np.zeros(cell.G * H, dtype=b.dtype)]))


def _native(cell) -> bool:
    """Whether ONNX has the cell as an operator (all but the LSTM with peepholes)."""
    return not getattr(cell, "peephole", False)


def _lengths32(g: Graph, lengths: str) -> str:
    """The operators' sequence_lens: int32."""
    return g.once(("int32", lengths), lambda: g.op("Cast", lengths, to=g.onnx.TensorProto.INT32))


def _operator(g: Graph, cell, ps: list, x: str, lengths: str | None, state0: tuple | None):
    """ONNX's RNN/GRU/LSTM over x (T,B,D), one or two directions -> (y (T,B,dirs·H), finals (dirs,B,H)...)."""
    H = ps[0]["W"].shape[1] // cell.G
    W, R, B = (np.stack(a) for a in zip(*(_onnx_weights(cell, p) for p in ps)))
    inputs = [x, g.const(W), g.const(R), g.const(B), "" if lengths is None else _lengths32(g, lengths)]
    inputs += list(state0) if state0 is not None else []
    attrs = {"hidden_size": H, "direction": "bidirectional" if len(ps) == 2 else "forward"}
    if cell.kind == "rnn":
        attrs["activations"] = [cell.activation.capitalize()] * len(ps)
    if cell.kind == "gru":
        attrs["linear_before_reset"] = 0
    outs = g.op(cell.kind.upper(), *inputs, outputs=1 + cell.n_states, **attrs)
    Y = outs[0]                                                     # (T, dirs, B, H)
    if len(ps) == 1:
        y = g.op("Squeeze", Y, g.ints(1))
    else:                                                           # [→a<t>, ←a<t>]
        y = g.op("Reshape", g.op("Transpose", Y, perm=[0, 2, 1, 3]), g.ints(0, 0, -1))
    return y, tuple(outs[1:])


def _lstm_step(g: Graph, p: dict, H: int, D: int):
    """The Scan body of one step of the notes' LSTM with peepholes: (a<t-1>, c<t-1>, x<t>) ->
    (a<t>, c<t>, a<t>), each (B, H) / (B, D), from charlm's own W (H+D, 4H), b (4H,), P (3, H)."""
    helper = g.onnx.helper
    body = g.sub()
    a_prev, c_prev, x = body.fresh("a_prev"), body.fresh("c_prev"), body.fresh("x")
    z = body.matmul_add(body.op("Concat", a_prev, x, axis=1), p["W"], p["b"])   # W[a<t-1>, x<t>] + b
    peep = np.concatenate([p["P"].reshape(-1), np.zeros(H, dtype=p["P"].dtype)])    # [P_u | P_f | P_o | 0]
    z = body.op("Add", z, body.op("Mul", body.op("Tile", c_prev, body.ints(1, 4)), body.const(peep)))
    zu, zf, zo, zc = body.op("Split", z, outputs=4, axis=1)
    Gu, Gf, Go = (body.op("Sigmoid", v) for v in (zu, zf, zo))           # Γu, Γf, Γo (+ P * c<t-1>)
    cand = body.op("Tanh", zc)                                           # c~
    c = body.op("Add", body.op("Mul", Gu, cand), body.op("Mul", Gf, c_prev))   # c<t> = Γu*c~ + Γf*c<t-1>
    a = body.op("Mul", Go, body.op("Tanh", c))                           # a<t> = Γo * tanh(c<t>)
    info = [body.value(n, "FLOAT", [None, w]) for n, w in ((a_prev, H), (c_prev, H), (x, D))]
    out = [body.value(n, "FLOAT", [None, H]) for n in (a, c, body.op("Identity", a))]
    return helper.make_graph(body.nodes, g.fresh("lstm_step"), info, out, body.inits)


def _reverse_within(g: Graph, x: str, lengths: str) -> str:
    """x (T,B,F) with each column reversed within its own length (nn.layers.reverse_within):
    rev[t, b] = L_b - 1 - t for t < L_b, else t."""
    def rev():                                                        # (T, B, 1)
        t = g.steps(x)
        last = g.op("Sub", g.op("Sub", lengths, g.scalar(1)), t)         # L_b - 1 - t
        return g.op("Unsqueeze", g.op("Where", g.op("Less", t, lengths), last, t), g.ints(2))

    index = g.op("Expand", g.once(("reverse", lengths), rev), g.op("Shape", x))
    return g.op("GatherElements", x, index, axis=0)


def _scanned(g: Graph, ps: list, x: str, lengths: str | None, state0: tuple | None, D: int):
    """The peephole LSTM as a Scan per direction (the backward one over x reversed within the lengths)
    -> (y (T,B,dirs·H), finals (dirs,B,H)... ; a backward direction's finals include padding steps)."""
    H = ps[0]["W"].shape[1] // 4
    ys, finals = [], []
    for d, p in enumerate(ps):
        xd = x if d == 0 else _reverse_within(g, x, lengths)
        if state0 is None:
            init = [g.zeros(x, 1, H)] * 2
        else:
            init = [g.op("Squeeze", s, g.ints(0)) for s in state0]
        aT, cT, y = g.op("Scan", *init, xd, outputs=3, num_scan_inputs=1, body=_lstm_step(g, p, H, D))
        ys.append(y if d == 0 else _reverse_within(g, y, lengths))
        finals.append([g.op("Unsqueeze", s, g.ints(0)) for s in (aT, cT)])
    y = ys[0] if len(ys) == 1 else g.op("Concat", *ys, axis=2)
    return y, tuple(f[0] if len(ps) == 1 else g.op("Concat", *f, axis=0) for f in zip(*finals))


def recurrent(g: Graph, cell, ps: list, x: str, D: int, lengths: str | None = None, state0=None):
    """One recurrent layer, `ps` its directions' params ([p] or [p_fwd, p_bwd]), over x (T,B,D);
    two directions need `lengths` (B,). state0: (a0[, c0]) each (dirs,B,H), or None for zeros.
    -> (y (T,B,dirs·H), final states (dirs,B,H) of a forward layer)."""
    if _native(cell):
        return _operator(g, cell, ps, x, lengths, state0)
    return _scanned(g, ps, x, lengths, state0, D)


# -- pooling over time (nn.layers.pool_forward) ----------------------------------------------------------------
def _steps_mask(g: Graph, y: str, lengths: str) -> str:
    """(T,B,1) bool: t < L_b."""
    return g.op("Unsqueeze", g.op("Less", g.steps(y), lengths), g.ints(2))


def pool(g: Graph, y: str, lengths: str, how: str, split: int, width: int) -> str:
    """y (T,B,F) -> (B,F) over each column's real steps: "last" = [features [:split] at step L_b - 1,
    features [split:] at step 0], "mean", "max"."""
    if how == "last":
        last = g.op("Unsqueeze", g.op("Sub", lengths, g.scalar(1)), g.ints(1))             # (B, 1)
        at_last = g.op("GatherND", g.op("Transpose", y, perm=[1, 0, 2]), last, batch_dims=1)   # y[L_b-1, b]
        fwd = g.op("Slice", at_last, g.ints(0), g.ints(split), g.ints(1))
        if split == width:
            return fwd
        first = g.op("Slice", g.op("Squeeze", g.op("Slice", y, g.ints(0), g.ints(1), g.ints(0)), g.ints(0)),
                     g.ints(split), g.ints(width), g.ints(1))
        return g.op("Concat", fwd, first, axis=1)
    real = _steps_mask(g, y, lengths)
    if how == "mean":
        total = g.op("ReduceSum", g.op("Mul", y, g.op("Cast", real, to=g.onnx.TensorProto.FLOAT)),
                     g.ints(0), keepdims=0)
        return g.op("Div", total, g.op("Unsqueeze", g.op("Cast", lengths, to=g.onnx.TensorProto.FLOAT),
                                       g.ints(1)))
    if how == "max":
        return g.op("ReduceMax", g.op("Where", real, y, g.const(np.array(-np.inf, dtype=np.float32))),
                    axes=[0], keepdims=0)
    raise UsageError(f"charlm export cannot pool with {how!r}")
