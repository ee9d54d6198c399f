"""ETDRK4: exact linear part, fourth-order accuracy, stiff stability, contour-integral coefficients."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.solvers.etdrk4 import ETDRK4


def _bernoulli(lam: np.ndarray, u0: np.ndarray, t: float) -> np.ndarray:
    """Exact solution of u' = lam u + u^2 (v = 1/u solves v' = -lam v - 1)."""
    lam = np.broadcast_to(lam, u0.shape)
    out = np.empty_like(u0)
    zero = lam == 0
    out[zero] = u0[zero] / (1.0 - u0[zero] * t)
    with np.errstate(over="ignore"):  # exp(-lam t) overflows for very stiff modes: then u = 0
        v = (1.0 / u0[~zero] + 1.0 / lam[~zero]) * np.exp(-lam[~zero] * t) - 1.0 / lam[~zero]
    out[~zero] = 1.0 / v
    return out


def test_linear_part_is_integrated_exactly():
    lam = np.array([0.0, -1.0, -1e4, 3j, -2.0 + 5j])
    v0 = np.ones((2, 5), dtype=complex)
    v = ETDRK4(lam, 0.1).integrate(v0, np.zeros_like, 10)
    np.testing.assert_allclose(v, np.exp(lam * 1.0) * v0, rtol=1e-12, atol=1e-300)


def test_fourth_order_in_time_on_a_batch_including_stiff_and_zero_modes():
    lam = np.array([0.0, -1.0, -3.0, -500.0])
    u0 = np.array([[0.5, 0.5, 0.8, 0.3], [0.2, -0.4, 0.1, 1.0]])
    exact = _bernoulli(lam, u0, 1.0)
    errors = []
    for n_steps in (8, 16, 32, 64):
        u = ETDRK4(lam, 1.0 / n_steps).integrate(u0, lambda v: v**2, n_steps)
        errors.append(np.abs(u - exact).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.7) & (orders < 4.4)), (errors, orders)


def test_stable_for_very_stiff_modes_with_large_steps():
    lam = -np.logspace(0, 8, 9)  # |lam dt| up to 1e7
    u0 = np.full((1, 9), 0.5)
    u = ETDRK4(lam, 0.1).integrate(u0, lambda v: v**2, 10)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u[0, 3:], _bernoulli(lam, u0, 1.0)[0, 3:], atol=1e-10)


def test_complex_operator_is_fourth_order():
    lam = np.array([2j, -1.0 + 4j])
    u0 = np.array([[0.3 + 0.1j, 0.2 - 0.2j]])
    exact = _bernoulli(lam, u0, 1.0)
    errors = [np.abs(ETDRK4(lam, 1.0 / n).integrate(u0, lambda v: v**2, n) - exact).max() for n in (16, 32)]
    assert 3.7 < np.log2(errors[0] / errors[1]) < 4.4


@pytest.mark.parametrize("z", [-0.5, -2.0, -40.0, 1.5, -1.0 + 3.0j])
def test_contour_coefficients_match_the_closed_forms(z):
    stepper = ETDRK4(np.array([z]), 1.0, n_contour=64)  # dt = 1: the coefficients are the phi-functions of z
    e = np.exp(z)
    closed = {
        "Q": (np.exp(z / 2) - 1) / z,
        "f1": (-4 - z + e * (4 - 3 * z + z**2)) / z**3,
        "f2": (2 + z + e * (z - 2)) / z**3,
        "f3": (-4 - 3 * z - z**2 + e * (4 - z)) / z**3,
    }
    for name, value in closed.items():
        np.testing.assert_allclose(getattr(stepper, name)[0], value, rtol=1e-10, err_msg=name)


@pytest.mark.parametrize("z", [0.0, -1e-9, 1e-7])
def test_contour_coefficients_are_accurate_where_the_closed_forms_cancel(z):
    # limits at z = 0: Q = 1/2, f1 = f2 = f3 = 1/6 (first-order corrections are O(z))
    stepper = ETDRK4(np.array([z]), 1.0)
    np.testing.assert_allclose([stepper.Q[0], stepper.f1[0], stepper.f2[0], stepper.f3[0]],
                               [0.5, 1 / 6, 1 / 6, 1 / 6], rtol=1e-6, atol=1e-14)


def test_select_matches_separate_steppers():
    k = np.arange(5)
    linear = -np.array([[0.1], [0.3]]) * k**2
    which = np.array([1, 0, 1])
    v0 = np.random.default_rng(0).standard_normal((3, 5))
    v = ETDRK4(linear, 0.05).select(which).integrate(v0, lambda v: -0.5 * v**2, 20)
    for i, j in enumerate(which):
        single = ETDRK4(linear[j], 0.05).integrate(v0[i : i + 1], lambda v: -0.5 * v**2, 20)
        np.testing.assert_allclose(v[i], single[0], rtol=1e-13)


def test_rejects_non_positive_steps():
    with pytest.raises(ValueError):
        ETDRK4(np.zeros(3), 0.0)
