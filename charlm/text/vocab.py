"""The vocabulary: tokens <-> integer ids, and its JSON file.

A language model sees a corpus as a sequence of tokens, each mapped to an integer id
by a `Vocab`. Two special tokens are always present: `<UNK>` (id 0) stands for every
token the vocabulary does not know, and `<EOS>` (id 1) ends a sentence.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError, UsageError
from charlm.files import VOCAB_FORMAT
from charlm.text.tokenizer import TokenizerConfig

UNK = "<UNK>"
EOS = "<EOS>"
UNK_LITERALS = frozenset({"<unk>", "<UNK>"})  # how corpora such as PTB spell an unknown word

VOCAB_VERSION = 1


class Vocab:
    """Token <-> id. Id 0 is <UNK>, id 1 is <EOS>, then the tokens by count descending,
    ties broken by the token (code point order). `counts[i]` is how often token i was
    seen in the training text; counts[0] counts every training token that maps to <UNK>
    (literal <unk>s and the tokens cut by min_count/max_vocab)."""

    def __init__(
        self,
        tokens: list[str],
        counts: list[int],
        tokenizer: TokenizerConfig | None = None,
        min_count: int = 1,
        max_vocab: int | None = None,
    ):
        _check_limits(min_count, max_vocab)
        if len(tokens) < 2 or tokens[0] != UNK or tokens[1] != EOS:
            raise CharlmError(f"invalid vocabulary: it must start with {UNK}, {EOS}")
        if len(counts) != len(tokens):
            raise CharlmError("invalid vocabulary: tokens and counts differ in length")
        self.tokens = list(tokens)
        self.counts = [int(c) for c in counts]
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise CharlmError("invalid vocabulary: a token appears twice")
        self.tokenizer = tokenizer if tokenizer is not None else TokenizerConfig()
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.unk_id = 0
        self.eos_id = 1

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        min_count: int = 1,
        max_vocab: int | None = None,
        tokenizer: TokenizerConfig | None = None,
    ) -> "Vocab":
        """Keep the tokens seen at least `min_count` times, at most `max_vocab` entries
        in all (the two specials included). A count for "<EOS>" is the number of
        sentences; literal "<unk>"/"<UNK>" tokens count as <UNK>."""
        _check_limits(min_count, max_vocab)
        unk = sum(counts.get(t, 0) for t in UNK_LITERALS)
        eos = counts.get(EOS, 0)
        ranked = sorted(
            ((t, c) for t, c in counts.items() if t not in UNK_LITERALS and t != EOS and c > 0),
            key=lambda tc: (-tc[1], tc[0]),
        )
        keep = [(t, c) for t, c in ranked if c >= min_count]
        if max_vocab is not None:
            keep = keep[: max_vocab - 2]
        unk += sum(c for _, c in ranked) - sum(c for _, c in keep)
        return cls(
            [UNK, EOS] + [t for t, _ in keep],
            [unk, eos] + [c for _, c in keep],
            tokenizer=tokenizer,
            min_count=min_count,
            max_vocab=max_vocab,
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, {self.tokenizer.describe()})"

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of `tokens`, shape (len(tokens),), int32; unknown tokens -> unk_id."""
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids` (any iterable of ints, e.g. a 1-D array)."""
        n = len(self.tokens)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise CharlmError(f"token id {i} is out of range for a vocabulary of {n}")
            out.append(self.tokens[i])
        return out

    # saving and loading -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "tokenizer": self.tokenizer.to_dict(),
            "min_count": self.min_count,
            "max_vocab": self.max_vocab,
            "tokens": list(self.tokens),
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Vocab":
        """Re-create a vocabulary from `to_dict`; CharlmError on anything malformed."""
        if not isinstance(d, Mapping) or d.get("format") != VOCAB_FORMAT:
            raise CharlmError(f"not a charlm vocabulary (no \"format\": \"{VOCAB_FORMAT}\")")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CharlmError("invalid vocabulary: bad version")
        if version > VOCAB_VERSION:
            raise CharlmError(
                f"vocabulary made by a newer charlm (format {version}); upgrade charlm"
            )
        tokens, counts = d.get("tokens"), d.get("counts")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CharlmError("invalid vocabulary: tokens must be a list of strings")
        if not isinstance(counts, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
        ):
            raise CharlmError("invalid vocabulary: counts must be non-negative integers")
        min_count, max_vocab = d.get("min_count", 1), d.get("max_vocab")
        for value in (min_count, max_vocab):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise CharlmError("invalid vocabulary: min_count/max_vocab must be integers")
        tokenizer = TokenizerConfig.from_dict(d.get("tokenizer", {}))
        try:
            return cls(tokens, counts, tokenizer, min_count=min_count, max_vocab=max_vocab)
        except UsageError as err:
            raise CharlmError(f"invalid vocabulary: {err}") from None

    def save(self, path) -> None:
        """Write the vocabulary as JSON (atomically: a temp file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, ensure_ascii=False, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except OSError as err:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise CharlmError(f"cannot write vocabulary {path}: {err.strerror or err}") from None

    @classmethod
    def load(cls, path) -> "Vocab":
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise CharlmError(f"no such vocabulary file: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CharlmError(f"cannot read vocabulary {path}: {err}") from None
        try:
            return cls.from_dict(d)
        except CharlmError as err:
            raise CharlmError(f"{path}: {err}") from None


def _check_limits(min_count: int, max_vocab: int | None) -> None:
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise UsageError(f"--min-count must be at least 1 (got {min_count})")
    if max_vocab is not None and (
        isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < 2
    ):
        raise UsageError(
            f"--max-vocab must be at least 2, for {UNK} and {EOS} (got {max_vocab})"
        )


def count_summary(counts: Mapping[str, int], vocab: Vocab, top: int = 10) -> dict:
    """Corpus statistics for `charlm tokenize --stats`.

    `counts`: raw token counts (an "<EOS>" entry, if any, is the number of sentences
    and is not a token here). Returns tokens, sentences, types, singletons, kept_types
    (types that got an id), kept_share (share of tokens they cover), oov_tokens,
    oov_rate, vocab_size and top: [(token, count)] (most frequent first)."""
    sentences = counts.get(EOS, 0)
    items = [(t, c) for t, c in counts.items() if t != EOS and c > 0]
    total = sum(c for _, c in items)
    kept = [(t, c) for t, c in items if t in vocab.index]
    kept_tokens = sum(c for _, c in kept)
    ranked = sorted(items, key=lambda tc: (-tc[1], tc[0]))
    return {
        "tokens": total,
        "sentences": sentences,
        "types": len(items),
        "singletons": sum(1 for _, c in items if c == 1),
        "kept_types": len(kept),
        "kept_share": kept_tokens / total if total else 0.0,
        "oov_tokens": total - kept_tokens,
        "oov_rate": (total - kept_tokens) / total if total else 0.0,
        "vocab_size": len(vocab),
        "top": ranked[:top],
    }
