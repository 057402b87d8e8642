"""Command-line options shared by several subcommands, and loading the model they name."""

from __future__ import annotations

import functools
import os

import click

from charlm.checkpoint import load_checkpoint, model_from_checkpoint
from charlm.errors import CheckpointError
from charlm.nn.alloc import keep_freed_memory
from charlm.predict import Predictor
from charlm.text.tokenizer import TokenizerConfig

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


def input_options(argument: str, file_help: str, formats: list[str], format_help: str):
    """The inputs of `charlm tag` / `classify`: ARGUMENT... texts, -m/--model, -f/--file, --format.
    Check them with `texts_or_file`."""
    def add(f):
        f = click.option("--format", "fmt", type=click.Choice(formats), default=None, help=format_help)(f)
        f = click.option("-f", "--file", "file", metavar="PATH", help=file_help)(f)
        f = model_option(f)
        return click.argument("texts", nargs=-1, metavar=f"[{argument}]...")(f)
    return add


def texts_or_file(texts, file, fmt, predictor: Predictor) -> list | None:
    """Token lists of the command-line texts (None when --file is used; see
    `Predictor.token_lists`); usage errors for neither, both, an empty text, or --format without --file."""
    what = predictor.task
    noun = "SENTENCE" if what == "tag" else "TEXT"
    if file is None and not texts:
        raise click.UsageError(f"nothing to {what}: give one or more {noun} arguments or --file PATH")
    if file is not None and texts:
        raise click.UsageError(f"give {noun} arguments or --file PATH, not both")
    if fmt is not None and file is None:
        raise click.UsageError("--format needs --file PATH")
    if file is not None:
        return None
    return predictor.token_lists(texts)


def model_option(f):
    """-m/--model PATH (env CHARLM_MODEL, default charlm.npz)."""
    return click.option(
        "-m", "--model", "model_path", envvar="CHARLM_MODEL", default=DEFAULT_MODEL,
        show_default=True, show_envvar=True, metavar="PATH",
        help="Model file to use.")(f)


# what each task's model is called, and the commands that use it
TASK_COMMANDS = {"lm": ("a language model", "`charlm score` or `charlm sample`"),
                 "tag": ("a tagger", "`charlm tag`"), "classify": ("a classifier", "`charlm classify`")}


def _check_path(model_path: str) -> None:
    if not os.path.exists(model_path):
        raise CheckpointError(
            f"no model at {model_path}: train one with `charlm train CORPUS` or pass -m PATH")
    if os.path.isdir(model_path):
        raise CheckpointError(f"{model_path} is a directory, not a model file")


def read_model_file(model_path: str, tasks) -> tuple[dict, dict]:
    """(arrays, meta) of the model file at model_path (`checkpoint.load_checkpoint`), which must
    hold a model of one of `tasks`: otherwise a CheckpointError names the model's task and the
    command to use instead (and no file: how to make one)."""
    _check_path(model_path)
    arrays, meta = load_checkpoint(model_path)
    task = meta.get("task", "lm")
    if task not in tasks:
        ctx = click.get_current_context(silent=True)
        here = f"`charlm {ctx.info_name}`" if ctx is not None else "this command"
        what, use = TASK_COMMANDS.get(task, (f"a {task} model", "another command"))
        raise CheckpointError(f"{model_path} is {what} (task {task}): use {use}, not {here}")
    return arrays, meta


def load_model_file(model_path: str):
    """The model (`charlm.Model`, any task) at `model_path`; no file -> CheckpointError saying
    how to make one."""
    from charlm.api import load as api_load

    _check_path(model_path)
    model = api_load(model_path)
    keep_freed_memory()  # the command computes with the model: reuse freed memory (nn/alloc.py)
    return model


def load_lm(model_path: str):
    """The language model (`charlm.LM`) at `model_path` (CheckpointError for another task)."""
    from charlm.api import LM

    lm = LM.from_checkpoint(*read_model_file(model_path, ("lm",)), model_path)
    keep_freed_memory()  # the command computes with the model: reuse freed memory (nn/alloc.py)
    return lm


def load(model_path: str):
    """Load (model, vocab, tokenizer, meta) from a language-model file (see `load_lm`)."""
    lm = load_lm(model_path)
    return lm.network, lm.vocab, lm.tokenizer, lm.meta


def load_checked(model_path: str, tasks):
    """The `checkpoint.Loaded` model at model_path, a model of one of `tasks` (see `read_model_file`)."""
    loaded = model_from_checkpoint(*read_model_file(model_path, tasks), model_path)
    keep_freed_memory()  # the command computes with the model: reuse freed memory (nn/alloc.py)
    return loaded


def load_predictor(model_path: str, task: str, batch_size: int):
    """A `charlm.predict.Predictor` for the tagger ("tag") or classifier ("classify") at model_path."""
    return Predictor.from_loaded(load_checked(model_path, (task,)), batch_size)
