"""Log-determinants of sparse symmetric positive definite matrices: exact (sparse LU) and stochastic (SLQ).

``sparse_logdet`` factorizes ``A = P^T L U P`` with a symmetric fill-reducing ordering (minimum degree
on ``A^T + A``) and no pivoting away from the diagonal, which is Cholesky up to scaling for an SPD
matrix, so ``log det A = sum log U_ii`` (every ``U_ii > 0``; a non-positive pivot, or a zero one that
SuperLU replaced by an off-diagonal entry, means ``A`` is not SPD).

``slq_logdet`` is stochastic Lanczos quadrature (Ubaru, Chen and Saad, 2017): with Rademacher probes
``z``, ``log det A = tr log A = E[z^T log(A) z]`` and each quadratic form is the ``m``-point Gauss
quadrature given by ``m`` Lanczos steps from ``z / |z|`` (eigenvalues ``t_i`` and first eigenvector
components ``w_i`` of the tridiagonal matrix): ``z^T log(A) z ~ |z|^2 sum_i w_i^2 log t_i``. It only
needs products with ``A``; its error is a Monte Carlo error of order ``sqrt(2 / probes) ||log A||_F``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import eigh_tridiagonal

from surrogates.solvers.lanczos import lanczos


class SPDFactor:
    """Sparse LU of an SPD matrix ``(n, n)`` with a symmetric ordering: ``log det`` and solves.

    Raises ``ValueError`` when ``A`` is not square, has non-finite entries, a non-positive pivot or
    a zero diagonal pivot that SuperLU replaced by an off-diagonal one (then it is not SPD).
    """

    def __init__(self, A: sp.spmatrix):
        A = sp.csc_matrix(A)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square, got shape {A.shape}")
        if not np.all(np.isfinite(A.data)):
            raise ValueError("A has non-finite entries")
        self.lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        # SuperLU still pivots off the diagonal where a diagonal pivot is exactly zero: the row order then
        # differs from the column order, det A = -prod(U_ii) may be, and A is not SPD (it has a zero pivot)
        if not np.array_equal(self.lu.perm_r, self.lu.perm_c):
            raise ValueError("A is not symmetric positive definite (a zero diagonal pivot)")
        pivots = self.lu.U.diagonal()
        if np.any(pivots <= 0):
            raise ValueError("A is not symmetric positive definite (a non-positive pivot)")
        self.logdet = float(np.log(pivots).sum())

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``A^-1 b`` for ``b`` of shape ``(n,)`` or ``(n, k)``."""
        return self.lu.solve(np.asarray(b, dtype=np.float64))


def sparse_logdet(A: sp.spmatrix) -> float:
    """``log det A`` of a sparse SPD matrix ``(n, n)`` (see :class:`SPDFactor`)."""
    return SPDFactor(A).logdet


def slq_logdet(
    matvec: Callable[[np.ndarray], np.ndarray] | sp.spmatrix,
    n: int,
    probes: int,
    steps: int,
    rng: np.random.Generator,
) -> float:
    """Stochastic Lanczos quadrature estimate of ``log det A`` for an SPD ``A`` given by products.

    Parameters
    ----------
    matvec
        ``v (n,) -> A v (n,)``, or a sparse matrix.
    n
        Dimension.
    probes
        Number of Rademacher probe vectors.
    steps
        Lanczos steps per probe (Gauss quadrature points), full reorthogonalization.
    rng
        Source of the probes.

    Returns
    -------
    float
        The estimate (``n`` times the mean of the per-probe quadratures over ``|z|^2 = n``).
    """
    if probes < 1 or steps < 1:
        raise ValueError(f"probes and steps must be >= 1, got {probes}, {steps}")
    apply = matvec.dot if sp.issparse(matvec) else matvec
    total = 0.0
    for _ in range(probes):
        z = rng.choice([-1.0, 1.0], size=n)
        _, diagonal, off_diagonal = lanczos(apply, min(steps, n), z, breakdown_rtol=1e-14)
        nodes, vectors = eigh_tridiagonal(diagonal, off_diagonal)  # Gauss nodes; weights: first components squared
        weights = vectors[0] ** 2
        if np.any(nodes <= 0):
            raise ValueError("A is not positive definite (a non-positive Ritz value)")
        total += n * float(weights @ np.log(nodes))
    return total / probes
