"""The stream form of a conditional language model's data (`charlm train --condition --mode stream`):
the texts of each label read as one running text, trained with truncated BPTT, the state carried.

Whole texts (charlm.lm.labelled) back-propagate every text whole, so one long text costs memory in
proportion to its length. Here a text costs one window of T = --seq-len tokens at a time.

The running text of label c is its texts in file order, in stream mode (a newline is a token):

    s_c = "\\n" t1 "\\n" t2 "\\n" ... tn "\\n"      the first "\\n" is the start symbol, as
                                               `charlm score --stream` feeds it

and its predictions are x = s_c[:-1] -> y = s_c[1:], cut into windows of T (the last one padded and
masked). The windows of all labels, label 0's first, are laid in one line and cut into B contiguous
rows (as `lm.corpus.batchify` cuts a corpus into B streams) of R or R - 1 windows, a short row
padded with one empty window; batch r is window r of every row, (T, B). A segment is the part of a
row that holds one label's running text. A row's state is carried from window to window and starts
from its label's a<0> = tanh(W_0 e(c) + b_0) where a segment starts: in window 0 (each epoch) and
where the row passes from one label's running text to the next — always at a window's start, so no
state restarts inside a window and the cells' loops stay as they are; e(c) goes in beside x<t> at
every step (or at a segment's first step: --condition-input first). A row that starts inside a
label's running text starts from a<0> there, as the unconditional streams start from 0.

    lay_out(streams, labels, T, B, pad)     -> LabelStreams: the windows (R, T, B), labels, starts
    LabelStreamBatches(layout)              the engine's batch source (state carried; `part` for mpiexec)
    LabelStreamValidation(layout)           nats per token given the label, the same windows
    running_texts(token_lists, labels, C)   -> the token lists of each label's running text
    running_sums(model, vocab, ...)         -> nats and tokens per label of each label's texts read as
                                               one running text: what `charlm eval` reports, and
                                               `charlm score --label c --file F --stream` prints
    stream_form(vocab)                      whether a conditional model was trained so (its
                                            tokenizer's mode is stream; whole texts: lines)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from charlm.engine.batches import Batch, Evaluation
from charlm.lm.labelled import LabelledLines
from charlm.lm.scoring import NEWLINE, score_stream, tokenizer_mode

__all__ = ["LabelStreams", "lay_out", "LabelStreamBatches", "LabelStreamValidation", "running_texts",
           "running_sums", "stream_form"]


@dataclass
class LabelStreams:
    """Windows of B rows: x, y (R, T, B) int32 ids, mask (R, T, B) bool (the real predictions),
    labels (R, B) int64 (the label of each row's window), starts (R, B) bool (a segment starts at
    that window: the row takes its label's a<0>)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    starts: np.ndarray

    @property
    def rows(self) -> int:
        return self.x.shape[2]

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())

    def columns(self, cols) -> "LabelStreams":
        """The rows `cols` (a slice or indices) of every window."""
        return LabelStreams(self.x[..., cols], self.y[..., cols], self.mask[..., cols], self.labels[:, cols],
                            self.starts[:, cols])

    def window(self, r: int) -> LabelledLines:
        """Window r as the model's batch: x, y (T, B), mask (T, B) float64, labels, starts (B,)."""
        return LabelledLines(self.x[r], self.y[r], self.mask[r].astype(np.float64), self.labels[r], self.starts[r])


def lay_out(streams, labels, seq_len: int, rows: int, pad: int) -> LabelStreams:
    """The windows of the running texts `streams` (1-D id arrays, each with its start symbol
    first) of labels `labels`, in B = min(rows, windows) rows (see the module docstring); `pad`
    is the id of the masked positions."""
    T = int(seq_len)
    xs, ys, ms, ls, ss = [], [], [], [], []
    for ids, c in zip(streams, labels):
        n = len(ids) - 1                                    # predictions
        if n < 1:
            continue
        k = -(-n // T)
        for out, part in ((xs, ids[:-1]), (ys, ids[1:])):
            w = np.full(k * T, pad, dtype=np.int32)
            w[:n] = part
            out.append(w.reshape(k, T))
        m = np.zeros(k * T, dtype=bool)
        m[:n] = True
        ms.append(m.reshape(k, T))
        ls.append(np.full(k, c, dtype=np.int64))
        ss.append(np.arange(k) == 0)
    x, y, mask, lab, start = (np.concatenate(a) for a in (xs, ys, ms, ls, ss))
    W = len(x)
    B = max(1, min(int(rows), W))
    R = -(-W // B)
    full = W - (R - 1) * B                                  # rows of R windows; the others R - 1 (+ 1 empty)
    out = LabelStreams(np.full((R, T, B), pad, dtype=np.int32), np.full((R, T, B), pad, dtype=np.int32),
                       np.zeros((R, T, B), dtype=bool), np.zeros((R, B), dtype=np.int64), np.ones((R, B), dtype=bool))
    w = 0
    for b in range(B):
        n = R if b < full else R - 1
        out.x[:n, :, b], out.y[:n, :, b], out.mask[:n, :, b] = x[w:w + n], y[w:w + n], mask[w:w + n]
        out.labels[:n, b], out.starts[:n, b] = lab[w:w + n], start[w:w + n]
        out.starts[0, b] = True                             # every row starts from its label
        w += n
    return out


class LabelStreamBatches:
    """The engine's batch source of the stream form: batch r (position r) is window r of every row,
    Batch.inputs = (LabelledLines with starts,), Batch.tokens = its real predictions; the state is
    carried from window to window (the engine resets it to `model.epoch_state` at an epoch's start,
    where every row starts from its label)."""

    carries_state = True

    def __init__(self, layout: LabelStreams):
        self.layout = layout
        self.batch_size = layout.rows

    def steps_per_epoch(self) -> int:
        return self.layout.x.shape[0]

    def epoch_fraction(self, position: int) -> float:
        return position / max(self.steps_per_epoch(), 1)

    def batches(self, position: int = 0) -> Iterator[Batch]:
        for r in range(int(position), self.steps_per_epoch()):
            yield Batch((self.layout.window(r),), r + 1, int(self.layout.mask[r].sum()))

    def part(self, share) -> "LabelStreamBatches":
        """The rows share(B) of every window: one process's share of a data-parallel run."""
        return LabelStreamBatches(self.layout.columns(share(self.batch_size)))

    def fingerprint(self) -> str:
        """A hash of the layout (the processes of a run must hold the same)."""
        h = hashlib.blake2b(digest_size=16)
        for a in (self.layout.x, self.layout.y, self.layout.mask, self.layout.labels, self.layout.starts):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


class LabelStreamValidation:
    """Nats per prediction of the validation texts given their labels, read as the training reads
    its own (each label's running text in windows, `lay_out`), the state carried; with several
    processes each takes every comm.size-th row and the sums are reduced."""

    def __init__(self, layout: LabelStreams):
        self.layout = layout

    def evaluate(self, model, comm) -> Evaluation:
        mine = self.layout.columns(slice(comm.rank, None, comm.size))
        sums = np.zeros(2)
        if mine.rows:
            state = model.epoch_state(mine.rows)
            for r in range(mine.x.shape[0]):
                w = mine.window(r)
                lp, state = model.target_log_probs(w.x, w.y, model.label_state(w.labels, w.starts, state))
                sums += [-float((lp * w.mask).sum()), float(w.mask.sum())]
        nats, count = comm.allreduce(sums)
        loss = float(nats / max(count, 1.0))
        return Evaluation(loss, loss)


def running_texts(texts, labels, num_labels: int, newline=NEWLINE) -> list[list]:
    """The running text of each label (index c): its texts (token lists, or id sequences with
    `newline` the id of "\\n") in order, each followed by `newline`, after a `newline` that starts
    it (empty when the label has no text)."""
    out = [[] for _ in range(num_labels)]
    for text, c in zip(texts, labels):
        out[c] += [*text, newline]
    return [[newline, *t] if t else [] for t in out]


def running_sums(model, vocab, token_lists, labels) -> tuple[np.ndarray, np.ndarray]:
    """(nats (C,), predictions (C,)) float64: -log P(running text of c | c) and its tokens for each
    label c, the texts of label c (labels (N,) ids) read as one running text from its a<0>, the
    state carried (`scoring.score_stream` on `model.given(c)`: `charlm score --label c --file F
    --stream` of a file of those texts). The vocabulary is a stream-mode one."""
    C = model.config.num_labels
    nats, count = np.zeros(C), np.zeros(C)
    for c, text in enumerate(running_texts(token_lists, labels, C)):
        if text:
            summary = score_stream(model.given(c), vocab, [text[1:]])   # the start "\n" is score_stream's own
            nats[c], count[c] = summary.nats, summary.tokens
    return nats, count


def stream_form(vocab) -> bool:
    """Whether a conditional model with this vocabulary was trained in the stream form."""
    return tokenizer_mode(vocab) == "stream"
