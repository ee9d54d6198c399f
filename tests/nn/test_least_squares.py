"""Levenberg-Marquardt forward and implicit backward of the batched least-squares layer."""

from __future__ import annotations

import pytest
import torch

from surrogates.nn.least_squares import batched_jacobian, levenberg_marquardt, solve_least_squares

F64 = torch.float64
X = torch.linspace(-1.0, 1.0, 7, dtype=F64)


def exp_fit(w: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``r_i = a_i exp(w_0 x_i) + w_1 x_i^2 - y_i``: nonlinear in ``w``, parameters ``a`` and ``y``."""
    return a * torch.exp(w[:, :1] * X) + w[:, 1:2] * X**2 - y


def rosenbrock(w: torch.Tensor) -> torch.Tensor:
    return torch.stack([10.0 * (w[:, 1] - w[:, 0] ** 2), 1.0 - w[:, 0]], dim=-1)


def _problem(P: int = 3, consistent: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = 1.0 + 0.3 * torch.rand(P, X.numel(), generator=g, dtype=F64)
    w_true = torch.randn(P, 2, generator=g, dtype=F64) * 0.5
    y = exp_fit(w_true, a, torch.zeros_like(a))
    if not consistent:
        y = y + 0.3 * torch.randn(P, X.numel(), generator=g, dtype=F64)
    return a, y, w_true


def test_residual_is_below_tolerance_after_the_solve_of_consistent_problems():
    a, y, w_true = _problem(P=4, consistent=True)
    sol = levenberg_marquardt(exp_fit, torch.zeros(4, 2, dtype=F64), [a, y])
    assert sol.converged.all()
    assert (sol.iterations <= 50).all()
    assert exp_fit(sol.w, a, y).norm(dim=-1).max() < 1e-8
    torch.testing.assert_close(sol.w, w_true, rtol=0, atol=1e-7)


def test_rosenbrock_converges_from_the_classic_start():
    sol = levenberg_marquardt(rosenbrock, torch.tensor([[-1.2, 1.0]], dtype=F64), max_iter=50)
    assert sol.converged.all()
    torch.testing.assert_close(sol.w, torch.ones(1, 2, dtype=F64), rtol=0, atol=1e-8)
    assert sol.cost.item() < 1e-16


def test_inconsistent_problems_reach_a_stationary_point():
    a, y, _ = _problem(P=5)
    sol = levenberg_marquardt(exp_fit, torch.zeros(5, 2, dtype=F64), [a, y])
    assert sol.converged.all()
    assert sol.gradient_norm.max() < 1e-6
    J = batched_jacobian(exp_fit, sol.w, a, y)
    grad = (J.transpose(1, 2) @ exp_fit(sol.w, a, y).unsqueeze(-1)).squeeze(-1)
    assert grad.abs().max() < 1e-6


def test_a_batch_equals_separate_solves_although_problems_stop_at_different_iterations():
    a, y, _ = _problem(P=6, seed=3)
    w0 = torch.zeros(6, 2, dtype=F64)
    w0[::2] = 2.0  # a far start: these take longer
    together = levenberg_marquardt(exp_fit, w0, [a, y])
    assert together.iterations.unique().numel() > 1
    for p in range(6):
        alone = levenberg_marquardt(exp_fit, w0[p : p + 1], [a[p : p + 1], y[p : p + 1]])
        torch.testing.assert_close(together.w[p], alone.w[0], rtol=0, atol=1e-12)
        assert together.iterations[p] == alone.iterations[0]


def test_max_iter_stops_and_reports_not_converged():
    sol = levenberg_marquardt(rosenbrock, torch.tensor([[-1.2, 1.0]], dtype=F64), max_iter=3)
    assert sol.iterations.item() == 3 and not sol.converged.item()


def test_batched_jacobian_matches_autograd():
    a, y, _ = _problem(P=2)
    w = torch.randn(2, 2, dtype=F64)
    J = batched_jacobian(exp_fit, w, a, y)
    for p in range(2):
        ref = torch.autograd.functional.jacobian(lambda v: exp_fit(v[None], a[p : p + 1], y[p : p + 1])[0], w[p])
        torch.testing.assert_close(J[p], ref)


def _loss_of(params, weights, **options):
    sol = levenberg_marquardt(exp_fit, torch.zeros(weights.shape, dtype=F64), params,
                              gtol=1e-13, ftol=0.0, xtol=0.0, max_iter=500, **options)
    return (sol.w * weights).sum()


@pytest.mark.parametrize("consistent", [False, True])
def test_implicit_gradient_matches_finite_differences(consistent):
    a, y, _ = _problem(P=2, consistent=consistent, seed=1)
    a.requires_grad_(True)
    y.requires_grad_(True)
    weights = torch.tensor([[0.7, -1.3], [0.4, 2.0]], dtype=F64)
    sol = solve_least_squares(exp_fit, torch.zeros(2, 2, dtype=F64), [a, y], gtol=1e-13, ftol=0.0, xtol=0.0, max_iter=500)
    (sol.w * weights).sum().backward()
    eps = 1e-3  # the solves are accurate to ~1e-9; a smaller step would amplify that
    for param, grad in ((a, a.grad), (y, y.grad)):
        fd = torch.zeros_like(param)
        for index in [(0, 0), (0, 3), (1, 6), (1, 2)]:
            plus, minus = [t.detach().clone() for t in (a, y)], [t.detach().clone() for t in (a, y)]
            k = 0 if param is a else 1
            plus[k][index] += eps
            minus[k][index] -= eps
            fd[index] = (_loss_of(plus, weights) - _loss_of(minus, weights)) / (2 * eps)
            assert abs(fd[index] - grad[index]) < 2e-5 * max(1.0, abs(fd[index].item())), (index, fd[index], grad[index])


def test_gauss_newton_backward_is_exact_for_zero_residual_and_differs_otherwise():
    def grads(consistent, hessian):
        a, y, _ = _problem(P=2, consistent=consistent, seed=2)
        a.requires_grad_(True)
        sol = solve_least_squares(exp_fit, torch.zeros(2, 2, dtype=F64), [a, y], hessian=hessian,
                                  gtol=1e-13, ftol=0.0, xtol=0.0, max_iter=500)
        sol.w.sum().backward()
        return a.grad

    torch.testing.assert_close(grads(True, "gauss_newton"), grads(True, "exact"), rtol=1e-6, atol=1e-8)
    assert (grads(False, "gauss_newton") - grads(False, "exact")).abs().max() > 1e-3


def test_linear_least_squares_gradient_has_the_closed_form():
    # r = A w - y: w* = (A^T A)^-1 A^T y, so d(c . w*)/dy = A (A^T A)^-1 c
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 9, 3, generator=g, dtype=F64)
    y = torch.randn(2, 9, generator=g, dtype=F64, requires_grad=True)
    c = torch.randn(2, 3, generator=g, dtype=F64)

    def linear(w, A, y):
        return (A @ w.unsqueeze(-1)).squeeze(-1) - y

    sol = solve_least_squares(linear, torch.zeros(2, 3, dtype=F64), [A, y], ftol=0.0, xtol=0.0, gtol=1e-12)
    expected_w = torch.linalg.lstsq(A, y.detach().unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(sol.w.detach(), expected_w, rtol=1e-9, atol=1e-10)
    (sol.w * c).sum().backward()
    expected = (A @ torch.linalg.solve(A.transpose(1, 2) @ A, c.unsqueeze(-1))).squeeze(-1)
    torch.testing.assert_close(y.grad, expected, rtol=1e-8, atol=1e-10)


def test_parameters_are_cast_to_float64_and_gradients_return_in_their_dtype():
    a, y, _ = _problem(P=2)
    a32 = a.float().requires_grad_(True)
    sol = solve_least_squares(exp_fit, torch.zeros(2, 2), [a32, y.float()])
    assert sol.w.dtype == F64
    sol.w.sum().backward()
    assert a32.grad.dtype == torch.float32 and torch.isfinite(a32.grad).all()


def test_rejects_bad_shapes_and_options():
    a, y, _ = _problem(P=2)
    with pytest.raises(ValueError, match="problem index first"):
        solve_least_squares(exp_fit, torch.zeros(3, 2, dtype=F64), [a, y])
    with pytest.raises(ValueError, match="hessian"):
        solve_least_squares(exp_fit, torch.zeros(2, 2, dtype=F64), [a, y], hessian="bfgs")
