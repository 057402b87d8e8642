"""Decoding a sequence-to-sequence model: greedy and beam search, batched over sources and hypotheses.

An output for a source x is a token sequence y<1..n> ended by <EOS>, with its log-probability

    log P(y<1..n>, <EOS> | x) = Σ_{t=1..n+1} log ŷ<t>[y<t>]         (nats; the last term is <EOS>'s)

and its score logprob / (n+1)^α (α = `length_penalty`, default 0: the most probable output wins; the
length counts the <EOS>, as in charlm.lm.beam). Each step feeds the last token of every hypothesis of
every source through one `model.step` (R = sources × beam rows, widened to whole row blocks).

Greedy: y<t> = argmax ŷ<t> until <EOS>. Beam search (width K), for each source, the rule of the
language model's beam search (charlm.lm.beam):

    total[k, v] = logprob[k] + log ŷ<t>[v]        (K, V) over the source's live hypotheses k
    the 2K best (k, v), best first (ties: lower k, then lower v):
      (k, <EOS>) finishes a hypothesis if it ranks among the K best, else it is dropped;
      the K best other pairs are the next beam.
    the source stops after `max_length` tokens, or as soon as its N-th best finished score is at
    least what any live hypothesis could still reach (logprob / max_length^α, α >= 0).

With K = 1 this is the greedy path exactly (and `greedy` gives the same numbers, bit for bit).
<UNK> is never emitted. `max_length` defaults to MAX_LENGTH_A · Tx + MAX_LENGTH_B tokens for a source
of Tx tokens. Finished outputs rank before those cut at the length limit. Deterministic.

Every output carries its attention matrix α<t,t'> (one row per output step, <EOS>'s last; one column
per real source step), or None for a model without attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import UsageError
from charlm.nn.padded import widen
from charlm.seq2seq.network import EOS, START, UNK

__all__ = ["Translation", "check_options", "greedy", "beam_search", "max_lengths", "MAX_LENGTH_A", "MAX_LENGTH_B"]

MAX_LENGTH_A, MAX_LENGTH_B = 2, 10   # default max_length = 2·Tx + 10 output tokens


@dataclass
class Translation:
    """One output: ids y<1..n> (no <EOS>), logprob (nats, <EOS>'s term included when stop == "eos"),
    score = logprob / steps^α, stop "eos" or "length", attention (steps, Tx) float or None; steps =
    n + 1 for "eos", n for "length"."""

    ids: list[int]
    logprob: float
    score: float
    stop: str
    attention: np.ndarray | None = None


def max_lengths(lengths, max_length: int | None) -> np.ndarray:
    """Output tokens allowed per source: `max_length`, or MAX_LENGTH_A · Tx + MAX_LENGTH_B."""
    lengths = np.asarray(lengths)
    if max_length is not None:
        return np.full(lengths.shape, int(max_length))
    return MAX_LENGTH_A * lengths + MAX_LENGTH_B


def check_options(beam: int = 1, nbest: int = 1, max_length: int | None = None,
                  length_penalty: float = 0.0) -> None:
    """UsageError for a beam width, n-best, maximum length or length penalty out of range."""
    if beam < 1:
        raise UsageError(f"beam width must be at least 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise UsageError(f"nbest must be between 1 and the beam width {beam}, got {nbest}")
    if max_length is not None and max_length < 1:
        raise UsageError(f"max length must be at least 1, got {max_length}")
    if not 0.0 <= length_penalty < float("inf"):
        raise UsageError(f"length penalty must be a finite number >= 0, got {length_penalty}")


def _attention(steps: list, Tx: int) -> np.ndarray | None:
    """The α<t> columns of one output -> (steps, Tx) over the real source steps."""
    return None if not steps or steps[0] is None else np.stack([col[:Tx] for col in steps])


def _step(model, ids, state, memory):
    """model.step with <UNK> banned: -> (log ŷ (R,V), state, α (Tx,R) or None)."""
    logp, state, alpha = model.step(np.asarray(ids, dtype=np.int64), state, memory)
    logp[:, UNK] = -np.inf
    return logp, state, alpha


def _col(alpha, r):
    return None if alpha is None else alpha[:, r]


def greedy(model, sources, max_length: int | None = None) -> list[Translation]:
    """The greedy output of each source (B 1-D int arrays of source ids), all decoded as one batch."""
    check_options(max_length=max_length)
    if len(sources) == 0:
        return []
    memory, state, B = model.encode(sources)
    limits = max_lengths(memory.lengths[:B], max_length)
    ids = np.full(memory.a.shape[1], START, dtype=np.int64)
    out = [Translation([], 0.0, 0.0, "") for _ in range(B)]
    steps: list[list] = [[] for _ in range(B)]
    live = list(range(B))
    for t in range(int(limits.max())):
        logp, state, alpha = _step(model, ids, state, memory)
        ids = logp.argmax(axis=1)                                   # y<t> = argmax ŷ<t>
        still = []
        for b in live:
            tr, v = out[b], int(ids[b])
            tr.logprob = tr.logprob + float(logp[b, v])
            steps[b].append(_col(alpha, b))
            if v == EOS:
                tr.stop = "eos"
                continue
            tr.ids.append(v)
            if t + 1 == limits[b]:
                tr.stop = "length"
                continue
            still.append(b)
        live = still
        if not live:
            break
    for b, tr in enumerate(out):
        tr.score = tr.logprob
        tr.attention = _attention(steps[b], int(memory.lengths[b]))
    return out


@dataclass
class _Hyp:
    ids: list
    logprob: float
    n: int          # steps scored (+1 for a final <EOS>)
    stop: str
    steps: list     # α<t> columns


def beam_search(model, sources, beam: int = 4, nbest: int = 1, length_penalty: float = 0.0,
                max_length: int | None = None) -> list[list[Translation]]:
    """The `nbest` best outputs of each source (best first) found with beam width `beam`; all
    sources are decoded together (see the module docstring)."""
    check_options(beam, nbest, max_length, length_penalty)
    if len(sources) == 0:
        return []
    K, alpha_ = beam, length_penalty
    memory, state0, B = model.encode(sources)
    limits = max_lengths(memory.lengths[:B], max_length)
    rows = np.zeros(widen(B * K), dtype=np.int64)
    rows[:B * K] = np.repeat(np.arange(B), K)                       # row b·K + k: hypothesis k of source b
    memory = memory.take(rows)
    state = [tuple(s[rows] for s in layer) for layer in state0]
    R = len(rows)
    ids = np.full(R, START, dtype=np.int64)
    logprob = np.full(R, -np.inf)
    logprob[::K][:B] = 0.0                                          # one live hypothesis per source at first
    hyps: list = [[] for _ in range(R)]
    steps: list = [[] for _ in range(R)]
    finished: list[list[_Hyp]] = [[] for _ in range(B)]
    active = list(range(B))

    def score(h: _Hyp) -> float:
        return h.logprob / h.n ** alpha_ if h.n else h.logprob

    for t in range(int(limits.max())):
        logp, state, alpha = _step(model, ids, state, memory)
        V = logp.shape[1]
        total = (logprob[:, None] + logp)[:B * K].reshape(B, K * V)   # total[b, k·V + v]
        m = min(2 * K, K * V)
        top = np.sort(np.argpartition(-total, m - 1, axis=1)[:, :m], axis=1)
        vals = np.take_along_axis(total, top, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")             # best first, ties by index
        top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
        parents = np.arange(R)
        still = []
        for b in active:
            new = []                                                 # (parent row, id, logprob)
            for rank in range(m):
                s = float(vals[b, rank])
                if s == -np.inf or (len(new) == K and rank >= K):
                    break
                k, v = divmod(int(top[b, rank]), V)
                r = b * K + k
                if v == EOS:
                    if rank < K:
                        finished[b].append(_Hyp(hyps[r], s, t + 1, "eos", steps[r] + [_col(alpha, r)]))
                    continue
                if len(new) < K:
                    new.append((r, v, s))
            base = b * K
            for j in range(K):                                       # the next beam, dead rows after it
                r, v, s = new[j] if j < len(new) else (base, EOS, -np.inf)
                parents[base + j], ids[base + j], logprob[base + j] = r, v, s
            old_hyps, old_steps = hyps[base:base + K], steps[base:base + K]
            for j, (r, v, s) in enumerate(new):
                hyps[base + j] = old_hyps[r - base] + [v]
                steps[base + j] = old_steps[r - base] + [_col(alpha, r)]
            if not new:
                continue
            if t + 1 == limits[b]:
                finished[b] += [_Hyp(hyps[base + j], new[j][2], int(limits[b]), "length", steps[base + j])
                                for j in range(len(new))]
                continue
            if len(finished[b]) >= nbest:
                kth = sorted((score(h) for h in finished[b]), reverse=True)[nbest - 1]
                if kth >= max(s for _, _, s in new) / float(limits[b]) ** alpha_:
                    continue
            still.append(b)
        active = still
        for b in set(range(B)) - set(active):                        # finished sources: no live rows
            logprob[b * K:(b + 1) * K] = -np.inf
        if not active:
            break
        state = [tuple(s[parents] for s in layer) for layer in state]

    out = []
    for b in range(B):
        done = sorted((h for h in finished[b] if h.stop == "eos"), key=score, reverse=True)
        cut = sorted((h for h in finished[b] if h.stop == "length"), key=score, reverse=True)
        out.append([Translation(list(h.ids), h.logprob, score(h), h.stop,
                                _attention(h.steps, int(memory.lengths[b * K])))
                    for h in (done + cut)[:nbest]])
    return out
