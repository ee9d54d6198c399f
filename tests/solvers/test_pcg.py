"""Batched PCG against scipy's cg: iterations, solutions, stopping rule, masking and breakdowns."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.pcg import NotSPDError, PCGResult, pcg
from surrogates.solvers.preconditioners.base import Preconditioner
from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner
from surrogates.solvers.preconditioners.jacobi import JacobiPreconditioner
from surrogates.solvers.sparse import SparseMatrix


def _darcy(s: int = 18, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return diffusion_operator(np.where(rng.random((s, s)) > 0.5, 12.0, 3.0))


def _scipy_cg(A, b, M=None, rtol=1e-8, atol=0.0):
    count = [0]

    def callback(_xk):
        count[0] += 1

    x, info = spla.cg(A, b, rtol=rtol, atol=atol, M=M, callback=callback)
    assert info == 0
    return x, count[0]


EPS = np.finfo(np.float64).eps


def _assert_within_residual_bound(x: np.ndarray, x_ref: np.ndarray, A: sp.spmatrix, b: np.ndarray) -> None:
    """Two approximate solutions of ``A x = b`` (rows of ``(B, n)`` arrays) that differ only in rounding.

    ``x - x_ref = A^-1 (r_ref - r)``, so ``||x - x_ref|| <= (||r|| + ||r_ref||) / lambda_min(A)`` whatever
    rounding and however many iterations each run took; the residuals are computed with an error of
    at most ~6 eps (|b| + |A| |x|) (five nonzeros a row and a subtraction), added to each.
    """
    x, x_ref, b = np.atleast_2d(x), np.atleast_2d(x_ref), np.atleast_2d(b)
    lam = np.linalg.eigvalsh(A.toarray())[0]
    absA = abs(A)

    def residual_bound(y):
        r = b - (A @ y.T).T
        return np.linalg.norm(r, axis=1) + 6 * EPS * np.linalg.norm(np.abs(b) + (absA @ np.abs(y).T).T, axis=1)

    bound = (residual_bound(x) + residual_bound(x_ref)) / lam
    assert np.all(np.linalg.norm(x - x_ref, axis=1) <= bound), (np.linalg.norm(x - x_ref, axis=1), bound)


def _assert_same_early_history(result: PCGResult, reference: PCGResult, n: int, iterations: int = 10) -> None:
    """The same recurrences: the first residual norms agree to the round-off of ``iterations`` steps.

    Each step's inner products of length ``n`` have a relative error up to ~n eps; before CG loses
    orthogonality (from iteration ~40 for the unpreconditioned runs here, after which the difference
    between two summation orders grows ~10x per iteration) the errors add up, so ``k n eps`` bounds
    row ``k`` (measured: below 1e-14).
    """
    rows = min(iterations + 1, len(result.residual_norms), len(reference.residual_norms))
    torch.testing.assert_close(result.residual_norms[:rows], reference.residual_norms[:rows], rtol=iterations * n * EPS, atol=0.0)


@pytest.mark.parametrize("kind", ["none", "jacobi", "ic0"])
def test_agrees_with_scipy_cg_float64(kind):
    A = _darcy()
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    P = {"none": None, "jacobi": JacobiPreconditioner(A), "ic0": IC0Preconditioner(A)}[kind]
    x_ref, it_ref = _scipy_cg(A, b, None if P is None else P.scipy_operator(), rtol=1e-12)
    res = pcg(A, torch.from_numpy(b), P, rtol=1e-12)
    assert res.converged.item()
    # scipy's recurrences in another summation order: the same count up to round-off. Unpreconditioned
    # CG (96 iterations, 256 unknowns) loses orthogonality and amplifies round-off ~10x per iteration:
    # its last residual differs from scipy's by ~0.3%, 3% from the threshold, and a 1-ulp perturbation
    # of b moves scipy's count to 95 (1 draw in 40), so the two may stop one iteration apart. The
    # preconditioned runs agree to ~3e-5 at the end and stop 15% / 25% away from the threshold.
    assert abs(res.iterations.item() - it_ref) <= (1 if kind == "none" else 0)
    _assert_within_residual_bound(res.x.numpy(), x_ref, A, b)


def test_converges_within_n_iterations_on_small_spd():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    dense = Q @ np.diag(np.linspace(1.0, 10.0, 12)) @ Q.T
    b = rng.standard_normal(12)
    res = pcg(torch.from_numpy(dense), torch.from_numpy(b), rtol=1e-10)
    assert res.converged.item() and res.iterations.item() <= 12
    np.testing.assert_allclose(res.x.numpy(), np.linalg.solve(dense, b), rtol=1e-8)


def test_batch_equals_loop_shared_matrix():
    A = _darcy()
    b = torch.from_numpy(np.random.default_rng(3).standard_normal((5, A.shape[0])))
    P = IC0Preconditioner(A)
    batch = pcg(A, b, P, rtol=1e-9)
    for i in range(5):
        one = pcg(A, b[i], P, rtol=1e-9)
        assert one.iterations.item() == batch.iterations[i].item()
        np.testing.assert_allclose(batch.x[i].numpy(), one.x.numpy(), rtol=1e-10, atol=1e-12)


def test_batch_equals_loop_batched_matrices():
    mats = [_darcy(seed=s) for s in range(4)]
    S = SparseMatrix.from_scipy(mats)
    b = torch.from_numpy(np.random.default_rng(4).standard_normal((4, mats[0].shape[0])))
    for P in (JacobiPreconditioner(S), IC0Preconditioner(S)):
        batch = pcg(S, b, P, rtol=1e-9)
        assert bool(batch.converged.all())
        for i, A in enumerate(mats):
            one = pcg(A, b[i], type(P)(A), rtol=1e-9)
            assert one.iterations.item() == batch.iterations[i].item()
            np.testing.assert_allclose(batch.x[i].numpy(), one.x.numpy(), rtol=1e-10, atol=1e-12)


def test_jacobi_equals_unpreconditioned_on_constant_diagonal():
    A = poisson_operator(24)
    b = torch.from_numpy(np.random.default_rng(5).standard_normal(A.shape[0]))
    plain = pcg(A, b, rtol=1e-8)
    jacobi = pcg(A, b, JacobiPreconditioner(A), rtol=1e-8)
    assert plain.iterations.item() == jacobi.iterations.item()


def test_ic0_needs_fewer_iterations():
    A = poisson_operator(34)
    b = torch.from_numpy(np.random.default_rng(6).standard_normal(A.shape[0]))
    plain = pcg(A, b, rtol=1e-8)
    ic0 = pcg(A, b, IC0Preconditioner(A), rtol=1e-8)
    assert ic0.converged.item() and ic0.iterations.item() < plain.iterations.item() / 2


def test_non_spd_matrix_raises():
    A = poisson_operator(10)
    indefinite = A - 0.5 * sp.identity(A.shape[0]) * A.diagonal().max()
    b = torch.ones(2, A.shape[0], dtype=torch.float64)
    with pytest.raises(NotSPDError, match=r"system 0 .*p\^T A p"):
        pcg(indefinite, b, rtol=1e-10)
    with pytest.raises(NotSPDError):
        pcg(-A, b[0])
    assert issubclass(NotSPDError, ValueError)


def test_non_spd_preconditioner_raises():
    A = poisson_operator(8)
    with pytest.raises(NotSPDError, match="preconditioner"):
        pcg(A, torch.ones(3, A.shape[0], dtype=torch.float64), lambda r: -r)


def test_non_finite_rhs_raises():
    A = poisson_operator(6)
    b = torch.ones(A.shape[0], dtype=torch.float64)
    b[3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pcg(A, b)


@pytest.mark.parametrize("batch", [1, 3])
def test_float32(batch):
    A = _darcy()
    b = torch.from_numpy(np.random.default_rng(7).standard_normal((batch, A.shape[0]))).float()
    res = pcg(A, b, IC0Preconditioner(A), rtol=1e-5)
    assert res.x.dtype == torch.float32 and bool(res.converged.all())
    assert bool((res.true_residual_norms <= res.tolerance).all())
    x, bd = res.x.double().numpy().reshape(batch, -1), b.double().numpy()
    x_ref = np.stack([spla.spsolve(A.tocsc(), row) for row in bd])
    # ||x - x*|| <= ||A^-1|| ||b - A x|| = ||b - A x|| / lambda_min. The float32 residual r^ that met the
    # rule differs from b - A x by at most (k + 2) u32 (|b| + |A||x|) entrywise (k nonzeros a row,
    # Higham sec. 3.1), and its norm by n u32 < 1% (1.01). Measured: 2-5% of this bound.
    k, u = int(np.diff(A.indptr).max()), 2.0**-24
    slack = (k + 2) * u * (np.abs(bd) + (abs(A) @ np.abs(x).T).T)
    lam_min = np.linalg.eigvalsh(A.toarray())[0]
    bound = (1.01 * res.tolerance.double().numpy() + np.linalg.norm(slack, axis=1)) / lam_min
    assert np.all(np.linalg.norm(x - x_ref, axis=1) <= bound)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("exponent", [66, -72])
def test_float32_right_hand_sides_of_any_magnitude_are_solved_as_at_unit_scale(batch, exponent):
    # |b| ~ 7e19: squared norms overflowed float32 and 'converged' at x = 0; |b| ~ 2e-22: they sank into
    # subnormals and stopped at a relative residual ~0.1. Scaling b by 2**e is exact in binary floating point, and
    # so is every CG step on the scaled system (sums, products and quotients of exactly scaled numbers), so the
    # solve must equal the one at unit scale times 2**e bit for bit, as must its norms and tolerance.
    A = _darcy()
    b = torch.from_numpy(np.random.default_rng(11).standard_normal((batch, A.shape[0]))).float()
    unit = pcg(A, b, IC0Preconditioner(A), rtol=1e-5, atol=1e-30)
    big = pcg(A, b * 2.0**exponent, IC0Preconditioner(A), rtol=1e-5, atol=1e-30 * 2.0**exponent)
    assert bool(unit.converged.all()) and bool(big.converged.all())
    assert torch.equal(big.iterations, unit.iterations)
    assert torch.equal(big.x, unit.x * 2.0**exponent)
    for name in ("residual_norms", "true_residual_norms", "tolerance", "b_norms"):
        assert torch.equal(getattr(big, name), getattr(unit, name) * 2.0**exponent), name
    assert bool((big.relative_residuals <= 1e-5).all())


def test_maxiter_reached_is_not_converged():
    A = poisson_operator(20)
    b = torch.ones(2, A.shape[0], dtype=torch.float64)
    res = pcg(A, b, rtol=1e-12, maxiter=5)
    assert not bool(res.converged.any())
    assert res.iterations.tolist() == [5, 5]
    assert res.residual_norms.shape == (6, 2)


def test_atol_respected_and_true_residual_meets_rule():
    A = _darcy()
    b = torch.from_numpy(np.random.default_rng(8).standard_normal((3, A.shape[0])))
    res = pcg(A, b, rtol=0.0, atol=1e-6)
    assert bool(res.converged.all())
    true = torch.linalg.vector_norm(b - torch.from_numpy((A @ res.x.numpy().T).T), dim=1)
    assert bool((true <= 1e-6).all())
    torch.testing.assert_close(true, res.true_residual_norms, rtol=1e-6, atol=1e-12)
    loose = pcg(A, b, rtol=0.0, atol=1e-2)
    assert bool((loose.iterations < res.iterations).all())


def test_zero_rhs_converges_in_zero_iterations():
    A = poisson_operator(8)
    b = torch.zeros(3, A.shape[0], dtype=torch.float64)
    b[1] = 1.0
    res = pcg(A, b, x0=torch.ones_like(b), rtol=1e-8)
    assert res.iterations[0].item() == 0 and res.iterations[2].item() == 0 and res.iterations[1].item() > 0
    assert bool(res.converged.all())
    assert torch.equal(res.x[0], torch.zeros(A.shape[0], dtype=torch.float64))  # scipy returns x = b = 0
    single = pcg(A, torch.zeros(A.shape[0], dtype=torch.float64))
    assert single.iterations.item() == 0 and single.converged.item()


def test_initial_guess_and_numpy_input():
    A = _darcy()
    b = np.random.default_rng(9).standard_normal(A.shape[0])
    exact = spla.spsolve(A.tocsc(), b)
    res = pcg(A, b, x0=exact, rtol=1e-8)
    assert res.iterations.item() == 0 and res.converged.item()
    res = pcg(A, b, x0=exact + 1e-3, rtol=1e-8)
    assert res.converged.item()
    np.testing.assert_allclose(res.x.numpy(), exact, rtol=0, atol=1e-6 * np.abs(exact).max())


def test_converged_systems_stop_updating_and_history():
    A = poisson_operator(16)
    rng = np.random.default_rng(10)
    b = torch.from_numpy(np.stack([rng.standard_normal(A.shape[0]), np.ones(A.shape[0])]))
    batch = pcg(A, b, rtol=1e-8)
    iters = batch.iterations.tolist()
    assert iters[0] != iters[1]
    h = batch.residual_norms
    assert h.shape == (max(iters) + 1, 2)
    fast = int(np.argmin(iters))
    assert bool((h[iters[fast]:, fast] == h[iters[fast], fast]).all())  # frozen after convergence
    assert bool((h[iters[fast], :] <= batch.tolerance).any())
    short = pcg(A, b, rtol=1e-8, record_history=False)
    assert short.residual_norms.shape == (1, 2)
    assert isinstance(batch, PCGResult) and batch.summary()["all_converged"]


def test_preconditioner_is_moved_to_dtype():
    class Recording(Preconditioner):
        def __init__(self):
            self.moved = None

        def apply(self, r):
            return r

        def to(self, device=None, dtype=None):
            self.moved = dtype
            return self

    P = Recording()
    A = poisson_operator(6)
    pcg(A, torch.ones(2, A.shape[0], dtype=torch.float32), P)
    assert P.moved == torch.float32


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("settings", [{"rtol": float("nan")}, {"atol": float("nan")}, {"rtol": float("inf")}, {"maxiter": -1}])
def test_unusable_tolerances_are_refused_before_any_work(settings, batch):
    """A NaN tolerance compares false with every residual: CG used to run on past round-off and end in a
    wrong NotSPDError (residual underflow) or an unconverged result; an infinite one accepted x = 0."""
    A = poisson_operator(12)
    b = torch.ones(batch, A.shape[0], dtype=torch.float64)
    with pytest.raises(ValueError, match="rtol and atol must be finite|maxiter must be non-negative"):
        pcg(A, b, **settings)


def test_shape_errors():
    A = poisson_operator(6)
    with pytest.raises(ValueError, match="entries per system"):
        pcg(A, torch.ones(5, dtype=torch.float64))
    S = SparseMatrix.from_scipy([A, A])
    with pytest.raises(ValueError, match="batch of 2"):
        pcg(S, torch.ones(3, A.shape[0], dtype=torch.float64))


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
@pytest.mark.parametrize("kind", ["none", "ic0", "amg"])
def test_threaded_chunks_equal_one_batched_call(kind, chunk_size):
    """workers > 1 splits the batch across threads; every system's answer and count are unchanged."""
    A = _darcy(20, seed=3)
    rng = np.random.default_rng(5)
    b = torch.from_numpy(rng.standard_normal((5, A.shape[0])))
    x0 = torch.from_numpy(rng.standard_normal((5, A.shape[0])))
    if kind == "amg":
        pytest.importorskip("pyamg")
        from surrogates.solvers.preconditioners.amg import AMGPreconditioner

        P = AMGPreconditioner(A)
    else:
        P = None if kind == "none" else IC0Preconditioner(A)
    threads_before = torch.get_num_threads()
    one = pcg(A, b, P, x0=x0, rtol=1e-10)
    split = pcg(A, b, P, x0=x0, rtol=1e-10, workers=3, chunk_size=chunk_size)
    assert torch.get_num_threads() == threads_before  # the workers' thread setting does not leak
    assert bool(split.converged.all())
    # the chunks run the same recurrences in another summation order (one system: numpy/BLAS dot
    # products, a batch: einsum; one torch thread per worker)
    _assert_same_early_history(split, one, A.shape[0])
    _assert_within_residual_bound(split.x.numpy(), one.x.numpy(), A, b.numpy())
    if kind == "none":
        # 118-119 unpreconditioned iterations: past iteration ~40 the two orders' residuals drift apart
        # (up to 25% at the end, measured), with final residuals as close as 0.7% to the threshold, so
        # a system may stop one iteration earlier or later
        assert (split.iterations - one.iterations).abs().max() <= 1
        assert bool((split.true_residual_norms <= split.tolerance).all())
    else:
        # preconditioned (22-34 iterations): histories agree to ~1e-8 (measured), the final residuals stay
        # >= 1.5% from the threshold, so the counts and the last residuals agree
        assert torch.equal(split.iterations, one.iterations)
        torch.testing.assert_close(split.residual_norms[-1], one.residual_norms[-1], rtol=1e-6, atol=0.0)
    # ||b - A x|| is near the attainable accuracy (its round-off and the recurrence's drift are a few
    # % of it here), so the true residuals are compared through the solutions: | ||r|| - ||r_ref|| |
    # <= ||A (x - x_ref)||, plus the ~6 eps (|b| + |A| |x|) error of each computed residual
    assert bool((split.true_residual_norms <= split.tolerance).all())
    dx = split.x.numpy() - one.x.numpy()
    roundoff = 12 * EPS * np.linalg.norm(np.abs(b.numpy()) + (abs(A) @ np.abs(one.x.numpy()).T).T, axis=1)
    gap = (split.true_residual_norms - one.true_residual_norms).abs().numpy()
    assert np.all(gap <= np.linalg.norm((A @ dx.T).T, axis=1) + roundoff), gap
    assert split.residual_norms.shape == (int(split.iterations.max()) + 1, 5)
    # each system's history ends at its own iteration count and is padded with its last value
    for i, k in enumerate(split.iterations.tolist()):
        assert torch.all(split.residual_norms[k:, i] == split.residual_norms[k, i])


def test_workers_must_be_positive():
    A = poisson_operator(8)
    with pytest.raises(ValueError, match="workers"):
        pcg(A, np.ones((2, A.shape[0])), workers=0)


def test_large_unpreconditioned_batch_is_solved_system_by_system_with_same_answer(monkeypatch):
    """Past the size threshold the CPU loops over single systems; the results are those of the batch."""
    import surrogates.solvers.pcg as pcg_module

    A = _darcy(16, seed=2)
    b = torch.from_numpy(np.random.default_rng(1).standard_normal((3, A.shape[0])))
    batched = pcg(A, b, rtol=1e-10)
    monkeypatch.setattr(pcg_module, "_LARGE_SYSTEM", 10)
    calls = []
    original = pcg_module._iterate_one_host
    monkeypatch.setattr(pcg_module, "_iterate_one_host", lambda *a, **k: calls.append(1) or original(*a, **k))
    looped = pcg(A, b, JacobiPreconditioner(A), rtol=1e-10)
    assert len(calls) == 3
    reference = pcg(A, b, JacobiPreconditioner(A), rtol=1e-10, chunk_size=3)
    assert torch.equal(looped.iterations, reference.iterations)
    assert torch.allclose(looped.x, reference.x, rtol=0, atol=1e-12)
    looped_plain = pcg(A, b, rtol=1e-10)  # now also system by system
    # unpreconditioned CG (78 iterations) in another summation order: the same recurrences (identical
    # early history) but past iteration ~40 round-off grows ~10x per iteration; the batched run's last
    # residual is 0.13% below the threshold and the looped one's differs by 2%, and a 1-ulp perturbation
    # of b gives 79 iterations in 1 draw of 4: the counts may differ by one
    _assert_same_early_history(looped_plain, batched, A.shape[0])
    assert (looped_plain.iterations - batched.iterations).abs().max() <= 1
    assert bool(looped_plain.converged.all())
    _assert_within_residual_bound(looped_plain.x.numpy(), batched.x.numpy(), A, b.numpy())
