"""The batch-source interface of the engine: what one training step trains on.

A batch source (the language model's `lm.batches.StreamBatches`, the sentence tasks'
`sentence.source.SentenceBatches`) cuts an epoch of training data into batches and can start again
from any position inside an epoch (that is what makes resuming exact):

    source.batch_size                  streams (or sentences) per batch
    source.carries_state               True: the hidden state at the end of a batch is the initial
                                       state of the next (reset at each epoch start)
    source.steps_per_epoch()           batches in one epoch
    source.epoch_fraction(position)    how far into the epoch `position` is, in [0, 1]
    source.batches(position)           Batch objects from `position` to the end of the epoch
    source.part(share)                 one process's share under `mpiexec` (see engine.parallel):
                                       the same source over the columns share(n) of every batch of
                                       n streams (or sentences)

    Batch.inputs   what `model.loss(*inputs, state, train=True, rng=rng)` takes before the state
    Batch.end      the position right after this batch (where a resumed run starts again)
    Batch.tokens   predictions the batch trains on (tokens/s, tokens seen)
    Batch.parts    None, or the batches of one step that accumulates gradients (`Accumulated`)

`Buckets` is the batch source of the tasks that train on whole examples (sentences, pairs): the
examples bucketed by length, no state carried.

A validation set is evaluated by `validation.evaluate(model, comm)` -> `Evaluation`; with several
processes (`comm.size` > 1) each evaluates its share and the sums are reduced with `comm`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from charlm.errors import DataError


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


class Buckets:
    """Batches of whole examples (no state carried), bucketed by length.

    Each epoch the examples are shuffled, stably sorted by `lengths` and cut into batches of
    `batch_size` neighbours (little padding), and the batches are shuffled; both shuffles use a
    generator seeded with (seed, epoch), so the order of an epoch is a function of the epoch alone
    and a resumed run continues at exactly the batch it stopped before. `clock.epoch` (the run's
    `TrainState`) says which epoch `batches` serves.

    lengths (N,) int: what examples are sorted by; tokens (N,) int: the predictions each example
    trains on (Batch.tokens is their sum); `make(indices)` -> Batch.inputs of those examples.
    Subclasses say what their examples are (`fingerprint`).
    """

    carries_state = False

    def __init__(self, lengths, tokens, make, batch_size: int, seed: int, clock, share=None):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.make, self.batch_size = make, int(batch_size)
        self.seed, self.clock, self.share = int(seed), clock, share

    def part(self, share) -> "Buckets":
        """The examples share(n) of every batch of n (one process's share of a data-parallel run).
        A process whose share of a batch is empty (the last, short batch of an epoch, fewer
        examples than processes) trains on one of them with weight 0 (tokens 0), so that it still
        takes part in the step's gradient sum and adds nothing to it."""
        mine = copy.copy(self)
        mine.share = share
        return mine

    def fingerprint(self) -> str:
        """A hash of the encoded training examples (the processes of a run must hold the same)."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def epoch_fraction(self, position: int) -> float:
        return position / max(self.steps_per_epoch(), 1)

    def order(self, epoch: int) -> list[np.ndarray]:
        """The example indices of each batch of `epoch`, in the order they are trained on."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        shuffled = rng.permutation(len(self.lengths))
        by_length = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
        groups = [by_length[i:i + self.batch_size] for i in range(0, len(by_length), self.batch_size)]
        return [groups[i] for i in rng.permutation(len(groups))]

    def batches(self, position: int = 0) -> Iterator[Batch]:
        groups = self.order(self.clock.epoch)
        for k in range(int(position), len(groups)):
            mine, weight = groups[k], 1
            if self.share is not None:
                mine = mine[self.share(len(mine))]
                if len(mine) == 0:                   # a weightless stand-in (see `part`)
                    mine, weight = groups[k][-1:], 0
            yield Batch(self.make(mine), k + 1, weight * int(self.tokens[mine].sum()))


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of n examples: round(n * fraction) of them (at least
    one when fraction > 0) chosen by a generator seeded with `seed`, each part in file order."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise DataError(f"too few examples to hold out validation data: {n}; use a larger file, "
                        "--val-file or --val-fraction 0")
    held = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    keep = np.setdiff1d(np.arange(n), held)
    return keep, held
