"""Diffusion-sorption: PDEBench's parameters, mass balance, convergence to a fine reference, the residual."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates.pdes.base import PDE
from surrogates.pdes.diffusion_sorption import (
    PDEBENCH_PARAMETERS,
    DiffusionSorption,
    DiffusionSorptionResidual,
    retardation,
)


def test_defaults_are_pdebench_s_parameters():
    pde = DiffusionSorption()
    assert isinstance(pde, PDE) and pde.name == "diffusion_sorption"
    for name in ("D", "porosity", "rho_s", "k_f", "n_f", "solubility", "final_time", "u0_max"):
        assert getattr(pde, name) == PDEBENCH_PARAMETERS[name]
    assert pde.resolution * pde.refinement == 1024  # PDEBench's grid


def test_generated_trajectories_have_the_format_and_start_at_the_constant_initial_state():
    pde = DiffusionSorption(resolution=16, refinement=2, n_snapshots=6)
    fields, report = pde.generate(3, np.random.default_rng(0))
    assert fields["u"].shape == (3, 6, 16) and fields["u0"].shape == (3,)
    assert np.all((fields["u0"] >= 0) & (fields["u0"] <= 0.2))
    np.testing.assert_array_equal(fields["u"][:, 0], np.repeat(fields["u0"][:, None], 16, axis=1))
    assert np.all(np.diff(fields["u"][:, -1], axis=-1) <= 1e-12)  # the front enters from the left
    assert np.all((fields["u"] >= 0) & (fields["u"] <= 1 + 1e-9))
    assert set(pde.variables()) == {"u", "u0"} and pde.coords()["x"].values[0] == pytest.approx(1 / 32)
    assert report.summary()["solves"] == 3
    again, _ = pde.generate(3, np.random.default_rng(0))
    np.testing.assert_array_equal(again["u"], fields["u"])


def test_finite_volume_solver_balances_mass():
    # d/dt int (u + (1 - phi)/phi rho_s k_f u^n_f) dx = flux in at x = 0 - flux out at x = 1
    pde = DiffusionSorption(resolution=32, refinement=1, final_time=50.0, n_snapshots=201, rtol=1e-10, atol=1e-12)
    u, _ = pde.solve_one(np.full(32, 0.1))
    dx = 1.0 / 32
    c = (1 - pde.porosity) / pde.porosity * pde.rho_s * pde.k_f
    # the finite-volume R(u) du/dt is the time derivative of this storage (with PDEBench's 1e-6 shift)
    storage = (u + c * (u + 1e-6) ** pde.n_f).sum(axis=1) * dx
    flux_in = pde.D * (pde.solubility - u[:, 0]) / dx  # PDEBench's ghost value, solubility, half a cell outside
    ghost_right = pde.D * (u[:, -2] - u[:, -1]) / dx
    flux_out = pde.D * (u[:, -1] - ghost_right) / dx
    net = flux_in - flux_out
    t = pde.times
    gained = storage[-1] - storage[0]
    integrated = np.sum(0.5 * (net[1:] + net[:-1]) * np.diff(t))
    # the trapezoid rule on 200 intervals is the limiting error; the jump at t = 0 is the largest part
    assert abs(gained - integrated) < 2e-3 * abs(gained)


def test_outflow_condition_has_the_sign_of_minus_d_u_x():
    # the ghost value D (u_{N-2} - u_{N-1}) / dx discretizes u(1, t) = -D u_x(1, t): the outlet
    # concentration is positive where the profile falls (the documented "+D u_x" would make it negative)
    pde = DiffusionSorption(resolution=64, refinement=1, n_snapshots=2)
    u = pde.solve_one(np.full(64, 0.1))[0][-1]
    dx = 1.0 / 64
    slope = (u[-1] - u[-2]) / dx
    boundary_value = 1.5 * u[-1] - 0.5 * u[-2]  # linear extrapolation to the face x = 1
    assert slope < 0 and boundary_value > 0
    assert np.sign(boundary_value) == np.sign(-pde.D * slope)


def test_refinement_converges_to_the_1024_cell_reference():
    inputs = {"u": np.full((1, 16), 0.1)}
    reference = DiffusionSorption(resolution=16, refinement=64, n_snapshots=6).solve(inputs)[0]["u"]
    errors = [
        np.linalg.norm(DiffusionSorption(resolution=16, refinement=r, n_snapshots=6).solve(inputs)[0]["u"] - reference)
        for r in (2, 4, 8)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] / np.linalg.norm(reference) < 2e-2  # first order (the ghost value half a cell outside)


def test_residual_is_linear_terms_plus_a_pointwise_function():
    physics = DiffusionSorptionResidual(final_time=500.0)
    g = torch.Generator().manual_seed(0)
    u, v = torch.rand(2, 7, 12, generator=g, dtype=torch.float64)
    a, b = 0.3, -1.7
    lu, lv, lw = physics.linear_terms(u), physics.linear_terms(v), physics.linear_terms(a * u + b * v)
    for name in physics.term_names:
        torch.testing.assert_close(lw[name], a * lu[name] + b * lv[name])


def test_residual_vanishes_on_the_saturated_state_except_at_the_outflow():
    physics = DiffusionSorptionResidual(final_time=500.0)
    r = physics.residual(torch.ones(5, 10, dtype=torch.float64))
    assert r[:, :-1].abs().max() < 1e-12  # u = 1 satisfies the left boundary condition and the interior
    assert (r[:, -1] > 0).all()  # the outflow boundary drains a saturated column


def test_generated_data_has_a_small_residual_and_a_wrong_field_does_not():
    pde = DiffusionSorption(resolution=32, refinement=8, n_snapshots=26)
    u = torch.from_numpy(pde.generate(2, np.random.default_rng(1))[0]["u"])
    physics = DiffusionSorptionResidual(final_time=pde.final_time)
    true = physics.residual(u)[:, 2:].pow(2).mean().sqrt()
    shifted = physics.residual(u.roll(3, dims=-1))[:, 2:].pow(2).mean().sqrt()
    assert true < 0.02 and shifted > 10 * true


def test_retardation_matches_the_formula_and_clamps_negative_concentrations():
    u = np.array([-0.5, 0.0, 0.1, 1.0])
    expected = 1 + (1 - 0.29) / 0.29 * 2880 * 3.5e-4 * 0.874 * (np.maximum(u, 0) + 1e-6) ** (0.874 - 1)
    np.testing.assert_allclose(retardation(u, 0.29, 2880, 3.5e-4, 0.874), expected)
    torch.testing.assert_close(retardation(torch.tensor(u), 0.29, 2880, 3.5e-4, 0.874), torch.tensor(expected))


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        DiffusionSorption(resolution=2)
    with pytest.raises(ValueError, match="shape"):
        DiffusionSorption(resolution=8).solve({"u": np.zeros((2, 9))})
