"""The task registry: one object per task, found by name.

    TASKS                  {"lm": LMTask, "tag": TagTask, "classify": ClassifyTask} (objects)
    get(name)              the task object (UsageError listing the known tasks)
    load(path, command=)   the one function that loads any model file: the `Model` of the file's
                           task (meta["task"]; "lm" when absent), checked by that task
    OPTIONS                every training option, declared once (engine, --task, each task's own)

A task is one module (`tasks/lm.py`, `tag.py`, `classify.py`) holding one `Task` object and its
`Model` class; adding a task is adding its module and its object to TASKS (docs/architecture.md).
The engine, `charlm.load`, `charlm eval`, `charlm info`, `charlm train` and the wrong-command
messages all look tasks up here.
"""

from __future__ import annotations

import os

from charlm.checkpoint import DEFAULT_TASK, load_checkpoint
from charlm.engine.options import ENGINE_OPTIONS, Option
from charlm.errors import CheckpointError, UsageError
from charlm.tasks import classify, lm, tag
from charlm.tasks.base import Model, Task

TASKS: dict[str, Task] = {t.name: t for t in (lm.TASK, tag.TASK, classify.TASK)}

TASK = Option("task", default="lm", choices=tuple(TASKS),
              help="lm: a language model on running text; tag: a tagger (a tag per token, e.g. named entities or "
                   "parts of speech); classify: a classifier (a label per line).")


def _all_options() -> tuple[Option, ...]:
    """Every option once, in the order `charlm train --help` lists them: the engine's (after -o,
    --task), then each task's own."""
    seen, out = set(), []
    for option in (ENGINE_OPTIONS[0], TASK, *ENGINE_OPTIONS[1:], *(o for t in TASKS.values() for o in t.options)):
        if option.name not in seen:
            seen.add(option.name)
            out.append(option)
    return tuple(out)


OPTIONS: tuple[Option, ...] = _all_options()


def get(name: str) -> Task:
    """The task called `name`; UsageError naming the known ones."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise UsageError(f"unknown task {name!r}: charlm knows {', '.join(TASKS)}")
    return task


def takers(option: Option) -> list[Task]:
    """The tasks that accept `option`."""
    return [t for t in TASKS.values() if option.name in t.accepts]


def of_file(meta: dict, path: str) -> Task:
    """The task of a model file's metadata (files without a task are language models)."""
    name = meta.get("task", DEFAULT_TASK)
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise CheckpointError(f"{path} holds a model for the task {name!r}, which this charlm "
                              f"cannot load (it knows: {', '.join(sorted(TASKS))}); upgrade charlm")
    return task


def load(path: str | os.PathLike, command: str | None = None) -> Model:
    """The model in the file at `path` (a best model or a NAME.last.npz): the `Model` class of its
    task (`LM`, `Tagger`, `Classifier`). With `command` (e.g. "sample"), a file of a task that
    command does not use is a CheckpointError naming the task and the commands to use instead.
    Raises CheckpointError for a missing, corrupt, unsafe or incompatible file."""
    path = os.fspath(path)
    arrays, meta = load_checkpoint(path)
    task = of_file(meta, path)
    if command is not None and command not in task.commands:
        uses = " or ".join(f"`charlm {c}`" for c in task.commands)
        raise CheckpointError(f"{path} is {task.noun} (task {task.name}): use {uses}, not `charlm {command}`")
    return task.open(arrays, meta, path)
