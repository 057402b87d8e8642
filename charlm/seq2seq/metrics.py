"""How good the outputs of a sequence-to-sequence model are, against one or several references.

For each example: the prediction y (tokens) and its references r_1..r_m (tokens):

    correct   y equals one of the references (sequence accuracy; the word error rate of the G2P
              literature is its complement: a word is wrong when its pronunciation is none of
              the dictionary's)
    edits     min_j edit(y, r_j), the Levenshtein distance (substitutions, insertions and
              deletions of whole tokens, each 1) to the closest reference; its `length` is that
              reference's (the first such in file order)

Over a corpus: sequence_accuracy = Σ correct / N, wer = 1 − sequence_accuracy, token_error_rate =
Σ edits / Σ length (the phone error rate for phone targets, the character error rate for
characters). `Counts` are sums, so shares of a validation set on several processes add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["edit_distance", "Counts", "closest"]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two token sequences (each substitution, insertion, deletion 1).
    One row of the table at a time, vectorised over b: d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1,
    d[i-1][j-1] + (a_i ≠ b_j)); the insertions along a row are a running minimum."""
    b_arr = np.empty(len(b), dtype=object)
    b_arr[:] = list(b)
    row = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        diag = row[:-1] + (b_arr != x)                # d[i-1][j-1] + cost, j = 1..n
        up = row[1:] + 1                               # d[i-1][j] + 1
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(diag, up)
        # d[i][j] = min(new[j], d[i][j-1] + 1): new[j] - j's running minimum, + j
        row = np.minimum.accumulate(new - np.arange(len(row))) + np.arange(len(row))
    return int(row[-1])


def closest(prediction: Sequence, references: Sequence[Sequence]) -> tuple[int, int]:
    """(edits, length) against the closest reference: the fewest edits, the first on ties."""
    best = min(range(len(references)), key=lambda j: (edit_distance(prediction, references[j]), j))
    return edit_distance(prediction, references[best]), len(references[best])


@dataclass
class Counts:
    """Summable counts of a set of predictions (see the module docstring)."""

    examples: int = 0
    correct: int = 0
    edits: int = 0
    length: int = 0

    def add(self, prediction: Sequence, references: Sequence[Sequence]) -> None:
        self.examples += 1
        self.correct += any(list(prediction) == list(r) for r in references)
        edits, length = closest(prediction, references)
        self.edits += edits
        self.length += length

    def to_array(self) -> np.ndarray:
        return np.array([self.examples, self.correct, self.edits, self.length], dtype=np.float64)

    @classmethod
    def from_array(cls, a) -> "Counts":
        return cls(*(int(round(x)) for x in a))

    @property
    def sequence_accuracy(self) -> float:
        return self.correct / self.examples if self.examples else 0.0

    @property
    def wer(self) -> float:
        return 1.0 - self.sequence_accuracy

    @property
    def token_error_rate(self) -> float:
        return self.edits / self.length if self.length else 0.0
