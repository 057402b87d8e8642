"""A linear-chain conditional random field (CRF) on per-token scores: the output layer of a
BiRNN-CRF tagger (Lample et al. 2016). Log space throughout; vectorised over the batch, the only
Python loop over time steps.

A sentence of Ty words gets a tag sequence y = y<1..Ty> over K tags, scored by

    e<t>[j]   the emission score of tag j at word t (the tagger's W_y[→a<t>, ←a<t>] + b_y)   (T,B,K)
    A[i, j]   the score of tag j right after tag i                      trans (K,K)
    s[j]      the score of tag j first                                  start (K,)
    f[j]      the score of tag j last                                   end (K,)

    score(x, y) = s[y<1>] + Σ_t e<t>[y<t>] + Σ_{t≥2} A[y<t-1>, y<t>] + f[y<Ty>]
    P(y | x)    = exp(score(x, y)) / Z(x),     Z(x) = Σ_y' exp(score(x, y'))
    loss        = −log P(y | x) = log Z(x) − score(x, y)

A transition the label scheme forbids (`constraints` = charlm.sentence.decode.tag_constraints(...): I-PER
after O in IOB2) scores −∞ whatever the learned entry holds: no path through it has any
probability, its gradient is 0 (it is never learned) and Viterbi never takes it.

Forward algorithm, α<t>[j] = log of the summed exp-scores of the prefixes y<1..t> with y<t> = j:
    α<1>[j] = s[j] + e<1>[j]
    α<t>[j] = e<t>[j] + logsumexp_i (α<t-1>[i] + A[i, j])
    log Z   = logsumexp_j (α<Ty>[j] + f[j])
Backward algorithm, β<t>[i] = the same for the suffixes after y<t> = i:
    β<Ty>[i] = f[i]
    β<t>[i]  = logsumexp_j (A[i, j] + e<t+1>[j] + β<t+1>[j])
Marginals, which are the derivatives of log Z (expected counts):
    P(y<t> = j | x)             = exp(α<t>[j] + β<t>[j] − log Z)                    = ∂log Z/∂e<t>[j]
    P(y<t-1> = i, y<t> = j | x) = exp(α<t-1>[i] + A[i, j] + e<t>[j] + β<t>[j] − log Z)
    ∂log Z/∂A[i, j] = Σ_{t≥2} P(y<t-1> = i, y<t> = j | x),  ∂log Z/∂s = P(y<1>),  ∂log Z/∂f = P(y<Ty>)
∂score/∂(·) counts the gold path's own emissions, transitions, first and last tag, so
∂loss/∂e<t>[j] = P(y<t> = j | x) − [y<t> = j], and so on.
Viterbi is the forward algorithm with max for logsumexp, the best predecessor ψ<t>[j] remembered.

Padding: B sentences padded at the end to T words (`lengths` (B,)). Past a sentence's last word α
and δ keep their value (ψ is the identity), β is f, and padded positions enter no sum. Every
operation is element-wise, or reduces over the tags of one sentence along the last axis of a
C-ordered array, or adds over time in the time loop, so a sentence gets the same numbers alone as
in any batch, bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["scores", "logsumexp", "forward", "backward", "path_score", "forbidden", "crf_loss",
           "crf_loss_backward", "log_marginals", "viterbi"]


def scores(trans: np.ndarray, start: np.ndarray, end: np.ndarray, constraints=None):
    """The learned scores with −∞ where the scheme forbids: -> (A (K,K), s (K,), f (K,)).

    constraints: (allowed (K,K), start_allowed (K,), end_allowed (K,)) bool, allowed[i, j]: tag j
    may follow tag i (charlm.sentence.decode.tag_constraints); None: everything is allowed.
    """
    if constraints is None:
        return trans, start, end
    ninf = trans.dtype.type(-np.inf)
    allowed, first, last = constraints
    return np.where(allowed, trans, ninf), np.where(first, start, ninf), np.where(last, end, ninf)


def logsumexp(x: np.ndarray) -> np.ndarray:
    """log Σ exp(x) over the last axis, the max subtracted first; a slice of only −∞ gives −∞."""
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def forward(e: np.ndarray, lengths: np.ndarray, A: np.ndarray, s: np.ndarray) -> np.ndarray:
    """e (T,B,K), lengths (B,), A (K,K), s (K,) -> α (T,B,K); past a sentence's end α<t> = α<Ty>."""
    T = e.shape[0]
    alpha = np.empty_like(e)
    alpha[0] = s + e[0]                                         # α<1> = s + e<1>
    At = A.T                                                    # [j, i]: sum over the last axis
    for t in range(1, T):
        new = e[t] + logsumexp(alpha[t - 1][:, None, :] + At)   # (B, j, i) -> (B, j)
        alpha[t] = np.where((t < lengths)[:, None], new, alpha[t - 1])
    return alpha


def backward(e: np.ndarray, lengths: np.ndarray, A: np.ndarray, f: np.ndarray) -> np.ndarray:
    """e (T,B,K), lengths (B,), A (K,K), f (K,) -> β (T,B,K); β<t> = f from a sentence's last word on."""
    T = e.shape[0]
    beta = np.empty_like(e)
    beta[T - 1] = f
    for t in range(T - 2, -1, -1):
        new = logsumexp(A + (e[t + 1] + beta[t + 1])[:, None, :])      # (B, i, j) -> (B, i)
        beta[t] = np.where((t + 1 < lengths)[:, None], new, f)
    return beta


def path_score(e: np.ndarray, y: np.ndarray, lengths: np.ndarray, A: np.ndarray, s: np.ndarray,
               f: np.ndarray) -> np.ndarray:
    """score(x, y) of each sentence -> (B,); y (T,B) int tags (padding: any tag id)."""
    B = e.shape[1]
    b = np.arange(B)
    score = s[y[0]] + e[0, b, y[0]]
    for t in range(1, e.shape[0]):                              # added in time order: no padding
        score = score + np.where(t < lengths, A[y[t - 1], y[t]] + e[t, b, y[t]], 0)
    return score + f[y[lengths - 1, b]]


def forbidden(y: np.ndarray, lengths: np.ndarray, constraints) -> np.ndarray:
    """(B,) bool: the tags y (T,B) of a sentence take a step `constraints` forbid."""
    if constraints is None:
        return np.zeros(len(lengths), dtype=bool)
    allowed, first, last = (np.asarray(c, dtype=bool) for c in constraints)
    real = np.arange(1, y.shape[0])[:, None] < lengths                 # (T-1, B): the step into t
    bad = (real & ~allowed[y[:-1], y[1:]]).any(axis=0)
    return bad | ~first[y[0]] | ~last[y[lengths - 1, np.arange(len(lengths))]]


def crf_loss(e: np.ndarray, y: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray,
             end: np.ndarray, constraints=None):
    """Negative log-likelihood of each sentence's tags.

    e (T,B,K) emission scores, y (T,B) int gold tags (padding: any tag id), lengths (B,) >= 1,
    trans (K,K), start (K,), end (K,), constraints as in `scores` (the gold paths must be allowed:
    see `forbidden`; a forbidden one has the loss +∞).
    -> (nll (B,) = log Z − score(x, y), cache for `crf_loss_backward`).
    """
    A, s, f = scores(trans, start, end, constraints)
    alpha = forward(e, lengths, A, s)
    log_z = logsumexp(alpha[-1] + f)                            # α<T> = α<Ty> for every sentence
    return log_z - path_score(e, y, lengths, A, s, f), (e, y, lengths, A, f, alpha, log_z)


def crf_loss_backward(dnll: np.ndarray, cache):
    """dnll (B,) the weight of each sentence's loss -> (de (T,B,K), dtrans (K,K), dstart (K,), dend (K,)).

    de<t>[j] = w (P(y<t> = j) − [y<t> = j]) at real positions, 0 at padding; dtrans sums over the
    sentences w Σ_{t≥2} (P(y<t-1> = i, y<t> = j) − [y<t-1> = i, y<t> = j]), accumulated per sentence
    over time first; dstart, dend likewise with the first and the last tag. Forbidden entries get 0.
    """
    e, y, lengths, A, f, alpha, log_z = cache
    T, B, K = e.shape
    b = np.arange(B)
    w = np.asarray(dnll, dtype=e.dtype)
    beta = backward(e, lengths, A, f)
    gold = np.eye(K, dtype=e.dtype)[y]                                        # [y<t> = j] (T,B,K)
    unary = np.exp(alpha + beta - log_z[:, None]) - gold                      # P(y<t> = j) − [y<t> = j]
    real = (np.arange(T)[:, None] < lengths)[..., None]                       # (T,B,1)
    de = np.where(real, unary * w[:, None], 0)
    pairs = np.zeros((B, K, K), dtype=e.dtype)                                # per sentence, summed over t
    for t in range(1, T):
        p = np.exp(alpha[t - 1][:, :, None] + A + (e[t] + beta[t])[:, None, :] - log_z[:, None, None])
        p[b, y[t - 1], y[t]] -= 1
        pairs += np.where(real[t][:, :, None], p, 0)
    dtrans = (pairs * w[:, None, None]).sum(axis=0)
    dstart = (unary[0] * w[:, None]).sum(axis=0)
    dend = (unary[lengths - 1, b] * w[:, None]).sum(axis=0)
    return de, dtrans, dstart, dend


def log_marginals(e: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray,
                  constraints=None) -> np.ndarray:
    """log P(y<t> = j | x) = α<t>[j] + β<t>[j] − log Z -> (T,B,K) (padding rows meaningless)."""
    A, s, f = scores(trans, start, end, constraints)
    alpha = forward(e, lengths, A, s)
    log_z = logsumexp(alpha[-1] + f)
    return alpha + backward(e, lengths, A, f) - log_z[:, None]


def viterbi(e: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray,
            constraints=None):
    """The best tag sequence of each sentence: -> (paths (T,B) int64, best scores (B,)).

    paths[:Ty, b] maximises score(x, y) among the allowed sequences (ties: the lowest tag id
    first); past the end it repeats the last tag. A best score of −∞: no sequence is allowed.

        δ<1>[j] = s[j] + e<1>[j]
        δ<t>[j] = e<t>[j] + max_i (δ<t-1>[i] + A[i, j]),   ψ<t>[j] = that argmax i
        y<Ty> = argmax_j (δ<Ty>[j] + f[j]),   y<t-1> = ψ<t>[y<t>]
    """
    A, s, f = scores(trans, start, end, constraints)
    T, B, K = e.shape
    b, tags = np.arange(B), np.arange(K)
    delta = s + e[0]
    psi = np.empty((T, B, K), dtype=np.int64)
    psi[0] = tags
    At = A.T
    for t in range(1, T):
        cand = delta[:, None, :] + At                           # (B, j, i)
        best = cand.argmax(axis=-1)                             # ψ<t> (B, j)
        real = (t < lengths)[:, None]
        delta = np.where(real, np.take_along_axis(cand, best[..., None], -1)[..., 0] + e[t], delta)
        psi[t] = np.where(real, best, tags)
    final = delta + f
    paths = np.empty((T, B), dtype=np.int64)
    paths[-1] = final.argmax(axis=-1)
    for t in range(T - 1, 0, -1):
        paths[t - 1] = psi[t, b, paths[t]]
    return paths, final[b, paths[-1]]
