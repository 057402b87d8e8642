"""Sentences -> padded, time-major batches for the sentence networks (`sentence.network`).

A sentence is encoded (`sentence.encoder.Encoder`) as an `EncodedSentence`: word ids, the
character ids of each word and, when training, its labels. `pad_sentences` (through `make_batch`
for encoded sentences) is the one place that pads sentences into a `SentenceBatch`; the networks
widen a batch with `aligned` so that every matrix product has a multiple of ROW_ALIGN rows (see
`sentence.network`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from charlm.errors import DataError
from charlm.nn.padded import widen



@dataclass
class EncodedSentence:
    """words (n,) int64 word ids; chars: n arrays of char ids; labels (n,) int64 (tags), an int
    (a class) or None; features (n, F) float: the words' language-model features (`Encoder.features`)
    or None."""

    words: np.ndarray
    chars: list
    labels: object = None
    features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class SentenceBatch:
    """B sentences padded to the longest (T words), time-major.

    words (T,B) int: word ids, padding 0          lengths (B,) int: words per sentence (>= 1)
    mask (T,B) float64: 1.0 real, 0.0 padding
    chars (Lc,W) int: character ids of the W distinct words (distinct by spelling), padded with 0
    char_lengths (W,) int                          word_index (T,B) int: the word at (t, b) among the W
    labels: (T,B) int tag ids (padding 0) for tagging, (B,) int for classification, or None
    features: (T,B,F) float, each word's language-model features (padding 0), or None
    Without character ids chars is (0, 0), char_lengths (0,) and word_index all 0.
    """

    words: np.ndarray
    lengths: np.ndarray
    mask: np.ndarray
    chars: np.ndarray
    char_lengths: np.ndarray
    word_index: np.ndarray
    labels: np.ndarray | None = None
    features: np.ndarray | None = None

    @property
    def size(self) -> int:
        """B, the number of sentences."""
        return int(self.lengths.shape[0])

    @property
    def tokens(self) -> int:
        """Real (unpadded) words in the batch."""
        return int(self.lengths.sum())


def pad_sentences(word_ids, char_ids=None, labels=None, features=None) -> SentenceBatch:
    """A `SentenceBatch` of the sentences in the order given (the caller sorts or buckets): the one
    place that pads sentences into a batch.

    word_ids: list of B 1-D int arrays; char_ids: None or, per sentence, a list with the 1-D int
    array of each word's character ids; labels: None, or per sentence a 1-D int array of tag ids
    (tagging) or one int (classification); features: None or per sentence an (n, F) float array.
    Inconsistent input raises DataError.
    """
    sents = [np.asarray(w, dtype=np.int64).reshape(-1) for w in word_ids]
    if not sents:
        raise DataError("no sentences to batch")
    lengths = np.array([len(s) for s in sents], dtype=np.int64)
    if (lengths == 0).any():
        raise DataError(f"sentence {int(np.argmin(lengths)) + 1} of the batch has no words")
    T, B = int(lengths.max()), len(sents)
    words = np.zeros((T, B), dtype=np.int64)
    for b, s in enumerate(sents):
        words[:len(s), b] = s
    mask = (np.arange(T)[:, None] < lengths).astype(np.float64)
    chars, char_lengths, word_index = _distinct_words(char_ids, lengths, T)
    return SentenceBatch(words, lengths, mask, chars, char_lengths, word_index, _pad_labels(labels, lengths),
                         _pad_features(features, lengths))


def make_batch(sentences: Sequence[EncodedSentence], with_labels: bool = True) -> SentenceBatch:
    """The padded batch of encoded sentences (`pad_sentences`), in the given order; their labels
    too when they have them and `with_labels`."""
    labels = [s.labels for s in sentences] if with_labels and sentences[0].labels is not None else None
    features = [s.features for s in sentences] if sentences[0].features is not None else None
    return pad_sentences([s.words for s in sentences], [s.chars for s in sentences], labels, features)


def _distinct_words(char_ids, lengths: np.ndarray, T: int):
    """-> chars (Lc, W), char_lengths (W,), word_index (T, B) of the distinct spellings, in order of
    first occurrence."""
    B = len(lengths)
    word_index = np.zeros((T, B), dtype=np.int64)
    if char_ids is None:
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64), word_index
    if len(char_ids) != B:
        raise DataError(f"{B} sentences but character ids for {len(char_ids)}")
    index: dict[bytes, int] = {}
    spellings: list[np.ndarray] = []
    for b, sentence in enumerate(char_ids):
        if len(sentence) != lengths[b]:
            raise DataError(f"sentence {b + 1} has {lengths[b]} words but {len(sentence)} character sequences")
        for t, cs in enumerate(sentence):
            cs = np.asarray(cs, dtype=np.int64).reshape(-1)
            if cs.size == 0:
                raise DataError(f"word {t + 1} of sentence {b + 1} has no characters")
            i = index.setdefault(cs.tobytes(), len(spellings))
            if i == len(spellings):
                spellings.append(cs)
            word_index[t, b] = i
    char_lengths = np.array([len(cs) for cs in spellings], dtype=np.int64)
    chars = np.zeros((int(char_lengths.max()), len(spellings)), dtype=np.int64)
    for w, cs in enumerate(spellings):
        chars[:len(cs), w] = cs
    return chars, char_lengths, word_index


def _pad_labels(labels, lengths: np.ndarray):
    """(T,B) tag ids, padding 0, for a tag array per sentence; (B,) for one label per sentence."""
    if labels is None:
        return None
    B = len(lengths)
    if len(labels) and np.ndim(labels[0]) == 0:                     # one label per sentence
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape != (B,):
            raise DataError(f"{B} sentences but {y.size} labels")
        return y
    if len(labels) != B:
        raise DataError(f"{B} sentences but tags for {len(labels)}")
    y = np.zeros((int(lengths.max()), B), dtype=np.int64)
    for b, tags in enumerate(labels):
        tags = np.asarray(tags, dtype=np.int64).reshape(-1)
        if len(tags) != lengths[b]:
            raise DataError(f"sentence {b + 1} has {lengths[b]} words but {len(tags)} tags")
        y[:len(tags), b] = tags
    return y


def _pad_features(features, lengths: np.ndarray):
    """(T,B,F) features, padding 0, of an (n, F) array per sentence; None for None."""
    if features is None:
        return None
    if len(features) != len(lengths):
        raise DataError(f"{len(lengths)} sentences but features for {len(features)}")
    F = np.shape(features[0])[-1]
    out = np.zeros((int(lengths.max()), len(lengths), F), dtype=np.asarray(features[0]).dtype)
    for b, f in enumerate(features):
        if np.shape(f) != (lengths[b], F):
            raise DataError(f"sentence {b + 1} has {lengths[b]} words but features of shape {np.shape(f)}")
        out[:lengths[b], b] = f
    return out


def aligned(batch: SentenceBatch) -> SentenceBatch:
    """The batch widened to a multiple of ROW_ALIGN sentences and distinct words: dummy sentences of
    one word (id 0, mask 0) and dummy words of one character (id 0) nothing points at."""
    B, W = batch.size, batch.char_lengths.shape[0]
    pad_b, pad_w = widen(B) - B, widen(W) - W
    if pad_b == 0 and pad_w == 0:
        return batch
    cols = ((0, 0), (0, pad_b))
    labels, features = batch.labels, batch.features
    if labels is not None:
        labels = np.pad(labels, cols if labels.ndim == 2 else (0, pad_b))
    if features is not None:
        features = np.pad(features, (*cols, (0, 0)))
    return SentenceBatch(
        np.pad(batch.words, cols), np.concatenate([batch.lengths, np.ones(pad_b, dtype=np.int64)]),
        np.pad(batch.mask, cols), np.pad(batch.chars, ((0, 0), (0, pad_w))),
        np.concatenate([batch.char_lengths, np.ones(pad_w, dtype=np.int64)]), np.pad(batch.word_index, cols),
        labels, features)
