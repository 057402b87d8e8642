"""A conditional language model's data: labelled texts -> padded batches, and their validation.

A text is cut by the model's tokenizer in lines mode and read as a sentence: inputs `<EOS> t1..tn`,
targets `t1..tn <EOS>` (n + 1 predictions), from the state of its label. (Reading a labelled file,
LABEL<TAB>TEXT or __label__LABEL TEXT, is the classification formats' code, charlm.sentence.formats:
tasks/conditional.py reads the file and hands the token lists and label names here.)

    LabelSet                    the labels: names, training counts (the prior), id(name), metadata
    encode_lines(...)           -> LabelledLine list: token ids and label id of each text
    pad_lines(lines, eos)       -> LabelledLines: one text per row, padded (T, B), with its label
    LinesValidation             -> nats per token of the validation texts given their labels

Batches hold one whole text per row (sorted by length into batches, little padding: the sentence
tasks' batch source, charlm.sentence.source.SentenceBatches) rather than B streams with the state
carried: every text starts from its own label's a<0>, which the cells' loops cannot restart
inside a window, and the whole text is back-propagated (no truncation).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from charlm.engine.batches import Evaluation
from charlm.errors import CharlmError, DataError
from charlm.lm.bayes import bayes_classify, true_label_sums
from charlm.text.vocab import Vocab

__all__ = ["LabelSet", "LabelledLine", "LabelledLines", "encode_lines", "pad_lines", "LinesValidation"]


@dataclass
class LabelSet:
    """The labels of a conditional model: label id i is names[i] (sorted); counts[i] is how many
    training texts have it, which gives the prior P(c) = counts[c] / Σ counts of the Bayes classifier."""

    names: list
    counts: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.counts = [int(c) for c in self.counts] or [1] * len(self.names)
        self.index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def count(cls, labels) -> "LabelSet":
        """The label set of the training labels (names, one per text)."""
        counts = Counter(labels)
        names = sorted(counts)
        return cls(names, [counts[n] for n in names])

    def __len__(self) -> int:
        return len(self.names)

    def known(self) -> str:
        return ", ".join(self.names)

    def id(self, name: str) -> int:
        """The id of a label name; DataError (naming the known labels) for one the model does not have."""
        try:
            return self.index[name]
        except KeyError:
            raise DataError(f"unknown label {name!r} (the labels are: {self.known()})") from None

    def log_prior(self) -> np.ndarray:
        """log P(c) (C,) float64: the training texts' label frequencies."""
        counts = np.asarray(self.counts, dtype=np.float64)
        return np.log(counts / counts.sum())

    def to_meta(self) -> dict:
        """What a checkpoint's metadata holds: "labels" (names) and "label_counts" (the prior)."""
        return {"labels": list(self.names), "label_counts": list(self.counts)}

    @classmethod
    def from_meta(cls, meta: dict, num_labels: int) -> "LabelSet":
        """The label set `to_meta` wrote for a model of `num_labels` labels (CharlmError when unusable)."""
        names, counts = meta.get("labels"), meta.get("label_counts")
        if not (isinstance(names, list) and isinstance(counts, list) and len(names) == len(counts) == num_labels
                and len(set(map(str, names))) == num_labels
                and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)):
            raise CharlmError(f"the model's metadata does not name its {num_labels} labels and their counts")
        return cls(names, counts)


@dataclass
class LabelledLine:
    """One training text: its token ids (n,) and its label id; len() = n + 1 predictions."""

    ids: np.ndarray
    label: int

    def __len__(self) -> int:
        return len(self.ids) + 1

    # what the sentence batch source hashes (`fingerprint`): the words and the labels
    @property
    def words(self) -> np.ndarray:
        return self.ids

    @property
    def labels(self) -> tuple:
        return (self.label,)


@dataclass
class LabelledLines:
    """B texts padded to the longest, time-major: x, y (T,B) ids (x = <EOS> t1..tn, y = t1..tn <EOS>,
    padding <EOS>), mask (T,B) float64 (1 at the n + 1 real targets of a row, 0 at padding),
    labels (B,) int64. starts: None (whole texts: every row starts from its label), or in a window
    of the stream form (charlm.lm.labelstreams) (B,) bool: the rows that start from their label
    here (the others continue from the carried state)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    starts: np.ndarray | None = None

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def pad_lines(lines, eos: int) -> LabelledLines:
    """LabelledLines of a list of LabelledLine, in the order given."""
    lengths = np.array([len(line) for line in lines])
    T, B = int(lengths.max()), len(lines)
    x = np.full((T, B), eos, dtype=np.int64)
    y = np.full((T, B), eos, dtype=np.int64)
    for b, line in enumerate(lines):
        x[1:lengths[b], b] = line.ids                            # x<1> = <EOS>
        y[:lengths[b] - 1, b] = line.ids                         # y<n+1> = <EOS>
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    return LabelledLines(x, y, mask, np.array([line.label for line in lines], dtype=np.int64))


def encode_lines(token_lists, names, vocab: Vocab, labels: "LabelSet") -> list:
    """LabelledLine list: each text's token ids (`vocab`) and its label's id (DataError for a label
    `labels` does not have)."""
    return [LabelledLine(vocab.encode(t).astype(np.int64), labels.id(n)) for t, n in zip(token_lists, names)]


class LinesValidation:
    """Validation texts scored given their own labels: Evaluation.loss = objective = nats per
    prediction (tokens + <EOS>), as the training loss. With `log_prior` (C,) also metrics
    "val_accuracy" of the Bayes classifier (C times the work). With several processes each scores
    every comm.size-th text and the sums are reduced."""

    def __init__(self, vocab: Vocab, token_lists: list, labels: np.ndarray, log_prior=None, batch_size: int = 64):
        self.vocab, self.token_lists, self.labels = vocab, token_lists, np.asarray(labels)
        self.log_prior, self.batch_size = log_prior, batch_size

    def evaluate(self, model, comm) -> Evaluation:
        mine = range(comm.rank, len(self.token_lists), comm.size)
        tokens = [self.token_lists[i] for i in mine]
        labels = self.labels[list(mine)]
        nats, count = true_label_sums(model, self.vocab, tokens, labels, self.batch_size)
        sums = [nats.sum(), count.sum()]
        if self.log_prior is not None:
            guess = bayes_classify(model, self.vocab, tokens, self.log_prior, self.batch_size).labels
            sums += [float((guess == labels).sum()), len(tokens)]
        sums = comm.allreduce(np.array(sums, dtype=np.float64))
        loss = float(sums[0] / max(sums[1], 1.0))
        metrics = {} if self.log_prior is None else {"val_accuracy": float(sums[2] / max(sums[3], 1.0))}
        return Evaluation(loss, loss, metrics)
