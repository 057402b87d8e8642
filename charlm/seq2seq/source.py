"""A sequence-to-sequence run's data for the engine: the pair batch source and the validation set.

    PairBatches(sources, targets, batch_size, seed, clock)    engine.batches.Buckets of pairs
    PairValidation(sources, references, vocab)                loss, sequence accuracy, token error rate

Training pairs are bucketed by source length (`Buckets`: shuffled per epoch with (seed, epoch), so
a resumed run continues at exactly the batch it stopped before); a batch trains on its target
tokens, each <EOS> included (Batch.tokens).
"""

from __future__ import annotations

import hashlib

import numpy as np

from charlm.engine.batches import Buckets, Evaluation
from charlm.seq2seq.metrics import Counts
from charlm.seq2seq.network import pad_pairs
from charlm.seq2seq.search import greedy

__all__ = ["PairBatches", "PairValidation"]


class PairBatches(Buckets):
    """Batches of (source ids, target ids) pairs (`network.PairBatch`), bucketed by source length."""

    def __init__(self, sources: list, targets: list, batch_size: int, seed: int, clock):
        self.sources, self.targets = sources, targets
        super().__init__([len(s) for s in sources], [len(t) + 1 for t in targets],
                         lambda idx: (pad_pairs([sources[i] for i in idx], [targets[i] for i in idx]),),
                         batch_size, seed, clock)

    def fingerprint(self) -> str:
        """A hash of the encoded training pairs (the processes of a run must hold the same)."""
        h = hashlib.sha256()
        for s, t in zip(self.sources, self.targets):
            h.update(np.asarray(s, dtype=np.int64).tobytes() + b"|")
            h.update(np.asarray(t, dtype=np.int64).tobytes() + b";")
        return h.hexdigest()


class PairValidation:
    """Held-out examples: their sources (ids) and references (lists of target-id arrays).

    Evaluation.loss: the mean −log ŷ<t>[y<t>] per target token over every (source, reference)
    pair (teacher-forced); the greedy output of each source is scored against its references
    (`metrics.Counts`): metrics val_accuracy (sequence accuracy) and val_ter (token error rate);
    objective (what "best" minimises): the token error rate. With several processes each takes
    every comm.size-th example and the sums are reduced."""

    def __init__(self, sources: list, references: list, batch_size: int = 64):
        self.sources, self.references, self.batch_size = sources, references, batch_size

    def evaluate(self, model, comm) -> Evaluation:
        mine = list(range(comm.rank, len(self.sources), comm.size))
        nll = n = 0.0
        counts = Counts()
        for k in range(0, len(mine), self.batch_size):
            chunk = mine[k:k + self.batch_size]
            pairs = [(self.sources[i], r) for i in chunk for r in self.references[i]]
            lp = model.token_log_probs(pad_pairs([s for s, _ in pairs], [r for _, r in pairs]))
            nll -= float(lp.sum())
            n += sum(len(r) + 1 for _, r in pairs)
            for i, out in zip(chunk, greedy(model, [self.sources[i] for i in chunk])):
                counts.add(out.ids, [list(r) for r in self.references[i]])
        sums = comm.allreduce(np.concatenate([[nll, n], counts.to_array()]))
        total = Counts.from_array(sums[2:])
        return Evaluation(float(sums[0] / max(sums[1], 1.0)), total.token_error_rate,
                          {"val_accuracy": total.sequence_accuracy, "val_ter": total.token_error_rate})
