"""The training engine: one loop for every task and every process count.

A run (`engine.run.Run`, built by its task) is a model, an optimizer, a batch source with a
validation set (`engine.batches`) and a `TrainState`. One step:

    loss, state', cache = model.loss(*batch.inputs, state, train=True, rng=rng)    forward
    grads = model.backward(cache)                                                  BPTT
    grads, loss, n = comm.reduce_gradients(grads, loss, n)    the gradient hook (identity for one
                                                              process; an all-reduce under MPI)
    clip_grad_norm(grads, clip);  optimizer.step(params, grads)                    update

(with --accumulate K, forward and backward run for K batches and their gradients are averaged;
during the run's first `frozen_epochs` epochs the gradients of its `frozen` parameters are dropped
before clipping, so they are not updated: --freeze-epochs).

Every --eval-every steps the model is evaluated: the best one (lowest validation objective) is
written to --output, and everything an exact resume needs to NAME.last.npz — parameters,
optimizer state, the `TrainState` (step, epoch, data position, best/patience counters, metrics,
carried hidden state, random-generator state) and the run's options. A scheduled evaluation that
does not improve on the best one multiplies the learning rate by --lr-decay, 0.5 by default (with --optimizer asgd the first one
starts the averaging of the weights instead, and the average is what is evaluated and saved from
then on: `Optimizer.evaluated`, `Optimizer.plateau`); --patience of them in a row stop the run.
Only scheduled evaluations make these decisions, so a run interrupted after any step and resumed
ends with the same parameters, bit for bit, as one that was never interrupted.

A step whose loss or gradient is not finite is skipped and the learning rate halved; five in a
row stop the run ("diverged") with the last good files on disk. Ctrl-C / SIGTERM finish the
step, save and return; --time-limit stops cleanly.

Nothing here prints: progress goes through `Reporter` callbacks, errors are `CharlmError`s.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from charlm import checkpoint as ckpt
from charlm.engine.batches import Accumulated
from charlm.engine.optim import clip_grad_norm
from charlm.engine.parallel import SingleProcess
from charlm.engine.progress import Reporter
from charlm.engine.run import Run, check_files, last_path
from charlm.errors import CharlmError
from charlm.version import __version__

MAX_BAD_STEPS = 5  # consecutive non-finite steps before training gives up
MIN_LR_FRACTION = 1e-3  # the learning rate never decays below this fraction of --lr


class _Stop(Exception):
    """Ends training early, with the reason as its message."""


class _SignalFlag:
    """While active, Ctrl-C / SIGTERM set `.name` (the loop finishes the step, saves and stops);
    a second one raises KeyboardInterrupt at once (the last saved files stay intact)."""

    def __init__(self):
        self.name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.name:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Trainer:
    """One training step, evaluate-and-save and save-last, on a `Run` (see the module docstring)."""

    def __init__(self, run: Run, reporter: Reporter, comm):
        self.run, self.rep, self.comm = run, reporter, comm
        self.started = time.perf_counter()
        self.last_file = last_path(run.opts.output)
        self.bad_steps = 0
        self.window_loss, self.window_count = 0.0, 0  # training loss since the last evaluation
        self.tick, self.tick_tokens = time.perf_counter(), 0

    def total_steps(self) -> int:
        total = self.run.source.steps_per_epoch() * self.run.opts.epochs
        return total if self.run.opts.max_steps is None else min(total, self.run.opts.max_steps)

    def step(self, batch) -> None:
        """Forward, backward, gradient hook, clip, update (or skip a non-finite step)."""
        run, st = self.run, self.run.state
        loss, hidden, grads = self._gradients(batch)
        grads, loss, tokens = self.comm.reduce_gradients(grads, loss, batch.tokens)
        if st.epoch < run.frozen_epochs:   # (--freeze-epochs) no update, nor optimizer state, for these
            grads = {k: g for k, g in grads.items() if k not in run.frozen}
        norm = clip_grad_norm(grads, run.opts.clip)
        if math.isfinite(loss) and math.isfinite(norm):
            self.bad_steps = 0
            run.optimizer.step(run.model.params, grads)
            st.hidden = hidden
            self.window_loss += loss
            self.window_count += 1
        else:
            self._skip_step()
        st.step += 1
        st.position = batch.end
        st.tokens_seen += tokens
        self.tick_tokens += tokens
        self.rep.step(st.step, loss, run.optimizer.lr,
                      self.tick_tokens / max(time.perf_counter() - self.tick, 1e-9))

    def _gradients(self, batch) -> tuple[float, list | None, dict]:
        """(mean loss, carried state after the batch, gradient of the mean loss) of one batch. A
        batch of --accumulate parts takes one forward/backward per part, the state carried from
        part to part, and returns the means over the parts weighted by their tokens."""
        model, st = self.run.model, self.run.state
        parts = batch.parts or (batch,)
        hidden, mean_loss, mean_grads = st.hidden, 0.0, None
        for part in parts:
            loss, hidden, cache = model.loss(*part.inputs, hidden, train=True, rng=st.rng)
            grads = model.backward(cache)
            if len(parts) == 1:
                return loss, hidden, grads
            w = part.tokens / batch.tokens
            mean_loss += w * loss
            if mean_grads is None:
                mean_grads = {k: g * w for k, g in grads.items()}
            else:
                for k, g in grads.items():
                    mean_grads[k] += g * w
        return mean_loss, hidden, mean_grads

    def _skip_step(self) -> None:
        opt = self.run.optimizer
        self.bad_steps += 1
        opt.lr *= 0.5
        self.rep.message(f"step {self.run.state.step + 1}: non-finite loss or gradient; update skipped, "
                         f"learning rate lowered to {opt.lr:.3g}")
        if self.bad_steps >= MAX_BAD_STEPS:
            raise CharlmError(f"training diverged ({self.bad_steps} non-finite steps in a row); the last good "
                              f"model is in {self.run.opts.output}: try a lower --lr or --clip")
        self.run.state.hidden = self.run.initial_hidden()

    def end_epoch(self) -> None:
        st = self.run.state
        st.epoch += 1
        st.position = 0
        st.hidden = self.run.initial_hidden()

    def should_stop(self, flag: _SignalFlag) -> str | None:
        """The reason to stop after this step (a signal or --time-limit), decided by all processes."""
        name = self.comm.first(flag.name)  # the signal any process caught: all stop and say so
        if name is not None:
            flag.name = name
            return f"interrupted by {name}"
        limit = self.run.opts.time_limit
        if self.comm.any(limit is not None and time.perf_counter() - self.started >= limit):
            return "reached --time-limit"
        return None

    def evaluate(self, scheduled: bool = True) -> bool:
        """Evaluate; save the best model and the resumable state. True: stop early (patience).

        Only scheduled evaluations (every --eval-every steps) decay the learning rate and count
        towards --patience; any evaluation may replace the model at --output.
        """
        run, st, opts = self.run, self.run.state, self.run.opts
        tick = time.perf_counter()
        with run.optimizer.evaluated(run.model.params):  # the weights to judge and save (ASGD: the average)
            ev = run.validation.evaluate(run.model, self.comm) if run.validation is not None else None
            elapsed = time.perf_counter() - self.started
            record = {
                "step": st.step, "epoch": st.epoch + run.source.epoch_fraction(st.position),
                "train_loss": self.window_loss / self.window_count if self.window_count else None,
                "val_loss": None if ev is None else ev.loss, **({} if ev is None else ev.metrics),
                "lr": run.optimizer.lr, "tokens_per_s": self.tick_tokens / elapsed if elapsed > 0 else None,
                "elapsed": elapsed, "eval_seconds": elapsed - (tick - self.started),
            }
            save, plateau = st.observe(None if ev is None else ev.objective, scheduled)
            if save:
                self.save_best(record, [] if ev is None else list(ev.metrics))
        self.window_loss, self.window_count = 0.0, 0
        if plateau and not run.optimizer.plateau(run.model.params):  # ASGD: starts averaging instead
            run.optimizer.lr = max(run.optimizer.lr * opts.lr_decay, opts.lr * MIN_LR_FRACTION)
        st.metrics.append(record)
        if opts.metrics and self.comm.rank == 0:
            with open(opts.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self.rep.evaluate(record, save)
        self.save_last()
        return scheduled and ev is not None and st.bad_evals >= opts.patience

    def _meta(self, kind: str, train: dict) -> dict:
        run = self.run
        return {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "charlm_version": __version__,
                "kind": kind, "task": run.opts.task, "model": run.model.config.to_dict(),
                "vocab": run.vocab.to_dict(), **run.extra_meta, "train": dict(train, processes=self.comm.size)}

    def _check_finite(self) -> None:
        """Never overwrite a good checkpoint with parameters that are inf/NaN (the loader would
        refuse them): stop with the previous files intact instead."""
        if not all(np.isfinite(p).all() for p in self.run.model.params.values()):
            raise CharlmError(
                f"training diverged at step {self.run.state.step}: the parameters are no longer finite; "
                f"the last good model is in {self.run.opts.output} (resumable state in {self.last_file}): "
                "try a lower --lr or --clip")

    def save_best(self, record: dict, metrics: list) -> None:
        """Write the model at --output, with its evaluation (val_loss and the task's `metrics`)."""
        run, st = self.run, self.run.state
        self._check_finite()
        if self.comm.rank == 0:
            info = {"step": st.step, "epoch": st.epoch, "val_loss": record["val_loss"],
                    **{k: record[k] for k in metrics}, "train_tokens": st.tokens_seen, "options": asdict(run.opts)}
            ckpt.save_checkpoint(run.opts.output, ckpt.model_arrays(run.model), self._meta("best", info))

    def save_last(self) -> None:
        run = self.run
        self._check_finite()
        record, state_arrays = self.comm.gather_state(run.state).to_checkpoint()
        scalars, opt_arrays = run.optimizer.state_dict()
        record.update(options=asdict(run.opts), optimizer=scalars,
                      epochs_done=run.state.epoch + run.source.epoch_fraction(run.state.position),
                      schedule={"factor": run.opts.lr_decay, "min_lr": run.opts.lr * MIN_LR_FRACTION},
                      paths={"output": os.path.abspath(run.opts.output),  # where this run writes
                             "metrics": os.path.abspath(run.opts.metrics) if run.opts.metrics else None})
        arrays = dict(ckpt.model_arrays(run.model), **{f"optim/{k}": v for k, v in opt_arrays.items()},
                      **state_arrays)
        if self.comm.rank == 0:
            ckpt.save_checkpoint(self.last_file, arrays, self._meta("last", record))

    def finish(self) -> None:
        """Evaluate and save at the end, unless the last thing the loop did was exactly that."""
        st = self.run.state
        last_eval_step = st.metrics[-1]["step"] if st.metrics else None
        if last_eval_step != st.step or not Path(self.run.opts.output).exists():
            self.evaluate(scheduled=False)

    def summary(self, reason: str, interrupted: str | None) -> dict:
        run, st = self.run, self.run.state
        return {"reason": reason, "interrupted": interrupted, "step": st.step, "epoch": st.epoch,
                "best_val_loss": st.saved_val_loss, "best_step": st.best_step, "output": str(run.opts.output),
                "last": str(self.last_file), "level": run.vocab.tokenizer.level, "task": run.opts.task,
                "best_record": next((r for r in st.metrics if r["step"] == st.best_step), None),
                "elapsed": time.perf_counter() - self.started}


def train(opts, prepare, *, resume: bool = False, reporter: Reporter | None = None, comm=None) -> dict:
    """Train the run `prepare(reporter, verify)` builds (a `Run`: its task's network, data and
    state, fresh or read back from the run's NAME.last.npz when `resume`); return a summary dict
    (reason, interrupted, step, epoch, best_val_loss (the validation objective) and best_step of
    the model at --output, best_record (its evaluation record: val_loss, val_accuracy, ...),
    output, last, level, task, elapsed).

    `opts` are the command's options (where the run's files are). Raises `CharlmError` for user
    mistakes and for a diverged run; on a signal, saves and returns with summary["interrupted"]
    set to the signal's name. `comm` is the process group (`SingleProcess()` when None); rank 0
    prepares first (`verify`: it checks or builds the token cache), the others after it.
    """
    rep, comm = reporter or Reporter(), comm or SingleProcess()
    if not resume:
        check_files(opts, fresh=True)
    run = comm.part(comm.root_first(lambda first: prepare(rep, first)))
    if run.opts.accumulate > 1:  # one update per --accumulate batches
        run.source = Accumulated(run.source, run.opts.accumulate)
        run.info["steps_per_epoch"] = run.source.steps_per_epoch()
    if resume:
        check_files(run.opts)  # checked against the resumed run's own inputs
        done = run.state.epoch + run.source.epoch_fraction(run.state.position)
        rep.note(f"resuming from {last_path(opts.output)} at step {run.state.step} ({done:.2f} epochs done)")
    if run.warning:
        rep.message(run.warning)
    if run.validation is None and not resume:
        rep.message("no validation text: the model at the output is the latest, not the best")
    trainer, st, o = Trainer(run, rep, comm), run.state, run.opts
    rep.start(trainer.total_steps(), st.step, run.info)
    reason = "finished"
    with _SignalFlag() as flag:
        try:
            while st.epoch < o.epochs:
                for batch in run.source.batches(st.position):
                    if o.max_steps is not None and st.step >= o.max_steps:
                        raise _Stop("reached --max-steps")
                    trainer.step(batch)
                    if st.step % o.eval_every == 0 and trainer.evaluate():
                        raise _Stop(f"early stop: no improvement in {o.patience} evaluations")
                    stop = trainer.should_stop(flag)
                    if stop:
                        raise _Stop(stop)
                trainer.end_epoch()
        except _Stop as stop:
            reason = str(stop)
    trainer.finish()
    rep.close()
    return trainer.summary(reason, flag.name)
