"""DCDM's training vectors: combinations of Ritz vectors weighted towards the low end of the spectrum.

Kaneda et al. train without solutions, on right-hand sides built from the operator's spectrum: ``k``
Lanczos steps started from ``A g`` (``g ~ N(0, I)``) give Ritz pairs ``(theta_i, q_i)`` (ascending); a
training vector is ``b = sum_i c_i q_i / ||.||`` with ``c_i ~ N(0, 1)``, multiplied by 9 for the
lowest ``k/2 + theta`` Ritz vectors (the smooth modes, where ``A^{-1}`` is large and a preconditioner
is hard to learn), Ritz values that are numerically zero (a singular Neumann operator) being dropped.
This is their choice of ``k = 10000`` vectors for ``64^3`` unknowns; on our 2D grids ``k`` is a few
hundred.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from surrogates.solvers.lanczos import lanczos

__all__ = ["lanczos", "ritz_pairs", "training_vectors"]

LOW_MODE_WEIGHT = 9.0
"""Factor on the coefficients of the lowest Ritz vectors (the paper's 9)."""


def ritz_pairs(A: sp.spmatrix, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values (ascending) and vectors of ``A`` from ``steps`` Lanczos steps started at ``A g``.

    Returns
    -------
    values : np.ndarray
        Shape ``(k,)``.
    vectors : np.ndarray
        Orthonormal rows, shape ``(k, n)``.
    """
    start = A @ rng.standard_normal(A.shape[0])  # the paper's start: smooth modes damped, as in a residual
    basis, diagonal, off_diagonal = lanczos(A, steps, start)
    tridiagonal = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
    values, eigenvectors = np.linalg.eigh(tridiagonal)
    return values, eigenvectors.T @ basis


def training_vectors(values: np.ndarray, vectors: np.ndarray, count: int, rng: np.random.Generator,
                     theta: int | None = None, zero_tol: float = 1e-8, weighting: str = "paper") -> np.ndarray:
    """Unit right-hand sides ``b = sum c_i q_i / ||.||`` weighted towards the low Ritz vectors.

    Parameters
    ----------
    values, vectors
        From :func:`ritz_pairs`: shapes ``(k,)`` ascending and ``(k, n)``.
    count
        Vectors to draw.
    rng
        Source of the coefficients.
    theta
        The lowest ``k/2 + theta`` Ritz vectors get coefficients ``9 N(0, 1)``; default ``k // 20`` (the
        paper's 500 for ``k = 10000``).
    zero_tol
        Ritz values below ``zero_tol * max |values|`` are a null space and dropped.
    weighting
        ``"paper"`` (the step above) or ``"inverse_sqrt"``: coefficients ``sqrt(theta_max / theta_i) N(0, 1)``
        instead, ``b ~ A^{-1/2} g`` in the Ritz basis, which gives the few smoothest modes (each about
        1 % of a paper vector's energy at 64 x 64) a share that grows like ``1 / theta_i``.

    Returns
    -------
    np.ndarray
        Shape ``(count, n)``, unit 2-norm rows.
    """
    if values.ndim != 1 or vectors.ndim != 2 or vectors.shape[0] != values.shape[0]:
        raise ValueError(f"values (k,) and vectors (k, n) do not match: {values.shape}, {vectors.shape}")
    keep = values > zero_tol * np.abs(values).max()
    vectors = vectors[keep]
    k = vectors.shape[0]
    theta = k // 20 if theta is None else int(theta)
    coefficients = rng.standard_normal((count, k))
    if weighting == "paper":
        coefficients[:, : min(k, k // 2 + theta)] *= LOW_MODE_WEIGHT
    elif weighting == "inverse_sqrt":
        kept = values[keep]
        coefficients *= np.sqrt(kept.max() / kept)
    else:
        raise ValueError(f"weighting must be 'paper' or 'inverse_sqrt', got {weighting!r}")
    b = coefficients @ vectors
    return b / np.linalg.norm(b, axis=1, keepdims=True)
