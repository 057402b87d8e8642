"""A language model of text read right to left (`charlm train --reverse`): the backward model of
flair's contextual string embeddings (tasks/features.py), trained and used as any other.

What "read right to left" means, exactly, for the token ids y<1..n> of a corpus:

    stream mode   the whole stream reversed: y<n>, y<n-1>, ..., y<1> ("\\n" tokens included, so
                  a newline now precedes each reversed line)
    lines mode    each line (the tokens between two <EOS>) reversed, the lines in their order:
                  <EOS> s1 <EOS> s2 <EOS>  ->  <EOS> rev(s1) <EOS> rev(s2) <EOS>

The validation text is split off first (the same tokens as without --reverse) and reversed the
same way, on its own. A model trained so scores a text by reading it reversed (P(text) =
P(y<n>) P(y<n-1> | y<n>) ...), and samples right to left: the generated tokens come before the
prime, and the text is printed back in reading order (`ReversedTokenizer.detokenize`).

Memory: stream mode reverses a view (nothing copied, a memory-mapped corpus stays on disk);
lines mode writes a reversed copy of the ids (1, 2 or 4 bytes per token), CHUNK tokens at a time.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from charlm.text.tokenizer import Tokenizer

__all__ = ["reversed_ids", "ReversedTokenizer"]

CHUNK = 1 << 22  # tokens reversed at a time in lines mode (cut at an <EOS>)


def _lines_reversed(ids: np.ndarray, eos: int) -> np.ndarray:
    """ids (n,) -> every run of tokens between two `eos` (or an end of `ids`) reversed, in place of
    itself. Token i of a run that starts after the <EOS> at p and ends before the one at q
    (p < i < q) moves to p + q - i."""
    n = len(ids)
    i = np.arange(n)
    is_eos = ids == eos
    p = np.maximum.accumulate(np.where(is_eos, i, -1))                   # last <EOS> at or before i
    q = np.minimum.accumulate(np.where(is_eos, i, n)[::-1])[::-1]       # first <EOS> at or after i
    return ids[np.where(is_eos, i, p + q - i)]


def reversed_ids(ids: np.ndarray, mode: str, eos: int = 0) -> np.ndarray:
    """Token ids (n,) read right to left as the module docstring says: a reversed view in stream
    mode; in lines mode a new array (same dtype), each line (between `eos` ids) reversed."""
    if mode == "stream":
        return ids[::-1]
    out = np.empty(len(ids), dtype=ids.dtype)
    start, n = 0, len(ids)
    while start < n:
        stop = min(n, start + CHUNK)
        if stop < n:                                      # end the chunk just after an <EOS>
            ends = np.flatnonzero(np.asarray(ids[start:stop]) == eos)
            if len(ends):
                stop = start + int(ends[-1]) + 1
            else:                                         # a line longer than CHUNK: to its end
                rest = np.flatnonzero(np.asarray(ids[stop:]) == eos)
                stop = stop + int(rest[0]) + 1 if len(rest) else n
        out[start:stop] = _lines_reversed(np.asarray(ids[start:stop]), eos)
        start = stop
    return out


class ReversedTokenizer(Tokenizer):
    """The tokenizer of a model trained with --reverse: tokens come out in the order the model
    reads them (right to left, as `reversed_ids`), and `detokenize` takes them in that order and
    gives the text in reading order."""

    def tokenize(self, text: str) -> list[str]:
        return super().tokenize(text)[::-1]

    def detokenize(self, tokens: Iterable[str]) -> str:
        return super().detokenize(list(tokens)[::-1])

    def iter_sentences(self, source, *, chunk_size: int | None = None) -> Iterator[list[str]]:
        """Lines mode: each line's tokens reversed, in line order. Stream mode: the whole text
        reversed, as one list (the text is held in memory)."""
        pieces = super().iter_sentences(source, chunk_size=chunk_size)
        if self.config.mode == "lines":
            for tokens in pieces:
                yield tokens[::-1]
            return
        whole = [t for tokens in pieces for t in tokens]
        if whole:
            yield whole[::-1]
