"""Smoothed-aggregation AMG preconditioner in torch: symmetry, definiteness, iteration counts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from surrogates.pdes.darcy import Darcy
from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.preconditioners.amg import AMGPreconditioner, estimate_lambda_max
from surrogates.solvers.sparse import csr_from_scipy
from surrogates.solvers.preconditioners.base import Preconditioner


def darcy_operator(s: int, seed: int = 0) -> sp.csr_matrix:
    """5-point operator of one Darcy coefficient (values 3 / 12) on ``s x s`` nodes."""
    a = Darcy(resolution=s).sample_inputs(1, np.random.default_rng(seed))["a"][0]
    return diffusion_operator(a)


OPERATORS = {"poisson": poisson_operator, "darcy": darcy_operator}


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    # einsum, not BLAS: a threaded ddot competing with torch's threads can take milliseconds
    return float(np.einsum("i,i->", u, v))


def reference_pcg(A: sp.csr_matrix, b: np.ndarray, M: Preconditioner, rtol: float = 1e-8, maxiter: int = 200) -> int:
    """Iterations of textbook PCG for one system until ``||b - A x|| <= rtol ||b||``.

    Kept independent of :mod:`surrogates.solvers.pcg` so this file tests the preconditioner alone.
    It stops on the recursively updated residual and then checks the true one.
    """
    x = np.zeros_like(b)
    r = b.copy()
    z = M.apply(torch.from_numpy(r)[None])[0].numpy()
    p = z.copy()
    rz = _dot(r, z)
    target = rtol * np.sqrt(_dot(b, b))
    for k in range(1, maxiter + 1):
        Ap = A @ p
        alpha = rz / _dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        if np.sqrt(_dot(r, r)) <= target:
            true_residual = b - A @ x
            assert np.sqrt(_dot(true_residual, true_residual)) <= 2 * target
            return k
        z = M.apply(torch.from_numpy(r)[None])[0].numpy()
        rz_next = _dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    return maxiter + 1


def iterations(problem: str, s: int) -> int:
    A = OPERATORS[problem](s)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    return reference_pcg(A, b, AMGPreconditioner(A))


def dense_inverse(M: AMGPreconditioner, n: int) -> np.ndarray:
    """``M^{-1}`` as a dense ``(n, n)`` matrix (rows of the identity go through :meth:`apply` as one batch)."""
    return M.apply(torch.eye(n, dtype=torch.float64)).numpy().T


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
@pytest.mark.parametrize(
    "options",
    [{}, {"presmoother": ("jacobi", {"iterations": 2})}, {"presmoother": ("chebyshev", {"degree": 3})}, {"cycle": "W"}],
)
def test_cycle_is_symmetric_positive_definite(problem, options):
    A = OPERATORS[problem](34)  # 1024 unknowns, 3 levels with max_coarse=40
    M = AMGPreconditioner(A, max_coarse=40, **options)
    assert len(M.levels) >= 3
    dense = dense_inverse(M, A.shape[0])
    # symmetric in exact arithmetic; each entry's rounding is a few eps times the cycle's operation count
    # (smoothers, transfers and the coarse solve, ~100 a level) relative to the largest entry (measured 2 eps)
    assert np.abs(dense - dense.T).max() <= 1e-12 * np.abs(dense).max()
    assert np.linalg.eigvalsh(0.5 * (dense + dense.T)).min() > 0


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
def test_inner_products_symmetric_and_positive(problem):
    A = OPERATORS[problem](130)
    M = AMGPreconditioner(A)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, A.shape[0], generator=gen, dtype=torch.float64)
    y = torch.randn(8, A.shape[0], generator=gen, dtype=torch.float64)
    Mx, My = M.apply(x), M.apply(y)
    left, right = (Mx * y).sum(1), (x * My).sum(1)
    # sums of n = 16384 terms in torch's (thread-dependent) order: each is within n eps of the sum of
    # its terms' magnitudes, which is up to ~1e3 times the sum itself here (random signs)
    n, eps = A.shape[0], torch.finfo(torch.float64).eps
    roundoff = n * eps * ((Mx * y).abs().sum(1) + (x * My).abs().sum(1))
    assert bool(((left - right).abs() <= roundoff).all()), ((left - right).abs() / roundoff).max()
    assert bool(((M.apply(x) * x).sum(1) > 0).all())


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
def test_iterations_few_and_flat(problem):
    counts = [iterations(problem, s) for s in (64, 128, 256)]
    assert max(counts) < 25, counts
    assert max(counts) - min(counts) <= 3, counts


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["poisson", "darcy"])
def test_iterations_512(problem):
    assert iterations(problem, 512) < 25


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
def test_with_project_pcg(problem):
    """Through the project's batched PCG: a random and a smooth (Darcy's f = 1) right-hand side at once."""
    pcg = pytest.importorskip("surrogates.solvers.pcg").pcg
    counts = []
    for s in (64, 128, 256):
        A = OPERATORS[problem](s)
        b = np.stack([np.random.default_rng(1).standard_normal(A.shape[0]), np.ones(A.shape[0])])
        result = pcg(A, torch.from_numpy(b), AMGPreconditioner(A), rtol=1e-8, maxiter=100)
        assert bool(result.converged.all())
        counts.append(int(result.iterations.max()))
    assert max(counts) < 25 and max(counts) - min(counts) <= 3, counts


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_batched_apply_equals_rowwise(cycle):
    A = darcy_operator(66)
    M = AMGPreconditioner(A, max_coarse=50, cycle=cycle)
    r = torch.randn(5, A.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batched = M.apply(r)
    assert batched.shape == r.shape and batched.is_contiguous()
    rows = torch.cat([M.apply(r[i : i + 1]) for i in range(len(r))])
    # other kernels for a batch (sparse times dense matrix, dense triangular solves of <= 50 unknowns on the
    # coarsest level): rounding of a few times (n <= 50) eps of the largest entry
    torch.testing.assert_close(batched, rows, rtol=1e-13, atol=1e-13 * rows.abs().max().item())


@pytest.mark.parametrize("batch", [1, 3])
def test_results_survive_later_calls(batch):
    """The cycle reuses work arrays between calls; what apply returned must not change."""
    A = poisson_operator(34)
    M = AMGPreconditioner(A, max_coarse=40)
    gen = torch.Generator().manual_seed(0)
    r1, r2 = (torch.randn(batch, A.shape[0], generator=gen, dtype=torch.float64) for _ in range(2))
    z1 = M.apply(r1)
    saved, r1_saved = z1.clone(), r1.clone()
    M.apply(r2)
    assert torch.equal(z1, saved) and torch.equal(r1, r1_saved)
    assert torch.equal(M.apply(r1), saved)  # deterministic


def test_single_level_is_exact_solve():
    A = poisson_operator(8)  # 36 unknowns: below max_coarse, only the dense Cholesky level
    M = AMGPreconditioner(A)
    assert M.shapes == [36]
    b = torch.randn(2, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = M.apply(b).numpy().T
    # a Cholesky solve is backward stable: (A + dA) x = b with |dA| <= gamma_{3n+1} |L| |L^T| (Higham, Thm 10.4),
    # and forming A x - b adds gamma_6 (|A| |x| + |b|) (5 terms a row); twice that for another factor's rounding.
    # About 2e-14 here, where the old atol 1e-10 let a coarse solve 1e-11 off (in A's units) pass.
    n, eps = A.shape[0], np.finfo(np.float64).eps
    L = np.abs(np.linalg.cholesky(A.toarray()))
    bound = 2 * ((3 * n + 1) * eps * (L @ (L.T @ np.abs(x))) + 6 * eps * (abs(A) @ np.abs(x) + np.abs(b.numpy().T)))
    residual = np.abs(A @ x - b.numpy().T)
    assert np.all(residual <= bound), (residual / bound).max()


def test_float32_and_round_trip():
    A = poisson_operator(66)
    M = AMGPreconditioner(A)
    r = torch.randn(3, A.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z64 = M.apply(r)
    z32 = M.to(dtype=torch.float32).apply(r.float())
    assert z32.dtype == torch.float32
    assert ((z32.double() - z64).norm() / z64.norm()).item() < 1e-5
    # back to float64 from the float64 master copy: bit-identical to the first result
    assert torch.equal(M.to(dtype=torch.float64).apply(r), z64)
    with pytest.raises(ValueError, match="shape"):
        M.apply(r[:, :-1])


def test_float32_pcg_converges():
    A = darcy_operator(130)
    M = AMGPreconditioner(A, dtype=torch.float32)
    A32 = csr_from_scipy(A, dtype=torch.float32)
    b = torch.ones(1, A.shape[0])
    x, r = torch.zeros_like(b), b.clone()
    z = M.apply(r)
    p, rz = z.clone(), (r * z).sum()
    for _ in range(15):
        Ap = (A32 @ p.T).T
        alpha = rz / (p * Ap).sum()
        x, r = x + alpha * p, r - alpha * Ap
        z = M.apply(r)
        rz, rz_prev = (r * z).sum(), rz
        p = z + (rz / rz_prev) * p
    true_residual = np.linalg.norm(b[0].numpy() - A @ x[0].double().numpy()) / np.linalg.norm(b[0].numpy())
    # float32's floor here: the exact solution rounded to float32 already leaves ~8e-5 (CG reaches ~3e-4)
    assert true_residual < 1e-3


def test_lambda_max_estimate_bounds():
    A = poisson_operator(66)
    inverse_diagonal = 1.0 / A.diagonal()
    lam = estimate_lambda_max(A, inverse_diagonal)
    exact = 1.0 + np.cos(np.pi / 65)  # lambda_max(D^{-1} A) of the 5-point Laplacian
    assert exact * 0.99 < lam <= 2.0
    state = np.random.get_state()[1].copy()
    AMGPreconditioner(A)
    assert np.array_equal(np.random.get_state()[1], state)  # the setup leaves numpy's global RNG alone


def test_bad_arguments():
    A = poisson_operator(10)
    with pytest.raises(ValueError, match="cycle"):
        AMGPreconditioner(A, cycle="F")
    with pytest.raises(ValueError, match="smoother"):
        AMGPreconditioner(A, presmoother="gauss_seidel")
    with pytest.raises(ValueError, match="options"):
        AMGPreconditioner(A, presmoother=("chebyshev", {"omega": 1.0}))
    with pytest.raises(ValueError, match="omega"):
        AMGPreconditioner(A, presmoother=("jacobi", {"omega": 2.5}))
    with pytest.raises(ValueError, match="positive definite"):
        AMGPreconditioner(-A)  # 64 unknowns: a single, dense level
    assert not AMGPreconditioner(A, postsmoother="jacobi").symmetric
    assert AMGPreconditioner(A).symmetric
