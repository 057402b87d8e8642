"""A run: what the engine trains (`Run`, built by the run's task), where its files are, and the
file rules it keeps (checked before anything is trained)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from charlm import checkpoint as ckpt
from charlm.engine.state import TrainState
from charlm.errors import CharlmError, UsageError
from charlm.files import CHECKPOINT, METRICS, Output, check_outputs, is_foreign
from charlm.text.vocab import Vocab


@dataclass
class Run:
    """What a run trains with, built by its task: fresh (`Task.start`) or read back from the run's
    NAME.last.npz (charlm/tasks/training.py, `resume`)."""

    opts: object  # the validated options (tasks.training.TrainOptions)
    model: object  # the network: params, loss, backward, epoch_state, config, num_params
    vocab: Vocab
    source: object  # a batch source (engine.batches)
    validation: object | None  # a validation set: evaluate(model, comm) -> Evaluation
    optimizer: object  # engine.optim.Optimizer
    state: TrainState
    info: dict  # for Reporter.start
    warning: str | None = None
    extra_meta: dict = field(default_factory=dict)  # more checkpoint metadata (tag/classify: Encoder.to_meta)
    frozen: tuple = ()  # names of parameters left out of the update during the first `frozen_epochs` epochs
    frozen_epochs: int = 0

    def initial_hidden(self):
        """The state carried into an epoch's first batch (None when the source carries none)."""
        return self.model.epoch_state(self.source.batch_size) if self.source.carries_state else None


def last_path(output: str | os.PathLike) -> Path:
    """Where the resumable training state lives: `charlm.npz` -> `charlm.last.npz`."""
    p = Path(output)
    stem = p.name[: -len(".npz")] if p.name.endswith(".npz") else p.name
    return p.with_name(stem + ".last.npz")


def outputs(opts) -> list[Output]:
    """The files a run writes (checked against the inputs before anything is done)."""
    out = [Output(opts.output, CHECKPOINT, "-o/--output"),
           Output(str(last_path(opts.output)), CHECKPOINT, "-o/--output (its resumable state)")]
    if opts.metrics:
        out.append(Output(opts.metrics, METRICS, "--metrics"))
    return out


def inputs(opts) -> dict:
    """The files a run reads (never written over, not even with --force)."""
    return {"the corpus": opts.corpus, "the validation file": opts.val_file, "the vocabulary": opts.vocab,
            "the language model of --init-from": opts.init_from,
            **{f"language model {i} of --lm-features": path.strip() for i, path in
               enumerate((getattr(opts, "lm_features", None) or "").split(","), 1) if path.strip()}}


def describe_run(path: Path) -> str:
    """What the checkpoint at `path` holds, for a refusal: task, steps, corpus."""
    try:
        _, meta = ckpt.load_checkpoint(path)
        record = meta.get("train") or {}
        corpus = (record.get("options") or {}).get("corpus")
        return (f"a model of another run (task {meta.get('task', ckpt.DEFAULT_TASK)}, {record.get('step', '?')} steps"
                + (f" on {corpus}" if corpus else "") + ")")
    except (CharlmError, OSError, AttributeError):
        return "a charlm checkpoint that cannot be read"


def _check_fresh(opts) -> None:
    """A new run never silently replaces another run's model or metrics log (unless --force)."""
    if opts.force:
        return
    for path in (last_path(opts.output), Path(opts.output)):
        if path.is_file() and path.stat().st_size > 0:
            raise UsageError(f"-o {opts.output}: {path} holds {describe_run(path)}: continue that run with "
                             "--resume, choose another -o, or add --force to replace it")
    if opts.metrics and os.path.isfile(opts.metrics) and os.path.getsize(opts.metrics) > 0:
        raise UsageError(f"--metrics {opts.metrics} already holds the log of another run: choose another "
                         "file, or add --force to replace it")


def check_files(opts, fresh: bool = False) -> None:
    """The file-safety rule (`charlm.files`), and find out now — not at the first evaluation —
    that the metrics log cannot be written. A `fresh` run (not --resume) refuses to replace
    another run's files (`_check_fresh`); with --force it replaces them, and a foreign metrics
    file, from scratch."""
    check_outputs(outputs(opts), inputs(opts), force=opts.force)
    if fresh:
        _check_fresh(opts)
    if opts.metrics:
        mode = "w" if opts.force and (fresh or is_foreign(Output(opts.metrics, METRICS, "--metrics"))) else "a"
        try:
            open(opts.metrics, mode, encoding="utf-8").close()
        except OSError as err:
            raise UsageError(f"cannot write --metrics {opts.metrics}: {err.strerror}") from None
