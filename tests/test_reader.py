"""Streaming UTF-8 reading (charlm.text.reader): chunks, universal newlines, the byte-order mark,
and what is refused (missing files, NUL bytes, bytes that are not UTF-8)."""

from __future__ import annotations

import io
import itertools

import pytest

from charlm.errors import DataError
from charlm.text.reader import read_text
from charlm.text.tokenizer import Tokenizer, TokenizerConfig

CHAR = TokenizerConfig()
GRAPH = TokenizerConfig(graphemes=True)
WORD = TokenizerConfig(level="word")


def read_all(config, data: bytes, chunk_size: int):
    return list(Tokenizer(config).iter_sentences(io.BytesIO(data), chunk_size=chunk_size))


def test_multibyte_characters_across_chunk_boundaries():
    text = "é€😀\n" * 50
    for chunk in (1, 2, 3, 5):
        pieces = read_all(GRAPH, text.encode(), chunk)
        assert "".join(itertools.chain.from_iterable(pieces)) == text


@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_universal_newlines_and_bom(chunk):
    data = b"\xef\xbb\xbfa\r\nb\rc\r"
    assert "".join(read_text(io.BytesIO(data), chunk_size=chunk)) == "a\nb\nc\n"


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_not_utf8_says_line_and_byte_offset(chunk):
    data = "ab\ncafé\n".encode() + b"caf\xe9\n"
    with pytest.raises(DataError, match=r"not UTF-8 at line 3, byte offset 12"):
        read_all(CHAR, data, chunk)


def test_truncated_character_at_end_of_file():
    with pytest.raises(DataError, match=r"not UTF-8 at line 2, byte offset 3"):
        read_all(CHAR, b"ab\n\xe2\x82", 2)


def test_nul_bytes_mean_binary(write_corpus):
    with pytest.raises(DataError, match=r"NUL byte at line 2, byte offset 4.*binary"):
        read_all(CHAR, b"abc\n\0def", 3)
    with pytest.raises(DataError, match="binary"):
        list(Tokenizer().iter_sentences(write_corpus(b"\x89PNG\r\n\x1a\n\0\0")))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(Tokenizer().iter_sentences(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="is a directory"):
        list(Tokenizer().iter_sentences(tmp_path))


def test_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("héllo wörld\n".encode())))
    assert list(Tokenizer(WORD).iter_sentences("-")) == [["héllo", "wörld"]]


def test_read_error_of_a_text_file_object():
    class Failing(io.StringIO):
        def read(self, size=-1):
            if size:
                raise OSError(5, "Input/output error")
            return ""

    with pytest.raises(DataError, match="cannot read <input>: Input/output error"):
        list(read_text(Failing()))
