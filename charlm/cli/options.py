"""Command-line options shared by several subcommands, made from the option declarations, and
loading the model they name."""

from __future__ import annotations

import functools
import os

import click

from charlm.engine.options import ENGINE_OPTIONS, Option
from charlm.errors import CheckpointError
from charlm.nn.alloc import keep_freed_memory
from charlm.sentence.predict import Predictor
from charlm.tasks import load as load_file
from charlm.tasks import takers
from charlm.tasks.lm import CACHE_OPTIONS
from charlm.text.tokenizer import TokenizerConfig

DEFAULT_MODEL = "charlm.npz"
_BY_NAME = {o.name: o for o in ENGINE_OPTIONS}
TOKENIZER = tuple(o for o in ENGINE_OPTIONS if o.group == "tokenizer")
VOCABULARY = (_BY_NAME["min_count"], _BY_NAME["max_vocab"])


def _click_type(option: Option):
    if option.choices:
        return click.Choice(list(option.choices))
    if option.path:
        return click.Path(file_okay=option.path != "dir", dir_okay=option.path != "file")
    if option.type is int and (option.low is not None or option.high is not None):
        return click.IntRange(min=option.low, max=option.high)
    if option.type is float and (option.low is not None or option.high is not None):
        return click.FloatRange(min=option.low, max=option.high, min_open=option.low_open,
                                max_open=option.high_open)
    return option.type


def click_option(option: Option, default=None, defaults: dict | None = None):
    """The click option of a declaration. Given a `default`, the option has it (and shows it);
    otherwise its click default is None (a plain flag: False) and the tasks fill it in, and the
    help says `defaults` ({task: default}) when they have one."""
    names = [option.short, option.flag] if option.short else [option.flag]
    help_text = option.help
    if option.switch:
        names = [f"{option.flag}/--no-{option.flag[2:]}"]
    if option.type is bool and not option.switch:
        return click.option(*names, option.name, is_flag=True, default=bool(default), help=help_text)
    if default is None and defaults:
        help_text = " ".join(x for x in (help_text, option.default_text(defaults)) if x)
    return click.option(*names, option.name, type=_click_type(option), default=default, help=help_text or None,
                        metavar=option.metavar, show_default=default is not None)


def click_options(options, defaults: dict | None = None):
    """A decorator adding the click options of `options` (declarations), in order; `defaults`
    {name: value} gives some their default (see `click_option`)."""
    defaults = defaults or {}
    decorators = [click_option(o, defaults.get(o.name)) for o in options]
    return lambda f: functools.reduce(lambda g, d: d(g), reversed(decorators), f)


def train_options(options):
    """A decorator adding `charlm train`'s click options: every declaration in `options`, with
    the defaults of the tasks that accept it in its help."""
    decorators = [click_option(o, defaults={t.name: t.default(o) for t in takers(o)}) for o in options]
    return lambda f: functools.reduce(lambda g, d: d(g), reversed(decorators), f)


# --level, --mode, --split, --lowercase, --graphemes; the command receives them as keyword arguments
# (turn them into a TokenizerConfig with `tokenizer_settings(**kwargs)`): a language model's defaults
tokenizer_options = click_options(TOKENIZER, {"level": "char", "split": "regex"})
vocab_options = click_options(VOCABULARY, {"min_count": 1})  # --min-count, --max-vocab
cache_options = click_options(CACHE_OPTIONS)  # --cache-dir DIR, --no-cache (charlm.text.tokencache)


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


def texts_or_file(texts, file, fmt, predictor: Predictor, noun: str) -> list | None:
    """Token lists of the command-line texts (None when --file is used; see
    `Predictor.token_lists`); usage errors for neither, both, an empty text, or --format without
    --file. `noun` is the command's argument (SENTENCE, TEXT)."""
    what = click.get_current_context().info_name
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


def load_model(model_path: str, any_task: bool = False):
    """The model (`charlm.Model`) at `model_path`, which must be of a task this command uses (the
    task's `commands`; `any_task`: any) — otherwise a CheckpointError names the model's task and
    the command to use; no file: how to make one."""
    if not os.path.exists(model_path):
        raise CheckpointError(
            f"no model at {model_path}: train one with `charlm train CORPUS` or pass -m PATH")
    if os.path.isdir(model_path):
        raise CheckpointError(f"{model_path} is a directory, not a model file")
    ctx = click.get_current_context(silent=True)
    command = None if any_task or ctx is None else ctx.info_name
    model = load_file(model_path, command)
    keep_freed_memory()  # the command computes with the model: reuse freed memory (nn/alloc.py)
    return model


def label_option(multiple: bool = False, help: str = ""):
    """--label L: the label a conditional language model is given (`multiple`: repeatable)."""
    return click.option("--label", "label", multiple=multiple, metavar="LABEL", help=help or (
        "A conditional language model (trained with --condition): the label the text is given."))


def load_predictor(model_path: str, batch_size: int) -> Predictor:
    """A `charlm.sentence.predict.Predictor` for the tagger or classifier at `model_path` (of the
    task the command uses, see `load_model`)."""
    model = load_model(model_path)
    return Predictor(model.network, model.predictor.encoder, batch_size, model.meta)

