"""Corpus -> token ids, streaming, in memory that does not grow with the corpus.

    tokenize_ids(source, tokenizer, path=None, on_bytes=None) -> TokenIds

The text is read in chunks (`charlm.text.reader`) and cut into tokens (`charlm.text.tokenizer`; code
points take a vectorised path). Each token gets a *provisional id*, its index in `types`
(the distinct tokens, first seen first), and the ids of each chunk go straight to an id file
in the smallest type that holds them: uint8 while there are at most 256 types, uint16 up to
65,536, int32 beyond (what is written so far is widened, chunk by chunk, when a type more
arrives). How often each type occurs is counted on the way, so a vocabulary can be built
without reading the ids again.

Layout of the ids (n,):
    lines mode   [EOS, s1..., EOS, s2..., EOS, ...]   (EOS is types[0]; no "\\n" tokens; lines
                                                       that are empty or whitespace only skipped)
    stream mode  the tokens, "\\n" tokens included

The id file is a .npy array (a fixed 128-byte header, then the ids), so
`numpy.load(path, mmap_mode="r")` reads it. With `path=None` a small corpus stays in memory and a
large one goes to a temporary file that is deleted as soon as it is mapped. Memory in use: one
chunk of text and its ids, the types and their counts.

Nothing here prints or exits; problems raise `DataError`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from charlm.errors import DataError
from charlm.text.reader import read_text
from charlm.text.vocab import EOS

HEADER = 128  # bytes of .npy header in front of the ids
SPILL_TOKENS = 16 << 20  # path=None: beyond this many tokens the ids go to a temporary file
FLUSH_TOKENS = 4 << 20  # ids buffered before they are written to the file
NEWLINE = "\n"


def id_dtype(n_types: int) -> np.dtype:
    """The smallest id type for ids 0..n_types-1: uint8, uint16 or int32."""
    if n_types <= 1 << 8:
        return np.dtype(np.uint8)
    if n_types <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def npy_header(dtype, n: int) -> bytes:
    """The HEADER-byte .npy (version 1.0) header of a 1-D array of n items of `dtype`."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (
        np.lib.format.dtype_to_descr(np.dtype(dtype)), n)
    body = text.ljust(HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def map_ids(path, dtype, n: int) -> np.ndarray:
    """The ids (n,) of an id file, memory-mapped read-only (shape (0,) for an empty file)."""
    if n == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER, shape=(n,))


@dataclass
class TokenIds:
    """A tokenized corpus: ids (n,) (uint8/uint16/int32, a np.memmap when on disk) index
    `types`; counts[i] = how often types[i] occurs in ids; mode "lines" or "stream"."""

    ids: np.ndarray
    types: list[str]
    counts: np.ndarray
    mode: str

    def __len__(self) -> int:
        return len(self.ids)


class _Index(dict):
    """token -> provisional id; a new token gets the next id and is appended to `types`
    (so `map(index.__getitem__, tokens)` numbers a chunk at C speed)."""

    def __init__(self):
        super().__init__()
        self.types: list[str] = []

    def __missing__(self, token: str) -> int:
        i = self[token] = len(self.types)
        self.types.append(token)
        return i


class _IdWriter:
    """Append-only ids, widened to `id_dtype(n_types)` as types arrive: kept in memory (path=None,
    up to SPILL_TOKENS) or written to `path` (a temporary file when path=None and spilling)."""

    def __init__(self, path: str | None):
        self.path, self.temporary = path, path is None
        self.dtype = np.dtype(np.uint8)
        self.chunks: list[np.ndarray] = []  # not yet written
        self.buffered = 0
        self.n = 0
        self.file = None

    def write(self, ids: np.ndarray, n_types: int) -> None:
        """Append ids (k,) (any integer type, all < n_types)."""
        want = id_dtype(n_types)
        if want.itemsize > self.dtype.itemsize:
            self._widen(want)
        self.chunks.append(ids.astype(self.dtype, copy=False))
        self.buffered += len(ids)
        self.n += len(ids)
        if self.buffered >= FLUSH_TOKENS and (self.file is not None or not self.temporary
                                              or self.n > SPILL_TOKENS):
            self._flush()

    def _open(self) -> None:
        if self.path is None:
            fd, self.path = tempfile.mkstemp(prefix="charlm-ids-", suffix=".npy")
            self.file = os.fdopen(fd, "wb")
        else:
            self.file = open(self.path, "wb")
        self.file.write(npy_header(self.dtype, 0))  # rewritten by finish()

    def _flush(self) -> None:
        if self.file is None:
            self._open()
        for c in self.chunks:
            c.tofile(self.file)
        self.chunks, self.buffered = [], 0

    def _widen(self, dtype: np.dtype) -> None:
        """Re-write what is written so far with the wider `dtype`, in chunks."""
        self.chunks = [c.astype(dtype) for c in self.chunks]
        if self.file is not None:
            self.file.close()
            written = self.n - self.buffered
            old = map_ids(self.path, self.dtype, written)
            wide = self.path + ".wide"
            with open(wide, "wb") as f:
                f.write(npy_header(dtype, 0))
                for s in range(0, written, FLUSH_TOKENS):
                    old[s:s + FLUSH_TOKENS].astype(dtype).tofile(f)
            del old
            os.replace(wide, self.path)
            self.file = open(self.path, "ab")
        self.dtype = dtype

    def finish(self) -> np.ndarray:
        """All ids (n,): in memory, or mapped from the (completed) file."""
        if self.file is None and self.temporary:
            out = np.concatenate(self.chunks) if self.chunks else np.zeros(0, self.dtype)
            self.chunks = []
            return out
        self._flush()
        self.file.seek(0)
        self.file.write(npy_header(self.dtype, self.n))
        self.file.close()
        self.file = None
        ids = map_ids(self.path, self.dtype, self.n)
        if self.temporary:  # the mapping keeps the data; the name can go now (POSIX)
            self.discard()
        return ids

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None:
            for p in (self.path, self.path + ".wide"):
                try:
                    os.unlink(p)
                except OSError:
                    pass


class _Lines:
    """Stream-mode ids -> lines-mode ids, chunk by chunk: each line with a non-space token keeps
    its tokens and its "\\n" becomes EOS; lines of whitespace only vanish.

    A line that has shown a non-space token is "live": its tokens go out at once (so a 50 MB
    line needs no 50 MB buffer); only the whitespace at the start of a line is held back.
    """

    def __init__(self, newline: int, eos: int):
        self.newline, self.eos = newline, eos
        self.live = False
        self.held = np.zeros(0, np.int32)

    def feed(self, ids: np.ndarray, space: np.ndarray) -> np.ndarray:
        """ids (k,) stream-mode ids; space[i]: types[i] is whitespace ("\\n" included)."""
        if len(self.held):
            ids, self.held = np.concatenate((self.held, ids)), self.held[:0]
        is_nl = ids == self.newline
        ends = np.flatnonzero(is_nl)
        line = np.cumsum(is_nl) - is_nl  # line of each token, its "\n" included
        text = np.bincount(line[~space[ids]], minlength=len(ends) + 1) > 0  # line has a non-space
        text[0] |= self.live
        keep = text[line]
        last = ends[-1] + 1 if len(ends) else 0  # the unfinished last line starts here
        self.live = bool(text[-1])
        if not self.live:
            self.held = ids[last:]  # whitespace so far: kept only if text follows
        return np.where(is_nl, self.eos, ids)[keep]

    def end(self) -> np.ndarray:
        """A last line without a final newline still ends with EOS."""
        return np.array([self.eos] if self.live else [], np.int32)


def _codepoint_chunks(source, lowercase: bool, index: _Index, on_bytes):
    """Stream-mode ids of a code-point tokenizer, vectorised: code point -> id table."""
    table = np.full(0x110000, -1, np.int32)
    for text in read_text(source, on_bytes=on_bytes):
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = table[cps]
        if (ids < 0).any():
            new = cps[ids < 0]
            unique, first = np.unique(new, return_index=True)
            for cp in unique[np.argsort(first)].tolist():  # in order of first appearance
                token = chr(cp).lower() if lowercase else chr(cp)
                table[cp] = index[token]
            ids = table[cps]
        yield ids


def _token_chunks(source, tokenizer, index: _Index, on_bytes):
    """Stream-mode ids of any tokenizer: its token lists numbered through `index`."""
    number = index.__getitem__
    for tokens in tokenizer.iter_tokens(source, on_bytes=on_bytes):
        yield np.fromiter(map(number, tokens), np.int32, len(tokens))


class EmptyText(DataError):
    """A text with no token other than whitespace (the caller may say which file it was)."""


def tokenize_ids(source, tokenizer, path: str | None = None, on_bytes=None) -> TokenIds:
    """Tokenize a corpus into provisional ids (see the module docstring).

    Args:
        source: a path, "-" (stdin) or a text file object.
        tokenizer: a `charlm.text.tokenizer.Tokenizer`.
        path: write the id file here (None: memory, or a temporary file when large).
        on_bytes: called with each chunk of raw bytes read (progress, hashing).
    Raises DataError for an empty or whitespace-only corpus, and whatever the reader raises
    for a missing, binary or non-UTF-8 file.
    """
    cfg = tokenizer.config
    lines = cfg.mode == "lines"
    index = _Index()
    if lines:
        index[EOS], index[NEWLINE]  # ids 0 and 1
    if cfg.level == "char" and not cfg.graphemes:
        chunks = _codepoint_chunks(source, cfg.lowercase, index, on_bytes)
    else:
        chunks = _token_chunks(source, tokenizer, index, on_bytes)
    writer = _IdWriter(path)
    counts = np.zeros(0, np.int64)
    space = np.zeros(0, bool)
    to_lines = _Lines(index[NEWLINE], 0) if lines else None

    def emit(ids: np.ndarray) -> None:
        nonlocal counts
        n_types = len(index.types)
        counts = np.bincount(ids, minlength=n_types).astype(np.int64) + np.pad(counts, (0, n_types - len(counts)))
        writer.write(ids, n_types)

    try:
        if lines:
            emit(np.zeros(1, np.int32))  # the stream opens with EOS
        for ids in chunks:
            if lines:
                if len(space) < len(index.types):
                    space = np.concatenate((space, [t.isspace() for t in index.types[len(space):]]))
                ids = to_lines.feed(ids, space)
            if len(ids):
                emit(ids)
        if lines:
            emit(to_lines.end())
        types = index.types
        if not any(c and t != EOS and not t.isspace() for t, c in zip(types, counts.tolist())):
            name = "<stdin>" if source == "-" else str(getattr(source, "name", source))
            raise EmptyText(f"corpus {name} is empty (no tokens other than whitespace): "
                            "give a text file with some text in it")
        ids = writer.finish()
    except BaseException:
        writer.discard()
        raise
    return TokenIds(ids, types, np.pad(counts, (0, len(types) - len(counts))), cfg.mode)
