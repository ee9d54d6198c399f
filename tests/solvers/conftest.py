"""Shared helpers of the solver tests: rounding-error bounds for comparisons of computed results."""

from __future__ import annotations

import numpy as np

EPS = np.finfo(np.float64).eps


def factored_solve_error_bound(L: np.ndarray, r: np.ndarray, unit: float = EPS) -> np.ndarray:
    """First-order bound, entry by entry, of the rounding error of ``z = (L L^T)^-1 r`` (rows of ``r``).

    Two triangular solves by substitution with machine epsilon ``unit``, in any summation order: each
    is backward stable with ``|Delta L| <= gamma_k |L|``, ``gamma_k ~ k unit / 2`` for ``k`` nonzeros a
    row (Higham, *Accuracy and Stability of Numerical Algorithms*, Thm 8.5), so ``y = L^-1 r`` carries
    at most ``gamma_k |L^-1| |L| |y|`` and the second solve adds its own such term to the propagated
    one. ``k unit`` (twice gamma_k) is used, which also covers a factor rounded to that precision.
    Two computations of ``z`` (batched and row by row, another kernel) differ by at most twice this.
    """
    L = np.asarray(L, dtype=np.float64)
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    g = int((L != 0).sum(axis=1).max()) * unit
    L_inv = np.linalg.inv(L)
    y = r @ L_inv.T
    z = y @ L_inv
    dy = g * (np.abs(y) @ np.abs(L).T @ np.abs(L_inv).T)
    return (dy + g * (np.abs(z) @ np.abs(L))) @ np.abs(L_inv)
