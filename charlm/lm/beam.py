"""Beam search: the most probable continuations of a prime, K hypotheses decoded as one batch.

A hypothesis is a list of generated tokens y<1>..y<n> with its log-probability under the model,

    log P(y<1..n> | prime) = sum_t log p(y<t> | prime, y<1>..y<t-1>)      (nats)

and its score logprob / n^α (α = `length_penalty`, default 0: the most probable sequence wins;
n counts the final <EOS> of a finished hypothesis, as scoring does). Each step:

    total[k, v] = logprob[k] + log p(v | hypothesis k)          (K, V), banned ids -inf
    the 2K best (k, v) pairs, best first (ties: lower k, then lower v):
      - (k, <EOS>) in a lines-mode model, or an extension whose generated text contains a stop
        string, finishes a hypothesis if it ranks among the K best; otherwise it is dropped;
      - the K best other pairs are the next beam (fewer when fewer are finite).
    the beam's ids (K,) go through one `model.step` with its states gathered from the parents.

Search stops after `length` tokens, when no hypothesis is alive, or as soon as the N-th best
finished score is at least what any live hypothesis could still reach: its log-probability only
falls, and with α ≥ 0 its best possible score is logprob / length^α. So the result is exact for
what the beam kept, and with K = 1 it is the greedy path (`--temperature 0`). Finished
hypotheses rank before those cut off by `length`. <UNK> is never emitted, nor <EOS> by a
stream-mode model (as in sampling). Deterministic: no random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from charlm.errors import UsageError
from charlm.lm.generate import (
    Prime,
    check_stop_at,
    context_log_probs,
    default_length,
    hits_stop,
    repeat_state,
)
from charlm.lm.scoring import tokenizer_mode
from charlm.nn.layers import log_softmax
from charlm.text.tokenizer import Tokenizer


@dataclass
class Candidate:
    """One continuation found by beam search.

    text: the prime's text followed by the continuation; tokens: the generated tokens (no <EOS>);
    logprob: natural log of P(tokens [, <EOS>] | prime); score: logprob / length^α;
    stop: "eos", "stop-at" or "length" (cut off at the length limit).
    """

    index: int
    prime: str
    text: str
    tokens: list[str]
    logprob: float
    score: float
    stop: str

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        """The record `charlm sample --beam K --json` prints."""
        return {"candidate": self.index, "prime": self.prime, "text": self.text,
                "tokens": list(self.tokens), "logprob": self.logprob, "score": self.score,
                "stop": self.stop}


def check_beam_options(beam: int, nbest: int, length: int, length_penalty: float) -> None:
    """Raise UsageError for a beam width, n-best, length or length penalty out of range."""
    if beam < 1:
        raise UsageError(f"beam width must be at least 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise UsageError(f"nbest must be between 1 and the beam width {beam}, got {nbest}")
    if length < 1:
        raise UsageError(f"length must be at least 1, got {length}")
    if not 0.0 <= length_penalty < float("inf"):
        raise UsageError(f"length penalty must be a finite number >= 0, got {length_penalty}")


@dataclass
class _Hyp:
    ids: list[int]
    logprob: float
    n: int        # tokens scored: generated tokens (+ 1 for a final <EOS>)
    stop: str


def search(model, vocab, tokenizer: Tokenizer, prime: Prime, *, beam: int = 5, nbest: int = 1,
           length: int | None = None, length_penalty: float = 0.0,
           stop_at: Sequence[str] = ()) -> list[Candidate]:
    """The `nbest` best continuations of `prime` found with beam width `beam` (best first)."""
    length = default_length(vocab) if length is None else length
    check_beam_options(beam, nbest, length, length_penalty)
    stops = check_stop_at(stop_at)
    lines = tokenizer_mode(vocab) == "lines"
    eos, V, K = vocab.eos_id, len(vocab), beam
    ban = np.zeros(V)                                       # (V,) 0, or -inf for banned ids
    ban[[vocab.unk_id] if lines else [vocab.unk_id, eos]] = -np.inf
    if not np.isfinite(ban).any():
        raise UsageError("the model's vocabulary has no tokens to generate")

    logp0, state1 = context_log_probs(model, vocab, prime.context_ids(vocab))  # (V,)
    state = repeat_state(state1, K)
    logp = np.repeat(logp0[None, :], K, axis=0)             # (K, V) log p(v | hypothesis k)
    logprob = np.full(K, -np.inf)                           # (K,) only row 0 lives at first
    logprob[0] = 0.0
    hyps: list[list[int]] = [[] for _ in range(K)]
    finished: list[_Hyp] = []

    def score(h: _Hyp) -> float:
        return h.logprob / h.n ** length_penalty if h.n else h.logprob

    for t in range(length):
        total = (logprob[:, None] + logp + ban).ravel()      # (K*V,)
        m = min(2 * K, total.size)
        top = np.argpartition(-total, m - 1)[:m] if m < total.size else np.arange(total.size)
        top = top[np.lexsort((top, -total[top]))]           # best first, ties by index
        parents, ids, new_hyps, new_logprob = [], [], [], []
        for rank, f in enumerate(top.tolist()):
            s = float(total[f])
            if s == -np.inf or (len(ids) == K and rank >= K):
                break
            k, v = divmod(f, V)
            if lines and v == eos:
                if rank < K:
                    finished.append(_Hyp(hyps[k], s, t + 1, "eos"))
                continue
            seq = hyps[k] + [v]
            if stops and hits_stop(tokenizer, vocab.decode(seq[-max(map(len, stops)) - 1:]), stops):
                if rank < K:
                    finished.append(_Hyp(seq, s, t + 1, "stop-at"))
                continue
            if len(ids) < K:
                parents.append(k)
                ids.append(v)
                new_hyps.append(seq)
                new_logprob.append(s)
        if not ids:
            break
        n_live = len(ids)
        pad = K - n_live                                    # dead rows: any id, -inf logprob
        parents += [parents[0]] * pad
        ids += [ids[0]] * pad
        hyps = new_hyps + [[] for _ in range(pad)]
        logprob = np.array(new_logprob + [-np.inf] * pad)
        if len(finished) >= nbest:
            kth = sorted((score(h) for h in finished), reverse=True)[nbest - 1]
            if kth >= logprob.max() / length ** length_penalty:
                break
        if t + 1 == length:
            finished += [_Hyp(hyps[k], float(logprob[k]), length, "length") for k in range(n_live)]
            break
        rows = np.asarray(parents)
        state = [tuple(s[rows] for s in layer) for layer in state]
        logits, state = model.step(np.asarray(ids, dtype=np.int64), state)   # (K, V)
        logp = log_softmax(np.asarray(logits, dtype=np.float64).copy())

    done = sorted((h for h in finished if h.stop != "length"), key=score, reverse=True)
    cut = sorted((h for h in finished if h.stop == "length"), key=score, reverse=True)
    out = []
    for i, h in enumerate((done + cut)[:nbest]):
        tokens = vocab.decode(h.ids)
        out.append(Candidate(i, prime.text, prime.continued(tokenizer, tokens), tokens,
                             h.logprob, score(h), h.stop))
    return out

