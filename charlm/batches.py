"""Batch sources: what one training step of the engine (`charlm.train`) trains on.

A batch source cuts an epoch of training data into batches and can start again from any
position inside an epoch (that is what makes resuming exact):

    source.batch_size                  streams (or sentences) per batch
    source.carries_state               True: the hidden state at the end of a batch is the initial
                                       state of the next (reset at each epoch start)
    source.steps_per_epoch()           batches in one epoch
    source.epoch_fraction(position)    how far into the epoch `position` is, in [0, 1]
    source.batches(position)           Batch objects from `position` to the end of the epoch
    source.part(cols)                  the same source over the streams `cols` of every batch (one
                                       process's share under `mpiexec`; see charlm.parallel)

    Batch.inputs   what `model.loss(*inputs, state, train=True, rng=rng)` takes before the state
    Batch.end      the position right after this batch (where a resumed run starts again)
    Batch.tokens   predictions the batch trains on (tokens/s, tokens seen)
    Batch.parts    None, or the batches of one step that accumulates gradients (`Accumulated`)

A validation set is evaluated by `validation.evaluate(model, comm)` -> `Evaluation`; with several
processes (`comm.size` > 1) each evaluates its share and the sums are reduced with `comm`.

The language model's source is `StreamBatches` (B contiguous streams of the corpus, windows of T
tokens, state carried: truncated BPTT); sentence batches (padded ids, mask and labels, no
carried state) for tagging and classification implement the same interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from charlm.corpus import iter_windows
from charlm.scoring import stream_loss_sums


@dataclass
class Batch:
    """One training step's data (see the module docstring)."""

    inputs: tuple
    end: int
    tokens: int
    parts: tuple | None = None


@dataclass
class Evaluation:
    """A validation result. `objective` is what "best" minimises (for a language model the loss
    itself); `metrics` are extra figures for the log (e.g. accuracy)."""

    loss: float
    objective: float
    metrics: dict = field(default_factory=dict)


class StreamBatches:
    """Windows of truncated BPTT over B parallel streams `data` (N, B) (see `corpus.batchify`).

    Batch.inputs = (x, y), both (T, B) ids with y<t> = x<t+1>; the hidden state is carried from
    one window to the next and reset at the start of each epoch.
    """

    carries_state = True

    def __init__(self, data: np.ndarray, seq_len: int):
        self.data, self.seq_len = data, int(seq_len)
        self.batch_size = data.shape[1]

    def steps_per_epoch(self) -> int:
        return math.ceil((self.data.shape[0] - 1) / self.seq_len)

    def epoch_fraction(self, position: int) -> float:
        return position / max(self.data.shape[0] - 1, 1)

    def batches(self, position: int = 0) -> Iterator[Batch]:
        for pos, x, y in iter_windows(self.data, self.seq_len, start=position):
            yield Batch((x, y), pos + x.shape[0], x.size)

    def part(self, cols: slice) -> "StreamBatches":
        """The streams `cols` of every batch: one process's share of a data-parallel run."""
        return StreamBatches(self.data[:, cols], self.seq_len)


class Accumulated:
    """Any batch source, `k` consecutive batches per step (`charlm train --accumulate K`): the
    engine takes one update for the mean gradient of the k parts (an effective batch k times as
    large, in the memory of one; under mpiexec, one all-reduce per k batches). The last step of
    an epoch may have fewer parts; positions are those of the source."""

    def __init__(self, source, k: int):
        self.source, self.k = source, int(k)
        self.batch_size, self.carries_state = source.batch_size, source.carries_state

    def steps_per_epoch(self) -> int:
        return math.ceil(self.source.steps_per_epoch() / self.k)

    def epoch_fraction(self, position: int) -> float:
        return self.source.epoch_fraction(position)

    def batches(self, position: int = 0) -> Iterator[Batch]:
        group: list[Batch] = []
        for batch in self.source.batches(position):
            group.append(batch)
            if len(group) == self.k:
                yield self._step(group)
                group = []
        if group:
            yield self._step(group)

    @staticmethod
    def _step(group: list[Batch]) -> Batch:
        return Batch((), group[-1].end, sum(b.tokens for b in group), parts=tuple(group))


class StreamValidation:
    """Mean negative log-likelihood (nats per token) of validation streams (N, Bv), state carried
    from window to window; with several processes each takes every comm.size-th stream."""

    def __init__(self, data: np.ndarray, seq_len: int):
        self.data, self.seq_len = data, int(seq_len)

    def evaluate(self, model, comm) -> Evaluation:
        mine = self.data[:, comm.rank::comm.size]
        sums = stream_loss_sums(model, mine, self.seq_len) if mine.shape[1] else np.zeros(2)
        nats, count = comm.allreduce(sums)
        loss = float(nats / max(count, 1.0))
        return Evaluation(loss, loss)
