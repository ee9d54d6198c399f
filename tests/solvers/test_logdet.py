"""Exact sparse log-determinant (symmetric-ordering LU) and the stochastic Lanczos quadrature peer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from surrogates.solvers.logdet import SPDFactor, slq_logdet, sparse_logdet

EPS = np.finfo(float).eps


def laplacian(n: int) -> sp.csr_matrix:
    """5-point Laplacian on an n x n interior grid, plus a random positive diagonal."""
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), dtype=float)
    A = sp.kron(T, sp.eye(n)) + sp.kron(sp.eye(n), T)
    return (A + sp.diags(np.random.default_rng(0).random(n * n))).tocsr()


def test_sparse_logdet_matches_dense_and_solves():
    A = laplacian(9)
    sign, expected = np.linalg.slogdet(A.toarray())
    assert sign > 0
    factor = SPDFactor(A)
    # each of the 81 log-pivots carries a few eps of relative error
    assert abs(factor.logdet - expected) <= 8 * A.shape[0] * EPS * np.abs(np.log(np.linalg.eigvalsh(A.toarray()))).sum()
    b = np.arange(81.0)
    np.testing.assert_allclose(A @ factor.solve(b), b, rtol=0, atol=1e3 * EPS * np.abs(b).max())
    assert sparse_logdet(A) == factor.logdet


def test_sparse_logdet_refuses_bad_input():
    with pytest.raises(ValueError, match="not symmetric positive definite"):
        sparse_logdet(-laplacian(4))
    with pytest.raises(ValueError, match="square"):
        sparse_logdet(sp.random(4, 5, density=0.5, format="csr"))
    bad = laplacian(3)
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sparse_logdet(bad)


@pytest.mark.parametrize(
    "dense",
    [
        [[0.0, 1.0], [1.0, 0.0]],  # det -1: SuperLU pivots off the zero diagonal, and both pivots are 1
        [[1.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0]],  # det -20: pivots 2, 2, 5 after the row swap
    ],
)
def test_symmetric_indefinite_matrix_with_a_zero_diagonal_is_refused(dense):
    """An off-diagonal pivot hides the sign of det A: refused rather than returning log |det A| as log det A."""
    assert np.linalg.slogdet(np.array(dense))[0] < 0
    with pytest.raises(ValueError, match="not symmetric positive definite"):
        SPDFactor(sp.csr_matrix(np.array(dense)))


def test_slq_is_exact_on_a_diagonal_matrix():
    """z^T log(D) z = sum log d_i for Rademacher z, and n Lanczos steps integrate exactly."""
    d = np.linspace(0.5, 3.0, 12)
    D = sp.diags(d).tocsr()
    estimate = slq_logdet(D, 12, probes=3, steps=12, rng=np.random.default_rng(0))
    assert abs(estimate - np.log(d).sum()) <= 100 * 12 * EPS * np.abs(np.log(d)).sum()


def test_slq_estimates_a_laplacian_and_checks_arguments():
    A = laplacian(8)
    exact = np.linalg.slogdet(A.toarray())[1]
    rng = np.random.default_rng(1)
    samples = [slq_logdet(A, 64, probes=1, steps=30, rng=rng) for _ in range(40)]
    # Hutchinson with Rademacher probes: variance 2 sum_{i != j} log(A)_ij^2; mean within 4 standard errors
    L = np.linalg.eigh(A.toarray())
    log_a = (L[1] * np.log(L[0])) @ L[1].T
    std = np.sqrt(2 * ((log_a**2).sum() - (np.diag(log_a) ** 2).sum()))
    assert abs(np.mean(samples) - exact) <= 4 * std / np.sqrt(len(samples)) + 1e-8 * abs(exact)
    with pytest.raises(ValueError, match="probes and steps"):
        slq_logdet(A, 64, probes=0, steps=5, rng=rng)
    with pytest.raises(ValueError, match="not positive definite"):
        slq_logdet(-A, 64, probes=1, steps=5, rng=rng)
