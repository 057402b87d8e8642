"""Tokenizers and the vocabulary: text -> tokens -> ids, and back.

A language model sees a corpus as a sequence of tokens, each mapped to an integer id
by a `Vocab`. Two special tokens are always present: `<UNK>` (id 0) stands for every
token the vocabulary does not know, and `<EOS>` (id 1) ends a sentence.

Tokenizer settings (`TokenizerConfig`):
    level     "char": Unicode code points (or, with `graphemes`, extended grapheme
              clusters, the `regex` module's \\X, so "e" + combining accent or an emoji
              with a skin-tone modifier stays one token).
              "word": words (letters and marks, with inner apostrophes or hyphens),
              numbers (with decimal/thousands separators), and every other non-space
              character (cluster) on its own; or, with split="whitespace", the
              whitespace-separated tokens of a pre-tokenized corpus (Penn Treebank).
    mode      "lines": every non-empty line is one sentence (the corpus reader appends
              <EOS>); newlines are not tokens. The default at word level.
              "stream": one running text; a newline is an ordinary token "\\n".
              The default at character level.
    lowercase applied token by token.

Reading a corpus streams it: the file is read in chunks (1 MiB by default), decoded
with an incremental UTF-8 decoder, and cut only at safe points, so memory does not
grow with the corpus (in lines mode it grows with the longest sentence).
Files and stdin are read with universal newlines ("\\r\\n" and "\\r" become "\\n").
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import regex

from charlm.errors import CharlmError, DataError, UsageError

UNK = "<UNK>"
EOS = "<EOS>"
UNK_LITERALS = frozenset({"<unk>", "<UNK>"})  # how corpora such as PTB spell an unknown word

CHUNK_SIZE = 1 << 20  # bytes (or characters, for text file objects) read at a time;
# chunk_size=None means this value, looked up at call time (tests shrink it)

VOCAB_FORMAT = "charlm-vocab"
VOCAB_VERSION = 1

LEVELS = ("char", "word")
MODES = ("lines", "stream")
SPLITS = ("regex", "whitespace")
DEFAULT_MODE = {"char": "stream", "word": "lines"}

# --- patterns -------------------------------------------------------------------------
# A word: a letter, then letters and combining marks, with inner apostrophes or hyphens
# ("don't", "well-known"). A number: digits with inner "." or "," ("15", "3.14",
# "1,000,000"). Anything else that is not whitespace is a token of its own, one grapheme
# cluster long (so "!" is a token and so is a flag emoji). "\n" is a token in stream mode.
# No look-behind anywhere: tokenizing a text from a safe cut point onward needs nothing
# that comes before it.
_WORD = r"\p{L}[\p{L}\p{M}]*(?:['\u2019\-\u2010\u2011][\p{L}\p{M}]+)*"
_NUMBER = r"\p{Nd}+(?:[.,]\p{Nd}+)*"
_WORD_RE = regex.compile(rf"\n|<unk>|<UNK>|{_WORD}|{_NUMBER}|(?=\S)\X")
_WHITESPACE_RE = regex.compile(r"\n|\S+")
_GRAPHEME_RE = regex.compile(r"\X")

# Safe cut points, searched from the end ((?r) = reverse search):
#  regex words: just after a newline, or after a whitespace character that is not glued
#  by the grapheme rules to the character that follows it (" " + combining accent).
_WORD_CUT_RE = regex.compile(
    r"(?r)\n|\s(?=[^\p{GCB=Extend}\p{GCB=SpacingMark}\p{GCB=ZWJ}])"
)
#  whitespace-split words: just after any whitespace.
_WHITESPACE_CUT_RE = regex.compile(r"(?r)\s")


# --- tokenizer settings ------------------------------------------------------------------


@dataclass
class TokenizerConfig:
    """How text is cut into tokens. `mode=None` means the default for the level
    (char -> "stream", word -> "lines") and is resolved on construction."""

    level: str = "char"
    mode: str | None = None
    split: str = "regex"
    lowercase: bool = False
    graphemes: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise UsageError(f"unknown tokenizer level {self.level!r}: use 'char' or 'word'")
        if self.mode is None:
            self.mode = DEFAULT_MODE[self.level]
        if self.mode not in MODES:
            raise UsageError(f"unknown reading mode {self.mode!r}: use 'lines' or 'stream'")
        if self.split not in SPLITS:
            raise UsageError(f"unknown split {self.split!r}: use 'regex' or 'whitespace'")
        if self.graphemes and self.level != "char":
            raise UsageError("--graphemes works only with --level char")
        if self.split == "whitespace" and self.level != "word":
            raise UsageError("--split whitespace works only with --level word")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TokenizerConfig":
        """Re-create settings saved by `to_dict`; CharlmError on anything malformed."""
        if not isinstance(d, Mapping):
            raise CharlmError("invalid tokenizer settings: expected a JSON object")
        unknown = set(d) - {"level", "mode", "split", "lowercase", "graphemes"}
        if unknown:
            raise CharlmError(f"invalid tokenizer settings: unknown key(s) {sorted(unknown)}")
        for key in ("level", "split"):
            if key in d and not isinstance(d[key], str):
                raise CharlmError(f"invalid tokenizer settings: {key} must be a string")
        if d.get("mode") is not None and not isinstance(d["mode"], str):
            raise CharlmError("invalid tokenizer settings: mode must be a string")
        for key in ("lowercase", "graphemes"):
            if key in d and not isinstance(d[key], bool):
                raise CharlmError(f"invalid tokenizer settings: {key} must be true or false")
        try:
            return cls(**dict(d))
        except UsageError as err:
            raise CharlmError(f"invalid tokenizer settings: {err}") from None

    def describe(self) -> str:
        """One line for humans, e.g. 'level=word mode=lines split=regex'."""
        parts = [f"level={self.level}", f"mode={self.mode}"]
        if self.level == "word":
            parts.append(f"split={self.split}")
        if self.graphemes:
            parts.append("graphemes")
        if self.lowercase:
            parts.append("lowercase")
        return " ".join(parts)


# --- tokenizer -----------------------------------------------------------------------------


class Tokenizer:
    """Cuts text into tokens according to a `TokenizerConfig`."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config if config is not None else TokenizerConfig()

    # one piece of text ----------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Tokens of `text` (no <EOS>). Stream mode: each "\\n" is a token "\\n".
        Lines mode: newlines are not tokens."""
        tokens = self._lower(self._raw_tokens(text))
        if self.config.mode == "lines":
            tokens = [t for t in tokens if t not in ("\n", "\r\n")]
        return tokens

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Char level: the tokens joined. Word level: joined by single spaces, with no
        space next to a "\\n" token."""
        if self.config.level == "char":
            return "".join(tokens)
        out: list[str] = []
        prev = "\n"
        for tok in tokens:
            if prev != "\n" and tok != "\n":
                out.append(" ")
            out.append(tok)
            prev = tok
        return "".join(out)

    def _raw_tokens(self, text: str) -> list[str]:
        """Stream-mode tokens of `text`, before lowercasing."""
        cfg = self.config
        if cfg.level == "char":
            return _GRAPHEME_RE.findall(text) if cfg.graphemes else list(text)
        if cfg.split == "whitespace":
            return _WHITESPACE_RE.findall(text)
        return _WORD_RE.findall(text)

    def _lower(self, tokens: list[str]) -> list[str]:
        if not self.config.lowercase:
            return tokens
        # Token by token, so that the result does not depend on where a chunk was cut
        # (str.lower() of a whole text makes a word-final sigma "ς").
        return [t.lower() for t in tokens]

    def _cut(self, buf: str) -> tuple[list[str], str]:
        """Split `buf` (more text may follow it) at the last safe point.

        Returns (raw tokens of the safe prefix, the held-back rest). The tokens of
        prefix + rest + anything later equal tokens(prefix) + tokens(rest + later)."""
        cfg = self.config
        if cfg.level == "char":
            if not cfg.graphemes:
                return list(buf), ""  # a code point never depends on its neighbours
            clusters = _GRAPHEME_RE.findall(buf)  # hold back the last, unfinished cluster
            return clusters[:-1], (clusters[-1] if clusters else "")
        cut_re = _WHITESPACE_CUT_RE if cfg.split == "whitespace" else _WORD_CUT_RE
        m = cut_re.search(buf)  # hold back the last partial token
        cut = m.end() if m else 0
        return self._raw_tokens(buf[:cut]), buf[cut:]

    # a whole corpus -------------------------------------------------------------------
    def iter_tokens(self, source, *, chunk_size: int | None = None) -> Iterator[list[str]]:
        """Stream-mode token lists whose concatenation is the tokens of the whole text
        (including "\\n" tokens), read in chunks of `chunk_size` with bounded memory.
        (Only a text with no safe cut point at all, such as megabytes without any
        whitespace at word level, is held until one comes.)"""
        buf = ""
        for text in read_text(source, chunk_size=chunk_size):
            tokens, buf = self._cut(buf + text)
            if tokens:
                yield self._lower(tokens)
        if buf:
            yield self._lower(self._raw_tokens(buf))

    def iter_pieces(
        self, source, *, chunk_size: int | None = None
    ) -> Iterator[tuple[list[str], bool]]:
        """(tokens, end) pairs: a corpus in pieces of bounded size, whatever its lines.

        Lines mode: the pieces of each non-empty line, its last piece (maybe empty)
        with end=True; no newline tokens; lines that are empty or whitespace only are
        skipped. Stream mode: the pieces of each input line, its last piece ending with
        the "\\n" token and end=True (a text without a final newline ends with
        end=False). Memory stays bounded even for a 50 MB corpus on one line."""
        lines = self.config.mode == "lines"
        held: list[str] = []  # lines mode: the current line while it is still blank
        live = False  # lines mode: has the current line shown a non-space token?
        for tokens in self.iter_tokens(source, chunk_size=chunk_size):
            for seg, ended in _split_at_newlines(tokens, keep=not lines):
                if not lines:
                    if seg:
                        yield seg, ended
                    continue
                if not live:
                    held.extend(seg)
                    if _blank(seg):
                        if ended:  # a blank line: skip it
                            held = []
                        continue
                    live, seg, held = True, held, []
                if seg or ended:
                    yield seg, ended
                if ended:
                    live = False
        if live:
            yield [], True  # the last line had no newline

    def iter_sentences(self, source, *, chunk_size: int | None = None) -> Iterator[list[str]]:
        """Token lists of a corpus file ("-" = stdin, or a path, or a file object).

        Lines mode: one list per non-empty line (no <EOS>); lines that are empty or
        whitespace only are skipped. Stream mode: one list per input line, ending with
        its "\\n" token (a very long line may come in several pieces); the concatenation
        is the tokens of the whole text. Raises DataError for a missing, unreadable,
        binary or non-UTF-8 file. (Lines mode holds one whole sentence in memory; use
        `iter_pieces` to avoid even that.)"""
        if self.config.mode == "stream":
            for seg, _ in self.iter_pieces(source, chunk_size=chunk_size):
                yield seg
            return
        current: list[str] = []
        for seg, ended in self.iter_pieces(source, chunk_size=chunk_size):
            current.extend(seg)
            if ended:
                yield current
                current = []


def _split_at_newlines(tokens: list[str], keep: bool) -> Iterator[tuple[list[str], bool]]:
    """(segment, ended) for the runs of `tokens` between "\\n" tokens; `keep` leaves the
    "\\n" at the end of its segment. The last segment (ended=False) may be empty."""
    start = 0
    while True:
        try:
            i = tokens.index("\n", start)
        except ValueError:
            yield tokens[start:], False
            return
        yield tokens[start : i + 1 if keep else i], True
        start = i + 1


def _blank(tokens: list[str]) -> bool:
    return all(t.isspace() for t in tokens)


# --- reading a corpus -----------------------------------------------------------------------


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


# --- vocabulary -----------------------------------------------------------------------------


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
