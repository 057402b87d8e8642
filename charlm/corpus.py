"""Corpus file -> token ids -> train/validation split -> time-major (T, B) windows.

The pipeline, for a corpus of n tokens and B parallel streams:

    read_corpus(source, tokenizer) -> ids (n,) int32 provisional ids, types (distinct tokens)
    split_point(n, val_fraction)   -> k: train = ids[:k], validation = ids[k:]
    build_vocab(ids, types, k, ...) -> Vocab (from the training part only), ids (n,) final ids
    fit_batch(k, B, T)             -> (B, T, warning) shrunk to fit a small corpus
    batchify(ids[:k], B)           -> data (N, B), N = k // B; column b = ids[b*N:(b+1)*N]
    iter_windows(data, T)          -> (pos, x (T, B), y (T, B)) with y[t] = x[t+1] = data[pos+t+1]

The hidden state a<t> is carried from one window to the next (truncated BPTT), which is
why the B streams are contiguous runs of the corpus: window i+1 of column b continues
exactly where window i of column b stopped.

Nothing here prints or exits; problems raise `DataError` / `UsageError`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from charlm.errors import DataError, UsageError
from charlm.tokenizer import Tokenizer
from charlm.vocab import EOS, UNK_LITERALS, Vocab

# Ids are collected in fixed-size int32 chunks (overhead: at most one chunk); beyond
# SPILL_TOKENS they are written to a temporary file and returned as a np.memmap.
CHUNK_TOKENS = 1 << 20
SPILL_TOKENS = 64 << 20


class _IdSink:
    """Append-only int32 id store: in-memory chunks, spilled to a temporary file when large."""

    def __init__(self, chunk: int | None = None, spill: int | None = None):
        self.chunk_size = max(1, int(CHUNK_TOKENS if chunk is None else chunk))
        self.spill = int(SPILL_TOKENS if spill is None else spill)
        self.full: list[np.ndarray] = []  # complete chunks kept in memory (before spilling)
        self.buf = np.empty(self.chunk_size, dtype=np.int32)  # the chunk being filled
        self.fill = 0
        self.n = 0
        self.file = None  # open temporary file once spilled
        self.path = None

    def extend(self, ids: list[int]) -> None:
        k, m = 0, len(ids)
        while k < m:
            take = min(m - k, self.chunk_size - self.fill)
            self.buf[self.fill:self.fill + take] = ids[k:k + take]
            self.fill += take
            self.n += take
            k += take
            if self.fill == self.chunk_size:
                self._flush_chunk()

    def _flush_chunk(self) -> None:
        chunk = self.buf[:self.fill].copy() if self.file is None else self.buf[:self.fill]
        if self.file is None and self.n > self.spill:
            fd, self.path = tempfile.mkstemp(prefix="charlm-ids-", suffix=".int32")
            self.file = os.fdopen(fd, "wb")
            for c in self.full:
                c.tofile(self.file)
            self.full = []
        if self.file is not None:
            chunk.tofile(self.file)
        else:
            self.full.append(chunk)
        self.fill = 0

    def finish(self) -> np.ndarray:
        """Return all ids, shape (n,) int32: an in-memory array or a np.memmap (spilled)."""
        if self.file is None and self.n <= self.spill:
            parts = self.full + [self.buf[:self.fill]]
            out = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
            self.full, self.buf = [], np.empty(0, np.int32)
            return out
        if self.fill:
            self._flush_chunk()
        self.file.close()
        ids = np.memmap(self.path, dtype=np.int32, mode="r+", shape=(self.n,))
        try:  # the mapping keeps the data alive; the name can go now (POSIX)
            os.unlink(self.path)
        except OSError:  # pragma: no cover - e.g. Windows; the OS temp dir cleans up
            pass
        return ids

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            try:
                os.unlink(self.path)
            except OSError:  # pragma: no cover
                pass


def _mode(config) -> str:
    """The effective tokenizer mode: "lines" or "stream" (None -> char: stream, word: lines)."""
    mode = getattr(config, "mode", None)
    if mode is None:
        mode = "stream" if getattr(config, "level", "char") == "char" else "lines"
    return mode


def _name(source) -> str:
    if source == "-":
        return "<stdin>"
    return str(getattr(source, "name", source))


def read_corpus(source, tokenizer) -> tuple[np.ndarray, list[str]]:
    """Read and tokenize a whole corpus into provisional ids, streaming.

    Args:
        source: a path, "-" (stdin) or a text file object (passed to tokenizer.iter_pieces).
        tokenizer: a `charlm.tokenizer.Tokenizer`.
    Returns:
        ids: (n,) int32 (a np.memmap for very large corpora); ids[i] indexes `types`.
        types: list[str], the distinct tokens in first-seen order.
    Layout: lines mode -> [EOS, s1..., EOS, s2..., EOS, ...] (EOS is types[0]);
            stream mode -> just the tokens, "\\n" tokens included.
    Raises DataError for an empty or whitespace-only corpus (and whatever the tokenizer
    raises for a missing, binary or non-UTF-8 file).
    """
    lines = _mode(tokenizer.config) == "lines"
    index: dict[str, int] = {}
    sink = _IdSink()
    try:
        if lines:
            index[EOS] = 0
            sink.extend([0])
        setdefault = index.setdefault
        # Pieces of bounded size, so even a corpus on one 50 MB line streams; in lines
        # mode `end` marks the end of a sentence, which gets its <EOS>.
        for piece, end in tokenizer.iter_pieces(source):
            # setdefault(tok, len(index)) gives a new token the next free id.
            ids = [setdefault(tok, len(index)) for tok in piece]
            if lines and end:
                ids.append(0)
            sink.extend(ids)
        types = list(index)
        if all(t == EOS or t.isspace() for t in types[1 if lines else 0:]):
            raise DataError(f"corpus {_name(source)} is empty (no tokens other than whitespace): "
                            "give a text file with some text in it")
    except BaseException:
        sink.discard()
        raise
    return sink.finish(), types


def split_point(n: int, val_fraction: float) -> int:
    """Where validation starts: train = ids[:k], validation = ids[k:] (taken from the END).

    val_fraction in [0, 1). With val_fraction > 0 each side gets at least 2 tokens (one
    input and one target), otherwise DataError; with 0, k = n (no validation).
    """
    try:
        frac = float(val_fraction)
    except (TypeError, ValueError):
        raise UsageError(f"validation fraction must be a number, got {val_fraction!r}") from None
    if not 0.0 <= frac < 1.0:
        raise UsageError(f"validation fraction must be in [0, 1), got {val_fraction!r}")
    n = int(n)
    if n < 2:
        raise DataError(f"corpus too small: {n} token(s); training needs at least 2")
    if frac == 0.0:
        return n
    n_val = max(2, int(round(n * frac)))
    k = n - n_val
    if k < 2:
        raise DataError(f"corpus too small to hold out validation data: {n} tokens; "
                        "use a larger corpus or a validation fraction of 0")
    return k


def build_vocab(ids: np.ndarray, types: list[str], n_train: int, min_count: int = 1,
                max_vocab: int | None = None, tokenizer_config=None):
    """Build the Vocab from the training part and re-encode all ids with it.

    Args:
        ids: (n,) int provisional ids from `read_corpus`; types: their tokens.
        n_train: only ids[:n_train] are counted (tokens seen only in validation -> UNK).
    Returns:
        vocab: `charlm.vocab.Vocab` (UNK and EOS always present).
        ids: (n,) int32 final ids. A new array, except that a np.memmap input (huge
             corpus) is remapped in place, chunk by chunk, and returned.
    Literal "<unk>"/"<UNK>" tokens map to UNK (word level; Vocab.from_counts counts them as UNK).
    """
    n_train = int(n_train)
    if not 0 < n_train <= len(ids):
        raise DataError(f"no training tokens (n_train={n_train} of {len(ids)})")
    counts = np.bincount(ids[:n_train], minlength=len(types))
    if types and types[0] == EOS and ids[0] == 0 and _mode(tokenizer_config) == "lines":
        counts[0] -= 1  # the leading EOS opens the stream; EOS counts sentences
    vocab = Vocab.from_counts({t: c for t, c in zip(types, counts.tolist()) if c > 0},
                              min_count=min_count, max_vocab=max_vocab, tokenizer=tokenizer_config)
    # lookup[provisional id] = final id. Tokens cut by min_count/max_vocab, tokens seen only
    # in validation and literal "<unk>"/"<UNK>" (counted as UNK by Vocab) all map to UNK.
    unk = vocab.unk_id
    lookup = np.array([vocab.index.get(t, unk) for t in types], dtype=np.int32)
    if isinstance(ids, np.memmap):
        for s in range(0, len(ids), CHUNK_TOKENS):
            part = ids[s:s + CHUNK_TOKENS]
            np.take(lookup, part, out=part)
        ids.flush()
        return vocab, ids
    return vocab, lookup[ids]


def fit_batch(n_tokens: int, batch: int, seq_len: int) -> tuple[int, int, str | None]:
    """Shrink (batch, seq_len) so that each of the batch streams holds seq_len + 1 tokens.

    Batch shrinks first (down to 1), then seq_len (down to 2). Returns (batch, seq_len,
    warning) where warning is None when nothing changed. DataError when n_tokens < 3.
    """
    batch, seq_len, n = int(batch), int(seq_len), int(n_tokens)
    if batch < 1:
        raise UsageError(f"batch size must be at least 1, got {batch}")
    if seq_len < 1:
        raise UsageError(f"sequence length must be at least 1, got {seq_len}")
    if n // batch >= seq_len + 1:
        return batch, seq_len, None
    new_b, new_t = n // (seq_len + 1), seq_len
    if new_b < 1:  # even one stream is too short for seq_len: shorten the window
        new_b, new_t = 1, n - 1
        if new_t < 2:
            raise DataError(f"corpus too small to train on: {n} training token(s), "
                            "need at least 3")
    warning = (f"corpus too small for batch {batch} x seq-len {seq_len} ({n} training tokens): "
               f"using batch {new_b} x seq-len {new_t}")
    return new_b, new_t, warning


def batchify(ids: np.ndarray, batch: int) -> np.ndarray:
    """Cut ids (n,) into B contiguous parallel streams: data (N, B), N = n // B, time-major.

    Column b is ids[b*N:(b+1)*N]; the last n - N*B tokens are dropped. Returns a C-contiguous
    copy, or a (strided) view when ids is a np.memmap so a huge corpus stays on disk.
    """
    batch = int(batch)
    if batch < 1:
        raise UsageError(f"batch size must be at least 1, got {batch}")
    n = len(ids) // batch
    if n < 2:
        raise DataError(f"corpus too small: {len(ids)} tokens cannot fill {batch} streams of "
                        "at least 2 tokens; use a smaller batch size")
    data = ids[:n * batch].reshape(batch, n).T
    return data if isinstance(ids, np.memmap) else np.ascontiguousarray(data)


def iter_windows(data: np.ndarray, seq_len: int, start: int = 0
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (pos, x, y) windows of truncated BPTT over data (N, B).

    x = data[pos:pos+T] (T, B) inputs, y = data[pos+1:pos+1+T] (T, B) next-token targets,
    for pos = start, start+seq_len, ... while pos < N-1; the last window may be shorter.
    `start` resumes an epoch exactly at a saved pos. x and y are views of data.
    """
    seq_len, start = int(seq_len), int(start)
    if seq_len < 1:
        raise UsageError(f"sequence length must be at least 1, got {seq_len}")
    if start < 0:
        raise UsageError(f"window start must be >= 0, got {start}")
    last = data.shape[0] - 1  # the last token is only ever a target
    for pos in range(start, last, seq_len):
        t = min(seq_len, last - pos)
        yield pos, data[pos:pos + t], data[pos + 1:pos + 1 + t]


# ------------------------------------------------------------------------------------------
# A language model's training data, ready for the engine

EVAL_STREAMS = 16  # parallel streams the validation text is cut into (evaluation speed)


@dataclass
class LMData:
    """An encoded corpus: `train` (N, B) and `val` (Nv, Bv) streams (or None), see `batchify`."""

    vocab: Vocab
    train: np.ndarray
    val: np.ndarray | None
    n_train_tokens: int
    n_val_tokens: int
    batch_size: int
    seq_len: int
    warning: str | None = None


def encode_with(vocab, ids: np.ndarray, types: list[str]) -> np.ndarray:
    """Map provisional ids (indices into `types`, from `read_corpus`) to `vocab` ids; tokens the
    vocabulary does not know, and literal "<unk>"/"<UNK>" at word level, become <UNK>."""
    whitespace = vocab.tokenizer.split == "whitespace"
    lookup = np.array([vocab.unk_id if whitespace and t in UNK_LITERALS else vocab.index.get(t, vocab.unk_id)
                       for t in types], dtype=np.int32)
    return lookup[ids]


def prepare_lm_data(corpus, tokenizer_config, *, vocab=None, val_file=None, val_fraction=0.1,
                    min_count=1, max_vocab=None, batch_size=32, seq_len=100,
                    n_train=None) -> LMData:
    """Tokenize and encode a corpus, split off validation, build (or use) the vocabulary and lay
    out B streams for training and EVAL_STREAMS for validation.

    `vocab` and `n_train` are given when resuming, so the data is encoded exactly as before.
    """
    tokenizer = Tokenizer(vocab.tokenizer if vocab is not None else tokenizer_config)
    ids, types = read_corpus(corpus, tokenizer)
    if val_file:
        n_train = len(ids)
        val_ids, val_types = read_corpus(val_file, tokenizer)
    elif n_train is None:
        n_train = split_point(len(ids), val_fraction)
    if vocab is None:
        vocab, ids = build_vocab(ids, types, n_train, min_count, max_vocab, tokenizer.config)
    else:
        ids = encode_with(vocab, ids, types)
    val = encode_with(vocab, val_ids, val_types) if val_file else ids[n_train:]
    batch, seq_len, warning = fit_batch(n_train, batch_size, seq_len)
    val_data = None
    if len(val) >= 2:
        val_data = batchify(val, max(1, min(EVAL_STREAMS, (len(val) - 1) // 2)))
    return LMData(vocab, batchify(ids[:n_train], batch), val_data, n_train, len(val), batch, seq_len,
                  warning)
