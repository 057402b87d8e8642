"""What a task is: the `Task` interface every task module implements, and `Model`, the base of the
classes `charlm.load` returns (`LM`, `Tagger`, `Classifier`: a task's `api_class`).

A task object says everything the rest of the package needs about its task:

    name, noun, commands     "tag", "a tagger", ("tag",): the registry key, and which commands use
                             its model files (the wrong-command message names them)
    options, refusals        the options it has beyond the engine's (`engine.options.Option`), and
                             why it refuses another task's ("it reads whole sentences")
    defaults(), check_options(opts)
                             its defaults of the shared options (its model settings' defaults), and
                             the checks across options (UsageError)
    start(opts, reporter, verify) -> Run       a fresh run: data, network, optimizer, state
    resume_data(opts, model, state, ...)       the data of a resumed run (the saved vocabularies)
    frozen(opts, network)                      parameters held still for the first epochs (none)
    open(arrays, meta, path) -> Model          a model file of the task, checked and built
    figures(record, level), headline(info), progress(loss, level), unit
                             what `info`, `plot`, the progress bar and the evaluation lines show
    evaluate(model, source, ...) -> Report
                             `charlm eval` (its JSON object, its lines, a warning) and
                             `Model.evaluate`

Nothing outside the task modules compares task names: the registry (`charlm.tasks.TASKS`) finds
the task, and its object decides.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import IO, ClassVar

import numpy as np

from charlm.checkpoint import arrays_under
from charlm.engine.options import ENGINE_OPTIONS, Option
from charlm.errors import CharlmError, CheckpointError, UsageError
from charlm.info import describe
from charlm.text.tokenizer import Tokenizer
from charlm.text.vocab import Vocab


class Task:
    """A task (see the module docstring); each task module defines one subclass and one object."""

    name: ClassVar[str] = ""
    noun: ClassVar[str] = ""            # what its model is called: "a language model"
    commands: ClassVar[tuple] = ()      # the commands that read its model files
    options: ClassVar[tuple] = ()       # its own options (Option), beyond ENGINE_OPTIONS
    refusals: ClassVar[dict] = {}       # option name -> why this task refuses it
    level: ClassVar[str] = "char"       # its default tokenizer level
    unit: ClassVar[str] = "tok"         # what the progress bar counts per second
    decodes: ClassVar[bool] = False     # its evaluate() searches outputs (takes beam=K: charlm eval --beam)
    config: ClassVar[type]              # its network's settings (nn.config.Settings): model defaults
    network: ClassVar[type]             # its network class
    api_class: ClassVar[type]           # what `charlm.load` returns for its files (a Model)

    @property
    def accepts(self) -> frozenset:
        """The names of the options this task accepts: the engine's, --task, and its own."""
        return frozenset(o.name for o in (*ENGINE_OPTIONS, *self.options)) | {"task"}

    def defaults(self) -> dict:
        """Its defaults of options whose default is not the declaration's: the tokenizer level and
        the model settings (from its network's settings, so the two always agree)."""
        return {"level": self.level, **self.config.defaults()}

    def default(self, option: Option, opts=None):
        """The value of `option` when the run does not give it (`opts`: the options being
        validated, as given, when a default depends on another option)."""
        return self.defaults().get(option.name, option.default)

    def check_options(self, opts) -> None:
        """The checks across options (UsageError); the validated options are `opts`."""

    # -- training ---------------------------------------------------------------------------------
    def start(self, opts, reporter, verify: bool):
        """A fresh run (`engine.run.Run`): data, network, optimizer and state."""
        raise NotImplementedError

    def resume_data(self, opts, model, state, reporter, verify: bool):
        """(source, validation, info, warning, extra meta) of a resumed run, read as the run read
        them (`model` is the run's `Model`: its vocabularies)."""
        raise NotImplementedError

    def frozen(self, opts, network) -> tuple[tuple, int]:
        """(names of parameters the engine leaves unchanged, for how many epochs) of a run (`engine.run.Run`)."""
        return (), 0

    def extra_meta(self, model) -> dict:
        """What a checkpoint of the model holds besides the settings and the word vocabulary."""
        return {}

    # -- files ------------------------------------------------------------------------------------
    def open(self, arrays: dict, meta: dict, path: str):
        """The `Model` in a checkpoint of this task (what `checkpoint.load_checkpoint(path)`
        returned): the settings, vocabulary and parameters are checked against each other, every
        problem a CheckpointError naming the file."""
        for key in ("model", "vocab"):
            if not isinstance(meta.get(key), dict):
                raise CheckpointError(f"{path} has no {key} settings: not a model file (or corrupt)")
        vocab = read_vocab(meta["vocab"], path, "vocabulary")
        params = arrays_under(arrays, "param")
        for name, arr in params.items():
            if arr.dtype.kind != "f":
                raise CheckpointError(f"{path}: param/{name} has dtype {arr.dtype}, expected float")
        try:
            config = self.config.from_dict(meta["model"])
        except (CharlmError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path} has bad model settings: {err}") from None
        if len(vocab) != config.vocab_size:
            raise CheckpointError(f"{path} is inconsistent: vocabulary has {len(vocab)} tokens but "
                                  f"the model expects {config.vocab_size}")
        return self.model(config, params, vocab, meta, path)

    def model(self, config, params: dict, vocab: Vocab, meta: dict, path: str):
        """The `Model` of checked settings, parameters and vocabulary (`open`)."""
        return self.api_class(self.build(config, params, path), vocab, meta, path, task=self)

    def build(self, config, params: dict, path: str, **extra):
        """The network of `config` with `params` cast to its dtype (and `extra` arguments of its
        constructor); names and shapes that do not fit the settings are a CheckpointError."""
        dtype = np.dtype(config.dtype)
        try:  # the constructor checks names and shapes against the config
            return self.network(config, params={k: v.astype(dtype, copy=False) for k, v in params.items()}, **extra)
        except (CharlmError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path} does not match its model settings: {err}") from None

    # -- figures ----------------------------------------------------------------------------------
    def figures(self, record: dict, level: str) -> dict:
        """The figures of an evaluation record (val_loss, ...) in the units of `charlm.info.quality`."""
        raise NotImplementedError

    def headline(self, info: dict) -> str:
        """The first line of a run, after its parameter count: vocabulary, data and batch."""
        raise NotImplementedError

    def progress(self, loss: float, level: str) -> str:
        """Figures of a training loss beside it on the progress bar ("" for none)."""
        return ""

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model, source, format: str | None = None, tag_column=None,
                 batch_size: int = 64) -> "Report":
        """The evaluation of `model` on a labelled file (a path, "-" or a text file object):
        `charlm eval`."""
        raise NotImplementedError


@dataclass
class Report:
    """An evaluation: `data` is what `charlm eval --json` prints (and `Model.evaluate` returns for
    the sentence tasks), `lines` what it prints otherwise, `warning` a line for stderr."""

    data: dict
    lines: list
    warning: str | None = None


def read_vocab(d, path: str, what: str) -> Vocab:
    """The Vocab a checkpoint's dict describes (CheckpointError naming `what` when it is bad)."""
    try:
        return Vocab.from_dict(d)
    except (CharlmError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path} has a bad {what}: {err}") from None


def text_source(path_or_text: str | os.PathLike | IO[str]):
    """A path (os.PathLike, or a str naming an existing file and without a newline), a file
    object, or else the text itself (as a file object)."""
    if isinstance(path_or_text, os.PathLike):
        return os.fspath(path_or_text)
    if isinstance(path_or_text, str):
        if "\n" not in path_or_text and os.path.isfile(path_or_text):
            return path_or_text
        text = io.StringIO(path_or_text)
        text.name = "<text>"  # in messages
        return text
    if hasattr(path_or_text, "read"):
        return path_or_text
    raise UsageError(f"expected a path, a file or a text, got {type(path_or_text).__name__}")


def items(texts) -> list:
    """A lone str is one text (or sentence); any other iterable gives one text per item."""
    return [texts] if isinstance(texts, str) else list(texts)


class Model:
    """A trained model loaded from a charlm file (`charlm.load`).

    Attributes: `network` (the NumPy network), `vocab`, `tokenizer` (re-created from the
    settings the model was trained with), `meta` (the file's metadata), `path`, `task` (the task's
    name). A method of another task's class (`sample` on a tagger) is an AttributeError that
    names the model's task. Each task module sets its class's `_task` (the registry's `load` passes
    the file's task as `task`).
    """

    _task: ClassVar[Task]

    def __init__(self, network, vocab: Vocab, meta: dict, path: str = "", *, task: Task | None = None) -> None:
        if task is not None:
            self._task = task
        self.network = network
        self.vocab = vocab
        self.tokenizer = Tokenizer(vocab.tokenizer)
        self.meta = meta
        self.path = path

    @property
    def task(self) -> str:
        """The name of the model's task ("lm", "tag", "classify")."""
        return self._task.name

    def num_params(self) -> int:
        """Number of trained parameters."""
        return int(sum(p.size for p in self.network.params.values()))

    def info(self) -> dict:
        """What the file holds: settings, vocabulary, training summary (see `charlm.info`)."""
        return describe(self.path, self.meta, self.num_params(), self._task)

    def __getattr__(self, name: str):
        """Only for names the class lacks: a method of another task's model says which it is."""
        owners = [c.__name__ for c in _model_classes() if not name.startswith("_")
                  and callable(getattr(c, name, None)) and not isinstance(self, c)]
        if not owners:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        mine = [n for n in dir(type(self)) if not n.startswith("_") and callable(getattr(type(self), n))
                and n != "num_params"]
        task = self.__dict__.get("_task")
        raise AttributeError(f"{self.__dict__.get('path', '')}: a {type(self).__name__} (task "
                             f"{task.name if task else '?'}) has no {name}(), a method of {' and '.join(owners)}; "
                             f"it has {', '.join(mine)}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path!r}, {self.num_params():,} parameters, "
                f"{len(self.vocab)} tokens, {self.vocab.tokenizer.describe()})")


def _model_classes() -> list[type]:
    """Every public subclass of Model (one per task; found without the registry, which sits above)."""
    found, todo = [], list(Model.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        if not cls.__name__.startswith("_"):
            found.append(cls)
    return found
