"""Training options, each declared once as an `Option`.

A declaration says everything about one option of `charlm train`: its name (the keyword of
`charlm.train()`; the flag is --name with "-" for "_"), type and range or choices, default, help,
where the validated options keep it (a field, or the `tokenizer` or `model` settings), and what
--resume does with it. From the declarations come

    the click options of `charlm train`                   charlm/cli/train.py (generated)
    the keyword arguments of `charlm.train()`             charlm/api.py (signature and docstring)
    the validated options object `TrainOptions`           charlm/tasks/training.py
    the rules of --resume                                 `resumable`, `per_command`

The options every task accepts are declared here (`ENGINE_OPTIONS`); each task declares its own in
its module (charlm/tasks/lm.py, sentence.py, tag.py, classify.py), and a task's defaults for the
shared ones come from its model settings (`Task.defaults`). Which tasks accept an option is the
registry's answer (the tasks that list it), so a refusal names exactly those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from charlm.engine.optim import DEFAULT_LR, OPTIMIZERS
from charlm.errors import UsageError
from charlm.nn.cells import CELLS, RNNCell
from charlm.nn.config import is_int

GROUPS = ("tokenizer", "model")  # option groups kept as settings dicts in TrainOptions


@dataclass(frozen=True)
class Option:
    """One training option (see the module docstring).

    type: int, float, str or bool (a flag; with `switch`, --name/--no-name). default: the value
    when the option is not given, unless the task has its own (`Task.defaults`); None for most.
    low/high (open or closed), `finite` and `choices` are checked for the command line and the
    API alike. group: "" (a field of TrainOptions), "tokenizer" or "model" (keys of those dicts).
    resumable: may be given again on --resume to change it (a notice says so); per_command:
    always taken from the command that runs (where the run's files are, --force); other options
    keep the run's value, and a different one given on --resume is refused. path: a file name
    (compared resolved on --resume): "any", "file" (not a folder) or "dir" (a folder). cli=False: kept and checked, but not a flag or keyword
    (`label` names it in messages). stored=False: a flag of the command, not kept in the options.
    only: why the tasks that do not list it refuse it ("applies to --task tag only (why), not to ...").
    """

    name: str
    type: type = str
    default: object = None
    help: str = ""
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = False
    rule: str = ""          # the range in words, when the generated one is not the clearest
    group: str = ""
    resumable: bool = False
    per_command: bool = False
    path: str = ""
    switch: bool = False
    short: str = ""
    metavar: str | None = None
    cli: bool = True
    stored: bool = True
    label: str = ""
    only: str = ""

    @property
    def flag(self) -> str:
        """The command-line spelling: --seq-len."""
        return "--" + self.name.replace("_", "-")

    def spelled(self, value) -> str:
        """How the command line gives `value` (in messages): --no-bidirectional, --tie-weights,
        --pool max."""
        if self.type is bool:
            return self.flag if value else "--no-" + self.name.replace("_", "-")
        return f"{self.flag} {value}"

    def is_set(self, value) -> bool:
        """Whether `value` was given: not None, and for a plain flag not False."""
        return value is not None and not (self.type is bool and not self.switch and value is False)

    def check(self, value):
        """`value` checked against the declaration and made its type (an int, float, ...); None
        passes (not given). UsageError naming the option otherwise."""
        if value is None:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise self._bad(value, "true or false")
            return value
        if self.choices:
            if value not in self.choices:
                raise UsageError(f"{self.label or self.flag} must be one of {', '.join(map(str, self.choices))} "
                                 f"(got {value!r})")
            return value
        if self.type is int:
            if not is_int(value) or not self._in_range(value):
                within = f">= {self.low}" if self.high is None else f"from {self.low} to {self.high}"
                raise self._bad(value, self.rule or f"a whole number {within}")
            return int(value)
        if self.type is float:
            number = _number(value)
            if not self._in_range(number) or (self.finite and not math.isfinite(number)):
                raise self._bad(value, self.rule or self._range_words())
            return number
        if self.path and not isinstance(value, str):
            raise self._bad(value, "a file name")
        return value

    def default_text(self, defaults: dict) -> str:
        """"[default: X]", or per task ({task: default}): "[default: gru (lm), lstm (tag,
        classify)]"; "" when there is none to say (or the help says it already)."""
        if "[default:" in self.help or self.type is bool:
            return ""
        by_value: dict = {}
        for task, value in defaults.items():
            if value is not None:
                by_value.setdefault(value, []).append(task)
        if len(by_value) == 1:
            return f"[default: {next(iter(by_value))}]"
        return "[default: " + ", ".join(f"{v} ({', '.join(ts)})" for v, ts in by_value.items()) + "]" \
            if by_value else ""

    def _in_range(self, v) -> bool:
        if v != v:  # nan
            return False
        low_ok = self.low is None or (v > self.low if self.low_open else v >= self.low)
        high_ok = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return low_ok and high_ok

    def _range_words(self) -> str:
        if self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        return "a positive number" if self.low == 0 and self.low_open else f">= {self.low:g}"

    def _bad(self, value, rule: str) -> UsageError:
        return UsageError(f"{self.label or self.flag} must be {rule} (got {value!r})")


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------- the engine's options

ENGINE_OPTIONS = (
    Option("output", default="charlm.npz", short="-o", per_command=True, path="any",
           help="Where to write the best model. The resumable state goes next to it (NAME.last.npz)."),
    # the tokenizer
    Option("level", choices=("char", "word"), group="tokenizer", help="Tokens are characters or words."),
    Option("mode", choices=("lines", "stream"), group="tokenizer",
           help="lines: each non-empty line is a sentence ending in <EOS> (default for words); stream: one "
                "running text, newline is a token (default for characters)."),
    Option("split", default="regex", choices=("regex", "whitespace"), group="tokenizer",
           help="Word level: a Unicode word/number/punctuation pattern, or whitespace (pre-tokenized "
                "corpora; <unk> maps to <UNK>)."),
    Option("lowercase", bool, False, group="tokenizer", help="Lowercase the text first."),
    Option("graphemes", bool, False, group="tokenizer",
           help="Character level: keep extended grapheme clusters (e.g. e + accent, emoji) whole."),
    # the vocabulary
    Option("min_count", int, 1, low=1, metavar="N", help="Vocabulary: tokens seen fewer than N times become <UNK>."),
    Option("max_vocab", int, low=2, metavar="N", help="Vocabulary: at most N entries, <UNK> and <EOS> included."),
    # the network (each task's defaults: its model settings, `Task.defaults`)
    Option("cell", choices=tuple(CELLS), group="model", help="Recurrent cell."),
    Option("layers", int, low=1, high=16, group="model", help="Stacked recurrent layers."),
    Option("hidden", int, low=1, high=8192, group="model",
           help="Units per layer (per direction for tag/classify)."),
    Option("embedding", int, low=1, high=8192, group="model", help="Embedding size."),
    Option("dropout", float, low=0, high=1, high_open=True, group="model",
           help="Inverted dropout between layers and before the output."),
    Option("activation", choices=RNNCell.ACTIVATIONS, group="model", help="Activation of the vanilla RNN cell."),
    Option("peephole", bool, False, group="model", help="LSTM peephole connections (c<t-1> feeds the gates)."),
    # the steps
    Option("batch_size", int, 32, low=1, high=100000,
           help="Parallel streams (lm), sentences (tag, classify) or pairs (seq2seq) per step."),
    Option("accumulate", int, 1, low=1, high=100000, metavar="K",
           help="Update once per K batches, with their mean gradient (an effective batch K times --batch-size; "
                "under mpiexec, one all-reduce per K batches)."),
    Option("optimizer", default="adam", choices=tuple(OPTIMIZERS),
           help="The optimizer. asgd: SGD, then from the first evaluation without improvement the running average "
                "of the weights (NT-ASGD), which is what is evaluated and saved."),
    Option("lr", float, low=0, low_open=True, finite=True,
           help="Learning rate [default: " + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + "]."),
    Option("clip", float, 5.0, low=0, finite=True, rule=">= 0, 0 turns clipping off",
           help="Clip the global gradient norm (0: off)."),
    Option("epochs", int, 20, low=1, resumable=True, help="Passes over the training data."),
    Option("max_steps", int, low=1, resumable=True, help="Stop after this many steps in all."),
    Option("time_limit", float, low=0, low_open=True, rule="a positive number of seconds", resumable=True,
           metavar="SECONDS", help="Stop cleanly when this much wall-clock time is spent."),
    # the validation data and the schedule
    Option("val_fraction", float, 0.1, low=0, high=1, high_open=True,
           help="Share of the corpus held out for validation: from its end (lm, at most --val-tokens), or a "
                "seeded random share of the sentences (tag, classify) or examples (seq2seq)."),
    Option("val_file", path="any",
           help="Validate on this file instead (all of it, unless --val-tokens is given)."),
    Option("eval_every", int, 200, low=1, metavar="STEPS", help="Evaluate (and save) every STEPS steps."),
    Option("patience", int, 5, low=1, resumable=True,
           help="Stop after this many evaluations without improvement in a row (the learning rate is "
                "multiplied by --lr-decay at each). Improvement: lower validation loss (lm), higher entity F1 "
                "(entity tags), token accuracy (other tags), accuracy (classify) or lower token error rate "
                "(seq2seq)."),
    Option("lr_decay", float, 0.5, low=0, high=1, low_open=True, resumable=True, metavar="FACTOR",
           help="Multiply the learning rate by FACTOR at each evaluation without improvement (1: keep it; "
                "never below a thousandth of --lr)."),
    Option("seed", int, 0, low=0, help="The seed of the initial weights, the data split and dropout."),
    # the files
    Option("metrics", path="file", resumable=True, help="Append one JSON line per evaluation to this file."),
    Option("force", bool, False, per_command=True,
           help="Start a new run even where -o or --metrics holds another run's files (they are replaced), or "
                "replace a file there that is not a charlm file (never an input)."),
)

RESUME = Option("resume", bool, False, stored=False,
                help="Continue the run saved next to --output, with the run's own options (task, model, data, "
                     "optimizer, metrics log). Only {resumable} may be given again to change them; other options "
                     "are refused if they differ from the run's.")


def default_lr(optimizer: str) -> float:
    """The learning rate of --optimizer when --lr is not given."""
    return OPTIMIZERS[optimizer].default_lr
