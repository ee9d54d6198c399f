"""Five-point finite differences for -div(a grad u): symmetry, positivity, the Poisson limit, second order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from surrogates.solvers.finite_differences import (
    diffusion_operator,
    harmonic_mean,
    interior,
    poisson_operator,
    with_boundary,
)


def test_operator_is_symmetric_positive_definite():
    a = np.random.default_rng(0).uniform(0.5, 20.0, size=(10, 10))
    A = diffusion_operator(a)
    assert sp.isspmatrix_csr(A) and A.shape == (64, 64)
    dense = A.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    assert np.linalg.eigvalsh(dense).min() > 0


def test_constant_coefficient_is_the_standard_poisson_matrix():
    s = 7
    m, h = s - 2, 1.0 / (s - 1)
    # independent reference: the textbook 5-point Laplacian, row-major over (x, y)
    reference = np.zeros((m * m, m * m))
    for i in range(m):
        for j in range(m):
            row = i * m + j
            reference[row, row] = 4.0
            for di, dj in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
                if 0 <= i + di < m and 0 <= j + dj < m:
                    reference[row, (i + di) * m + (j + dj)] = -1.0
    reference /= h**2
    np.testing.assert_allclose(poisson_operator(s).toarray(), reference, rtol=1e-14)
    np.testing.assert_allclose(diffusion_operator(np.ones((s, s))).toarray(), reference, rtol=1e-14)
    np.testing.assert_allclose(diffusion_operator(np.full((s, s), 3.0)).toarray(), 3.0 * reference, rtol=1e-14)


def test_face_coefficients_are_harmonic_means_of_the_nodes():
    s = 5
    a = np.ones((s, s))
    a[2:, :] = 12.0  # jump between node rows x_1 and x_2
    A = diffusion_operator(a).toarray()
    h2 = (s - 1) ** 2
    m = s - 2
    # unknown (1, 1) couples to (2, 1) through the face between a = 1 and a = 12
    assert A[0 * m + 0, 1 * m + 0] == pytest.approx(-harmonic_mean(1.0, 12.0) * h2)
    assert harmonic_mean(np.array(3.0), np.array(12.0)) == pytest.approx(4.8)


def _manufactured(s: int) -> float:
    """Max-norm error for u = sin(pi x) sin(pi y) with a = 2 + sin(pi x) cos(2 pi y)."""
    x = np.linspace(0.0, 1.0, s)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pi = np.pi
    u = np.sin(pi * X) * np.sin(pi * Y)
    a = 2.0 + np.sin(pi * X) * np.cos(2 * pi * Y)
    a_x, a_y = pi * np.cos(pi * X) * np.cos(2 * pi * Y), -2 * pi * np.sin(pi * X) * np.sin(2 * pi * Y)
    u_x, u_y = pi * np.cos(pi * X) * np.sin(pi * Y), pi * np.sin(pi * X) * np.cos(pi * Y)
    f = -(a_x * u_x + a_y * u_y) + a * 2 * pi**2 * u  # -div(a grad u)
    u_h = spla.spsolve(diffusion_operator(a).tocsc(), interior(f))
    return float(np.abs(with_boundary(u_h, s) - u).max())


def test_second_order_convergence_on_a_manufactured_solution():
    errors = [_manufactured(s) for s in (17, 33, 65)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 1.8) & (orders < 2.2)), (errors, orders)


def test_interior_and_boundary_round_trip():
    field = np.arange(2 * 36, dtype=float).reshape(2, 6, 6)
    inner = interior(field)
    assert inner.shape == (2, 16)
    back = with_boundary(inner, 6)
    np.testing.assert_array_equal(back[:, 1:-1, 1:-1], field[:, 1:-1, 1:-1])
    assert np.all(back[:, [0, -1], :] == 0) and np.all(back[:, :, [0, -1]] == 0)


def test_invalid_coefficients_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        diffusion_operator(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="shape"):
        diffusion_operator(np.ones((2, 2)))
