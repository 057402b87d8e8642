"""Running a trained tagger or classifier: token lists in, tags or labels (with probabilities) out,
and the metrics of labelled sentences (`evaluate_tags`, `evaluate_labels`; the tasks read the
files, tasks/tag.py and tasks/classify.py).

Sentences are encoded (`sentence.encoder.Encoder`), sorted by length into batches (little padding),
run through `model.log_probs` and put back in input order. Tags are decoded per sentence: entity tags
with a Viterbi search over the transitions the model's scheme allows (`sentence.decode`), so the
output is never an invalid sequence such as I-PER right after O in IOB2; other tags by argmax. They
are reported in the scheme of the training data. The probability given with a tag is the model's
softmax probability of the tag it decoded at that token (in the model's scheme). A CRF tagger
(`--crf`) decodes with its own Viterbi search (learned transitions, never a forbidden one) and gives
the marginal P(y<t> = tag | sentence) of its forward-backward algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from charlm.errors import UsageError
from charlm.sentence.batch import EncodedSentence, make_batch
from charlm.sentence.decode import decode_batch, label_constraints
from charlm.sentence.encoder import Encoder
from charlm.sentence.labels import SCHEMES, chunks, convert
from charlm.sentence.metrics import classification_report, conlleval_counts, tag_report

BATCH_SIZE = 64
MAX_LENGTH = 512  # tokens per example a tagger or classifier reads at once (--max-length)


def split_long(items: list, n: int) -> list[list]:
    """`items` in consecutive pieces of at most n (one piece when it is not longer)."""
    return [items[i:i + n] for i in range(0, len(items), n)] or [items]


@dataclass
class Tagged:
    """One tagged sentence: tokens, tags (data scheme), probs[i] = P(model's tag at token i)."""

    tokens: list
    tags: list
    probs: list

    def spans(self) -> list[tuple[str, str, int, int]]:
        """Entities as (text, type, start, end), tokens start..end-1 (entity tags only)."""
        return [(" ".join(self.tokens[s:e]), kind, s, e) for kind, s, e in chunks(self.tags)]

    def to_dict(self, spans: bool = False) -> dict:
        """The object `charlm tag --json` prints for the sentence (probabilities rounded to 6 places);
        spans=True adds its entities (`--spans`): "spans": [{"text", "type", "start", "end"}, ...]."""
        d = {"tokens": self.tokens, "tags": self.tags, "probs": [round(p, 6) for p in self.probs]}
        if spans:
            d["spans"] = [{"text": t, "type": k, "start": s, "end": e} for t, k, s, e in self.spans()]
        return d


@dataclass
class Classified:
    """One classified text: the label, its probability and every label's probability (best first)."""

    text: str
    label: str
    prob: float
    probs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The object `charlm classify --json` prints for the text (probabilities rounded to 6 places)."""
        return {"text": self.text, "label": self.label, "prob": round(self.prob, 6),
                "probs": {k: round(v, 6) for k, v in self.probs.items()}}


class Predictor:
    """A loaded tagger or classifier with its `Encoder`."""

    def __init__(self, model, encoder: Encoder, batch_size: int = BATCH_SIZE, meta: dict | None = None):
        self.model, self.encoder, self.batch_size = model, encoder, int(batch_size)
        self.meta = meta or {}  # the model file's metadata, when loaded from one
        options = (self.meta.get("train") or {}).get("options") or {}
        # tokens per sentence the network reads at once: longer sentences are tagged in pieces,
        # longer texts classified by their first max_length tokens (memory stays bounded)
        self.max_length = int(options.get("max_length") or MAX_LENGTH)
        self.truncated = 0  # texts classified by their first max_length tokens so far
        self.constraints = label_constraints(encoder.labels, encoder.scheme)

    def token_lists(self, texts: Sequence) -> list[list[str]]:
        """The tokens of each text: a str is cut by the model's tokenizer (`Encoder.tokenizer`), a
        list of tokens is taken as it is; a text without tokens is a UsageError."""
        cut = self.encoder.tokenizer().tokenize
        item, verb = ("sentence", "tag") if self.encoder.per_token else ("text", "classify")
        out = []
        for i, text in enumerate(texts, 1):
            if isinstance(text, str):
                tokens = cut(text)
            elif isinstance(text, (list, tuple)) and all(isinstance(t, str) and t for t in text):
                tokens = list(text)
            else:
                raise UsageError(f"expected a text (str) or a list of tokens (non-empty str), got {text!r:.60}")
            if not tokens:
                raise UsageError(f"{item} {i} is empty: nothing to {verb}")
            out.append(tokens)
        return out

    def need_entity_tags(self, option: str) -> None:
        """UsageError unless the model's tags are entity tags (`option` needs them)."""
        labels = self.encoder.labels
        if not self.encoder.model_scheme:
            raise UsageError(f"{option} needs entity tags (B-/I-... ); this model's tags are not: "
                             f"{', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}")

    def tag_column(self) -> str | None:
        """The --tag-column the model was trained with (None: the format's default)."""
        return ((self.meta.get("train") or {}).get("options") or {}).get("tag_column")

    def _batches(self, encoded: Sequence[EncodedSentence]):
        """(indices (B,), SentenceBatch, lengths (B,)) of `encoded` sorted by length, batch_size at a time."""
        lengths = np.array([len(s) for s in encoded], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield idx, make_batch([encoded[j] for j in idx], with_labels=False), lengths[idx]

    def log_probs(self, encoded: Sequence[EncodedSentence]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(indices (B,), log_probs, lengths (B,)) for length-sorted batches of `encoded`;
        log_probs (T, B, K) for a tagger, (B, K) for a classifier."""
        for idx, batch, lengths in self._batches(encoded):
            yield idx, self.model.log_probs(batch), lengths

    def tagged(self, encoded: Sequence[EncodedSentence]) -> Iterator[tuple[np.ndarray, np.ndarray, list]]:
        """(indices (B,), log_probs (T,B,K), tag ids of each sentence: B arrays (L_b,)) for length-sorted
        batches of `encoded`: the tags decoded from ŷ<t> (constrained for entity tags), or a CRF
        tagger's Viterbi paths with its marginals as log_probs."""
        for idx, batch, lengths in self._batches(encoded):
            if self.model.config.crf:
                yield (idx, *self.model.crf_decode(batch))
            else:
                lp = self.model.log_probs(batch)
                yield idx, lp, decode_batch(lp, lengths, self.constraints)

    def tag(self, token_lists: Sequence[Sequence[str]], scheme: str | None = None) -> list[Tagged]:
        """Tags of each sentence (a non-empty token list), in input order; entity tags in `scheme`
        ("iob1", "iob2", "iobes"; default: the training data's)."""
        if scheme:
            if scheme.upper() not in SCHEMES:
                raise UsageError(f"--scheme must be one of {', '.join(s.lower() for s in SCHEMES)} (got {scheme!r})")
            self.need_entity_tags("--scheme")
        enc = self.encoder
        pieces = [(i, piece) for i, tokens in enumerate(token_lists)
                  for piece in split_long(list(tokens), self.max_length)]
        encoded = enc.encode_all([piece for _, piece in pieces])
        names: list = [[] for _ in token_lists]
        probs: list = [[] for _ in token_lists]
        done: list = [None] * len(encoded)
        for idx, lp, paths in self.tagged(encoded):
            for b, (j, ids) in enumerate(zip(idx, paths)):
                done[j] = ([enc.labels[k] for k in ids], np.exp(lp[np.arange(len(ids)), b, ids].astype(np.float64)))
        for (i, _), (piece_names, piece_probs) in zip(pieces, done):  # pieces in order
            names[i] += piece_names
            probs[i] += piece_probs.tolist()
        return [Tagged(list(tokens), convert(n, scheme.upper()) if scheme else enc.report_labels(n), p)
                for tokens, n, p in zip(token_lists, names, probs)]

    def classify(self, token_lists: Sequence[Sequence[str]], texts: Sequence[str] | None = None,
                 top_k: int | None = None) -> list[Classified]:
        """The label of each text (given as its token list), in input order; `probs` holds the
        top_k likeliest labels (None: every label)."""
        enc = self.encoder
        self.truncated += sum(len(tokens) > self.max_length for tokens in token_lists)
        encoded = enc.encode_all([tokens[:self.max_length] for tokens in token_lists])
        texts = texts if texts is not None else [" ".join(t) for t in token_lists]
        out: list = [None] * len(encoded)
        for idx, lp, _ in self.log_probs(encoded):
            probs = np.exp(lp.astype(np.float64))
            for b, i in enumerate(idx):
                ranked = np.argsort(-probs[b], kind="stable")
                out[i] = Classified(texts[i], enc.labels[ranked[0]], float(probs[b, ranked[0]]),
                                    {enc.labels[k]: float(probs[b, k]) for k in ranked[:top_k]})
        return out


# ------------------------------------------------------------------------------ evaluation


def evaluate_tags(predictor: Predictor, token_lists, gold) -> dict:
    """Tagging metrics of sentences with gold tags (data scheme): token accuracy, per-tag
    P/R/F1 and, for entity tags, conlleval's entity P/R/F1 overall and per type. Gold tags the
    model never saw count as errors and are listed under "unknown_labels"."""
    predicted = [t.tags for t in predictor.tag(token_lists)]
    report = tag_report(gold, predicted)
    report["unknown_labels"] = predictor.encoder.unknown_labels(gold)
    if predictor.encoder.model_scheme:
        entities = conlleval_counts(gold, predicted).report()
        report.update({"entity_precision": entities["precision"], "entity_recall": entities["recall"],
                       "entity_f1": entities["f1"], "entities": entities["entities"],
                       "predicted_entities": entities["predicted_entities"],
                       "correct_entities": entities["correct_entities"],
                       "per_type": entities["per_type"], "scheme": predictor.encoder.scheme})
    return report


def evaluate_labels(predictor: Predictor, token_lists, gold: Sequence[str]) -> dict:
    """Classification metrics: accuracy, macro-F1, per-class P/R/F1 and the confusion matrix
    (rows gold, columns predicted; the model's labels first). Gold labels the model never saw
    count as errors and are listed under "unknown_labels"."""
    predicted = [c.label for c in predictor.classify(token_lists)]
    report = classification_report(gold, predicted, predictor.encoder.labels)
    report["unknown_labels"] = predictor.encoder.unknown_labels(gold)
    return report
