"""Preconditioned conjugate gradient for one sparse SPD system, on scipy and pyamg.

This is the reference solver used for dataset generation. A later issue replaces it with the
project's own batched torch PCG (``surrogates/solvers/pcg.py``); the convergence rule stays the same:
``||b - A x|| <= max(rtol ||b||, atol)`` on the true residual.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

PRECONDITIONERS = ("amg", "jacobi", "none")


def make_preconditioner(A: sp.spmatrix, kind: str = "amg") -> spla.LinearOperator | None:
    """Build an SPD preconditioner ``M ~ A^-1`` for CG.

    Parameters
    ----------
    A
        Sparse SPD matrix of shape ``(N, N)``.
    kind
        ``"amg"``: one V-cycle of pyamg smoothed aggregation (symmetric Gauss-Seidel smoothing, so
        the preconditioner is symmetric; deterministic setup); ``"jacobi"``: ``diag(A)^-1``; ``"none"``: no preconditioner.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator or None
        ``None`` for ``"none"``.
    """
    if kind == "none":
        return None
    if kind == "jacobi":
        inverse_diagonal = 1.0 / A.diagonal()
        return spla.LinearOperator(A.shape, matvec=lambda r: inverse_diagonal * np.ravel(r), dtype=A.dtype)
    if kind == "amg":
        import pyamg  # imported here: only this preconditioner needs it

        # "local" weighting of the Jacobi prolongation smoother avoids pyamg's spectral-radius
        # estimates, which start from np.random vectors: the setup becomes deterministic (same data
        # from the same seed), leaves numpy's global random state alone, and is cheaper.
        smooth = ("jacobi", {"omega": 4.0 / 3.0, "weighting": "local"})
        return pyamg.smoothed_aggregation_solver(sp.csr_matrix(A), smooth=smooth).aspreconditioner(cycle="V")
    raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {kind!r}")


def solve_spd(
    A: sp.spmatrix,
    b: np.ndarray,
    rtol: float = 1e-10,
    preconditioner: str = "amg",
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: np.ndarray | None = None,
    max_restarts: int = 3,
) -> tuple[np.ndarray, int, float]:
    """Solve ``A x = b`` for a sparse SPD ``A`` with preconditioned CG (``scipy.sparse.linalg.cg``).

    CG stops on its recursively updated residual, which can drift from the true one near round-off;
    if the true residual misses the tolerance, CG is restarted from the current iterate (at most
    ``max_restarts`` times).

    Parameters
    ----------
    A
        Sparse SPD matrix of shape ``(N, N)``.
    b
        Right-hand side of shape ``(N,)``.
    rtol, atol
        Convergence when ``||b - A x|| <= max(rtol ||b||, atol)``.
    preconditioner
        ``"amg"`` (pyamg smoothed aggregation, V-cycle), ``"jacobi"`` or ``"none"``.
    maxiter
        Iteration limit per CG run; ``None`` uses ``10 N``.
    x0
        Initial guess of shape ``(N,)``; zero by default.
    max_restarts
        Restarts allowed when the true residual misses the tolerance.

    Returns
    -------
    x : np.ndarray
        Solution of shape ``(N,)``.
    iterations : int
        CG iterations over all runs.
    relative_residual : float
        True ``||b - A x|| / ||b||`` (0 when ``b = 0``).

    Raises
    ------
    RuntimeError
        If the tolerance is not reached.
    """
    b = np.asarray(b, dtype=np.float64)
    b_norm = float(np.linalg.norm(b))
    if b_norm == 0.0:
        return np.zeros_like(b), 0, 0.0
    tolerance = max(rtol * b_norm, atol)
    M = make_preconditioner(A, preconditioner)
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    counter = [0]

    def count(_xk: np.ndarray) -> None:
        counter[0] += 1

    residual = np.inf
    for _ in range(max_restarts + 1):
        x, info = spla.cg(A, b, x0=x, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=count)
        residual = float(np.linalg.norm(b - A @ x))
        if info < 0:
            raise RuntimeError(f"CG broke down (info={info}); is the matrix symmetric positive definite?")
        if residual <= tolerance:
            return x, counter[0], residual / b_norm
        if info > 0:
            break  # iteration limit reached: restarting would not help
    raise RuntimeError(
        f"CG ({preconditioner}) did not converge: relative residual {residual / b_norm:.3e} > rtol {rtol:.1e} "
        f"after {counter[0]} iterations (atol={atol:g})"
    )
