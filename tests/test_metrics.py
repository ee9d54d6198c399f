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
    assert torch.all(metrics.relative_l2(t, t) == 0)
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


def test_vrmse_of_mean_prediction_is_one():
    t = torch.randn(4, 3, 10, 10)
    mean = t.mean(dim=(2, 3), keepdim=True).expand_as(t)
    np.testing.assert_allclose(metrics.vrmse(mean, t).numpy(), 1.0, rtol=1e-4)


def test_pearson_identical_negated_shifted():
    t = torch.randn(2, 1, 64)
    np.testing.assert_allclose(metrics.pearson_correlation(t, t).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.pearson_correlation(-t, t).numpy(), -1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.pearson_correlation(3 * t + 5, t).numpy(), 1.0, rtol=1e-6)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="differs from target shape"):
        metrics.relative_l2(torch.zeros(2, 1, 4), torch.zeros(2, 1, 5))
