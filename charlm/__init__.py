"""charlm: character- and word-level recurrent language models on a NumPy core."""

__version__ = "0.1.0"

# Under mpiexec, each process's share of the cores as BLAS threads: this must happen before
# anything imports NumPy (charlm/launch.py).
from charlm.launch import limit_blas_threads as _limit_blas_threads  # noqa: E402

_limit_blas_threads()
