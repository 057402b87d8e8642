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

A validation set is evaluated by `validation.evaluate(model, comm)` -> `Evaluation`; with several
processes (`comm.size` > 1) each evaluates its share and the sums are reduced with `comm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator


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
