"""`mpiexec -n 2 charlm train --task seq2seq`: two processes train as one, and an interrupted,
resumed job equals the uninterrupted one (the helpers and the job runner of tests/test_mpi.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charlm.engine.run import last_path
from test_mpi import arrays_of, needs_mpi, relative_difference, train_job, train_one


def pair_options(tmp_path: Path, out: str, dropout: float) -> dict:
    """9 training pairs (batches of 4: 4, 4 and 1, so one of two processes trains on a weightless
    stand-in), one of them with two references, and 3 validation pairs."""
    train_p, val_p = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train_p.write_text("cat\tkat\ndog\tdog\ndog\tdawg\nact\takt\ntack\ttak\ncot\tkot\ncod\tkod\ntoga\ttoga\n"
                       "goat\tgot\n", encoding="utf-8")
    val_p.write_text("cog\tkog\ntag\ttag\ncat\tkat\n", encoding="utf-8")
    model = dict(cell="lstm", layers=1, hidden=5, embedding=4, dropout=dropout, dtype="float64")
    return dict(corpus=str(train_p), val_file=str(val_p), output=str(tmp_path / out), task="seq2seq", model=model,
                batch_size=4, lr=1e-2, epochs=10, eval_every=4, seed=3, max_steps=8)


@needs_mpi
def test_seq2seq_trains_data_parallel(tmp_path):
    one, two = pair_options(tmp_path, "one.npz", 0.0), pair_options(tmp_path, "two.npz", 0.0)
    losses = train_one(one)
    result = train_job(2, two, tmp_path)
    assert len(result["losses"]) == len(losses) == 8
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-6)
    a, b = arrays_of(last_path(two["output"])), arrays_of(last_path(one["output"]))
    for k in a:
        assert relative_difference(a[k], b[k]) < 1e-6, k
    straight, broken = pair_options(tmp_path, "straight.npz", 0.3), pair_options(tmp_path, "broken.npz", 0.3)
    train_job(2, straight, tmp_path)
    assert train_job(2, broken, tmp_path, kill_at=[3, "SIGINT"])["summary"]["step"] == 3
    assert train_job(2, broken, tmp_path, resume=True)["summary"]["step"] == 8
    a, b = arrays_of(last_path(straight["output"])), arrays_of(last_path(broken["output"]))
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # bit for bit
