"""Differentiable batched nonlinear least squares: Levenberg-Marquardt forward, implicit backward.

Problem
-------
For ``P`` independent problems (a batch of samples times the experts of each sample), find

.. math::

    w^*_p(\\theta) = \\arg\\min_{w \\in R^n} \\phi_p(w, \\theta), \\qquad
    \\phi_p(w, \\theta) = \\tfrac12 \\lVert r_p(w, \\theta) \\rVert^2,

where ``r_p`` is a residual vector of ``m`` entries that depends on problem ``p``'s unknowns
``w_p`` and on tensors ``theta`` (the *parameters*: in a hard-constraint layer, the basis functions
and their derivatives at the sampled points, produced by a network).

A residual function is written for the whole batch, ``residual(w, *params) -> (P, m)`` with
``w`` of shape ``(P, n)`` and every parameter carrying the problem index first; row ``p`` of the
result may only depend on row ``p`` of ``w`` and of each parameter.

Forward: Levenberg-Marquardt (Madsen, Nielsen and Tingleff, "Methods for non-linear least squares
problems", 2004, Algorithm 3.16), in float64, batched over problems:

- step ``(J^T J + mu I) delta = -J^T r`` (Cholesky; LU if the damped matrix is not numerically
  positive definite), with ``J = dr/dw``;
- gain ratio ``rho = (phi(w) - phi(w + delta)) / (0.5 delta^T (mu delta - J^T r))`` (actual over
  predicted decrease; the actual decrease is evaluated as ``0.5 (r - r_new) . (r + r_new)``, which
  stays accurate when it is far below the round-off of ``phi`` itself; a step whose predicted gain
  is below the round-off of the residual evaluation, ``64 eps phi``, is accepted unless ``phi``
  visibly grows, and the problem stops there: it is stationary to round-off);
- ``rho > 0``: accept, ``mu <- mu max(1/3, 1 - (2 rho - 1)^3)``, ``nu <- 2``; otherwise reject,
  ``mu <- mu nu``, ``nu <- 2 nu``;
- initial damping ``mu_0 = tau max_i (J^T J)_ii`` (``tau = damping``, 1e-3 by default);
- a problem stops when ``||J^T r||_inf <= gtol``, when ``||delta|| <= xtol (||w|| + xtol)``, when an
  accepted step lowers ``phi`` by less than ``ftol phi`` or is accepted at round-off (above), or
  after ``max_iter`` (50) iterations.

Problems that have stopped are dropped from the batch, so later iterations only cost what the
problems still running need.

Backward: the implicit function theorem at the optimum. ``w^*`` solves
``F(w, theta) = grad_w phi(w, theta) = J^T r = 0``, hence

.. math::

    \\frac{dw^*}{d\\theta} = -H^{-1} \\frac{\\partial F}{\\partial \\theta}, \\qquad
    H = \\frac{\\partial F}{\\partial w} = J^T J + \\sum_i r_i \\nabla_w^2 r_i .

For an incoming gradient ``g = dL/dw^*`` the layer solves ``H lambda = g`` and returns

.. math::

    \\frac{dL}{d\\theta} = -\\lambda^T \\frac{\\partial F}{\\partial \\theta}
                        = -\\frac{\\partial}{\\partial \\theta}
                           \\Big[ \\lambda^T \\nabla_w \\phi(w, \\theta) \\Big]_{w = w^*}
                        = -\\frac{\\partial}{\\partial \\theta}
                           \\Big[ r(w^*, \\theta)^T J(w^*, \\theta) \\lambda \\Big],

with ``lambda`` and ``w^*`` held fixed (computed by double backward through the residual).
``hessian="exact"`` (default) uses this formula with the full ``H`` (second derivatives by
forward-over-reverse differentiation, or ``J^T J`` plus a closed-form ``sum_i r_i grad^2 r_i`` the
caller passes as ``curvature``). ``hessian="gauss_newton"`` drops the second-order terms
(``sum_i r_i grad^2 r_i``) in both places: ``H ~ J^T J`` and
``dL/dtheta ~ -d/dtheta [r(w^*, theta)^T (J lambda)]`` with ``J lambda`` held fixed; it is exact
when the residual vanishes at the optimum (or is linear in ``w``) and cheaper otherwise. Nothing
is unrolled: the backward costs one ``n x n`` solve per problem plus one double backward through
the residual, whatever the number of Levenberg-Marquardt iterations.

The formula assumes ``w^*`` is a stationary point; a problem stopped by ``max_iter`` gets the
gradient of the stationary point it was approaching. Where the exact ``H`` is not positive definite
(no strict minimum), that problem falls back to the Gauss-Newton backward; non-finite entries of
``lambda`` are zeroed (as the reference implementation zeroes non-finite gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["LeastSquaresSolution", "levenberg_marquardt", "solve_least_squares", "batched_jacobian"]

Residual = Callable[..., torch.Tensor]
Jacobian = Callable[..., torch.Tensor]
HESSIANS = ("exact", "gauss_newton")


@dataclass
class LeastSquaresSolution:
    """Result of :func:`levenberg_marquardt` / :func:`solve_least_squares` for ``P`` problems.

    Attributes
    ----------
    w : torch.Tensor
        Solutions, ``(P, n)`` (differentiable when returned by :func:`solve_least_squares`).
    iterations : torch.Tensor
        Levenberg-Marquardt iterations of each problem, ``(P,)`` int64.
    converged : torch.Tensor
        Whether a tolerance (not ``max_iter``) stopped each problem, ``(P,)`` bool.
    cost : torch.Tensor
        ``0.5 ||r(w)||^2`` at the solution, ``(P,)``.
    gradient_norm : torch.Tensor
        ``||J^T r||_inf`` at the solution, ``(P,)``.
    """

    w: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    cost: torch.Tensor
    gradient_norm: torch.Tensor


def batched_jacobian(residual: Residual, w: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """``dr/dw`` of a batched residual, ``(P, m, n)``, by forward-mode differentiation.

    One Jacobian-vector product per unknown (vectorized with :func:`torch.func.vmap`): the tangent
    ``e_j`` is applied to every problem at once, which gives column ``j`` of every problem's
    Jacobian because problems do not interact.
    """
    n = w.shape[-1]
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    tangents = eye[:, None, :].expand(n, *w.shape)

    def column(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda v: residual(v, *params), (w,), (tangent,))[1]

    return torch.func.vmap(column)(tangents).permute(1, 2, 0)


def _take(params: Sequence[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    return [p.index_select(0, index) for p in params]


def _damped_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = b`` for SPD ``A`` (batched), falling back to least squares where Cholesky fails.

    Systems with non-finite entries get a zero step (the problem then stops on ``xtol``).
    """
    finite = torch.isfinite(A).all(dim=(-2, -1)) & torch.isfinite(b).all(dim=-1)
    A = torch.where(finite[:, None, None], A, torch.eye(A.shape[-1], dtype=A.dtype, device=A.device))
    b = torch.where(finite[:, None], b, torch.zeros_like(b))
    factor, info = torch.linalg.cholesky_ex(A)
    x = torch.cholesky_solve(b.unsqueeze(-1), factor).squeeze(-1)
    bad = info != 0
    if bad.any():
        x[bad] = torch.linalg.lstsq(A[bad], b[bad].unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    return torch.where(finite[:, None], x, torch.zeros_like(x))


@torch.no_grad()
def levenberg_marquardt(
    residual: Residual,
    w0: torch.Tensor,
    params: Sequence[torch.Tensor] = (),
    jacobian: Jacobian | None = None,
    max_iter: int = 50,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
    gtol: float = 1e-10,
    damping: float = 1e-3,
) -> LeastSquaresSolution:
    """Minimize ``0.5 ||residual(w, *params)||^2`` for every problem of a batch (no gradients).

    Parameters
    ----------
    residual
        ``residual(w, *params) -> (P, m)`` for ``w`` of shape ``(P, n)``; row ``p`` depends only on
        row ``p`` of ``w`` and of every parameter.
    w0
        Initial guesses, ``(P, n)``. Computations run in ``w0``'s dtype (use float64).
    params
        Tensors with the problem index first, passed to ``residual`` (and ``jacobian``).
    jacobian
        Optional ``jacobian(w, *params) -> (P, m, n)``; by default :func:`batched_jacobian`.
    max_iter
        Iterations per problem at most (50 as in the reference implementation).
    ftol, xtol, gtol
        Stopping tolerances (module docstring): relative decrease of ``phi``, relative step,
        ``||J^T r||_inf``.
    damping
        ``tau`` of the initial damping ``mu_0 = tau max diag(J^T J)``.

    Returns
    -------
    LeastSquaresSolution
    """
    jac = jacobian or (lambda w, *p: batched_jacobian(residual, w, *p))
    w = w0.detach().clone()
    P, n = w.shape
    dtype, device = w.dtype, w.device
    params = [p.detach() for p in params]
    iterations = torch.zeros(P, dtype=torch.long, device=device)
    converged = torch.zeros(P, dtype=torch.bool, device=device)
    cost = torch.empty(P, dtype=dtype, device=device)
    grad_norm = torch.empty(P, dtype=dtype, device=device)
    eye = torch.eye(n, dtype=dtype, device=device)

    active = torch.arange(P, device=device)  # indices of the problems still running
    p_act = params
    r = residual(w, *p_act)
    J = jac(w, *p_act)
    A = J.transpose(1, 2) @ J
    g = (J.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
    F = 0.5 * (r * r).sum(-1)
    mu = damping * A.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(torch.finfo(dtype).tiny)
    # beyond this the step is below round-off of w anyway; the cap keeps repeated rejections finite
    mu_max = 1e30 * A.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1.0)
    nu = torch.full_like(mu, 2.0)
    wa = w

    for _ in range(max_iter + 1):
        gnorm = g.abs().amax(-1)
        done = gnorm <= gtol
        stop_iter = iterations[active] >= max_iter
        step = torch.zeros_like(wa)
        running = ~(done | stop_iter)
        if running.any():
            step[running] = _damped_solve(A[running] + mu[running, None, None] * eye, -g[running])
        small_step = running & (step.norm(dim=-1) <= xtol * (wa.norm(dim=-1) + xtol))
        done = done | small_step
        running = running & ~small_step
        finished = ~running
        if finished.any():
            idx = active[finished]
            w[idx] = wa[finished]
            converged[idx] = done[finished]
            cost[idx] = F[finished]
            grad_norm[idx] = gnorm[finished]
        if not running.any():
            break
        if finished.any():
            keep = running.nonzero().squeeze(-1)
            active = active[keep]
            p_act = _take(p_act, keep)
            wa, r, J, A, g, F, mu, nu, step, mu_max = (
                t[keep] for t in (wa, r, J, A, g, F, mu, nu, step, mu_max)
            )
        iterations[active] += 1

        w_new = wa + step
        r_new = residual(w_new, *p_act)
        F_new = 0.5 * (r_new * r_new).sum(-1)
        # phi(w) - phi(w + delta) as 0.5 (r - r_new).(r + r_new): no cancellation between two large sums,
        # so steps keep being accepted down to round-off in w rather than round-off in phi
        actual = 0.5 * ((r - r_new) * (r + r_new)).sum(-1)
        predicted = 0.5 * (step * (mu[:, None] * step - g)).sum(-1)
        rho = actual / predicted.clamp_min(torch.finfo(dtype).tiny)
        # below the round-off of the residual evaluation (~eps phi) the sign of the actual decrease is
        # noise; a step predicted to gain less than that is accepted unless it visibly increases phi
        noise = 64.0 * torch.finfo(dtype).eps * F
        at_round_off = (rho <= 0) & (predicted <= noise) & (actual >= -noise)
        accept = ((rho > 0) | at_round_off) & torch.isfinite(F_new)
        small_decrease = accept & ((actual <= ftol * F) | at_round_off)

        factor = torch.clamp(1.0 - (2.0 * rho - 1.0) ** 3, min=1.0 / 3.0)
        mu = torch.where(accept, mu * factor, mu * nu).clamp_max(mu_max)
        nu = torch.where(accept, torch.full_like(nu, 2.0), (2.0 * nu).clamp_max(2.0**30))
        if accept.any():
            wa = torch.where(accept[:, None], w_new, wa)
            r = torch.where(accept[:, None], r_new, r)
            F = torch.where(accept, F_new, F)
            if bool(accept.all()):  # the common case: no gather of the parameters, no copy of J
                J = jac(wa, *p_act)
            else:
                acc = accept.nonzero().squeeze(-1)
                J = J.index_copy(0, acc, jac(wa[acc], *_take(p_act, acc)))  # out of place: J may be a caller's tensor
            A = J.transpose(1, 2) @ J
            g = (J.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        if small_decrease.any():
            # converged on the relative decrease: record and retire these problems
            idx = active[small_decrease]
            w[idx] = wa[small_decrease]
            converged[idx] = True
            cost[idx] = F[small_decrease]
            grad_norm[idx] = g[small_decrease].abs().amax(-1)
            keep = (~small_decrease).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            active = active[keep]
            p_act = _take(p_act, keep)
            wa, r, J, A, g, F, mu, nu, mu_max = (t[keep] for t in (wa, r, J, A, g, F, mu, nu, mu_max))
    return LeastSquaresSolution(w, iterations, converged, cost, grad_norm)


class _ImplicitLeastSquares(torch.autograd.Function):
    """Identity on the solved ``w*`` forward; implicit-function-theorem backward (module docstring)."""

    @staticmethod
    def forward(ctx, residual, jacobian, hessian, curvature, w_star, *params):
        ctx.residual, ctx.jacobian, ctx.hessian, ctx.curvature = residual, jacobian, hessian, curvature
        ctx.save_for_backward(w_star, *params)
        return w_star.clone()

    @staticmethod
    def backward(ctx, grad_w):
        w_star, *params = ctx.saved_tensors
        residual = ctx.residual
        needs = [ctx.needs_input_grad[5 + i] for i in range(len(params))]
        if grad_w is None or not any(needs):
            return (None,) * (5 + len(params))
        grad_w = grad_w.to(w_star.dtype)
        w = w_star.detach()
        detached = [p.detach() for p in params]
        n = w.shape[-1]
        eye = torch.eye(n, dtype=w.dtype, device=w.device)

        # 1. H lambda = dL/dw*
        jac = ctx.jacobian or (lambda v, *p: batched_jacobian(residual, v, *p))
        with torch.no_grad():
            J = jac(w, *detached)
        H_gn = J.transpose(1, 2) @ J
        # A relative ridge of the size of round-off keeps a singular H (e.g. unused unknowns) solvable.
        ridge = (64 * torch.finfo(w.dtype).eps * H_gn.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1.0))[:, None, None] * eye
        H = H_gn
        gauss_newton = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
        if ctx.hessian == "exact":
            if ctx.curvature is not None:
                with torch.no_grad():
                    H_exact = H_gn + ctx.curvature(w, *detached)
            else:
                H_exact = _hessian(residual, w, detached)
            # where the exact Hessian is not positive definite (w* is not a strict minimum, e.g. stopped by
            # max_iter on the way), the Gauss-Newton matrix is used instead
            gauss_newton = torch.linalg.cholesky_ex(H_exact + ridge)[1] != 0
            H = torch.where(gauss_newton[:, None, None], H_gn, H_exact)
        lam = torch.linalg.solve(H + ridge, grad_w.unsqueeze(-1)).squeeze(-1)
        lam = torch.nan_to_num(lam, nan=0.0, posinf=0.0, neginf=0.0).detach()

        # 2. dL/dtheta = -d/dtheta [ r(w*, theta)^T J(w*, theta) lambda ]
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(need) for p, need in zip(params, needs)]
            with torch.no_grad():
                J_lam = (J @ lam.unsqueeze(-1)).squeeze(-1)
            if ctx.hessian == "exact":
                exact = (~gauss_newton).to(w.dtype)[:, None]
                w_var = w.clone().requires_grad_(True)
                r = residual(w_var, *leaves)
                (grad_phi,) = torch.autograd.grad(0.5 * (r * r).sum(), w_var, create_graph=True)
                objective = (grad_phi * lam * exact).sum() + (r * J_lam * (1.0 - exact)).sum()
            else:
                objective = (residual(w, *leaves) * J_lam).sum()
            wanted = [leaf for leaf, need in zip(leaves, needs) if need]
            grads = torch.autograd.grad(-objective, wanted, allow_unused=True)
        grads_iter = iter(grads)
        out = [next(grads_iter) if need else None for need in needs]
        return (None, None, None, None, None, *out)


def _hessian(residual: Residual, w: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Exact ``grad_w^2 0.5 ||r||^2`` per problem, ``(P, n, n)``, by forward-over-reverse differentiation."""
    n = w.shape[-1]
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    tangents = eye[:, None, :].expand(n, *w.shape)

    def total(v: torch.Tensor) -> torch.Tensor:
        r = residual(v, *params)
        return 0.5 * (r * r).sum()

    gradient = torch.func.grad(total)

    def column(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(gradient, (w,), (tangent,))[1]

    # H[p, :, j] = d(grad_p)/dw_p e_j; problems are independent so one tangent serves all of them.
    return torch.func.vmap(column)(tangents).permute(1, 2, 0).detach()


def solve_least_squares(
    residual: Residual,
    w0: torch.Tensor,
    params: Sequence[torch.Tensor] = (),
    jacobian: Jacobian | None = None,
    hessian: str = "exact",
    curvature: Jacobian | None = None,
    max_iter: int = 50,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
    gtol: float = 1e-10,
    damping: float = 1e-3,
    dtype: torch.dtype = torch.float64,
) -> LeastSquaresSolution:
    """Differentiable ``argmin_w 0.5 ||residual(w, *params)||^2`` for a batch of problems.

    Gradients reach ``params`` through the implicit function theorem (module docstring); ``w0``
    gets none (the optimum does not depend on the starting point).

    Parameters
    ----------
    residual, w0, params, jacobian, max_iter, ftol, xtol, gtol, damping
        As in :func:`levenberg_marquardt`. ``jacobian`` is also used by the Gauss-Newton backward.
    hessian
        ``"exact"`` or ``"gauss_newton"``: the ``H`` of the backward (module docstring).
    curvature
        Optional ``curvature(w, *params) -> (P, n, n)``: the second-order part ``sum_i r_i grad_w^2 r_i``
        of the exact Hessian in closed form. ``hessian="exact"`` then uses ``J^T J`` (which the backward
        has) plus this, instead of forward-over-reverse differentiation (``n`` Jacobian-vector products
        through the residual's gradient).
    dtype
        Computation dtype; ``w0`` and ``params`` are cast (differentiably) to it. Float64 by default,
        because the normal equations square the condition number.

    Returns
    -------
    LeastSquaresSolution
        ``w`` is differentiable; ``cost`` and ``gradient_norm`` are plain values.
    """
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    if w0.ndim != 2:
        raise ValueError(f"w0 must have shape (problems, unknowns), got {tuple(w0.shape)}")
    params = [p.to(dtype) for p in params]
    for p in params:
        if p.shape[0] != w0.shape[0]:
            raise ValueError(f"every parameter needs the problem index first ({w0.shape[0]}), got {tuple(p.shape)}")
    with torch.no_grad():
        solution = levenberg_marquardt(
            residual, w0.detach().to(dtype), [p.detach() for p in params], jacobian=jacobian,
            max_iter=max_iter, ftol=ftol, xtol=xtol, gtol=gtol, damping=damping,
        )
    solution.w = _ImplicitLeastSquares.apply(residual, jacobian, hessian, curvature, solution.w, *params)
    return solution
