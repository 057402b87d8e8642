"""Training a task: the validated options (`TrainOptions`), a fresh or resumed run of the task
they name, handed to the engine (`engine.loop.train`).

    opts = TrainOptions(corpus="c.txt", task="tag", model={"hidden": 64})   # validated here
    opts = from_flags(corpus="c.txt", task="tag", hidden=64)                 # the same, flat names
    summary = train(opts, resume=False, reporter=None, comm=None, given=None)

`TrainOptions` has a field for every stored option of `charlm.tasks.OPTIONS` (its declarations),
the tokenizer and model options grouped in the `tokenizer` and `model` dicts; it is what
meta["train"]["options"] of a checkpoint holds, read back on --resume (files of 0.1.0 on). On
construction every value is checked against its declaration, an option the task does not accept
is refused (naming the tasks that accept it, or the task's reason), the task's defaults fill what
is not given, and the task checks the combination (`Task.check_options`).

--resume continues the run saved next to `output` with its own options: the declarations say
which ones may be given again to change them (`resumable`), which always come from the command
(`per_command`: where the files are, --force), and any other given with a different value is
refused (see `resumed_options`).
"""

from __future__ import annotations

import os
from dataclasses import field, make_dataclass, replace
from pathlib import Path

from charlm import checkpoint as ckpt
from charlm.engine import loop
from charlm.engine.optim import make_optimizer
from charlm.engine.options import GROUPS, RESUME, Option, default_lr
from charlm.engine.progress import Reporter
from charlm.engine.run import Run, last_path
from charlm.engine.state import TrainState, check_hidden
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.tasks import OPTIONS, TASK, TASKS, get, takers
from charlm.text.tokenizer import TokenizerConfig

STORED = tuple(o for o in OPTIONS if o.stored)
BY_NAME = {o.name: o for o in STORED}
RESUMABLE = tuple(o.name for o in STORED if o.resumable)
PER_COMMAND = tuple(o.name for o in STORED if o.per_command)
RESUME_OPTION = replace(RESUME, help=RESUME.help.format(resumable=", ".join(BY_NAME[k].flag for k in RESUMABLE)))


def _unset(option: Option):
    """The value of an option that is not given: None, or False for a plain flag."""
    return False if option.type is bool and not option.switch else None


def _refusal(option: Option, value, task) -> str:
    """Why `task` refuses `option` given as `value`: its own reason, or the tasks that take it."""
    flag = option.spelled(value) if option.type is bool else option.flag
    if option.name in task.refusals:
        return f"{flag} does not apply to --task {task.name}: {task.refusals[option.name]}"
    names = " and ".join(f"--task {t.name}" for t in takers(option))
    if option.only:
        return f"{flag} applies to {names} only ({option.only}), not to --task {task.name}"
    return f"{flag} applies to {names}, not to {task.noun}"


class _Validated:
    """The validation of `TrainOptions` (see the module docstring)."""

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not self.corpus:
            raise UsageError("the corpus must be a file name")
        if self.task is None:
            self.task = TASK.default
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)} (got {self.task!r})")
        task = TASKS[self.task]
        groups = {}
        for group in GROUPS:
            given = getattr(self, group)
            if given is None:
                given = {}
            if not isinstance(given, dict):
                raise UsageError(f"the {group} settings must be a mapping (got {given!r})")
            groups[group] = dict(given)
        values = {group: {} for group in GROUPS}
        for option in STORED:
            value = groups[option.group].pop(option.name, None) if option.group else getattr(self, option.name)
            accepted = option.name in task.accepts
            if not accepted and option.is_set(value):
                raise UsageError(_refusal(option, value, task))
            value = option.check(task.default(option, self) if value is None else value) if accepted else _unset(option)
            if not option.group:
                setattr(self, option.name, value)
            elif accepted and value is not None:
                values[option.group][option.name] = value
        # model settings that are not options (dtype, word_dropout) go to the network as they are
        settings = set(task.config.defaults())
        values["model"].update({k: v for k, v in groups["model"].items() if k in settings})
        for group in GROUPS:
            unknown = sorted(set(groups[group]) - (settings if group == "model" else set()))
            if unknown:
                raise UsageError(f"unknown {group} setting(s): {', '.join(map(str, unknown))}")
        # a task that takes no tokenizer option (seq2seq: one per side, its own options) keeps none
        takes_tokenizer = any(o.group == "tokenizer" and o.name in task.accepts for o in STORED)
        self.tokenizer = TokenizerConfig(**values["tokenizer"]).to_dict() if takes_tokenizer else {}
        self.model = values["model"]
        if self.lr is None:
            self.lr = default_lr(self.optimizer)
        task.check_options(self)


def _fields() -> list:
    """corpus, then a field per stored option (unset by default: the task fills in its defaults),
    the tokenizer and model options in two dicts where the first of each group is declared."""
    out, placed = [("corpus", str)], set()
    for option in STORED:
        if option.group and option.group not in placed:
            placed.add(option.group)
            out.append((option.group, dict, field(default_factory=dict)))
        elif not option.group:
            out.append((option.name, object, field(default=_unset(option))))
    return out


TrainOptions = make_dataclass("TrainOptions", _fields(), bases=(_Validated,))
TrainOptions.__module__ = __name__
TrainOptions.__doc__ = """What `charlm train` was asked to do: a field per stored option (`OPTIONS`), the
tokenizer and model options in the `tokenizer` and `model` dicts. Validated on construction
(UsageError naming the option); stored in checkpoints to resume the same run."""


def from_flags(**flags) -> TrainOptions:
    """Options from flat names, as the command line and `charlm.train()` spell them (`level=`,
    `cell=`, `seq_len=`, ...). An option that is None, or absent, takes the task's default."""
    groups = {group: {} for group in GROUPS}
    for option in STORED:
        if option.group and option.name in flags:
            value = flags.pop(option.name)
            if value is not None:
                groups[option.group][option.name] = value
    return TrainOptions(**groups, **flags)


def given_names(flags: dict) -> set:
    """The options among `flags` that are given (not None): what `charlm.train()` was called with."""
    return {k for k, v in flags.items() if v is not None}


def resumed_task(output: str | os.PathLike) -> str | None:
    """The task of the run saved next to `output` (None when there is none or it is unreadable):
    what a resumed command trains, whatever its --task default."""
    try:
        _, meta = ckpt.load_checkpoint(last_path(output))
    except (CharlmError, OSError):
        return None
    task = meta.get("task", ckpt.DEFAULT_TASK)
    return task if task in TASKS else None


def start(opts: TrainOptions, reporter: Reporter | None = None, verify: bool = True) -> Run:
    """A fresh run of the task `opts` names (its data, network, optimizer and state), not trained."""
    return get(opts.task).start(opts, reporter or Reporter(), verify)


def train(opts: TrainOptions, resume: bool = False, reporter: Reporter | None = None, comm=None,
          given=None) -> dict:
    """Train the task `opts` names, as `opts` say (a fresh run, or with `resume` the run saved
    next to opts.output, continuing with its own options; `given` names the options the caller set
    explicitly, see `resumed_options`); return the engine's summary (`engine.loop.train`)."""
    task = get(opts.task)
    if resume:
        def prepare(rep, verify):
            return resume_run(opts, rep, verify, given)
    else:
        def prepare(rep, verify):
            return task.start(opts, rep, verify)
    return loop.train(opts, prepare, resume=resume, reporter=reporter, comm=comm)


# ---------------------------------------------------------------------------------- --resume


def _value(opts, option: Option, config=None):
    """The value of `option` in `opts`; a model setting is read from the model's `config` when it
    is given (it holds the task's defaults too), a file name resolved."""
    if option.group == "tokenizer":
        return opts.tokenizer.get(option.name)
    if option.group == "model":
        return getattr(config, option.name, None) if config is not None else opts.model.get(option.name)
    value = getattr(opts, option.name, None)
    return str(Path(value).resolve()) if option.path and value is not None else value


def resumed_options(saved: TrainOptions, opts: TrainOptions, given, config, where: Path,
                    record: dict, reporter) -> TrainOptions:
    """The options a resumed run continues with: its own (`saved`), the `per_command` ones from the
    command (`opts`), and the `resumable` ones the command gave (`given`: the names of the options
    given explicitly; None: take all of them from `opts`). A given option that would change the
    model, the data or the task is refused (UsageError naming it)."""
    keep = {k: getattr(opts, k) for k in PER_COMMAND}
    if given is None:
        return replace(saved, **keep, **{k: getattr(opts, k) for k in RESUMABLE})
    given = {k for k in given if k in BY_NAME} - set(PER_COMMAND)
    changed = [BY_NAME[k] for k in sorted(given - set(RESUMABLE))
               if _value(opts, BY_NAME[k]) != _value(saved, BY_NAME[k], config)]
    if changed:
        o = changed[0]
        others = f" (and {', '.join(c.flag for c in changed[1:])})" if changed[1:] else ""
        raise UsageError(
            f"--resume continues the run in {where} with its own options: {o.flag} {_value(opts, o)} "
            f"differs from the run's {_value(saved, o, config)}{others}; only "
            f"{', '.join(BY_NAME[k].flag for k in RESUMABLE)} may change on --resume "
            "(train a new run with another -o to change the others)")
    for k in sorted(given & set(RESUMABLE)):
        if getattr(opts, k) != getattr(saved, k):
            keep[k] = getattr(opts, k)
            reporter.note(f"resuming with {BY_NAME[k].flag} {getattr(opts, k)} (the run had {getattr(saved, k)})")
    if "metrics" not in keep:
        keep["metrics"] = _continued_metrics(saved, opts, record, reporter)
    return replace(saved, **keep)


def _continued_metrics(saved: TrainOptions, opts: TrainOptions, record: dict, reporter) -> str | None:
    """The metrics log a resumed run appends to when --metrics is not given: the run's own log,
    if the state was read from where the run wrote it (not from a copy elsewhere)."""
    paths = record.get("paths") if isinstance(record.get("paths"), dict) else {}
    log, home = paths.get("metrics"), paths.get("output")
    if not saved.metrics:
        return None
    if isinstance(log, str) and isinstance(home, str) and os.path.abspath(opts.output) == home:
        reporter.note(f"continuing the metrics log {log}")
        return log
    reporter.message(f"the run kept a metrics log ({log or saved.metrics}) that this resumed copy does not "
                     "continue: add --metrics PATH to keep one")
    return None


def resume_run(opts: TrainOptions, reporter=None, verify: bool = True, given=None) -> Run:
    """The run saved next to opts.output, read back. It continues with its own options and writes
    to opts.output (see `resumed_options`)."""
    reporter = reporter or Reporter()
    last_file = last_path(opts.output)
    if not last_file.exists():
        raise DataError(f"nothing to resume: no training state at {last_file} (train without --resume first)")
    arrays, meta = ckpt.load_checkpoint(last_file)
    if meta.get("kind") != "last":
        raise DataError(f"{last_file} holds no training state to resume")
    record = meta.get("train")
    try:
        saved = TrainOptions(**record["options"])
        missing = [k for k in (*TrainState.RECORD, "optimizer", "rng") if k not in record]
    except (KeyError, TypeError, ValueError, AttributeError, CharlmError):
        missing = ["options"]
    if missing:
        raise CheckpointError(f"{last_file} has no usable training state (missing {', '.join(missing)}): "
                              "train again without --resume")
    if Path(saved.corpus).resolve() != Path(opts.corpus).resolve():
        raise UsageError(f"--resume continues the run on {saved.corpus}, not {opts.corpus}")
    task = get(saved.task)
    model = task.open(arrays, meta, str(last_file))
    network = model.network
    saved = resumed_options(saved, opts, given, network.config, last_file, record, reporter)
    try:
        optimizer = make_optimizer(saved.optimizer, saved.lr)
        optimizer.load_state_dict(record["optimizer"], ckpt.arrays_under(arrays, "optim"))
        state = TrainState.from_checkpoint(record, arrays, network.dtype)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{last_file} has a corrupt training state ({type(err).__name__}: {err}): "
                              "train again without --resume") from None
    source, validation, info, warning, extra = task.resume_data(saved, model, state, reporter, verify)
    run = Run(saved, network, model.vocab, source, validation, optimizer, state,
              dict(info, params=network.num_params()), warning, extra, *task.frozen(saved, network))
    check_hidden(state.hidden, run.initial_hidden(), last_file)
    if not Path(saved.output).exists():  # e.g. a copied .last file: the next evaluation writes -o
        state.saved_val_loss, state.best_step = None, None
    return run


