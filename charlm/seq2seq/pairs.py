"""Sequence-to-sequence data: SOURCE<TAB>TARGET pair files, the two vocabularies, token ids.

A pair file has one pair per line, SOURCE<TAB>TARGET, in UTF-8. Blank lines are skipped; the
whitespace around each side is stripped. A source on several lines is ONE example with several
references (CMUdict's alternative pronunciations), in the order of their lines; a line that repeats
a pair adds nothing. Every error is a `DataError` of one line that names the file and the line: a
line without a TAB or with several, an empty source or target, bytes that are not UTF-8 (found by
charlm.text.reader), a file without pairs.

Each side has its own tokenizer (`TokenizerConfig`, default characters) and vocabulary (`Vocab`: id 0
<UNK>, id 1 <EOS>, which the decoder also reads as its start token). Training uses every reference:
an example with two references is two training pairs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from charlm.errors import CharlmError, DataError
from charlm.text.reader import iter_lines, source_name
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import Vocab

__all__ = ["PairExample", "PairFile", "read_pairs", "PairVocab", "FORMAT"]

FORMAT = "SOURCE<TAB>TARGET"


@dataclass
class PairExample:
    """One source, its references (distinct, in file order) and the lines they came from."""

    source: str
    references: list[str]
    lines: list[int]


@dataclass
class PairFile:
    examples: list[PairExample]
    name: str

    @property
    def pairs(self) -> int:
        """(source, reference) pairs: what one training epoch sees."""
        return sum(len(e.references) for e in self.examples)


def _split(name: str, lineno: int, line: str) -> tuple[str, str]:
    """(source, target) of one non-blank line, or DataError naming the line."""
    tabs = line.count("\t")
    if tabs == 0:
        raise DataError(f"{name} line {lineno}: no TAB (expected {FORMAT})")
    if tabs > 1:
        raise DataError(f"{name} line {lineno}: {tabs} TABs (expected one: {FORMAT})")
    source, target = (side.strip() for side in line.split("\t"))
    if not source:
        raise DataError(f"{name} line {lineno}: an empty source (expected {FORMAT})")
    if not target:
        raise DataError(f"{name} line {lineno}: the source {source!r} has an empty target")
    return source, target


def read_pairs(source) -> PairFile:
    """Read a pair file (a path, "-" for stdin, or a file object); see the module docstring."""
    name = source_name(source)
    by_source: dict[str, PairExample] = {}
    for lineno, line in enumerate(iter_lines(source), 1):
        if not line.strip():
            continue
        src, tgt = _split(name, lineno, line)
        example = by_source.setdefault(src, PairExample(src, [], []))
        if tgt not in example.references:
            example.references.append(tgt)
            example.lines.append(lineno)
    if not by_source:
        raise DataError(f"{name} is empty: no pairs (expected {FORMAT} lines)")
    return PairFile(list(by_source.values()), name)


@dataclass
class PairVocab:
    """The source and target vocabularies (each with its tokenizer settings) of a seq2seq model."""

    source: Vocab
    target: Vocab

    def __post_init__(self):
        self._cut = {side: Tokenizer(replace(v.tokenizer, mode="lines")).tokenize
                     for side, v in (("source", self.source), ("target", self.target))}
        self._join = Tokenizer(self.target.tokenizer).detokenize

    # ---------------------------------------------------------------------------- text <-> ids
    def source_tokens(self, text: str) -> list[str]:
        return self._cut["source"](text)

    def target_tokens(self, text: str) -> list[str]:
        return self._cut["target"](text)

    def source_ids(self, text: str) -> np.ndarray:
        """x<1..Tx> (int64; unknown tokens are <UNK>)."""
        return self.source.encode(self.source_tokens(text)).astype(np.int64)

    def target_ids(self, text: str) -> np.ndarray:
        """y<1..Ty> (int64, without <EOS>; unknown tokens are <UNK>)."""
        return self.target.encode(self.target_tokens(text)).astype(np.int64)

    def unknown_source_tokens(self, text: str) -> list[str]:
        """The tokens of a source that the model reads as <UNK>, in order."""
        return [t for t in self.source_tokens(text) if t not in self.source]

    def target_text(self, ids) -> str:
        """The text of output ids (the target tokenizer's detokenize)."""
        return self._join(self.target.decode(ids))

    def training_pairs(self, file: PairFile) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(source ids, target ids) of every (source, reference) pair of a file, in file order."""
        sources, targets = [], []
        for e in file.examples:
            ids = self.source_ids(e.source)
            for ref in e.references:
                sources.append(ids)
                targets.append(self.target_ids(ref))
        return sources, targets

    # ---------------------------------------------------------------------------- building, saving
    @classmethod
    def build(cls, file: PairFile, source: TokenizerConfig | None = None, target: TokenizerConfig | None = None,
              min_count: int = 1, max_vocab: int | None = None) -> "PairVocab":
        """Both vocabularies of a training file: every source once, every reference; `min_count` and
        `max_vocab` apply to each side."""
        source, target = source or TokenizerConfig(), target or TokenizerConfig()
        cut_src = Tokenizer(replace(source, mode="lines")).tokenize
        cut_tgt = Tokenizer(replace(target, mode="lines")).tokenize
        src = Counter(t for e in file.examples for t in cut_src(e.source))
        tgt = Counter(t for e in file.examples for r in e.references for t in cut_tgt(r))
        return cls(Vocab.from_counts(src, min_count, max_vocab, tokenizer=source),
                   Vocab.from_counts(tgt, min_count, max_vocab, tokenizer=target))

    def to_meta(self) -> dict:
        """What a checkpoint stores of the two vocabularies."""
        return {"source_vocab": self.source.to_dict(), "target_vocab": self.target.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict) -> "PairVocab":
        try:
            return cls(Vocab.from_dict(meta["source_vocab"]), Vocab.from_dict(meta["target_vocab"]))
        except (KeyError, TypeError) as err:
            raise CharlmError(f"no usable {err} in the model's metadata") from None
