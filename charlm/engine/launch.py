"""How this process was started: by an MPI launcher (mpiexec, mpirun, srun) or not.

Standard library only: `limit_blas_threads()` runs when the package is imported, before NumPy
loads its BLAS, which reads the thread variables once, when it loads.

MPI launchers tell each process where it stands through environment variables:

    MPICH (Hydra), Intel MPI, Slurm's PMI-2   PMI_SIZE, PMI_RANK; MPI_LOCALNRANKS (Hydra)
    Open MPI                                  OMPI_COMM_WORLD_SIZE, _RANK, _LOCAL_SIZE
    MVAPICH2                                  MV2_COMM_WORLD_SIZE, _RANK, _LOCAL_SIZE
    PMIx launchers (prterun, srun --mpi=pmix) PMIX_RANK (no size)

Nothing here imports mpi4py: that is `charlm.engine.parallel`'s job, and only when this module says the
process was started by a launcher.
"""

from __future__ import annotations

import os
import sys

SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")
# The variables BLAS libraries and OpenMP read for their thread count: if the user set any of
# them, charlm sets none.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def _first_int(names, environ) -> int | None:
    for name in names:
        try:
            return int(environ[name])
        except (KeyError, ValueError):
            continue
    return None


def launched(environ=os.environ) -> bool:
    """True when an MPI launcher started this process (whatever the number of processes)."""
    return _first_int(RANK_VARS, environ) is not None or _first_int(SIZE_VARS, environ) is not None


def world_size(environ=os.environ) -> int | None:
    """Processes in the job as the launcher says (None: not launched, or the launcher does not say)."""
    return _first_int(SIZE_VARS, environ)


def rank(environ=os.environ) -> int:
    """This process's rank as the launcher says (0 when not launched)."""
    return _first_int(RANK_VARS, environ) or 0


def local_size(environ=os.environ) -> int:
    """Processes of the job on this machine (the whole job when the launcher does not say)."""
    return _first_int(LOCAL_SIZE_VARS, environ) or world_size(environ) or 1


def cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def limit_blas_threads(environ=os.environ) -> int | None:
    """Under a launcher with several processes on this machine, give each process its share of
    the cores as BLAS/OpenMP threads: cores // processes on the machine (at least 1).

    Does nothing (returns None) when not launched, alone on the machine, when the user set any
    of THREAD_VARS, or when NumPy is already imported (too late: its BLAS has read them).
    Returns the thread count it set.
    """
    if not launched(environ) or any(environ.get(v) for v in THREAD_VARS) or "numpy" in sys.modules:
        return None
    local = local_size(environ)
    if local <= 1:
        return None
    threads = max(1, cores() // local)
    for var in THREAD_VARS:
        environ[var] = str(threads)
    return threads
