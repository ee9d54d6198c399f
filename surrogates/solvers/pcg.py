"""Batched preconditioned conjugate gradient in torch (CPU and GPU, float32 and float64).

Solves ``A_i x_i = b_i`` for a batch of right-hand sides with one shared SPD matrix, or for a batch
of SPD matrices sharing one sparsity pattern, with the convergence rule of
``scipy.sparse.linalg.cg``:

    ||b_i - A_i x_i|| <= max(rtol ||b_i||, atol).

The iteration is scipy's (``scipy/sparse/linalg/_isolve/iterative.py::cg``) run on every system
of the batch at once: the same recurrences in the same order, so the iteration counts match scipy's
for the same preconditioner up to round-off. scipy stops on the *recurrence* residual
``r_k = r_{k-1} - alpha A p``; here that is only a candidate test, and a system is declared
converged when the *true* residual ``b - A x`` also meets the rule. If it does not (the recurrence
drifted from the true residual near round-off), the recurrence residual is replaced by the true one
and CG restarts from the current iterate for that system (as ``sparse_cg.solve_spd`` restarts scipy).

Systems that have converged stop updating (their step length is masked to zero); the loop ends
when every system has converged or after ``maxiter`` iterations (``10 n`` by default, like scipy).
Breakdown is reported, never returned as garbage: ``p^T A p <= 0`` means ``A`` is not SPD and
``r^T M^{-1} r <= 0`` means the preconditioner is not, each raising :class:`NotSPDError`.

Scalar bookkeeping (step lengths, masks, convergence tests) runs in numpy on the CPU, where a small
numpy operation costs about a microsecond against several for torch, and in torch on an
accelerator, where the whole iteration then needs one host synchronization. One system on the CPU
takes a dedicated loop with Python-float scalars and scipy's matvec kernel writing into a reused
buffer: per-call overhead is a sizable share of an iteration on ~10^4 unknowns, and this loop
keeps a single solve as fast as ``scipy.sparse.linalg.cg`` (same arithmetic, same kernels). The
reductions and the two kinds of scalar bookkeeping are in :mod:`surrogates.solvers.pcg_scalars`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from surrogates.solvers.pcg_scalars import DeviceScalars, HostScalars, row_norms
from surrogates.solvers.preconditioners.base import IdentityPreconditioner, Preconditioner
from surrogates.solvers.sparse import SparseMatrix, as_sparse_matrix

__all__ = ["NotSPDError", "PCGResult", "pcg"]


class NotSPDError(ValueError):
    """CG broke down: the matrix or the preconditioner is not symmetric positive definite."""


@dataclass
class PCGResult:
    """Outcome of :func:`pcg` for a batch of ``B`` systems of size ``n``.

    Attributes
    ----------
    x
        Solutions, shape ``(n,)`` if ``b`` was 1-D, else ``(B, n)``.
    iterations
        CG iterations of each system, shape ``(B,)``, int64 (0 when the initial guess already met the rule).
    converged
        Whether ``||b - A x|| <= max(rtol ||b||, atol)`` holds for each system, shape ``(B,)``, bool.
    residual_norms
        Residual norms per iteration, shape ``(K + 1, B)`` with ``K`` the iterations of the batch
        (``(1, B)``, the last row only, with ``record_history=False``). Row 0 is the true initial
        residual ``||b - A x0||``; row ``k`` is the norm of CG's *recurrence* residual after ``k``
        iterations, which equals the true one up to round-off (it is replaced by the true residual
        when the two disagree at a convergence check). A converged system keeps its last value.
    true_residual_norms
        ``||b - A x||`` of the returned ``x``, computed explicitly, shape ``(B,)``.
    tolerance
        ``max(rtol ||b||, atol)`` per system, shape ``(B,)``.
    b_norms
        ``||b||`` per system, shape ``(B,)``.
    """

    x: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    residual_norms: torch.Tensor
    true_residual_norms: torch.Tensor
    tolerance: torch.Tensor
    b_norms: torch.Tensor

    @property
    def relative_residuals(self) -> torch.Tensor:
        """``||b - A x|| / ||b||`` per system (0 where ``b = 0``), shape ``(B,)``."""
        safe = torch.where(self.b_norms > 0, self.b_norms, torch.ones_like(self.b_norms))
        return torch.where(self.b_norms > 0, self.true_residual_norms / safe, torch.zeros_like(safe))

    def summary(self) -> dict[str, Any]:
        """JSON-serializable summary: batch size, iteration statistics, convergence, worst residual."""
        it = self.iterations.cpu().numpy()
        return {
            "systems": int(it.size),
            "converged": int(self.converged.sum()),
            "all_converged": bool(self.converged.all()),
            "iterations_min": int(it.min()),
            "iterations_max": int(it.max()),
            "iterations_mean": float(it.mean()),
            "relative_residual_max": float(self.relative_residuals.max()),
        }


def pcg(
    A: Any,
    b: torch.Tensor | np.ndarray,
    preconditioner: Preconditioner | Callable[[torch.Tensor], torch.Tensor] | None = None,
    x0: torch.Tensor | np.ndarray | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    record_history: bool = True,
    workers: int = 1,
    chunk_size: int | None = None,
) -> PCGResult:
    """Solve SPD systems ``A x = b`` for a batch of right-hand sides with preconditioned CG.

    Parameters
    ----------
    A
        One SPD matrix ``(n, n)`` shared by every right-hand side, or a batch of ``B`` SPD matrices with
        one sparsity pattern: a scipy sparse matrix (or a list of them), a torch sparse CSR/COO tensor
        (batched CSR ``(B, n, n)`` allowed), a dense torch tensor, or a :class:`SparseMatrix`. It is
        moved to ``b``'s device and dtype.
    b
        Right-hand sides, shape ``(n,)`` or ``(B, n)``; torch or numpy. Floating dtypes are kept
        (float32, float64); others become float64.
    preconditioner
        A :class:`Preconditioner` (moved with its ``to`` to ``b``'s device and dtype), or any callable
        mapping residuals ``(B, n)`` to ``M^{-1} r`` of the same shape; ``None`` for plain CG. It must
        be SPD and, for a batch of matrices, built for that batch.
    x0
        Initial guesses, shape of ``b``; zero by default.
    rtol, atol
        Converged when ``||b - A x|| <= max(rtol ||b||, atol)`` (per system, 2-norm).
    maxiter
        Iteration limit, ``10 n`` by default (scipy's).
    record_history
        Keep the residual norm of every iteration (``residual_norms``); else only the last.
    workers
        CPU threads solving chunks of the batch concurrently (one shared matrix on the CPU only; ignored
        otherwise). Each thread runs torch single-threaded. ``1``: chunks one after the other.
    chunk_size
        Right-hand sides per chunk (one shared matrix on the CPU only). By default ``ceil(B / workers)``,
        except ``1`` for an elementwise preconditioner (none, Jacobi) on ``n >= 50_000`` unknowns: there
        the single-system loop beats a batch, whose vectors fall out of cache (``docs/solvers.md``).

    Returns
    -------
    PCGResult
        Solutions, iterations, convergence flags and residual norms.

    Raises
    ------
    NotSPDError
        On breakdown: ``p^T A p <= 0`` (``A`` not SPD) or ``r^T M^{-1} r <= 0`` (preconditioner not SPD),
        naming the system and the iteration.
    ValueError
        On non-finite ``b`` or ``x0``, mismatched shapes, tolerances that are negative or not finite
        (NaN included), or a negative ``maxiter``.
    """
    b, squeeze = _as_rhs(b)
    A = as_sparse_matrix(A, b.device, b.dtype)
    B, n = _check_shapes(A, b)
    _check_tolerances(rtol, atol, maxiter)
    if workers < 1 or (chunk_size is not None and chunk_size < 1):
        raise ValueError(f"workers and chunk_size must be positive, got workers={workers}, chunk_size={chunk_size}")
    if B > 1 and b.device.type == "cpu" and not A.is_batched:
        size = chunk_size or _default_chunk_size(n, B, preconditioner, workers)
        if workers > 1 or size < B:
            x0_t = None if x0 is None else _as_initial_guess(x0, b)
            return _solve_in_chunks(A, b, preconditioner, x0_t, rtol, atol, maxiter, record_history, workers, size)
    maxiter = 10 * n if maxiter is None else int(maxiter)
    apply_m = _as_apply(preconditioner, b.device, b.dtype)
    ops = HostScalars() if b.device.type == "cpu" else DeviceScalars(b.device)

    # work vectors in the layout the matrix multiplies fastest (elementwise ops keep it)
    bl = A.empty_vectors(B).copy_(b)
    # Each system is solved for b scaled by a power of two that brings max|b| into [0.5, 1): exact, and CG's
    # iterates are then exactly the unscaled ones times the scale, but squared norms can no longer overflow
    # (|b| ~ 1e20 in float32 reported 'converged' at x = 0) or sink into subnormals (|b| ~ 1e-22 stopped at a
    # relative residual of 0.09). x, the norms and the tolerance are scaled back on return.
    scale = _power_of_two_scales(bl)
    bl.mul_(scale[:, None])
    x = A.empty_vectors(B)
    b_norm = ops.from_torch(row_norms(bl))
    zero_rhs = b_norm == 0
    if x0 is None:
        x.zero_()
        r = bl.clone()
    else:
        x.copy_(_as_initial_guess(x0, b)).mul_(scale[:, None])
        # like scipy, b = 0 returns x = 0 whatever x0 was (the exact solution, 0 iterations)
        x[torch.as_tensor(ops.to_index(zero_rhs), device=b.device)] = 0
        r = bl - A.matvec(x)
    tol = ops.maximum(rtol * b_norm, atol * ops.from_torch(scale))

    r_norm = ops.from_torch(row_norms(r))
    converged = (r_norm <= tol) | zero_rhs  # r is the true residual here
    if B == 1 and b.device.type == "cpu":
        iterations, converged, history = _iterate_one_host(A, bl, x, r, apply_m, float(tol[0]), bool(converged[0]), maxiter, record_history)
    else:
        iterations, converged, history = _iterate_batch(A, bl, x, r, apply_m, tol, r_norm, converged, maxiter, record_history, ops)

    true_norms = row_norms(bl - A.matvec(x)) / scale
    x_out = x.div_(scale[:, None]).contiguous()
    return PCGResult(
        x=x_out[0] if squeeze else x_out,
        iterations=ops.to_torch(iterations, b.device).to(torch.int64),
        converged=ops.to_torch(converged, b.device),
        residual_norms=ops.stack(history) / scale,
        true_residual_norms=true_norms,
        tolerance=ops.to_torch(tol, b.device) / scale,
        b_norms=ops.to_torch(b_norm, b.device) / scale,
    )


def _power_of_two_scales(b: torch.Tensor) -> torch.Tensor:
    """Per system, the power of two ``2**-e`` with ``max|b_i| * 2**-e`` in ``[0.5, 1)`` (1 for ``b_i = 0``), shape
    ``(B,)``; ``e`` is clipped so that the scale and its inverse stay finite in ``b``'s dtype."""
    _, exponent = torch.frexp(b.abs().amax(dim=1))
    limit = math.frexp(torch.finfo(b.dtype).max)[1] - 1  # 127 for float32: 2**127 is the largest power of two
    return torch.ldexp(torch.ones_like(exponent, dtype=b.dtype), -exponent.clamp(-limit, limit))


# -- chunks of the batch, optionally in threads (CPU) -------------------------------------------------------


_LARGE_SYSTEM = 50_000
"""Unknowns from which the CPU solves an elementwise-preconditioned batch system by system.

Measured on a 2-core CPU, 5-point Poisson, batch of 32, no preconditioner: the batch was 1.4x faster
than the single-system loop at 128^2 (16k unknowns), even at 256^2 (65k) and 2x slower at 512^2 (260k).
"""


def _default_chunk_size(n: int, B: int, preconditioner, workers: int) -> int:
    elementwise = preconditioner is None or getattr(preconditioner, "elementwise", False)
    if elementwise and n >= _LARGE_SYSTEM:
        return 1
    return -(-B // workers)


def _solve_in_chunks(A, b, preconditioner, x0, rtol, atol, maxiter, record_history, workers: int, size: int) -> PCGResult:
    """:func:`pcg` on contiguous chunks of ``size`` right-hand sides, ``workers`` chunks at a time.

    With ``workers > 1`` the chunks run in threads: the sparse products, vector updates and reductions all release the GIL, so the threads run in
    parallel; each runs torch with one thread, as the chunks already occupy the cores.
    """
    B = b.shape[0]
    starts = range(0, B, size)
    apply_m = _as_apply(preconditioner, b.device, b.dtype)  # moves a Preconditioner once, before the threads
    A.numpy_kernel()  # build the matrix's cached views once, not in every thread

    def solve(start: int) -> PCGResult:
        chunk = slice(start, start + size)
        guess = None if x0 is None else x0[chunk]
        return pcg(A, b[chunk], apply_m, guess, rtol, atol, maxiter, record_history, chunk_size=size)

    def solve_in_thread(start: int) -> PCGResult:
        torch.set_num_threads(1)  # per thread (OpenMP): the calling thread keeps its own setting
        return solve(start)

    if workers == 1:
        return _concatenate([solve(start) for start in starts])
    # numpy's dot products call BLAS, whose own thread pool would oversubscribe the cores
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
        parts = list(pool.map(solve_in_thread, starts))
    return _concatenate(parts)


def _concatenate(parts: list[PCGResult]) -> PCGResult:
    """One :class:`PCGResult` from chunk results; shorter histories repeat their last row."""
    rows = max(p.residual_norms.shape[0] for p in parts)
    histories = [torch.cat([p.residual_norms, p.residual_norms[-1:].expand(rows - p.residual_norms.shape[0], -1)]) for p in parts]
    return PCGResult(
        x=torch.cat([p.x for p in parts]),
        iterations=torch.cat([p.iterations for p in parts]),
        converged=torch.cat([p.converged for p in parts]),
        residual_norms=torch.cat(histories, dim=1),
        true_residual_norms=torch.cat([p.true_residual_norms for p in parts]),
        tolerance=torch.cat([p.tolerance for p in parts]),
        b_norms=torch.cat([p.b_norms for p in parts]),
    )


# -- the iteration -------------------------------------------------------------------------------


def _iterate_batch(A, b, x, r, apply_m, tol, r_norm, converged, maxiter: int, record_history: bool, ops):
    """CG on every system of the batch at once, updating ``x`` and ``r`` in place.

    Per-system scalars live in ``ops`` (numpy on the CPU, torch on an accelerator). Converged systems
    get a zero step length, so their ``x`` and ``r`` stay put. Returns ``iterations, converged, history``.
    """
    B = b.shape[0]
    active = ~converged
    iterations = ops.zeros_int(B)
    restart = ops.ones_bool(B)  # per system: the next direction is p = z (first step or after a restart)
    rho_prev = ops.ones(B, r_norm)
    p = torch.zeros_like(r)
    history = [r_norm]
    any_active = bool(active.any())
    # with M = I, z = r and r^T z is the ||r||^2 computed for the stopping test: skip one reduction
    identity = apply_m is None
    rr = r_norm * r_norm
    k = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        while any_active and k < maxiter:
            k += 1
            if identity:
                z, rho = r, rr
            else:
                z = apply_m(r)
                rho = ops.dots(r, z)
            beta = ops.where(active & ~restart, rho / rho_prev, 0.0)
            torch.addcmul(z, p, ops.column(beta), out=p)  # p = z + beta p, in p's layout
            q = A.matvec(p)
            pq = ops.dots(p, q)
            alpha = ops.column(ops.where(active, rho / pq, 0.0))
            x.addcmul_(p, alpha)
            r.addcmul_(q, alpha, value=-1.0)
            rho_prev = ops.where(active, rho, rho_prev)
            restart = restart & ~active
            iterations = iterations + active
            rr = ops.dots(r, r)
            r_norm = ops.sqrt(rr)

            candidates = active & (r_norm <= tol)
            # one test (one host sync on a GPU) covers both breakdowns and convergence candidates;
            # "not > 0" also catches NaN
            flags = ops.any_flags(active & ~(rho > 0), active & ~(pq > 0), candidates)
            if flags[0]:
                i = int(ops.to_index(active & ~(rho > 0))[0])
                raise _breakdown(i, k, _RHO, float(rho[i]))
            if flags[1]:
                i = int(ops.to_index(active & ~(pq > 0))[0])
                raise _breakdown(i, k, _PAP, float(pq[i]))
            if flags[2]:
                converged, active, restart, r_norm = _confirm(A, b, x, r, tol, candidates, converged, active, restart, r_norm, ops)
                rr = r_norm * r_norm
                any_active = bool(active.any())
            if record_history:
                history.append(r_norm)
    return iterations, converged, history if record_history else [r_norm]


def _iterate_one_host(A, b, x, r, apply_m, tol: float, converged: bool, maxiter: int, record_history: bool):
    """:func:`_iterate_batch` for one system on the CPU, with Python floats for the scalars.

    The same recurrences; the dot products run in numpy on views of the torch tensors. For ~10^4
    unknowns an iteration takes ~100 us, of which torch's per-call overhead (several us a call)
    would otherwise be a sizable share. Returns ``iterations (1,), converged (1,), history``.
    """
    rn = _flat(r)
    p, q = torch.zeros_like(r), torch.zeros_like(r)
    pn, qn = _flat(p), _flat(q)
    kernel = A.numpy_kernel()
    rr = float(np.dot(rn, rn))
    r_norm = math.sqrt(rr)
    history = [r_norm]
    restart, rho_prev, k = True, 1.0, 0
    while not converged and k < maxiter:
        k += 1
        zn = rn if apply_m is None else _flat(apply_m(r))
        rho = rr if apply_m is None else float(np.dot(rn, zn))
        if not rho > 0:
            raise _breakdown(0, k, _RHO, rho)
        if restart:
            np.copyto(pn, zn)
            restart = False
        else:
            pn *= rho / rho_prev
            pn += zn
        if kernel is not None:
            kernel(pn, qn)
        else:
            q.copy_(A.matvec(p))
        pq = float(np.dot(pn, qn))
        if not pq > 0:
            raise _breakdown(0, k, _PAP, pq)
        alpha = rho / pq
        x.add_(p, alpha=alpha)  # one fused pass each, no temporary
        r.add_(q, alpha=-alpha)
        rho_prev = rho
        rr = float(np.dot(rn, rn))
        r_norm = math.sqrt(rr)
        if r_norm <= tol:
            true_r = b - A.matvec(x)
            true_norm = float(np.linalg.norm(_flat(true_r)))
            if true_norm <= tol:
                converged = True
            else:  # the recurrence drifted: continue from the true residual with a fresh direction
                r.copy_(true_r)
                restart, r_norm, rr = True, true_norm, true_norm * true_norm
        if record_history:
            history.append(r_norm)
    if not record_history:
        history = [r_norm]
    return np.array([k]), np.array([converged]), np.array(history)[:, None]


def _flat(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a ``(1, n)`` CPU tensor as ``(n,)``."""
    return t.detach().numpy().reshape(-1)


_RHO = "the preconditioner is not symmetric positive definite: r^T M^-1 r"
_PAP = "the matrix A is not symmetric positive definite: p^T A p"


def _breakdown(system: int, iteration: int, what: str, value: float) -> NotSPDError:
    return NotSPDError(f"CG breakdown in system {system} at iteration {iteration}: {what} = {value:.3e} is not positive")


# -- convergence check -----------------------------------------------------------------------------


def _confirm(A, b, x, r, tol, candidates, converged, active, restart, r_norm, ops):
    """Test the true residual of the candidate systems; restart those whose recurrence residual drifted.

    Returns the updated ``converged, active, restart, r_norm``.
    """
    idx = ops.to_index(candidates)
    idx_t = torch.as_tensor(idx, device=x.device)
    true_r = b[idx_t] - A.select(idx_t).matvec(x[idx_t])
    true_norm = ops.from_torch(row_norms(true_r))
    ok = true_norm <= ops.take(tol, idx)
    converged, active = ops.copy(converged), ops.copy(active)
    converged[idx[ok]] = True
    active[idx[ok]] = False
    if not bool(ok.all()):
        drift = idx[~ok]
        r[torch.as_tensor(drift, device=x.device)] = true_r[torch.as_tensor(~ok, device=x.device)]
        restart = ops.copy(restart)
        restart[drift] = True
        r_norm = ops.copy(r_norm)
        r_norm[drift] = true_norm[~ok]
    return converged, active, restart, r_norm


# -- input handling ----------------------------------------------------------------------------


def _as_rhs(b: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """``b`` as a floating ``(B, n)`` tensor, and whether it was 1-D."""
    if isinstance(b, np.ndarray):
        b = torch.from_numpy(b)
    b = torch.as_tensor(b)
    if not b.is_floating_point() or b.dtype in (torch.float16, torch.bfloat16):
        b = b.to(torch.float64)
    if b.ndim not in (1, 2):
        raise ValueError(f"b must have shape (n,) or (B, n), got {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("b contains NaN or infinite values")
    return (b[None], True) if b.ndim == 1 else (b, False)


def _as_initial_guess(x0: torch.Tensor | np.ndarray, b: torch.Tensor) -> torch.Tensor:
    x0 = torch.as_tensor(x0).to(device=b.device, dtype=b.dtype)
    if x0.ndim == 1:
        x0 = x0[None]
    if x0.shape != b.shape:
        raise ValueError(f"x0 must have the shape of b {tuple(b.shape)}, got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 contains NaN or infinite values")
    return x0


def _check_tolerances(rtol: float, atol: float, maxiter: int | None) -> None:
    """Refuse tolerances the stopping rule cannot use.

    ``rtol < 0`` is False for NaN, so a NaN tolerance used to pass: no residual compares ``<=`` to it,
    and CG ran on past round-off until ``maxiter`` or until the residual underflowed to zero, which
    was then reported as a preconditioner that is not SPD.
    """
    if not (math.isfinite(rtol) and math.isfinite(atol) and rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be finite and non-negative, got rtol={rtol}, atol={atol}")
    if maxiter is not None and maxiter < 0:
        raise ValueError(f"maxiter must be non-negative, got {maxiter}")


def _check_shapes(A: SparseMatrix, b: torch.Tensor) -> tuple[int, int]:
    B, n = b.shape
    if A.n != n:
        raise ValueError(f"A is {A.n} x {A.n} but b has {n} entries per system")
    if A.is_batched and A.batch_size != B:
        raise ValueError(f"A is a batch of {A.batch_size} matrices but b has {B} right-hand sides")
    return B, n


def _as_apply(preconditioner, device: torch.device, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The function ``r -> M^{-1} r``; ``None`` for the identity."""
    if preconditioner is None or isinstance(preconditioner, IdentityPreconditioner):
        return None
    if isinstance(preconditioner, Preconditioner):
        preconditioner.to(device, dtype)
        return preconditioner.apply
    if callable(preconditioner):
        return preconditioner
    raise TypeError(f"preconditioner must be a Preconditioner or a callable, got {type(preconditioner).__name__}")
