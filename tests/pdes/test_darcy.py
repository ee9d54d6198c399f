"""Darcy flow: the Poisson benchmark value, the coefficient law, boundary values and the CG reference solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from surrogates.pdes.base import PDE
from surrogates.pdes.darcy import Darcy, solve_darcy
from surrogates.solvers.finite_differences import diffusion_operator, interior
from surrogates.solvers.report import SolverReport
from surrogates.solvers.sparse_cg import solve_spd

# max of u for -Laplacian u = 1 on the unit square, u = 0 on the boundary (torsion of a square bar),
# from the series 16/pi^4 sum_{m,n odd} (-1)^((m+n)/2 - 1) / (m n (m^2 + n^2)) at the centre
POISSON_MAX = 0.0736713532814


def test_poisson_maximum_converges_to_the_known_value():
    errors = []
    for s in (65, 129, 257):
        u, _, residual = solve_darcy(np.ones((s, s)), forcing=1.0)
        assert residual < 1e-10
        errors.append(abs(u.max() - POISSON_MAX))
    assert float(f"{u.max():.4g}") == 0.07367
    assert errors[0] > errors[1] > errors[2]


@pytest.fixture(scope="module")
def batch():
    pde = Darcy(resolution=33)
    fields, report = pde.generate(8, np.random.default_rng(0))
    return pde, fields, report


def test_coefficient_takes_the_two_values_both_present(batch):
    _, fields, _ = batch
    a = fields["a"]
    assert a.shape == (8, 33, 33)
    assert set(np.unique(a)) == {3.0, 12.0}
    for sample in a:  # a thresholded zero-mean field covers both phases
        assert (sample == 3.0).any() and (sample == 12.0).any()


def test_solution_is_zero_on_the_boundary_and_positive_inside(batch):
    _, fields, _ = batch
    u = fields["u"]
    assert u.shape == (8, 33, 33)
    for edge in (u[:, 0, :], u[:, -1, :], u[:, :, 0], u[:, :, -1]):
        assert np.all(edge == 0.0)
    assert np.all(u[:, 1:-1, 1:-1] > 0)  # maximum principle with f = 1 > 0


def test_report_records_each_solve_below_tolerance(batch):
    pde, _, report = batch
    assert isinstance(report, SolverReport)
    assert report.method == "pcg+amg"
    assert report.parameters["rtol"] == pde.rtol
    assert "harmonic" in report.parameters["discretization"]
    assert len(report.iterations) == len(report.residuals) == 8
    assert max(report.residuals) < pde.rtol
    assert all(0 < it < 50 for it in report.iterations)


def test_solution_matches_a_direct_solve(batch):
    _, fields, _ = batch
    for a, u in zip(fields["a"][:3], fields["u"][:3]):
        direct = spla.spsolve(diffusion_operator(a).tocsc(), interior(np.ones_like(a)))
        assert np.linalg.norm(interior(u) - direct) / np.linalg.norm(direct) < 1e-8


def test_same_seed_same_data_and_global_random_state_untouched():
    pde = Darcy(resolution=17)
    np.random.seed(0)
    first, _ = pde.generate(3, np.random.default_rng(5))
    second, _ = pde.generate(3, np.random.default_rng(5))
    for name in ("a", "u"):  # bitwise: the AMG setup is deterministic
        np.testing.assert_array_equal(first[name], second[name])
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    pde.solve(first)
    assert np.random.rand() == expected  # the solver draws nothing from numpy's global generator


def test_variables_and_coordinates_describe_the_fields():
    pde = Darcy(resolution=20)
    assert isinstance(pde, PDE) and pde.name == "darcy"
    assert pde.inputs == ("a",) and pde.targets == ("u",)
    variables = pde.variables()
    assert variables["a"].dims == ("x", "y") and variables["u"].dims == ("x", "y")
    coords = pde.coords()
    for name in ("x", "y"):
        values = coords[name].values
        assert values.shape == (20,) and values[0] == 0.0 and values[-1] == 1.0
        assert coords[name].units == "1"


@pytest.mark.parametrize("preconditioner", ["ic0", "jacobi", "none"])
def test_preconditioners_agree(preconditioner):
    pde = Darcy(resolution=17, preconditioner=preconditioner)
    a = Darcy(resolution=17).sample_inputs(1, np.random.default_rng(1))["a"]
    u, report = pde.solve({"a": a})
    reference, _ = Darcy(resolution=17).solve({"a": a})
    np.testing.assert_allclose(u["u"], reference["u"], rtol=1e-8, atol=1e-12)
    assert report.method == f"pcg+{preconditioner}"


def test_cg_reports_non_convergence_clearly():
    A = diffusion_operator(np.ones((33, 33)))
    with pytest.raises(RuntimeError, match="did not converge"):
        solve_spd(A, np.ones(A.shape[0]), rtol=1e-12, preconditioner="none", maxiter=3)


def test_cg_returns_true_residual_and_handles_zero_rhs():
    A = diffusion_operator(np.ones((9, 9)))
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    x, iterations, residual = solve_spd(A, b, rtol=1e-8)
    assert residual == pytest.approx(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    assert residual < 1e-8 and iterations > 0
    x, iterations, residual = solve_spd(A, np.zeros(A.shape[0]))
    assert not x.any() and iterations == 0 and residual == 0.0


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError, match="preconditioner"):
        Darcy(preconditioner="ilu")
    with pytest.raises(ValueError, match="shape"):
        Darcy(resolution=16).solve({"a": np.ones((2, 8, 8))})
