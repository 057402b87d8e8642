"""File formats of the tagging and classification tasks: reading, detecting, writing.

Tagging (one token per line, a blank line between sentences):

    conllu    CoNLL-U: 10 TAB-separated columns ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC;
              lines starting with "#" are comments; multiword-token ranges ("3-4") and empty
              nodes ("8.1") are skipped. The tag is UPOS (--tag-column upos, the default), XPOS
              (xpos) or column N (1-based).
    columns   CoNLL-2003 style: whitespace-separated columns, the token first and the tag last
              (or column N); every line of a file has the same number of columns; "-DOCSTART-"
              lines start a new document and are not sentences.
    text      (input to `charlm tag` only) one sentence per line, tokenized by the model's tokenizer.

Classification (one example per line, blank lines skipped):

    tab       LABEL<TAB>TEXT
    fasttext  __label__LABEL TEXT
    text      (input to `charlm classify` only) TEXT

The format is detected from the first line that decides it and can be forced with `format=`; a
file whose lines disagree with it ("mixes formats"), a line with the wrong number of columns, a
missing tag, label or text are `DataError`s naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from charlm.errors import DataError, UsageError
from charlm.text.reader import iter_lines

TAG_FORMATS = ("conllu", "columns")
LABEL_FORMATS = ("tab", "fasttext")
CONLLU_COLUMNS = {"upos": 4, "xpos": 5}  # --tag-column name -> 1-based CoNLL-U column
DOCSTART = "-DOCSTART-"
FASTTEXT_PREFIX = "__label__"
MISSING = "_"  # CoNLL-U: no value

_CONLLU_ID = re.compile(r"\d+(?:-\d+|\.\d+)?")
_FASTTEXT = re.compile(r"__label__(\S*)\s*(.*)", re.S)


def _name(source) -> str:
    return "<stdin>" if source == "-" else str(getattr(source, "name", source))


def _numbered_lines(source):
    """(line number from 1, line without its newline) for every line of a UTF-8 text."""
    return enumerate(iter_lines(source), 1)


# --------------------------------------------------------------------------------- tagging


@dataclass
class Sentence:
    """One sentence of a tagging file: its tokens, their tags (None when not read), the line it
    starts on (for messages) and the document it belongs to (counted by -DOCSTART- lines)."""

    tokens: list[str]
    tags: list[str] | None
    line: int
    doc: int = 0


@dataclass
class TaggedFile:
    """The sentences of a tagging file and the format they were read in."""

    sentences: list[Sentence]
    format: str
    name: str
    tag_column: str | None = None  # as asked ("upos", "xpos", "N") or None for the default


def _is_conllu_line(line: str) -> bool:
    fields = line.split("\t")
    return len(fields) == 10 and _CONLLU_ID.fullmatch(fields[0]) is not None


def detect_tag_format(first_line: str) -> str:
    """"conllu" when the first data line is a CoNLL-U word line, otherwise "columns"."""
    return "conllu" if _is_conllu_line(first_line) else "columns"


def parse_tag_column(value: str | int | None) -> str | int | None:
    """--tag-column: "upos", "xpos", a 1-based column number, or None (the format's default)."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        if isinstance(value, int) and value < 1:
            raise UsageError(f"--tag-column must be upos, xpos or a column number >= 1 (got {value})")
        return value
    text = str(value).strip().lower()
    if text in CONLLU_COLUMNS:
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--tag-column must be upos, xpos or a column number >= 1 (got {value!r})")


class _TagReader:
    """Reads a tagging file line by line (see the module docstring); one instance per file."""

    def __init__(self, source, format: str | None, tag_column, need_tags: bool):
        self.name = _name(source)
        self.format = format
        self.tag_column = parse_tag_column(tag_column)
        self.need_tags = need_tags
        self.sentences: list[Sentence] = []
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.start = 0  # line of the current sentence's first token
        self.doc = 0
        self.columns: tuple[int, int] | None = None  # columns files: (count, line that set it)
        self.format_line = 0  # the line that decided the format

    def origin(self) -> str:
        return f"from line {self.format_line}" if self.format_line else f"by --format {self.format}"

    def fail(self, lineno: int, what: str) -> DataError:
        return DataError(f"{self.name} line {lineno}: {what}")

    def mixed(self, lineno: int, line: str, what: str) -> DataError:
        """A line of another format: the file mixes formats, or (--format given) is not in it."""
        if not self.format_line:
            return _not_in_format(self.name, lineno, line, self.format)
        return self.fail(lineno, f"{what} (columns {self.origin()}): the file mixes formats"
                         if self.format == "columns" else f"{what} (CoNLL-U {self.origin()}): the file mixes formats")

    def read(self, source) -> TaggedFile:
        pending = []  # leading "#" lines: CoNLL-U comments, or tokens of a column file
        for lineno, line in _numbered_lines(source):
            if self.format is None and (line.startswith("#") or pending and not line.strip()):
                pending.append((lineno, line))
                continue
            if self.format is None and line.strip():
                self.format, self.format_line = detect_tag_format(line), lineno
                for early in pending:
                    self.line(*early)
                pending = []
            self.line(lineno, line)
        if self.format is None:  # nothing but "#" lines: CoNLL-U comments
            self.format = "conllu"
        self.end_sentence()
        if not self.sentences:
            raise DataError(f"{self.name} is empty: no sentences (expected a CoNLL-U or column file "
                            "with one token per line and a blank line between sentences)")
        return TaggedFile(self.sentences, self.format, self.name,
                          None if self.tag_column is None else str(self.tag_column))

    def line(self, lineno: int, line: str) -> None:
        if not line.strip():
            self.end_sentence()
        elif self.format == "conllu":
            self.conllu_line(lineno, line)
        else:
            self.column_line(lineno, line)

    def end_sentence(self) -> None:
        if self.tokens:
            self.sentences.append(Sentence(self.tokens, self.tags if self.need_tags else None,
                                           self.start, self.doc))
        self.tokens, self.tags = [], []

    def add(self, lineno: int, token: str, tag: str | None) -> None:
        if not self.tokens:
            self.start = lineno
        self.tokens.append(token)
        if self.need_tags:
            self.tags.append(tag)

    def conllu_line(self, lineno: int, line: str) -> None:
        if line.startswith("#"):
            return
        fields = line.split("\t")
        if len(fields) != 10:
            if len(line.split()) >= 2 and "\t" not in line:
                raise self.mixed(lineno, line, "a column-format line in a CoNLL-U file")
            if not self.format_line and not self.sentences and not self.tokens:
                raise _not_in_format(self.name, lineno, line, self.format)
            raise self.fail(lineno, f"{len(fields)} TAB-separated columns; CoNLL-U lines have 10")
        if _CONLLU_ID.fullmatch(fields[0]) is None:
            raise self.fail(lineno, f"bad CoNLL-U word id {fields[0]!r} (expected 1, 2, ..., a range "
                                    "3-4 or an empty node 8.1)")
        if not fields[0].isdigit():
            return  # a multiword token (its words follow) or an empty node: not tagged
        tag = None
        if self.need_tags:
            col = self.tag_column if self.tag_column is not None else "upos"
            index = CONLLU_COLUMNS[col] if isinstance(col, str) else col
            if index > 10:
                raise UsageError(f"--tag-column {col} does not exist: CoNLL-U files have 10 columns")
            tag = fields[index - 1]
            if tag == MISSING or not tag:
                if not self.sentences and not self.tokens:
                    raise DataError(f"{self.name} has no {col} tags (line {lineno}: column {index} is "
                                    f"'{MISSING}'): choose another --tag-column")
                raise self.fail(lineno, f"the word {fields[1]!r} has no tag ({col} column is '{MISSING}')")
        self.add(lineno, fields[1], tag)

    def column_line(self, lineno: int, line: str) -> None:
        fields = line.split()
        if fields[0] == DOCSTART:
            self.end_sentence()
            self.doc += 1
            return
        if _is_conllu_line(line) and (self.columns is None or self.columns[0] != 10):
            raise self.mixed(lineno, line, "a CoNLL-U line in a column file")
        if self.columns is None:
            self.columns = (len(fields), lineno)
            self.check_tag_column(lineno, len(fields))
        elif len(fields) != self.columns[0]:
            n, first = self.columns
            if line.startswith("# "):
                raise self.mixed(lineno, line, "a CoNLL-U comment line in a column file")
            raise self.fail(lineno, f"{len(fields)} column{'s' * (len(fields) != 1)}, but line {first} "
                                    f"has {n}: every line of a column file has the same columns")
        tag = None
        if self.need_tags:
            tag = fields[-1] if self.tag_column is None else fields[self.tag_column - 1]
        self.add(lineno, fields[0], tag)

    def check_tag_column(self, lineno: int, n: int) -> None:
        col = self.tag_column
        if isinstance(col, str):
            raise UsageError(f"--tag-column {col} applies to CoNLL-U files; {self.name} is a column file "
                             "(the tag is the last column, or --tag-column N)")
        if not self.need_tags:
            return
        if n < 2:
            raise self.fail(lineno, "a token without a tag: a column file has the token first and its "
                                    "tag last (is this plain text? it needs tags)")
        if col is not None and col > n:
            raise UsageError(f"--tag-column {col} does not exist: {self.name} has {n} columns (line {lineno})")
        if col == 1:
            raise UsageError("--tag-column 1 is the token itself; the tag is in another column")


def read_tagged(source, format: str | None = None, tag_column=None, need_tags: bool = True) -> TaggedFile:
    """Read a tagging file (path, "-" or a text file object) in `format` ("conllu", "columns" or
    None to detect it). With need_tags=False only the tokens are read (Sentence.tags is None).

    Raises DataError for the problems listed in the module docstring (naming the line) and for a
    file without sentences; UsageError for a --tag-column the file does not have.
    """
    if format is not None and format not in TAG_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(TAG_FORMATS)} for tagging (got {format!r})")
    return _TagReader(source, format, tag_column, need_tags).read(source)


def read_text_sentences(source, tokenize) -> TaggedFile:
    """Plain text, one sentence per line, cut into tokens by `tokenize(str) -> list[str]`; blank
    lines are skipped."""
    sentences = []
    for lineno, line in _numbered_lines(source):
        tokens = tokenize(line) if line.strip() else []
        if tokens:
            sentences.append(Sentence(tokens, None, lineno))
    if not sentences:
        raise DataError(f"{_name(source)} is empty: no sentences to tag")
    return TaggedFile(sentences, "text", _name(source))


def looks_like_columns(source, known_tags) -> bool:
    """Whether an unlabelled input to `charlm tag` is a column file rather than plain text: its first
    lines (up to a blank line or 20 lines) all have two or more fields whose last is a tag in
    `known_tags`, or start with -DOCSTART-."""
    seen = 0
    for _, line in _numbered_lines(source):
        fields = line.split()
        if not fields:
            if seen:
                break
            continue
        if fields[0] != DOCSTART:
            if len(fields) < 2 or fields[-1] not in known_tags:
                return False
            seen += 1
        if seen >= 20:
            break
    return seen > 0


_TAG_LIKE = re.compile(r"O|[BIES]-\S+|[A-Z][A-Z0-9$#'`.,:()_-]*|[.,:;!?$#'`()-]+")


def column_tags(source) -> set | None:
    """The last-column values of the first lines (up to 20 token lines) when `source` is shaped
    like a column file whatever its tag set — a -DOCSTART- line, or every line with the same
    number (two or more) of fields and a tag-like last field (O, B-X, NOUN, NN, "."), a blank
    line between sentences —, else None (plain text)."""
    tags, widths, lines, docstart = set(), set(), 0, False
    for _, line in _numbered_lines(source):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == DOCSTART:
            docstart = True
            continue
        widths.add(len(fields))
        if len(fields) < 2 or len(widths) > 1 or not _TAG_LIKE.fullmatch(fields[-1]):
            return tags if docstart and len(fields) >= 2 else None
        tags.add(fields[-1])
        lines += 1
        if lines >= 20:
            break
    return tags if lines >= 2 or docstart and lines else None


def write_columns(tokens: list[str], tags: list[str]) -> str:
    """A sentence as column lines ("token<TAB>tag") followed by a blank line."""
    return "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags)) + "\n"


# --------------------------------------------------------------------------- classification


@dataclass
class Example:
    """One classification example: its text, tokens, label (None when not read) and line."""

    text: str
    tokens: list[str]
    label: str | None
    line: int


@dataclass
class LabelledFile:
    examples: list[Example]
    format: str
    name: str


FORMAT_NAMES = {"conllu": "CoNLL-U", "columns": "column-file", "tab": "LABEL<TAB>TEXT",
                "fasttext": "fastText (__label__LABEL TEXT)"}


def _not_in_format(name: str, lineno: int, line: str, format: str) -> DataError:
    """The error for a file that --format says is in `format`, at its first line that is not."""
    shown = line.rstrip("\n")
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return DataError(f"{name} is not in --format {format}: line {lineno} ({shown!r}) is not a "
                     f"{FORMAT_NAMES[format]} line (leave out --format to detect the format)")


def detect_label_format(line: str) -> str | None:
    """"fasttext" (a __label__ prefix), "tab" (a TAB in the line) or None (neither)."""
    if line.lstrip().startswith(FASTTEXT_PREFIX):
        return "fasttext"
    if "\t" in line:
        return "tab"
    return None


def _split_example(name: str, lineno: int, line: str, format: str, first: int) -> tuple[str, str]:
    """(label, text) of one line in `format` (decided at line `first`)."""
    kind = detect_label_format(line)
    if not first and kind != format and kind is not None:  # --format says otherwise
        raise _not_in_format(name, lineno, line, format)
    if format == "fasttext":
        stripped = line.lstrip()
        if kind != "fasttext":
            if kind == "tab":
                raise DataError(f"{name} line {lineno}: a LABEL<TAB>TEXT line in a fastText file "
                                f"(__label__ from line {first}): the file mixes formats")
            raise DataError(f"{name} line {lineno}: no label (expected __label__LABEL TEXT)")
        label, text = _FASTTEXT.match(stripped).groups()
        if text.startswith(FASTTEXT_PREFIX):
            raise DataError(f"{name} line {lineno}: more than one label; charlm gives each text one label")
    else:
        if kind != "tab":
            if kind == "fasttext":
                raise DataError(f"{name} line {lineno}: a fastText __label__ line in a LABEL<TAB>TEXT "
                                f"file (from line {first}): the file mixes formats")
            raise DataError(f"{name} line {lineno}: no label (expected LABEL<TAB>TEXT, no TAB found)")
        label, _, text = line.partition("\t")
        label = label.strip()
    if not label:
        raise DataError(f"{name} line {lineno}: an empty label")
    if not text.strip():
        raise DataError(f"{name} line {lineno}: the label {label!r} has no text")
    return label, text.strip()


def read_labelled(source, tokenize, format: str | None = None, need_labels: bool = True) -> LabelledFile:
    """Read a classification file: examples with their text cut by `tokenize(str) -> list[str]`.

    format: "tab", "fasttext", "text" (no labels; only when need_labels is False) or None to
    detect it from the first non-blank line (with need_labels=False a line that is neither
    labelled format makes the file plain text). Raises DataError naming the line for a line
    without a label or without text, a file that mixes formats and a file without examples.
    """
    allowed = LABEL_FORMATS if need_labels else LABEL_FORMATS + ("text",)
    if format is not None and format not in allowed:
        raise UsageError(f"--format must be one of {', '.join(allowed)} for classification (got {format!r})")
    name, examples, first = _name(source), [], 0
    for lineno, line in _numbered_lines(source):
        if not line.strip():
            continue
        if format is None:
            format, first = detect_label_format(line) or ("text" if not need_labels else None), lineno
            if format is None:
                raise DataError(f"{name} line {lineno}: no label (expected LABEL<TAB>TEXT or "
                                "__label__LABEL TEXT)")
        label, text = (None, line.strip()) if format == "text" else \
            _split_example(name, lineno, line, format, first)
        tokens = tokenize(text)
        if not tokens:
            raise DataError(f"{name} line {lineno}: no text (nothing to classify)")
        examples.append(Example(text, tokens, label if need_labels else None, lineno))
    if not examples:
        raise DataError(f"{name} is empty: no examples (expected LABEL<TAB>TEXT or __label__LABEL TEXT lines)")
    return LabelledFile(examples, format, name)
