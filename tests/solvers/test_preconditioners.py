"""Jacobi and IC(0): values against dense references, application, scipy operators and errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner, ic0_factor
from surrogates.solvers.preconditioners.jacobi import JacobiPreconditioner
from surrogates.solvers.sparse import SparseMatrix
from tests.solvers.conftest import factored_solve_error_bound


def _dense_ic0(A: sp.spmatrix) -> np.ndarray:
    """Textbook IC(0), entry by entry (small matrices only)."""
    lower = sp.tril(sp.csr_matrix(A)).toarray()
    pattern = lower != 0
    n = lower.shape[0]
    L = np.zeros_like(lower)
    for i in range(n):
        for j in range(i + 1):
            if pattern[i, j]:
                s = lower[i, j] - sum(L[i, k] * L[j, k] for k in range(j) if pattern[i, k] and pattern[j, k])
                L[i, j] = np.sqrt(s) if i == j else s / L[j, j]
    return L


def _random_spd_pattern(n: int = 30, seed: int = 0) -> sp.csr_matrix:
    """An irregular sparsity pattern (fill products appear), diagonally dominant so IC(0) exists."""
    R = sp.random(n, n, density=0.2, random_state=seed)
    S = R + R.T
    return (S + sp.diags(np.asarray(abs(S).sum(axis=1)).ravel() + 1.0)).tocsr()


def _darcy(s: int = 12, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return diffusion_operator(np.where(rng.random((s, s)) > 0.5, 12.0, 3.0))


# -- Jacobi ----------------------------------------------------------------------------------------


def test_jacobi_applies_inverse_diagonal():
    A = _darcy()
    P = JacobiPreconditioner(A)
    r = torch.randn(3, A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # no sums: r * fl(1 / d) and r / d differ by at most three roundings, 1.5 eps = 3.3e-16 relative
    np.testing.assert_allclose(P.apply(r).numpy(), r.numpy() / A.diagonal(), rtol=1e-15)
    np.testing.assert_allclose(P.scipy_operator().matvec(r[0].numpy()), r[0].numpy() / A.diagonal(), rtol=1e-15)


def test_jacobi_batched_matrices_and_float32():
    mats = [_darcy(seed=s) for s in range(3)]
    P = JacobiPreconditioner(SparseMatrix.from_scipy(mats)).to(dtype=torch.float32)
    r = torch.randn(3, mats[0].shape[0])
    expected = r.numpy() / np.stack([m.diagonal() for m in mats])
    out = P.apply(r)
    assert out.dtype == torch.float32
    # no sums: the float64 inverse rounded to float32 and the float32 product, two roundings of u32 = eps32 / 2
    # each against the float64 quotient (its own error ~1e-16): within eps32 (1.2e-7); rtol 2 eps32
    np.testing.assert_allclose(out.numpy(), expected, rtol=2 * torch.finfo(torch.float32).eps)


def test_jacobi_rejects_non_positive_diagonal():
    A = poisson_operator(6).tolil()
    A[4, 4] = -1.0
    with pytest.raises(ValueError, match=r"positive diagonal.*A\[4, 4\]"):
        JacobiPreconditioner(A.tocsr())


# -- IC(0) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: poisson_operator(9), lambda: _darcy(9), _random_spd_pattern])
def test_ic0_factor_matches_textbook(make):
    A = make()
    L = ic0_factor(A)
    assert (L != sp.tril(L)).nnz == 0
    assert abs(abs(L).sign() - abs(sp.tril(A)).sign()).sum() == 0  # the pattern of tril(A)
    np.testing.assert_allclose(L.toarray(), _dense_ic0(A), rtol=1e-13, atol=1e-14)


def test_ic0_is_exact_cholesky_without_fill():
    # a tridiagonal matrix has no fill-in, so IC(0) is the exact Cholesky factor
    n = 20
    A = sp.diags([-np.ones(n - 1), 2.5 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    L = ic0_factor(A).toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(A.toarray()), rtol=1e-13)


def test_ic0_apply_and_scipy_operator_agree():
    A = _darcy()
    P = IC0Preconditioner(A)
    L = P.factors[0].toarray()
    r = torch.randn(4, A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = np.linalg.solve(L @ L.T, r.numpy().T).T
    np.testing.assert_allclose(P.apply(r).numpy(), expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(P.apply(r.T.contiguous().T).numpy(), expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(P.scipy_operator().matvec(r[1].numpy()), expected[1], rtol=1e-10, atol=1e-14)


def test_ic0_batched_matrices_and_float32():
    mats = [_darcy(seed=s) for s in range(3)]
    P = IC0Preconditioner(SparseMatrix.from_scipy(mats))
    r = torch.randn(3, mats[0].shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = P.apply(r)
    for i, A in enumerate(mats):
        one = IC0Preconditioner(A)
        # one block-diagonal solve against one solve per matrix: another kernel call, so the two agree to
        # the triangular solves' rounding error (up to ~1e-12 relative on the smallest entries here)
        bound = 2 * factored_solve_error_bound(one.factors[0].toarray(), r[i].numpy())[0]
        assert np.all(np.abs(out[i].numpy() - one.apply(r[i : i + 1])[0].numpy()) <= bound)
    r32 = r.float()
    exact = P.apply(r32.double())  # the float64 solve of the same rounded input (before P becomes float32)
    out32 = P.to(dtype=torch.float32).apply(r32)
    assert out32.dtype == torch.float32
    for i, A in enumerate(mats):
        # float32 substitutions with the float64 factor rounded to float32: the same bound with unit eps32
        # (the float64 reference's own error is 2^29 times smaller). Measured: below 16% of it.
        bound = factored_solve_error_bound(IC0Preconditioner(A).factors[0].toarray(), r32[i].double().numpy(), 2.0**-23)[0]
        assert np.all(np.abs(out32[i].double().numpy() - exact[i].numpy()) <= bound)


def test_ic0_breakdown_is_reported():
    indefinite = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="non-positive pivot at row 1"):
        ic0_factor(indefinite)
    with pytest.raises(ValueError, match="positive diagonal"):
        ic0_factor(sp.csr_matrix(np.diag([1.0, -1.0])))
    with pytest.raises(ValueError, match="diagonal entry"):
        ic0_factor(sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]])))  # no stored A[1, 1]
    shifted = ic0_factor(indefinite, diagonal_shift=2.0)  # A + 2 diag(A) is diagonally dominant
    assert np.all(shifted.diagonal() > 0)


def test_ic0_factorizes_a_large_grid():
    # 66 564 unknowns; the factorization time is a benchmark figure (tools/bench_pcg.py, setup), not a test
    A = poisson_operator(258)
    L = ic0_factor(A)
    # for the 5-point stencil IC(0) keeps the off-diagonal couplings' pattern and shrinks the pivots
    assert L.nnz == sp.tril(A).nnz and np.all(L.diagonal() > 0)
