"""Training curves: a run's evaluation records, read from a `--metrics` file or a NAME.last.npz,
drawn as a PNG or SVG with matplotlib (the optional `plot` extra).

A record is what the engine (`charlm.engine.loop`) logs at each evaluation: `step`, `elapsed` (seconds since the
process started, so it restarts at 0 when a run is resumed), `train_loss` and `val_loss` (mean
nats per token; either may be null), `lr` (the learning rate used since the previous
evaluation). The picture has two panels, one above the other: the losses against the step and
against wall-clock time (the restarts of `elapsed` added up), each with

    left axis:  nats per token, and beside it bits (= nats / ln 2) per character or token, or
                for a word-level model perplexity (= exp(nats)) — a language model's figures
    right axis: the learning rate (log scale), with each decay marked by a dotted line at the
                evaluation that decided it; and, for a tagger or classifier (its records carry
                val_accuracy and val_f1), the validation accuracy and F1 in percent on a second
                right axis instead of the bits or perplexity, which mean nothing for labels
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from charlm.errors import CharlmError, DataError, UsageError
from charlm.files import PLOT_MARK

LN2 = math.log(2.0)
FORMATS = (".png", ".svg")
INSTALL_HINT = "charlm plot needs matplotlib: pip install 'charlm[plot]'"


@dataclass
class Run:
    """The evaluation records of one training run (oldest first) and what is known about it.

    level: "char" or "word" when the file says (a checkpoint), else None.
    skipped: broken lines left out of a metrics file; runs: how many runs the file held (a
    metrics file is appended to, so a fresh run with the same --metrics adds a second one;
    the last is kept).
    """

    name: str
    records: list[dict] = field(default_factory=list)
    level: str | None = None
    skipped: int = 0
    runs: int = 1


def _is_record(obj) -> bool:
    step = obj.get("step") if isinstance(obj, dict) else None
    return isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step)


def read_run(path: str | os.PathLike) -> Run:
    """The run at `path`: a JSON-lines metrics file or a NAME.last.npz (its metrics history).

    DataError for a file with no usable record, a best-model file (it keeps no history) or a
    training state that has not reached its first evaluation.
    """
    path = os.fspath(path)
    if _looks_like_a_checkpoint(path):
        return _from_checkpoint(path)
    from charlm.text.reader import iter_lines

    records, skipped = [], 0
    try:
        for line in iter_lines(path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if _is_record(obj):
                records.append(obj)
            else:
                skipped += 1
    except DataError as err:  # missing, a directory, binary, not UTF-8
        raise DataError(f"{path} is not a metrics log or model file ({err}): give a file written by "
                        "`charlm train --metrics` or a NAME.last.npz") from None
    if not records:
        raise DataError(f"{path} is not a metrics log or model file: it has no metrics records"
                        + (f" ({skipped} broken line{'s' * (skipped != 1)})" if skipped else "")
                        + "; give a file written by `charlm train --metrics` or a NAME.last.npz")
    runs = _split_runs(records)
    return Run(path, runs[-1], None, skipped, len(runs))


def _looks_like_a_checkpoint(path: str) -> bool:
    """A zip archive, or the start of one (a truncated .npz): read it as a checkpoint."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False  # reading it as a metrics file says what is wrong
    return head == b"PK\x03\x04" or zipfile.is_zipfile(path)


def _from_checkpoint(path: str) -> Run:
    from charlm.checkpoint import load_checkpoint

    _, meta = load_checkpoint(path)
    level = ((meta.get("vocab") or {}).get("tokenizer") or {}).get("level")
    if meta.get("kind") != "last":
        raise DataError(f"{path} is a model without a metrics history: plot the run's "
                        f"NAME.last.npz or its --metrics file")
    metrics = (meta.get("train") or {}).get("metrics") or []
    records = [r for r in metrics if _is_record(r)]
    if not records:
        raise DataError(f"{path} has no metrics yet: the run has not reached its first "
                        f"evaluation (one every --eval-every steps)")
    return Run(path, records, level, len(metrics) - len(records))


def _split_runs(records: list[dict]) -> list[list[dict]]:
    """Cut the records where the step goes back: each piece is one run."""
    runs = [[records[0]]]
    for r in records[1:]:
        if r["step"] < runs[-1][-1]["step"]:
            runs.append([])
        runs[-1].append(r)
    return runs


def wall_clock(records: list[dict]) -> list[float | None]:
    """Seconds since the run began at each record: `elapsed`, with its restarts at resumes
    added up (a decrease means a new process continued the run)."""
    out, offset, prev = [], 0.0, None
    for r in records:
        e = r.get("elapsed")
        if not isinstance(e, (int, float)) or isinstance(e, bool):
            out.append(None)
            continue
        if prev is not None and e < prev:
            offset += prev
        out.append(offset + e)
        prev = e
    return out


def lr_decays(records: list[dict]) -> list[int]:
    """Indices of the evaluations after which the learning rate fell (record i+1 has a lower
    `lr` than record i, so evaluation i decided the decay)."""
    lrs = [r.get("lr") for r in records]
    return [i for i in range(len(lrs) - 1)
            if isinstance(lrs[i], (int, float)) and isinstance(lrs[i + 1], (int, float))
            and lrs[i + 1] < lrs[i]]


def parse_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" in pixels -> (width, height); UsageError when malformed or absurd."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}") from None
    if not (200 <= w <= 10000 and 150 <= h <= 10000):
        raise UsageError(f"--size must be between 200x150 and 10000x10000 pixels, got {text!r}")
    return w, h


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds < 120:
        return "s", 1.0
    if seconds < 2 * 3600:
        return "min", 60.0
    return "h", 3600.0


def image_format(output: str | os.PathLike) -> str:
    """"png" or "svg", from the file name; UsageError for any other."""
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the image format of {output}: end the name with .png or .svg")
    return suffix[1:]


def plot_run(run: Run, output: str | os.PathLike, width: int = 1200, height: int = 800) -> None:
    """Draw the run's curves and write them to `output` (.png or .svg), width x height pixels.

    The image's metadata names `charlm.files.PLOT_MARK`, so a later plot may replace it.
    """
    fmt = image_format(output)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError(INSTALL_HINT) from None

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    records = run.records
    steps = [r["step"] for r in records]
    seconds = wall_clock(records)
    total = max((s for s in seconds if s is not None), default=0.0)
    unit, div = _time_unit(total)
    times = [None if s is None else s / div for s in seconds]
    per = {"char": "character", "word": "token"}.get(run.level or "", "token")
    axes = fig.subplots(2, 1)
    for ax, xs, xlabel in ((axes[0], steps, "step"), (axes[1], times, f"wall-clock time ({unit})")):
        _panel(ax, records, xs, xlabel, per, run.level)
    fig.suptitle(f"{Path(run.name).name}: {len(records)} evaluations, step {steps[-1]}")
    key = "Software" if fmt == "png" else "Creator"
    fig.savefig(output, dpi=dpi, metadata={key: PLOT_MARK})


def _series(records: list[dict], xs: list, key: str) -> tuple[list, list]:
    pts = [(x, r.get(key)) for x, r in zip(xs, records)
           if x is not None and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


SCORES = (("val_accuracy", "validation accuracy"), ("val_f1", "validation F1"))  # a tagger's or classifier's


def _scores(ax, records, xs, scores) -> list:
    """The validation accuracy and F1 (percent) on a right axis set off from the learning rate's."""
    axis = ax.twinx()
    axis.spines["right"].set_position(("axes", 1.08))
    handles = []
    for key, label in scores:
        x, y = _series(records, xs, key)
        if x:
            handles += axis.plot(x, [100 * v for v in y], "--s", markersize=3, label=label)
    axis.set_ylabel("accuracy, F1 (%)")
    return handles


def _panel(ax, records, xs, xlabel: str, per: str, level: str | None) -> None:
    import numpy as np

    handles = []
    for key, label, style in (("train_loss", "training loss", "-"),
                              ("val_loss", "validation loss", "-o")):
        x, y = _series(records, xs, key)
        if x:
            handles += ax.plot(x, y, style, label=label, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"nats per {per}")
    ax.grid(True, alpha=0.3)
    scores = [(key, label) for key, label in SCORES if any(isinstance(r.get(key), (int, float)) for r in records)]
    if scores:
        handles += _scores(ax, records, xs, scores)
    elif level == "word":
        second = ax.secondary_yaxis(-0.1, functions=(lambda n: np.exp(np.clip(n, -50, 50)),
                                                     lambda p: np.log(np.maximum(p, 1e-300))))
        second.set_ylabel("perplexity")
    else:
        second = ax.secondary_yaxis(-0.1, functions=(lambda n: n / LN2, lambda b: b * LN2))
        second.set_ylabel(f"bits per {per}")
    x, lr = _series(records, xs, "lr")
    if x:
        twin = ax.twinx()
        handles += twin.step(x, lr, where="pre", color="0.5", linewidth=1, label="learning rate")
        if min(lr) > 0:
            twin.set_yscale("log")
        twin.set_ylabel("learning rate")
    for n, i in enumerate(lr_decays(records)):
        if xs[i] is not None:
            line = ax.axvline(xs[i], color="0.4", linestyle=":", linewidth=1,
                              label="learning-rate decay" if n == 0 else None)
            if n == 0:
                handles.append(line)
    ax.legend(handles=handles, loc="upper right", fontsize="small")
