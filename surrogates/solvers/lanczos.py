"""The Lanczos process with full reorthogonalization, shared by the solvers that need a few Ritz pairs
or Gauss quadrature nodes of a symmetric operator (DCDM's training vectors, stochastic Lanczos quadrature)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["lanczos"]


def lanczos(
    A: sp.spmatrix | np.ndarray | Callable[[np.ndarray], np.ndarray],
    steps: int,
    start: np.ndarray,
    breakdown_rtol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``steps`` Lanczos steps with full reorthogonalization.

    Parameters
    ----------
    A
        Symmetric matrix, shape ``(n, n)``, or the product ``v (n,) -> A v (n,)``.
    steps
        Krylov dimension ``k`` (``1 <= k <= n``); stops early on an invariant subspace.
    start
        Starting vector, shape ``(n,)``, nonzero (normalized here).
    breakdown_rtol
        An invariant subspace is declared when the next off-diagonal is at most this times the current
        diagonal entry.

    Returns
    -------
    basis : np.ndarray
        Orthonormal Lanczos vectors, shape ``(k, n)``.
    diagonal : np.ndarray
        ``T_ii``, shape ``(k,)``.
    off_diagonal : np.ndarray
        ``T_{i,i+1}``, shape ``(k - 1,)``.
    """
    n = len(start)
    if not 1 <= steps <= n:
        raise ValueError(f"steps must be in [1, {n}], got {steps}")
    norm = np.linalg.norm(start)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("the Lanczos start vector must be finite and nonzero")
    apply = A if callable(A) else A.__matmul__
    basis = np.zeros((steps, n))
    diagonal, off_diagonal = np.zeros(steps), np.zeros(max(steps - 1, 0))
    basis[0] = start / norm
    for j in range(steps):
        w = apply(basis[j])
        diagonal[j] = basis[j] @ w
        # full reorthogonalization (twice is enough): keeps the Ritz vectors orthonormal in floating point
        for _ in range(2):
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        if j + 1 == steps:
            break
        beta = np.linalg.norm(w)
        if beta <= breakdown_rtol * abs(diagonal[j]) + np.finfo(float).tiny:  # invariant subspace: the spectrum is found
            return basis[: j + 1], diagonal[: j + 1], off_diagonal[:j]
        off_diagonal[j] = beta
        basis[j + 1] = w / beta
    return basis, diagonal, off_diagonal
