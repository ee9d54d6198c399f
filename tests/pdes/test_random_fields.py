"""Gaussian random fields: shapes, reproducibility, zero mean and the prescribed covariance."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.pdes.random_fields import covariance_eigenvalues, gaussian_random_field


def _trapezoid_weights(s: int) -> np.ndarray:
    w = np.full(s, 1.0 / (s - 1))
    w[[0, -1]] /= 2
    return w


@pytest.mark.parametrize(
    ("dim", "boundary", "shape"),
    [(1, "neumann", (5, 17)), (2, "neumann", (5, 17, 17)), (1, "periodic", (5, 17)), (2, "periodic", (5, 17, 17))],
)
def test_shapes_and_dtype(dim, boundary, shape):
    u = gaussian_random_field(5, 17, 2.0, 3.0, np.random.default_rng(0), dim=dim, boundary=boundary)
    assert u.shape == shape
    assert u.dtype == np.float64
    assert np.all(np.isfinite(u))


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_same_seed_same_fields_and_other_seed_other_fields(boundary):
    def draw(seed):
        return gaussian_random_field(3, 16, 2.0, 3.0, np.random.default_rng(seed), boundary=boundary)

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.allclose(draw(7), draw(8))


def test_every_sample_has_zero_spatial_mean():
    rng = np.random.default_rng(1)
    # the trapezoidal rule integrates every cosine mode 1..s-1 exactly to zero on the node grid
    u = gaussian_random_field(10, 21, 2.0, 3.0, rng, boundary="neumann")
    w = _trapezoid_weights(21)
    np.testing.assert_allclose(np.einsum("nij,i,j->n", u, w, w), 0.0, atol=1e-12)
    u = gaussian_random_field(10, 32, 2.0, 5.0, rng, dim=1, boundary="periodic", sigma=25.0)
    np.testing.assert_allclose(u.mean(axis=1), 0.0, atol=1e-12)


def test_ensemble_mean_is_zero_within_sampling_error():
    n = 4000
    u = gaussian_random_field(n, 9, 2.0, 3.0, np.random.default_rng(2))
    standard_error = u.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(u.mean(axis=0)) < 5 * standard_error)


def test_neumann_mode_variances_match_the_fno_covariance():
    # FNO's GRF.m for Darcy: coefficients tau^(alpha-1) (pi^2 |k|^2 + tau^2)^(-alpha/2) on the cosine basis
    n, s, alpha, tau = 4000, 17, 2.0, 3.0
    u = gaussian_random_field(n, s, alpha, tau, np.random.default_rng(3))
    x = np.linspace(0.0, 1.0, s)
    w = _trapezoid_weights(s)
    for k1, k2 in [(1, 0), (0, 1), (1, 1), (2, 3), (5, 2)]:
        # orthonormal cosine mode; the trapezoidal inner product is exact for modes below s - 1
        phi = np.outer(np.sqrt(2.0) * np.cos(np.pi * k1 * x), np.sqrt(2.0) * np.cos(np.pi * k2 * x))
        phi /= np.sqrt(2.0) ** ((k1 == 0) + (k2 == 0))
        coefficient = np.einsum("nij,ij,i,j->n", u, phi, w, w)
        expected = tau ** (2 * (alpha - 1)) * (np.pi**2 * (k1**2 + k2**2) + tau**2) ** (-alpha)
        # relative standard error of a sample variance: sqrt(2 / n) ~ 2.2%
        assert coefficient.var() / expected == pytest.approx(1.0, abs=5 * np.sqrt(2.0 / n))


def test_neumann_pointwise_variance_matches_the_karhunen_loeve_sum():
    n, s = 4000, 9
    u = gaussian_random_field(n, s, 2.0, 3.0, np.random.default_rng(4))
    eig = covariance_eigenvalues(s, 2.0, 3.0)
    x = np.linspace(0.0, 1.0, s)
    k = np.arange(s)
    phi = np.where(k == 0, 1.0, np.sqrt(2.0))[:, None] * np.cos(np.pi * k[:, None] * x[None, :])
    variance = np.einsum("ab,ai,bj->ij", eig, phi**2, phi**2)
    np.testing.assert_allclose(u.var(axis=0) / variance, 1.0, atol=5 * np.sqrt(2.0 / n))


def test_periodic_spectrum_matches_the_burgers_initial_condition_law():
    # FNO's Burgers: u0 ~ N(0, 625 (-Laplacian + 25 I)^-2), i.e. E|u_hat_k|^2 = 625 ((2 pi k)^2 + 25)^-2
    n, s = 4000, 64
    u = gaussian_random_field(n, s, 2.0, 5.0, np.random.default_rng(5), dim=1, boundary="periodic", sigma=25.0)
    power = np.mean(np.abs(np.fft.rfft(u, axis=1) / s) ** 2, axis=0)
    k = np.arange(1, 6)
    expected = 625.0 * ((2 * np.pi * k) ** 2 + 25.0) ** -2
    np.testing.assert_allclose(power[k] / expected, 1.0, atol=5 * np.sqrt(1.0 / n))
    # band-limited: no constant mode and no Nyquist mode
    assert power[0] < 1e-28 and power[-1] < 1e-28


def test_periodic_2d_mode_variance():
    n, s, alpha, tau = 4000, 16, 2.5, 4.0
    u = gaussian_random_field(n, s, alpha, tau, np.random.default_rng(6), dim=2, boundary="periodic", sigma=2.0)
    power = np.mean(np.abs(np.fft.fft2(u) / s**2) ** 2, axis=0)
    for k1, k2 in [(1, 0), (1, 2), (-3, 1)]:
        expected = 4.0 * (4 * np.pi**2 * (k1**2 + k2**2) + tau**2) ** (-alpha)
        assert power[k1, k2] / expected == pytest.approx(1.0, abs=5 * np.sqrt(1.0 / n))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="boundary"):
        gaussian_random_field(1, 8, 2.0, 3.0, np.random.default_rng(0), boundary="dirichlet")
    with pytest.raises(ValueError, match="resolution"):
        gaussian_random_field(1, 1, 2.0, 3.0, np.random.default_rng(0))
