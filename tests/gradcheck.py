"""Finite-difference gradient checking shared by the tests (run them in float64).

The derivative is the fourth-order central difference
    f'(x) ≈ [8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / (12 h),   h = 1e-3,
whose absolute error on our tiny models is ~1e-12. (The two-point difference with h = 1e-6 has a
round-off floor near 4e-10, which alone makes the relative error of gradient entries smaller than
~1e-4 exceed 1e-6; set order=2 to use it.)
"""

from __future__ import annotations

import numpy as np


def rel_error(a, n, tiny: float = 1e-5) -> float:
    """max over entries of |a - n| / max(|a| + |n|, tiny)."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), tiny), initial=0.0))


def numeric_grad(f, x: np.ndarray, eps: float = 1e-3, order: int = 4,
                 n_samples: int | None = None, seed: int = 0):
    """Central differences of the scalar f() w.r.t. the array x (perturbed in place, restored).

    Returns (flat indices, numeric derivatives) for every entry or a random sample of n_samples.
    """
    assert x.dtype == np.float64, "gradient checks run in float64"
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x)
    idx = np.arange(flat.size)
    if n_samples is not None and n_samples < flat.size:
        idx = np.random.default_rng(seed).choice(flat.size, n_samples, replace=False)

    def f_at(i, delta):
        old = flat[i]
        flat[i] = old + delta
        try:
            return float(f())
        finally:
            flat[i] = old

    num = np.empty(len(idx))
    for j, i in enumerate(idx):
        d1 = f_at(i, eps) - f_at(i, -eps)
        if order == 2:
            num[j] = d1 / (2 * eps)
        else:
            d2 = f_at(i, 2 * eps) - f_at(i, -2 * eps)
            num[j] = (8 * d1 - d2) / (12 * eps)
    return idx, num


def check_grad(f, x: np.ndarray, analytic: np.ndarray, n_samples: int | None = None,
               seed: int = 0, **kw) -> float:
    """Relative error between `analytic` (same shape as x) and the numeric gradient of f at x."""
    assert np.shape(analytic) == x.shape, (np.shape(analytic), x.shape)
    idx, num = numeric_grad(f, x, n_samples=n_samples, seed=seed, **kw)
    return rel_error(np.asarray(analytic).reshape(-1)[idx], num)
