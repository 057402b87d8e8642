"""Recurrent cells: vanilla RNN, GRU (the seed's full GRU) and LSTM (optional peepholes).

Every cell runs over a whole time-major sequence and has the matching backward pass (BPTT):

    forward(p, x (T,B,D), state)            -> (a (T,B,H), final_state, cache)
    backward(p, da (T,B,H), cache, dstate)  -> (dx (T,B,D), grads {name: array}, dstate0)
    step(p, x (B,D), state)                 -> (a (B,H), new_state)       # generation, no cache

The returned `a` is a view into the cache: do not modify it in place before backward().
`state` is a tuple of (B,H) arrays: (a,) for RNN and GRU (where a<t> = c<t>), (a, c) for LSTM.
`dstate` is the gradient w.r.t. the final state (a tuple, entries may be None); `dstate0` the
gradient w.r.t. the initial state.

Weight layout (fixed; the checkpoint stores exactly these arrays):
    W (H+D, G*H): rows [:H] act on a<t-1> (c<t-1> for the GRU), rows [H:] act on x<t>.
    b (G*H,)
    RNN  G=1  columns [a]
    GRU  G=3  columns [Γr | Γu | c~]
    LSTM G=4  columns [Γu | Γf | Γo | c~];  peephole P (3, H): diagonal weights c<t-1> -> Γu, Γf, Γo.
Initialisation: W ~ uniform(-1/sqrt(H), 1/sqrt(H)); b = 0, except the LSTM forget-gate bias b_f = 1.

Speed notes (the only Python loop is over time): the input projections x<t> @ W[H:] + b of all time
steps are one matrix multiply before the loop; each step does one fused recurrent multiply into a
preallocated buffer; σ(z) = ½·tanh(½·z) + ½, with the ½ folded into scaled copies of W and b so that
all gates of a step are one tanh; weight gradients are matrix multiplies after the loop.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "CELLS", "make_cell", "cell_from_config", "sigmoid"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = ½·tanh(½·z) + ½ (no overflow for large |z|)."""
    return 0.5 * np.tanh(0.5 * z) + 0.5


def _uniform(rng: np.random.Generator, shape, H: int, dtype) -> np.ndarray:
    s = 1.0 / np.sqrt(H)
    return rng.uniform(-s, s, size=shape).astype(dtype)


def _dstate(dstate, i: int, like: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. state component i of the final state (zeros when not given)."""
    if dstate is None or dstate[i] is None:
        return np.zeros_like(like)
    return np.array(dstate[i], dtype=like.dtype, copy=True)


class Cell:
    """Common interface; subclasses set `kind`, `G` (gate blocks) and `n_states`."""

    kind = ""
    G = 1
    n_states = 1

    @classmethod
    def from_config(cls, config) -> "Cell":
        """The cell a model configuration describes (reads the options this cell has)."""
        return cls()

    def param_shapes(self, D: int, H: int) -> dict[str, tuple]:
        return {"W": (H + D, self.G * H), "b": (self.G * H,)}

    def init_params(self, D: int, H: int, rng: np.random.Generator, dtype="float32") -> dict:
        return {"W": _uniform(rng, (H + D, self.G * H), H, dtype),
                "b": np.zeros(self.G * H, dtype=dtype)}

    def init_state(self, B: int, H: int, dtype="float32") -> tuple:
        return tuple(np.zeros((B, H), dtype=dtype) for _ in range(self.n_states))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------------------------------
class RNNCell(Cell):
    """a<t> = g(W_a[a<t-1>, x<t>] + b_a), g = tanh or relu.   W (H+D, H), b (H,)."""

    kind = "rnn"
    G = 1
    n_states = 1

    def __init__(self, activation: str = "tanh"):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', not {activation!r}")
        self.activation = activation

    @classmethod
    def from_config(cls, config) -> "RNNCell":
        return cls(config.activation)

    def __repr__(self) -> str:
        return f"RNNCell(activation={self.activation!r})"

    def _g(self, z: np.ndarray) -> None:
        """In place: z <- g(z)."""
        if self.activation == "tanh":
            np.tanh(z, out=z)
        else:
            np.maximum(z, 0, out=z)

    def forward(self, p, x, state):
        """x (T,B,D), state (a0 (B,H),) -> (a (T,B,H), (a<T>,), cache)."""
        W, b = p["W"], p["b"]
        T, B, D = x.shape
        H = W.shape[1]
        a = np.empty((T + 1, B, H), dtype=W.dtype)          # a[t+1] = a<t>, a[0] = a<0>
        a[0] = state[0]
        np.matmul(x.reshape(T * B, D), W[H:], out=a[1:].reshape(T * B, H))   # W_ax x<t>, all t
        a[1:] += b
        Wa = W[:H]
        buf = np.empty((B, H), dtype=W.dtype)
        for t in range(T):
            np.matmul(a[t], Wa, out=buf)                     # W_aa a<t-1>
            a[t + 1] += buf                                  # z<t> = W_a[a<t-1>, x<t>] + b_a
            self._g(a[t + 1])                                # a<t> = g(z<t>)
        return a[1:], (a[T].copy(),), (x, a)

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"}, (da<0>,))."""
        x, a = cache
        W = p["W"]
        T, B, D = x.shape
        H = W.shape[1]
        # g'(z<t>) from a<t>, all t at once
        dz = (1.0 - a[1:] * a[1:]) if self.activation == "tanh" else (a[1:] > 0).astype(W.dtype)
        WaT = np.ascontiguousarray(W[:H].T)                  # a contiguous copy multiplies faster
        dnext = _dstate(dstate, 0, a[0])                     # dL/da<t> coming from step t+1
        buf = np.empty((B, H), dtype=W.dtype)
        for t in reversed(range(T)):
            np.add(da[t], dnext, out=buf)                    # dL/da<t>
            dz[t] *= buf                                     # a<t> = g(z<t>)
            np.matmul(dz[t], WaT, out=dnext)                 # z<t> = W_aa a<t-1> + ...
        dz2 = dz.reshape(T * B, H)
        dW = np.empty_like(W)
        np.matmul(a[:-1].reshape(T * B, H).T, dz2, out=dW[:H])
        np.matmul(x.reshape(T * B, D).T, dz2, out=dW[H:])
        dx = (dz2 @ W[H:].T).reshape(T, B, D)
        return dx, {"W": dW, "b": dz2.sum(axis=0)}, (dnext,)

    def step(self, p, x, state):
        """x (B,D), (a<t-1>,) -> (a<t> (B,H), (a<t>,))."""
        W, b = p["W"], p["b"]
        H = W.shape[1]
        z = state[0] @ W[:H]
        z += x @ W[H:]
        z += b
        self._g(z)
        return z, (z,)


# --------------------------------------------------------------------------------------------------
class GRUCell(Cell):
    """The seed's full GRU (relevance gate applied to c<t-1> BEFORE the product).

        Γr  = σ(W_r[c<t-1>, x<t>] + b_r)
        c~  = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
        Γu  = σ(W_u[c<t-1>, x<t>] + b_u)
        c<t> = Γu * c~ + (1 - Γu) * c<t-1>,      a<t> = c<t>

    W (H+D, 3H) with columns [Γr | Γu | c~], rows [:H] on c<t-1> (Γr * c<t-1> for c~), rows [H:] on x<t>.
    """

    kind = "gru"
    G = 3
    n_states = 1

    def forward(self, p, x, state):
        """x (T,B,D), (c0 (B,H),) -> (a (T,B,H), (c<T>,), cache)."""
        W, b = p["W"], p["b"]
        T, B, D = x.shape
        H = W.shape[1] // 3
        dt = W.dtype
        scale = np.ones(3 * H, dtype=dt)
        scale[:2 * H] = 0.5                                  # σ(z) = ½ tanh(½ z) + ½
        Ws = W * scale
        Wru = np.ascontiguousarray(Ws[:H, :2 * H])           # c<t-1> -> ½[Γr | Γu]
        Wc = np.ascontiguousarray(Ws[:H, 2 * H:])            # Γr * c<t-1> -> c~
        g = np.empty((T, B, 3 * H), dtype=dt)                # [Γr | Γu | c~] per step
        np.matmul(x.reshape(T * B, D), Ws[H:], out=g.reshape(T * B, 3 * H))
        g += b * scale
        c = np.empty((T + 1, B, H), dtype=dt)                # c[t+1] = c<t>
        c[0] = state[0]
        rc = np.empty((T, B, H), dtype=dt)                   # Γr * c<t-1>
        buf2, buf = np.empty((B, 2 * H), dtype=dt), np.empty((B, H), dtype=dt)
        for t in range(T):
            ru, cc = g[t, :, :2 * H], g[t, :, 2 * H:]
            np.matmul(c[t], Wru, out=buf2)
            ru += buf2
            np.tanh(ru, out=ru)
            ru *= 0.5
            ru += 0.5                                        # Γr, Γu = σ(W[c<t-1>, x<t>] + b)
            np.multiply(g[t, :, :H], c[t], out=rc[t])        # Γr * c<t-1>
            np.matmul(rc[t], Wc, out=buf)
            cc += buf
            np.tanh(cc, out=cc)                              # c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
            np.subtract(cc, c[t], out=c[t + 1])
            c[t + 1] *= g[t, :, H:2 * H]
            c[t + 1] += c[t]                                 # c<t> = Γu * c~ + (1 - Γu) * c<t-1>
        return c[1:], (c[T].copy(),), (x, c, g, rc)

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"}, (dc<0>,))."""
        x, c, g, rc = cache
        W = p["W"]
        T, B, D = x.shape
        H = W.shape[1] // 3
        dt = W.dtype
        # local derivatives of all steps at once: σ' = Γ(1 - Γ), tanh' = 1 - c~²
        deriv = g * (1.0 - g)
        np.subtract(1.0, g[:, :, 2 * H:] ** 2, out=deriv[:, :, 2 * H:])
        cand_minus_prev = g[:, :, 2 * H:] - c[:-1]           # c~ - c<t-1>
        WruT = np.ascontiguousarray(W[:H, :2 * H].T)         # contiguous copies multiply faster
        WcT = np.ascontiguousarray(W[:H, 2 * H:].T)
        dz = np.empty((T, B, 3 * H), dtype=dt)
        dnext = _dstate(dstate, 0, c[0])                     # dL/dc<t> from step t+1
        dc, drc, buf = (np.empty((B, H), dtype=dt) for _ in range(3))
        for t in reversed(range(T)):
            Gr, Gu = g[t, :, :H], g[t, :, H:2 * H]
            dzr, dzu, dzc = dz[t, :, :H], dz[t, :, H:2 * H], dz[t, :, 2 * H:]
            np.add(da[t], dnext, out=dc)                     # dL/dc<t>
            # c<t> = Γu * c~ + (1 - Γu) * c<t-1>
            np.multiply(dc, cand_minus_prev[t], out=dzu)     # dΓu
            np.multiply(dc, Gu, out=dzc)                     # dc~
            np.subtract(dc, dzc, out=dnext)                  # dc<t-1> = dc * (1 - Γu)
            dz[t, :, H:] *= deriv[t, :, H:]                  # through σ (Γu) and tanh (c~)
            # c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
            np.matmul(dzc, WcT, out=drc)                     # d(Γr * c<t-1>)
            np.multiply(drc, c[t], out=dzr)                  # dΓr
            dzr *= deriv[t, :, :H]
            np.multiply(drc, Gr, out=buf)
            dnext += buf
            # Γr, Γu = σ(W[c<t-1>, x<t>] + b)
            np.matmul(dz[t, :, :2 * H], WruT, out=buf)
            dnext += buf
        dz2 = dz.reshape(T * B, 3 * H)
        dW = np.empty_like(W)
        np.matmul(c[:-1].reshape(T * B, H).T, dz2[:, :2 * H], out=dW[:H, :2 * H])
        np.matmul(rc.reshape(T * B, H).T, dz2[:, 2 * H:], out=dW[:H, 2 * H:])
        np.matmul(x.reshape(T * B, D).T, dz2, out=dW[H:])
        dx = (dz2 @ W[H:].T).reshape(T, B, D)
        return dx, {"W": dW, "b": dz2.sum(axis=0)}, (dnext,)

    def step(self, p, x, state):
        """x (B,D), (c<t-1>,) -> (c<t> (B,H), (c<t>,))."""
        W, b = p["W"], p["b"]
        H = W.shape[1] // 3
        c_prev = state[0]
        zx = x @ W[H:]
        zx += b
        ru = sigmoid(c_prev @ W[:H, :2 * H] + zx[:, :2 * H])
        Gr, Gu = ru[:, :H], ru[:, H:]
        cand = np.tanh((Gr * c_prev) @ W[:H, 2 * H:] + zx[:, 2 * H:])
        c = Gu * cand + (1.0 - Gu) * c_prev
        return c, (c,)


# --------------------------------------------------------------------------------------------------
class LSTMCell(Cell):
    """LSTM in the seed's notation, optional peephole connections from c<t-1>.

        c~  = tanh(W_c[a<t-1>, x<t>] + b_c)
        Γu  = σ(W_u[a<t-1>, x<t>] + b_u  (+ P[0] * c<t-1>))
        Γf  = σ(W_f[a<t-1>, x<t>] + b_f  (+ P[1] * c<t-1>))
        Γo  = σ(W_o[a<t-1>, x<t>] + b_o  (+ P[2] * c<t-1>))
        c<t> = Γu * c~ + Γf * c<t-1>,    a<t> = Γo * tanh(c<t>)

    W (H+D, 4H) with columns [Γu | Γf | Γo | c~]; b (4H,) with b_f initialised to 1; P (3, H).
    State is (a, c).
    """

    kind = "lstm"
    G = 4
    n_states = 2

    def __init__(self, peephole: bool = False):
        self.peephole = bool(peephole)

    @classmethod
    def from_config(cls, config) -> "LSTMCell":
        return cls(config.peephole)

    def __repr__(self) -> str:
        return f"LSTMCell(peephole={self.peephole})"

    def param_shapes(self, D, H):
        shapes = super().param_shapes(D, H)
        if self.peephole:
            shapes["P"] = (3, H)
        return shapes

    def init_params(self, D, H, rng, dtype="float32"):
        p = super().init_params(D, H, rng, dtype)
        p["b"][H:2 * H] = 1.0                                # forget-gate bias 1
        if self.peephole:
            p["P"] = _uniform(rng, (3, H), H, dtype)
        return p

    def forward(self, p, x, state):
        """x (T,B,D), (a0, c0) each (B,H) -> (a (T,B,H), (a<T>, c<T>), cache)."""
        W, b = p["W"], p["b"]
        T, B, D = x.shape
        H = W.shape[1] // 4
        dt = W.dtype
        scale = np.ones(4 * H, dtype=dt)
        scale[:3 * H] = 0.5                                  # σ(z) = ½ tanh(½ z) + ½
        Ws = W * scale
        Wa = Ws[:H]                                          # a<t-1> -> ½[Γu|Γf|Γo], c~
        Ps = 0.5 * p["P"] if self.peephole else None
        g = np.empty((T, B, 4 * H), dtype=dt)                # [Γu | Γf | Γo | c~] per step
        np.matmul(x.reshape(T * B, D), Ws[H:], out=g.reshape(T * B, 4 * H))
        g += b * scale
        g4 = g.reshape(T, B, 4, H)                           # gate blocks as an axis (a view)
        a = np.empty((T + 1, B, H), dtype=dt)                # a[t+1] = a<t>
        c = np.empty((T + 1, B, H), dtype=dt)                # c[t+1] = c<t>
        tc = np.empty((T, B, H), dtype=dt)                   # tanh(c<t>)
        a[0], c[0] = state
        buf = np.empty((B, 4 * H), dtype=dt)
        for t in range(T):
            z = g[t]
            np.matmul(a[t], Wa, out=buf)
            z += buf                                         # W[a<t-1>, x<t>] + b
            if self.peephole:
                g4[t, :, :3] += Ps * c[t][:, None, :]        # ½ P[k] * c<t-1>
            np.tanh(z, out=z)
            z[:, :3 * H] *= 0.5
            z[:, :3 * H] += 0.5                              # Γu, Γf, Γo (σ) and c~ (tanh)
            Gu, Gf, Go, cand = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            np.multiply(Gu, cand, out=c[t + 1])
            np.multiply(Gf, c[t], out=buf[:, :H])
            c[t + 1] += buf[:, :H]                           # c<t> = Γu * c~ + Γf * c<t-1>
            np.tanh(c[t + 1], out=tc[t])
            np.multiply(Go, tc[t], out=a[t + 1])             # a<t> = Γo * tanh(c<t>)
        return a[1:], (a[T].copy(), c[T].copy()), (x, a, c, g, tc)

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"[, "P"]}, (da<0>, dc<0>))."""
        x, a, c, g, tc = cache
        W = p["W"]
        T, B, D = x.shape
        H = W.shape[1] // 4
        dt = W.dtype
        WaT = np.ascontiguousarray(W[:H].T)                  # a contiguous copy multiplies faster
        P = p["P"] if self.peephole else None
        dz = np.empty((T, B, 4 * H), dtype=dt)
        dnext = _dstate(dstate, 0, a[0])                     # dL/da<t> from step t+1
        dc = _dstate(dstate, 1, c[0])                        # dL/dc<t> from step t+1
        dh, buf = np.empty((B, H), dtype=dt), np.empty((B, H), dtype=dt)
        local = np.empty((B, 4 * H), dtype=dt)               # σ' and tanh' of step t
        for t in reversed(range(T)):
            Gu, Gf, Go, cand = g[t, :, :H], g[t, :, H:2 * H], g[t, :, 2 * H:3 * H], g[t, :, 3 * H:]
            dGu, dGf, dGo, dcand = (dz[t, :, k * H:(k + 1) * H] for k in range(4))
            np.add(da[t], dnext, out=dh)                     # dL/da<t>
            # a<t> = Γo * tanh(c<t>)
            np.multiply(dh, tc[t], out=dGo)
            dh *= Go
            np.multiply(tc[t], tc[t], out=buf)
            np.subtract(1.0, buf, out=buf)                   # tanh'(c<t>) = 1 - tanh²(c<t>)
            dh *= buf
            dc += dh                                         # dL/dc<t>
            # c<t> = Γu * c~ + Γf * c<t-1>
            np.multiply(dc, cand, out=dGu)
            np.multiply(dc, Gu, out=dcand)
            np.multiply(dc, c[t], out=dGf)
            dc *= Gf                                         # dL/dc<t-1> (direct path)
            # through σ, σ' = Γ(1 - Γ), and tanh, tanh' = 1 - c~², computed on this step's
            # (B, 4H) rows while they are in cache
            np.subtract(1.0, g[t, :, :3 * H], out=local[:, :3 * H])
            local[:, :3 * H] *= g[t, :, :3 * H]
            np.multiply(cand, cand, out=local[:, 3 * H:])
            np.subtract(1.0, local[:, 3 * H:], out=local[:, 3 * H:])
            dz[t] *= local
            if self.peephole:                                # + P[k] * c<t-1> in Γu, Γf, Γo
                for k in range(3):
                    np.multiply(dz[t, :, k * H:(k + 1) * H], P[k], out=buf)
                    dc += buf
            np.matmul(dz[t], WaT, out=dnext)                 # W[a<t-1>, x<t>]
        dz2 = dz.reshape(T * B, 4 * H)
        dW = np.empty_like(W)
        np.matmul(a[:-1].reshape(T * B, H).T, dz2, out=dW[:H])
        np.matmul(x.reshape(T * B, D).T, dz2, out=dW[H:])
        grads = {"W": dW, "b": dz2.sum(axis=0)}
        if self.peephole:
            grads["P"] = np.einsum("tbkh,tbh->kh", dz[:, :, :3 * H].reshape(T, B, 3, H), c[:-1])
        dx = (dz2 @ W[H:].T).reshape(T, B, D)
        return dx, grads, (dnext, dc)

    def step(self, p, x, state):
        """x (B,D), (a<t-1>, c<t-1>) -> (a<t> (B,H), (a<t>, c<t>))."""
        W, b = p["W"], p["b"]
        H = W.shape[1] // 4
        a_prev, c_prev = state
        z = a_prev @ W[:H]
        z += x @ W[H:]
        z += b
        if self.peephole:
            z[:, :3 * H] += (c_prev[:, None, :] * p["P"]).reshape(-1, 3 * H)
        gates = sigmoid(z[:, :3 * H])
        Gu, Gf, Go = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
        c = Gu * np.tanh(z[:, 3 * H:]) + Gf * c_prev
        a = Go * np.tanh(c)
        return a, (a, c)


# The cell registry: the one place that lists the cells. The model, the CLI's --cell choices and
# the memory estimate all read it, so a new cell is added here and nowhere else.
CELLS: dict[str, type[Cell]] = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


def make_cell(kind: str, activation: str = "tanh", peephole: bool = False) -> Cell:
    """Cell by name: "rnn" (activation "tanh"|"relu"), "gru", "lstm" (peephole)."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell {kind!r} (expected {', '.join(CELLS)})")
    return cell_from_config(SimpleNamespace(cell=kind, activation=activation, peephole=peephole))


def cell_from_config(config) -> Cell:
    """The cell a config describes (any object with .cell, .activation, .peephole)."""
    return CELLS[config.cell].from_config(config)
