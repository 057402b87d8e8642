"""Sentence log-probabilities, perplexity and corpus cross-entropy.

A language model gives a sequence of tokens y<1>..y<n> the probability

    P(y<1>, ..., y<n>) = P(y<1>) P(y<2> | y<1>) ... P(y<n> | y<1>..y<n-1>)

and each factor is one softmax output of the network, so

    log P = sum_t log p(y<t> | y<1>..y<t-1>)       (nats; log10 P = log P / ln 10)

Conventions (how a piece of text becomes inputs x and targets y):

* Every sentence starts from the zero state `model.init_state` (a<0> = 0, as in the notes).
* Lines-mode models were trained on the stream `EOS s1 EOS s2 EOS ...`, so `<EOS>` is also the
  start symbol: a sentence t1..tn is scored with inputs `[EOS, t1, .., tn]` and targets
  `[t1, .., tn, EOS]`; the n + 1 scored tokens include the final `<EOS>`.
* Stream-mode models were trained on running text (newlines are "\\n" tokens). A sentence t1..tn
  is scored as the start of a text: if "\\n" is in the vocabulary the first token is conditioned on
  a "\\n" (the text starts as if after a line break), inputs `["\\n", t1..t(n-1)]`, targets
  `[t1..tn]`; otherwise t1 has no context and is not scored: inputs `[t1..t(n-1)]`, targets
  `[t2..tn]`. No `<EOS>` is scored in stream mode.
* Out-of-vocabulary tokens are scored as `<UNK>` (the probability the model gives the whole
  class of unknown tokens) and counted in `oov` (over the scored tokens).
* `score_stream` scores a file as one running text with the state carried across lines, each
  token predicted from all previous ones; the first token is conditioned as above (lines mode:
  on `<EOS>`, and every line is followed by `<EOS>`, exactly the training stream).
* Characters (for bits per character at char level) = tokens scored: one per character, the
  `<EOS>` of lines mode standing for the newline it replaced.

Nothing here prints; the CLI formats the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from charlm.errors import UsageError
from charlm.lm.corpus import iter_windows, lookup_table

LN10 = math.log(10.0)
LN2 = math.log(2.0)
NEWLINE = "\n"


def tokenizer_mode(vocab) -> str:
    """The training mode of a model's vocabulary: "lines" or "stream" (None -> level default)."""
    cfg = vocab.tokenizer
    mode = getattr(cfg, "mode", None)
    if mode is None:
        mode = "stream" if getattr(cfg, "level", "char") == "char" else "lines"
    return mode


def is_char_level(vocab) -> bool:
    return getattr(vocab.tokenizer, "level", "char") == "char"


def _perplexity(nats: float, n: int) -> float:
    """exp(-log P / n): the geometric-mean inverse probability per token (nan when n == 0)."""
    if n <= 0:
        return float("nan")
    try:
        return math.exp(-nats / n)
    except OverflowError:
        return float("inf")


@dataclass
class SentenceScore:
    """The score of one sentence.

    tokens:    the tokens scored, as the model saw them (OOV shown as "<UNK>", lines mode ends
               with "<EOS>"); per_token[i] = log p(tokens[i] | everything before), in nats.
    logprob:   sum(per_token), natural log.  log10prob = logprob / ln 10.
    oov:       how many of the scored tokens were out of the vocabulary.
    """

    text: str
    tokens: list[str]
    per_token: list[float]
    logprob: float
    oov: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10

    @property
    def perplexity(self) -> float:
        return _perplexity(self.logprob, self.n_tokens)

    def to_dict(self, per_token: bool = False) -> dict:
        """The record `charlm score --json` prints (with `per_token` under --per-token)."""
        d = {
            "text": self.text,
            "tokens": list(self.tokens),
            "logprob": self.logprob,
            "log10prob": self.log10prob,
            "perplexity": _finite_or_none(self.perplexity),
            "oov": self.oov,
        }
        if per_token:
            d["per_token"] = list(self.per_token)
        return d


def shown(x: float | None, fmt: str = ".3f") -> str:
    """A figure as the commands print it: "-" for None, inf or nan."""
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def _finite_or_none(x: float):
    return x if math.isfinite(x) else None


@dataclass
class CorpusSummary:
    """Running totals over a corpus: total nats, tokens scored, OOV tokens, characters.

    nats_per_token = -log P / tokens; bits = nats / ln 2; perplexity = exp(nats_per_token).
    `chars` is None at word level (bits per character only make sense at char level).
    """

    tokens: int = 0
    oov: int = 0
    nats: float = 0.0  # total negative log-probability
    sentences: int = 0
    chars: int | None = None

    def add(self, score: SentenceScore, char_level: bool) -> None:
        """Add one sentence's score to the totals."""
        self.tokens += score.n_tokens
        self.oov += score.oov
        self.nats -= score.logprob
        self.sentences += 1
        if char_level:
            self.chars = (self.chars or 0) + score.n_tokens

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens if self.tokens else float("nan")

    @property
    def bits_per_token(self) -> float:
        return self.nats_per_token / LN2

    @property
    def perplexity(self) -> float:
        return _perplexity(-self.nats, self.tokens)

    @property
    def nats_per_char(self) -> float | None:
        if self.chars is None:
            return None
        return self.nats / self.chars if self.chars else float("nan")

    @property
    def bits_per_char(self) -> float | None:
        npc = self.nats_per_char
        return None if npc is None else npc / LN2

    def to_dict(self) -> dict:
        """The summary record `charlm score --file F --json` prints last."""
        d = {
            "summary": True,
            "tokens": self.tokens,
            "oov": self.oov,
            "nats_per_token": _finite_or_none(self.nats_per_token),
            "bits_per_token": _finite_or_none(self.bits_per_token),
            "perplexity": _finite_or_none(self.perplexity),
        }
        if self.chars is not None:
            d["nats_per_char"] = _finite_or_none(self.nats_per_char)
            d["bits_per_char"] = _finite_or_none(self.bits_per_char)
        return d

    def lines(self) -> list[str]:
        """The summary as `charlm score --file F` and `charlm eval` print it."""
        lines = [f"corpus: {self.tokens} tokens scored, {self.oov} out of vocabulary"
                 + (f", {self.sentences} sentences" if self.sentences else "")]
        lines.append(f"cross-entropy: {shown(self.nats_per_token, '.4f')} nats/token, "
                     f"{shown(self.bits_per_token, '.4f')} bits/token")
        if self.chars is not None:
            lines.append(f"per character: {shown(self.nats_per_char, '.4f')} nats/char, "
                         f"{shown(self.bits_per_char, '.4f')} bits/char")
        lines.append(f"perplexity: {shown(self.perplexity, '.3f')}")
        return lines


# ---------------------------------------------------------------------------------------------
# Sentences: batched, sorted by length, padded, masked


def _inputs_targets(ids: np.ndarray, mode: str, eos_id: int, start_id: int | None):
    """Inputs x and targets y (1-D int arrays of equal length) for one sentence's ids (n,).

    lines:  x = [EOS, t1..tn], y = [t1..tn, EOS]
    stream: x = [start, t1..t(n-1)], y = [t1..tn]  (start = "\\n" id), or without a start token
            x = [t1..t(n-1)], y = [t2..tn].
    """
    if mode == "lines":
        x = np.concatenate(([eos_id], ids))
        y = np.concatenate((ids, [eos_id]))
    elif start_id is not None:
        x = np.concatenate(([start_id], ids[:-1])) if len(ids) else ids
        y = ids
    else:
        x, y = ids[:-1], ids[1:]
    return x.astype(np.int64), y.astype(np.int64)


def start_id(vocab, mode: str) -> int | None:
    """The id the first token is conditioned on: EOS (lines), "\\n" if known (stream), else None."""
    if mode == "lines":
        return vocab.eos_id
    return vocab.index.get(NEWLINE)


def score_token_lists(model, vocab, token_lists: Sequence[Sequence[str]], batch_size: int = 64,
                      texts: Sequence[str] | None = None, comm=None) -> list[SentenceScore]:
    """Score already-tokenized sentences; returns one SentenceScore per list, in input order.

    Sentences are sorted by length and scored `batch_size` at a time: inputs padded to (T, B)
    (T = longest in the batch), one `model.target_log_probs` call per batch, padded positions
    masked out. Padding comes after each sentence's last token, and the recurrence is causal, so
    a sentence's numbers do not depend on its batch-mates (up to float rounding).
    An empty token list scores just "<EOS>" in lines mode (P(empty sentence)).

    With a process group `comm` of several processes (charlm.engine.parallel), process r scores
    batches r, r + comm.size, ... and every process returns all the scores (the same batches
    as one process, so the same numbers).
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    mode = tokenizer_mode(vocab)
    start = start_id(vocab, mode)
    eos, unk = vocab.eos_id, vocab.unk_id
    n = len(token_lists)
    pairs = []
    for tokens in token_lists:
        ids = np.asarray(vocab.encode(list(tokens)), dtype=np.int64).reshape(-1)
        pairs.append(_inputs_targets(ids, mode, eos, start))
    results: list[SentenceScore | None] = [None] * n
    order = sorted(range(n), key=lambda i: len(pairs[i][1]))
    for k, b0 in enumerate(range(0, n, batch_size)):
        if comm is not None and k % comm.size != comm.rank:
            continue
        idx = order[b0:b0 + batch_size]
        lengths = np.array([len(pairs[i][1]) for i in idx])
        T, B = int(lengths.max(initial=0)), len(idx)
        if T > 0:
            x = np.full((T, B), eos, dtype=np.int64)  # padding: any valid id, masked below
            y = np.full((T, B), eos, dtype=np.int64)
            for j, i in enumerate(idx):
                x[:lengths[j], j], y[:lengths[j], j] = pairs[i]
            lp, _ = model.target_log_probs(x, y, model.init_state(B))  # (T, B)
            lp = np.asarray(lp, dtype=np.float64)
        for j, i in enumerate(idx):
            L = int(lengths[j])
            yi = pairs[i][1]
            per_token = lp[:L, j].tolist() if L else []
            results[i] = SentenceScore(
                text=texts[i] if texts is not None else "",
                tokens=vocab.decode(yi.tolist()),
                per_token=per_token,
                logprob=float(math.fsum(per_token)),
                oov=int(np.count_nonzero(yi == unk)),
            )
    if comm is not None and comm.size > 1:
        results = [next(s for s in mine if s is not None) for mine in zip(*comm.allgather(results))]
    return results  # type: ignore[return-value]


def score_sentences(model, vocab, tokenizer, sentences: Sequence[str],
                    batch_size: int = 64, comm=None) -> list[SentenceScore]:
    """Tokenize each sentence with the model's tokenizer and score it (see module conventions).

    A sentence that tokenizes to nothing raises UsageError (there is nothing to score).
    """
    token_lists = []
    for k, text in enumerate(sentences, 1):
        tokens = tokenizer.tokenize(text)
        if not tokens:
            what = "empty" if not text else "nothing but whitespace"
            raise UsageError(f"sentence {k} is {what}: nothing to score")
        token_lists.append(tokens)
    return score_token_lists(model, vocab, token_lists, batch_size, texts=list(sentences), comm=comm)


def score_lines(model, vocab, tokenizer, lines: Iterable[str], batch_size: int = 64,
                chunk: int | None = None, comm=None) -> Iterator[SentenceScore]:
    """Score every non-empty line as a sentence, yielding scores in line order.

    Lines are taken `chunk` at a time (default 16 batches) so a large file is never held whole;
    empty and whitespace-only lines are skipped (as the training corpus reader does).
    `comm`: the batches of each chunk are shared among processes (see `score_token_lists`).
    """
    chunk = chunk or max(1, 16 * batch_size)
    texts: list[str] = []
    token_lists: list[list[str]] = []

    def flush():
        out = score_token_lists(model, vocab, token_lists, batch_size, texts=texts, comm=comm)
        texts.clear()
        token_lists.clear()
        return out

    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():  # an empty or blank line is not a sentence
            continue
        tokens = tokenizer.tokenize(line)
        if not tokens:
            continue
        texts.append(line)
        token_lists.append(tokens)
        if len(token_lists) >= chunk:
            yield from flush()
    if token_lists:
        yield from flush()


# ---------------------------------------------------------------------------------------------
# One running text


def stream_loss_sums(model, data: np.ndarray, seq_len: int) -> np.ndarray:
    """[total nats, tokens] of B parallel streams `data` (N, B), predicted window by window
    (T = seq_len) with the state carried: the training's validation figure is nats / tokens."""
    state = model.init_state(data.shape[1])
    total, count = 0.0, 0
    for _, x, y in iter_windows(data, seq_len):
        lp, state = model.target_log_probs(x, y, state)
        total -= float(lp.sum(dtype=np.float64))
        count += lp.size
    return np.array([total, count], dtype=np.float64)


class _RunningScore:
    """A text scored as one running stream, window by window, the state a<t> carried: `run(ids)`
    scores the next window of ids (the targets; each is predicted from all before it)."""

    def __init__(self, model, vocab):
        self.model, self.unk = model, vocab.unk_id
        self.char_level = is_char_level(vocab)
        self.summary = CorpusSummary(chars=0 if self.char_level else None)
        self.state = model.init_state(1)
        self.prev = start_id(vocab, tokenizer_mode(vocab))  # id fed before the next target; None: no context yet

    def run(self, ids: np.ndarray) -> None:
        if self.prev is None:  # stream mode without "\n": the very first token only becomes context
            self.prev, ids = int(ids[0]), ids[1:]
        if len(ids) == 0:
            return
        x = np.concatenate(([self.prev], ids[:-1])).astype(np.int64)[:, None]  # (T, 1)
        y = ids.astype(np.int64)[:, None]
        lp, self.state = self.model.target_log_probs(x, y, self.state)
        s = self.summary
        s.nats -= float(np.sum(np.asarray(lp, dtype=np.float64)))
        s.tokens += len(ids)
        s.oov += int(np.count_nonzero(ids == self.unk))
        if self.char_level:
            s.chars += len(ids)
        self.prev = int(ids[-1])


def score_stream(model, vocab, pieces: Iterable[Sequence[str]], window: int = 2048) -> CorpusSummary:
    """Score a text as one running stream, the state a<t> carried from token to token.

    pieces: successive token lists (e.g. `Tokenizer.iter_sentences(source)`): in lines mode one
    per line (each is followed by "<EOS>", and the stream starts with "<EOS>": the training
    stream); in stream mode their concatenation is the text's tokens ("\\n" tokens included).
    Tokens are buffered and scored `window` at a time with `model.target_log_probs` on (T, 1),
    so memory stays bounded whatever the file size.
    """
    lines = tokenizer_mode(vocab) == "lines"
    scorer = _RunningScore(model, vocab)
    buf: list[np.ndarray] = []
    buffered = 0
    for tokens in pieces:
        ids = np.asarray(vocab.encode(list(tokens)), dtype=np.int64).reshape(-1)
        if lines:
            ids = np.concatenate((ids, [vocab.eos_id]))
            scorer.summary.sentences += 1
        if len(ids) == 0:
            continue
        buf.append(ids)
        buffered += len(ids)
        while buffered >= window:
            allids = np.concatenate(buf)
            scorer.run(allids[:window])
            rest = allids[window:]
            buf, buffered = ([rest] if len(rest) else []), len(rest)
    if buffered:
        scorer.run(np.concatenate(buf))
    return scorer.summary


def score_ids(model, vocab, tids, window: int = 2048) -> CorpusSummary:
    """`score_stream` of a tokenized text (`charlm.text.tokenids.TokenIds`, e.g. from the token cache),
    read `window` ids at a time through the lookup to the model's vocabulary: the same figures.
    (Lines mode: the leading EOS of the ids is the start symbol; sentences = the other EOS.)"""
    lookup = lookup_table(vocab, tids.types)
    scorer = _RunningScore(model, vocab)
    ids = tids.ids
    if tokenizer_mode(vocab) == "lines":
        ids = ids[1:]
        scorer.summary.sentences = int(tids.counts[0]) - 1
    for s in range(0, len(ids), window):
        scorer.run(lookup[ids[s:s + window]])
    return scorer.summary
