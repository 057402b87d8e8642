"""Where a run stands: `TrainState`, all an exact resume needs besides the parameters and the
optimizer. Its `RECORD` fields are the keys of meta["train"] in NAME.last.npz, a compatibility
contract: files written by earlier versions resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charlm.errors import CheckpointError


@dataclass
class TrainState:
    """Where a run stands: all an exact resume needs besides the parameters and the optimizer.

    The fields (except `rng` and `hidden`) are the keys of `meta["train"]` in NAME.last.npz, a
    compatibility contract: files written by earlier versions resume. `hidden` is stored as the
    arrays "state/LAYER/K". The "best" counters hold the validation objective (for a language
    model, the loss in nats per token).
    """

    step: int = 0
    epoch: int = 0
    position: int = 0  # where the next batch starts in the epoch (Batch.end of the last one)
    tokens_seen: int = 0
    n_train: int = 0  # training tokens (sentences for tag/classify): how the corpus was split
    best_val_loss: float | None = None  # best of the scheduled evaluations (drives decay/stopping)
    bad_evals: int = 0  # scheduled evaluations in a row without improvement
    saved_val_loss: float | None = None  # the model at --output: its objective ...
    best_step: int | None = None  # ... and the step that produced it
    metrics: list = field(default_factory=list)  # one record per evaluation
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    hidden: list | None = None  # carried hidden state: list over layers of tuples of (B, H)

    RECORD = ("step", "epoch", "position", "tokens_seen", "n_train", "best_val_loss", "bad_evals",
              "saved_val_loss", "best_step", "metrics")

    def observe(self, objective: float | None, scheduled: bool) -> tuple[bool, bool]:
        """Record an evaluation of the model at `self.step`. Returns (save, plateau):

        save:    the model beats the one at --output (always, without validation data);
        plateau: a scheduled evaluation that does not beat the best scheduled one (the
                 learning rate decays; --patience of these in a row stop the run).
        Evaluations outside the schedule (at the end of a run) may replace the model at
        --output but never change the decisions, so an interrupted run decides as one that ran
        straight through.
        """
        save = objective is None or self.saved_val_loss is None or objective < self.saved_val_loss
        if save:
            self.saved_val_loss, self.best_step = objective, self.step
        if not scheduled or objective is None:
            return save, False
        if self.best_val_loss is None or objective < self.best_val_loss:
            self.best_val_loss, self.bad_evals = objective, 0
            return save, False
        self.bad_evals += 1
        return save, True

    def to_checkpoint(self) -> tuple[dict, dict]:
        """(record for meta["train"], arrays {"state/L/K": (B, H)})."""
        record = {k: getattr(self, k) for k in self.RECORD}
        record["rng"] = self.rng.bit_generator.state
        arrays = {f"state/{l}/{k}": a for l, layer in enumerate(self.hidden or []) for k, a in enumerate(layer)}
        return record, arrays

    @classmethod
    def from_checkpoint(cls, record: dict, arrays: dict, dtype) -> "TrainState":
        """The state saved by `to_checkpoint`; KeyError/TypeError/ValueError if it is unusable."""
        rng = np.random.default_rng()
        rng.bit_generator.state = record["rng"]
        hidden, l = [], 0
        while f"state/{l}/0" in arrays:
            k, layer = 0, []
            while f"state/{l}/{k}" in arrays:
                layer.append(arrays[f"state/{l}/{k}"].astype(dtype))
                k += 1
            hidden.append(tuple(layer))
            l += 1
        return cls(**{k: record[k] for k in cls.RECORD}, rng=rng, hidden=hidden or None)


def check_hidden(hidden: list | None, want: list | None, where: Path) -> None:
    """A carried state read from a checkpoint must fit the model and batch."""
    shapes = None if hidden is None else [[a.shape for a in layer] for layer in hidden]
    if shapes != (None if want is None else [[a.shape for a in layer] for layer in want]):
        raise CheckpointError(f"{where} has a corrupt training state (the carried hidden state does not "
                              "fit the model): train again without --resume")
