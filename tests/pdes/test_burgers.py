"""Burgers: the exact Cole-Hopf solution, fourth order in time, conservation, shapes and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.pdes.base import PDE
from surrogates.pdes.burgers import Burgers, cole_hopf_solution, solve_burgers, upsample_spectrum
from surrogates.solvers.report import SolverReport

NU, A0, T = 0.05, 1.1, 0.5  # a0 close to |a1| = 1: a steep front, |u| up to ~1.4


def _cole_hopf_error(dt: float, resolution: int = 128, solver_resolution: int = 256) -> float:
    pde = Burgers(resolution, solver_resolution, nu=NU, final_time=T, n_snapshots=2, dt=dt)
    x = pde.coords()["x"].values
    out, _ = pde.solve({"u": cole_hopf_solution(x, 0.0, NU, A0)[None], "nu": np.array([NU])})
    return float(np.abs(out["u"][0, -1] - cole_hopf_solution(x, T, NU, A0)).max())


def test_reproduces_the_cole_hopf_solution():
    assert _cole_hopf_error(1e-3) < 1e-10


def test_error_decreases_at_fourth_order_in_dt():
    errors = np.array([_cole_hopf_error(dt) for dt in (0.05, 0.025, 0.0125)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all((orders > 3.6) & (orders < 4.4)), (errors, orders)


def test_cole_hopf_solution_solves_burgers():
    # independent check of the reference: residual of u_t + u u_x - nu u_xx by finite differences
    x, t, e = np.linspace(0, 1, 201), 0.3, 1e-5
    u = cole_hopf_solution(x, t, NU, A0)
    u_t = (cole_hopf_solution(x, t + e, NU, A0) - cole_hopf_solution(x, t - e, NU, A0)) / (2 * e)
    u_x = (cole_hopf_solution(x + e, t, NU, A0) - cole_hopf_solution(x - e, t, NU, A0)) / (2 * e)
    u_xx = (cole_hopf_solution(x + e, t, NU, A0) - 2 * u + cole_hopf_solution(x - e, t, NU, A0)) / e**2
    assert np.abs(u_t + u * u_x - NU * u_xx).max() < 1e-3


@pytest.fixture(scope="module")
def batch():
    pde = Burgers(resolution=64, solver_resolution=256, n_snapshots=6, dt=2e-3)
    inputs = pde.sample_inputs(16, np.random.default_rng(0))
    outputs, report = pde.solve(inputs)
    return pde, inputs, outputs, report


def test_shapes_and_initial_state(batch):
    pde, inputs, outputs, report = batch
    assert inputs["u"].shape == (16, 64) and inputs["nu"].shape == (16,)
    np.testing.assert_array_equal(inputs["nu"], 0.1)
    assert outputs["u"].shape == (16, 6, 64)
    np.testing.assert_array_equal(outputs["u"][:, 0], inputs["u"])
    assert np.all(np.isfinite(outputs["u"]))


def test_mean_is_conserved_and_energy_decays(batch):
    _, _, outputs, _ = batch
    u = outputs["u"]
    np.testing.assert_allclose(u.mean(axis=-1), u[:, :1].mean(axis=-1) * np.ones((1, 6)), atol=1e-13)
    energy = (u**2).mean(axis=-1)
    assert np.all(np.diff(energy, axis=1) < 0)  # viscous dissipation


def test_report(batch):
    pde, _, _, report = batch
    assert isinstance(report, SolverReport) and report.method == "fourier-pseudo-spectral+etdrk4"
    assert report.iterations == [500] * 16  # T = 1 with dt = 2e-3
    assert report.parameters["dt"] == pytest.approx(2e-3)
    assert report.parameters["solver_resolution"] == 256 and "2/3" in report.parameters["dealiasing"]


def test_same_seed_same_data():
    pde = Burgers(resolution=32, solver_resolution=128, n_snapshots=3, dt=1e-2)
    first, _ = pde.generate(4, np.random.default_rng(3))
    second, _ = pde.generate(4, np.random.default_rng(3))
    for name in ("u", "nu"):
        np.testing.assert_array_equal(first[name], second[name])


def test_solver_grid_only_changes_round_off(batch):
    # the stored input is band-limited, so a finer solver grid solves the same problem
    pde, inputs, outputs, _ = batch
    finer = Burgers(resolution=64, solver_resolution=512, n_snapshots=6, dt=2e-3)
    np.testing.assert_allclose(finer.solve(inputs)[0]["u"], outputs["u"], atol=1e-11)


def test_per_sample_viscosity(batch):
    pde, inputs, _, _ = batch
    u0, nu = inputs["u"][:3], np.array([0.1, 0.02, 0.1])
    together, _ = solve_burgers(u0, nu, pde.times, 256, 2e-3)
    for i in range(3):
        alone, _ = solve_burgers(u0[i : i + 1], nu[i], pde.times, 256, 2e-3)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-12, atol=1e-14)


def test_upsampling_interpolates_band_limited_functions_exactly():
    def f(x):
        return np.sin(2 * np.pi * 3 * x) + 0.5 * np.cos(2 * np.pi * 8 * x) + 0.25 * np.cos(2 * np.pi * 16 * x)

    coarse, fine = np.arange(32) / 32, np.arange(128) / 128  # mode 16 is the coarse grid's Nyquist mode
    values = np.fft.irfft(upsample_spectrum(f(coarse)[None], 128), 128)[0]
    np.testing.assert_allclose(values, f(fine), atol=1e-13)


def test_variables_coordinates_and_validation():
    pde = Burgers()
    assert isinstance(pde, PDE) and pde.name == "burgers"
    variables = pde.variables()
    assert variables["u"].dims == ("time", "x") and variables["nu"].dims == ()
    coords = pde.coords()
    np.testing.assert_allclose(coords["x"].values, np.arange(256) / 256)
    np.testing.assert_allclose(coords["time"].values, np.linspace(0, 1, 11))
    with pytest.raises(ValueError, match="multiple"):
        Burgers(resolution=100, solver_resolution=256)
    with pytest.raises(ValueError, match="dealiasing"):
        Burgers(resolution=64, solver_resolution=64)


@pytest.mark.slow
def test_default_configuration_batch():
    pde = Burgers()
    fields, report = pde.generate(100, np.random.default_rng(0))
    assert fields["u"].shape == (100, 11, 256) and report.iterations[0] == 1000
    assert np.all(np.isfinite(fields["u"]))
