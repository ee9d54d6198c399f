"""Nonintrusive log-determinants and inverses (EIM on the powers): bounds, convergence, interpolation, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from surrogates.pdes.gaussian_bump import GaussianBump
from surrogates.pdes.thermal_block import ThermalBlock
from surrogates.solvers.reduced_basis import PowerLimitsEIM
from surrogates.solvers.reduced_basis.polynomial_basis import ChebyshevProducts, total_degree_exponents
from surrogates.solvers.reduced_basis.series_bounds import inverse_truncation_bound, log_truncation_bound

from .conftest import x_norm

EPS = np.finfo(float).eps
SMALL = {"eim_training_size": 30, "eim_check_size": 10}


def build(problem, degree, **options):
    return PowerLimitsEIM(degree=degree, **{**SMALL, **options}).build(problem)


@pytest.fixture(scope="module")
def tb():
    """Thermal block 2 x 2 on 10 x 10 nodes (64 unknowns): exact values from dense matrices."""
    return ThermalBlock(resolution=10)


@pytest.fixture(scope="module")
def models(tb):
    return {K: build(tb, K) for K in (2, 5)}


@pytest.fixture(scope="module")
def queries(tb):
    return tb.parameter_space.sample_uniform(12, np.random.default_rng(7))


def exact(problem, mus):
    """Dense ``log det A(mu)`` and ``A(mu)^-1 b(mu)``."""
    logdets, solutions = [], []
    for mu in mus:
        A = problem.operator(mu).toarray()
        sign, logdet = np.linalg.slogdet(A)
        assert sign > 0
        logdets.append(logdet)
        solutions.append(np.linalg.solve(A, problem.rhs(mu)))
    return np.array(logdets), np.array(solutions)


# -- truncation bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [(0.1, 1.0), (1.0, 3.0), (2.0, 2.5)])
@pytest.mark.parametrize("degree", [0, 3, 8])
def test_chebyshev_truncation_bounds_hold(a, b, degree):
    """The tail sums bound the error of the truncated Chebyshev series (coefficients from a degree-200 interpolant)."""
    x = np.linspace(a, b, 4001)
    t = (2 * x - (a + b)) / (b - a)
    for f, bound in ((np.log, log_truncation_bound), (np.reciprocal, inverse_truncation_bound)):
        coefficients = chebyshev.chebinterpolate(lambda s, f=f: f((b - a) / 2 * s + (a + b) / 2), 200)
        error = np.abs(f(x) - chebyshev.chebval(t, coefficients[: degree + 1])).max()
        assert error <= bound(a, b, degree) * (1 + 1e-10) + 100 * EPS * np.abs(f(x)).max()


@pytest.mark.parametrize("degree", [1, 4, 10])
def test_neumann_truncation_bounds_hold(degree):
    """The paper's power series: log x = log w - sum_k (1 - x/w)^k / k and 1/x = sum_k (1 - x/w)^k / w."""
    a, b = 0.3, 2.0
    w = (a + b) / 2
    x = np.linspace(a, b, 2001)
    B = 1 - x / w
    log_series = np.log(w) - sum(B**k / k for k in range(1, degree + 1))
    inv_series = sum(B**k for k in range(degree + 1)) / w
    assert np.abs(np.log(x) - log_series).max() <= log_truncation_bound(a, b, degree, "neumann") * (1 + 1e-12)
    assert np.abs(1 / x - inv_series).max() <= inverse_truncation_bound(a, b, degree, "neumann") * (1 + 1e-12)
    assert log_truncation_bound(a, b, degree) < log_truncation_bound(a, b, degree, "neumann")


def test_bounds_refuse_bad_intervals():
    with pytest.raises(ValueError, match="0 < a <= b"):
        log_truncation_bound(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="0 < a <= b"):
        inverse_truncation_bound(2.0, 1.0, 3)
    with pytest.raises(ValueError, match="series"):
        log_truncation_bound(1.0, 2.0, 3, "taylor")
    with pytest.raises(ValueError, match="degree"):
        log_truncation_bound(1.0, 2.0, -1)


def test_total_degree_basis_counts_and_values():
    from math import comb

    assert len(total_degree_exponents(4, 5)) == comb(9, 4)
    basis = ChebyshevProducts.on_box(np.array([0.0, -1.0]), np.array([2.0, 1.0]), 3)
    y = np.array([[0.5, 0.2], [2.0, -1.0]])
    x = y - [1.0, 0.0]
    T = [[chebyshev.chebval(x[i, d], np.eye(4)[n]) for d in range(2) for n in range(4)] for i in range(2)]
    expected = [[T[i][a[0]] * T[i][4 + a[1]] for a in basis.exponents] for i in range(2)]
    np.testing.assert_allclose(basis(y), expected, rtol=0, atol=10 * EPS)


# -- the defining properties -------------------------------------------------------------------------
@pytest.mark.parametrize("degree", [2, 5])
@pytest.mark.parametrize("series", ["chebyshev", "neumann"])
def test_log_det_bound_holds(tb, models, queries, degree, series):
    model = dataclasses.replace(models[degree], series=series)
    logdets, _ = exact(tb, queries)
    estimate = model.log_det(queries)
    error = np.abs(estimate.value - logdets)
    assert np.all(error <= estimate.bound)
    assert np.all(estimate.lebesgue >= 1 - 1e-12)  # sum lambda = 1
    # the value alone (O(D)) is the same number as lambda . (log det A(mu_j) - g_j) + sum_u m_u log c_u(mu)
    fast = model.log_det(queries, bound=False)
    assert fast.bound is None
    lam = model.power_weights(queries)
    clusters = np.log(model.operator_weights(queries) @ model.coefficient_rows.T) @ model.multiplicities
    points = np.log(model.operator_weights(model.mus) @ model.coefficient_rows.T) @ model.multiplicities
    expected = lam @ (model.log_dets - points) + clusters
    scale = np.abs(lam) @ (np.abs(model.log_dets) + np.abs(points)) + np.abs(clusters)
    assert np.all(np.abs(fast.value - expected) <= 4 * model.size * EPS * scale)


def test_inverse_bound_holds(tb, models, queries):
    """||u - A^-1 b||_X <= bound at every query."""
    _, solutions = exact(tb, queries)
    for model in models.values():
        u, bound = model.solve(queries)
        assert np.all(x_norm(tb, u - solutions) <= bound)


def test_inverse_and_log_det_converge_with_the_degree():
    """On a narrower box (spectral ratio 2) the degree-5 bound is below the degree-2 error: convergence, proven."""
    problem = ThermalBlock(resolution=10, mu_min=0.5)
    mus = problem.parameter_space.sample_uniform(8, np.random.default_rng(3))
    logdets, solutions = exact(problem, mus)
    low, high = build(problem, 2), build(problem, 5)
    u_low, _ = low.solve(mus)
    u_high, bound_high = high.solve(mus)
    assert bound_high.max() < x_norm(problem, u_low - solutions).max()
    assert np.all(x_norm(problem, u_high - solutions) <= bound_high)
    estimate = high.log_det(mus)
    assert estimate.bound.max() < np.abs(low.log_det(mus).value - logdets).max()
    assert np.all(np.abs(estimate.value - logdets) <= estimate.bound)


def _weights_roundoff(model, values):
    """Componentwise round-off bound of lambda = C B^-1 v (triangular solve: backward error D eps |B|)."""
    B, C = model.powers.interpolation_matrix, model.powers.combination
    D = len(B)
    theta = np.abs(model.powers.coefficients(values))
    inverse = np.abs(np.linalg.inv(B))
    return 4 * D * EPS * ((theta @ (inverse @ np.abs(B)).T) @ np.abs(C).T + theta @ np.abs(C).T)


def test_power_eim_interpolation_property(tb, models, queries):
    """lambda(mu_j) = e_j at the power points, and sum_j lambda_j phi(mu_j) = phi(mu) for every feature."""
    model = models[5]
    D = model.size
    assert D == model.features.size  # the greedy keeps all binom(K + M, M) polynomials: powers reproduced exactly
    points = model.features(model.operator_weights(model.mus))
    at_points = model.power_weights(model.mus)
    assert np.all(np.abs(at_points - np.eye(D)) <= _weights_roundoff(model, points[:, model.powers.magic]))
    values = model.features(model.operator_weights(queries))
    lam = model.power_weights(queries)
    slack = _weights_roundoff(model, values[:, model.powers.magic])
    bound = (slack + 4 * D * EPS * np.abs(lam)) @ np.abs(points)
    assert np.all(np.abs(lam @ points - values) <= bound)
    assert np.all(np.abs(lam.sum(axis=1) - 1.0) <= bound[:, 0])  # phi_0 = 1: the weights sum to one


def test_operator_eim_is_exact_for_the_affine_block(tb, models, queries):
    model = models[2]
    assert model.system.operator.size == 4 and model.info["operator_eim_terms"] == 4
    beta = model.operator_weights(queries)
    for mu, w in zip(queries[:3], beta[:3]):
        combined = sum(wm * tb.operator(m) for wm, m in zip(w, model.system.operator.mus))
        assert abs(combined - tb.operator(mu)).max() <= 16 * EPS * abs(tb.operator(mu)).max() * np.abs(w).sum()


def test_spectral_interval_contains_the_spectrum(tb, models, queries):
    """[a, b] holds the eigenvalues of X^-1/2 A(mu) X^-1/2 (generalized eigenvalues of (A, X))."""
    from scipy.linalg import eigh

    model = models[2]
    a, b = model.spectral_interval(model.operator_weights(queries))
    X = tb.product.toarray()
    for mu, lo, hi in zip(queries, a, b):
        ev = eigh(tb.operator(mu).toarray(), X, eigvals_only=True)
        assert lo * (1 - 1e-12) <= ev.min() and ev.max() <= hi * (1 + 1e-12)


def test_p1_discretization(queries):
    problem = ThermalBlock(resolution=8, discretization="p1")
    model = build(problem, 3, with_inverse=False)
    logdets, _ = exact(problem, queries[:4])
    estimate = model.log_det(queries[:4])
    assert np.all(np.abs(estimate.value - logdets) <= estimate.bound)
    with pytest.raises(ValueError, match="without inverse"):
        model.solve(queries[:1])


# -- clear errors ---------------------------------------------------------------------------------------
class _IndefiniteBlock(ThermalBlock):
    """A coefficient that changes sign over the parameter box."""

    def coefficient(self, points, mus):
        return super().coefficient(points, mus) - 0.5

    def coefficient_lower_bound(self, mus):
        return np.atleast_2d(mus).min(axis=1) - 0.5


def test_refuses_non_affine_and_non_spd():
    with pytest.raises(ValueError, match="not affine"):
        PowerLimitsEIM(degree=2, max_affine_terms=6, **SMALL).build(GaussianBump(resolution=9))
    with pytest.raises(ValueError, match="not SPD"):
        PowerLimitsEIM(degree=2, **SMALL).build(_IndefiniteBlock(resolution=8))


def test_bad_settings_and_queries(models):
    with pytest.raises(ValueError, match="degree"):
        PowerLimitsEIM(degree=0)
    with pytest.raises(ValueError, match="series"):
        PowerLimitsEIM(series="taylor")
    model = models[2]
    with pytest.raises(ValueError, match="outside the domain"):
        model.log_det([[2.0, 0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="finite"):
        model.log_det([[np.nan, 0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="shape"):
        model.solve([[0.5, 0.5]])
