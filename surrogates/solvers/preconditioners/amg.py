"""Smoothed-aggregation algebraic multigrid as a batched torch preconditioner.

The hierarchy (aggregates, prolongations ``P_l``, Galerkin operators ``A_{l+1} = P_l^T A_l P_l``) is
built once with :func:`pyamg.smoothed_aggregation_solver` on the scipy matrix. The cycle itself runs in
torch: every level keeps ``A_l``, ``P_l`` and ``R_l = P_l^T`` as sparse CSR tensors, the smoothers
are polynomials in ``D_l^{-1} A_l`` (damped Jacobi or Chebyshev) and the coarsest level is solved
with a dense Cholesky factorization. A batch of residuals ``(B, n)`` is carried as one ``(n, B)``
block, so every level costs one sparse-times-dense product per matrix, whatever ``B`` is.

Why polynomial smoothers: a smoother ``x <- x + q(D^{-1} A) D^{-1} (b - A x)`` has the symmetric
approximate inverse ``q(D^{-1} A) D^{-1}``, so using the same smoother before and after the coarse
correction is its own adjoint and the cycle ``M^{-1}`` is symmetric; it is positive definite when the
smoother is convergent (``|1 - lambda q(lambda)| < 1`` on the spectrum of ``D^{-1} A``). Gauss-Seidel
would be as good per sweep but is sequential, which is slow in torch and on GPUs.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from surrogates.solvers.preconditioners.base import Preconditioner
from surrogates.solvers.sparse import csr_from_scipy, move_csr

SMOOTHERS = ("jacobi", "chebyshev")
CYCLES = ("V", "W")

# Deterministic prolongation smoothing: "local" weighting bounds the spectral radius by Gershgorin
# instead of pyamg's default estimate, which starts from numpy's global random generator.
DETERMINISTIC_SMOOTH = ("jacobi", {"omega": 4.0 / 3.0, "weighting": "local"})

# Default smoother options; "upper"/"lower" scale the estimated largest eigenvalue of D^{-1} A.
SMOOTHER_DEFAULTS: dict[str, dict[str, float]] = {
    "jacobi": {"omega": 4.0 / 3.0, "iterations": 1},
    "chebyshev": {"degree": 2, "lower": 1.0 / 30.0, "upper": 1.1},
}


@dataclass
class _Smoother:
    """A polynomial smoother in ``D^{-1} A``; ``kind`` is ``"jacobi"`` or ``"chebyshev"``.

    ``jacobi``: ``steps`` sweeps ``x <- x + (omega / lam_max) D^{-1} (b - A x)``; ``omega = 4/3`` damps
    the upper half ``[lam_max / 2, lam_max]`` of the spectrum best (factor 1/3; for the 5-point
    Laplacian, ``lam_max ~ 2``, this is the classical weighted Jacobi with weight 2/3).
    ``chebyshev``: the degree-``steps`` Chebyshev iteration on ``[low, high]``.
    """

    kind: str
    steps: int
    low: float
    high: float


def _parse_smoother(config: str | tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Normalize ``"kind"`` or ``("kind", {options})`` to ``(kind, options with defaults filled)``."""
    kind, options = (config, {}) if isinstance(config, str) else (config[0], dict(config[1]))
    if kind not in SMOOTHERS:
        raise ValueError(f"smoother must be one of {SMOOTHERS}, got {kind!r}")
    unknown = set(options) - set(SMOOTHER_DEFAULTS[kind])
    if unknown:
        raise ValueError(f"unknown options for the {kind} smoother: {sorted(unknown)}")
    return kind, {**SMOOTHER_DEFAULTS[kind], **options}


def estimate_lambda_max(A: sp.csr_matrix, inverse_diagonal: np.ndarray, steps: int = 30) -> float:
    """Largest eigenvalue of ``D^{-1} A`` (``A`` SPD), by Lanczos on ``D^{-1/2} A D^{-1/2}``.

    The largest Ritz value converges quickly from below; the result is capped by the Gershgorin bound
    (max absolute row sum of ``D^{-1} A``), which is always an upper bound. Deterministic: the start
    vector is fixed and numpy's global random state is left alone.

    Parameters
    ----------
    A
        SPD matrix, shape ``(n, n)``.
    inverse_diagonal
        ``1 / diag(A)``, shape ``(n,)``.
    steps
        Lanczos steps (at most ``n``).

    Returns
    -------
    float
        Estimate of ``lambda_max(D^{-1} A)``.
    """
    n = A.shape[0]
    gershgorin = float(np.max(np.asarray(abs(A).sum(axis=1)).ravel() * inverse_diagonal))
    scale = np.sqrt(inverse_diagonal)
    steps = min(steps, n)
    # a fixed, non-smooth start vector has components along every eigenvector in practice
    v = np.random.default_rng(0).standard_normal(n)
    v /= math.sqrt(_dot(v, v))
    v_prev, beta = np.zeros(n), 0.0
    alphas, betas = [], []
    for _ in range(steps):
        w = scale * (A @ (scale * v)) - beta * v_prev
        alpha = _dot(v, w)
        w -= alpha * v
        alphas.append(alpha)
        beta = math.sqrt(_dot(w, w))
        if beta < 1e-12 * max(abs(alpha), 1.0):  # invariant subspace found: the Ritz values are exact
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    k = len(alphas)
    tridiagonal = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    ritz_max = float(np.linalg.eigvalsh(tridiagonal)[-1])
    return min(ritz_max, gershgorin)


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """``u . v`` without BLAS: a threaded ``ddot`` on a busy machine can cost milliseconds per call."""
    return float(np.einsum("i,i->", u, v))


def _make_smoother(kind: str, options: dict[str, Any], lam_max: float) -> _Smoother:
    """Turn parsed options and ``lambda_max(D^{-1} A)`` into the smoother's parameters."""
    if kind == "jacobi":
        omega = float(options["omega"])
        if not 0.0 < omega < 2.0:
            raise ValueError(f"jacobi omega must lie in (0, 2) to converge, got {omega}")
        return _Smoother("jacobi", int(options["iterations"]), omega / lam_max, omega / lam_max)
    high = float(options["upper"]) * lam_max
    # the safety factor on the top end matters: the Chebyshev polynomial grows fast beyond ``high``,
    # and a divergent smoother would make the cycle indefinite
    return _Smoother("chebyshev", int(options["degree"]), float(options["lower"]) * high, high)


@dataclass
class _Level:
    """One level's torch tensors: operator ``A``, ``1 / diag(A)``, prolongation ``P``, restriction ``R``."""

    A: torch.Tensor
    inverse_diagonal: torch.Tensor  # (n, 1), broadcasts over the batch columns
    P: torch.Tensor | None
    R: torch.Tensor | None
    pre: _Smoother
    post: _Smoother
    # work arrays (n, B) reused from one application to the next, by thread and role; see :meth:`buffer`
    buffers: threading.local = field(default_factory=threading.local)

    def buffer(self, role: str, like: torch.Tensor) -> torch.Tensor:
        """An uninitialized ``(n, B)`` work array for ``role``, kept for later calls with the same batch size.

        Reuse matters on the CPU: every fresh multi-megabyte tensor is new memory from the system,
        and its page faults cost as much as the arithmetic done in it. Buffers belong to the calling
        thread, so that threads solving different chunks of a batch (``pcg(workers=...)``) never share one.
        """
        shape = (self.A.shape[0], like.shape[1])
        store = vars(self.buffers)  # this thread's dictionary
        out = store.get(role)
        if out is None or out.shape != shape or out.dtype != like.dtype or out.device != like.device:
            out = store[role] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return out


def _canonical_device(device: torch.device | str) -> torch.device:
    """``"cuda"`` -> ``cuda:<current>``, so that devices compare equal to a tensor's ``.device``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class AMGPreconditioner(Preconditioner):
    """One smoothed-aggregation multigrid cycle as ``M^{-1}``, applied in torch to a batch of residuals.

    Parameters
    ----------
    A
        SPD matrix, shape ``(n, n)`` (scipy sparse; converted to CSR).
    max_levels
        Most levels in the hierarchy (pyamg's ``max_levels``).
    max_coarse
        Coarsening stops once a level has at most this many unknowns (pyamg's ``max_coarse``); the
        coarsest level is solved with a dense Cholesky factor, so it should stay small (hundreds).
    presmoother, postsmoother
        ``"jacobi"``, ``"chebyshev"`` or ``(kind, options)``: jacobi ``{"omega": 4/3, "iterations": 1}``
        (step ``omega / lambda_max(D^{-1} A)``), chebyshev ``{"degree": 2, "lower": 1/30, "upper": 1.1}``
        (interval ``[lower, 1] * upper * lambda_max``). ``postsmoother=None`` uses the presmoother,
        which is its own adjoint and keeps ``M^{-1}`` symmetric; a different postsmoother breaks the
        symmetry that CG relies on.
    cycle
        ``"V"`` (one coarse correction per level) or ``"W"`` (two).
    device, dtype
        Where and in which precision the cycle runs (see :meth:`to`).
    pyamg_options
        Extra keyword arguments for :func:`pyamg.smoothed_aggregation_solver`; the default
        ``smooth`` is the deterministic ``("jacobi", {"omega": 4/3, "weighting": "local"})``.

    Attributes
    ----------
    levels : list
        Per level: torch CSR ``A``, ``P`` (``(n_l, n_{l+1})``), ``R = P^T`` and the smoothers.
    shapes : list of int
        Unknowns per level, finest first.
    symmetric : bool
        Whether pre- and postsmoother agree, so that ``M^{-1}`` is symmetric.

    Notes
    -----
    Measured with the defaults (PCG, rtol 1e-8, random right-hand side): 14-16 iterations for the
    5-point Poisson and Darcy (3/12) operators from 64^2 to 1024^2 nodes; :meth:`apply` reuses work
    arrays between calls, so one instance must not be applied from several threads at once.
    """

    name = "amg"

    def __init__(
        self,
        A: sp.spmatrix,
        max_levels: int = 10,
        max_coarse: int = 300,
        presmoother: str | tuple[str, dict[str, Any]] = "chebyshev",
        postsmoother: str | tuple[str, dict[str, Any]] | None = None,
        cycle: str = "V",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        **pyamg_options: Any,
    ):
        import pyamg  # only this preconditioner needs it

        if cycle not in CYCLES:
            raise ValueError(f"cycle must be one of {CYCLES}, got {cycle!r}")
        A = sp.csr_matrix(A, dtype=np.float64)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square, got {A.shape}")
        pre_kind, pre_options = _parse_smoother(presmoother)
        post_kind, post_options = _parse_smoother(presmoother if postsmoother is None else postsmoother)
        self.cycle = cycle
        self.symmetric = (pre_kind, pre_options) == (post_kind, post_options)
        pyamg_options.setdefault("smooth", DETERMINISTIC_SMOOTH)
        hierarchy = pyamg.smoothed_aggregation_solver(
            A, max_levels=max_levels, max_coarse=max_coarse, **pyamg_options
        )
        self.shapes = [level.A.shape[0] for level in hierarchy.levels]
        # float64 CPU master copies: to() derives every device/dtype from them, so a round trip
        # through float32 loses nothing (and the default float64 CPU case shares their memory)
        self._host_levels: list[_Level] = []
        for i, level in enumerate(hierarchy.levels):
            A_l = sp.csr_matrix(level.A)
            inverse_diagonal = 1.0 / A_l.diagonal()
            is_coarsest = i == len(hierarchy.levels) - 1
            lam = 1.0 if is_coarsest else estimate_lambda_max(A_l, inverse_diagonal)
            P = None if is_coarsest else sp.csr_matrix(level.P)
            self._host_levels.append(
                _Level(
                    A=csr_from_scipy(A_l),
                    inverse_diagonal=torch.from_numpy(inverse_diagonal[:, None]),
                    # R = P^T stored explicitly: products with a transposed CSR view are slower
                    P=None if P is None else csr_from_scipy(P),
                    R=None if P is None else csr_from_scipy(P.T),
                    pre=_make_smoother(pre_kind, pre_options, lam),
                    post=_make_smoother(post_kind, post_options, lam),
                )
            )
        # the coarsest level is small: factor it densely once, in float64 for a clean factor
        coarse = sp.csr_matrix(hierarchy.levels[-1].A).toarray()
        self._host_coarse_factor, info = torch.linalg.cholesky_ex(torch.from_numpy(coarse))
        if info.item() != 0:
            raise ValueError("the coarsest Galerkin operator is not positive definite: A must be SPD")
        self.levels: list[_Level] = []
        self.coarse_factor = self._host_coarse_factor
        self.device, self.dtype = torch.device("cpu"), torch.float64
        self.to(device, dtype)

    # -- moving -------------------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "AMGPreconditioner":
        """Put every level's tensors on ``device`` in ``dtype`` (``None`` keeps the current one); returns ``self``."""
        device = self.device if device is None else _canonical_device(device)
        dtype = self.dtype if dtype is None else dtype
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        if self.levels and (device, dtype) == (self.device, self.dtype):
            return self  # a solver calls to() on every solve: keep the tensors and work arrays
        self.levels = [
            replace(
                level,
                A=move_csr(level.A, device, dtype),
                inverse_diagonal=level.inverse_diagonal.to(device=device, dtype=dtype),
                P=None if level.P is None else move_csr(level.P, device, dtype),
                R=None if level.R is None else move_csr(level.R, device, dtype),
                buffers=threading.local(),
            )
            for level in self._host_levels
        ]
        self.coarse_factor = self._host_coarse_factor.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self

    # -- applying -----------------------------------------------------------------------------------
    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """One multigrid cycle from a zero initial guess: ``z = M^{-1} r``.

        Parameters
        ----------
        r
            Residuals, shape ``(B, n)``, on the preconditioner's device and dtype.

        Returns
        -------
        torch.Tensor
            ``M^{-1} r``, shape ``(B, n)``, contiguous.
        """
        if r.ndim != 2 or r.shape[1] != self.shapes[0]:
            raise ValueError(f"r must have shape (B, {self.shapes[0]}), got {tuple(r.shape)}")
        # (n, B) columns: each sparse product then handles the whole batch at once
        b = self.levels[0].buffer("b", r.T).copy_(r.T)
        z = self._cycle(0, b)
        # a copy: z may be a work array that the next call overwrites
        return z.T.clone(memory_format=torch.contiguous_format)

    def _cycle(self, index: int, b: torch.Tensor) -> torch.Tensor:
        """Solve ``A_index x = b`` approximately from ``x = 0``.

        ``b`` has shape ``(n_index, B)`` and is not modified; the result may be this level's work
        array ``"x"``, valid until the next cycle on this level.
        """
        if index == len(self.levels) - 1:
            return torch.cholesky_solve(b, self.coarse_factor)
        level, below = self.levels[index], self.levels[index + 1]
        x = _smooth(level, level.pre, b, None)
        coarse_rhs = below.buffer("b", b).addmm_(level.R, _residual(level, b, x), beta=0.0)
        coarse = self._cycle(index + 1, coarse_rhs)
        if self.cycle == "W" and index + 1 < len(self.levels) - 1:
            # second pass on the coarse problem, started from the first pass's result (copied: the
            # second pass reuses the coarse level's work arrays)
            coarse = coarse.clone()
            coarse.add_(self._cycle(index + 1, _residual(below, coarse_rhs, coarse, role="w_rhs")))
        x.addmm_(level.P, coarse)
        return _smooth(level, level.post, b, x)


# Sparse products go through in-place ``addmm_`` into work arrays: on the CPU, torch's ``csr @ dense``
# allocates, zero-fills and copies its result, and was ~8x slower for (n, 32) blocks. Element-wise
# updates are in place for the same reason.
def _residual(level: _Level, b: torch.Tensor, x: torch.Tensor, role: str = "residual") -> torch.Tensor:
    """``b - A x`` into the level's work array ``role``, shape ``(n, B)``."""
    return level.buffer(role, b).copy_(b).addmm_(level.A, x, alpha=-1.0)


def _smooth(level: _Level, smoother: _Smoother, b: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """Apply ``smoother`` to ``A x = b`` (columns ``(n, B)``), updating ``x`` in place.

    ``x=None`` means a zero start (the first residual is ``b`` itself: one product saved); the
    result is then the level's work array ``"x"``. ``b`` is never modified.
    """
    if smoother.kind == "jacobi":
        for _ in range(smoother.steps):
            if x is None:
                x = torch.mul(b, smoother.low * level.inverse_diagonal, out=level.buffer("x", b))
            else:
                x.addcmul_(_residual(level, b, x), level.inverse_diagonal, value=smoother.low)
        return x
    residual = b if x is None else _residual(level, b, x)
    return _chebyshev(level, smoother, residual, x, owns_residual=x is not None)


def _chebyshev(
    level: _Level, smoother: _Smoother, residual: torch.Tensor, x: torch.Tensor | None, owns_residual: bool
) -> torch.Tensor:
    """Chebyshev iteration (Saad, Iterative Methods, Alg. 12.1) for ``D^{-1} A`` on ``[low, high]``.

    The three-term recurrence is used instead of expanding the polynomial: it is stable for any degree.
    The result is ``x + q(D^{-1} A) D^{-1} residual`` with ``q`` fixed by ``(low, high, degree)``;
    ``residual`` is overwritten only if ``owns_residual`` (else it is copied to the work array first).
    """
    theta = 0.5 * (smoother.high + smoother.low)
    delta = 0.5 * (smoother.high - smoother.low)
    sigma = theta / delta
    rho = 1.0 / sigma
    direction = torch.mul(residual, level.inverse_diagonal / theta, out=level.buffer("direction", residual))
    for step in range(smoother.steps):
        x = level.buffer("x", direction).copy_(direction) if x is None else x.add_(direction)
        if step + 1 == smoother.steps:
            break
        if not owns_residual:
            residual, owns_residual = level.buffer("residual", residual).copy_(residual), True
        residual.addmm_(level.A, direction, alpha=-1.0)
        rho_next = 1.0 / (2.0 * sigma - rho)
        direction.mul_(rho_next * rho).addcmul_(level.inverse_diagonal, residual, value=2.0 * rho_next / delta)
        rho = rho_next
    return x
