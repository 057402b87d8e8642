"""Data-parallel training and scoring on MPI (mpi4py): `mpiexec -n N charlm train ...`.

Each of N processes trains the same model on its share of the B streams of every batch
(`--batch-size B` is the global batch), and after the backward pass the gradients of all
processes are summed in one all-reduce:

    g = Σ_r n_r g_r / Σ_r n_r        g_r: gradient of process r's mean loss over its n_r tokens

which is the gradient of the mean loss over all B streams: the same maths as one process. Every
process then clips the same g and takes the same update, so the parameters stay identical
without ever being sent again (they are broadcast from rank 0 once, at the start).

Rank 0 prepares the data first (`root_first`): it reads the corpus and checks or builds the
one token cache (`charlm.text.tokencache`); the other processes then map the same id file without
reading or hashing the corpus again, so N processes on a machine share one copy of the ids
(file pages, not their own memory). A corpus too small for the cache is read by each process.

`MPIComm` is the process group the engine (`charlm.engine`) talks to; `SingleProcess` has
the same methods for an ordinary run. Dropout masks are those one process would draw for the
whole batch (`GlobalBatchRng`), and the masks over the model's own rows (embedding dropout, weight
drop: `charlm.nn.regularize`) the same on every process (the wrappers' `shared` generator), so N
processes train exactly as one, up to the order of the floating-point sums. The carried hidden
states of all processes are gathered to rank 0 when the resumable state is saved, in the layout
one process would have: a run resumes with any N.

mpi4py is an optional extra (`pip install 'charlm[mpi]'`): it is imported only when a launcher
started this process (`charlm.engine.launch`).
"""

from __future__ import annotations

import os
import pickle
import stat
import struct
import sys
import time

import numpy as np

from charlm.engine import launch
from charlm.errors import CharlmError, UsageError

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX: nothing to wait for
    fcntl = termios = None

FAIL_TIMEOUT = 10.0  # seconds a failed process waits for the others to fail too (see all_failed)
DRAIN_TIMEOUT = 5.0  # seconds `abort` waits for the launcher to read this process's last output
OUTCOME_BYTES = 1 << 16  # room for rank 0's error, pickled, when it shares it (see root_first)
POLL = 0.005  # seconds between two looks at a collective that others may join late
INSTALL_HINT = "pip install 'charlm[mpi]'"

_world = None  # the process group of this process, once `world()` has made it


class SingleProcess:
    """The process group of an ordinary run: one process, so every reduction is the identity.
    (A data-parallel run passes an object with the same methods that talks to the others:
    `MPIComm` below.)"""

    rank, size = 0, 1

    def reduce_gradients(self, grads: dict, loss: float, tokens: int) -> tuple[dict, float, int]:
        """The gradient hook, between backward and clipping: (grads, loss, tokens) of all processes."""
        return grads, loss, tokens

    def allreduce(self, x: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes."""
        return x

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any (collective stop decisions)."""
        return bool(flag)

    def first(self, value):
        """The value of the lowest-ranked process whose value is not None, on every process."""
        return value

    def root_first(self, make):
        """make(True) on rank 0 first (it reads the corpus, checks or builds the token cache);
        once it has returned, make(False) on the others (they map that cache unverified)."""
        return make(True)

    def part(self, run):
        """This process's share of the run (its streams, its carried state)."""
        return run

    def gather_state(self, state):
        """On rank 0, the state with every process's carried hidden state (for the last file)."""
        return state


def world():
    """This process's group: `MPIComm` when started by an MPI launcher with several processes,
    else `SingleProcess`. Made once; CharlmError when the launcher started several
    processes but mpi4py is missing or belongs to another MPI."""
    global _world
    if _world is None:
        _world = _make_world()
    return _world


def current():
    """The group `world()` made, or a `SingleProcess` when it has not been called."""
    return _world if _world is not None else SingleProcess()


def _make_world():
    size = launch.world_size()
    if not launch.launched() or size == 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        n = f"{size} processes" if size else "several processes"
        raise CharlmError(f"started by mpiexec with {n}, but mpi4py is not installed: {INSTALL_HINT} "
                          "(or run charlm without mpiexec)") from None
    comm = MPI.COMM_WORLD
    if size and comm.Get_size() != size:
        raise CharlmError(f"the launcher started {size} processes but MPI sees {comm.Get_size()}: start "
                          "charlm with the mpiexec of the MPI that mpi4py uses (python -m mpi4py --mpi-library)")
    return SingleProcess() if comm.Get_size() == 1 else MPIComm(comm)


def columns(n: int, rank: int, size: int) -> slice:
    """Process `rank`'s share of n streams: contiguous, sizes differing by at most one."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return slice(lo, lo + base + (rank < extra))


class MPIComm:
    """The process group of a data-parallel run: the methods the engine calls (see
    `SingleProcess`), plus `part` (this process's share of a run), `gather_state`
    (the carried state of all processes, for the resumable file), `allgather` (scoring) and
    `all_failed`/`abort` (one error line for the job, never a hang)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self._mpi, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._failures = comm.Dup()  # used only to agree that every process failed
        self._buffer = None
        self._abort_on_uncaught_exceptions()

    def _abort_on_uncaught_exceptions(self) -> None:
        """A traceback (`charlm --debug`, a bug) on one process ends the job instead of leaving
        the others waiting in a collective (as `python -m mpi4py` does)."""
        previous = sys.excepthook

        def hook(*exc_info):
            previous(*exc_info)
            sys.stderr.flush()
            self.abort(1)

        sys.excepthook = hook

    # -- the engine's interface -----------------------------------------------------------------
    def reduce_gradients(self, grads: dict, loss: float, tokens: int) -> tuple[dict, float, int]:
        """(grads, loss, tokens) of the mean over all processes' tokens (see the module docstring).

        One all-reduce of one contiguous buffer [n_r g_r for every parameter, n_r L_r, n_r]; the
        returned gradients are views into that buffer (valid until the next call). A non-finite
        gradient anywhere makes the sum non-finite everywhere, so all processes skip that step.
        """
        n = sum(g.size for g in grads.values())
        dtype = next(iter(grads.values())).dtype
        buf = self._buffer
        if buf is None or buf.size != n + 2 or buf.dtype != dtype:
            buf = self._buffer = np.empty(n + 2, dtype=dtype)
        out, k = {}, 0
        for name, g in grads.items():
            view = buf[k:k + g.size]
            np.multiply(g.reshape(-1), tokens, out=view)
            out[name] = view.reshape(g.shape)
            k += g.size
        buf[n], buf[n + 1] = loss * tokens, tokens
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        total = max(float(buf[n + 1]), 1.0)
        loss = float(buf[n]) / total
        buf[:n] /= buf.dtype.type(total)
        return out, loss, int(round(total))

    def allreduce(self, x: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes."""
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        self.comm.Allreduce(x, out, op=self._mpi.SUM)
        return out

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any."""
        return bool(self.comm.allreduce(bool(flag), op=self._mpi.LOR))

    def first(self, value):
        """The value of the lowest-ranked process whose value is not None, on every process."""
        return next((v for v in self.comm.allgather(value) if v is not None), None)

    # -- the run ----------------------------------------------------------------------------------
    def root_first(self, make):
        """make(True) on rank 0; once it has returned, make(False) on the others.

        Rank 0 reads the corpus and checks (content hash) or builds the token cache; the others
        then map the same files without hashing the corpus again. They wait without spinning a
        core. An exception of rank 0 (a bad corpus, Ctrl-C) is raised on every process, so the
        job fails as one, with one line (see `all_failed`).
        """
        if self.rank == 0:
            try:
                result = make(True)
            except BaseException as err:
                self._share_outcome(err)
                raise
            self._share_outcome(None)
            return result
        err = self._share_outcome(None)
        if err is not None:
            raise err
        return make(False)

    def _share_outcome(self, err: BaseException | None) -> BaseException | None:
        """Rank 0's `err` on every other process (None on rank 0 and when rank 0 succeeded)."""
        buf = np.zeros(OUTCOME_BYTES, np.uint8)
        if self.rank == 0 and err is not None:
            data = _pickled(err)
            buf[:4] = np.frombuffer(len(data).to_bytes(4, "little"), np.uint8)
            buf[4:4 + len(data)] = np.frombuffer(data, np.uint8)
        self._wait(self.comm.Ibcast(buf, root=0))
        n = int.from_bytes(buf[:4].tobytes(), "little")
        return pickle.loads(buf[4:4 + n].tobytes()) if n and self.rank != 0 else None

    def _wait(self, request, timeout: float | None = None) -> bool:
        """Wait for a non-blocking collective, sleeping between looks (a blocking one would keep
        a core busy while others are late); False when `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not request.Test():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    def part(self, run):
        """This process's share of `run` (charlm.engine.run.Run), in place: rank 0's parameters, its
        columns of the batch and of the carried state, and its dropout draws (for streams the
        global batch's masks cut by columns, `GlobalBatchRng`; for sentences its own, `ProcessRng`;
        either way, masks over the vocabulary or the weights from `.shared`, the same everywhere).
        CharlmError when the processes do not hold the same data layout and parameter shapes."""
        B = run.source.batch_size
        if B < self.size:
            raise UsageError(f"--batch-size {B} is smaller than the {self.size} processes: each needs at "
                             "least one stream (use a larger --batch-size or fewer processes)")
        layout = (B, run.source.steps_per_epoch(), sorted((k, p.shape) for k, p in run.model.params.items()),
                  run.source.fingerprint())  # the content too: same sizes and counts are not enough
        if any(other != layout for other in self.comm.allgather(layout)):
            raise CharlmError("the processes prepared different data or models (did the corpus change while "
                              "the job started, or do the machines hold different copies?)")
        for p in run.model.params.values():
            self.comm.Bcast(p, root=0)
        cols = columns(B, self.rank, self.size)
        run.source = run.source.part(lambda n: columns(n, self.rank, self.size))
        st = run.state
        if st.hidden is not None:
            st.hidden = [tuple(np.ascontiguousarray(a[cols]) for a in layer) for layer in st.hidden]
        # streams: every batch is B wide, so the masks can be one process's, cut by columns;
        # sentence batches vary in width and padding, so each process draws its own
        st.rng = GlobalBatchRng(st.rng, B, cols) if run.source.carries_state else ProcessRng(st.rng, self.rank)
        return run

    def gather_state(self, state):
        """On rank 0, `state` with the carried hidden state of all processes side by side
        ((B, H) per layer, the layout of one process); elsewhere `state` itself."""
        from dataclasses import replace

        parts = self.comm.gather(state.hidden, root=0)
        if self.rank != 0 or state.hidden is None:
            return state
        hidden = [tuple(np.concatenate([p[l][k] for p in parts]) for k in range(len(layer)))
                  for l, layer in enumerate(state.hidden)]
        return replace(state, hidden=hidden)

    # -- scoring ----------------------------------------------------------------------------------
    def allgather(self, obj) -> list:
        """[obj of process 0, obj of process 1, ...] on every process (pickled)."""
        return self.comm.allgather(obj)

    # -- errors -----------------------------------------------------------------------------------
    def all_failed(self, timeout: float | None = None) -> bool:
        """Called by a process that failed. True when every process reaches this call within
        `timeout` seconds (default FAIL_TIMEOUT; a failure they all share: bad options, a bad
        corpus, divergence, Ctrl-C twice): they can all exit normally. False when the others go
        on or wait in a collective: this process must `abort` the job, or it would hang."""
        return self._wait(self._failures.Ibarrier(), FAIL_TIMEOUT if timeout is None else timeout)

    def abort(self, code: int) -> None:
        """End every process of the job now (MPI_Abort; this process exits even where
        MPI_Abort returns before the launcher has ended it). What this process printed (its
        error line, a traceback) reaches the launcher first: see `wait_until_read`."""
        wait_until_read((sys.stdout, sys.stderr))
        self.comm.Abort(code)
        os._exit(code)


def _pickled(err: BaseException) -> bytes:
    """`err` pickled for the other processes: itself when it pickles, fits OUTCOME_BYTES and
    unpickles, else a CharlmError with its message."""
    try:
        data = pickle.dumps(err)
        pickle.loads(data)
        if len(data) <= OUTCOME_BYTES - 4:
            return data
    except Exception:  # noqa: BLE001 - any error type may come here
        pass
    message = " ".join(f"{type(err).__name__}: {err}".split())[:OUTCOME_BYTES // 8]
    return pickle.dumps(CharlmError(message))


def unread_bytes(fd: int) -> int:
    """Bytes written to pipe `fd` that its reader has not read yet (0 for anything but a pipe,
    or where the system cannot say)."""
    try:
        if fcntl is None or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


def wait_until_read(streams, timeout: float = DRAIN_TIMEOUT) -> None:
    """Flush `streams` and wait (at most `timeout` s) until the launcher has read them.

    A launcher forwards each process's output from a pipe; on MPI_Abort it ends the job
    without reading what is left there (with MPICH's mpiexec the error line of an aborting
    process was lost in several jobs in a hundred), so a process about to abort waits for
    its pipes to be empty.
    """
    fds = []
    for stream in streams:
        try:
            stream.flush()
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):  # closed, or not a real file
            continue
    deadline = time.monotonic() + timeout
    while any(unread_bytes(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.002)


class ProcessRng:
    """Dropout draws of one process of a data-parallel run on sentence batches.

    Every `random` call takes one number from the run's generator (the same on every process: the
    processes make the same calls, one per mask, so it advances alike and is saved as one
    process's) and draws this process's mask from a generator seeded with that number and the
    rank. A resumed job (with any number of processes) draws as the uninterrupted one would have.
    """

    def __init__(self, rng: np.random.Generator, rank: int):
        self.rng, self.rank = rng, rank

    @property
    def bit_generator(self):
        return self.rng.bit_generator

    @property
    def shared(self) -> np.random.Generator:
        """The run's generator itself: draws that are the same on every process (`charlm.nn.regularize`)."""
        return self.rng

    def random(self, shape, dtype=np.float64) -> np.ndarray:
        key = int(self.rng.integers(2**63))
        return np.random.default_rng([key, self.rank]).random(shape, dtype=dtype)


class GlobalBatchRng:
    """The dropout masks one process would draw for the whole batch, cut to this process's columns.

    Masks are time-major (T, B, ...) and the engine's generator fills them in C order from one
    stream of draws. Each process keeps the same generator (it is saved with the run, like one
    process's) and, for every row t, skips the draws of the columns before its own, draws its
    own and skips the rest, so the generator ends exactly where one process's would.
    `bit_generator` is the wrapped generator's (what `TrainState.to_checkpoint` saves).
    """

    def __init__(self, rng: np.random.Generator, batch: int, cols: slice):
        self.rng, self.batch, self.cols = rng, batch, cols
        if not hasattr(rng.bit_generator, "advance"):
            raise CharlmError(f"data-parallel dropout needs a generator that can jump ahead "
                              f"({type(rng.bit_generator).__name__} cannot)")

    @property
    def bit_generator(self):
        return self.rng.bit_generator

    @property
    def shared(self) -> np.random.Generator:
        """The run's generator itself: draws of the whole model (masks over the vocabulary or the
        weights, `charlm.nn.regularize`) that every process makes alike, as one process would."""
        return self.rng

    def random(self, shape, dtype=np.float64) -> np.ndarray:
        """rng.random(global shape)[:, cols] for `shape` = (T, len(cols), ...); a locked dropout
        mask is (1, len(cols), ...)."""
        dtype = np.dtype(dtype)
        T, b = shape[0], shape[1]
        if b != self.cols.stop - self.cols.start:
            raise ValueError(f"a dropout mask of shape {shape} is not this process's {b} columns")
        width = int(np.prod(shape[2:], dtype=np.int64))  # values per stream per row
        before, after = self.cols.start * width, (self.batch - self.cols.stop) * width
        out = np.empty((T, b * width), dtype=dtype)
        for t in range(T):
            self._skip(before, dtype)
            self.rng.random(out=out[t], dtype=dtype)
            self._skip(after, dtype)
        return out.reshape(shape)

    def _skip(self, n: int, dtype) -> None:
        """Advance the generator past n uniform draws of `dtype`, as drawing them would.

        A float64 takes one 64-bit draw; a float32 takes 32 bits, the two halves of a 64-bit
        draw in turn (the unused half waits in the state's `uinteger`, flagged by `has_uint32`).
        """
        if n == 0:
            return
        bits = self.rng.bit_generator
        if dtype == np.float64:
            kept = bits.state
            bits.advance(n)  # advance() forgets a waiting half: put it back
            if kept["has_uint32"]:
                state = bits.state
                state["has_uint32"], state["uinteger"] = kept["has_uint32"], kept["uinteger"]
                bits.state = state
            return
        state = bits.state
        if state["has_uint32"]:  # the waiting half is the first of the n
            n -= 1
            state["has_uint32"] = 0
            bits.state = state
        full, odd = divmod(n, 2)
        if full:
            bits.advance(full)
        if odd:  # a fresh 64-bit draw: its low half is skipped, its high half waits
            high = int(bits.random_raw()) >> 32
            state = bits.state
            state["has_uint32"], state["uinteger"] = 1, high
            bits.state = state
