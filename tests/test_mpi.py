"""Data-parallel training and scoring under `mpiexec` (charlm.engine.parallel, charlm.engine.launch).

The MPI tests start real jobs with the mpiexec of the MPI that mpi4py uses (the `test` extra
installs mpi4py and MPICH's wheels); tests/mpirun.py is the program each process runs when a
test needs more than the command line. Every job is bounded by a timeout: a hang fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charlm import checkpoint as ckpt
from charlm.engine import launch, parallel
from charlm.engine.progress import Reporter
from charlm.engine.run import last_path
from charlm.tasks import load as load_model
from charlm.tasks.training import TrainOptions, train

HERE = Path(__file__).resolve().parent
TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n") * 20
TINY = ["--hidden", "12", "--embedding", "6", "--seq-len", "8", "--batch-size", "4"]
ENV = {k: v for k, v in os.environ.items() if k != "CHARLM_MODEL" and k not in launch.THREAD_VARS}
JOB_TIMEOUT = 120


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the venv's MPICH (the mpich wheel)
    return str(beside) if beside.exists() else shutil.which("mpiexec")


try:
    import mpi4py  # noqa: F401
    MPIEXEC = _mpiexec()
except ImportError:
    MPIEXEC = None
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpi4py and mpiexec (pip install -e '.[test]')")


def job(n: int, *args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([MPIEXEC, "-n", str(n), *map(str, args)], env=env or ENV, capture_output=True,
                          text=True, timeout=JOB_TIMEOUT, **kw)


def charlm_job(n: int, *args, **kw) -> subprocess.CompletedProcess:
    return job(n, sys.executable, "-m", "charlm", *args, **kw)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("charlm: error:")]


@pytest.fixture
def corpus(tmp_path) -> Path:
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def options(corpus: Path, out: Path, **kw) -> dict:
    base = dict(corpus=str(corpus), output=str(out), tokenizer={"level": "char"},
                model=dict(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.1),
                seq_len=12, batch_size=5, lr=5e-3, epochs=5, eval_every=5, seed=3, max_steps=20)
    base.update(kw)
    return base


class Record(Reporter):
    def __init__(self):
        self.losses = []

    def step(self, step, loss, lr, tokens_per_s):
        self.losses.append(loss)


def train_one(opts: dict) -> list[float]:
    """One process, in this process: the per-step losses."""
    rep = Record()
    train(TrainOptions(**opts), reporter=rep)
    return rep.losses


def train_job(n: int, opts: dict, tmp_path: Path, resume=False, kill_at=None, **more) -> dict:
    """n processes (tests/mpirun.py, which says what `more` may hold): {"losses": [...],
    "summary": {...}, "notes": [[...] of each rank], "hashes": [count of each rank]} from rank 0."""
    spec = tmp_path / f"spec-{time.monotonic_ns()}.json"
    result = spec.with_suffix(".result.json")
    spec.write_text(json.dumps({"options": opts, "resume": resume, "kill_at": kill_at, "result": str(result), **more}))
    r = job(n, sys.executable, HERE / "mpirun.py", "train", spec)
    assert r.returncode == 0, r.stderr
    return json.loads(result.read_text())


def arrays_of(path) -> dict:
    return ckpt.load_checkpoint(path)[0]


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------------------- no MPI needed


def test_columns_share_the_streams_contiguously_and_evenly():
    for n, size in [(5, 2), (7, 3), (4, 4), (64, 5)]:
        parts = [parallel.columns(n, r, size) for r in range(size)]
        assert parts[0].start == 0 and parts[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
        widths = [p.stop - p.start for p in parts]
        assert max(widths) - min(widths) <= 1 and min(widths) >= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 5, 1), (3, 6, 4), (2, 3)])
def test_global_batch_rng_draws_one_process_masks_and_ends_where_it_would(dtype, shape):
    """Each process's columns of the global draw, and the generator left exactly where one process
    leaves it, also with half of a 64-bit draw waiting (odd float32 counts) before and after."""
    for size in (2, 3):
        one = np.random.default_rng(3)
        one.random(5, dtype=np.float32)  # leaves a waiting half
        first, second = one.random(shape, dtype=dtype), one.random(shape, dtype=dtype)
        for r in range(size):
            cols = parallel.columns(shape[1], r, size)
            gen = np.random.default_rng(3)
            gen.random(5, dtype=np.float32)
            mine = parallel.GlobalBatchRng(gen, shape[1], cols)
            local = (shape[0], cols.stop - cols.start, *shape[2:])
            assert np.array_equal(mine.random(local, dtype=dtype), first[:, cols])
            assert np.array_equal(mine.random(local, dtype=dtype), second[:, cols])
            assert mine.bit_generator.state == one.bit_generator.state


def test_launcher_variables_are_read_as_mpich_and_open_mpi_set_them():
    assert not launch.launched({}) and launch.rank({}) == 0
    hydra = {"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALNRANKS": "2"}
    assert launch.launched(hydra) and launch.world_size(hydra) == 4 and launch.rank(hydra) == 3
    assert launch.local_size(hydra) == 2
    ompi = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5"}
    assert launch.world_size(ompi) == 8 and launch.rank(ompi) == 5 and launch.local_size(ompi) == 8
    assert launch.launched({"PMIX_RANK": "0"}) and launch.world_size({"PMIX_RANK": "0"}) is None


def test_blas_threads_are_set_only_for_several_processes_on_a_machine_and_never_over_the_user(monkeypatch):
    monkeypatch.delitem(sys.modules, "numpy")  # pretend NumPy is not loaded yet (it is put back)
    env = {"PMI_SIZE": "2", "PMI_RANK": "0", "MPI_LOCALNRANKS": "2"}
    threads = launch.limit_blas_threads(env)
    assert threads == max(1, launch.cores() // 2)
    assert all(env[v] == str(threads) for v in launch.THREAD_VARS)
    mine = {"PMI_SIZE": "2", "PMI_RANK": "0", "OMP_NUM_THREADS": "3"}
    assert launch.limit_blas_threads(mine) is None and "OPENBLAS_NUM_THREADS" not in mine
    assert launch.limit_blas_threads({"PMI_SIZE": "1", "PMI_RANK": "0"}) is None
    assert launch.limit_blas_threads({}) is None


def test_unread_bytes_counts_what_the_reader_of_a_pipe_has_not_read_yet(tmp_path):
    """What `abort` waits for: a launcher reads each process's output from a pipe, and MPI_Abort
    would drop what it has not read."""
    line = b"charlm: error: process 1: the last line\n"
    r, w = os.pipe()
    try:
        os.write(w, line)
        assert parallel.unread_bytes(w) == len(line)
        os.read(r, 15)
        assert parallel.unread_bytes(w) == len(line) - 15
        os.read(r, len(line))
        assert parallel.unread_bytes(w) == 0
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / "file", "w") as f:  # not a pipe: nothing to wait for
        f.write("text")
        f.flush()
        assert parallel.unread_bytes(f.fileno()) == 0


def test_rank_0s_error_reaches_the_others_as_itself_or_as_its_message():
    """What `root_first` sends when rank 0's preparation fails: the error itself (its type sets the
    exit status and the line), or a CharlmError with its message when it cannot travel."""
    import pickle

    from charlm.errors import CharlmError, UsageError

    class Unpicklable(Exception):
        def __init__(self, what, *, where):
            super().__init__(f"{what} at {where}")

    for err in (UsageError("--batch-size 2 is too small"), IsADirectoryError(21, "Is a directory", "log.jsonl"),
                KeyboardInterrupt()):
        back = pickle.loads(parallel._pickled(err))
        assert type(back) is type(err) and str(back) == str(err)
    back = pickle.loads(parallel._pickled(Unpicklable("a bug", where="step 3")))
    assert type(back) is CharlmError and str(back) == "Unpicklable: a bug at step 3"
    back = pickle.loads(parallel._pickled(CharlmError("x" * parallel.OUTCOME_BYTES)))
    assert type(back) is CharlmError and len(pickle.dumps(back)) < parallel.OUTCOME_BYTES


def test_without_mpi4py_mpiexec_stops_with_one_line(corpus, tmp_path):
    """What a launcher with two processes sets, and an mpi4py that cannot be imported: rank 0 says
    what to install, rank 1 says nothing; one process (-n 1) is an ordinary run."""
    fake = tmp_path / "fake"
    (fake / "mpi4py").mkdir(parents=True)
    (fake / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI here')\n")
    cmd = [sys.executable, "-m", "charlm", "train", str(corpus), "-o", str(tmp_path / "m.npz"), *TINY,
           "--max-steps", "2", "-q"]
    for rank, lines in (("0", 1), ("1", 0)):
        env = dict(ENV, PYTHONPATH=str(fake), PMI_SIZE="2", PMI_RANK=rank)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == lines, r.stderr
        if lines:
            assert "mpi4py is not installed: pip install 'charlm[mpi]'" in r.stderr
    r = subprocess.run(cmd, env=dict(ENV, PYTHONPATH=str(fake), PMI_SIZE="1", PMI_RANK="0"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# ------------------------------------------------------------------------------ MPI jobs


@needs_mpi
def test_two_processes_train_as_one(corpus, tmp_path):
    """Global batch 5 (3 + 2 streams), dropout on: float64 parameters after 20 steps agree to
    1e-6 relative (also accumulating 2 batches per step); float32 loss curves to 1e-5."""
    for dtype, k in (("float64", 1), ("float32", 1), ("float64", 2)):
        model = dict(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.1, dtype=dtype)
        one = options(corpus, tmp_path / f"one-{dtype}-{k}.npz", model=model, accumulate=k)
        two = options(corpus, tmp_path / f"two-{dtype}-{k}.npz", model=model, accumulate=k)
        losses_one = train_one(one)
        result = train_job(2, two, tmp_path)
        assert len(result["losses"]) == len(losses_one) == 20
        if dtype == "float64":
            a, b = arrays_of(last_path(two["output"])), arrays_of(last_path(one["output"]))
            assert a.keys() == b.keys()
            for k in a:
                assert relative_difference(a[k], b[k]) < 1e-6, k
        else:
            np.testing.assert_allclose(result["losses"], losses_one, rtol=1e-5)
    meta = ckpt.load_checkpoint(two["output"])[1]
    assert meta["kind"] == "best" and meta["train"]["processes"] == 2
    load_model(two["output"])  # an ordinary model


@needs_mpi
def test_resumed_job_equals_uninterrupted_job_and_resumes_with_another_n(corpus, tmp_path):
    straight = options(corpus, tmp_path / "straight.npz", max_steps=30)
    broken = options(corpus, tmp_path / "broken.npz", max_steps=30)
    train_job(2, straight, tmp_path)
    stopped = train_job(2, broken, tmp_path, kill_at=[13, "SIGINT"])["summary"]
    assert stopped["interrupted"] == "SIGINT" and stopped["step"] == 13
    at_13 = tmp_path / "at-13.npz"
    shutil.copy(last_path(broken["output"]), at_13)
    assert train_job(2, broken, tmp_path, resume=True)["summary"]["step"] == 30
    for path in (last_path, Path):
        a, b = arrays_of(path(straight["output"])), arrays_of(path(broken["output"]))
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), k  # bit for bit
    # The same state resumed by one process: the carried state of both is in the file, so it
    # goes on as the two would, up to the order of the float32 sums.
    shutil.copy(at_13, last_path(broken["output"]))
    assert train(TrainOptions(**broken), resume=True)["step"] == 30
    a, b = arrays_of(last_path(broken["output"])), arrays_of(last_path(straight["output"]))
    for k in a:
        assert relative_difference(a[k], b[k]) < 1e-4, k


def tagged_files(tmp_path: Path) -> tuple[Path, Path]:
    """Column files: 9 training sentences (batches of 4: 4, 4 and 1, so one of two processes has
    no sentence of the last batch) and 3 validation sentences."""
    words = "the cat sat on a mat while Ada Lovelace wrote in London".split()
    rng = np.random.default_rng(0)

    def sentence():
        picked = rng.choice(len(words), size=int(rng.integers(2, 8)))
        return "".join(f"{words[i]} {'B-PER' if words[i][0].isupper() else 'O'}\n" for i in picked) + "\n"

    train_p, val_p = tmp_path / "train.txt", tmp_path / "dev.txt"
    train_p.write_text("".join(sentence() for _ in range(9)), encoding="utf-8")
    val_p.write_text("".join(sentence() for _ in range(3)), encoding="utf-8")
    return train_p, val_p


def sentence_options(task: str, tmp_path: Path, out: str, **model) -> dict:
    train_p, val_p = tagged_files(tmp_path)
    if task == "classify":  # LABEL<TAB>TEXT: the sentence, labelled by whether it names a person
        for p in (train_p, val_p):
            blocks = [b.split("\n") for b in p.read_text(encoding="utf-8").strip().split("\n\n")]
            p.write_text("".join(f"{'person' if any('PER' in l for l in b) else 'none'}\t"
                                 f"{' '.join(l.split()[0] for l in b)}\n" for b in blocks), encoding="utf-8")
    model = dict(cell="lstm", layers=2, hidden=6, embedding=5, char_embedding=3, char_hidden=3, dtype="float64",
                 **model)
    return dict(corpus=str(train_p), val_file=str(val_p), output=str(tmp_path / out), task=task,
                tokenizer={"level": "word", "split": "whitespace"}, model=model, batch_size=4, lr=1e-2,
                epochs=10, eval_every=4, seed=3, max_steps=10)


@needs_mpi
def test_the_stream_form_of_the_conditional_model_trains_data_parallel(tmp_path):
    """`--condition --mode stream`: each process takes its rows of every window (2 + 1 of 3), the
    state carried, dropout on (the masks of one process cut by rows): float64 parameters after
    12 steps agree with one process's to 1e-6 relative."""
    p = tmp_path / "labelled.tsv"
    p.write_text("".join(f"{'a' if i % 3 else 'b'}\t{line}\n" for i, line in enumerate(TEXT.splitlines())),
                 encoding="utf-8")
    one, two = (dict(corpus=str(p), output=str(tmp_path / f"{n}.npz"), condition=True,
                     tokenizer={"level": "char", "mode": "stream"}, seq_len=10, batch_size=3, lr=5e-3, epochs=50,
                     eval_every=6, seed=3, max_steps=12,
                     model=dict(cell="gru", layers=2, hidden=10, embedding=6, label_embedding=3, dropout=0.2,
                                dtype="float64")) for n in ("one", "two"))
    losses = train_one(one)
    result = train_job(2, two, tmp_path)
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-6)
    a, b = arrays_of(last_path(two["output"])), arrays_of(last_path(one["output"]))
    assert a.keys() == b.keys() and "state/2/0" in a              # the carried state of all rows, v too
    for k in a:
        assert relative_difference(a[k], b[k]) < 1e-6, k


@needs_mpi
@pytest.mark.parametrize("task", ["tag", "classify"])
def test_sentence_tasks_train_data_parallel(task, tmp_path):
    """Without dropout two processes train as one (float64, 1e-6 relative; the last batch of
    each epoch has one sentence, so one process trains on a weightless stand-in). With dropout
    each process draws its own masks, and an interrupted, resumed job equals the uninterrupted."""
    plain = dict(dropout=0.0, word_dropout=0.0)
    one = sentence_options(task, tmp_path, "one.npz", **plain)
    two = sentence_options(task, tmp_path, "two.npz", **plain)
    losses = train_one(one)
    result = train_job(2, two, tmp_path)
    assert len(result["losses"]) == len(losses) == 10
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-6)
    a, b = arrays_of(last_path(two["output"])), arrays_of(last_path(one["output"]))
    for k in a:
        assert relative_difference(a[k], b[k]) < 1e-6, k
    drop = dict(dropout=0.3, word_dropout=0.2)
    straight = sentence_options(task, tmp_path, "straight.npz", **drop)
    broken = sentence_options(task, tmp_path, "broken.npz", **drop)
    train_job(2, straight, tmp_path)
    assert train_job(2, broken, tmp_path, kill_at=[5, "SIGINT"])["summary"]["step"] == 5
    assert train_job(2, broken, tmp_path, resume=True)["summary"]["step"] == 10
    a, b = arrays_of(last_path(straight["output"])), arrays_of(last_path(broken["output"]))
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # bit for bit


@needs_mpi
def test_rank_0_builds_the_token_cache_once_and_every_process_maps_it(corpus, tmp_path):
    """The cache forced on for a small corpus: rank 0 builds (or checks) it, then rank 1 maps the
    same files without hashing the corpus; training from it equals training without a cache."""
    cache = tmp_path / "cache"
    cached = options(corpus, tmp_path / "cached.npz", cache_dir=str(cache), max_steps=10)
    first = train_job(2, cached, tmp_path, min_cache_bytes=1)
    (built,), (used,) = first["notes"]
    assert built.startswith(f"tokenized {corpus}") and "cached in" in built, built
    assert used.startswith("token cache used"), used
    assert first["hashes"] == [0, 0]  # rank 0 hashed while it tokenized; rank 1 trusted it
    assert len(list(cache.glob("*.tokens.npy"))) == 1
    again = train_job(2, dict(cached, output=str(tmp_path / "again.npz")), tmp_path, min_cache_bytes=1)
    resumed = train_job(2, dict(cached, max_steps=14), tmp_path, resume=True, min_cache_bytes=1)
    for job_ in (again, resumed):
        assert all(notes[0].startswith("token cache used") for notes in job_["notes"]), job_["notes"]
        assert job_["hashes"] == [1, 0]  # only rank 0 checks the content
    plain = options(corpus, tmp_path / "plain.npz", no_cache=True, max_steps=10)
    train_job(2, plain, tmp_path, min_cache_bytes=1)
    a, b = arrays_of(last_path(plain["output"])), arrays_of(tmp_path / "again.last.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _start_cli_job(tmp_path: Path, n: int, *args) -> subprocess.Popen:
    return subprocess.Popen([MPIEXEC, "-n", str(n), sys.executable, str(HERE / "mpirun.py"), "cli", str(tmp_path),
                             *map(str, args)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, job: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert job.poll() is None, f"the job ended before {what}: {job.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def _metrics_written(path: Path):
    return lambda: path.exists() and path.read_text().count("\n") >= 1


def _check_on_disk(out: Path) -> int:
    """Both files load; the step of the resumable state."""
    load_model(out)
    arrays, meta = ckpt.load_checkpoint(last_path(out))
    return meta["train"]["step"]


@needs_mpi
def test_ctrl_c_to_mpiexec_saves_once_and_every_process_exits_130(corpus, tmp_path):
    out, log = tmp_path / "m.npz", tmp_path / "log.jsonl"
    p = _start_cli_job(tmp_path, 2, "train", corpus, "-o", out, *TINY, "--max-steps", "1000000",
                       "--eval-every", "5", "--metrics", log)
    _wait_for(_metrics_written(log), p, "first evaluation")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=JOB_TIMEOUT)
    assert p.returncode == 130, err
    assert [(tmp_path / f"rank{r}.exit").read_text() for r in (0, 1)] == ["130", "130"]
    assert err.count("interrupted by SIGINT") == 1 and err.count("saved.") == 1, err
    assert "resume with: mpiexec -n 2 charlm train" in err and "Traceback" not in err
    step = _check_on_disk(out)
    assert step > 0
    r = charlm_job(2, "train", corpus, "-o", out, *TINY, "--resume", "--max-steps", step + 3, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _check_on_disk(out) == step + 3


@needs_mpi
def test_sigkill_of_one_process_ends_the_job_and_the_files_resume(corpus, tmp_path):
    out = tmp_path / "m.npz"
    p = _start_cli_job(tmp_path, 2, "train", corpus, "-o", out, *TINY, "--max-steps", "1000000",
                       "--eval-every", "2", "-q")
    _wait_for(lambda: last_path(out).exists() and (tmp_path / "rank1.pid").exists(), p, "first save")
    time.sleep(0.3)
    os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
    p.communicate(timeout=30)  # the job ends (TimeoutExpired here would be a hang)
    assert p.returncode != 0
    step = _check_on_disk(out)
    r = charlm_job(2, "train", corpus, "-o", out, *TINY, "--resume", "--max-steps", step + 4, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _check_on_disk(out) == step + 4


@needs_mpi
def test_a_process_failing_alone_ends_the_job_with_one_line(corpus, tmp_path):
    """Only rank 0 writes the metrics log: when it cannot (here a folder took its place), rank 0
    fails alone, says so with its rank and ends the job instead of leaving rank 1 waiting."""
    out, log = tmp_path / "m.npz", tmp_path / "log.jsonl"
    p = _start_cli_job(tmp_path, 2, "train", corpus, "-o", out, *TINY, "--max-steps", "1000000",
                       "--eval-every", "5", "--metrics", log, "-q")
    _wait_for(_metrics_written(log), p, "first evaluation")
    while not log.is_dir():  # rank 0 may append again between the two calls
        log.unlink(missing_ok=True)
        try:
            log.mkdir()
        except FileExistsError:
            pass
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert error_lines(err) == ["charlm: error: process 0: Is a directory: " + str(log)], err
    # a traceback on one process (a bug, or --debug) ends the job too
    r = job(2, sys.executable, "-c", "from charlm.engine import parallel\n"
            "comm = parallel.world()\n"
            "if comm.rank == 1: raise RuntimeError('a bug')\n"
            "comm.any(False)\n")
    assert r.returncode != 0 and "RuntimeError: a bug" in r.stderr


@needs_mpi
def test_errors_shared_by_all_processes_print_one_line(corpus, tmp_path):
    r = charlm_job(2, "train", tmp_path / "missing.txt", "-o", tmp_path / "m.npz", cwd=tmp_path)
    assert r.returncode == 1 and error_lines(r.stderr) == [f"charlm: error: no such file: {tmp_path / 'missing.txt'}"]
    r = charlm_job(3, "train", corpus, "-o", tmp_path / "m.npz", "--batch-size", "2", cwd=tmp_path)
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1
    assert "--batch-size 2 is smaller than the 3 processes" in r.stderr


@needs_mpi
def test_first_line_names_the_processes_and_each_gets_its_share_of_the_cores(corpus, tmp_path):
    r = charlm_job(2, "train", corpus, "-o", tmp_path / "m.npz", *TINY, "--max-steps", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "charlm: data-parallel over 2 processes"
    show = ("import charlm, os; env = os.environ.get; "
            "os.write(1, f\"{env('OPENBLAS_NUM_THREADS')} {env('OMP_NUM_THREADS')}\\n\".encode())")
    r = job(2, sys.executable, "-c", show)
    threads = str(max(1, launch.cores() // 2))
    assert r.stdout.split("\n")[:2] == [f"{threads} {threads}"] * 2, r.stdout
    r = job(2, sys.executable, "-c", show, env=dict(ENV, OMP_NUM_THREADS="3"))
    assert r.stdout.split("\n")[:2] == ["None 3"] * 2, r.stdout
    r = charlm_job(1, "train", corpus, "-o", tmp_path / "one.npz", *TINY, "--max-steps", "3", cwd=tmp_path)
    assert r.returncode == 0 and "data-parallel" not in r.stderr, r.stderr


@needs_mpi
def test_score_with_two_processes_prints_what_one_prints(corpus, tmp_path):
    model = tmp_path / "m.npz"
    train(TrainOptions(**options(corpus, model, max_steps=3)))
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i} of the play\n\n" for i in range(150)) + TEXT, encoding="utf-8")
    for extra in ([], ["--json", "--per-token"]):
        args = ["score", "-m", model, "--file", lines, "--batch-size", "8", *extra]
        one = subprocess.run([sys.executable, "-m", "charlm", *map(str, args)], env=ENV, capture_output=True,
                             text=True, timeout=60)
        two = charlm_job(2, *args)
        assert one.returncode == two.returncode == 0, two.stderr
        assert two.stdout == one.stdout and one.stdout.count("\n") > 150
    r = charlm_job(2, "score", "-m", model, "--file", lines, "--stream")
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1 and "--stream" in r.stderr
