"""Sentences -> the inputs of a tagger or classifier.

A tagging or classification model reads each sentence as word ids (the word vocabulary), the
character ids of every word (the character vocabulary, for the character encoder) and, when
training, label ids (the label set). `Encoder` holds the three and turns token lists into
`EncodedSentence`s (`sentence.batch.make_batch` pads those into batches).

Words are looked up as written, or lowercased when the tokenizer says `lowercase`; the character
encoder always sees the word as written (case is a strong cue for names). Words longer than
MAX_WORD_CHARS characters keep their first and last MAX_WORD_CHARS / 2 characters.

The labels are a tag per token (`per_token`: a tagger) or one per sentence (a classifier). For
entity tags the labels are the tags in the scheme the model learns (`labels.training_scheme`:
IOB2, or IOBES for IOBES data); `scheme` remembers the scheme of the training data, in which
`charlm tag` and `charlm eval` report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from charlm.errors import CharlmError, DataError
from charlm.sentence.batch import EncodedSentence
from charlm.sentence.labels import SCHEMES, convert, is_entity_tag, training_scheme
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import Vocab

MAX_WORD_CHARS = 32


@dataclass
class Encoder:
    """The vocabularies and label set of a tagger (`per_token`) or classifier."""

    per_token: bool  # a label per token (tags), else one per sentence (a class)
    vocab: Vocab  # words; its tokenizer cuts raw text
    chars: Vocab  # characters
    labels: list  # label i is class/tag id i (entity tags in the model's scheme)
    scheme: str | None = None  # entity scheme of the training data (tag task), else None
    features: object = None  # words -> contextual features: called with token lists, gives an (n, F)
    #                          array per sentence (tasks/features.py `LMFeatures`, --lm-features), or None

    def __post_init__(self):
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self._char_cache: dict = {}
        self._lower = bool(self.vocab.tokenizer.lowercase)

    @property
    def model_scheme(self) -> str | None:
        """The entity scheme of the model's labels (IOB2/IOBES), None for other tags/classes."""
        return training_scheme(self.scheme)

    # ------------------------------------------------------------------------ text -> ids
    @staticmethod
    def text_tokenizer(config: TokenizerConfig) -> Tokenizer:
        """Cuts raw text into words as `config` says, but keeping case (see the module docstring)."""
        return Tokenizer(replace(config, lowercase=False, mode="lines"))

    def tokenizer(self) -> Tokenizer:
        """The model's `text_tokenizer`."""
        return self.text_tokenizer(self.vocab.tokenizer)

    def word_ids(self, tokens: Sequence[str]) -> np.ndarray:
        if self._lower:
            tokens = [t.lower() for t in tokens]
        return self.vocab.encode(tokens).astype(np.int64)

    def char_ids(self, token: str) -> np.ndarray:
        ids = self._char_cache.get(token)
        if ids is None:
            cut = token if len(token) <= MAX_WORD_CHARS else \
                token[:MAX_WORD_CHARS // 2] + token[-(MAX_WORD_CHARS // 2):]
            ids = self.chars.encode(list(cut)).astype(np.int64)
            self._char_cache[token] = ids
        return ids

    def model_labels(self, gold: Sequence[str]) -> list[str]:
        """Gold tags (data scheme) of one sentence in the model's scheme (unchanged for non-entity
        tags and for classification)."""
        if self.model_scheme and all(map(is_entity_tag, gold)):
            return convert(gold, self.model_scheme)
        return list(gold)

    def report_labels(self, predicted: Sequence[str]) -> list[str]:
        """Predicted tags of one sentence (model scheme) in the data's scheme."""
        return convert(predicted, self.scheme) if self.model_scheme else list(predicted)

    def encode(self, tokens: Sequence[str], gold=None) -> EncodedSentence:
        """A sentence's ids; `gold` (tags in the data's scheme, or a class label) when training.
        A gold label the model does not know raises DataError."""
        labels = None
        if gold is not None:
            if self.per_token:
                labels = np.array([self._label_id(t) for t in self.model_labels(gold)], dtype=np.int64)
            else:
                labels = self._label_id(gold)
        return EncodedSentence(self.word_ids(tokens), [self.char_ids(t) for t in tokens], labels)

    def encode_all(self, token_lists: Sequence[Sequence[str]], gold=None) -> list[EncodedSentence]:
        """`encode` of each sentence (with its gold labels when `gold` is given); with `features`,
        each also gets its (n, F) features, computed for all the sentences at once."""
        golds = [None] * len(token_lists) if gold is None else gold
        out = [self.encode(t, g) for t, g in zip(token_lists, golds)]
        if self.features is not None:
            for s, f in zip(out, self.features(token_lists)):
                s.features = f
        return out

    def unknown_labels(self, gold) -> list[str]:
        """Gold tags (a list per sentence, data scheme) or labels the model cannot predict, sorted."""
        seen = {t for tags in gold for t in self.model_labels(tags)} if self.per_token else set(gold)
        return sorted(seen - set(self.labels))

    def _label_id(self, name: str) -> int:
        try:
            return self.label_index[name]
        except KeyError:
            raise DataError(f"unknown label {name!r}") from None

    # ------------------------------------------------------------------------ checkpoints
    def to_meta(self) -> dict:
        """What a checkpoint holds besides the word vocabulary (meta["vocab"])."""
        meta = {"char_vocab": self.chars.to_dict(), "labels": list(self.labels), "tag_scheme": self.scheme}
        if self.features is not None:
            meta["lm_features"] = self.features.to_meta()
        return meta

    @classmethod
    def from_meta(cls, per_token: bool, vocab: Vocab, meta: dict, char_vocab: Vocab | None = None) -> "Encoder":
        """The encoder of a loaded model (CharlmError when the metadata is unusable). A model without
        a character encoder may have no character vocabulary (it reads no characters)."""
        try:
            if char_vocab is None and meta.get("char_vocab") is None:
                char_vocab = Vocab.from_counts({}, tokenizer=TokenizerConfig(level="char"))
            chars = char_vocab if char_vocab is not None else Vocab.from_dict(meta["char_vocab"])
            labels = [str(x) for x in meta["labels"]]
        except (KeyError, TypeError) as err:
            raise CharlmError(f"no usable {err} in the model's metadata") from None
        scheme = meta.get("tag_scheme")
        return cls(per_token, vocab, chars, labels, scheme if scheme in SCHEMES else None)

    # ------------------------------------------------------------------------ building
    @classmethod
    def build(cls, per_token: bool, token_lists, gold, tokenizer: TokenizerConfig, scheme: str | None = None,
              min_count: int = 1, max_vocab: int | None = None) -> "Encoder":
        """The vocabularies and label set of a training set: `token_lists` (sentences), `gold` (a tag
        list per sentence in `scheme`, or a label per example)."""
        words = Counter(t.lower() if tokenizer.lowercase else t for toks in token_lists for t in toks)
        vocab = Vocab.from_counts(words, min_count=min_count, max_vocab=max_vocab, tokenizer=tokenizer)
        chars = Vocab.from_counts(Counter(c for toks in token_lists for t in toks for c in t),
                                  tokenizer=TokenizerConfig(level="char"))
        model_scheme = training_scheme(scheme)
        if per_token:
            names = {t for tags in gold for t in (convert(tags, model_scheme) if model_scheme else tags)}
        else:
            names = set(gold)
        return cls(per_token, vocab, chars, sorted(names), scheme)
