"""Command-line options shared by several subcommands."""

from __future__ import annotations

import functools

import click

from charlm.errors import CharlmError


def tokenizer_options(f):
    """Add --level, --mode, --split, --lowercase, --graphemes to a command.

    The command receives them as keyword arguments `level, mode, split, lowercase, graphemes`;
    turn them into a `TokenizerConfig` with `tokenizer_settings(**kwargs)`.
    """
    options = [
        click.option("--level", type=click.Choice(["char", "word"]), default="char", show_default=True,
                     help="Tokens are characters or words."),
        click.option("--mode", type=click.Choice(["lines", "stream"]), default=None,
                     help="lines: each non-empty line is a sentence ending in <EOS> (default for words); "
                          "stream: one running text, newline is a token (default for characters)."),
        click.option("--split", type=click.Choice(["regex", "whitespace"]), default="regex", show_default=True,
                     help="Word level: a Unicode word/number/punctuation pattern, or whitespace "
                          "(pre-tokenized corpora; <unk> maps to <UNK>)."),
        click.option("--lowercase", is_flag=True, help="Lowercase the text first."),
        click.option("--graphemes", is_flag=True,
                     help="Character level: keep extended grapheme clusters (e.g. e + accent, emoji) whole."),
    ]
    return functools.reduce(lambda g, opt: opt(g), reversed(options), f)


def tokenizer_settings(level, mode, split, lowercase, graphemes):
    """Validate the tokenizer options; return `(TokenizerConfig, Tokenizer)`. Bad mixes exit 2."""
    from charlm.text import Tokenizer, TokenizerConfig

    if graphemes and level != "char":
        raise click.BadParameter("--graphemes applies to --level char only", param_hint="--graphemes")
    if split == "whitespace" and level != "word":
        raise click.BadParameter("--split whitespace applies to --level word only", param_hint="--split")
    try:
        config = TokenizerConfig(level=level, mode=mode, split=split, lowercase=lowercase, graphemes=graphemes)
        config = TokenizerConfig.from_dict(config.to_dict())  # validated, mode filled in
    except CharlmError as err:
        raise click.BadParameter(str(err)) from err
    return config, Tokenizer(config)
