"""The deep conjugate direction method (Kaneda et al., ICML 2023), batched over right-hand sides.

Each iteration asks the network for a direction from the current residual, makes it A-conjugate to
the ``keep`` previous directions (the paper keeps two) by Gram-Schmidt in the A inner product, and
takes the exact line-search step along it:

    q = f(r),    q <- q - sum_{j in the last keep} (q^T A p_j / p_j^T A p_j) p_j,
    alpha = q^T r / q^T A q,    x <- x + alpha q,    r <- r - alpha A q.

With ``f = M^{-1}`` linear and SPD, ``keep = 1`` is preconditioned CG's direction recurrence; with a
nonlinear network the conjugacy against the older directions is lost, which is why the paper keeps a
few. Each step minimizes the A-norm error along ``q``, so the error never grows whatever the network
returns (a useless direction only stalls).

Stopping rule and result are :func:`~surrogates.solvers.pcg.pcg`'s: a system is converged when its
true residual meets ``||b - A x|| <= max(rtol ||b||, atol)``; the recurrence residual only nominates
candidates, and a candidate whose true residual misses the rule continues from the true residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from surrogates.solvers.dcdm.grid import DirectionOperator
from surrogates.solvers.dcdm.network import DCDMNet
from surrogates.solvers.pcg import (
    NotSPDError,
    PCGResult,
    _as_initial_guess,
    _as_rhs,
    _check_shapes,
    _check_tolerances,
)
from surrogates.solvers.pcg_scalars import row_dots, row_norms
from surrogates.solvers.sparse import as_sparse_matrix

__all__ = ["DCDMResult", "dcdm"]


@dataclass
class DCDMResult(PCGResult):
    """:class:`~surrogates.solvers.pcg.PCGResult` of :func:`dcdm`, with the search directions if recorded.

    Attributes
    ----------
    directions
        ``(K, B, n)``: the A-orthogonalized direction of every iteration (zero rows for systems that had
        converged), or None unless ``record_directions=True``.
    """

    directions: torch.Tensor | None = None


def dcdm(
    A: Any,
    b: torch.Tensor | np.ndarray,
    network: DCDMNet | Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor | np.ndarray | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    keep: int = 2,
    record_history: bool = True,
    record_directions: bool = False,
) -> DCDMResult:
    """Solve SPD systems ``A x = b`` (one matrix, a batch of right-hand sides) with DCDM.

    Parameters
    ----------
    A
        SPD matrix ``(n, n)``: scipy sparse, torch (sparse or dense) or :class:`~surrogates.solvers.sparse.SparseMatrix`;
        moved to ``b``'s device and dtype. With a :class:`DCDMNet` it must be a 5-point matrix on an
        ``m x m`` grid (``n = m^2``).
    b
        Right-hand sides ``(n,)`` or ``(B, n)``, torch or numpy, float32 or float64.
    network
        A :class:`DCDMNet` (on any device: residuals travel to it), or any callable mapping residuals
        ``(B, n)`` to directions ``(B, n)`` on ``b``'s device (e.g. a preconditioner's ``apply``).
    x0
        Initial guesses, shape of ``b``; zero by default.
    rtol, atol
        Converged when ``||b - A x|| <= max(rtol ||b||, atol)`` per system (as :func:`~surrogates.solvers.pcg.pcg`).
    maxiter
        Iteration limit, ``10 n`` by default (as :func:`~surrogates.solvers.pcg.pcg`).
    keep
        Previous directions each new one is A-orthogonalized against (``>= 1``; the paper's 2).
    record_history
        Keep the residual norm of every iteration, else only the last.
    record_directions
        Return every direction in ``DCDMResult.directions`` (memory ``K B n``; for tests and analysis).

    Returns
    -------
    DCDMResult
        Solutions, iterations, convergence flags, residual norms (the fields of ``PCGResult``).

    Raises
    ------
    NotSPDError
        When a direction has ``q^T A q <= 0`` after orthogonalization: ``A`` is not SPD, or the network
        returned a direction in the span of the previous ones (e.g. zero).
    ValueError
        On non-finite ``b`` or ``x0``, mismatched shapes, a batch of matrices, tolerances that are negative or
        not finite, a negative ``maxiter`` or ``keep < 1``.
    """
    b, squeeze = _as_rhs(b)
    S = as_sparse_matrix(A, b.device, b.dtype)
    B, n = _check_shapes(S, b)
    if S.is_batched:
        raise ValueError("DCDM solves with one matrix shared by the right-hand sides, got a batch of matrices")
    _check_tolerances(rtol, atol, maxiter)
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    direction = DirectionOperator(network, S) if isinstance(network, DCDMNet) else network
    if not callable(direction):
        raise TypeError(f"network must be a DCDMNet or a callable, got {type(network).__name__}")
    maxiter = 10 * n if maxiter is None else int(maxiter)

    b = b.contiguous()
    x = torch.zeros_like(b) if x0 is None else _as_initial_guess(x0, b).clone()
    b_norm = row_norms(b)
    x[b_norm == 0] = 0  # like pcg (and scipy): b = 0 returns x = 0
    r = b - S.matvec(x)
    tol = torch.clamp_min(rtol * b_norm, atol)
    r_norm = row_norms(r)
    converged = (r_norm <= tol) | (b_norm == 0)
    iterations = torch.zeros(B, dtype=torch.int64, device=b.device)
    previous: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (p, A p, p^T A p) per kept direction
    history, directions = [r_norm], []
    k = 0
    while k < maxiter and not bool(converged.all()):
        k += 1
        active = ~converged
        q = torch.zeros_like(r)
        q[active] = direction(r[active]).to(r.dtype)
        for p, Ap, pAp in previous:  # classical Gram-Schmidt in the A inner product, as the paper
            q -= (row_dots(q, Ap) / torch.where(pAp > 0, pAp, torch.ones_like(pAp)))[:, None] * p
        Aq = S.matvec(q)
        qAq = row_dots(q, Aq)
        bad = active & ~(qAq > 0)  # "not > 0" also catches NaN
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise NotSPDError(
                f"DCDM breakdown in system {i} at iteration {k}: q^T A q = {float(qAq[i]):.3e} is not positive "
                "(A is not SPD, or the network's direction lies in the span of the previous ones)"
            )
        alpha = torch.where(active, row_dots(q, r) / torch.where(active, qAq, torch.ones_like(qAq)), torch.zeros_like(qAq))
        x += alpha[:, None] * q
        r -= alpha[:, None] * Aq
        previous = (previous + [(q, Aq, torch.where(active, qAq, torch.zeros_like(qAq)))])[-keep:]
        iterations += active
        r_norm = torch.where(active, row_norms(r), r_norm)
        candidates = active & (r_norm <= tol)
        if bool(candidates.any()):  # the true residual decides, as in pcg
            true_r = b[candidates] - S.matvec(x[candidates])
            true_norm = row_norms(true_r)
            ok = true_norm <= tol[candidates]
            idx = candidates.nonzero().squeeze(1)
            converged = converged.clone()
            converged[idx[ok]] = True
            r[idx] = true_r  # drifted systems continue from the true residual
            r_norm = r_norm.clone()
            r_norm[idx] = true_norm
        if record_history:
            history.append(r_norm)
        if record_directions:
            directions.append(q)

    true_norms = row_norms(b - S.matvec(x))
    return DCDMResult(
        x=x[0] if squeeze else x,
        iterations=iterations,
        converged=converged,
        residual_norms=torch.stack(history if record_history else [r_norm]),
        true_residual_norms=true_norms,
        tolerance=tol,
        b_norms=b_norm,
        directions=torch.stack(directions) if record_directions and directions else None,
    )
