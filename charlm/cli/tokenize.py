"""`charlm tokenize`: show how a corpus is cut into tokens, count them, save a vocabulary."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click

from charlm.cli.group import cli
from charlm.cli.options import tokenizer_options, tokenizer_settings, vocab_options
from charlm.errors import DataError
from charlm.files import VOCAB, Output, check_outputs
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, Vocab, count_summary

_FLUSH_EVERY = 1 << 16  # characters of output gathered before one write


@cli.command("tokenize")
@click.argument("file", default="-", metavar="[FILE|-]")
@tokenizer_options
@vocab_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON array of strings per line (exact; includes \"\\n\" "
                   "tokens in stream mode).")
@click.option("--stats", is_flag=True,
              help="Print corpus and vocabulary statistics instead of the tokens.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
              help="With --stats: how many of the most frequent tokens to list.")
@click.option("--vocab-out", type=click.Path(dir_okay=False), default=None,
              metavar="PATH", help="Write the vocabulary (JSON, with the tokenizer settings).")
@click.option("--force", is_flag=True,
              help="Replace an existing --vocab-out file that is not a charlm vocabulary (never FILE).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the tokens.")
def tokenize_command(file, level, mode, split, lowercase, graphemes, min_count, max_vocab,
                     as_json, stats, top, vocab_out, force, quiet) -> None:
    """Cut FILE (or stdin, "-") into tokens and print them.

    Prints the tokens of each sentence (lines mode) or of each input line (stream mode)
    on one output line, separated by single spaces. <EOS> is not printed; in stream
    mode the output line break stands for the newline token. Use --json for the exact
    form (one JSON array of strings per line).

    \b
    Examples:
      charlm tokenize data/dinos.txt --mode lines        # the letters of each name
      charlm tokenize --level word --stats corpus.txt    # types, OOV rate, top tokens
      charlm tokenize --level word --split whitespace --min-count 2 \\
          --vocab-out vocab.json -q ptb.train.txt         # save a vocabulary only
      echo "Cats average 15 hours of sleep a day." | charlm tokenize --level word
    """
    if vocab_out is not None:
        check_outputs([Output(vocab_out, VOCAB, "--vocab-out")], {"the corpus": file}, force=force)
    config = tokenizer_settings(level, mode, split, lowercase, graphemes)
    tokenizer = Tokenizer(config)
    count = stats or vocab_out is not None
    show = not (stats or quiet)
    counts: Counter = Counter()
    sentences = 0
    content = False  # seen a token that is not whitespace?
    out = _Printer(sys.stdout, as_json, config.mode) if show else None

    for tokens, end in tokenizer.iter_pieces(file):  # bounded memory, even for long lines
        if not content:
            content = any(not t.isspace() for t in tokens)
            if content and out:
                out.hold = False  # now it is worth printing
        if count:
            counts.update(tokens)
        sentences += end
        if out:
            out.piece(tokens, end)
    if out and content:
        out.close()
    if not content:
        name = "stdin" if file == "-" else file
        raise DataError(f"{name} is empty or whitespace only: nothing to tokenize")
    if not count:
        return

    if config.mode == "lines":
        counts[EOS] = sentences  # one <EOS> per sentence, as the model will see them
    vocab = Vocab.from_counts(counts, min_count=min_count, max_vocab=max_vocab,
                              tokenizer=config)
    if vocab_out is not None:
        vocab.save(vocab_out)
    if stats:
        _print_stats(file, config, vocab, count_summary(counts, vocab, top), top)


class _Printer:
    """Writes one output line per sentence (lines mode) or input line (stream mode),
    plain or JSON, from the pieces of `Tokenizer.iter_pieces`, in large blocks."""

    def __init__(self, stream, as_json: bool, mode: str):
        self.stream, self.as_json, self.stream_mode = stream, as_json, mode == "stream"
        self.buf: list[str] = []
        self.size = 0
        self.at_line_start = True
        self.hold = True  # print nothing until the corpus proves not to be blank

    def _add(self, s: str) -> None:
        self.buf.append(s)
        self.size += len(s)
        if self.size >= _FLUSH_EVERY and not self.hold:
            self.flush()

    def flush(self) -> None:
        self.stream.write("".join(self.buf))
        self.buf, self.size = [], 0

    def piece(self, tokens: list[str], end: bool) -> None:
        """Part of a line; `end`: the line ends here (in stream mode, with its "\\n"
        token, which the JSON form shows and the plain form turns into the line break)."""
        if self.as_json:
            if tokens:
                inner = json.dumps(tokens, ensure_ascii=False)[1:-1]
                self._add(("[" if self.at_line_start else ", ") + inner)
                self.at_line_start = False
        else:
            words = tokens[:-1] if (end and self.stream_mode) else tokens
            if words:
                self._add(("" if self.at_line_start else " ") + " ".join(words))
                self.at_line_start = False
        if end:
            self.end_line()

    def end_line(self) -> None:
        if self.as_json:
            self._add("[]\n" if self.at_line_start else "]\n")
        else:
            self._add("\n")
        self.at_line_start = True

    def close(self) -> None:
        if not self.at_line_start:  # the text did not end with a newline
            self.end_line()
        self.flush()
        self.stream.flush()


def _print_stats(file, config: TokenizerConfig, vocab: Vocab, s: dict, top: int) -> None:
    def pct(x: float) -> str:
        return f"{100 * x:.2f}%"

    limit = "none" if vocab.max_vocab is None else str(vocab.max_vocab)
    lines = [
        f"file:        {'<stdin>' if file == '-' else file}",
        f"tokenizer:   {config.describe()}",
        f"tokens:      {s['tokens']:,}" + (f" in {s['sentences']:,} sentences (+ one <EOS> each)"
                                           if config.mode == "lines" else ""),
        f"types:       {s['types']:,}",
        f"singletons:  {s['singletons']:,} (types seen once)",
        f"vocabulary:  {s['vocab_size']:,} ids = {s['kept_types']:,} types + <UNK> + <EOS> "
        f"(--min-count {vocab.min_count}, --max-vocab {limit})",
        f"kept:        {s['kept_types']:,} of {s['types']:,} types "
        f"({pct(s['kept_types'] / s['types'] if s['types'] else 0)}), "
        f"covering {pct(s['kept_share'])} of tokens",
        f"OOV rate:    {pct(s['oov_rate'])} ({s['oov_tokens']:,} tokens -> <UNK>)",
    ]
    if top:
        lines.append(f"top {min(top, len(s['top']))} tokens:")
        width = max((len(repr(t)) for t, _ in s["top"]), default=0)
        for rank, (tok, c) in enumerate(s["top"], 1):
            lines.append(f"  {rank:>3}  {repr(tok):<{width}}  {c:>12,}  "
                         f"{pct(c / s['tokens'])}")
    click.echo("\n".join(lines))
