"""Attention of a decoder over the encoder's states: scores, a masked softmax, the context vector.

    a<t'>    (Tx, B, F)   the encoder's states [→a<t'>, ←a<t'>], t' = 1..Tx (padding at the end)
    s<t>     (Ty, B, Hd)  the decoder's states, t = 1..Ty
    e<t,t'>  the score of source step t' for target step t:
             additive  e<t,t'> = vᵀ tanh(W_1 s<t> + W_2 a<t'>)    att.W1 (Hd, Ha), att.W2 (F, Ha), att.v (Ha,)
             dot       e<t,t'> = s<t>ᵀ W_a a<t'>                   att.W (F, Hd): a bilinear ("general") dot,
                                                                   so F and Hd may differ
    α<t,t'>  = exp(e<t,t'>) / Σ_t'' exp(e<t,t''>)    over the column's real steps; exactly 0 at padding
                                                     (its score is -inf before the softmax)
    c<t>     = Σ_t' α<t,t'> a<t'>                    (Ty, B, F), the context vector

Layout: scores and weights are (Tx, Ty, B). The part of a score that reads only a<t'> (W_2 a<t'>, or
W_a a<t'>) is the "keys" k<t'> (Tx, B, K), one product per source (`keys`), reused at every step of
a decoding.

Padding invariance: a column's numbers must not depend on how many padding steps follow it (an
example alone and in a batch give the same result, bit for bit). The matrix products (W_1 s<t>, the
keys) run over Ty·B or Tx·B rows, whole blocks when B is (the models widen B to a multiple of
charlm.nn.padded.ROW_ALIGN); the scores are per-element sums over the feature axis (einsum, not a
per-column BLAS product whose shape would change with Tx or Ty); and the two sums over the source
axis (the softmax's denominator and c<t>) add the source steps one at a time in the order t' = 1,
2, ... (the only Python loop, over time steps), so a padding step adds an exact 0. (np.sum over that
axis would add in pairs, and the padding would change which real terms are paired.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["ATTENTIONS", "Attention", "masked_softmax", "context"]

ATTENTIONS = ("none", "additive", "dot")


def masked_softmax(e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """α (Tx, Ty, B): the softmax over axis 0 of e (Tx, Ty, B) among the steps where mask (Tx, B) is True.

    e is overwritten. α<t,t'> = exp(e<t,t'> - max) / Σ_t'' exp(e<t,t''> - max), 0 where mask is False.
    """
    e[~np.broadcast_to(mask[:, None, :], e.shape)] = -np.inf
    e -= e.max(axis=0)
    np.exp(e, out=e)
    total = e[0].copy()
    for t in range(1, e.shape[0]):                           # Σ_t'' in source order (see the module doc)
        total += e[t]
    e /= total
    return e


def masked_softmax_backward(dalpha: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """dL/de (Tx, Ty, B) = α * (dα - Σ_t' α dα): zero where α is (at padding)."""
    return alpha * (dalpha - (alpha * dalpha).sum(axis=0))


def context(alpha: np.ndarray, a: np.ndarray) -> np.ndarray:
    """c<t> = Σ_t' α<t,t'> a<t'>:  alpha (Tx, Ty, B), a (Tx, B, F) -> c (Ty, B, F), in source order."""
    c = alpha[0][..., None] * a[0]
    buf = np.empty_like(c)
    for t in range(1, a.shape[0]):
        np.multiply(alpha[t][..., None], a[t], out=buf)
        c += buf
    return c


def context_backward(dc: np.ndarray, alpha: np.ndarray, a: np.ndarray):
    """dc (Ty, B, F) -> (dα (Tx, Ty, B), da (Tx, B, F))."""
    dalpha = np.einsum("tbf,sbf->stb", dc, a)
    da = np.einsum("stb,tbf->sbf", alpha, dc)
    return dalpha, da


def _rows(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (..., D) @ W (D, K) as one product over all rows -> (..., K)."""
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(x.shape[:-1] + (W.shape[1],))


class Attention:
    """Additive (Bahdanau) or bilinear dot (Luong's "general") attention; see the module docstring.

    params: additive {"W1" (Hd, Ha), "W2" (F, Ha), "v" (Ha,)}; dot {"W" (F, Hd)}.
    """

    def __init__(self, kind: str):
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"unknown attention {kind!r} (expected {' or '.join(ATTENTIONS[1:])})")
        self.kind = kind

    def param_shapes(self, F: int, Hd: int, Ha: int) -> dict[str, tuple]:
        if self.kind == "additive":
            return {"W1": (Hd, Ha), "W2": (F, Ha), "v": (Ha,)}
        return {"W": (F, Hd)}

    def init_params(self, F: int, Hd: int, Ha: int, rng, dtype="float32") -> dict:
        """Each matrix ~ U(±1/sqrt(rows)), v ~ U(±1/sqrt(Ha))."""
        return {k: (rng.uniform(-1, 1, size=s) / np.sqrt(s[0])).astype(dtype)
                for k, s in self.param_shapes(F, Hd, Ha).items()}

    def keys(self, p: dict, a: np.ndarray) -> np.ndarray:
        """k<t'> (Tx, B, K): W_2 a<t'> (additive) or W_a a<t'> (dot), one product over all Tx·B rows."""
        return _rows(a, p["W2"] if self.kind == "additive" else p["W"])

    def scores(self, p: dict, s: np.ndarray, k: np.ndarray):
        """s (Ty, B, Hd), k (Tx, B, K) -> (e (Tx, Ty, B), h): h = tanh(W_1 s<t> + W_2 a<t'>) (Tx, Ty, B, Ha)
        for the additive score, None for the dot."""
        if self.kind == "dot":
            return np.einsum("tbh,sbh->stb", s, k), None            # s<t> · W_a a<t'>
        h = _rows(s, p["W1"])[None] + k[:, None]                    # W_1 s<t> + W_2 a<t'>
        np.tanh(h, out=h)
        return np.einsum("stbh,h->stb", h, p["v"]), h              # vᵀ tanh(...)

    def forward(self, p: dict, s: np.ndarray, a: np.ndarray, k: np.ndarray, mask: np.ndarray):
        """s (Ty,B,Hd), a (Tx,B,F), k = keys(p, a), mask (Tx,B) bool (True at real steps)
        -> (c (Ty,B,F), α (Tx,Ty,B), cache)."""
        e, h = self.scores(p, s, k)
        alpha = masked_softmax(e, mask)
        return context(alpha, a), alpha, (s, a, k, alpha, h)

    def backward(self, p: dict, dc: np.ndarray, cache):
        """dc (Ty,B,F) -> (ds (Ty,B,Hd), da (Tx,B,F), grads) — da includes the keys' path."""
        s, a, k, alpha, h = cache
        dalpha, da = context_backward(dc, alpha, a)
        de = masked_softmax_backward(dalpha, alpha)                 # (Tx, Ty, B)
        if self.kind == "dot":
            ds = np.einsum("stb,sbh->tbh", de, k, optimize=True)
            dk = np.einsum("stb,tbh->sbh", de, s, optimize=True)
            grads = {"W": a.reshape(-1, a.shape[-1]).T @ dk.reshape(-1, dk.shape[-1])}
            da += _rows(dk, p["W"].T)
            return ds, da, grads
        dv = np.einsum("stbh,stb->h", h, de, optimize=True)
        dz = h                                                      # (a cache is used once: h's memory)
        np.multiply(h, h, out=dz)
        np.subtract(1.0, dz, out=dz)                                # tanh' = 1 - h²
        dz *= de[..., None]
        dz *= p["v"]                                                # dL/d(W_1 s<t> + W_2 a<t'>)
        dq, dk = dz.sum(axis=0), dz.sum(axis=1)                     # (Ty,B,Ha) on W_1 s<t>; (Tx,B,Ha) on W_2 a<t'>
        ds = _rows(dq, p["W1"].T)
        grads = {"W1": s.reshape(-1, s.shape[-1]).T @ dq.reshape(-1, dq.shape[-1]),
                 "W2": a.reshape(-1, a.shape[-1]).T @ dk.reshape(-1, dk.shape[-1]),
                 "v": dv}
        da += _rows(dk, p["W2"].T)
        return ds, da, grads
