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

* Stop strings: with `stop_at`, a sample also ends with the token that completes one of the
  strings in its generated text (the prime is not searched).
* Priming text (`Prime`): a lines-mode model reads each complete line of the prime as a sentence
  followed by `<EOS>`; the last line, if it does not end with a newline, is the sentence the sample
  continues. A stream-mode model reads the prime as running text ("\\n" tokens included).

`sample` returns token lists; `samples` returns `Sample` records (text, tokens, why it stopped),
which is what the Python API returns and `charlm sample` prints. The first distribution of every
decoder here (sampling, beam search, `next_token_log_probs`) comes from `context_log_probs`.
Nothing here prints; `on_token` lets the CLI stream tokens as they are generated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from charlm.errors import DataError, UsageError
from charlm.lm.scoring import is_char_level, start_id, tokenizer_mode
from charlm.nn.layers import log_softmax
from charlm.text.reader import read_text
from charlm.text.tokenizer import Tokenizer
from charlm.text.vocab import EOS

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


def repeat_state(state, n: int):
    """Tile a batch-1 state (list over layers of tuples of (1, H)) to batch n."""
    return [tuple(np.repeat(s, n, axis=0) for s in layer) for layer in state]


def default_length(vocab) -> int:
    """Tokens generated when no length is given: 200 characters or 50 words."""
    return 200 if is_char_level(vocab) else 50


def check_stop_at(stop_at: Sequence[str]) -> list[str]:
    """The stop strings as a list; UsageError for an empty one (it would stop at once)."""
    stops = [stop_at] if isinstance(stop_at, str) else list(stop_at)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise UsageError(f"a stop string must be a non-empty string, got {s!r}")
    return stops


def hits_stop(tokenizer: Tokenizer, tokens: Sequence[str], stops: Sequence[str]) -> bool:
    """Does the text of `tokens` contain a stop string that ends in its last token?

    Every token is at least one character, so such an occurrence lies in the text of the last
    len(stop) + 1 tokens (the extra one covers a separator the detokenizer puts between them).
    """
    return any(s in tokenizer.detokenize(tokens[-(len(s) + 1):]) for s in stops)


# -- the context before the first generated token ---------------------------------------------

@dataclass
class Prime:
    """Priming text as a model reads it.

    tokens: what is fed after the start symbol (lines mode: "<EOS>" after each complete line);
    text:   the prime as printed before a continuation (the tokens detokenized, line by line);
    head, cut: `head` is the text of the complete lines (lines mode), `tokens[cut:]` the line
            a continuation extends.
    """

    tokens: list[str]
    text: str
    head: str = ""
    cut: int = 0

    @classmethod
    def from_text(cls, tokenizer: Tokenizer, text: str) -> "Prime":
        if tokenizer.config.mode != "lines":
            tokens = tokenizer.tokenize(text)
            return cls(tokens, tokenizer.detokenize(tokens))
        *complete, last = text.replace("\r\n", "\n").split("\n")
        tokens: list[str] = []
        head = ""
        for line in complete:
            line_tokens = tokenizer.tokenize(line)
            if line_tokens:  # blank lines are not sentences (as in a corpus)
                tokens += line_tokens + [EOS]
                head += tokenizer.detokenize(line_tokens) + "\n"
        cut = len(tokens)
        tokens += tokenizer.tokenize(last)
        return cls(tokens, head + tokenizer.detokenize(tokens[cut:]), head, cut)

    def unknown(self, vocab) -> list[str]:
        """The prime's tokens the vocabulary does not know (they are read as <UNK>)."""
        return [t for t in self.tokens if t not in vocab.index]

    def context_ids(self, vocab) -> list[int]:
        """Start symbol + prime, as ids: lines mode [EOS, ...]; stream mode ["\\n", ...] when
        the vocabulary has a newline, else the prime alone (the scoring conventions)."""
        start = start_id(vocab, tokenizer_mode(vocab))
        return ([] if start is None else [start]) + [int(i) for i in vocab.encode(self.tokens)]

    def continued(self, tokenizer: Tokenizer, tokens: Sequence[str]) -> str:
        """The prime's text followed by the generated `tokens` (joined as the tokenizer does)."""
        return self.head + tokenizer.detokenize(self.tokens[self.cut:] + list(tokens))


def context_log_probs(model, vocab, context: Sequence[int]):
    """log P(next token | context) (V,) float64 and the state after the context (batch 1).

    The context is read with one `target_log_probs` pass over all but its last id (chunked,
    so a long prime never makes a (T, V) array) and one `model.step` on the last. An empty
    context (stream mode, no "\\n" in the vocabulary, no prime) gives the training unigram
    distribution `vocab.counts` (log 0 = -inf for tokens never seen) and the zero state.
    """
    state = model.init_state(1)
    if not context:
        counts = np.asarray(vocab.counts, dtype=np.float64)
        total = counts.sum()
        if total <= 0:
            counts, total = np.ones(len(vocab)), float(len(vocab))
        with np.errstate(divide="ignore"):
            return np.log(counts / total), state
    ids = np.asarray(context, dtype=np.int64)
    if len(ids) > 1:
        _, state = model.target_log_probs(ids[:-1, None], ids[1:, None], state)
    logits, state = model.step(ids[-1:], state)               # (1, V)
    return log_softmax(np.asarray(logits, dtype=np.float64)[0].copy()), state


def next_tokens(model, vocab, prime: Prime, k: int = 10) -> list[tuple[str, float]]:
    """The k likeliest next tokens after the prime with their log-probabilities, likeliest first
    (ties: lower id first): log P(y<t> | y<1>, ..., y<t-1>) over the whole vocabulary."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"k must be a whole number >= 1, got {k!r}")
    logp = context_log_probs(model, vocab, prime.context_ids(vocab))[0]     # (V,)
    ids = np.arange(len(logp))
    if k < len(logp):
        ids = np.argpartition(-logp, k - 1)[:k]              # the k largest, in any order
    order = ids[np.lexsort((ids, -logp[ids]))]
    return [(vocab.tokens[i], float(logp[i])) for i in order.tolist()]


def next_record(prefix: str, best: Sequence[tuple[str, float]]) -> dict:
    """The record `charlm next --json` prints for `next_tokens`' result `best`:
    {"prefix", "next": [{"token", "prob", "logprob"}, ...]}, likeliest first."""
    return {"prefix": prefix, "next": [{"token": tok, "prob": math.exp(lp), "logprob": lp} for tok, lp in best]}


def read_prime_file(path) -> str:
    """The whole text of a priming file (UTF-8; "-" is stdin). DataError for a missing,
    unreadable, binary or non-UTF-8 file."""
    try:
        return "".join(read_text(os.fspath(path)))
    except DataError as err:
        raise DataError(f"prime file: {err}") from None


# -- sampling ---------------------------------------------------------------------------------

def sample(model, vocab, *, num: int = 1, length: int = 200, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None,
           prime: Sequence[str] = (), rng: np.random.Generator | None = None,
           on_token: TokenCallback | None = None,
           stop_at: Sequence[str] = ()) -> list[list[str]]:
    """Generate `num` samples together as one batch; returns their tokens (prime excluded).

    prime: tokens fed before sampling (out-of-vocabulary ones become <UNK>).
    length: the maximum number of generated tokens per sample (<EOS> ends a sample early in lines
      mode and is not included).
    stop_at: strings that end a sample with the token that completes one of them.
    on_token(t, ids (B,), emitted (B,) bool): called after step t's draw; emitted[b] says ids[b]
      is a real new token of sample b (False once the sample ended).
    Same rng state, same samples.
    """
    check_options(temperature, top_k, top_p, length, num)
    stops = check_stop_at(stop_at)
    rng = rng if rng is not None else np.random.default_rng()
    mode = tokenizer_mode(vocab)
    eos, unk = vocab.eos_id, vocab.unk_id
    banned = [unk] if mode == "lines" else [unk, eos]
    if len(vocab) <= len(banned):
        raise UsageError("the model's vocabulary has no tokens to sample")

    context = Prime(list(prime), "").context_ids(vocab)
    logp, state1 = context_log_probs(model, vocab, context)     # (V,) float64
    logits = np.repeat(logp[None, :], num, axis=0)                 # (B, V); log-softmax ~ logits
    state = repeat_state(state1, num)
    out = np.empty((length, num), dtype=np.int64)  # (length, B) generated ids
    drawer = Drawer(num, len(vocab), rng, temperature, top_k, top_p, banned)
    tokenizer = Tokenizer(vocab.tokenizer) if stops else None
    generated: list[list[str]] = [[] for _ in range(num)]          # kept only with stop strings
    stop_at_eos = mode == "lines"
    alive = np.ones(num, dtype=bool)
    ends = np.full(num, length)  # number of generated tokens per sample
    for t in range(length):
        ids = drawer(logits)  # (B,) y^<t>
        out[t] = ids
        ended = alive & (ids == eos) if stop_at_eos else np.zeros(num, dtype=bool)
        emitted = alive & ~ended
        stopped = np.zeros(num, dtype=bool)
        if stops:
            for b in np.flatnonzero(emitted):
                generated[b].append(vocab.tokens[ids[b]])
                stopped[b] = hits_stop(tokenizer, generated[b], stops)
        if on_token is not None:
            on_token(t, ids, emitted)
        if ended.any() or stopped.any():
            ends[ended] = t
            ends[stopped] = t + 1  # the completing token is part of the sample
            alive &= ~(ended | stopped)
            if not alive.any():
                break
        if t + 1 < length:
            logits, state = model.step(ids, state)  # x<t+1> = y^<t>
    return [vocab.decode(out[:ends[b], b].tolist()) for b in range(num)]


def stop_reason(tokenizer: Tokenizer, tokens: Sequence[str], length: int,
                stop_at: Sequence[str] = ()) -> str:
    """Why a sample of `tokens` ended: "stop-at", "length" (reached `length`) or "eos"."""
    if stop_at and tokens and hits_stop(tokenizer, tokens, stop_at):
        return "stop-at"
    return "length" if len(tokens) >= length else "eos"


@dataclass
class Sample:
    """One generated text: `text` is the prime's text followed by the continuation, `tokens`
    the generated tokens alone, `stop` why it ended ("eos", "length" or "stop-at")."""

    index: int
    prime: str
    text: str
    tokens: list[str]
    stop: str

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        """The record `charlm sample --json` prints."""
        return {"sample": self.index, "prime": self.prime, "text": self.text,
                "tokens": list(self.tokens), "stop": self.stop}


def samples(model, vocab, tokenizer: Tokenizer, prime: Prime, *, num: int = 1,
            length: int | None = None, temperature: float = 1.0, top_k: int | None = None,
            top_p: float | None = None, stop_at: Sequence[str] = (),
            rng: np.random.Generator | None = None,
            on_token: TokenCallback | None = None) -> list[Sample]:
    """`sample` with its results as `Sample` records (length None: `default_length`)."""
    length = default_length(vocab) if length is None else length
    stops = check_stop_at(stop_at)
    out = sample(model, vocab, num=num, length=length, temperature=temperature, top_k=top_k,
                 top_p=top_p, prime=prime.tokens, rng=rng, on_token=on_token, stop_at=stops)
    return [Sample(i, prime.text, prime.continued(tokenizer, tokens), tokens,
                   stop_reason(tokenizer, tokens, length, stops))
            for i, tokens in enumerate(out)]
