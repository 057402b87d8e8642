"""Progress of a run: the `Reporter` callbacks the engine calls, and the reporters that show them.

`Reporter` does nothing; `LogReporter` sends the engine's messages to the "charlm" logger
(`charlm.train()` without progress=True); `BarReporter` draws a tqdm progress bar with the loss,
the task's figures and the speed, and the evaluation lines, on stderr (`charlm train`, and
`charlm.train(progress=True)`). The bar is the one thing below the command line that writes to
the terminal, and only when the caller asks for it. `ReadingBar` shows the reading of a large
corpus (MB/s and the time left).

A `BarReporter` shows what its task says (a `tasks.base.Task`): `headline(info)` (the first line),
`progress(loss, level)` and `unit` (the bar), `figures(record, level)` (an evaluation, in the
units of `charlm.info.quality`).
"""

from __future__ import annotations

import logging
import math
import sys

import click
from tqdm import tqdm

from charlm.info import quality

SHOW_BYTES = 16 << 20  # smaller inputs are read too fast to need a reading bar

log = logging.getLogger("charlm")


class Reporter:
    """Progress callbacks; all are optional.

    `start`'s info: params, vocab, train_tokens, val_tokens, batch, seq_len, steps_per_epoch, and
    level ("char"/"word": the unit losses are quoted in — the run's own, also when resumed); for
    the sentence tasks also task, sentences, val_sentences, labels, chars and scheme (seq_len None)."""

    def start(self, total_steps: int | None, done_steps: int, info: dict) -> None: ...

    def step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None: ...

    def evaluate(self, record: dict, improved: bool) -> None: ...

    def message(self, text: str) -> None: ...

    def reading(self, done_bytes: int, total_bytes: int | None) -> None:
        """Progress while a corpus is tokenized (before `start`)."""

    def note(self, text: str) -> None:
        """Information that is not a warning (e.g. the token cache was used)."""
        self.message(text)

    def close(self) -> None: ...


class LogReporter(Reporter):
    """No progress bar: the engine's messages go to the "charlm" logger (level INFO)."""

    def message(self, text: str) -> None:
        log.info(text)


class ReadingBar:
    """`update(done_bytes, total_bytes)` draws a bar for an input of at least SHOW_BYTES (or of
    unknown size, such as stdin, once that much is read); a new input (done < the bar's count)
    starts a new bar. Nothing is drawn when `quiet`."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar = quiet, None

    def update(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is not None and done < self.bar.n:
            self.close()
        if self.bar is None:
            if (total if total is not None else done) < SHOW_BYTES:
                return
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)
        self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def figure(loss: float | None) -> str:
    """A loss with 4 decimals, or n/a when there is none (no validation example the model could
    score, no training step since the last evaluation)."""
    return "n/a" if loss is None or not math.isfinite(loss) else f"{loss:.4f}"


class BarReporter(Reporter):
    """A tqdm progress bar with the loss, the task's figures, tokens (or examples) per second and
    the time left; a line per evaluation; messages as `charlm: ...` lines (see the module docstring)."""

    def __init__(self, task, quiet: bool = False):
        self.task, self.quiet, self.level, self.bar = task, quiet, "char", None
        self.reading_bar = ReadingBar(quiet)

    def reading(self, done_bytes, total_bytes):
        self.reading_bar.update(done_bytes, total_bytes)

    def start(self, total_steps, done_steps, info):
        self.reading_bar.close()
        self.level = info["level"]  # the run's own unit, also when resumed without --level
        if self.quiet:
            return
        click.echo(f"charlm: {info['params']:,} parameters, {self.task.headline(info)}, "
                   f"{info['steps_per_epoch']:,} steps/epoch", err=True)
        if info.get("val_note"):
            click.echo(f"charlm: validation text: {info['val_note']}", err=True)
        self.bar = tqdm(total=total_steps, initial=done_steps, unit="step", dynamic_ncols=True,
                        file=sys.stderr, smoothing=0.1)

    def step(self, step, loss, lr, tokens_per_s):
        if self.bar is None:
            return
        self.bar.update(1)
        if step % 5 == 0 or step == 1:
            rate = f"{tokens_per_s / 1000:.1f}k" if tokens_per_s >= 1000 else f"{tokens_per_s:.0f}"
            self.bar.set_postfix_str(f"loss={loss:.3f} {self.task.progress(loss, self.level)}"
                                     f"{rate} {self.task.unit}/s", refresh=False)

    def evaluate(self, record, improved):
        if self.quiet:
            return
        val = record["val_loss"]
        line = (f"step {record['step']:>6}  epoch {record['epoch']:.2f}  "
                f"train {figure(record['train_loss'])}  val {figure(val)} "
                f"({quality(self.task.figures(record, self.level))})  "
                f"lr {record['lr']:.3g}" + ("  * saved" if improved else ""))
        (self.bar.write if self.bar is not None else click.echo)(line, file=sys.stderr)

    def message(self, text):
        self.reading_bar.close()
        if self.bar is not None:
            self.bar.write(f"charlm: {text}", file=sys.stderr)
        elif not self.quiet:
            click.echo(f"charlm: warning: {text}", err=True)

    def note(self, text):
        self.reading_bar.close()
        if not self.quiet:
            (self.bar.write if self.bar is not None else click.echo)(f"charlm: {text}", file=sys.stderr)

    def close(self):
        self.reading_bar.close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
