"""SparseMatrix: construction, conversions and matvec against scipy (both kernels, both layouts)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.sparse import SparseMatrix, as_sparse_matrix


def _darcy_mats(count: int, s: int = 10, seed: int = 0) -> list[sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    return [diffusion_operator(rng.uniform(1.0, 5.0, (s, s))) for _ in range(count)]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("layout", ["row", "column"])
def test_matvec_matches_scipy(batch, layout):
    A = poisson_operator(12)
    S = SparseMatrix.from_scipy(A)
    x = torch.randn(batch, A.shape[0], dtype=torch.float64)
    if layout == "column":
        x = x.T.contiguous().T  # (n, B) storage, as PCG allocates it
    expected = (A @ x.numpy().T).T
    np.testing.assert_allclose(S.matvec(x).numpy(), expected, rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(S._matvec_torch(x).numpy(), expected, rtol=1e-13, atol=1e-10)


def test_matvec_one_dimensional_and_float32():
    A = poisson_operator(9)
    x = np.random.default_rng(1).standard_normal(A.shape[0])
    S = SparseMatrix.from_scipy(A)
    np.testing.assert_allclose(S.matvec(torch.from_numpy(x)).numpy(), A @ x, rtol=1e-13)
    S32 = S.to(dtype=torch.float32)
    y = S32.matvec(torch.from_numpy(x).float())
    assert y.dtype == torch.float32
    # u32 = 2^-24: A's entries (64, 256) are exact in float32, x is rounded (u32 |x|), and a row's k = 5
    # products and sums add gamma_k |A||x| in any order (Higham sec. 3.1): |y - A x| <= (k + 1) u32 |A||x|
    # to first order, (k + 2) for the rest. Measured: 17% of it (the former atol 1e-3 was 2.5x its largest entry).
    k, u = 5, 2.0**-24
    assert np.all(np.abs(y.numpy() - A @ x) <= (k + 2) * u * (abs(A) @ np.abs(x)))


def test_batched_values_match_loop():
    mats = _darcy_mats(3)
    S = SparseMatrix.from_scipy(mats)
    assert S.is_batched and S.batch_size == 3 and S.shape == (3, 64, 64)
    x = torch.randn(3, 64, dtype=torch.float64)
    expected = np.stack([m @ x[i].numpy() for i, m in enumerate(mats)])
    np.testing.assert_allclose(S.matvec(x).numpy(), expected, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(S._matvec_torch(x).numpy(), expected, rtol=1e-13, atol=1e-9)
    with pytest.raises(ValueError, match="rows for a batch"):
        S.matvec(torch.randn(2, 64, dtype=torch.float64))


def test_diagonal_conversions_and_select():
    mats = _darcy_mats(2)
    S = SparseMatrix.from_scipy(mats)
    np.testing.assert_array_equal(S.diagonal().numpy(), np.stack([m.diagonal() for m in mats]))
    assert abs(S.to_scipy(1) - mats[1]).max() == 0
    np.testing.assert_array_equal(S.to_dense()[0].numpy(), mats[0].toarray())
    one = S.select([1])
    assert one.batch_size == 1 and abs(one.to_scipy(0) - mats[1]).max() == 0
    assert SparseMatrix.from_scipy(mats[0]).select([0, 0]).batch_size is None  # one matrix: unchanged


def test_from_torch_layouts():
    A = poisson_operator(7)
    dense = torch.from_numpy(A.toarray())
    for t in (dense, dense.to_sparse(), dense.to_sparse_csr()):
        S = as_sparse_matrix(t)
        assert abs(S.to_scipy() - A).max() == 0
    batched = SparseMatrix.from_scipy(_darcy_mats(2))
    again = SparseMatrix.from_torch(batched.to_torch())
    assert torch.equal(again.values, batched.values)


def test_pattern_mismatch_and_shape_errors():
    A = poisson_operator(6)
    B = A.copy().tolil()
    B[0, 5] = 1.0
    with pytest.raises(ValueError, match="sparsity pattern"):
        SparseMatrix.from_scipy([A, B.tocsr()])
    with pytest.raises(ValueError, match="square"):
        SparseMatrix.from_scipy(sp.random(3, 4, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="shape"):
        SparseMatrix.from_scipy(A).matvec(torch.zeros(2, 3, dtype=torch.float64))


def test_autograd_through_matvec():
    A = poisson_operator(6)
    S = SparseMatrix.from_scipy(A)
    x = torch.randn(2, A.shape[0], dtype=torch.float64, requires_grad=True)
    S.matvec(x).pow(2).sum().backward()
    expected = 2 * (A.T @ (A @ x.detach().numpy().T)).T
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-8)
