"""Gradient accumulation (`charlm train --accumulate K`, charlm.engine.batches.Accumulated)."""

from __future__ import annotations

import signal
from itertools import islice

import numpy as np
import pytest

from charlm import checkpoint as ckpt
from charlm.engine.batches import Accumulated, Batch
from charlm.engine.progress import Reporter
from charlm.engine.run import last_path
from charlm.errors import UsageError
from charlm.tasks.training import TrainOptions, train
from charlm.tasks.training import start as _start

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n" * 12


def options(tmp_path, **kw) -> TrainOptions:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    base = dict(corpus=str(corpus), output=str(tmp_path / "m.npz"), tokenizer={"level": "char"},
                model=dict(cell="gru", layers=1, hidden=10, embedding=6, dropout=0.1, dtype="float64"),
                seq_len=7, batch_size=3, accumulate=2, optimizer="sgd", lr=0.5, clip=0.0, seed=2,
                eval_every=4, max_steps=1)
    base.update(kw)
    return TrainOptions(**base)


class Source:
    batch_size, carries_state = 1, True

    def steps_per_epoch(self):
        return 5

    def epoch_fraction(self, position):
        return position / 5

    def batches(self, position=0):
        for p in range(position, 5):
            yield Batch((p,), p + 1, 10 + p)


def test_accumulated_source_groups_k_batches_and_resumes_at_any_step():
    acc = Accumulated(Source(), 2)
    steps = list(acc.batches(0))
    assert acc.steps_per_epoch() == 3 == len(steps)
    assert [[b.inputs[0] for b in s.parts] for s in steps] == [[0, 1], [2, 3], [4]]
    assert [s.end for s in steps] == [2, 4, 5] and [s.tokens for s in steps] == [21, 25, 14]
    assert [[b.inputs[0] for b in s.parts] for s in acc.batches(2)] == [[2, 3], [4]]


def test_one_update_follows_the_mean_gradient_of_its_batches(tmp_path):
    """SGD, no clipping: after one step, p = p0 − lr · (g1 + g2) / 2 with g1, g2 the gradients of two
    consecutive windows (equal token counts), the state and the dropout generator carried."""
    opts = options(tmp_path)
    run = _start(opts)
    hidden, grads = run.state.hidden, []
    for batch in islice(run.source.batches(0), 2):
        _, hidden, cache = run.model.loss(*batch.inputs, hidden, train=True, rng=run.state.rng)
        grads.append(run.model.backward(cache))
    expected = {k: p - opts.lr * (grads[0][k] + grads[1][k]) / 2 for k, p in run.model.params.items()}
    train(opts)
    arrays = ckpt.load_checkpoint(last_path(opts.output))[0]
    for k, p in expected.items():
        np.testing.assert_allclose(arrays[f"param/{k}"], p, rtol=1e-12, atol=1e-14)


class KillAt(Reporter):
    def __init__(self, step):
        self.at = step

    def step(self, step, loss, lr, tokens_per_s):
        if step == self.at:
            signal.raise_signal(signal.SIGINT)


def test_an_accumulating_run_resumes_exactly(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = options(tmp_path / "a", accumulate=3, optimizer="adam", lr=1e-2, max_steps=9)
    broken = options(tmp_path / "b", accumulate=3, optimizer="adam", lr=1e-2, max_steps=9)
    assert train(straight)["step"] == 9
    assert train(broken, reporter=KillAt(4))["step"] == 4
    assert train(broken, resume=True)["step"] == 9
    a, b = ckpt.load_checkpoint(last_path(straight.output))[0], ckpt.load_checkpoint(last_path(broken.output))[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_accumulate_must_be_a_positive_whole_number(tmp_path):
    with pytest.raises(UsageError, match="--accumulate"):
        options(tmp_path, accumulate=0)
