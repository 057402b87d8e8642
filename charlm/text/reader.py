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
from collections.abc import Callable, Iterator
from pathlib import Path

from charlm.errors import DataError

CHUNK_SIZE = 1 << 20  # bytes (or characters, for text file objects) read at a time;
# chunk_size=None means this value, looked up at call time (tests shrink it)


def read_text(source, *, chunk_size: int | None = None,
              on_bytes: Callable[[bytes], None] | None = None) -> Iterator[str]:
    """Decoded text of `source` in pieces of about `chunk_size`, with universal newlines.

    `source`: a path, "-" for stdin, or a binary or text file object. `on_bytes`, if given,
    sees every chunk of raw bytes before it is decoded (progress, a content hash; not called
    for a text file object). Raises DataError for a missing file, a directory, an unreadable
    file, NUL bytes (a binary file) or bytes that are not UTF-8 (saying at which line and
    byte offset)."""
    chunk_size = CHUNK_SIZE if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if isinstance(source, (str, os.PathLike)) and str(source) == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        yield from _decode(stream, "<stdin>", chunk_size, on_bytes)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path} is a directory, not a file")
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise DataError(f"no such file: {path}") from None
        except PermissionError:
            raise DataError(f"cannot read {path}: permission denied") from None
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None
        with f:
            yield from _decode(f, str(path), chunk_size, on_bytes)
    else:
        name = getattr(source, "name", None)
        yield from _decode(source, name if isinstance(name, str) else "<input>", chunk_size, on_bytes)


def _decode(f, name: str, chunk_size: int, on_bytes=None) -> Iterator[str]:
    """The text of the binary or text file object `f`, in pieces, with universal newlines
    and no byte-order mark; `name` is what error messages call it."""
    read = getattr(f, "read1", f.read)  # read1: whatever is available (pipes, ttys)
    try:
        probe = read(0)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {name}: {err}") from None
    # a text file object is already decoded: only NUL characters are checked
    decode = _nul_free(name) if isinstance(probe, str) else _Utf8Decoder(name).decode
    newlines = io.IncrementalNewlineDecoder(None, translate=True)
    first = True  # no text yet: a byte-order mark may come
    while True:
        try:
            data = read(chunk_size)
        except UnicodeDecodeError as err:  # a text file object decodes as it reads
            raise DataError(f"{name}: not UTF-8 ({err.reason})") from None
        except OSError as err:
            raise DataError(f"cannot read {name}: {err.strerror or err}") from None
        final = not data  # end of input: flush both decoders
        if on_bytes is not None and data and isinstance(data, bytes):
            on_bytes(data)
        text = newlines.decode(decode(data, final), final=final)
        if first and text:
            first = False
            if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not text
                text = text[1:]
        if text:
            yield text
        if final:
            return


def _nul_free(name: str):
    """decode(text, final) for a text file object: the text itself, if it has no NUL."""

    def decode(text: str, final: bool) -> str:
        if "\0" in text:
            raise DataError(f"{name} contains NUL characters: a binary file, not text")
        return text

    return decode


class _Utf8Decoder:
    """Strict incremental UTF-8 decoding of a binary stream, chunk by chunk; its errors
    say at which line and byte offset the stream stops being UTF-8 text."""

    def __init__(self, name: str):
        self.name = name
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._offset = 0  # bytes decoded so far
        self._lines = 0  # "\n" bytes in them

    def decode(self, data: bytes, final: bool) -> str:
        """The text of the next chunk `data` (b"" with final=True at the end of input)."""
        nul = data.find(b"\0")
        if nul >= 0:
            raise DataError(
                f"{self.name} contains a NUL byte at line {self._line(data, nul)}, "
                f"byte offset {self._offset + nul}: a binary file, not text"
            )
        pending = self._decoder.getstate()[0]  # the start of an unfinished character
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as err:  # err.start indexes pending + data
            whole = pending + data
            bad = whole[err.start : err.start + 1].hex() or "end of file"
            raise DataError(
                f"{self.name} is not UTF-8 at line {self._line(whole, err.start)}, "
                f"byte offset {self._offset - len(pending) + err.start} (byte 0x{bad}); "
                "convert it to UTF-8 first (e.g. iconv -f LATIN1 -t UTF-8)"
            ) from None
        self._offset += len(data)
        self._lines += data.count(b"\n")
        return text

    def _line(self, data: bytes, i: int) -> int:
        """Line number of byte i of `data`, which starts where the decoded bytes end
        (give or take an unfinished character, which holds no "\\n")."""
        return self._lines + data[:i].count(b"\n") + 1


def iter_lines(source) -> Iterator[str]:
    """The lines of a UTF-8 text (path, "-" for stdin, or file object), without their "\\n".

    Read with `read_text` (chunked, universal newlines, DataError for a missing,
    binary or non-UTF-8 file); only the current line is held in memory.
    """
    parts: list[str] = []
    for text in read_text(source):
        pieces = text.split("\n")
        if len(pieces) == 1:
            parts.append(text)
            continue
        parts.append(pieces[0])
        yield "".join(parts)
        yield from pieces[1:-1]
        parts = [pieces[-1]]
    tail = "".join(parts)
    if tail:
        yield tail
