"""charlm: character- and word-level recurrent language models on a NumPy core.

The public Python API is what `__all__` lists (see `charlm.api` and the README's "Python API"):

    lm = charlm.load("charlm.npz")       # a model file -> charlm.LM, charlm.Tagger or charlm.Classifier
    lm = charlm.train("corpus.txt", ...)  # train as `charlm train` does (task="tag"|"classify" too)

Everything else, the submodules included, is internal and may change between versions.
"""

from charlm.version import __version__  # noqa: F401

# Under mpiexec, each process's share of the cores as BLAS threads: this must happen before
# anything imports NumPy (charlm/engine/launch.py).
from charlm.engine.launch import limit_blas_threads as _limit_blas_threads  # noqa: E402

_limit_blas_threads()

from charlm.api import LM, Classifier, Model, Tagger, load, train  # noqa: E402
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError  # noqa: E402
from charlm.lm.beam import Candidate  # noqa: E402
from charlm.lm.generate import Sample  # noqa: E402
from charlm.lm.scoring import CorpusSummary, SentenceScore  # noqa: E402
from charlm.sentence.predict import Classified, Tagged  # noqa: E402

__all__ = [
    "__version__",
    "load",
    "train",
    "Model",
    "LM",
    "Tagger",
    "Classifier",
    "SentenceScore",
    "CorpusSummary",
    "Sample",
    "Candidate",
    "Tagged",
    "Classified",
    "CharlmError",
    "UsageError",
    "DataError",
    "CheckpointError",
]
