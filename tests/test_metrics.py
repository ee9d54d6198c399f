import math

import numpy as np
import pytest
import torch

from surrogates import metrics


def _grid_field(n: int, fn) -> torch.Tensor:
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    return fn(X, Y)[None, None]


def test_relative_l2_matches_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(3, 2, 8, 8)), rng.normal(size=(3, 2, 8, 8))
    expected = [np.linalg.norm(p[i] - t[i]) / np.linalg.norm(t[i]) for i in range(3)]
    got = metrics.relative_l2(torch.from_numpy(p), torch.from_numpy(t))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_relative_l2_is_zero_for_exact_and_scale_invariant():
    t = torch.randn(2, 1, 16)
    assert torch.all(metrics.relative_l2(t, t) == 0)  # t - t is exactly zero
    # float32: the rounding of 1.1 and of 1.1 t (2 u32 of 1.1 |t|, 22 u32 of the 0.1 |t| difference) and
    # two norms of 16 terms (16 u32): ~40 u32 = 2.4e-6 relative at most
    np.testing.assert_allclose(metrics.relative_l2(1.1 * t, t).numpy(), 0.1, rtol=1e-5)
    np.testing.assert_allclose(metrics.relative_l2(110 * t, 100 * t).numpy(), 0.1, rtol=1e-5)


def test_relative_h1_approaches_closed_form():
    # e = target * 0.1 with target = sin(pi x) sin(pi y): relative H1 error is exactly 0.1.
    target = _grid_field(129, lambda X, Y: torch.sin(math.pi * X) * torch.sin(math.pi * Y))
    np.testing.assert_allclose(metrics.relative_h1(1.1 * target, target).numpy(), 0.1, rtol=1e-10)
    # A perturbation with a large gradient but small amplitude: H1 sees it much more than L2.
    target = _grid_field(257, lambda X, Y: torch.sin(math.pi * X) * torch.sin(math.pi * Y))
    wiggle = _grid_field(257, lambda X, Y: 1e-3 * torch.sin(10 * math.pi * X))
    l2 = metrics.relative_l2(target + wiggle, target).item()
    h1 = metrics.relative_h1(target + wiggle, target).item()
    assert h1 > 3 * l2
    # Closed form: ||w||^2 = 1e-6/2, ||w_x||^2 = (10 pi 1e-3)^2 / 2, ||u||^2 = 1/4, ||grad u||^2 = pi^2/2
    expected = math.sqrt((1e-6 / 2 + (10 * math.pi * 1e-3) ** 2 / 2) / (0.25 + math.pi**2 / 2))
    assert h1 == pytest.approx(expected, rel=0.01)


def test_relative_h1_wraps_around_periodic_dims():
    # Periodic grid x_j = j / n. Central differences of cos(2 pi k x) give -sin(2 pi k h) / h sin(2 pi k x),
    # and sum_j cos^2 = sum_j sin^2 = n / 2 (0 < k < n / 2), so for target cos(2 pi x) and error
    # eps cos(2 pi m x) the discrete ratio is exactly eps sqrt((1 + s_m^2) / (1 + s_1^2)), s_k = sin(2 pi k h) / h.
    # One-sided differences at the two ends were 7.6% off here. float64, 16 terms per sum: a few
    # tens of eps64 ~ 1e-14 relative; rtol 1e-12.
    n, m, eps = 16, 5, 0.1
    x = torch.arange(n, dtype=torch.float64) / n
    target = torch.cos(2 * math.pi * x)[None, None]
    pred = target + eps * torch.cos(2 * math.pi * m * x)[None, None]
    s = [n * math.sin(2 * math.pi * k / n) for k in (1, m)]
    expected = eps * math.sqrt((1 + s[1] ** 2) / (1 + s[0] ** 2))
    np.testing.assert_allclose(metrics.relative_h1(pred, target, periodic=[True]).numpy(), expected, rtol=1e-12)
    # a circular shift of both fields changes only the summation order: same value to a few n eps64
    target2, pred2 = torch.randn(2, 1, 12, 10, dtype=torch.float64).unbind(0)
    h1 = metrics.relative_h1(pred2[None], target2[None], spacing=[0.1, 0.3], periodic=[True, False])
    shifted = metrics.relative_h1(pred2.roll(5, 1)[None], target2.roll(5, 1)[None], [0.1, 0.3], [True, False])
    np.testing.assert_allclose(shifted.numpy(), h1.numpy(), rtol=1e-12)
    # the default spacing of a periodic dim is 1 / n (unit period), of a bounded one 1 / (n - 1)
    torch.testing.assert_close(metrics.relative_h1(pred, target, periodic=[True]),
                               metrics.relative_h1(pred, target, [1 / n], [True]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="one periodic flag per spatial dim"):
        metrics.relative_h1(pred, target, periodic=[True, False])


def test_vrmse_of_mean_prediction_is_one():
    t = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    mean = t.mean(dim=(2, 3), keepdim=True).expand_as(t)
    # float32 sums of n = 100 terms for the mse and the variance: each within n eps32 / 2 relative, the ratio's
    # square root within n eps32 / 2 = 6e-6; The Well's 1e-7 on variances of ~1 (>= 0.3 here) adds < 2e-7
    np.testing.assert_allclose(metrics.vrmse(mean, t).numpy(), 1.0, rtol=100 * torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("scale", [1.0, 10**-3.5])
def test_vrmse_is_the_well_s_formula(scale):
    """sqrt(mse / (var + 1e-7)) per sample and channel, averaged over channels, against numpy in float64: at unit
    scale the 1e-7 moves the value by ~5e-8 relative, at fields of variance ~1e-7 it halves the ratio; a 1e-6 or
    a biased variance would be off by far more than the float64 rounding (a few n eps64, n = 80)."""
    rng = np.random.default_rng(3)
    t = scale * rng.normal(size=(3, 2, 8, 10))
    p = t + 0.3 * scale * rng.normal(size=t.shape)
    mse = ((p - t) ** 2).mean(axis=(2, 3))
    var = ((t - t.mean(axis=(2, 3), keepdims=True)) ** 2).mean(axis=(2, 3))
    expected = np.sqrt(mse / (var + 1e-7)).mean(axis=1)
    got = metrics.vrmse(torch.from_numpy(p), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    if scale == 1.0:  # and the regulariser is visible only through the formula: 1e-7 / var ~ 1e-7
        assert np.all(np.abs(got / np.sqrt(mse / var).mean(axis=1) - 1) < 1e-6)


def test_pearson_identical_negated_shifted():
    t = torch.randn(2, 1, 64)
    # float32 sums of n = 64 terms (the covariance and two norms, torch's summation order): each within
    # gamma_n ~ n eps32 / 2 relative, so the ratio within n eps32 = 7.6e-6 of +-1 (the rounding of 3 t + 5
    # and of the means only enters at second order)
    rtol = t.shape[-1] * torch.finfo(torch.float32).eps
    np.testing.assert_allclose(metrics.pearson_correlation(t, t).numpy(), 1.0, rtol=rtol)
    np.testing.assert_allclose(metrics.pearson_correlation(-t, t).numpy(), -1.0, rtol=rtol)
    np.testing.assert_allclose(metrics.pearson_correlation(3 * t + 5, t).numpy(), 1.0, rtol=rtol)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="differs from target shape"):
        metrics.relative_l2(torch.zeros(2, 1, 4), torch.zeros(2, 1, 5))


# -- rollout metrics ---------------------------------------------------------------------------------


def _sine_rollout(shifts: torch.Tensor, n: int = 128) -> torch.Tensor:
    """One trajectory (1, T, n) of sin(x + shift_t) on a periodic grid."""
    x = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    return torch.sin(x[None] + shifts[:, None])[None]


def test_rollout_correlation_identical_and_negated():
    target = torch.randn(3, 7, 32, dtype=torch.float64)
    corr = metrics.rollout_correlation(target, target)
    assert corr.shape == (3, 7)
    np.testing.assert_allclose(corr.numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(metrics.rollout_correlation(-target, target).numpy(), -1.0, rtol=1e-12)
    # invariant to affine changes of the prediction; channels and 2D grids are pooled per step
    np.testing.assert_allclose(metrics.rollout_correlation(2 * target + 3, target).numpy(), 1.0, rtol=1e-12)
    fields = torch.randn(2, 4, 3, 8, 8)
    assert metrics.rollout_correlation(fields, fields + 0.1 * torch.randn_like(fields)).shape == (2, 4)


def test_high_correlation_time_of_identical_and_negated_rollouts():
    target = torch.randn(3, 10, 32)
    dt = torch.tensor([0.8, 0.75, 0.9])
    np.testing.assert_allclose(metrics.high_correlation_time(target, target, dt).numpy(), (10 * dt).numpy())
    np.testing.assert_array_equal(metrics.high_correlation_time(-target, target, dt, threshold=0.9).numpy(), 0.0)
    np.testing.assert_allclose(metrics.high_correlation_time(target, target, 0.5).numpy(), 5.0)  # a shared dt


def test_shifted_sine_has_correlation_cos_shift():
    shifts = torch.linspace(0.0, math.pi, 9, dtype=torch.float64)
    pred, target = _sine_rollout(shifts), _sine_rollout(torch.zeros(9, dtype=torch.float64))
    corr = metrics.rollout_correlation(pred, target)[0]
    np.testing.assert_allclose(corr.numpy(), torch.cos(shifts).numpy(), atol=1e-12)
    # cos(shift) >= 0.8 while shift <= acos(0.8) = 0.6435: steps 0..1 (shifts 0, 0.39); 0.9 -> acos 0.4510: same
    expected = {0.8: 2, 0.9: 2, 0.95: 1}
    for threshold, steps in expected.items():
        assert metrics.correlation_time(corr[None], threshold, 0.8).item() == pytest.approx(0.8 * steps)


def test_high_correlation_time_is_the_first_crossing():
    # correlation dips below the threshold at step 3, recovers to 1 afterwards
    shifts = torch.tensor([0.0, 0.1, 0.2, 1.2, 0.0, 0.0, 0.0], dtype=torch.float64)
    pred, target = _sine_rollout(shifts), _sine_rollout(torch.zeros(7, dtype=torch.float64))
    corr = metrics.rollout_correlation(pred, target)[0]
    assert corr[3] < 0.8 and torch.all(corr[4:] > 0.999)
    assert metrics.high_correlation_time(pred, target, dt=0.8, threshold=0.8).item() == pytest.approx(3 * 0.8)
    # a curve exactly at the threshold has not fallen below it
    assert metrics.correlation_time(torch.tensor([[0.9, 0.8, 0.79]]), 0.8).item() == 2.0


def test_constant_fields_have_undefined_correlation():
    target = torch.randn(2, 5, 16)
    constant = torch.full_like(target, 0.1)  # float32 round-off of the mean does not fake a correlation
    corr = metrics.rollout_correlation(constant, target)
    assert torch.isnan(corr).all()
    assert torch.isnan(metrics.rollout_correlation(target, constant)).all()
    np.testing.assert_array_equal(metrics.rollout_correlation(constant, target, undefined=0.0).numpy(), 0.0)
    # a prediction that collapses to a constant at step 2 ends the high-correlation time there
    pred = target.clone()
    pred[:, 2] = 3.0
    np.testing.assert_array_equal(metrics.high_correlation_time(pred, target, dt=1.0).numpy(), 2.0)


def test_rollout_mse_and_summary():
    target = torch.randn(2, 6, 16, dtype=torch.float64)
    pred = target + torch.arange(6, dtype=torch.float64)[None, :, None]  # error t at step t
    np.testing.assert_allclose(metrics.rollout_mse(pred, target).numpy(), np.tile(np.arange(6.0) ** 2, (2, 1)))
    out = metrics.rollout_metrics(pred, target, dt=torch.tensor([0.8, 0.7]))
    assert set(out) == {"corr", "mse", "high_corr_time_0.8", "high_corr_time_0.9"}
    assert out["corr"].shape == (2, 6) and out["high_corr_time_0.8"].shape == (2,)
    np.testing.assert_allclose(out["high_corr_time_0.9"].numpy(), [4.8, 4.2])  # a shift keeps correlation 1
    assert "corr" not in metrics.METRICS  # the per-state registry used by evaluation is unchanged
    with pytest.raises(ValueError, match="differs from target shape"):
        metrics.rollout_mse(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="one per trajectory"):
        metrics.correlation_time(torch.ones(2, 3), 0.8, dt=torch.ones(3))


def test_a_blown_up_rollout_ends_the_high_correlation_time():
    target = torch.randn(1, 6, 16)
    pred = target.clone()
    pred[:, 4, 3] = float("inf")
    assert torch.isnan(metrics.rollout_correlation(pred, target, undefined=0.0)[0, 4])
    assert metrics.high_correlation_time(pred, target, dt=0.5).item() == 2.0


def test_error_spectrum_sums_to_the_mse_and_locates_a_sine():
    torch.manual_seed(0)
    for n in (64, 65):
        pred, target = torch.randn(3, 2, n), torch.randn(3, 2, n)
        spectrum = metrics.error_spectrum(pred, target)
        assert spectrum.shape == (n // 2 + 1,)
        torch.testing.assert_close(spectrum.sum(), (pred - target).double().pow(2).mean())
    # float64: in float32 the rounding of x (up to 5 x u32 = 2e-6 in the phase) moves the power at m = 5
    # by up to ~1e-5 relative, above the tolerance; the float64 FFT is accurate to ~log2(n) eps
    x = torch.arange(128, dtype=torch.float64) * 2 * math.pi / 128
    wave = 0.3 * torch.sin(5 * x) + 0.1                        # amplitude 0.3 at m = 5, mean 0.1
    spectrum = metrics.error_spectrum(wave[None], torch.zeros(1, 128))
    expected = torch.zeros(65, dtype=torch.float64)
    expected[0], expected[5] = 0.01, 0.3**2 / 2                # mean^2; a sine's mean square is a^2 / 2
    torch.testing.assert_close(spectrum, expected, atol=1e-9, rtol=1e-6)
    assert metrics.error_spectrum(wave[None], wave[None]).abs().max() == 0


def test_error_spectrum_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differs"):
        metrics.error_spectrum(torch.zeros(2, 8), torch.zeros(2, 9))


@pytest.mark.parametrize("exponent", [66, -80])
def test_metrics_of_fields_of_any_magnitude_equal_those_at_unit_scale(exponent):
    # float32 fields of ~7e19 squared to inf (NaN metrics); fields of ~8e-25 (densities in cgs units) squared to
    # subnormals or 0, and a 10% error scored ~1e-9. Scaling both fields by 2**k is exact in binary floating
    # point, and so is the power-of-two scaling the metrics apply, so every scale-free metric must give the unit
    # scale's value bit for bit, and rmse that value times 2**k. (vrmse adds The Well's absolute 1e-7 to the
    # variance, so it is not scale-free.)
    generator = torch.Generator().manual_seed(5)
    target = torch.randn(3, 2, 12, 10, generator=generator)
    pred = target + 0.1 * torch.randn(3, 2, 12, 10, generator=generator)
    factor = 2.0**exponent
    for name in ("rel_l2", "rel_h1", "nrmse", "pearson"):
        unit = metrics.compute_metric(name, pred, target, periodic=[True, False])
        scaled = metrics.compute_metric(name, pred * factor, target * factor, periodic=[True, False])
        assert torch.equal(scaled, unit), (name, unit, scaled)
    assert torch.equal(metrics.rmse(pred * factor, target * factor), metrics.rmse(pred, target) * factor)
    trajectories = (pred.flatten(1, 2), target.flatten(1, 2))  # (B, T = 24, 10)
    unit = metrics.rollout_correlation(*trajectories)
    assert torch.equal(metrics.rollout_correlation(*(x * factor for x in trajectories)), unit)
    assert bool(((unit > 0.9) & (unit <= 1)).all())
