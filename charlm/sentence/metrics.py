"""Evaluation metrics of the tagging and classification tasks.

Tagging:
    token accuracy = correct tags / tokens
    per tag:  precision = tokens rightly given the tag / tokens given it,
              recall    = tokens rightly given the tag / tokens that have it,
              F1        = 2 P R / (P + R)   (0 when P + R = 0)
    entities: precision, recall and F1 over whole entities, overall and per type, counted exactly
              as the CoNLL `conlleval` script counts them (see `conlleval_counts`).
Classification:
    accuracy, per-class precision/recall/F1, macro-F1 (the unweighted mean of the per-class F1
    over every class that occurs in the gold labels or the predictions), and the confusion
    matrix (rows: gold label, columns: predicted label).

Labels are compared as strings, so gold labels a model never saw simply count as errors.
Every count is a plain integer, so the counts of several shares of a data set add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from charlm.sentence.labels import split_tag


def prf(correct: int, predicted: int, gold: int) -> dict:
    """{"precision", "recall", "f1", "support"} from counts (0.0 where a denominator is 0)."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": gold}


# ------------------------------------------------------------------------------ entities


@dataclass
class EntityCounts:
    """conlleval's counts: chunks found correctly, guessed and in the gold data (overall and
    per type), and tokens with their tag right."""

    correct: int = 0
    guessed: int = 0
    gold: int = 0
    tokens: int = 0
    correct_tags: int = 0
    per_type: dict = field(default_factory=dict)  # type -> [correct, guessed, gold]

    def _bump(self, kind: str, slot: int) -> None:
        self.per_type.setdefault(kind, [0, 0, 0])[slot] += 1

    def add(self, other: "EntityCounts") -> None:
        self.correct += other.correct
        self.guessed += other.guessed
        self.gold += other.gold
        self.tokens += other.tokens
        self.correct_tags += other.correct_tags
        for kind, counts in other.per_type.items():
            mine = self.per_type.setdefault(kind, [0, 0, 0])
            for i in range(3):
                mine[i] += counts[i]

    def report(self) -> dict:
        """{"accuracy", "precision", "recall", "f1", "per_type": {type: P/R/F1/support/predicted}}."""
        overall = prf(self.correct, self.guessed, self.gold)
        per_type = {}
        for kind in sorted(self.per_type):
            c, g, n = self.per_type[kind]
            per_type[kind] = dict(prf(c, g, n), predicted=g)
        return {"accuracy": self.correct_tags / self.tokens if self.tokens else 0.0,
                "precision": overall["precision"], "recall": overall["recall"], "f1": overall["f1"],
                "entities": self.gold, "predicted_entities": self.guessed, "correct_entities": self.correct,
                "per_type": per_type}


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval's rule: did a chunk end between the previous token and this one?"""
    if (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"),
                           ("E", "E"), ("E", "I"), ("E", "O")}:
        return True
    return prev_tag not in ("O", ".") and prev_type != kind


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval's rule: did a chunk start between the previous token and this one?"""
    if (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"),
                           ("E", "E"), ("E", "I"), ("O", "E")}:
        return True
    return tag not in ("O", ".") and prev_type != kind


def conlleval_counts(gold: Iterable[Sequence[str]], guessed: Iterable[Sequence[str]]) -> EntityCounts:
    """Count chunks and tags of sentences the way `conlleval` (CoNLL 2000-2003) does.

    conlleval reads (gold, guessed) tag pairs token by token. A tag splits at its first "-" into a
    chunk tag (B, I, E, O) and a type. A sentence boundary counts as a token tagged O in both
    columns (not counted as a token). A gold chunk and a guessed chunk that start on the same
    token with the same type are "correct so far"; the pair is counted correct when both end on
    the same token with the same type, and drops out as soon as one ends without the other or the
    types differ. A chunk still open at the end of the input is closed there. Schemes with S- tags
    (IOBES) must be converted first (`labels.convert(tags, "IOB2")`): conlleval does not know S-.
    """
    counts = EntityCounts()
    last_gold, last_guess, last_gold_type, last_guess_type = "O", "O", "", ""
    in_correct = False

    def step(g_tag: str, g_type: str, p_tag: str, p_type: str, is_token: bool) -> None:
        nonlocal last_gold, last_guess, last_gold_type, last_guess_type, in_correct
        g_end = _end_of_chunk(last_gold, g_tag, last_gold_type, g_type)
        p_end = _end_of_chunk(last_guess, p_tag, last_guess_type, p_type)
        if in_correct:
            if g_end and p_end and last_guess_type == last_gold_type:
                in_correct = False
                counts.correct += 1
                counts._bump(last_gold_type, 0)
            elif g_end != p_end or p_type != g_type:
                in_correct = False
        g_start = _start_of_chunk(last_gold, g_tag, last_gold_type, g_type)
        p_start = _start_of_chunk(last_guess, p_tag, last_guess_type, p_type)
        if g_start and p_start and p_type == g_type:
            in_correct = True
        if g_start:
            counts.gold += 1
            counts._bump(g_type, 2)
        if p_start:
            counts.guessed += 1
            counts._bump(p_type, 1)
        if is_token:
            counts.tokens += 1
            counts.correct_tags += g_tag == p_tag and g_type == p_type
        last_gold, last_guess, last_gold_type, last_guess_type = g_tag, p_tag, g_type, p_type

    for g_seq, p_seq in zip(gold, guessed):
        if len(g_seq) != len(p_seq):
            raise ValueError(f"a sentence has {len(g_seq)} gold tags but {len(p_seq)} predicted ones")
        for g, p in zip(g_seq, p_seq):
            step(*split_tag(g), *split_tag(p), True)
        step("O", "", "O", "", False)  # the sentence boundary
    if in_correct:
        counts.correct += 1
        counts._bump(last_gold_type, 0)
    return counts


# ---------------------------------------------------------------------------------- tags


def tag_counts(gold: Iterable[Sequence[str]], guessed: Iterable[Sequence[str]]) -> dict:
    """{"tokens", "correct", "per_tag": {tag: [correct, predicted, gold]}} over sentences."""
    tokens = correct = 0
    per_tag: dict = {}
    for g_seq, p_seq in zip(gold, guessed):
        if len(g_seq) != len(p_seq):
            raise ValueError(f"a sentence has {len(g_seq)} gold tags but {len(p_seq)} predicted ones")
        for g, p in zip(g_seq, p_seq):
            tokens += 1
            per_tag.setdefault(g, [0, 0, 0])[2] += 1
            per_tag.setdefault(p, [0, 0, 0])[1] += 1
            if g == p:
                correct += 1
                per_tag[g][0] += 1
    return {"tokens": tokens, "correct": correct, "per_tag": per_tag}


def tag_report(gold: Sequence[Sequence[str]], guessed: Sequence[Sequence[str]]) -> dict:
    """{"tokens", "accuracy", "per_tag": {tag: {"precision", "recall", "f1", "support",
    "predicted"}}} (tags sorted)."""
    c = tag_counts(gold, guessed)
    per_tag = {t: dict(prf(*c["per_tag"][t]), predicted=c["per_tag"][t][1]) for t in sorted(c["per_tag"])}
    return {"tokens": c["tokens"], "accuracy": c["correct"] / c["tokens"] if c["tokens"] else 0.0,
            "per_tag": per_tag}


# ------------------------------------------------------------------------ classification


def classification_report(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = ()) -> dict:
    """{"examples", "accuracy", "macro_f1", "per_class": {label: P/R/F1/support/predicted},
    "labels": [...], "confusion": [[...]]}.

    `labels` fixes the order of the confusion matrix (e.g. the model's labels); labels that occur
    in the data or predictions but not in `labels` are appended, sorted.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    order = list(labels) + sorted((set(gold) | set(predicted)) - set(labels))
    index = {label: i for i, label in enumerate(order)}
    confusion = [[0] * len(order) for _ in order]
    for g, p in zip(gold, predicted):
        confusion[index[g]][index[p]] += 1
    return confusion_report(order, confusion)


def confusion_report(order: Sequence[str], confusion) -> dict:
    """The report of `classification_report` from a confusion matrix (rows gold, columns
    predicted, in `order`): counts of several shares of a data set add up before this."""
    confusion = [[int(x) for x in row] for row in confusion]
    total = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(len(order)))
    per_class = {}
    for i, label in enumerate(order):
        gold_n = sum(confusion[i])
        pred_n = sum(row[i] for row in confusion)
        if gold_n or pred_n:
            per_class[label] = dict(prf(confusion[i][i], pred_n, gold_n), predicted=pred_n)
    return {"examples": total, "accuracy": correct / total if total else 0.0,
            "macro_f1": sum(c["f1"] for c in per_class.values()) / len(per_class) if per_class else 0.0,
            "per_class": per_class, "labels": list(order), "confusion": confusion}
