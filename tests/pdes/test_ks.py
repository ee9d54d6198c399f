"""Kuramoto-Sivashinsky: exact linear growth, mean conservation, ETDRK4 order, the dataset round trip, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import fft

from surrogates.data.dataset import FieldDataset
from surrogates.data.generation import generate_dataset
from surrogates.data.schema import inspect_file
from surrogates.data.shards import split_files
from surrogates.pdes.base import PDE
from surrogates.pdes.ks import (
    KuramotoSivashinsky,
    linear_growth_rates,
    sines_initial_state,
    solve_ks,
    wavenumbers,
)
from surrogates.solvers.etdrk4 import ETDRK4
from surrogates.solvers.report import SolverReport


def tiny(**overrides) -> KuramotoSivashinsky:
    """A cheap configuration: 32 stored points (solved on 256), 6 stored states, a short transient."""
    settings = dict(resolution=32, n_steps=6, substeps=4, transient_time=8.0)
    return KuramotoSivashinsky(**{**settings, **overrides})


def test_tiny_amplitudes_grow_at_the_linear_rates():
    # at amplitude 1e-12 the quadratic term is ~1e-12 relative to the linear one: each Fourier
    # coefficient is multiplied by exp((k^2 - k^4) t) (a real factor: no phase drift), on every domain length
    r, t = 64, 4.0
    lengths = np.array([57.6, 64.0, 70.4])
    modes = np.arange(1, 14)  # k from 0.09 to 1.4: growth by up to e and decay by up to e^-8
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (3, modes.size, 1))
    grid = np.arange(r) / r
    u0 = 1e-12 * np.cos(2 * np.pi * modes[None, :, None] * grid + phases).sum(axis=1)
    u = solve_ks(u0, lengths, t, n_steps=2, substeps=20, solver_resolution=256)
    ratio = fft.rfft(u[:, 1])[:, modes] / fft.rfft(u[:, 0])[:, modes]
    k = 2 * np.pi * modes[None] / lengths[:, None]
    exact = np.exp((k**2 - k**4) * t)
    assert exact.max() > 2.5 and exact.min() < 1e-3  # both growing and decaying modes are checked
    np.testing.assert_allclose(ratio, exact, rtol=1e-7)
    np.testing.assert_allclose(wavenumbers(lengths, 14)[:, modes], k)
    np.testing.assert_array_equal(linear_growth_rates(np.array([0.0, 1.0])), [0.0, 0.0])


@pytest.fixture(scope="module")
def batch():
    # stored on the solver grid: subsampled point values would alias the modes above their Nyquist mode
    pde = tiny(resolution=256)
    inputs = pde.sample_inputs(6, np.random.default_rng(0))
    outputs, report = pde.solve(inputs)
    return pde, inputs, outputs, report


def test_mean_is_conserved(batch):
    pde, inputs, _, _ = batch
    shifted = {**inputs, "u": inputs["u"] + np.linspace(-0.5, 0.5, 6)[:, None]}
    u = pde.solve(shifted)[0]["u"]
    # the zero mode is carried exactly; the two means of n = 256 values (numpy's pairwise sum, SIMD width
    # dependent, and the FFT's) each carry up to n eps max |u| (max |u| ~ 3: 1.7e-13)
    roundoff = 2 * u.shape[-1] * np.finfo(np.float64).eps * np.abs(u).max()
    np.testing.assert_allclose(u.mean(axis=-1), shifted["u"].mean(axis=-1)[:, None] * np.ones(pde.n_steps), atol=roundoff)


def _error_at(u0, lengths, horizon, step, reference):
    solution = solve_ks(u0, lengths, horizon, 2, round(horizon / step), solver_resolution=256)[:, 1]
    return np.abs(solution - reference).max()


def test_etdrk4_is_fourth_order_on_a_short_horizon():
    u0 = sines_initial_state(3, 64, np.random.default_rng(1))
    lengths, horizon = np.array([60.0, 64.0, 68.0]), 2.0
    reference = solve_ks(u0, lengths, horizon, 2, 1000, solver_resolution=256)[:, 1]
    errors = np.array([_error_at(u0, lengths, horizon, h, reference) for h in (0.2, 0.1, 0.05, 0.025)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all((orders > 3.6) & (orders < 4.4)) and orders[-1] > 3.9, (errors, orders)


def test_order_on_the_chaotic_attractor_and_the_default_step():
    # stiff high modes carry more energy on the attractor: the order is reduced to ~3 at practical steps,
    # and the default internal step (0.8 / 16) keeps the error per stored step below 1e-5 of max |u|
    pde = KuramotoSivashinsky(resolution=64, n_steps=1, substeps=4, transient_time=100.0)
    state = pde.generate(2, np.random.default_rng(0))[0]
    u0, lengths, horizon = state["u"][:, 0], state["L"], 0.8
    reference = solve_ks(u0, lengths, horizon, 2, 256, solver_resolution=256)[:, 1]
    errors = np.array([_error_at(u0, lengths, horizon, h, reference) for h in (0.2, 0.1, 0.05, 0.025)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(orders > 2.8), (errors, orders)
    assert errors[2] < 1e-5 * np.abs(reference).max(), errors


def test_shapes_parameters_and_report(batch):
    pde, inputs, outputs, report = batch
    assert isinstance(pde, PDE) and pde.name == "ks"
    assert inputs["u"].shape == (6, 256) and outputs["u"].shape == (6, 6, 256)
    assert np.all(np.isfinite(outputs["u"]))
    for name in ("dt", "dx", "L", "t0"):
        assert outputs[name].shape == (6,)
    assert np.all((outputs["L"] >= 0.9 * 64) & (outputs["L"] <= 1.1 * 64))
    assert np.all((outputs["dt"] >= 0.72) & (outputs["dt"] <= 0.88))
    # the solved parameters are exactly representable in float32, the storage type
    np.testing.assert_array_equal(outputs["dt"].astype(np.float32), outputs["dt"])
    np.testing.assert_array_equal(outputs["L"].astype(np.float32), outputs["L"])
    np.testing.assert_allclose(outputs["dx"], outputs["L"] / 256)
    assert pde.transient_steps == 40  # 8 time units at 0.8 / 4
    np.testing.assert_allclose(outputs["t0"], 40 * outputs["dt"] / 4)
    assert isinstance(report, SolverReport) and report.method == "fourier-pseudo-spectral+etdrk4"
    assert report.iterations == [40 + 5 * 4] * 6
    assert report.parameters["solver_resolution"] == 256 and "2/3" in report.parameters["dealiasing"]


def test_stored_states_are_dt_apart(batch):
    # restarting from a stored state for one stored step reproduces the next stored state
    pde, _, outputs, _ = batch
    u, lengths, dt = outputs["u"], outputs["L"], outputs["dt"]
    again = solve_ks(u[:, 2], lengths, dt, 2, pde.substeps, solver_resolution=256)
    np.testing.assert_allclose(again[:, 1], u[:, 3], atol=1e-9)


def test_batched_per_sample_parameters_match_single_solves(batch):
    _, inputs, _, _ = batch
    u0, lengths, dt = inputs["u"][:3], np.array([58.0, 64.0, 70.0]), np.array([0.75, 0.8, 0.85])
    together = solve_ks(u0, lengths, dt, 4, 4, 10, 256)
    for i in range(3):
        alone = solve_ks(u0[i : i + 1], lengths[i], dt[i], 4, 4, 10, 256)
        np.testing.assert_allclose(together[i], alone[0], rtol=0, atol=1e-12)


def test_etdrk4_accepts_per_sample_steps():
    linear = -np.array([[1.0, 4.0, 9.0], [2.0, 3.0, 5.0]])
    steps = np.array([[0.1], [0.05]])
    v0 = np.ones((2, 3))
    stepper = ETDRK4(linear, steps)
    together = stepper.integrate(v0, lambda v: -0.5 * v**2, 10)
    for i in range(2):
        alone = ETDRK4(linear[i], float(steps[i, 0])).integrate(v0[i], lambda v: -0.5 * v**2, 10)
        np.testing.assert_allclose(together[i], alone, rtol=1e-14)
    picked = stepper.select(np.array([1, 1, 0]))
    np.testing.assert_array_equal(picked.dt[:, 0], [0.05, 0.05, 0.1])
    assert isinstance(ETDRK4(linear, 0.1).dt, float)  # a scalar step stays a float
    with pytest.raises(ValueError, match="positive"):
        ETDRK4(linear, np.array([[0.1], [0.0]]))


def test_same_seed_same_data_other_seed_other_data():
    pde = tiny(n_steps=3)
    first, _ = pde.generate(3, np.random.default_rng(3))
    second, _ = pde.generate(3, np.random.default_rng(3))
    third, _ = pde.generate(3, np.random.default_rng(4))
    for name in ("u", "dt", "dx", "L", "t0"):
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.allclose(first["u"], third["u"])


def test_dataset_round_trip(tmp_path):
    pde = tiny(n_steps=5)
    sizes = {"train": 4, "val": 2, "test": 0}
    files = generate_dataset(pde, tmp_path / "ks", sizes, seed=7, chunk_size=2, progress=False)
    assert [f.name for f in files] == ["train.h5", "val.h5"]
    info = inspect_file(files[0])
    assert info.attrs["pde"] == "ks" and info.attrs["inputs"] == "u dt dx" and info.attrs["targets"] == "u"
    assert info.n_samples == 4

    # the file holds what the generator produces for the same chunk seeds (as float32)
    expected = []
    for start in (0, 2):
        rng = np.random.default_rng(np.random.SeedSequence([7, 0, start]))
        expected.append(pde.generate(2, rng)[0])
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        assert ds["u"].dims == ("sample", "time", "x") and ds["u"].shape == (4, 5, 32)
        for name in ("u", "dt", "dx", "L", "t0"):
            stored = np.concatenate([e[name] for e in expected]).astype(np.float32)
            np.testing.assert_array_equal(ds[name].values, stored)
        np.testing.assert_allclose(ds["x"].values, np.arange(32) / 32)
        np.testing.assert_array_equal(ds["time"].values, np.arange(5))
        # physical coordinates: x * L and t0 + time * dt (per sample)
        x_physical = ds["x"] * ds["L"]
        assert set(x_physical.dims) == {"sample", "x"}
        np.testing.assert_allclose(x_physical.isel(x=1).values, ds["dx"].values, rtol=1e-6)
        assert set((ds["t0"] + ds["time"] * ds["dt"]).dims) == {"sample", "time"}

    # one-step pairs for an autoregressive model: state i -> state i + 1, with dt and dx as channels
    data = FieldDataset(split_files(tmp_path / "ks", "train"), ["u", "dt", "dx"], ["u"], input_time=2, target_time=3)
    sample = data[1]
    assert sample["x"].shape == (3, 32) and sample["y"].shape == (1, 32)
    np.testing.assert_array_equal(sample["x"][0].numpy(), expected[0]["u"][1, 2].astype(np.float32))
    np.testing.assert_array_equal(sample["y"][0].numpy(), expected[0]["u"][1, 3].astype(np.float32))
    np.testing.assert_array_equal(sample["x"][1].numpy(), np.float32(expected[0]["dt"][1]))


def test_sharded_generation_equals_unsharded(tmp_path):
    pde = tiny(n_steps=2)
    whole = generate_dataset(pde, tmp_path / "whole", {"train": 4}, seed=1, chunk_size=2, progress=False)[0]
    parts = [
        generate_dataset(pde, tmp_path / "parts", {"train": 4}, seed=1, shard=s, num_shards=2, chunk_size=2,
                         progress=False)[0]
        for s in (0, 1)
    ]
    with xr.open_dataset(whole, engine="h5netcdf") as a:
        joined = np.concatenate([xr.open_dataset(p, engine="h5netcdf")["u"].values for p in parts])
        np.testing.assert_array_equal(a["u"].values, joined)


def test_validation():
    with pytest.raises(ValueError, match="multiple"):
        KuramotoSivashinsky(resolution=100, solver_resolution=256)
    with pytest.raises(ValueError, match="wavenumber"):
        KuramotoSivashinsky(resolution=16, max_wavenumber=8)
    with pytest.raises(ValueError, match="spread"):
        KuramotoSivashinsky(length_spread=1.5)
    assert KuramotoSivashinsky(resolution=48).solver_resolution == 288  # smallest multiple >= 256
    assert KuramotoSivashinsky(resolution=512).solver_resolution == 512
    with pytest.raises(ValueError, match="shape"):
        tiny().solve({"u": np.zeros((2, 16))})


def test_default_configuration_batch():
    pde = KuramotoSivashinsky()
    fields, report = pde.generate(8, np.random.default_rng(0))
    u = fields["u"]
    assert u.shape == (8, 140, 256) and np.all(np.isfinite(u))
    assert report.iterations[0] == 2000 + 139 * 16
    # chaotic attractor at L ~ 64: order-one fluctuations, zero mean, no blow-up
    assert 0.8 < u.std() < 2.0 and np.abs(u).max() < 6.0
    np.testing.assert_allclose(u.mean(axis=-1), 0.0, atol=1e-12)
