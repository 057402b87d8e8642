"""What the networks over whole padded sequences share: the sentence networks (`sentence.network`)
and the sequence-to-sequence network (`seq2seq.network`).

Such a network reads a batch of whole sequences padded at the end, carries no state from batch to
batch, and names its parameters `prefix.key` or, for a bidirectional layer, `prefix.fwd.key` and
`prefix.bwd.key` (the checkpoint's names).

Row blocks: every matrix product of these networks has a multiple of ROW_ALIGN rows (a batch is
widened with dummy sequences that no loss or output sees). BLAS computes a row of a product in a
way that depends on how many rows there are (OpenBLAS: one row is a matrix-vector product; rows
after the last full block of its kernel go through an edge kernel; each adds in another order).
With whole blocks a sequence gets the same numbers alone as in any batch, bit for bit in float64
(tests/test_tagger.py, tests/test_seq2seq.py), at no cost for batches of 8k sequences. One case
remains: OpenBLAS's AVX-512 (SkylakeX) kernels send many products with M·N·K <= 10^6 to a
small-matrix kernel, so at full size a sequence alone (a small product) and in a batch of 32 (a
large one) can differ in the last bits (measured on the tagger: at most 8.9e-16 in a
log-probability, default model, float64); the Haswell kernels, and the small sizes of the tests,
have no such switch.
"""

from __future__ import annotations

import numpy as np

from charlm.nn.config import checked_params

__all__ = ["ROW_ALIGN", "widen", "param_name", "PaddedNetwork"]

ROW_ALIGN = 8  # rows of every matrix product: a multiple of this


def widen(n: int) -> int:
    """n rounded up to a multiple of ROW_ALIGN."""
    return -(-n // ROW_ALIGN) * ROW_ALIGN


def param_name(prefix: str, direction: str, key: str) -> str:
    """The checkpoint name of a layer's parameter: prefix.key, or prefix.fwd.key / prefix.bwd.key."""
    return f"{prefix}.{direction}.{key}" if direction else f"{prefix}.{key}"


class PaddedNetwork:
    """The base of a network over whole padded sequences (see the module docstring). Subclasses set
    `config` (its `dropout`), `cell`, `dtype`, call `_set_params` and define `param_shapes()` and
    `_init_params(rng)`."""

    def _set_params(self, params: dict | None, seed: int) -> None:
        """`params` checked against param_shapes() (CharlmError naming what does not fit), or fresh
        ones drawn from `seed`; the dropout masks come from a generator of the same seed."""
        self._rng = np.random.default_rng(seed)
        if params is None:
            self.params = self._init_params(np.random.default_rng(seed))
        else:
            self.params = checked_params(params, self.param_shapes(), self.dtype)

    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    def init_state(self, batch: int) -> None:
        """No state is carried from batch to batch."""
        return None

    def _dropout(self, train: bool, rng):
        """-> (dropout rate, generator of the masks): no dropout unless training."""
        return (self.config.dropout, self._rng if rng is None else rng) if train else (0.0, None)

    def _flat(self, prefix: str, layer) -> dict:
        """A layer's params (a dict, or a (fwd, bwd) pair) -> {checkpoint name: array}."""
        pairs = zip(("fwd", "bwd"), layer) if isinstance(layer, tuple) else [("", layer)]
        return {param_name(prefix, d, k): v for d, lp in pairs for k, v in lp.items()}

    def _group(self, prefix: str, directions) -> tuple | dict:
        """The params of layer `prefix` by the cell's keys: a (fwd, bwd) pair for two directions."""
        keys = self.cell.param_shapes(1, 1)
        groups = tuple({k: self.params[param_name(prefix, d, k)] for k in keys} for d in directions)
        return groups if len(groups) == 2 else groups[0]
