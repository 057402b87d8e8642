"""The token cache: a corpus's token ids kept on disk, so the next run does not tokenize again.

    token_ids(corpus, tokenizer_config, folder, *, verify=True, report=None) -> TokenIds

A corpus file of at least MIN_BYTES is tokenized once (`charlm.text.tokenids`) into two files in
`folder` (the model's folder, or the one --cache-dir names), named after the corpus and a key of
its absolute path and the tokenizer settings:

    NAME-KEY.tokens.npy    the ids (n,), uint8/uint16/int32 (a .npy array, memory-mapped to train)
    NAME-KEY.tokens.json   the record: corpus path, size, modification time and SHA-256 of its
                           bytes; tokenizer settings; the types (first seen first) and their
                           counts; the number of ids, their type and the SHA-256 of the id file
    NAME-KEY.tokens.lock   an empty file, locked while the cache is checked or built

Later runs (a second run, --resume, `charlm score --file`, every process of a data-parallel run)
map the ids instead. The cache is never trusted blindly: it is used only when the record is a
charlm token cache of this version, for this corpus path and these tokenizer settings, the
corpus has the recorded size, modification time and (with verify=True) content hash, and the id
file has exactly the recorded header and length and (with verify=True) the recorded SHA-256. Anything else (a changed corpus, a truncated
or damaged file, another corpus's cache) is rebuilt, with a message saying why.

Concurrency: checking and building happen under an exclusive lock (`fcntl.flock` on the .lock
file), the id file and the record are written under temporary names and renamed into place
(record last), so processes that ask at once build the cache once and the others map it.
A process that has mapped the ids keeps them even if the files are replaced later.
Files that exist under the cache's names but are not a charlm token cache are never written
over (`charlm.files`); the corpus is then tokenized without a cache, with a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError, UsageError
from charlm.files import TOKEN_CACHE, TOKEN_CACHE_FORMAT, Output, check_outputs, is_foreign
from charlm.text.tokenids import HEADER, TokenIds, map_ids, npy_header, tokenize_ids
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.version import __version__

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking between processes
    fcntl = None

VERSION = 2  # 2: the record holds the id file's checksum (ids_hash)
MIN_BYTES = 16 << 20  # smaller corpora tokenize in well under a second: no cache
HASH_CHUNK = 4 << 20
DTYPES = ("uint8", "uint16", "int32")


@dataclass(frozen=True)
class CacheFiles:
    record: Path
    ids: Path
    lock: Path


def cache_files(corpus, config: TokenizerConfig, folder) -> CacheFiles:
    """Where the cache of `corpus` tokenized with `config` lives in `folder`."""
    where = os.path.abspath(corpus)
    key = hashlib.sha256(json.dumps([where, config.to_dict()], sort_keys=True).encode()).hexdigest()[:12]
    stem = Path(folder) / f"{Path(where).name}-{key}.tokens"
    return CacheFiles(stem.with_suffix(".tokens.json"), stem.with_suffix(".tokens.npy"),
                      stem.with_suffix(".tokens.lock"))


def _report(report, method: str, *args) -> None:
    fn = getattr(report, method, None)
    if fn is not None:
        fn(*args)


def _stat(path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def file_hash(path) -> str:
    """"sha256:HEX" of a corpus file's bytes."""
    return _sha256(path)


def ids_hash(path) -> str:
    """"sha256:HEX" of an id file's bytes (its checksum in the record)."""
    return _sha256(path)


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on `path` (created empty if absent; never truncated)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load(files: CacheFiles, corpus, config: TokenizerConfig, verify: bool) -> tuple[TokenIds | None, str | None]:
    """(the cached ids, None) when the cache is valid, else (None, why it is not; None if absent)."""
    if not files.record.exists():
        return None, None
    try:
        rec = json.loads(files.record.read_text(encoding="utf-8"))
        if not isinstance(rec, dict) or rec.get("format") != TOKEN_CACHE_FORMAT:
            return None, "its record is not a charlm token cache"
        if rec.get("version") != VERSION:
            return None, f"it was written by another charlm (cache version {rec.get('version')!r})"
        if rec["corpus"]["path"] != os.path.abspath(corpus) or rec["tokenizer"] != config.to_dict():
            return None, "it belongs to another corpus or tokenizer"
        if {k: rec["corpus"][k] for k in ("size", "mtime_ns")} != _stat(corpus):
            return None, "the corpus changed (size or modification time)"
        n, dtype, types, counts = int(rec["tokens"]), np.dtype(rec["dtype"]), rec["types"], rec["counts"]
        if rec["dtype"] not in DTYPES or not all(isinstance(t, str) for t in types) \
                or len(counts) != len(types) or sum(counts) != n or min(counts, default=0) < 0:
            return None, "its record is damaged"
        if not files.ids.exists():
            return None, "its id file is missing"
        if files.ids.stat().st_size != HEADER + n * dtype.itemsize:
            return None, "its id file is truncated or has the wrong length"
        with open(files.ids, "rb") as f:
            if f.read(HEADER) != npy_header(dtype, n):
                return None, "its id file is damaged (header)"
        if verify and file_hash(corpus) != rec["corpus"]["hash"]:
            return None, "the corpus changed (same size and time, different content)"
        if verify and ids_hash(files.ids) != rec["ids_hash"]:
            return None, "its id file is damaged (its content does not match its checksum)"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        return None, f"its record is damaged ({type(err).__name__})"
    return TokenIds(map_ids(files.ids, dtype, n), types, np.array(counts, np.int64), config.mode), None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build(files: CacheFiles, corpus, tokenizer: Tokenizer, report) -> TokenIds:
    """Tokenize `corpus` into the cache files (temporary names, then renamed: record last)."""
    before, started = _stat(corpus), time.perf_counter()
    digest, done = hashlib.sha256(), [0]

    def tap(data: bytes) -> None:
        digest.update(data)
        done[0] += len(data)
        _report(report, "reading", done[0], before["size"])

    tmp_ids = files.ids.with_name(files.ids.name + f".tmp{os.getpid()}")
    tmp_rec = files.record.with_name(files.record.name + f".tmp{os.getpid()}")
    try:
        tids = tokenize_ids(corpus, tokenizer, path=str(tmp_ids), on_bytes=tap)
        seconds = time.perf_counter() - started
        if _stat(corpus) != before:
            _report(report, "message", f"{corpus} changed while it was read: its token cache is not kept")
            return tids
        record = {
            "format": TOKEN_CACHE_FORMAT, "version": VERSION, "charlm_version": __version__,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds, 3),
            "corpus": {"path": os.path.abspath(corpus), **before, "hash": "sha256:" + digest.hexdigest()},
            "tokenizer": tokenizer.config.to_dict(), "tokens": len(tids.ids), "dtype": tids.ids.dtype.name,
            "ids": files.ids.name, "ids_hash": ids_hash(tmp_ids), "types": tids.types,
            "counts": tids.counts.tolist(),
        }
        with open(tmp_rec, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        _fsync(tmp_ids)
        _fsync(tmp_rec)
        files.record.unlink(missing_ok=True)  # no record while the ids are replaced
        os.replace(tmp_ids, files.ids)
        os.replace(tmp_rec, files.record)
    finally:
        for p in (tmp_ids, tmp_rec):
            p.unlink(missing_ok=True)
    mb, seconds = before["size"] / 1e6, time.perf_counter() - started  # all of it: reading to renaming
    _report(report, "note", f"tokenized {corpus} ({mb:,.0f} MB) in {seconds:.1f} s "
                               f"({mb / max(seconds, 1e-9):.1f} MB/s): {len(tids.ids):,} tokens, "
                               f"cached in {files.ids}")
    return tids


def _usable_folder(corpus, config: TokenizerConfig, folder, report) -> CacheFiles | None:
    """The cache files for `corpus`, or None when it is not cached (small, not a file, or the
    cache's names are taken by files that are not a charlm token cache)."""
    if folder is None or not isinstance(corpus, (str, os.PathLike)) or str(corpus) == "-" \
            or not os.path.isfile(corpus) or os.path.getsize(corpus) < MIN_BYTES:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the cache folder {folder}: {err.strerror or err}") from None
    files = cache_files(corpus, config, folder)
    outputs = [Output(str(files.record), TOKEN_CACHE, "the token cache"),
               Output(str(files.ids), TOKEN_CACHE, "the token cache")]
    in_the_way = [out.path for out in outputs if is_foreign(out)]
    if in_the_way:
        _report(report, "message", f"{in_the_way[0]} is not a charlm token cache: left alone, and "
                                   "the corpus is tokenized without a cache (remove that file, or use --cache-dir)")
        return None
    try:
        check_outputs(outputs, {"the corpus": str(corpus)})
    except UsageError as err:
        _report(report, "message", f"{err}; tokenizing without a cache")
        return None
    return files


def token_ids(corpus, config: TokenizerConfig, folder=None, *, verify: bool = True, report=None) -> TokenIds:
    """The token ids of `corpus` (see `charlm.text.tokenids`), from the cache in `folder` when it is
    valid, else tokenized (and cached when the corpus is a file of at least MIN_BYTES).

    folder: where the cache lives (None: no cache). verify=False skips the content hash (a
    data-parallel process after rank 0 has verified or built the cache; the size, time and
    file checks still apply). report: an object with optional methods `reading(done_bytes,
    total_bytes)` (progress while tokenizing), `note(text)` (the cache was used or built) and
    `message(text)` (a warning: the cache could not be used).

    For data-parallel training: rank 0 calls this first (it builds or verifies the cache),
    then a barrier, then every other rank calls it with verify=False and maps the same files.
    """
    tokenizer = Tokenizer(config)
    files = _usable_folder(corpus, config, folder, report)
    if files is None:
        total = os.path.getsize(corpus) if isinstance(corpus, (str, os.PathLike)) and os.path.isfile(corpus) else None
        done = [0]

        def tap(data: bytes) -> None:
            done[0] += len(data)
            _report(report, "reading", done[0], total)

        return tokenize_ids(corpus, tokenizer, on_bytes=tap if report is not None else None)
    try:
        with _locked(files.lock):
            tids, why = _load(files, corpus, config, verify)
            if tids is not None:
                _report(report, "note", f"token cache used: {len(tids.ids):,} tokens of {corpus} from {files.ids}")
                return tids
            if why:
                _report(report, "message", f"token cache {files.record} not used: {why}; tokenizing again")
            return _build(files, corpus, tokenizer, report)
    except OSError as err:
        raise CharlmError(f"cannot write the token cache in {files.record.parent}: {err.strerror or err}") from None
