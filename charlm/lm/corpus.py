"""Token ids -> train/validation split -> vocabulary -> time-major (T, B) windows.

The pipeline, for a corpus of n tokens and B parallel streams:

    token_ids(corpus, config, folder)  -> TokenIds: ids (n,) provisional ids (uint8/uint16/int32,
                                         memory-mapped from the token cache or a temporary file
                                         when large), types, counts (charlm.text.tokenids, .tokencache)
    split_point(n, val_fraction, cap)  -> k: train = ids[:k], validation = ids[k:] (at most cap)
    training_counts(tids, k)           -> counts of each type in ids[:k], in chunks
    build_vocab(counts, types, ...)    -> Vocab (from the training part only)
    lookup_table(vocab, types)         -> lookup (n_types,): provisional id -> vocabulary id
    fit_batch(k, B, T)                 -> (B, T, warning) shrunk to fit a small corpus
    batchify(ids[:k], B)               -> data (N, B), N = k // B; column b = ids[b*N:(b+1)*N]
    MappedStreams(data, lookup)        -> the same streams, rows read as vocabulary ids
    iter_windows(data, T)              -> (pos, x (T, B), y (T, B)) with y[t] = x[t+1] = data[pos+t+1]

The vocabulary is applied by the lookup table as windows are read, so the corpus is never
materialised in memory (nor rewritten on disk): a window costs one gather of T*B ids.

The hidden state a<t> is carried from one window to the next (truncated BPTT), which is
why the B streams are contiguous runs of the corpus: window i+1 of column b continues
exactly where window i of column b stopped.

Nothing here prints or exits; problems raise `DataError` / `UsageError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from charlm.errors import DataError, UsageError
from charlm.lm.reverse import reversed_ids
from charlm.text.tokencache import token_ids
from charlm.text.tokenids import EmptyText, TokenIds
from charlm.text.vocab import EOS, UNK_LITERALS, Vocab

COUNT_CHUNK = 1 << 24  # ids counted at a time
DEFAULT_VAL_TOKENS = 1 << 17  # validation taken from the corpus: at most this many tokens (--val-tokens)


def split_point(n: int, val_fraction: float, val_tokens: int | None = None) -> int:
    """Where validation starts: train = ids[:k], validation = ids[k:] (taken from the END).

    val_fraction in [0, 1): validation is round(n * val_fraction) tokens, but at least 2 (one
    input and one target; otherwise DataError) and at most `val_tokens` (None: no limit);
    with 0, k = n (no validation).
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
    if val_tokens is not None:
        n_val = max(2, min(n_val, int(val_tokens)))
    k = n - n_val
    if k < 2:
        raise DataError(f"corpus too small to hold out validation data: {n} tokens; "
                        "use a larger corpus or a validation fraction of 0")
    return k


def _bincount(ids: np.ndarray, start: int, stop: int, n_types: int) -> np.ndarray:
    counts = np.zeros(n_types, np.int64)
    for s in range(start, stop, COUNT_CHUNK):
        counts += np.bincount(ids[s:min(s + COUNT_CHUNK, stop)], minlength=n_types)
    return counts


def training_counts(tids: TokenIds, n_train: int) -> np.ndarray:
    """How often each type occurs in ids[:n_train] (counted chunk by chunk, from whichever side
    of the split is shorter). In lines mode the leading EOS, which opens the stream, is not
    counted: EOS counts sentences."""
    n, n_types = len(tids.ids), len(tids.types)
    n_train = int(n_train)
    if not 0 < n_train <= n:
        raise DataError(f"no training tokens (n_train={n_train} of {n})")
    if n_train <= n // 2:
        counts = _bincount(tids.ids, 0, n_train, n_types)
    else:
        counts = tids.counts - _bincount(tids.ids, n_train, n, n_types)
    if tids.mode == "lines" and tids.types[:1] == [EOS] and tids.ids[0] == 0:
        counts[0] -= 1
    return counts


def build_vocab(counts: np.ndarray, types: list[str], min_count: int = 1, max_vocab: int | None = None,
                tokenizer_config=None) -> Vocab:
    """The Vocab of the training part: counts[i] = occurrences of types[i] in it (see
    `training_counts`). Literal "<unk>"/"<UNK>" tokens count as UNK (Vocab.from_counts)."""
    return Vocab.from_counts({t: c for t, c in zip(types, np.asarray(counts).tolist()) if c > 0},
                             min_count=min_count, max_vocab=max_vocab, tokenizer=tokenizer_config)


def lookup_table(vocab: Vocab, types: list[str]) -> np.ndarray:
    """lookup (len(types),) int32: provisional id -> `vocab` id. Tokens the vocabulary does not
    know (cut by min_count/max_vocab, seen only in validation) and, at word level, literal
    "<unk>"/"<UNK>" become <UNK>."""
    whitespace = vocab.tokenizer.split == "whitespace"
    get, unk = vocab.index.get, vocab.unk_id
    return np.array([unk if whitespace and t in UNK_LITERALS else get(t, unk) for t in types], dtype=np.int32)


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


class MappedStreams:
    """B token streams (N, B) of provisional ids read through a lookup table (see `batchify`).

    `ids` is a view of the id file (nothing copied); `lookup` maps its ids to vocabulary ids.
    data[a:b] reads rows now: (b - a, B) int32 vocabulary ids; data[:, cols] selects streams and
    stays lazy (a MappedStreams). np.asarray(data) reads everything.
    """

    ndim = 2

    def __init__(self, ids: np.ndarray, lookup: np.ndarray):
        self.ids, self.lookup = ids, lookup
        self.shape = ids.shape
        self.dtype = lookup.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None):
            return MappedStreams(self.ids[key], self.lookup)
        return self.lookup[self.ids[key]]

    def __array__(self, dtype=None, copy=None):
        out = self.lookup[self.ids]
        return out if dtype is None else out.astype(dtype)


def iter_windows(data: np.ndarray, seq_len: int, start: int = 0
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (pos, x, y) windows of truncated BPTT over data (N, B).

    x = data[pos:pos+T] (T, B) inputs, y = data[pos+1:pos+1+T] (T, B) next-token targets,
    for pos = start, start+seq_len, ... while pos < N-1; the last window may be shorter.
    `start` resumes an epoch exactly at a saved pos. x and y are views of an ndarray `data`,
    new arrays of vocabulary ids for a `MappedStreams`.
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

EVAL_STREAMS = 16  # parallel streams the validation text is cut into (evaluation speed) ...
LONG_EVAL_STREAMS, LONG_EVAL = 64, 1 << 17  # ... and for validation texts of LONG_EVAL tokens or more


def eval_streams(n_val: int) -> int:
    """Streams for a validation text of n_val tokens (each at least 2 tokens long)."""
    return max(1, min(LONG_EVAL_STREAMS if n_val >= LONG_EVAL else EVAL_STREAMS, (n_val - 1) // 2))


@dataclass
class LMData:
    """An encoded corpus: `train` (N, B) and `val` (Nv, Bv) streams (or None), see `MappedStreams`."""

    vocab: Vocab
    train: MappedStreams
    val: MappedStreams | None
    n_train_tokens: int
    n_val_tokens: int
    batch_size: int
    seq_len: int
    warning: str | None = None
    val_note: str = ""  # where the validation text comes from, for the first lines of output


def prepare_lm_data(corpus, tokenizer_config, *, vocab=None, val_file=None, val_fraction=0.1, val_tokens=None,
                    min_count=1, max_vocab=None, batch_size=32, seq_len=100, n_train=None,
                    cache_dir=None, verify=True, report=None, reverse=False) -> LMData:
    """Tokenize (or map from the token cache in `cache_dir`) a corpus, split off validation, build
    (or use) the vocabulary and lay out B streams for training and `eval_streams` for validation.

    val_tokens: None = at most DEFAULT_VAL_TOKENS taken from the corpus, a --val-file whole;
    0 = no limit; N = at most N (the last N of the corpus, the first N of a --val-file).
    `vocab` and `n_train` are given when resuming, so the data is encoded exactly as before.
    `verify`, `report`: see `charlm.text.tokencache.token_ids` (verify=False: another process has
    just checked or built the cache; progress and cache messages). reverse: the training and the
    validation tokens are each read right to left (`lm.reverse.reversed_ids`; --reverse).
    """
    config = vocab.tokenizer if vocab is not None else tokenizer_config
    tids = token_ids(corpus, config, cache_dir, verify=verify, report=report)
    cap = DEFAULT_VAL_TOKENS if val_tokens is None else (val_tokens or None)
    if val_file:
        n_train = len(tids.ids)
        try:
            val_tids = token_ids(val_file, config, cache_dir, verify=verify, report=report)
        except EmptyText:
            raise DataError(f"the validation file {val_file} is empty (no tokens other than whitespace): "
                            "give --val-file a text with some text in it") from None
    elif n_train is None:
        n_train = split_point(len(tids.ids), val_fraction, cap)
    if vocab is None:
        vocab = build_vocab(training_counts(tids, n_train), tids.types, min_count, max_vocab, config)
    if val_file:
        val_ids, val_lookup = val_tids.ids[:val_tokens or None], lookup_table(vocab, val_tids.types)
        note = f"the first {len(val_ids):,} tokens of {val_file}" if len(val_ids) < len(val_tids.ids) else val_file
    else:
        val_ids, val_lookup = tids.ids[n_train:], None
        note = f"the last {len(val_ids):,} tokens of the corpus" if len(val_ids) else ""
        if cap is not None and len(val_ids) == cap and round(len(tids.ids) * val_fraction) > cap:
            note += " (at most --val-tokens)"
    lookup = lookup_table(vocab, tids.types)
    train_ids = tids.ids[:n_train]
    if reverse:
        train_ids, val_ids = reversed_ids(train_ids, tids.mode), reversed_ids(val_ids, tids.mode)
    batch, seq_len, warning = fit_batch(n_train, batch_size, seq_len)
    val = None
    if len(val_ids) >= 2:
        val = MappedStreams(batchify(val_ids, eval_streams(len(val_ids))),
                            lookup if val_lookup is None else val_lookup)
    return LMData(vocab, MappedStreams(batchify(train_ids, batch), lookup), val, n_train,
                  len(val_ids), batch, seq_len, warning, note)
