"""Error bound: never below the true error; the stable evaluation goes far below the classic one's floor."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from surrogates.solvers.reduced_basis import RBReductor, weak_greedy
from surrogates.solvers.reduced_basis.estimators import (
    ResidualRepresentation,
    coercivity_lower_bound,
    compress_residual,
    dual_norm_classic,
    dual_norm_stable,
    residual_coefficients,
)
from tests.solvers.reduced_basis.conftest import x_norm


def _true_errors(problem, system, model, mus):
    """``||u_M(mu) - u_N(mu)||_X`` against direct solves of the EIM system."""
    solution = model.solve(mus)
    full = np.stack([spla.spsolve(system.matrix(mu).tocsc(), system.vector(mu)) for mu in mus])
    return x_norm(problem, full - model.reconstruct(solution.coefficients)), solution


def test_bound_is_never_below_the_true_error_on_200_random_parameters(thermal, bump):
    for problem, system, reductor, _ in (thermal, bump):
        model = reductor.reduce()
        mus = problem.parameter_space.sample_uniform(200, np.random.default_rng(7))
        for size in (2, model.size):
            errors, solution = _true_errors(problem, system, model.truncated(size), mus)
            effectivity = errors / solution.bound
            assert np.all(effectivity <= 1.0), effectivity.max()
            assert np.all(effectivity > 0.0)
            assert errors.max() > 0


def test_thermal_block_coercivity_bound_is_min_theta(thermal):
    problem, system, reductor, _ = thermal
    mus = problem.parameter_space.sample_uniform(4, np.random.default_rng(8))
    np.testing.assert_allclose(reductor.reduce().solve(mus).coercivity, mus.min(axis=1) - system.eim_error)
    # it is a true lower bound: the smallest generalized eigenvalue of (A(mu), X). Dense (a few hundred
    # unknowns): that eigenvalue is min(mu) itself with a large multiplicity (every node inside the block), and
    # ARPACK's shift-invert from a random start sometimes fails to converge on such a cluster
    for mu in mus:
        smallest = scipy.linalg.eigh(problem.operator(mu).toarray(), problem.product.toarray(), eigvals_only=True,
                                     subset_by_index=[0, 0])[0]
        assert mu.min() <= smallest * (1 + 1e-10)


def test_stable_bound_follows_the_error_below_the_classic_floor(thermal):
    problem, system, _, _ = thermal
    reductor = RBReductor(system)
    training = problem.parameter_space.grid(3)
    weak_greedy(reductor, training, 40, rtol=1e-13)
    model = reductor.reduce()
    mus = problem.parameter_space.sample_uniform(20, np.random.default_rng(9))
    errors, stable = _true_errors(problem, system, model, mus)
    classic = model.solve(mus, estimator="classic")
    norms = x_norm(problem, model.reconstruct(stable.coefficients))
    # (the direct solves used as truth carry a round-off of ~1e-14 themselves)
    assert np.all(errors <= stable.bound + 1e-13 * norms)
    assert np.max(stable.bound / norms) < 1e-9  # the stable bound reaches round-off territory
    # the classic quadratic form cannot resolve residuals below ~sqrt(eps) ||b||: it stalls near 1e-8
    # (or, when the round-off makes the square negative, returns 0, below the true error)
    assert np.median(np.abs(classic.bound - stable.bound) / stable.bound) > 0.5


def test_residual_representation_matches_direct_dual_norms():
    rng = np.random.default_rng(0)
    n = 60
    X = sp.diags(2 + rng.random(n)) + sp.diags(-0.5 * np.ones(n - 1), 1) + sp.diags(-0.5 * np.ones(n - 1), -1)
    rep = ResidualRepresentation(X.tocsr())
    blocks = [rng.standard_normal((n, 1)), rng.standard_normal((n, 4)), rng.standard_normal((n, 4))]
    blocks[2][:, 3] = blocks[1] @ np.array([1.0, -2.0, 0.5, 3.0])  # a dependent component
    for block in blocks:
        rep.add(block)
    assert rep.rank == 8 and rep.R.shape == (8, 9)
    gamma = rng.standard_normal((5, 9))
    residuals = gamma @ np.hstack(blocks).T
    direct = np.sqrt(np.einsum("bi,bi->b", residuals, spla.spsolve(X.tocsc(), residuals.T).T))
    np.testing.assert_allclose(dual_norm_stable(rep.R, gamma), direct, rtol=1e-12)
    np.testing.assert_allclose(dual_norm_classic(rep.gram, gamma), direct, rtol=1e-10)


def test_coercivity_bound_refuses_an_eim_error_larger_than_the_coercivity():
    np.testing.assert_allclose(coercivity_lower_bound(np.array([1.0, 2.0]), 0.5), [0.5, 1.5])
    try:
        coercivity_lower_bound(np.array([0.1]), 0.2)
    except ValueError as error:
        assert "EIM" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected a ValueError")


def test_compressed_residual_bounds_the_dual_norm_for_any_coefficients():
    rng = np.random.default_rng(3)
    K, n = 120, 150
    eps = np.finfo(np.float64).eps
    # residual data with fast-decaying singular values, as for nearly dependent residual components
    U, _ = np.linalg.qr(rng.standard_normal((K, K)))
    W, _ = np.linalg.qr(rng.standard_normal((n, K)))
    R = (U * np.logspace(0, -14, K)) @ W.T
    scale = np.exp(rng.uniform(-3, 0, n))
    for rtol in (1e-4, 1e-8, 1e-12):
        comp = compress_residual(R, scale, rtol=rtol)
        norm_G = np.linalg.norm(R * scale)
        # tail = ||G - Q Q^T G||_F is computed from a difference of terms of size ||G||: its absolute
        # round-off is ~K eps ||G||_F (length-K products), which at rtol 1e-12 is ~3% of the target
        assert comp.tail <= rtol * norm_G + K * eps * norm_G
        assert comp.rank < K
        # scaled coefficients, and coefficients far outside the sampled scales: always an upper bound
        for gamma in (rng.uniform(-1, 1, (50, n)) * scale, 1e3 * rng.standard_normal((50, n))):
            exact = dual_norm_stable(R, gamma)
            bound = comp.dual_norm(gamma)
            head = np.linalg.norm(gamma @ comp.P.T, axis=1)
            tail = comp.tail * np.linalg.norm(gamma / scale, axis=1)  # the same expression as in dual_norm
            # In exact arithmetic ||P g|| <= ||R g|| (P = Q^T R, ||Q|| = 1). The computed norms are inner
            # products of length n (R g, P g) after length-K ones (P = Q^T R), each with a first-order
            # relative error up to ~n eps (gamma_n = n eps / (1 - n eps)); with rtol 1e-12, ||P g|| and
            # ||R g|| agree to round-off and ||P g|| was measured 1.2-1.7e-15 (5-8 eps) above ||R g||
            # depending on the BLAS kernel. 4 n eps = 1.3e-13 covers both norms with room to spare.
            roundoff = 4 * n * eps * exact
            assert np.all(head <= exact + roundoff)
            assert np.all(bound >= exact - roundoff)
            assert np.all(bound - exact <= tail + roundoff)
    # P = Q^T R with Q orthonormal: the remainder G - Q Q^T G has a spectral norm below the tail
    comp = compress_residual(R, scale, rtol=1e-6)
    G = R * scale
    B = comp.P * scale  # Q^T G
    gram = G.T @ G - B.T @ B  # = E^T E (Q orthonormal), PSD
    # each Gram product (length-K sums) carries an error up to ~K eps ||G||_2^2, and their difference
    # cancels down to ||E||_2^2 ~ 1e-13 ||G||_2^2: compare squares, with that absolute round-off
    # (~4% of tail^2 here; the measured lambda_max is 0.4 tail^2, sigma_{r+1}^2 of G)
    assert np.linalg.eigvalsh(gram).max() <= comp.tail**2 + 2 * K * eps * np.linalg.norm(G, 2) ** 2


def test_compressed_bound_is_above_the_error_and_close_to_the_stable_one(thermal, bump):
    for problem, system, reductor, _ in (thermal, bump):
        model = reductor.reduce()
        comp = model.compress(rtol=1e-9)
        assert comp.rank <= model.residual_R.shape[0]
        mus = problem.parameter_space.sample_uniform(200, np.random.default_rng(11))
        for size in (2, model.size):
            sub = model.truncated(size)
            errors, stable = _true_errors(problem, system, sub, mus)
            compressed = sub.solve(mus, estimator="compressed")
            np.testing.assert_array_equal(compressed.coefficients, stable.coefficients)
            assert np.all(errors <= compressed.bound)
            # never below the stable value, above it by at most tail * ||gamma / s||
            c, theta_a, theta_f = sub.reduced_solve(mus)
            gamma = residual_coefficients(theta_f, c, theta_a)
            slack = sub.compressed.tail * np.linalg.norm(gamma / sub.compressed.scale, axis=1)
            # round-off of the sums over the n components: gamma_n ~ n eps times the sum of the
            # magnitudes of their terms, for each of the two norms compared (4 n eps: 2 for each)
            n = gamma.shape[1]
            roundoff = 4 * n * np.finfo(np.float64).eps * np.linalg.norm(np.abs(gamma) @ np.abs(sub.residual_R).T, axis=1)
            assert np.all(compressed.dual_norm >= stable.dual_norm - roundoff)
            assert np.all(compressed.dual_norm <= stable.dual_norm + slack + roundoff)
            assert np.max(compressed.bound / stable.bound) < 1.01
