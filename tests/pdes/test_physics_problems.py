"""Physics-informed problems: residuals vanish on manufactured solutions, references are converged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from surrogates.checkpoint.registry import physics_problem_class
from surrogates.pdes.physics import AllenCahn, DarcyPoisson, Helmholtz2D, KleinGordon
from surrogates.pdes.physics.allen_cahn import fourier_interpolate, solve_allen_cahn

EPS64 = float(np.finfo(np.float64).eps)

PROBLEMS = [Helmholtz2D(), KleinGordon(), AllenCahn(), DarcyPoisson()]


def _points(problem, n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return problem.sample_collocation(n, generator).double().requires_grad_(True)


@pytest.mark.parametrize("problem", [Helmholtz2D(), Helmholtz2D(a1=2.0, a2=3.0, k=2.5), KleinGordon()], ids=repr)
def test_manufactured_solution_has_zero_residual_and_satisfies_the_conditions(problem):
    points = _points(problem)
    residual = problem.residual(problem.exact_solution, points)
    assert residual.shape == (64,)
    scale = problem.source(points.detach()).abs().max()
    assert residual.abs().max() <= 1e-12 * scale
    conditions = problem.condition_residuals(
        problem.exact_solution, {k: v.double() for k, v in problem.sample_conditions(16).items()}
    )
    for name, value in conditions.items():
        assert value.abs().max() < 1e-12, name


def test_allen_cahn_residual_of_a_manufactured_function():
    problem = AllenCahn()
    points = _points(problem)

    def u(p):  # periodic in x with period 2
        return torch.exp(-p[:, 0]) * torch.sin(math.pi * p[:, 1])

    t, x = points[:, 0].detach(), points[:, 1].detach()
    value = u(points.detach())
    expected = -value + problem.eps * math.pi**2 * value + problem.gamma * (value**3 - value)
    torch.testing.assert_close(problem.residual(u, points), expected, rtol=1e-12, atol=1e-12)
    conditions = problem.condition_residuals(u, {k: v.double() for k, v in problem.sample_conditions(16).items()})
    assert conditions["periodic"].abs().max() < 1e-12
    # u(0, x) = sin(pi x) is not the initial condition x^2 cos(pi x)
    assert conditions["initial"].abs().max() > 0.1
    assert t.shape == x.shape


@pytest.mark.parametrize("coefficient", ["smooth", "constant"])
def test_darcy_residual_of_a_manufactured_function(coefficient):
    problem = DarcyPoisson(coefficient=coefficient)
    points = _points(problem)
    pi = math.pi

    def u(p):
        return torch.sin(pi * p[:, 0]) * torch.sin(pi * p[:, 1])

    x, y = points[:, 0].detach(), points[:, 1].detach()
    ux, uy = pi * torch.cos(pi * x) * torch.sin(pi * y), pi * torch.sin(pi * x) * torch.cos(pi * y)
    laplacian = -2 * pi**2 * torch.sin(pi * x) * torch.sin(pi * y)
    if coefficient == "smooth":
        a = 1 + 0.5 * torch.sin(2 * pi * x) * torch.sin(2 * pi * y)
        ax = pi * torch.cos(2 * pi * x) * torch.sin(2 * pi * y)
        ay = pi * torch.sin(2 * pi * x) * torch.cos(2 * pi * y)
    else:
        a, ax, ay = torch.ones_like(x), torch.zeros_like(x), torch.zeros_like(x)
    expected = -(a * laplacian + ax * ux + ay * uy) - problem.source
    torch.testing.assert_close(problem.residual(u, points), expected, rtol=1e-12, atol=1e-12)
    boundary = problem.condition_residuals(u, {k: v.double() for k, v in problem.sample_conditions(8).items()})
    assert boundary["boundary"].abs().max() < 1e-12


def test_allen_cahn_reference_is_converged_in_time_and_space():
    x = -1.0 + 2.0 * np.arange(256) / 256
    u0 = AllenCahn.initial_condition(x)
    times = np.linspace(0.0, 1.0, 6)
    coarse = solve_allen_cahn(u0, times, 1e-4, 5.0, dt=1e-2)
    fine = solve_allen_cahn(u0, times, 1e-4, 5.0, dt=5e-3)
    assert np.abs(coarse - fine).max() < 1e-6  # ETDRK4: fourth order in time
    # the interfaces have formed: the solution sits near the stable states +-1 almost everywhere
    assert np.mean(np.abs(np.abs(fine[-1]) - 1) < 0.05) > 0.6
    # doubling the Fourier points changes the solution little
    x2 = -1.0 + 2.0 * np.arange(512) / 512
    finer = solve_allen_cahn(AllenCahn.initial_condition(x2), times, 1e-4, 5.0, dt=5e-3)
    assert np.abs(finer[1:, ::2] - fine[1:]).max() < 5e-3


def test_fourier_interpolation_is_exact_for_trigonometric_polynomials():
    n = 16
    grid = -1.0 + 2.0 * np.arange(n) / n
    f = lambda x: 1 + np.cos(np.pi * x) - 0.5 * np.sin(3 * np.pi * x) + 0.25 * np.cos(8 * np.pi * x)  # noqa: E731
    x = np.linspace(-1, 1, 37)
    np.testing.assert_allclose(fourier_interpolate(f(grid)[None], x, -1.0, 2.0)[0][::4], f(x)[::4], atol=1e-12)
    np.testing.assert_allclose(fourier_interpolate(f(grid)[None], grid, -1.0, 2.0)[0], f(grid), atol=1e-12)


def test_allen_cahn_reference_grid_and_initial_values():
    reference = AllenCahn(reference_modes=256, reference_dt=1e-2).reference([3, 21])
    assert reference.shape == (3, 21) and reference.points().shape == (63, 2)
    x = reference.coords[1]
    interior = np.abs(x) < 0.8  # the periodic extension of u0 has a kink at x = +-1
    np.testing.assert_allclose(reference.values[0, interior], AllenCahn.initial_condition(x[interior]), atol=1e-3)


def test_darcy_reference_converges_under_refinement():
    problem = DarcyPoisson(coefficient="smooth", reference_resolution=129)
    coarse = problem.reference(17).values
    fine = DarcyPoisson(coefficient="smooth", reference_resolution=257).reference(17).values
    assert np.linalg.norm(coarse - fine) / np.linalg.norm(fine) < 1e-3
    assert np.abs(fine[0]).max() < 1e-12 and np.abs(fine[:, -1]).max() < 1e-12
    assert fine.max() > 0  # -div(a grad u) = 1 > 0: u > 0 inside


def test_inclusion_coefficient_has_the_darcy_contrast():
    problem = DarcyPoisson(coefficient="inclusion")
    points = torch.tensor([[0.5, 0.5], [0.05, 0.05], [0.75, 0.5], [0.5, 0.26]], dtype=torch.float64)
    a = problem.diffusivity(points)
    # the closed form 3 + 9 sigmoid((0.25 - r) / 0.02), r the distance to the centre: a few float64 roundings
    r = torch.linalg.vector_norm(points - 0.5, dim=1)
    torch.testing.assert_close(a, 3 + 9 * torch.sigmoid((0.25 - r) / 0.02), rtol=8 * EPS64, atol=0)
    # the {3, 12} contrast: inside and outside the transition the smoothing moves a by at most 9 exp(-|d| / 0.02)
    assert abs(a[0] - 12.0) <= 9 * math.exp(-0.25 / 0.02) and abs(a[1] - 3.0) <= 9 * math.exp(-(0.45 * math.sqrt(2) - 0.25) / 0.02)
    assert a[2] == pytest.approx(7.5, abs=8 * EPS64 * 12)  # on the circle: halfway
    with pytest.raises(ValueError, match="coefficient"):
        DarcyPoisson(coefficient="random")


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_config_round_trip_and_sampling(problem):
    config = problem.config()
    clone = physics_problem_class(config["name"])(**config["kwargs"])  # the registry maps the name back
    assert clone == problem
    generator = torch.Generator().manual_seed(1)
    points = problem.sample_collocation(50, generator)
    box = torch.tensor(problem.bounds(), dtype=points.dtype)
    assert points.shape == (50, problem.dim)
    assert torch.all((points >= box[:, 0]) & (points <= box[:, 1]))
    for name, value in problem.sample_conditions(5, generator).items():
        assert value.ndim == 2 and value.shape[1] == problem.dim, name


def test_exact_reference_on_the_grid():
    reference = Helmholtz2D().reference([5, 9])
    assert reference.shape == (5, 9)
    x, y = np.meshgrid(*reference.coords, indexing="ij")
    np.testing.assert_allclose(reference.values, np.sin(np.pi * x) * np.sin(4 * np.pi * y), atol=1e-12)
    with pytest.raises(NotImplementedError):
        AllenCahn().exact_solution(torch.zeros(1, 2))


# -- arguments (a problem is rebuilt from a file's plain data) ----------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (Helmholtz2D, {"a1": float("nan")}, "a1 must be a finite number"),
        (Helmholtz2D, {"k": "1"}, "k must be a finite number"),
        (KleinGordon, {"gamma": float("inf")}, "gamma must be a finite number"),
        (DarcyPoisson, {"width": 0.0}, "width must be > 0"),
        (DarcyPoisson, {"source": float("nan")}, "source must be a finite number"),
        (DarcyPoisson, {"reference_resolution": 10**6}, r"reference_resolution must be in \[3, 2049\]"),
        (DarcyPoisson, {"reference_resolution": 513.5}, "reference_resolution must be an integer"),
        (AllenCahn, {"eps": float("nan")}, "eps must be a finite number"),
        (AllenCahn, {"reference_modes": 10**9}, r"reference_modes must be in \[16, 16384\]"),
        (AllenCahn, {"reference_modes": 2049}, "reference_modes even"),
        (AllenCahn, {"reference_dt": 1e-12}, "reference steps, more than 100000"),
        (AllenCahn, {"t_final": float("inf")}, "t_final must be a finite number"),
        (AllenCahn, {"reference_dt": 0.0}, "reference_dt must be > 0"),
    ],
)
def test_problem_arguments_are_checked(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_a_reference_grid_is_bounded_before_it_is_allocated():
    with pytest.raises(ValueError, match="more than 10000000"):
        Helmholtz2D().reference(3163)  # 1.0004 * 10^7 points (30000 would be 9 * 10^8)
    with pytest.raises(ValueError, match="needs more than"):
        AllenCahn(reference_modes=16384).reference([4097, 2])  # 4097 output times on 16384 points
