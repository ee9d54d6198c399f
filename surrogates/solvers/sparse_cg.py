"""Solve one sparse SPD system with a preconditioner chosen by name: the solver behind data generation.

A thin front end to the project's batched torch PCG (:func:`surrogates.solvers.pcg.pcg`) and its
preconditioners, with the convergence rule ``||b - A x|| <= max(rtol ||b||, atol)`` on the true
residual (as ``scipy.sparse.linalg.cg``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from surrogates.solvers.pcg import pcg
from surrogates.solvers.preconditioners import (
    AMGPreconditioner,
    IC0Preconditioner,
    IdentityPreconditioner,
    JacobiPreconditioner,
    Preconditioner,
)

PRECONDITIONERS = ("amg", "ic0", "jacobi", "none")


def make_preconditioner(A: sp.spmatrix, kind: str = "amg") -> Preconditioner:
    """Build the preconditioner ``kind`` for the SPD matrix ``A`` of shape ``(N, N)``.

    ``"amg"``: one smoothed-aggregation V-cycle (deterministic set-up); ``"ic0"``: incomplete
    Cholesky with zero fill-in; ``"jacobi"``: ``diag(A)^-1``; ``"none"``: the identity.
    """
    builders = {
        "amg": AMGPreconditioner,
        "ic0": IC0Preconditioner,
        "jacobi": JacobiPreconditioner,
        "none": lambda _A: IdentityPreconditioner(),
    }
    if kind not in builders:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {kind!r}")
    return builders[kind](sp.csr_matrix(A))


def solve_spd(
    A: sp.spmatrix,
    b: np.ndarray,
    rtol: float = 1e-10,
    preconditioner: str = "amg",
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, int, float]:
    """Solve ``A x = b`` for a sparse SPD ``A`` with the project's PCG, in float64 on the CPU.

    Parameters
    ----------
    A
        Sparse SPD matrix of shape ``(N, N)``.
    b
        Right-hand side of shape ``(N,)``.
    rtol, atol
        Convergence when ``||b - A x|| <= max(rtol ||b||, atol)``.
    preconditioner
        One of :data:`PRECONDITIONERS`.
    maxiter
        Iteration limit; ``None`` uses ``10 N``.
    x0
        Initial guess of shape ``(N,)``; zero by default.

    Returns
    -------
    x : np.ndarray
        Solution of shape ``(N,)``.
    iterations : int
        PCG iterations.
    relative_residual : float
        True ``||b - A x|| / ||b||`` (0 when ``b = 0``).

    Raises
    ------
    RuntimeError
        If the tolerance is not reached.
    surrogates.solvers.pcg.NotSPDError
        If ``A`` (or the preconditioner) turns out not to be positive definite.
    """
    b = np.asarray(b, dtype=np.float64)
    result = pcg(
        A,
        torch.from_numpy(b),
        preconditioner=make_preconditioner(A, preconditioner),
        x0=None if x0 is None else torch.as_tensor(np.asarray(x0, dtype=np.float64)),
        rtol=rtol,
        atol=atol,
        maxiter=maxiter,
        record_history=False,
    )
    b_norm = float(np.linalg.norm(b))
    residual = float(result.true_residual_norms[0])
    relative = residual / b_norm if b_norm > 0 else 0.0
    if not bool(result.converged[0]):
        raise RuntimeError(
            f"PCG ({preconditioner}) did not converge: relative residual {relative:.3e} > rtol {rtol:.1e} "
            f"after {int(result.iterations[0])} iterations (atol={atol:g})"
        )
    return result.x.numpy(), int(result.iterations[0]), relative
