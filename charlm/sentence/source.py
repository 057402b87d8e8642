"""The sentence tasks' batch source and validation set (see `engine.batches` for the interface).

`SentenceBatches` serves bucketed batches of whole sentences (no state carried); the validation
set scores held-out sentences with the task's metric (`sentence_counts`, summable over processes).
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator, Sequence

import numpy as np

from charlm.engine.batches import Batch, Evaluation
from charlm.sentence.batch import EncodedSentence
from charlm.sentence.metrics import EntityCounts, confusion_report, conlleval_counts, prf
from charlm.sentence.predict import Predictor


# ------------------------------------------------------------------------ sentence batches


class SentenceBatches:
    """Batches of whole sentences for a tagger or classifier (no state carried).

    Each epoch the sentences are shuffled, stably sorted by length and cut into batches of
    `batch_size` neighbours (little padding), and the batches are shuffled; both shuffles use a
    generator seeded with (seed, epoch), so the order of an epoch is a function of the epoch alone
    and a resumed run continues at exactly the batch it stopped before. `clock.epoch` (the run's
    `TrainState`) says which epoch `batches` serves.

    sentences: EncodedSentence list (`sentence.batch`); to_batch(list) -> SentenceBatch
    (`sentence.batch.make_batch`).
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

    def fingerprint(self) -> str:
        """A hash of the encoded training sentences (words and labels), as `StreamBatches`'s."""
        h = hashlib.blake2b(digest_size=16)
        for s in self.sentences:
            h.update(np.asarray(s.words, dtype=np.int64).tobytes())
            h.update(np.asarray(s.labels, dtype=np.int64).tobytes())
        return h.hexdigest()

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sentences) / self.batch_size)

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
        self.classes = None if encoder.per_token else \
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


def sentence_counts(predictor: Predictor, encoded: Sequence[EncodedSentence], gold, classes=None) -> np.ndarray:
    """Summable validation counts of sentences (see `SentenceValidation`):
    tagging        [nll, n, tokens, correct tags, correct entities, guessed entities, gold entities]
    classification [nll, n, confusion matrix over `classes` (rows gold, columns predicted), flattened]
    nll sums −log ŷ of the gold labels the model knows (a CRF tagger: −log of their marginals
    P(y<t> = gold | sentence), so that the validation loss is per token for every tagger); n counts them."""
    enc = predictor.encoder
    nll = n = 0.0
    if enc.per_token:
        entities = EntityCounts()
        tags_right = tokens = 0
        for idx, lp, paths in predictor.tagged(encoded):
            for b, (i, ids) in enumerate(zip(idx, paths)):
                g = np.array([enc.label_index.get(t, -1) for t in enc.model_labels(gold[i])])
                t = np.flatnonzero(g >= 0)
                nll -= float(lp[t, b, g[t]].astype(np.float64).sum())
                n += len(t)
                pred = enc.report_labels([enc.labels[k] for k in ids])
                tags_right += sum(p == q for p, q in zip(pred, gold[i]))
                tokens += len(pred)
                if enc.model_scheme:
                    entities.add(conlleval_counts([gold[i]], [pred]))
        return np.array([nll, n, tokens, tags_right, entities.correct, entities.guessed, entities.gold])
    index = {label: i for i, label in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)))
    for idx, lp, _ in predictor.log_probs(encoded):
        best = lp.argmax(axis=1)
        for b, i in enumerate(idx):
            confusion[index[gold[i]], best[b]] += 1
            k = enc.label_index.get(gold[i])
            if k is not None:
                nll -= float(lp[b, k])
                n += 1
    return np.concatenate([[nll, n], confusion.ravel()])
