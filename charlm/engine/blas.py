"""How many threads NumPy's BLAS runs a product on, set while the process runs (OpenBLAS, via ctypes).

A server computes several small requests at once, one per pool thread. If each product also
splits over all the cores, the BLAS threads outnumber the cores and wait for one another: on the
shared 2-core machine under heavy load (load average 12), a score call took 20× longer with 2 BLAS
threads than with 1. So `charlm serve` gives each computation its share, cores // pool threads
(`share_cores`), unless the user set a thread variable (as `charlm.engine.launch` does for MPI).
OpenBLAS reads OPENBLAS_NUM_THREADS only when it loads, which is before any command runs, so the
count is set through its `openblas_set_num_threads` (NumPy's own build prefixes the name with
`scipy_` and may suffix it with `64_`). Like `nn/alloc.py`, called by commands only; anything but
OpenBLAS on Linux is left as it is.
"""

from __future__ import annotations

import ctypes
import os

from charlm.engine.launch import THREAD_VARS, cores

SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
           "openblas_set_num_threads64_", "openblas_set_num_threads")


def _openblas():
    """ctypes handle of the OpenBLAS this process loaded (Linux), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and line.split()[-1].startswith("/")})
        return ctypes.CDLL(paths[0]) if paths else None
    except (OSError, IndexError):
        return None


def set_blas_threads(n: int) -> bool:
    """Let NumPy's OpenBLAS use n threads per product from now on; True if it could be told."""
    import numpy  # noqa: F401 - its BLAS must be loaded to be found

    lib = _openblas()
    for name in SETTERS:
        setter = getattr(lib, name, None) if lib is not None else None
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            setter(int(n))
            return True
    return False


def share_cores(computations: int) -> int | None:
    """Give each of `computations` concurrent computations its share of the cores as BLAS threads
    (at least 1); None, and nothing changed, when the user set a thread variable or the BLAS is
    not OpenBLAS. Returns the threads per product."""
    if any(os.environ.get(v) for v in THREAD_VARS):
        return None
    n = max(1, cores() // max(1, computations))
    return n if set_blas_threads(n) else None
