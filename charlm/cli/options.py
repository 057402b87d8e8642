"""Command-line options shared by several subcommands, and loading the model they name."""

from __future__ import annotations

import functools
import os

import click

from charlm.errors import CheckpointError
from charlm.nn.alloc import keep_freed_memory
from charlm.tokenizer import TokenizerConfig

DEFAULT_MODEL = "charlm.npz"


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


def vocab_options(f):
    """Add --min-count and --max-vocab (the vocabulary's limits) to a command."""
    f = click.option("--max-vocab", type=click.IntRange(min=2), default=None, metavar="N",
                     help="Vocabulary: at most N entries, <UNK> and <EOS> included.")(f)
    return click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                        help="Vocabulary: tokens seen fewer than N times become <UNK>.")(f)


def cache_options(f):
    """Add --cache-dir DIR and --no-cache (the token cache of a large corpus, charlm.tokencache)."""
    f = click.option("--no-cache", is_flag=True, help="Neither use nor write a token cache.")(f)
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                        help="Where the token cache of a corpus of 16 MB or more is kept "
                             "[default: the model's folder].")(f)


def tokenizer_settings(level, mode, split, lowercase, graphemes):
    """The `TokenizerConfig` the options describe (bad mixes raise UsageError: exit 2)."""
    return TokenizerConfig(level=level, mode=mode, split=split, lowercase=lowercase, graphemes=graphemes)


def model_option(f):
    """-m/--model PATH (env CHARLM_MODEL, default charlm.npz)."""
    return click.option(
        "-m", "--model", "model_path", envvar="CHARLM_MODEL", default=DEFAULT_MODEL,
        show_default=True, show_envvar=True, metavar="PATH",
        help="Model file to use.")(f)


def load_model_file(model_path: str):
    """The model (`charlm.Model`, any task) at `model_path`; no file -> CheckpointError saying
    how to make one."""
    from charlm.api import load as api_load

    if not os.path.exists(model_path):
        raise CheckpointError(
            f"no model at {model_path}: train one with `charlm train CORPUS` or pass -m PATH")
    if os.path.isdir(model_path):
        raise CheckpointError(f"{model_path} is a directory, not a model file")
    model = api_load(model_path)
    keep_freed_memory()  # the command computes with the model: reuse freed memory (nn/alloc.py)
    return model


def load_lm(model_path: str):
    """The language model (`charlm.LM`) at `model_path` (CheckpointError for another task)."""
    from charlm.api import LM

    lm = load_model_file(model_path)
    if not isinstance(lm, LM):
        raise CheckpointError(f"{model_path} is a {lm.task} model, not a language model")
    return lm


def load(model_path: str):
    """Load (model, vocab, tokenizer, meta) from a language-model file (see `load_lm`)."""
    lm = load_lm(model_path)
    return lm.network, lm.vocab, lm.tokenizer, lm.meta
