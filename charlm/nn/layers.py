"""Layers around the recurrent cells: embedding, dropout, stacked and bidirectional recurrent
layers, dense output, softmax cross-entropy.

Arrays are time-major: ids (T,B), activations (T,B,H). Each layer is a pair of plain functions
(or a small class) with explicit caches: forward(...) -> (out, cache), backward(dout, cache) -> grads.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "embedding_forward", "embedding_backward", "dropout_mask", "dense_forward", "dense_backward",
    "StackedRecurrent", "Bidirectional", "reverse_within", "CharEncoder", "pool_forward", "pool_backward",
    "POOLS", "softmax_cross_entropy", "softmax_cross_entropy_backward", "log_softmax", "target_log_probs",
]


# -- embedding ---------------------------------------------------------------------------------------
def embedding_forward(W: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """W (V,E), ids (T,B) int -> x (T,B,E) = W[ids] (the one-hot product o<t> @ W)."""
    return W[ids]


def embedding_backward(dx: np.ndarray, ids: np.ndarray, V: int) -> np.ndarray:
    """dx (T,B,E), ids (T,B) -> dW (V,E): rows of dx scatter-added into the rows they came from."""
    E = dx.shape[-1]
    ids = ids.reshape(-1)
    dx = dx.reshape(-1, E)
    dW = np.zeros((V, E), dtype=dx.dtype)
    if ids.size == 0:
        return dW
    # sort the ids, then sum each run of equal ids with one reduceat: 1.5-5x faster than
    # np.add.at(dW, ids, dx) for V = 65 .. 10k (measured, numpy 2.x)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    dW[sorted_ids[starts]] = np.add.reduceat(dx[order], starts, axis=0)
    return dW


# -- dropout ------------------------------------------------------------------------------------------
def dropout_mask(shape, rate: float, rng: np.random.Generator, dtype="float32", like=None,
                 locked: bool = False):
    """Inverted-dropout mask: 0 with probability `rate`, else 1/(1-rate); None when rate == 0.

    Apply as y = x * mask (forward) and dx = dy * mask (backward); at evaluation time no mask.
    The draws fill `shape` in C order; with `like` (an array of that shape) the mask is stored
    in like's memory layout (the same values), so x * mask runs through memory in one order
    when x is laid out as `like` (the cells return views whose strides are not C order).
    locked=True (Gal & Ghahramani's variational dropout) for `shape` (T,B,...): one mask per
    stream and unit, (1,B,...), that broadcasts over the T steps (the same units dropped at
    every step of the window); `like` is then ignored.
    """
    if rate <= 0.0:
        return None
    if locked:
        shape, like = (1, *shape[1:]), None
    keep = 1.0 - rate
    draws = rng.random(shape, dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    mask = np.empty(shape, dtype=dtype) if like is None else np.empty_like(like, dtype=dtype)
    np.less(draws, keep, out=mask)
    mask *= np.asarray(1.0 / keep, dtype=dtype)
    return mask


# -- dense -----------------------------------------------------------------------------------------------
def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (N,H), W (H,V), b (V,) -> y (N,V) = x @ W + b."""
    y = x @ W
    y += b
    return y


def dense_backward(dy: np.ndarray, x: np.ndarray, W: np.ndarray):
    """dy (N,V), x (N,H), W (H,V) -> (dx (N,H), dW (H,V), db (V,))."""
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


# -- softmax cross-entropy -----------------------------------------------------------------------------
def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray, mask=None):
    """Mean categorical cross-entropy over all rows at once, computed stably.

    logits (N,V) — OVERWRITTEN with exp(z - max z) (saves an (N,V) copy); y (N,) int targets;
    mask (N,) of 0/1 (padding positions 0) or None.
    L = (1/n) Σ_i m_i (log Σ_j exp(z_ij) - z_{i,y_i}), n = Σ m_i (log-sum-exp, row max subtracted).
    Returns (loss float, cache) for softmax_cross_entropy_backward.
    """
    N = logits.shape[0]
    y = np.asarray(y).reshape(N)
    logits -= logits.max(axis=1, keepdims=True)              # z - max z
    picked = logits[np.arange(N), y].astype(np.float64)      # z_y - max z
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1)                                # Σ_j exp(z_j - max z)
    nll = np.log(sums.astype(np.float64)) - picked           # -log ŷ_y
    w = None if mask is None else np.asarray(mask).reshape(N).astype(logits.dtype)
    n = max(float(N if w is None else w.sum()), 1.0)
    loss = float((nll if w is None else nll * w).sum() / n)
    return loss, (logits, sums, y, w, n)


def softmax_cross_entropy_backward(cache) -> np.ndarray:
    """-> dlogits (N,V) = (ŷ - onehot(y)) * m / n, written into the cached exponentials
    (the softmax normalisation and the 1/n scale are one pass). A cache is used once."""
    e, sums, y, w, n = cache
    row_scale = (1.0 / n) / sums if w is None else (w / n) / sums
    e *= row_scale.astype(e.dtype)[:, None]                  # ŷ * m / n
    e[np.arange(e.shape[0]), y] -= (1.0 / n) if w is None else (w / n)
    return e


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (...,V) -> log ŷ (...,V), stably (in place on `logits`)."""
    logits -= logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    logits -= lse
    return logits


def target_log_probs(a: np.ndarray, W: np.ndarray, b: np.ndarray, y: np.ndarray,
                     chunk: int = 4096) -> np.ndarray:
    """log ŷ_y for each row without materialising all (N,V) log-probabilities at once.

    a (N,H), W (H,V), b (V,), y (N,) -> (N,) float64; rows processed `chunk` at a time.
    """
    N = a.shape[0]
    out = np.empty(N, dtype=np.float64)
    for s in range(0, N, chunk):
        z = dense_forward(a[s:s + chunk], W, b)
        m = z.max(axis=1, keepdims=True)
        picked = z[np.arange(z.shape[0]), y[s:s + chunk]] - m[:, 0]
        z -= m
        np.exp(z, out=z)
        out[s:s + chunk] = picked - np.log(z.sum(axis=1).astype(np.float64))
    return out


# -- recurrent layers ------------------------------------------------------------------------------------
class StackedRecurrent:
    """A deep RNN: `layers` recurrent layers stacked, each with its own parameters (the notes, "Deep
    RNNs"):

        a[l]<t> = cell(W[l][a[l]<t-1>, a[l-1]<t>] + b[l]),   a[0]<t> = x<t>

    A layer is a cell (output width H) or a `Bidirectional` pair of cells (width 2H: layer l+1 reads
    [→a[l]<t>, ←a[l]<t>]). Dropout (inverted, rate `dropout`) is applied to the input of layers
    1..L-1 — between layers, never on the recurrent connection a[l]<t-1> -> a[l]<t>; with
    locked=True one mask per stream and unit serves every step (see `dropout_mask`).
    params: list over layers of the layer's params; state: list over layers of its state.
    `lengths` (B,) (padded sentences, bidirectional layers only) is passed on to every layer.
    """

    def __init__(self, cell, layers: int):
        self.cell = cell
        self.layers = layers

    def param_shapes(self, D: int, H: int) -> list[dict]:
        """{name: shape} of each layer of cells (not Bidirectional pairs), layer 0 reading D features."""
        return [self.cell.param_shapes(D if l == 0 else H, H) for l in range(self.layers)]

    def init_params(self, D: int, H: int, rng, dtype="float32") -> list:
        width = H * getattr(self.cell, "directions", 1)       # what layer l+1 reads
        return [self.cell.init_params(D if l == 0 else width, H, rng, dtype) for l in range(self.layers)]

    def forward(self, params, x, state, dropout: float = 0.0, rng=None, lengths=None, locked: bool = False):
        """x (T,B,D) -> (a (T,B,H or 2H) of the top layer, new state list, cache)."""
        caches, masks, new_state = [], [], []
        extra = () if lengths is None else (lengths,)
        h = x
        for l in range(self.layers):
            mask = None
            if l > 0 and dropout > 0.0:
                mask = dropout_mask(h.shape, dropout, rng, h.dtype, like=h, locked=locked)
                h = h * mask
            h, final, cache = self.cell.forward(params[l], h, state[l], *extra)
            caches.append(cache)
            masks.append(mask)
            new_state.append(final)
        return h, new_state, (caches, masks)

    def backward(self, params, da, cache, dstate=None):
        """da (T,B,H or 2H) -> (dx (T,B,D), list of layer grads, list of dstate0)."""
        caches, masks = cache
        grads, dstate0 = [None] * self.layers, [None] * self.layers
        dh = da
        for l in reversed(range(self.layers)):
            dh, grads[l], dstate0[l] = self.cell.backward(
                params[l], dh, caches[l], None if dstate is None else dstate[l])
            if masks[l] is not None:
                dh *= masks[l]
        return dh, grads, dstate0

    def _layerwise(self, fn, x):
        """Feed x up the stack with fn(l, h) -> (layer l's output, its new state)."""
        new_state = []
        for l in range(self.layers):
            x, s = fn(l, x)
            new_state.append(s)
        return x, new_state

    def run(self, params, x, state):
        """x (T,B,D) -> (a (T,B,H) of the top layer, new state list); evaluation only: no dropout
        and no caches (each cell keeps one step of its gates instead of the whole sequence)."""
        return self._layerwise(lambda l, h: self.cell.forward(params[l], h, state[l], keep_cache=False)[:2], x)

    def step(self, params, x, state):
        """x (B,D) -> (a (B,H) of the top layer, new state list); evaluation mode."""
        return self._layerwise(lambda l, h: self.cell.step(params[l], h, state[l]), x)


def reverse_within(lengths: np.ndarray, T: int) -> tuple:
    """Index that reverses each column of a padded (T, B, ...) array within its own length.

    lengths (B,) -> (rev (T,B), cols (B,)) for x[rev, cols]:  rev[t, b] = L_b - 1 - t for t < L_b,
    else t (padding stays at the end). Applying it twice is the identity.
    """
    L = np.asarray(lengths)
    t = np.arange(T)[:, None]
    return np.where(t < L, L - 1 - t, t), np.arange(L.shape[0])


class Bidirectional:
    """A bidirectional RNN (the notes, "Bidirectional RNNs"): →a<t> runs left to right, ←a<t> runs over the
    time-reversed input; the output is [→a<t>, ←a<t>] on the last axis, (T,B,2H).

    params: (p_fwd, p_bwd); state: (state_fwd, state_bwd), ←'s initial state is at t = T.
    Without `lengths` every sequence fills all T steps. With `lengths` (B,) (padded sentences, padding
    at the end) ←a starts at each column's OWN last real token: the column is reversed within its
    length, run, and un-reversed, so no real position ever sees padding (→a never does: padding comes
    after). The final states then include padding steps and are returned as None — unless the cells
    stop at each column's length (`nn.lengthcell.LengthCell`): they get the lengths and the final
    states are (→a<L_b>, ←a<1>).
    """

    directions = 2

    def __init__(self, cell_fwd, cell_bwd=None):
        self.fwd = cell_fwd
        self.bwd = cell_bwd if cell_bwd is not None else cell_fwd

    def init_params(self, D: int, H: int, rng, dtype="float32"):
        return self.fwd.init_params(D, H, rng, dtype), self.bwd.init_params(D, H, rng, dtype)

    def forward(self, params, x, state, lengths=None):
        """x (T,B,D), lengths (B,) or None -> (y (T,B,2H), (final_fwd, final_bwd) or None, cache)."""
        flip = np.s_[::-1] if lengths is None else reverse_within(lengths, x.shape[0])
        extra = (lengths,) if lengths is not None and getattr(self.fwd, "stops_at_length", False) else ()
        af, sf, cf = self.fwd.forward(params[0], x, state[0], *extra)
        ab, sb, cb = self.bwd.forward(params[1], np.ascontiguousarray(x[flip]), state[1], *extra)
        y = np.concatenate([af, ab[flip]], axis=-1)           # [→a<t>, ←a<t>]
        return y, (sf, sb) if lengths is None or extra else None, (cf, cb, af.shape[-1], flip)

    def backward(self, params, dy, cache, dstate=None):
        """dy (T,B,2H) -> (dx (T,B,D), (grads_fwd, grads_bwd), (dstate0_fwd, dstate0_bwd))."""
        cf, cb, H, flip = cache
        dsf, dsb = (None, None) if dstate is None else dstate
        dxf, gf, d0f = self.fwd.backward(params[0], dy[:, :, :H], cf, dsf)
        dxb, gb, d0b = self.bwd.backward(params[1], np.ascontiguousarray(dy[:, :, H:][flip]), cb, dsb)
        return dxf + dxb[flip], (gf, gb), (d0f, d0b)


# -- pooling over time -------------------------------------------------------------------------------------
POOLS = ("last", "mean", "max")


def pool_forward(y: np.ndarray, lengths: np.ndarray, how: str, split: int):
    """Summarise each padded column of y (T,B,F) over its real steps t < L_b -> (p (B,F), cache).

    last: [→a<L_b>, ←a<1>]: features [:split] at the column's last real step, [split:] at its first
          (the notes' many-to-one read-out of a bidirectional RNN; split = F: the last step only)
    mean: (1/L_b) Σ_{t<L_b} y<t>
    max:  max_{t<L_b} y<t>, feature by feature
    """
    T, B, F = y.shape
    L = np.asarray(lengths)
    cols = np.arange(B)
    if how == "last":
        p = np.concatenate([y[L - 1, cols, :split], y[0, :, split:]], axis=1)
        return p, (how, y.shape, L, split)
    real = (np.arange(T)[:, None] < L)[:, :, None]            # (T,B,1) True at real steps
    if how == "mean":
        p = np.where(real, y, 0).sum(axis=0) / L[:, None].astype(y.dtype)
        return p, (how, y.shape, L, real)
    if how == "max":
        arg = np.where(real, y, -np.inf).argmax(axis=0)      # (B,F) the step holding each maximum
        return np.take_along_axis(y, arg[None], axis=0)[0], (how, y.shape, L, arg)
    raise ValueError(f"unknown pooling {how!r} (expected {', '.join(POOLS)})")


def pool_backward(dp: np.ndarray, cache) -> np.ndarray:
    """dp (B,F) -> dy (T,B,F), zero at padding."""
    how, shape, L, extra = cache
    dy = np.zeros(shape, dtype=dp.dtype)
    if how == "last":
        cols = np.arange(shape[1])
        dy[L - 1, cols, :extra] = dp[:, :extra]
        dy[0, :, extra:] = dp[:, extra:]
    elif how == "mean":
        dy[...] = dp / L[:, None].astype(dp.dtype)
        dy *= extra
    else:
        np.put_along_axis(dy, extra[None], dp[None], axis=0)
    return dy


# -- character-level word encoder ---------------------------------------------------------------------------
class CharEncoder:
    """A word's code from its characters: a small bidirectional RNN over the character embeddings,
    read out as [→a at the word's last character, ←a at its first] (the final state of each direction).

        e<k> = C[c<k>]                 char.embed.W  C (n_chars, Ec)
        [→a<k>, ←a<k>] = BRNN(e)       char.fwd.*, char.bwd.*  (any cell; Hc per direction)
        code = [→a<L>, ←a<1>]          (2Hc,)

    chars (Lc, W) int, padded; lengths (W,) -> codes (W, 2Hc). Each distinct word is encoded once.
    """

    def __init__(self, cell):
        self.bi = Bidirectional(cell)

    def init_params(self, n_chars: int, Ec: int, Hc: int, rng, dtype="float32"):
        """-> (C (n_chars, Ec) ~ N(0, 1), (p_fwd, p_bwd))."""
        return rng.standard_normal((n_chars, Ec)).astype(dtype), self.bi.init_params(Ec, Hc, rng, dtype)

    def forward(self, C: np.ndarray, params, chars: np.ndarray, lengths: np.ndarray):
        """-> (codes (W, 2Hc), cache)."""
        e = C[chars]                                          # (Lc, W, Ec)
        W = chars.shape[1]
        state = tuple(self.bi.fwd.init_state(W, _hidden(self.bi.fwd, p), C.dtype) for p in params)
        y, _, bi_cache = self.bi.forward(params, e, state, lengths)
        codes, pool_cache = pool_forward(y, lengths, "last", y.shape[-1] // 2)
        return codes, (chars, C.shape[0], bi_cache, pool_cache)

    def backward(self, params, dcodes: np.ndarray, cache):
        """dcodes (W, 2Hc) -> (dC (n_chars, Ec), (grads_fwd, grads_bwd))."""
        chars, n_chars, bi_cache, pool_cache = cache
        de, grads, _ = self.bi.backward(params, pool_backward(dcodes, pool_cache), bi_cache)
        return embedding_backward(de, chars, n_chars), grads


def _hidden(cell, p: dict) -> int:
    """H of a cell's parameters: W is (H+D, G*H)."""
    return p["W"].shape[1] // cell.G
