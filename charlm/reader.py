"""Streaming UTF-8 reading of a corpus: a file, stdin or a file object -> decoded text.

The source is read in chunks (1 MiB by default) and decoded with an incremental UTF-8
decoder, so memory does not grow with the corpus. Newlines are universal ("\\r\\n" and
"\\r" become "\\n") and a leading byte-order mark is dropped. A missing, unreadable,
binary (NUL bytes) or non-UTF-8 file raises `DataError`, saying where.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from charlm.errors import DataError

CHUNK_SIZE = 1 << 20  # bytes (or characters, for text file objects) read at a time;
# chunk_size=None means this value, looked up at call time (tests shrink it)


def read_text(source, *, chunk_size: int | None = None) -> Iterator[str]:
    """Decoded text of `source` in pieces of about `chunk_size`, with universal newlines.

    `source`: a path, "-" for stdin, or a binary or text file object. Raises DataError
    for a missing file, a directory, an unreadable file, NUL bytes (a binary file) or
    bytes that are not UTF-8 (saying at which line and byte offset)."""
    chunk_size = CHUNK_SIZE if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if isinstance(source, (str, os.PathLike)) and str(source) == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        yield from _decode(stream, "<stdin>", chunk_size)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path} is a directory, not a corpus file")
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise DataError(f"no such file: {path}") from None
        except PermissionError:
            raise DataError(f"cannot read {path}: permission denied") from None
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None
        with f:
            yield from _decode(f, str(path), chunk_size)
    else:
        name = getattr(source, "name", None)
        yield from _decode(source, name if isinstance(name, str) else "<input>", chunk_size)


def _decode(f, name: str, chunk_size: int) -> Iterator[str]:
    read = getattr(f, "read1", f.read)  # read1: whatever is available (pipes, ttys)
    newlines = io.IncrementalNewlineDecoder(None, translate=True)
    first = True

    def emit(text: str, final: bool = False) -> str:
        nonlocal first
        text = newlines.decode(text, final=final)
        if first and text:
            first = False
            if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not text
                text = text[1:]
        return text

    try:
        probe = read(0)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {name}: {err}") from None
    if isinstance(probe, str):  # a text file object: already decoded
        while True:
            try:
                text = read(chunk_size)
            except UnicodeDecodeError as err:
                raise DataError(f"{name}: not UTF-8 ({err.reason})") from None
            if not text:
                break
            if "\0" in text:
                raise DataError(f"{name} contains NUL characters: binary file, not a text corpus")
            if text := emit(text):
                yield text
        if text := emit("", final=True):
            yield text
        return

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes read so far
    lines_before = 0  # "\n" bytes in them

    def not_utf8(err: UnicodeDecodeError, pending: bytes, data: bytes) -> DataError:
        whole = pending + data
        line = lines_before + whole[: err.start].count(b"\n") + 1
        at = offset - len(pending) + err.start
        bad = whole[err.start : err.start + 1].hex() or "end of file"
        return DataError(
            f"{name} is not UTF-8 at line {line}, byte offset {at} (byte 0x{bad}); "
            "convert it to UTF-8 first (e.g. iconv -f LATIN1 -t UTF-8)"
        )

    while True:
        try:
            data = read(chunk_size)
        except OSError as err:
            raise DataError(f"cannot read {name}: {err.strerror or err}") from None
        if not data:
            break
        nul = data.find(b"\0")
        if nul >= 0:
            line = lines_before + data[:nul].count(b"\n") + 1
            raise DataError(
                f"{name} contains a NUL byte at line {line}, byte offset {offset + nul}: "
                "binary file, not a text corpus"
            )
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(data)
        except UnicodeDecodeError as err:
            raise not_utf8(err, pending, data) from None
        offset += len(data)
        lines_before += data.count(b"\n")
        if text := emit(text):
            yield text
    pending = decoder.getstate()[0]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:  # the file ends inside a multi-byte character
        err = UnicodeDecodeError("utf-8", pending, 0, len(pending), "truncated")
        raise not_utf8(err, pending, b"") from None
    if text := emit("", final=True):
        yield text
