"""DCDM: conjugate directions, convergence to scipy's solution, pcg's stopping rule, the loss's and the
network's scale invariance, the training vectors, and the checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from surrogates.errors import CheckpointError
from surrogates.pdes.darcy import Darcy
from surrogates.solvers.dcdm import DCDMNet, DCDMResult, DCDMSolver, dcdm, load, load_metadata, scale_invariant_loss, train_dcdm
from surrogates.solvers.dcdm.grid import DirectionOperator, grid_couplings
from surrogates.solvers.dcdm.training import validation_iterations
from surrogates.solvers.dcdm.network import (average_couplings, galerkin_couplings, interpolation, interpolation_adjoint,
                                             series_couplings)
from surrogates.solvers.dcdm.training_vectors import LOW_MODE_WEIGHT, lanczos, ritz_pairs, training_vectors
from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.pcg import NotSPDError, PCGResult, pcg
from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner
from surrogates.solvers.sparse import SparseMatrix
from tests.solvers.conftest import EPS

S = 18  # 16 x 16 interior: 256 unknowns


def darcy_matrix(s: int = S, seed: int = 3) -> sp.csr_matrix:
    return diffusion_operator(Darcy(resolution=s).sample_inputs(1, np.random.default_rng(seed))["a"][0])


@pytest.fixture(scope="module")
def systems() -> dict[str, sp.csr_matrix]:
    return {"poisson": poisson_operator(S), "darcy": darcy_matrix()}


@pytest.fixture(scope="module", params=["v_cycle", "additive"])
def network(request) -> DCDMNet:
    """A small network of each structure trained briefly on Darcy matrices (a few seconds on one CPU thread)."""
    a = Darcy(resolution=S).sample_inputs(2, np.random.default_rng(100))["a"]
    return train_dcdm([diffusion_operator(x) for x in a], epochs=4, steps_per_epoch=10, batch_size=8, lr=3e-3,
                      ritz_steps=100, width=8, blocks=1, structure=request.param, progress=False)


def rhs(n: int, batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, n)))


# -- network -----------------------------------------------------------------------------------------

def test_constructor_records_its_arguments_and_rejects_bad_ones():
    net = DCDMNet(width=4, blocks=1, coarsest=3)
    assert net.init_kwargs == {"width": 4, "blocks": 1, "coarsest": 3, "coarse_couplings": "average", "coarse_gain": 1.0,
                               "structure": "v_cycle", "init": "random", "scaling": "diagonal"}
    with pytest.raises(ValueError, match="positive"):
        DCDMNet(width=0)
    with pytest.raises(ValueError, match="coarse_couplings"):
        DCDMNet(coarse_couplings="injection")
    with pytest.raises(ValueError, match="coarse_gain"):
        DCDMNet(coarse_gain=0.0)
    with pytest.raises(ValueError, match="structure"):
        DCDMNet(structure="w_cycle")
    with pytest.raises(ValueError, match="additive"):
        DCDMNet(structure="additive", coarse_couplings="galerkin")
    with pytest.raises(ValueError, match="init"):
        DCDMNet(structure="additive", init="zeros")
    with pytest.raises(ValueError, match="additive structure only"):
        DCDMNet(init="identity")
    with pytest.raises(ValueError, match="scaling"):
        DCDMNet(scaling="jacobi")


@pytest.mark.parametrize("m", [5, 16, 33])
def test_network_keeps_the_grid_shape_on_any_size(m):
    net = DCDMNet(width=4, blocks=1)
    out = net(torch.randn(3, 1, m, m), torch.rand(1, 4, m, m))
    assert out.shape == (3, 1, m, m) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="r must have shape"):
        net(torch.randn(3, m, m), torch.rand(1, 4, m, m))
    with pytest.raises(ValueError, match="couplings must have shape"):
        net(torch.randn(3, 1, m, m), torch.rand(1, 3, m, m))


@pytest.mark.parametrize("c", [4.0, 2.0 ** -20])
def test_network_direction_is_invariant_to_the_residual_scale(c):
    """The input is divided by its RMS: a power-of-two factor is exact in floating point, so the outputs agree bit for bit."""
    torch.manual_seed(0)
    net = DCDMNet(width=4, blocks=1)
    r, couplings = torch.randn(2, 1, 16, 16), torch.rand(1, 4, 16, 16)
    assert torch.equal(net(c * r, couplings), net(r, couplings))


@pytest.mark.parametrize("options", [{}, {"coarse_couplings": "galerkin", "coarse_gain": 2.0}, {"structure": "additive"}])
def test_network_operator_is_symmetric_positive_definite(options):
    """``f = N^T N + sigma I`` for any weights: build its matrix on a 6 x 6 grid from the unit vectors.

    In float64, each entry of ``N`` and ``N^T`` accumulates at most ``K`` products (levels x convolutions
    x 9 taps x width), so ``F`` and ``F^T`` agree to ``2 K eps`` times the entries' absolute sums,
    bounded here by ``||F||_max`` times the number of summed paths ``n``.
    """
    torch.manual_seed(0)
    net = DCDMNet(width=4, blocks=1, coarsest=2, **options).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    m = 6
    n = m * m
    basis = torch.eye(n, dtype=torch.float64).view(n, 1, m, m)
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(darcy_matrix(m + 2)))  # an SPD operator's (Galerkin needs one)
    F = net(basis, couplings).detach().reshape(n, n).T.numpy()  # every unit vector has the same RMS: one common factor
    levels, convs = 3, 2 * 2 + 3
    K = levels * convs * 9 * 4
    np.testing.assert_allclose(F, F.T, rtol=0, atol=2 * K * n * EPS * np.abs(F).max())
    assert np.linalg.eigvalsh((F + F.T) / 2).min() > 0


@pytest.mark.parametrize("s", [9, 10])  # 7 x 7 (partial blocks at the end) and 8 x 8 interior nodes
def test_galerkin_couplings_are_the_scaled_aggregation_operator(s):
    """Against ``P^T Â P`` assembled densely, ``P`` the piecewise-constant 2 x 2 aggregation.

    Each coarse entry sums at most 8 fine couplings of size <= 1 and the diagonal scaling adds a few
    roundings: ``16 eps`` bounds the difference.
    """
    A = diffusion_operator(np.random.default_rng(0).uniform(1.0, 10.0, (s, s)))
    m = s - 2
    d = sp.diags(1.0 / np.sqrt(A.diagonal()))
    a_hat = (d @ A @ d).toarray()
    M = (m + 1) // 2
    P = np.zeros((m * m, M * M))
    for i in range(m):
        for j in range(m):
            P[i * m + j, (i // 2) * M + j // 2] = 1.0
    coarse = P.T @ a_hat @ P
    scaled = coarse / np.sqrt(np.outer(np.diag(coarse), np.diag(coarse)))
    expected = np.zeros((4, M, M))
    for I in range(M):
        for J in range(M):
            for channel, (di, dj) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1)]):
                if 0 <= I + di < M and 0 <= J + dj < M:
                    expected[channel, I, J] = -scaled[I * M + J, (I + di) * M + J + dj]
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(A))
    np.testing.assert_allclose(galerkin_couplings(couplings)[0].numpy(), expected, rtol=0, atol=16 * EPS)


def test_galerkin_couplings_of_poisson_keep_the_quarter_and_the_boundary_at_every_level():
    """On a ``2^k`` grid every block is full: each level is again Poisson's scaled operator, exactly
    (sums of quarters, ``d = 2``, ``(1/2) / 2``: no rounding); averaging instead fades the boundary."""
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(poisson_operator(34)))  # 32 x 32 interior
    averaged = couplings
    for m in (16, 8, 4, 2):
        couplings = galerkin_couplings(couplings)
        expected = torch.full((1, 4, m, m), 0.25, dtype=torch.float64)
        expected[0, 0, 0, :] = expected[0, 1, -1, :] = expected[0, 2, :, 0] = expected[0, 3, :, -1] = 0.0
        assert torch.equal(couplings, expected)
        averaged = average_couplings(averaged)
    assert float(averaged[0, 0, 0, 1]) > 0.2  # 15/64: the boundary is all but gone after four averages


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_coarse_gain_scales_each_level_exactly_on_a_constant_residual(gain):
    """With identity convolutions and blocks, ``N`` of a constant is the constant times ``sum_l gain^l``.

    A 16 x 16 grid coarsened to ``coarsest = 2`` has levels 16, 8, 4, 2; pooling and bilinear
    interpolation reproduce a constant exactly, and the sums of powers of two are exact in float64.
    """
    width = 3
    net = DCDMNet(width=width, blocks=1, coarsest=2, coarse_gain=gain).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.lift.weight[0, 0, 1, 1] = 1.0
        net.restrict.weight[:, :, 0, 0] = torch.eye(width)
        net.prolong.weight[:, :, 1, 1] = torch.eye(width)
        net.project.weight[0, 0, 0, 0] = 1.0  # the blocks' second convolutions are zero: each block is the identity
    r = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64)
    out = net.half(r, torch.rand(1, 4, 16, 16, dtype=torch.float64))
    assert torch.equal(out, r * sum(gain ** level for level in range(4)))


def _interpolation_matrix(m: int) -> np.ndarray:
    """1D vertex-centred linear interpolation from the ``m // 2`` coarse nodes (fine ``2K + 1``), zero boundary."""
    M = m // 2
    P = np.zeros((m, M))
    for K in range(M):
        P[2 * K + 1, K] = 1.0
        P[2 * K, K] += 0.5
        if 2 * K + 2 < m:
            P[2 * K + 2, K] += 0.5
    return P


@pytest.mark.parametrize("m", [7, 8, 31, 62])
def test_interpolation_is_bilinear_and_its_adjoint_is_exact(m):
    """``P`` is the tensor product of 1D linear interpolation (assembled here); ``P^T`` its transpose.

    Every entry is a sum of at most 9 products of numbers with few bits: the comparison allows
    ``16 eps`` times the entries' magnitudes.
    """
    rng = np.random.default_rng(m)
    M = m // 2
    P1 = _interpolation_matrix(m)
    coarse = rng.standard_normal((2, 1, M, M))
    fine = rng.standard_normal((2, 1, m, m))
    expected = np.einsum("iK,bcKL,jL->bcij", P1, coarse, P1)
    np.testing.assert_allclose(interpolation(torch.from_numpy(coarse), m).numpy(), expected, rtol=0,
                               atol=16 * EPS * np.abs(coarse).max())
    expected_adjoint = np.einsum("iK,bcij,jL->bcKL", P1, fine, P1)
    np.testing.assert_allclose(interpolation_adjoint(torch.from_numpy(fine)).numpy(), expected_adjoint, rtol=0,
                               atol=16 * EPS * np.abs(fine).max() * 9)


def test_series_couplings_of_poisson_keep_the_quarter_and_the_boundary_at_every_level():
    """``2 a b / (a + b)`` of two quarters is a quarter (exact); a zero boundary coupling stays zero."""
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(poisson_operator(64)))  # 62 x 62 interior
    for m in (31, 15, 7, 3):
        couplings = series_couplings(couplings)
        expected = torch.full((1, 4, m, m), 0.25, dtype=torch.float64)
        expected[0, 0, 0, :] = expected[0, 1, -1, :] = expected[0, 2, :, 0] = expected[0, 3, :, -1] = 0.0
        assert torch.equal(couplings, expected)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_additive_structure_is_the_multilevel_sum_with_exact_level_scaling(gain):
    """With an identity smoother ``S``, ``f = sigma I + sum_l gain^(2l) P_l P_l^T`` (``P_l`` = interpolation from
    level ``l``), assembled from the 1D matrices: on a 15 x 15 grid the levels are 15, 7, 3.

    Entries are sums of at most a few hundred products of dyadic numbers, exact or within a few eps of
    the largest entry: ``64 eps`` of it bounds the difference.
    """
    width = 2
    net = DCDMNet(width=width, blocks=1, coarsest=3, structure="additive", coarse_gain=gain).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.lift.weight[0, 0, 1, 1] = 1.0
        net.project.weight[0, 0, 0, 0] = 1.0  # the blocks' second convolutions are zero: S is the identity
    m = 15
    n = m * m
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(poisson_operator(m + 2)))
    F_net = net(torch.eye(n, dtype=torch.float64).view(n, 1, m, m), couplings).detach().reshape(n, n).T.numpy()
    sigma = float(torch.nn.functional.softplus(net.identity_weight.detach()))
    P_7, P_3 = _interpolation_matrix(15), _interpolation_matrix(7)
    P1 = np.kron(P_7, P_7)
    P2 = P1 @ np.kron(P_3, P_3)
    expected = (1.0 + sigma) * np.eye(n) + gain ** 2 * P1 @ P1.T + gain ** 4 * P2 @ P2.T
    # the network divides r by its RMS (1/m for a unit vector) before N^T N and scales sigma r the same way
    np.testing.assert_allclose(F_net / m, expected, rtol=0, atol=64 * EPS * np.abs(expected).max())


@pytest.mark.parametrize("gain", [1.0, 0.9])
def test_identity_initialized_additive_network_is_bpx(gain):
    """``DCDMNet(structure="additive", init="identity")``, untrained, is ``sigma I + sum_l gain^(2l) P_l P_l^T``
    (assembled from the 1D interpolation matrices; 15 x 15 grid, levels 15, 7, 3) on random residuals,
    whatever the couplings (Darcy's here) and the gates' random weights.

    The network's path through the levels sums at most ``K = 2 (9 + 9) + 8 + 4`` rounded terms per
    entry (two interpolations each way, the width-8 channel sum, scaling), so it agrees with the
    assembled product to ``K eps`` times ``|F| |r|`` (``F >= 0`` entrywise, so ``|F| |r|`` bounds every
    partial sum).
    """
    torch.manual_seed(0)
    width = 8
    net = DCDMNet(width=width, blocks=2, coarsest=3, structure="additive", coarse_gain=gain, init="identity").double()
    m = 15
    n = m * m
    couplings, _ = grid_couplings(SparseMatrix.from_scipy(darcy_matrix(m + 2)))
    r = torch.from_numpy(np.random.default_rng(0).standard_normal((4, n)))
    rms = r.pow(2).mean(1, keepdim=True).sqrt()
    out = (net(r.view(4, 1, m, m), couplings).detach().reshape(4, n) * rms).numpy()  # undo the RMS normalization
    sigma = float(torch.nn.functional.softplus(net.identity_weight.detach()))
    P_7, P_3 = _interpolation_matrix(15), _interpolation_matrix(7)
    P1 = np.kron(P_7, P_7)
    P2 = P1 @ np.kron(P_3, P_3)
    F = (1.0 + sigma) * np.eye(n) + gain ** 2 * P1 @ P1.T + gain ** 4 * P2 @ P2.T
    K = 2 * (9 + 9) + width + 4
    np.testing.assert_array_less(np.abs(out - r.numpy() @ F.T), K * EPS * (np.abs(r.numpy()) @ F.T) + 1e-300)


def test_grid_couplings_of_poisson_are_a_quarter_inside_and_zero_across_the_boundary():
    couplings, inverse_sqrt = grid_couplings(SparseMatrix.from_scipy(poisson_operator(6)))  # 4 x 4 interior
    h2 = (6 - 1) ** -2
    np.testing.assert_allclose(inverse_sqrt.numpy(), np.full(16, np.sqrt(h2 / 4)), rtol=4 * EPS)
    c = couplings[0].numpy()
    expected = np.full((4, 4, 4), 0.25)
    expected[0, 0, :] = expected[1, -1, :] = expected[2, :, 0] = expected[3, :, -1] = 0.0  # i-1, i+1, j-1, j+1
    np.testing.assert_allclose(c, expected, rtol=4 * EPS, atol=0)


def test_mean_scaling_divides_by_the_mean_diagonal_and_keeps_the_coefficient():
    """``scaling="mean"``: ``D = mean(diag A) I``, so the couplings are ``-A_kl / mean(diag A)`` (one rounding
    each after the mean's few) and vary with Darcy's coefficient, unlike ``diag(A)``'s."""
    A = darcy_matrix(12)
    couplings, inverse_sqrt = grid_couplings(SparseMatrix.from_scipy(A), scaling="mean")
    mean = A.diagonal().mean()
    np.testing.assert_allclose(inverse_sqrt.numpy(), np.full(100, mean ** -0.5), rtol=8 * EPS)
    m = 10
    for channel, offset in enumerate((-m, m, -1, 1)):
        for k in (0, 37, 55, 99):
            if 0 <= k + offset < 100 and not (abs(offset) == 1 and (k + offset) // m != k // m):
                assert couplings[0, channel].flatten()[k] == pytest.approx(-A[k, k + offset] / mean, rel=16 * EPS)
    interior = couplings[0, :, 1:-1, 1:-1]
    assert float(interior.max() / interior.min()) > 2  # coefficients 3 and 12: their couplings differ about 4-fold
    with pytest.raises(ValueError, match="scaling"):
        grid_couplings(SparseMatrix.from_scipy(A), scaling="jacobi")


def test_identity_initialized_mean_scaled_network_gives_bpx_directions_for_A():
    """With ``scaling="mean"`` and ``init="identity"`` the untrained network's direction for ``r`` is
    ``M^{-1} r = (sigma I + sum_l P_l P_l^T) r`` up to a positive factor: BPX for ``A`` itself (not
    for ``D^{-1/2} A D^{-1/2}``). float64 throughout; rounding as in the test above, ``K eps |F| |r|``
    after the factor (``D^{-1/2}``, once on each side, and the RMS) is divided out."""
    net = DCDMNet(width=4, blocks=1, coarsest=3, structure="additive", init="identity", scaling="mean").double()
    A = darcy_matrix(17)  # 15 x 15 interior: levels 15, 7, 3
    n = 225
    r = torch.from_numpy(np.random.default_rng(1).standard_normal((3, n)))
    d = DirectionOperator(net, A)(r).numpy()
    sigma = float(torch.nn.functional.softplus(net.identity_weight.detach()))
    P1 = np.kron(_interpolation_matrix(15), _interpolation_matrix(15))
    P2 = P1 @ np.kron(_interpolation_matrix(7), _interpolation_matrix(7))
    F = (1.0 + sigma) * np.eye(n) + P1 @ P1.T + P2 @ P2.T
    expected = r.numpy() @ F.T
    factor = (A.diagonal().mean() ** -1) / np.sqrt((r.numpy() ** 2).mean(1, keepdims=True) / A.diagonal().mean())
    K = 2 * (9 + 9) + 4 + 16
    np.testing.assert_array_less(np.abs(d / factor - expected), K * EPS * (np.abs(r.numpy()) @ F.T))


def test_grid_couplings_reject_other_matrices():
    with pytest.raises(ValueError, match="m x m grid"):
        grid_couplings(SparseMatrix.from_scipy(sp.identity(10, format="csr")))
    wrapped = sp.diags([-np.ones(15), 4 * np.ones(16), -np.ones(15)], [-1, 0, 1]).tocsr()  # couples across grid rows
    with pytest.raises(ValueError, match="not a 5-point matrix"):
        grid_couplings(SparseMatrix.from_scipy(wrapped))


# -- training vectors and loss ------------------------------------------------------------------------

def test_lanczos_basis_is_orthonormal_and_tridiagonalizes_A(systems):
    A = systems["darcy"]
    k = 40
    W, alpha, beta = lanczos(A, k, np.random.default_rng(0).standard_normal(A.shape[0]))
    n = A.shape[0]
    # full reorthogonalization keeps W W^T = I to a few n eps; T = W A W^T to that times ||A||
    np.testing.assert_allclose(W @ W.T, np.eye(k), atol=4 * n * EPS)
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    norm_A = spla.norm(A, 1)
    np.testing.assert_allclose(W @ (A @ W.T), T, atol=8 * n * EPS * norm_A)


def test_ritz_values_of_a_full_lanczos_run_are_the_eigenvalues():
    A = darcy_matrix(8)  # 36 unknowns; a random coefficient leaves no multiple eigenvalue (Poisson has some)
    values, vectors = ritz_pairs(A, A.shape[0], np.random.default_rng(0))
    exact = np.linalg.eigvalsh(A.toarray())
    n = A.shape[0]
    # backward-stable eigensolvers of a tridiagonal obtained with full reorthogonalization: errors ~ n eps ||A||
    tol = 16 * n * EPS * exact.max()
    np.testing.assert_allclose(values, exact, rtol=0, atol=tol)
    np.testing.assert_allclose(np.linalg.norm(A @ vectors.T - vectors.T * values, axis=0), 0, atol=tol)


def test_training_vectors_are_unit_and_weight_the_low_ritz_vectors():
    k, n = 40, 64
    vectors = np.linalg.qr(np.random.default_rng(0).standard_normal((n, k)))[0].T  # orthonormal rows
    values = np.linspace(1.0, 2.0, k)
    b = training_vectors(values, vectors, 4000, np.random.default_rng(1), theta=0)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=4 * n * EPS)
    # the coefficients of b in the Ritz basis are N(0, 1) draws, 9 times larger on the low half (theta = 0)
    draws = np.random.default_rng(1).standard_normal((4000, k))
    draws[:, : k // 2] *= LOW_MODE_WEIGHT
    expected = draws / np.linalg.norm(draws, axis=1, keepdims=True)
    np.testing.assert_allclose(b @ vectors.T, expected, rtol=0, atol=8 * n * EPS)


def test_inverse_sqrt_training_vectors_scale_each_ritz_vector_by_its_value():
    """``weighting="inverse_sqrt"``: coefficients ``sqrt(theta_max / theta_i) N(0, 1)``, then normalized."""
    k, n = 40, 64
    vectors = np.linalg.qr(np.random.default_rng(0).standard_normal((n, k)))[0].T
    values = np.linspace(0.01, 2.0, k)
    b = training_vectors(values, vectors, 500, np.random.default_rng(1), weighting="inverse_sqrt")
    draws = np.random.default_rng(1).standard_normal((500, k)) * np.sqrt(2.0 / values)
    expected = draws / np.linalg.norm(draws, axis=1, keepdims=True)
    np.testing.assert_allclose(b @ vectors.T, expected, rtol=0, atol=8 * n * EPS)
    with pytest.raises(ValueError, match="weighting"):
        training_vectors(values, vectors, 5, np.random.default_rng(1), weighting="linear")


def test_training_vectors_drop_a_null_space():
    vectors = np.eye(6)
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    b = training_vectors(values, vectors, 50, np.random.default_rng(0))
    assert np.all(b[:, 0] == 0)


def test_loss_is_invariant_to_the_scale_and_sign_of_the_direction_and_of_b(systems):
    A = systems["darcy"]
    n = A.shape[0]
    S_ = SparseMatrix.from_scipy(A)
    b, d = rhs(n, 4, seed=2), rhs(n, 4, seed=3)
    base = scale_invariant_loss(S_, b, d)
    for c in (2.0 ** 30, -1.0, 2.0 ** -30):  # exact scalings in floating point: identical loss
        assert scale_invariant_loss(S_, b, c * d) == base
        assert scale_invariant_loss(S_, c * b, d) == base
    # any other factor: equal to a few n eps (every reduction over n entries rounds relatively by ~n eps)
    assert abs(scale_invariant_loss(S_, 3.7 * b, -0.3 * d) - base) <= 8 * n * EPS * base


def test_loss_vanishes_for_the_exact_inverse_and_is_one_for_an_A_orthogonal_direction(systems):
    A = systems["darcy"]
    n = A.shape[0]
    b = rhs(n, 2, seed=4)
    x = torch.from_numpy(spla.spsolve(A.tocsc(), b.numpy().T).T)
    S_ = SparseMatrix.from_scipy(A)
    kappa = np.linalg.cond(A.toarray())
    assert scale_invariant_loss(S_, b, 5.0 * x) <= (8 * kappa * n * EPS) ** 2
    # a direction with d^T b = 0 gives alpha = 0: nothing is removed from b
    d = rhs(n, 2, seed=5)
    d = d - ((d * b).sum(1, keepdim=True) / (b * b).sum(1, keepdim=True)) * b
    assert abs(float(scale_invariant_loss(S_, b, d)) - 1.0) <= 8 * n * EPS


def test_training_lowers_the_loss():
    history: list[float] = []
    train_dcdm([darcy_matrix(10)], epochs=3, steps_per_epoch=8, batch_size=4, lr=3e-3, ritz_steps=30, width=4,
               blocks=1, progress=False, history=history)
    assert len(history) == 3 and history[-1] < history[0]
    with pytest.raises(ValueError, match="at least one"):
        train_dcdm([])


def test_validation_selection_returns_the_best_epoch_start_included():
    """With validation matrices the returned weights are those with the fewest DCDM iterations among the
    start and every epoch (the counts are deterministic: same right-hand sides, same weights)."""
    validation = [darcy_matrix(10, seed=50)]
    counts: list[float] = []
    net = train_dcdm([darcy_matrix(10)], epochs=3, steps_per_epoch=4, batch_size=4, lr=3e-2, ritz_steps=30, width=4,
                     blocks=1, structure="additive", init="identity", progress=False, validation=validation,
                     validation_history=counts)
    assert len(counts) == 4  # the start, then one per epoch
    assert validation_iterations(net, validation) == min(counts) <= counts[0]


# -- the iteration ------------------------------------------------------------------------------------

class Recorder:
    """Wraps a direction callable and keeps its raw outputs (before A-orthogonalization)."""

    def __init__(self, f):
        self.f, self.raw = f, []

    def __call__(self, r):
        out = self.f(r)
        self.raw.append(out.clone())
        return out


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
@pytest.mark.parametrize("keep", [1, 2])
def test_directions_are_A_conjugate_to_the_kept_previous_ones(systems, network, problem, keep):
    """Error analysis of one classical Gram-Schmidt step in the A inner product.

    ``p = q - sum c_j p_j`` with ``c_j = q^T A p_j / p_j^T A p_j`` computed in floating point: each
    product and update rounds with relative error ~ n eps in the |A| norms, so
    ``|p^T A p_j| <= C n eps ||q||_|A| ||p_j||_|A|`` (``||v||_|A|^2 = |v|^T |A| |v|``), plus, with two kept
    directions, ``|c_0| |p_0^T A p_1|``, the previous pair's own error carried by a coefficient of at most
    ``||q||_A / ||p_0||_A``. ``C = 4 keep`` covers the dot products, the coefficients and the updates.
    """
    A = systems[problem]
    n = A.shape[0]
    record = Recorder(DirectionOperator(network, A))
    result = dcdm(A, rhs(n, 1)[0], record, rtol=1e-10, maxiter=25, keep=keep, record_directions=True)
    P = result.directions[:, 0].numpy()
    Q = torch.cat(record.raw).numpy()
    absA = abs(A)
    a_norm = np.sqrt(np.einsum("ki,ki->k", P, (A @ P.T).T))
    abs_norm = lambda V: np.sqrt(np.einsum("ki,ki->k", np.abs(V), (absA @ np.abs(V).T).T))  # noqa: E731
    q_abs, p_abs = abs_norm(Q), abs_norm(P)
    gram = P @ (A @ P.T)
    bound = np.zeros_like(gram)
    for i in range(1, len(P)):
        for j in range(max(0, i - keep), i):
            bound[i, j] = 4 * keep * n * EPS * q_abs[i] * p_abs[j]
            if keep == 2 and j == i - 1 and i >= 2:
                bound[i, j] += np.sqrt(np.sum(Q[i] * (A @ Q[i]))) / a_norm[i - 2] * bound[i - 1, i - 2]
            assert abs(gram[i, j]) <= bound[i, j], (i, j, gram[i, j], bound[i, j])


@pytest.mark.parametrize("problem", ["poisson", "darcy"])
def test_converges_to_scipys_solution(systems, network, problem):
    A = systems[problem]
    n = A.shape[0]
    b = rhs(n, 3)
    rtol = 1e-8
    result = dcdm(A, b, network, rtol=rtol)
    assert isinstance(result, PCGResult) and bool(result.converged.all())
    exact = spla.spsolve(A.tocsc(), b.numpy().T).T
    # ||x - x*|| <= ||b - A x|| / lambda_min(A), plus spsolve's own error ~ kappa n eps ||x*||
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    kappa = eigenvalues[-1] / eigenvalues[0]
    err = np.linalg.norm(result.x.numpy() - exact, axis=1)
    bound = result.true_residual_norms.numpy() / eigenvalues[0] + kappa * n * EPS * np.linalg.norm(exact, axis=1)
    assert np.all(err <= bound)
    assert np.all(result.true_residual_norms.numpy() <= rtol * np.linalg.norm(b.numpy(), axis=1))


def test_trained_network_beats_plain_cg(systems, network):
    A = systems["darcy"]
    b = rhs(A.shape[0], 2)
    assert int(dcdm(A, b, network, rtol=1e-6).iterations.max()) < int(pcg(A, b, rtol=1e-6).iterations.min())


def test_with_a_symmetric_preconditioner_and_one_kept_direction_it_is_pcg(systems):
    """keep = 1 and f = M^-1 give PCG's directions in exact arithmetic; the counts agree up to one step of round-off."""
    A = systems["darcy"]
    b = rhs(A.shape[0], 3)
    P = IC0Preconditioner(A)
    ours = dcdm(A, b, P.apply, rtol=1e-8, keep=1)
    ref = pcg(A, b, P, rtol=1e-8)
    assert torch.all((ours.iterations - ref.iterations).abs() <= 1)


def test_stopping_rule_and_result_fields_are_pcgs(systems, network):
    A = systems["darcy"]
    n = A.shape[0]
    b = rhs(n, 3)
    b[1] *= 1e-3  # a small right-hand side: atol decides for it
    atol = 1e-3 * float(torch.linalg.vector_norm(b[0]))
    ours = dcdm(A, b, network, rtol=1e-6, atol=atol)
    ref = pcg(A, b, rtol=1e-6, atol=atol)
    # the same rule on the same norms; the two compute ||b|| with other summation orders (n eps apart)
    np.testing.assert_allclose(ours.b_norms.numpy(), ref.b_norms.numpy(), rtol=n * EPS)
    np.testing.assert_allclose(ours.tolerance.numpy(), ref.tolerance.numpy(), rtol=n * EPS)
    assert torch.equal(ours.converged, ours.true_residual_norms <= ours.tolerance)
    assert bool(ours.converged.all())
    assert ours.residual_norms.shape == (int(ours.iterations.max()) + 1, 3)
    # the count is the first iteration meeting the rule: one fewer does not meet it
    short = dcdm(A, b, network, rtol=1e-6, atol=atol, maxiter=int(ours.iterations.max()) - 1)
    assert not bool(short.converged.all())
    assert set(ours.summary()) == set(ref.summary())


def test_zero_rhs_and_exact_initial_guess_take_no_iteration(systems, network):
    A = systems["poisson"]
    n = A.shape[0]
    b = rhs(n, 2)
    b[0] = 0
    exact = torch.from_numpy(spla.spsolve(A.tocsc(), b[1].numpy()))
    x0 = torch.stack([torch.ones(n, dtype=torch.float64), exact])
    result = dcdm(A, b, network, x0=x0, rtol=1e-6)
    assert result.iterations.tolist() == [0, 0] and bool(result.converged.all())
    assert bool((result.x[0] == 0).all())


def test_batch_equals_one_by_one(systems, network):
    A = systems["darcy"]
    b = rhs(A.shape[0], 3)
    batch = dcdm(A, b, network, rtol=1e-8)
    for i in range(3):
        one = dcdm(A, b[i], network, rtol=1e-8)
        assert one.x.shape == (A.shape[0],) and bool(one.converged.all())
        # both meet the rule; they differ by at most the error bound of each (||r|| / lambda_min)
        lam = np.linalg.eigvalsh(A.toarray())[0]
        gap = float(torch.linalg.vector_norm(one.x - batch.x[i]))
        assert gap <= (float(one.true_residual_norms[0]) + float(batch.true_residual_norms[i])) / lam


def test_float32_right_hand_sides(systems, network):
    A = systems["darcy"]
    b = rhs(A.shape[0], 2).float()
    result = dcdm(A, b, network, rtol=1e-4)
    assert result.x.dtype == torch.float32 and bool(result.converged.all())


def test_bad_input_raises(systems, network):
    A = systems["darcy"]
    n = A.shape[0]
    b = rhs(n, 2)
    with pytest.raises(ValueError, match="NaN"):
        dcdm(A, torch.full((n,), float("nan")), network)
    with pytest.raises(ValueError, match="entries per system"):
        dcdm(A, torch.ones(n + 1), network)
    with pytest.raises(ValueError, match="keep"):
        dcdm(A, b, network, keep=0)
    with pytest.raises(ValueError, match="non-negative"):
        dcdm(A, b, network, rtol=-1.0)
    with pytest.raises(ValueError, match="finite"):
        dcdm(A, b, network, rtol=float("nan"))
    with pytest.raises(ValueError, match="batch of matrices"):
        dcdm([A, A], b, network)
    with pytest.raises(NotSPDError, match="DCDM breakdown"):
        dcdm(A, b, lambda r: torch.zeros_like(r))
    with pytest.raises(ValueError, match="m x m grid"):
        dcdm(sp.identity(10, format="csr"), torch.ones(10), network)


# -- persistence and config ---------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path, network, systems):
    path = network.save(tmp_path / "dcdm.pt", {"resolution": S, "note": "test"})
    loaded = load(path)
    assert isinstance(loaded, DCDMNet) and loaded.init_kwargs == network.init_kwargs
    assert load_metadata(path) == {"resolution": S, "note": "test"}
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    A = systems["darcy"]
    b = rhs(A.shape[0], 2)
    assert torch.equal(dcdm(A, b, loaded, rtol=1e-6).x, dcdm(A, b, network, rtol=1e-6).x)


def test_checkpoint_loaders_refuse_each_others_networks(tmp_path, network):
    from surrogates.solvers.preconditioners import learned

    gnn_path = learned.PreconditionerGNN(hidden=4, rounds=1).save(tmp_path / "gnn.pt")
    with pytest.raises(CheckpointError, match="not a DCDMNet"):
        load(gnn_path)
    dcdm_path = network.save(tmp_path / "dcdm.pt")
    with pytest.raises(CheckpointError, match="not a PreconditionerGNN"):
        learned.load(dcdm_path)


def test_solver_object_loads_its_checkpoint(tmp_path, network, systems):
    path = network.save(tmp_path / "dcdm.pt")
    solver = DCDMSolver(checkpoint=path, rtol=1e-6)
    A = systems["poisson"]
    result = solver.solve(A, rhs(A.shape[0], 2))
    assert isinstance(result, DCDMResult) and bool(result.converged.all())
    with pytest.raises(ValueError, match="needs a checkpoint"):
        DCDMSolver().solve(A, rhs(A.shape[0], 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_matches_cpu(systems, network):
    A = systems["darcy"]
    b = rhs(A.shape[0], 4)
    cpu = dcdm(A, b, network, rtol=1e-8)
    gpu = dcdm(A, b.cuda(), network.cuda(), rtol=1e-8)
    network.cpu()
    assert gpu.x.is_cuda and bool(gpu.converged.all())
    lam = np.linalg.eigvalsh(A.toarray())[0]
    gap = torch.linalg.vector_norm(gpu.x.cpu() - cpu.x, dim=1)
    assert bool((gap <= (gpu.true_residual_norms.cpu() + cpu.true_residual_norms) / lam).all())
