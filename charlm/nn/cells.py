"""Recurrent cells: vanilla RNN, GRU (the notes' full GRU) and LSTM (optional peepholes).

Every cell runs over a whole time-major sequence and has the matching backward pass (BPTT):

    forward(p, x (T,B,D), state)            -> (a (T,B,H), final_state, cache)
    backward(p, da (T,B,H), cache, dstate)  -> (dx (T,B,D), grads {name: array}, dstate0)
    step(p, x (B,D), state)                 -> (a (B,H), new_state)       # generation, no cache

`a` and `dx` are views into the cell's own arrays (their strides are not C order): do not modify
`a` in place before backward(). forward(..., keep_cache=False) is the evaluation-only forward:
no cache (None), and the gates live in buffers of one step instead of whole-sequence arrays.
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

Inside forward and backward the vectors of a step are columns, as in the notes: a<t> is an (H, B)
block, the gates of a step one (G*H, B) block, and the input of a step is the stacked column

    u<t> = [a<t-1>; x<t>; 1]     (H+D+1, B), stored for all steps as u (H+D+1, T+1, B)

so one product z<t> = Wsᵀ u<t>, Wsᵀ = [W; b]ᵀ (G*H, H+D+1, a contiguous copy), gives every gate's
pre-activation, bias included. Backward mirrors it: dL/da<t-1> = W[:H] dz<t> inside the loop, with
dz<t> stored as dz (G*H, T, B); after the loop [dW; db] = Σ_t u<t> dz<t>ᵀ and dx = W[H:] dz are
one product each over all T·B columns (u[:, :T] and dz are (rows, T·B) matrices as they lie).

Speed notes (the only Python loop is over time): with the weights as the left operand of the
per-step product, OpenBLAS runs these small-batch products about twice as fast as x @ W (B ≤ 64,
measured). The per-step arrays (gates g (T, G*H, B), c, tanh(c)) keep each step's block
contiguous, so every gate's (H, B) block is one run of memory for the element-wise work.
σ(z) = ½·tanh(½·z) + ½, with the ½ folded into the copy Ws, so all gates of a step are one tanh.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from charlm.errors import CharlmError
from charlm.nn.config import Settings

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "CELLS", "CellSettings", "make_cell", "cell_from_config", "sigmoid"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = ½·tanh(½·z) + ½ (no overflow for large |z|)."""
    return 0.5 * np.tanh(0.5 * z) + 0.5


def _sigmoid_(z: np.ndarray) -> None:
    """In place: z <- σ(z) = ½·tanh(½·z) + ½."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5


def _times(u: np.ndarray, W: np.ndarray) -> np.ndarray:
    """u (B, K) @ W (K, N), computed as (Wᵀ uᵀ)ᵀ: with the weights as the left operand OpenBLAS is
    faster for small B (B=16: about 1.5x, measured; B=1 the same). The result is an F-order view,
    so its column blocks (the gates) are contiguous."""
    return (W.T @ u.T).T


def _uniform(rng: np.random.Generator, shape, H: int, dtype) -> np.ndarray:
    s = 1.0 / np.sqrt(H)
    return rng.uniform(-s, s, size=shape).astype(dtype)


def _columns(v: np.ndarray) -> np.ndarray:
    """(T, B, F) -> (T, F, B) whose step blocks have contiguous rows (a view when they have)."""
    c = v.transpose(0, 2, 1)
    if c.strides[2] == c.itemsize or c.shape[2] == 1:
        return c
    return np.ascontiguousarray(c)


def _dstate(dstate, i: int, like: np.ndarray) -> np.ndarray:
    """dL/d(final state component i) as an (H, B) column block (zeros when not given)."""
    if dstate is None or dstate[i] is None:
        return np.zeros_like(like)
    return np.array(dstate[i].T, dtype=like.dtype, order="C")


def _rows(v: np.ndarray) -> np.ndarray:
    """An (H, B) column block as a C-contiguous (B, H) state array."""
    return np.ascontiguousarray(v.T)


class Cell:
    """Common interface; subclasses set `kind`, `G` (gate blocks) and `n_states`, and hold
    their recurrence (the loops over time of forward and backward)."""

    kind = ""
    G = 1
    n_states = 1
    settings: dict = {}  # this cell's own settings (fields of CellSettings) and their defaults

    @classmethod
    def from_config(cls, config) -> "Cell":
        """The cell a model configuration describes (reads the settings this cell has)."""
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

    # -- set-up and weight gradients shared by the cells --------------------------------------
    @staticmethod
    def _project_weights(W, b, half: int) -> np.ndarray:
        """Wsᵀ (G*H, H+D+1): [W; b]ᵀ as a contiguous copy, its first `half` rows (σ gates) ×½."""
        Ws = np.empty((W.shape[1], W.shape[0] + 1), dtype=W.dtype)
        Wt = Ws[:, :-1]
        for i in range(0, W.shape[0], 8):                    # Wᵀ in strips of 8 rows of W: a strip's
            Wt[:, i:i + 8] = W[i:i + 8].T                    # reads stay in cache (3-4x faster than
        Ws[:, -1] = b                                        # one strided copy of the whole Wᵀ)
        Ws[:half] *= 0.5                                     # σ(z) = ½ tanh(½ z) + ½
        return Ws

    @staticmethod
    def _stack_inputs(x, h0, extra: int = 0) -> np.ndarray:
        """u (H+D+1+extra, T+1, B): u[:, t] = [h<t-1>; x<t>; 1; (extra rows, the cell's)].

        u[:H, 0] = h0ᵀ; the recurrence writes h<t> into u[:H, t+1]; u[:, T] holds only h<T>.
        """
        T, B, D = x.shape
        H = h0.shape[1]
        u = np.empty((H + D + 1 + extra, T + 1, B), dtype=h0.dtype)
        u[:H, 0] = h0.T
        u[H:H + D, :T] = x.transpose(2, 0, 1)                # x<t> as columns
        u[H + D] = 1.0                                       # the bias row
        return u

    @staticmethod
    def _steps(v: np.ndarray) -> np.ndarray:
        """(R, T, B) -> (R, T·B): the columns of all steps side by side (a view)."""
        return v.reshape(v.shape[0], -1)

    @classmethod
    def _weight_grads(cls, W, u, dz) -> dict:
        """{"W", "b"} of z<t> = [W; b]ᵀ u<t>: [dW; db] = Σ_t u<t> dz<t>ᵀ, one product over all
        T·B columns.  u (>= H+D+1, T+1, B) the stacked inputs, dz (G*H, T, B) = dL/dz<t>."""
        dWb = cls._steps(u[:W.shape[0] + 1, :-1]) @ cls._steps(dz).T
        return {"W": dWb[:-1], "b": dWb[-1]}

    @classmethod
    def _input_grads(cls, W, dz, H: int) -> np.ndarray:
        """dx = W[H:] dz over all T·B columns: a (T,B,D) view of a (D, T, B) array."""
        return (W[H:] @ cls._steps(dz)).reshape(-1, *dz.shape[1:]).transpose(1, 2, 0)

    @staticmethod
    def _outputs(u, H: int) -> np.ndarray:
        """The layer's output a (T,B,H): a view of the h<t> rows of u."""
        return u[:H, 1:].transpose(1, 2, 0)


# --------------------------------------------------------------------------------------------------
class RNNCell(Cell):
    """a<t> = g(W_a[a<t-1>, x<t>] + b_a), g = tanh or relu.   W (H+D, H), b (H,)."""

    kind = "rnn"
    G = 1
    n_states = 1
    settings = {"activation": "tanh"}
    ACTIVATIONS = ("tanh", "relu")

    def __init__(self, activation: str = "tanh"):
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be 'tanh' or 'relu', not {activation!r}")
        self.activation = activation

    @classmethod
    def from_config(cls, config) -> "RNNCell":
        if config.activation not in cls.ACTIVATIONS:
            raise CharlmError(f"unknown activation {config.activation!r}; choose tanh or relu")
        return cls(config.activation)

    def __repr__(self) -> str:
        return f"RNNCell(activation={self.activation!r})"

    def _g(self, z: np.ndarray) -> None:
        """In place: z <- g(z)."""
        if self.activation == "tanh":
            np.tanh(z, out=z)
        else:
            np.maximum(z, 0, out=z)

    def forward(self, p, x, state, keep_cache: bool = True):
        """x (T,B,D), state (a0 (B,H),) -> (a (T,B,H), (a<T>,), cache)."""
        W = p["W"]
        H = W.shape[1]
        Ws = self._project_weights(W, p["b"], 0)
        u = self._stack_inputs(x, state[0].astype(W.dtype, copy=False))
        for t in range(x.shape[0]):
            a = u[:H, t + 1]
            np.matmul(Ws, u[:, t], out=a)                    # z<t> = W_a[a<t-1>, x<t>] + b_a
            self._g(a)                                       # a<t> = g(z<t>)
        return self._outputs(u, H), (_rows(u[:H, -1]),), (u if keep_cache else None)

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"}, (da<0>,))."""
        u = cache
        W = p["W"]
        H = W.shape[1]
        da = _columns(da)
        T = da.shape[0]
        Wa = W[:H]
        dz = np.empty((H, T, da.shape[2]), dtype=W.dtype)
        dnext = _dstate(dstate, 0, u[:H, 0])                 # dL/da<t> coming from step t+1
        dh, buf = np.empty_like(dnext), np.empty_like(dnext)
        for t in reversed(range(T)):
            a = u[:H, t + 1]
            np.add(da[t], dnext, out=dh)                     # dL/da<t>
            if self.activation == "tanh":                    # a<t> = g(z<t>): g' from a<t>
                np.multiply(a, a, out=buf)
                np.subtract(1.0, buf, out=buf)               # tanh' = 1 - a<t>²
            else:
                np.greater(a, 0, out=buf)                    # relu' = [a<t> > 0]
            np.multiply(dh, buf, out=dz[:, t])
            np.matmul(Wa, dz[:, t], out=dnext)               # z<t> = W_aa a<t-1> + ...
        return self._input_grads(W, dz, H), self._weight_grads(W, u, dz), (_rows(dnext),)

    def step(self, p, x, state):
        """x (B,D), (a<t-1>,) -> (a<t> (B,H), (a<t>,))."""
        W, b = p["W"], p["b"]
        z = _times(np.concatenate([state[0], x], axis=1), W)   # W_a[a<t-1>, x<t>]
        z += b
        self._g(z)
        return z, (z,)


# --------------------------------------------------------------------------------------------------
class GRUCell(Cell):
    """The notes' full GRU (relevance gate applied to c<t-1> BEFORE the product).

        Γr  = σ(W_r[c<t-1>, x<t>] + b_r)
        c~  = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
        Γu  = σ(W_u[c<t-1>, x<t>] + b_u)
        c<t> = Γu * c~ + (1 - Γu) * c<t-1>,      a<t> = c<t>

    W (H+D, 3H) with columns [Γr | Γu | c~], rows [:H] on c<t-1> (Γr * c<t-1> for c~), rows [H:] on x<t>.
    The stacked input of a step has one more block, u<t> = [c<t-1>; x<t>; 1; Γr * c<t-1>]: Γr and Γu
    read its rows [:H+D+1], c~ reads the rows [H:] (x<t>, 1, Γr * c<t-1>).
    """

    kind = "gru"
    G = 3
    n_states = 1

    @staticmethod
    def _candidate_weights(W, b) -> np.ndarray:
        """(H, D+1+H) = [W_c x-rows; b_c; W_c c-rows]ᵀ: c~ reads u<t>[H:] = [x<t>; 1; Γr * c<t-1>]."""
        H = W.shape[1] // 3
        D = W.shape[0] - H
        Wc = np.empty((H, D + 1 + H), dtype=W.dtype)
        Wc[:, :D] = W[H:, 2 * H:].T
        Wc[:, D] = b[2 * H:]
        Wc[:, D + 1:] = W[:H, 2 * H:].T
        return Wc

    def forward(self, p, x, state, keep_cache: bool = True):
        """x (T,B,D), (c0 (B,H),) -> (a (T,B,H), (c<T>,), cache)."""
        W, b = p["W"], p["b"]
        T, B, D = x.shape
        H = W.shape[1] // 3
        K = H + D + 1
        dt = W.dtype
        Wru = self._project_weights(W[:, :2 * H], b[:2 * H], 2 * H)   # ½[Γr | Γu] rows
        Wc = self._candidate_weights(W, b)
        u = self._stack_inputs(x, state[0].astype(dt, copy=False), extra=H)
        n = T if keep_cache else 1                           # steps kept: all, or a rolling one
        g = np.empty((n, 3 * H, B), dtype=dt)                # [Γr | Γu | c~] per step
        c = np.empty((n + 1, H, B), dtype=dt)                # c[t+1] = c<t>
        c[0] = state[0].T
        for t in range(T):
            i, j, k = (t, t, t + 1) if keep_cache else (0, t & 1, ~t & 1)   # g, c<t-1>, c<t>
            z, c_prev, c_new = g[i], c[j], c[k]
            ru, cand = z[:2 * H], z[2 * H:]
            np.matmul(Wru, u[:K, t], out=ru)
            np.tanh(ru, out=ru)
            ru *= 0.5
            ru += 0.5                                        # Γr, Γu = σ(W[c<t-1>, x<t>] + b)
            np.multiply(ru[:H], c_prev, out=u[K:, t])        # Γr * c<t-1>
            np.matmul(Wc, u[H:, t], out=cand)
            np.tanh(cand, out=cand)                          # c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
            np.subtract(cand, c_prev, out=c_new)
            c_new *= ru[H:]
            c_new += c_prev                                  # c<t> = Γu * c~ + (1 - Γu) * c<t-1>
            u[:H, t + 1] = c_new
        cache = (u, c, g) if keep_cache else None
        return self._outputs(u, H), (_rows(u[:H, -1]),), cache

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"}, (dc<0>,))."""
        u, c, g = cache
        W = p["W"]
        T, _, B = g.shape
        H = W.shape[1] // 3
        K = W.shape[0] + 1
        da = _columns(da)
        Wru = W[:H, :2 * H].copy()                           # contiguous copies multiply faster
        Wcc = W[:H, 2 * H:].copy()
        dz = np.empty((3 * H, T, B), dtype=W.dtype)
        dnext = _dstate(dstate, 0, c[0])                     # dL/dc<t> from step t+1
        dc, drc, buf = (np.empty_like(dnext) for _ in range(3))
        dzt, local = np.empty_like(g[0]), np.empty_like(g[0, :2 * H])   # dL/dz<t>; σ' of Γr, Γu
        for t in reversed(range(T)):
            Gr, Gu, cand, c_prev = g[t, :H], g[t, H:2 * H], g[t, 2 * H:], c[t]
            dzr, dzu, dzc = dzt[:H], dzt[H:2 * H], dzt[2 * H:]
            np.add(da[t], dnext, out=dc)                     # dL/dc<t>
            # c<t> = Γu * c~ + (1 - Γu) * c<t-1>
            np.subtract(cand, c_prev, out=dzu)
            dzu *= dc                                        # dΓu = dc * (c~ - c<t-1>)
            np.multiply(dc, Gu, out=dzc)                     # dc~
            np.subtract(dc, dzc, out=dnext)                  # dc<t-1> = dc * (1 - Γu)
            # c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c): tanh' = 1 - c~²
            np.multiply(cand, cand, out=buf)
            np.subtract(1.0, buf, out=buf)
            np.multiply(dzc, buf, out=dz[2 * H:, t])
            np.matmul(Wcc, dz[2 * H:, t], out=drc)           # d(Γr * c<t-1>)
            np.multiply(drc, c_prev, out=dzr)                # dΓr
            np.multiply(drc, Gr, out=buf)
            dnext += buf
            # Γr, Γu = σ(W[c<t-1>, x<t>] + b): σ' = Γ(1 - Γ)
            np.subtract(1.0, g[t, :2 * H], out=local)
            local *= g[t, :2 * H]
            np.multiply(dzt[:2 * H], local, out=dz[:2 * H, t])
            np.matmul(Wru, dz[:2 * H, t], out=buf)
            dnext += buf
        # after the loop: Γr, Γu read u<t>[:K] = [c<t-1>; x<t>; 1], c~ reads u<t>[H:] = [x<t>; 1; Γr * c<t-1>]
        d_ru = self._steps(u[:K, :-1]) @ self._steps(dz[:2 * H]).T      # (H+D+1, 2H)
        d_c = self._steps(u[H:, :-1]) @ self._steps(dz[2 * H:]).T       # (D+1+H, H)
        D = K - 1 - H
        grads = {"W": np.concatenate([d_ru[:-1], np.concatenate([d_c[D + 1:], d_c[:D]])], axis=1),
                 "b": np.concatenate([d_ru[-1], d_c[D]])}
        return self._input_grads(W, dz, H), grads, (_rows(dnext),)

    def step(self, p, x, state):
        """x (B,D), (c<t-1>,) -> (c<t> (B,H), (c<t>,))."""
        W, b = p["W"], p["b"]
        H = W.shape[1] // 3
        c_prev = state[0]
        z = _times(x, W[H:])                                 # W[·, x<t>] of Γr, Γu, c~
        z += b
        ru, cand = z[:, :2 * H], z[:, 2 * H:]
        ru += _times(c_prev, W[:H, :2 * H])
        _sigmoid_(ru)                                        # Γr, Γu = σ(W[c<t-1>, x<t>] + b)
        cand += _times(ru[:, :H] * c_prev, W[:H, 2 * H:])
        np.tanh(cand, out=cand)                              # c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c)
        c = cand - c_prev
        c *= ru[:, H:]
        c += c_prev                                          # c<t> = Γu * c~ + (1 - Γu) * c<t-1>
        return c, (c,)


# --------------------------------------------------------------------------------------------------
class LSTMCell(Cell):
    """LSTM in the notes' notation, optional peephole connections from c<t-1>.

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
    settings = {"peephole": False}

    def __init__(self, peephole: bool = False):
        self.peephole = bool(peephole)

    @classmethod
    def from_config(cls, config) -> "LSTMCell":
        if not isinstance(config.peephole, (bool, np.bool_)):
            raise CharlmError(f"model setting peephole must be true or false, got {config.peephole!r}")
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

    def forward(self, p, x, state, keep_cache: bool = True):
        """x (T,B,D), (a0, c0) each (B,H) -> (a (T,B,H), (a<T>, c<T>), cache)."""
        W = p["W"]
        T, B, D = x.shape
        H = W.shape[1] // 4
        dt = W.dtype
        Ws = self._project_weights(W, p["b"], 3 * H)         # ½ on Γu, Γf, Γo; 1 on c~
        Ps = 0.5 * p["P"][:, :, None] if self.peephole else None
        u = self._stack_inputs(x, state[0].astype(dt, copy=False))
        n = T if keep_cache else 1                           # steps kept: all, or a rolling one
        g = np.empty((n, 4 * H, B), dtype=dt)                # [Γu | Γf | Γo | c~] per step
        tc = np.empty((n, H, B), dtype=dt)                   # tanh(c<t>)
        c = np.empty((n + 1, H, B), dtype=dt)                # c[t+1] = c<t>
        c[0] = state[1].T
        buf = np.empty((H, B), dtype=dt)
        for t in range(T):
            i, j, k = (t, t, t + 1) if keep_cache else (0, t & 1, ~t & 1)   # g/tc, c<t-1>, c<t>
            z, c_prev, c_new = g[i], c[j], c[k]
            np.matmul(Ws, u[:, t], out=z)                    # W[a<t-1>, x<t>] + b (½ on σ rows)
            if self.peephole:
                zp = z[:3 * H].reshape(3, H, B)
                zp += Ps * c_prev                            # ½ P[k] * c<t-1>
            np.tanh(z, out=z)
            z[:3 * H] *= 0.5
            z[:3 * H] += 0.5                                 # Γu, Γf, Γo (σ) and c~ (tanh)
            Gu, Gf, Go, cand = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
            np.multiply(Gu, cand, out=c_new)
            np.multiply(Gf, c_prev, out=buf)
            c_new += buf                                     # c<t> = Γu * c~ + Γf * c<t-1>
            np.tanh(c_new, out=tc[i])
            np.multiply(Go, tc[i], out=u[:H, t + 1])         # a<t> = Γo * tanh(c<t>)
        c_last = c[T if keep_cache else T & 1]
        cache = (u, c, g, tc) if keep_cache else None
        return self._outputs(u, H), (_rows(u[:H, -1]), _rows(c_last)), cache

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), {"W", "b"[, "P"]}, (da<0>, dc<0>))."""
        u, c, g, tc = cache
        W = p["W"]
        T, GH, B = g.shape
        H = GH // 4
        da = _columns(da)
        Wa = W[:H]                                           # rows on a<t-1>, contiguous
        P = p["P"][:, :, None] if self.peephole else None
        dz = np.empty((GH, T, B), dtype=W.dtype)
        dnext = _dstate(dstate, 0, c[0])                     # dL/da<t> from step t+1
        dc = _dstate(dstate, 1, c[0])                        # dL/dc<t> from step t+1
        dh, buf = np.empty_like(dnext), np.empty_like(dnext)
        dzt, local = np.empty_like(g[0]), np.empty_like(g[0])   # dL/dz<t> before σ', tanh'; those
        for t in reversed(range(T)):
            Gu, Gf, Go, cand = g[t, :H], g[t, H:2 * H], g[t, 2 * H:3 * H], g[t, 3 * H:]
            dGu, dGf, dGo, dcand = dzt[:H], dzt[H:2 * H], dzt[2 * H:3 * H], dzt[3 * H:]
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
            # through σ, σ' = Γ(1 - Γ), and tanh, tanh' = 1 - c~²
            np.subtract(1.0, g[t, :3 * H], out=local[:3 * H])
            local[:3 * H] *= g[t, :3 * H]
            np.multiply(cand, cand, out=local[3 * H:])
            np.subtract(1.0, local[3 * H:], out=local[3 * H:])
            dz_t = np.multiply(dzt, local, out=dz[:, t])     # dL/dz<t>
            if self.peephole:                                # + P[k] * c<t-1> in Γu, Γf, Γo
                dc += (dz_t[:3 * H].reshape(3, H, B) * P).sum(axis=0)
            np.matmul(Wa, dz_t, out=dnext)                   # W[a<t-1>, x<t>]: dL/da<t-1>
        grads = self._weight_grads(W, u, dz)
        if self.peephole:
            grads["P"] = np.einsum("khtb,thb->kh", dz[:3 * H].reshape(3, H, T, B), c[:-1])
        return self._input_grads(W, dz, H), grads, (_rows(dnext), _rows(dc))

    def step(self, p, x, state):
        """x (B,D), (a<t-1>, c<t-1>) -> (a<t> (B,H), (a<t>, c<t>))."""
        W, b = p["W"], p["b"]
        H = W.shape[1] // 4
        a_prev, c_prev = state
        z = _times(np.concatenate([a_prev, x], axis=1), W)   # W[a<t-1>, x<t>]
        z += b
        if self.peephole:
            z[:, :3 * H] += (c_prev[:, None, :] * p["P"]).reshape(-1, 3 * H)
        _sigmoid_(z[:, :3 * H])                              # Γu, Γf, Γo
        Gu, Gf, Go, cand = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
        np.tanh(cand, out=cand)                              # c~
        c = Gu * cand
        c += Gf * c_prev                                     # c<t> = Γu * c~ + Γf * c<t-1>
        a = np.tanh(c)
        a *= Go                                              # a<t> = Γo * tanh(c<t>)
        return a, (a, c)


# The cell registry: the one place that lists the cells. The models, the --cell choices of
# `charlm train` and the memory estimate all read it, so a new cell is added here; a setting of its
# own is an entry of its `settings`, a field of CellSettings and one option declaration
# (charlm/engine/options.py).
CELLS: dict[str, type[Cell]] = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


@dataclass(kw_only=True)
class CellSettings(Settings):
    """The settings of the cells, which every network configuration has (it subclasses this):
    the cell, and a field for each setting a cell has of its own (`Cell.settings`; read by that
    cell's `from_config`). A cell's setting given to another cell must keep its default."""

    cell: str = "lstm"
    activation: str = "tanh"    # RNNCell: g = tanh | relu
    peephole: bool = False      # LSTMCell: c<t-1> feeds Γu, Γf, Γo

    def check_cell(self) -> None:
        """CharlmError for an unknown cell, a bad value of its settings, or another cell's setting."""
        if self.cell not in CELLS:
            raise CharlmError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        mine = CELLS[self.cell]
        for other in CELLS.values():
            for name, default in other.settings.items():
                value = getattr(self, name)
                if name not in mine.settings and value != default:
                    raise CharlmError(f"{name} {value!r} applies only to the {other.kind} cell")
        mine.from_config(self)


def make_cell(kind: str, activation: str = "tanh", peephole: bool = False) -> Cell:
    """Cell by name: "rnn" (activation "tanh"|"relu"), "gru", "lstm" (peephole)."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell {kind!r} (expected {', '.join(CELLS)})")
    return cell_from_config(SimpleNamespace(cell=kind, activation=activation, peephole=peephole))


def cell_from_config(config) -> Cell:
    """The cell a config describes (any object with .cell, .activation, .peephole)."""
    return CELLS[config.cell].from_config(config)
