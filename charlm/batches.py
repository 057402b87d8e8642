"""Batch sources: what one training step of the engine (`charlm.train`) trains on.

A batch source cuts an epoch of training data into batches and can start again from any
position inside an epoch (that is what makes resuming exact):

    source.batch_size                  streams (or sentences) per batch
    source.carries_state               True: the hidden state at the end of a batch is the initial
                                       state of the next (reset at each epoch start)
    source.steps_per_epoch()           batches in one epoch
    source.epoch_fraction(position)    how far into the epoch `position` is, in [0, 1]
    source.batches(position)           Batch objects from `position` to the end of the epoch
    source.part(share)                 one process's share under `mpiexec` (see charlm.parallel):
                                       the same source over the columns share(n) of every batch of
                                       n streams (or sentences)

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

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from charlm.corpus import iter_windows
from charlm.metrics import confusion_report, prf
from charlm.predict import Predictor, sentence_counts
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


# ------------------------------------------------------------------------ sentence batches


class SentenceBatches:
    """Batches of whole sentences for a tagger or classifier (no state carried).

    Each epoch the sentences are shuffled, stably sorted by length and cut into batches of
    `batch_size` neighbours (little padding), and the batches are shuffled; both shuffles use a
    generator seeded with (seed, epoch), so the order of an epoch is a function of the epoch alone
    and a resumed run continues at exactly the batch it stopped before. `clock.epoch` (the run's
    `TrainState`) says which epoch `batches` serves.

    sentences: EncodedSentence list (`charlm.sentences`); to_batch(list) -> SentenceBatch.
    Batch.inputs = (SentenceBatch,); Batch.tokens = real tokens (tagging) or sentences
    (classification): the predictions the batch trains on.
    """

    carries_state = False

    def __init__(self, sentences: list, to_batch, batch_size: int, seed: int, clock, per_sentence: bool = False,
                 share=None):
        self.sentences, self.to_batch = sentences, to_batch
        self.batch_size = int(batch_size)
        self.seed, self.clock, self.per_sentence = int(seed), clock, per_sentence
        self.lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        self.share = share

    def part(self, share) -> "SentenceBatches":
        """The sentences share(n) of every batch of n (one process's share of a data-parallel run).
        A process whose share of a batch is empty (the last, short batch of an epoch, fewer
        sentences than processes) trains on one of them with weight 0 (tokens 0), so that it
        still takes part in the step's gradient sum and adds nothing to it."""
        return SentenceBatches(self.sentences, self.to_batch, self.batch_size, self.seed, self.clock,
                               self.per_sentence, share)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sentences) / self.batch_size)

    def fingerprint(self) -> str:
        """A hash of the encoded training sentences (words and labels), as `StreamBatches`'s."""
        h = hashlib.blake2b(digest_size=16)
        for s in self.sentences:
            h.update(np.asarray(s.words, dtype=np.int64).tobytes())
            h.update(np.asarray(s.labels, dtype=np.int64).tobytes())
        return h.hexdigest()

    def epoch_fraction(self, position: int) -> float:
        return position / max(self.steps_per_epoch(), 1)

    def order(self, epoch: int) -> list[np.ndarray]:
        """The sentence indices of each batch of `epoch`, in the order they are trained on."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        shuffled = rng.permutation(len(self.sentences))
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
            chosen = [self.sentences[i] for i in mine]
            tokens = len(chosen) if self.per_sentence else int(self.lengths[mine].sum())
            yield Batch((self.to_batch(chosen),), k + 1, weight * tokens)


class SentenceValidation:
    """Validation sentences of a tagger or classifier, scored by the task's metric.

    Evaluation.loss: mean −log ŷ of the gold labels (per token, or per sentence); objective (what
    "best" minimises): −entity F1 for entity tags (conlleval's count, in the data's scheme),
    −token accuracy for other tags, −accuracy for classification; metrics: val_accuracy and
    val_f1 (entity F1, or macro-F1). With several processes each scores every comm.size-th
    sentence and the counts are summed.
    """

    def __init__(self, sentences: list, gold: list, encoder, batch_size: int = 64):
        self.sentences, self.gold, self.encoder, self.batch_size = sentences, gold, encoder, batch_size
        # classification: the confusion matrix's classes (the model's, then unknown gold labels)
        self.classes = None if encoder.task == "tag" else \
            list(encoder.labels) + sorted(set(gold) - set(encoder.labels))

    def evaluate(self, model, comm) -> Evaluation:
        mine = range(comm.rank, len(self.sentences), comm.size)
        predictor = Predictor(model, self.encoder, self.batch_size)
        counts = sentence_counts(predictor, [self.sentences[i] for i in mine], [self.gold[i] for i in mine],
                                 self.classes)
        counts = comm.allreduce(counts)
        # none of the gold labels is one the model knows: no loss to report (the warning at the
        # start says that they count as errors)
        loss = float(counts[0] / counts[1]) if counts[1] > 0 else None
        if self.classes is None:
            accuracy = float(counts[3] / max(counts[2], 1.0))
            if not self.encoder.model_scheme:
                return Evaluation(loss, -accuracy, {"val_accuracy": accuracy})
            f1 = prf(*(int(c) for c in counts[4:7]))["f1"]
            return Evaluation(loss, -f1, {"val_accuracy": accuracy, "val_f1": f1})
        k = len(self.classes)
        report = confusion_report(self.classes, counts[2:].reshape(k, k))
        return Evaluation(loss, -report["accuracy"],
                          {"val_accuracy": report["accuracy"], "val_f1": report["macro_f1"]})
