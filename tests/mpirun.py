"""One process of an `mpiexec` job started by tests/test_mpi.py; it reports back through files.

    mpiexec -n N python mpirun.py train SPEC.json
        charlm.tasks.training.train(TrainOptions(**spec["options"]), spec["resume"], reporter, comm) on the
        process group of the job; rank 0 writes {"losses": [per-step loss], "summary": ...} to
        spec["result"]. spec["kill_at"] = [step, "SIGINT"]: rank 0 sends itself that signal after
        that step.
    mpiexec -n N python mpirun.py cli DIR ARGS...
        charlm's command line with ARGS in this process; rank r writes its pid to DIR/rank{r}.pid
        at the start and its exit status to DIR/rank{r}.exit at the end. A process that fails
        alone waits 2 s (not parallel.FAIL_TIMEOUT) for the others before it ends the job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from charlm.engine import launch, parallel
from charlm.text import tokencache


def run_train(spec_path: str) -> None:
    from charlm.engine.progress import Reporter
    from charlm.tasks.training import TrainOptions, train

    spec = json.loads(Path(spec_path).read_text())
    comm = parallel.world()
    kill_at = spec.get("kill_at")
    tokencache.MIN_BYTES = spec.get("min_cache_bytes", tokencache.MIN_BYTES)
    hashes, file_hash = [], tokencache.file_hash

    def counted_hash(path):
        hashes.append(str(path))
        return file_hash(path)

    tokencache.file_hash = counted_hash

    class Record(Reporter):
        losses: list = []
        notes: list = []

        def step(self, step, loss, lr, tokens_per_s):
            self.losses.append(loss)
            if kill_at and comm.rank == 0 and step == kill_at[0]:
                os.kill(os.getpid(), getattr(signal, kill_at[1]))

        def note(self, text):
            self.notes.append(text)

    rep = Record()
    summary = train(TrainOptions(**spec["options"]), resume=spec.get("resume", False), reporter=rep, comm=comm)
    notes, counts = comm.allgather(rep.notes), comm.allgather(len(hashes))
    if comm.rank == 0:
        Path(spec["result"]).write_text(json.dumps({"losses": rep.losses, "summary": summary, "notes": notes,
                                                    "hashes": counts}))


def run_cli(folder: str, args: list[str]) -> None:
    from charlm.cli import cli

    where = Path(folder) / f"rank{launch.rank()}"
    where.with_suffix(".pid").write_text(str(os.getpid()))
    code = 0
    try:
        cli.main(args, prog_name="charlm")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    where.with_suffix(".exit").write_text(str(code))
    sys.exit(code)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        run_train(sys.argv[2])
    else:
        parallel.FAIL_TIMEOUT = 2.0
        run_cli(sys.argv[2], sys.argv[3:])
