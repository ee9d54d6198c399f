"""Learned PCG preconditioner: SPD by construction, exact application, persistence, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from surrogates.pdes.darcy import Darcy
from surrogates.solvers.finite_differences import diffusion_operator
from surrogates.solvers.preconditioners.base import Preconditioner
from surrogates.solvers.preconditioners.learned import (
    LearnedPreconditioner,
    PreconditionerGNN,
    factor_values,
    load,
    matrix_graph,
    train_preconditioner,
)
from surrogates.solvers.preconditioners.factored import FactoredPreconditioner
from tests.solvers.conftest import factored_solve_error_bound


def darcy_matrices(s: int, n: int, seed: int) -> list[sp.csr_matrix]:
    a = Darcy(resolution=s).sample_inputs(n, np.random.default_rng(seed))["a"]
    return [diffusion_operator(a_i) for a_i in a]


def random_network(seed: int = 0, std: float = 0.2) -> PreconditionerGNN:
    """An untrained network with ALL weights random (the output layers too, which start at zero).

    ``std`` 0.1-0.3 gives factors with condition numbers 2-70 on the test matrix. Much larger weights
    (std 1) still give a positive diagonal, so ``P`` is SPD in exact arithmetic, but random triangular
    factors with large off-diagonals can have ``cond(L) ~ 1e20`` and then no floating-point eigensolver
    can confirm ``lambda_min(P) > 0``.
    """
    torch.manual_seed(seed)
    model = PreconditionerGNN(hidden=16, rounds=3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model.eval()


def cg_iterations(A: sp.spmatrix, b: np.ndarray, M=None, rtol: float = 1e-8) -> int:
    count = [0]
    _, info = spla.cg(A, b, rtol=rtol, atol=0.0, M=M, maxiter=10_000, callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]


def as_operator(prec: Preconditioner, n: int) -> spla.LinearOperator:
    return spla.LinearOperator((n, n), matvec=lambda r: prec.apply(torch.from_numpy(np.ravel(r))[None])[0].numpy(), dtype=np.float64)


@pytest.fixture(scope="module")
def A() -> sp.csr_matrix:
    return darcy_matrices(10, 1, seed=3)[0]  # 8 x 8 interior: 64 unknowns


def test_matrix_graph_has_every_off_diagonal_nonzero_in_both_directions(A):
    graph = matrix_graph(A)
    n = A.shape[0]
    assert graph.num_nodes == n and graph.x.shape == (n, 4)
    assert graph.edge_index.shape[1] == A.nnz - n
    src, dst = graph.edge_index.numpy()
    assert set(zip(src, dst)) == set(zip(dst, src))
    assert np.array_equal(graph.lower.numpy(), src < dst)  # edge j -> i is entry A_ij, lower when j < i
    d = A.diagonal()
    np.testing.assert_allclose(graph.a_hat.numpy(), np.asarray(A[dst, src]).ravel() / np.sqrt(d[dst] * d[src]))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("std", [0.2, 1.0])
def test_factor_has_the_lower_pattern_of_A_and_positive_diagonal(A, seed, std):
    L = factor_values(random_network(seed, std), A)
    pattern = sp.tril(A).tocsr()
    assert L.shape == A.shape
    assert np.array_equal(L.indptr, pattern.indptr) and np.array_equal(L.indices, pattern.indices)
    assert np.all(L.diagonal() > 0)


@pytest.mark.parametrize("std", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_untrained_random_network_gives_spd_preconditioner(A, seed, std):
    L = factor_values(random_network(seed, std), A).toarray()
    P = L @ L.T
    np.testing.assert_array_equal(P, P.T)
    assert np.linalg.eigvalsh(P).min() > 0


def test_apply_equals_dense_solve_with_L_Lt(A):
    prec = LearnedPreconditioner(random_network(), A)
    L = prec.L.toarray()
    r = np.random.default_rng(0).standard_normal((3, A.shape[0]))
    expected = np.linalg.solve(L @ L.T, r.T).T
    z = prec.apply(torch.from_numpy(r)).numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_batched_apply_equals_row_by_row(A):
    prec = LearnedPreconditioner(random_network(), A)
    r = torch.randn(5, A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched = prec.apply(r)
    assert batched.shape == r.shape and batched.dtype == r.dtype
    rows = torch.cat([prec.apply(r[i:i + 1]) for i in range(5)])
    # five right-hand sides at once against one at a time: the substitutions may run in another order,
    # so the two agree to the solves' rounding error, entry by entry (measured: 15% of the bound)
    L = prec.L.toarray()
    bound = factored_solve_error_bound(L, r.numpy())
    assert np.all(np.abs((batched - rows).numpy()) <= 2 * bound)
    float32 = prec.to(dtype=torch.float32).apply(r.float())
    assert float32.dtype == torch.float32
    # float32: the same solves with unit eps32 (which covers the rounding of L), plus the rounding of r
    # (at most eps32 / 2 |r|, propagated by |L^-T| |L^-1|)
    eps32 = float(np.finfo(np.float32).eps)
    bound32 = factored_solve_error_bound(L, r.numpy(), unit=eps32)
    bound32 += 0.5 * eps32 * np.abs(r.numpy()) @ np.abs(np.linalg.inv(L)).T @ np.abs(np.linalg.inv(L))
    assert np.all(np.abs(float32.double().numpy() - batched.numpy()) <= bound32 + bound)


def test_save_load_round_trip_gives_identical_factor(A, tmp_path):
    model = random_network()
    path = model.save(tmp_path / "sub" / "net.pt")
    loaded = load(path)
    assert loaded.init_kwargs == model.init_kwargs == {"hidden": 16, "rounds": 3}
    assert (factor_values(loaded, A) != factor_values(model, A)).nnz == 0
    assert (factor_values(PreconditionerGNN.load(path), A) != factor_values(model, A)).nnz == 0


def test_factored_apply_matches_scipy_triangular_solves():
    """M^{-1} r = L^{-T} L^{-1} r through torch equals two scipy triangular solves, batched over columns."""
    rng = np.random.default_rng(0)
    R = sp.random(200, 200, density=0.03, random_state=1)
    L = (sp.tril(R, -1) + sp.diags(rng.uniform(1.0, 2.0, 200))).tocsr()
    b = rng.standard_normal((4, 200))
    z = FactoredPreconditioner(L).apply(torch.from_numpy(b)).numpy()
    expected = spla.spsolve_triangular(L.T.tocsr(), spla.spsolve_triangular(L, b.T, lower=True), lower=False).T
    np.testing.assert_allclose(z, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="lower triangular"):
        FactoredPreconditioner(L.T.tocsr())


def test_tiny_training_reduces_loss_and_cg_iterations():
    """10 x 10 interior grid, 8 training matrices, 20 epochs (under a second).

    Measured (rtol 1e-8, f = 1, 4 held-out matrices): loss 0.65 -> 0.084; total CG iterations
    none 209, untrained network (= symmetric Gauss-Seidel) 63, trained 58, IC(0) 57.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = darcy_matrices(12, 8, seed=0)
        history: list[float] = []
        model = train_preconditioner(train, epochs=20, hidden=16, rounds=3, batch_size=4, history=history, progress=False)
    finally:
        torch.set_num_threads(threads)  # the session's thread count (``--threads``) holds for the next tests
    assert history[-1] < 0.3 * history[0]

    untrained = PreconditionerGNN(hidden=16, rounds=3)
    totals = {"none": 0, "untrained": 0, "trained": 0}
    for A in darcy_matrices(12, 4, seed=1):
        b, n = np.ones(A.shape[0]), A.shape[0]
        totals["none"] += cg_iterations(A, b)
        totals["untrained"] += cg_iterations(A, b, as_operator(LearnedPreconditioner(untrained, A), n))
        totals["trained"] += cg_iterations(A, b, as_operator(LearnedPreconditioner(model, A), n))
    assert totals["trained"] < totals["untrained"]
    assert totals["trained"] < 0.4 * totals["none"]


def test_batched_pcg_accepts_the_learned_preconditioner(A):
    pcg = pytest.importorskip("surrogates.solvers.pcg").pcg
    prec = LearnedPreconditioner(random_network(std=0.1), A)
    b = np.random.default_rng(1).standard_normal((3, A.shape[0]))
    result = pcg(A, torch.from_numpy(b), preconditioner=prec, rtol=1e-10)
    assert bool(result.converged.all())
    np.testing.assert_allclose(A @ result.x.numpy().T, b.T, atol=1e-8 * np.abs(b).max())
    expected = [cg_iterations(A, b_i, as_operator(prec, A.shape[0]), rtol=1e-10) for b_i in b]
    assert np.abs(result.iterations.numpy() - expected).max() <= 1  # same recurrences as scipy, up to round-off
