"""Nine-point Mehrstellen Poisson operator: structure, definiteness, fourth-order convergence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from surrogates.solvers.finite_differences import interior, poisson_operator
from surrogates.solvers.stencils import mehrstellen_rhs, poisson_operator_9point

PI = np.pi


def grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 1.0, s)
    return np.meshgrid(x, x, indexing="ij")


def test_symmetric_positive_definite_with_known_spectrum():
    s = 12
    A = poisson_operator_9point(s)
    m, h = s - 2, 1.0 / (s - 1)
    # centre, 4 edge neighbours and 4 corner neighbours where they are interior
    assert A.shape == (m * m, m * m) and A.nnz == m * m + 4 * m * (m - 1) + 4 * (m - 1) ** 2
    dense = A.toarray()
    assert np.array_equal(dense, dense.T)
    # sine modes diagonalize it: [20 - 8 (cos a + cos b) - 4 cos a cos b] / (6 h^2)
    c = np.cos(PI * np.arange(1, m + 1) * h)
    expected = np.sort(((20 - 8 * (c[:, None] + c[None, :]) - 4 * c[:, None] * c[None, :]) / (6 * h * h)).ravel())
    eigenvalues = np.linalg.eigvalsh(dense)
    np.testing.assert_allclose(eigenvalues, expected, rtol=1e-12)
    assert eigenvalues.min() > 0


def test_rows_consistent_with_laplacian():
    """On a quadratic with zero fourth derivatives the stencil is exact, like the 5-point one."""
    s = 9
    X, Y = grid(s)
    u = X * X + 3 * X * Y - Y * Y + X  # Laplacian 0
    b = mehrstellen_rhs(np.zeros((s, s)), boundary_values=u)
    np.testing.assert_allclose(spla.spsolve(poisson_operator_9point(s).tocsc(), b), interior(u), atol=1e-12)


CASES = {
    # u, f = -Laplacian u
    "sine, zero boundary": (
        lambda x, y: np.sin(PI * x) * np.sin(2 * PI * y),
        lambda x, y: 5 * PI**2 * np.sin(PI * x) * np.sin(2 * PI * y),
    ),
    "exponential, Dirichlet data": (
        lambda x, y: np.exp(x) * np.cos(2 * y) + x * y,
        lambda x, y: 3 * np.exp(x) * np.cos(2 * y),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fourth_order_convergence(case):
    u, f = CASES[case]
    errors = []
    for s in (9, 17, 33, 65):
        b = mehrstellen_rhs(f, s, boundary_values=u)
        u_h = spla.spsolve(poisson_operator_9point(s).tocsc(), b)
        errors.append(np.abs(u_h - interior(u(*grid(s)))).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), orders


def test_without_correction_only_second_order():
    """The right-hand-side correction is what makes the scheme fourth order."""
    u, f = CASES["sine, zero boundary"]
    errors = []
    for s in (17, 33):
        u_h = spla.spsolve(poisson_operator_9point(s).tocsc(), interior(f(*grid(s))))
        errors.append(np.abs(u_h - interior(u(*grid(s)))).max())
    assert 1.8 < np.log2(errors[0] / errors[1]) < 2.2


def test_rhs_array_and_callable_agree():
    s = 11
    f = lambda x, y: np.cos(x) + y**2  # noqa: E731
    np.testing.assert_allclose(mehrstellen_rhs(f(*grid(s))), mehrstellen_rhs(f, s))
    np.testing.assert_allclose(mehrstellen_rhs(lambda x, y: 2.0, s), np.full((s - 2) ** 2, 2.0))
    with pytest.raises(ValueError):
        mehrstellen_rhs(f)  # s is needed for a callable
    with pytest.raises(ValueError):
        poisson_operator_9point(2)


def test_same_scale_as_five_point():
    """Both discretize -Laplacian: on a smooth field they agree to O(h^2)."""
    s = 65
    u = lambda x, y: np.sin(PI * x) * np.sin(PI * y)  # noqa: E731
    v = interior(u(*grid(s)))
    nine, five = poisson_operator_9point(s) @ v, poisson_operator(s) @ v
    assert np.abs(nine - five).max() < 1e-2 * np.abs(five).max()
