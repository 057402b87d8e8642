"""The language model's batch source and validation set (see `engine.batches` for the interface).

`StreamBatches` cuts B contiguous streams of the corpus into windows of T tokens with the state
carried from window to window (truncated BPTT); `StreamValidation` scores the validation streams
the same way.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator

import numpy as np

from charlm.engine.batches import Batch, Evaluation
from charlm.lm.corpus import iter_windows
from charlm.lm.scoring import stream_loss_sums


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

    def part(self, share) -> "StreamBatches":
        """The streams share(B) of every batch: one process's share of a data-parallel run."""
        return StreamBatches(self.data[:, share(self.batch_size)], self.seq_len)

    def fingerprint(self) -> str:
        """A hash of the training ids (read in slices of rows: a memory-mapped corpus is never
        copied whole), so the processes of a data-parallel run can check that they read the same
        text."""
        h = hashlib.blake2b(digest_size=16)
        rows = max(1, (1 << 24) // max(self.batch_size, 1))
        for i in range(0, self.data.shape[0], rows):
            h.update(np.ascontiguousarray(self.data[i:i + rows]).tobytes())
        return h.hexdigest()


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
