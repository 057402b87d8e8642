"""Tokenizers: text -> tokens, and back.

Settings (`TokenizerConfig`):
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

A corpus is tokenized as it streams in (`charlm.text.reader.read_text`): each decoded piece
is cut only at a safe point, where the tokens of what comes before do not depend on
what comes after, so memory does not grow with the corpus (in lines mode it grows with
the longest sentence).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass

import regex

from charlm.errors import CharlmError, UsageError
from charlm.text.reader import read_text

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

    @property
    def pattern(self) -> str | None:
        """The regular expression (Python `regex` syntax) whose matches in a text are its
        stream-mode tokens before lowercasing; None: every code point is a token. For programs
        that must cut text as charlm does (`charlm export` writes it into the model's metadata)."""
        compiled = self._pattern()
        return None if compiled is None else compiled.pattern

    def _pattern(self):
        """The compiled `pattern` (None: code points)."""
        cfg = self.config
        if cfg.level == "char":
            return _GRAPHEME_RE if cfg.graphemes else None
        return _WHITESPACE_RE if cfg.split == "whitespace" else _WORD_RE

    def _raw_tokens(self, text: str) -> list[str]:
        """Stream-mode tokens of `text`, before lowercasing."""
        compiled = self._pattern()
        return list(text) if compiled is None else compiled.findall(text)

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
    def iter_tokens(self, source, *, chunk_size: int | None = None,
                    on_bytes=None) -> Iterator[list[str]]:
        """Stream-mode token lists whose concatenation is the tokens of the whole text
        (including "\\n" tokens), read in chunks of `chunk_size` with bounded memory.
        (Only a text with no safe cut point at all, such as megabytes without any
        whitespace at word level, is held until one comes.) `on_bytes`: see
        `charlm.text.reader.read_text`."""
        buf = ""
        for text in read_text(source, chunk_size=chunk_size, on_bytes=on_bytes):
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
