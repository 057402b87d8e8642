"""Sampling novel sequences from a trained language model.

The seed's procedure: start from a<0> = 0, compute the softmax over the vocabulary, draw a
token y^<t>, feed it back as x^<t+1>, repeat until <EOS> (or a length limit). Here:

* Start context. Lines-mode models see `<EOS>` first (the training stream is EOS-separated
  sentences, so <EOS> is the start symbol), then the prime tokens. Stream-mode models see a "\\n"
  first when "\\n" is in the vocabulary (a text starts as if after a line break; the same
  convention as scoring), then the prime. A stream-mode model with neither a "\\n" token nor a
  prime draws its first token from the training unigram counts (`vocab.counts`).
* `<UNK>` is never emitted: its probability is set to zero and the rest renormalised (the seed's
  "re-sample until not <UNK>", done exactly in one draw). Stream-mode models never saw <EOS>, so it
  is excluded for them too and they write running text up to `length` tokens.
* Temperature T: p ∝ exp(logit / T); T = 0 means greedy (argmax). top-k keeps the k likeliest
  tokens (np.argpartition); top-p keeps the smallest set of likeliest tokens whose probability
  reaches p (one sort per step, only when asked).
* The draw is one vectorised inverse-CDF step for the whole batch: cumulative sums of the
  (unnormalised) probabilities, one uniform u per row, the first index where cumsum > u * total.

Nothing here prints; `on_token` lets the CLI stream tokens as they are generated.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from charlm.errors import UsageError
from charlm.scoring import NEWLINE, tokenizer_mode

TokenCallback = Callable[[int, np.ndarray, np.ndarray], None]


def check_options(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  length: int = 1, num: int = 1) -> None:
    """Raise UsageError for an option value out of range."""
    if not 0.0 <= temperature < float("inf"):  # also rejects nan and inf
        raise UsageError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top-k must be at least 1, got {top_k}")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise UsageError(f"top-p must be in (0, 1], got {top_p}")
    if length < 1:
        raise UsageError(f"length must be at least 1, got {length}")
    if num < 1:
        raise UsageError(f"num must be at least 1, got {num}")


class Drawer:
    """Draws one token id per row from logits (B, V), with its buffers allocated once.

    The per-step work for the whole batch (no Python loop over rows):
        z = logits + bias            bias: 0, or -inf for banned ids (<UNK>, ...)
        z = (z - max z) / T;  p = exp(z)                         (B, V) unnormalised
        [top-k: zero all but the k largest p (np.argpartition)]
        [top-p: zero the tail beyond mass top_p (one sort, only when asked)]
        cdf = cumsum(p);  u ~ U[0, 1) * cdf[-1];  id = first index with cdf > u
    Temperature 0 is argmax over the allowed ids. One rng.random(B) call per step.
    """

    def __init__(self, B: int, V: int, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 banned: Sequence[int] = ()):
        self.rng = rng
        self.greedy = temperature == 0.0
        self.inv_t = None if temperature in (0.0, 1.0) else 1.0 / temperature
        self.top_k = top_k if top_k is not None and top_k < V else None
        self.top_p = top_p if top_p is not None and top_p < 1.0 else None
        self.bias = np.zeros(V)                   # (V,) float64
        self.bias[list(banned)] = -np.inf
        self.z = np.empty((B, V))                 # logits, then probabilities
        self.cdf = np.empty((B, V))
        self.u = np.empty(B)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """logits (B, V) -> ids (B,) int64."""
        z = self.z
        np.add(logits, self.bias, out=z)
        if self.greedy:
            return np.argmax(z, axis=1)
        if self.inv_t is not None:
            z *= self.inv_t
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z, out=z)                      # (B, V), 0 for banned ids
        if self.top_k is not None:
            keep = np.argpartition(p, -self.top_k, axis=1)[:, -self.top_k:]  # (B, k) largest
            kept = np.take_along_axis(p, keep, axis=1)
            p[:] = 0.0
            np.put_along_axis(p, keep, kept, axis=1)
        if self.top_p is not None:
            order = np.argsort(-p, axis=1, kind="stable")    # (B, V) likeliest first
            sp = np.take_along_axis(p, order, axis=1)
            cs = np.cumsum(sp, axis=1)
            # keep a token while the mass before it is short of top_p (the first always is)
            sp[(cs - sp) >= self.top_p * cs[:, -1:]] = 0.0
            np.put_along_axis(p, order, sp, axis=1)
        cdf = np.cumsum(p, axis=1, out=self.cdf)
        u = self.rng.random(out=self.u)
        u *= cdf[:, -1]
        ids = np.argmax(cdf > u[:, None], axis=1)
        bad = ~(cdf[:, -1] > u)  # u rounded up to the total: take the last id with p > 0
        if bad.any():
            ids[bad] = p.shape[1] - 1 - np.argmax(p[bad, ::-1] > 0, axis=1)
        return ids


def draw(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
         top_k: int | None = None, top_p: float | None = None,
         banned: Sequence[int] = ()) -> np.ndarray:
    """Draw one token id per row from logits (B, V) -> ids (B,) int64 (see `Drawer`)."""
    B, V = np.shape(logits)
    return Drawer(B, V, rng, temperature, top_k, top_p, banned)(logits)


def _repeat_state(state, n: int):
    """Tile a batch-1 state (list over layers of tuples of (1, H)) to batch n."""
    return [tuple(np.repeat(s, n, axis=0) for s in layer) for layer in state]


def sample(model, vocab, *, num: int = 1, length: int = 200, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None,
           prime: Sequence[str] = (), rng: np.random.Generator | None = None,
           on_token: TokenCallback | None = None) -> list[list[str]]:
    """Generate `num` samples together as one batch; returns their tokens (prime excluded).

    prime: tokens fed before sampling (out-of-vocabulary ones become <UNK>).
    length: the maximum number of generated tokens per sample (<EOS> ends a sample early in lines
      mode and is not included).
    on_token(t, ids (B,), emitted (B,) bool): called after step t's draw; emitted[b] says ids[b]
      is a real new token of sample b (False once the sample ended).
    Same rng state, same samples.
    """
    check_options(temperature, top_k, top_p, length, num)
    rng = rng if rng is not None else np.random.default_rng()
    mode = tokenizer_mode(vocab)
    eos, unk = vocab.eos_id, vocab.unk_id
    banned = [unk] if mode == "lines" else [unk, eos]
    if len(vocab) <= len(banned):
        raise UsageError("the model's vocabulary has no tokens to sample")

    # the context fed before the first draw: start symbol + prime
    start = [eos] if mode == "lines" else ([vocab.index[NEWLINE]] if NEWLINE in vocab.index else [])
    context = start + [int(i) for i in vocab.encode(list(prime))]
    out = np.empty((length, num), dtype=np.int64)  # (length, B) generated ids
    state1 = model.init_state(1)
    if context:
        x = np.asarray(context, dtype=np.int64)[:, None]  # (T, 1)
        logp, state1 = model.log_probs(x, state1)  # (T, 1, V)
        logits = np.repeat(np.asarray(logp)[-1], num, axis=0)  # (B, V); log-softmax ~ logits
        state = _repeat_state(state1, num)
    else:  # stream mode, no "\n", no prime: first token from the unigram counts
        counts = np.asarray(vocab.counts, dtype=np.float64).copy()
        counts[banned] = 0.0
        if counts.sum() <= 0:
            counts[:] = 1.0
            counts[banned] = 0.0
        with np.errstate(divide="ignore"):
            logits = np.repeat(np.log(counts)[None, :], num, axis=0)  # log of 0 -> -inf
        state = model.init_state(num)

    drawer = Drawer(num, len(vocab), rng, temperature, top_k, top_p, banned)
    stop_at_eos = mode == "lines"
    alive = np.ones(num, dtype=bool)
    ends = np.full(num, length)  # number of generated tokens per sample
    for t in range(length):
        ids = drawer(logits)  # (B,) y^<t>
        out[t] = ids
        if stop_at_eos:
            ended = alive & (ids == eos)
            if on_token is not None:
                on_token(t, ids, alive & ~ended)
            if ended.any():
                ends[ended] = t
                alive &= ~ended
                if not alive.any():
                    break
        elif on_token is not None:
            on_token(t, ids, alive)
        if t + 1 < length:
            logits, state = model.step(ids, state)  # x<t+1> = y^<t>
    return [vocab.decode(out[:ends[b], b].tolist()) for b in range(num)]
