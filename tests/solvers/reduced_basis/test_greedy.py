"""Weak greedy: monotone true errors, exact reproduction of the snapshots, stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.solvers.reduced_basis import RBEIM, ExtensionError, RBReductor, weak_greedy
from tests.solvers.reduced_basis.conftest import x_norm


def test_true_error_greedy_is_non_increasing(thermal):
    problem, system, _, _ = thermal
    reductor = RBReductor(system)
    training = problem.parameter_space.sample_uniform(30, np.random.default_rng(0))
    result = weak_greedy(reductor, training, 8, use_estimator=False)
    errors = np.array(result.max_errors)
    assert len(errors) == 9
    assert np.all(np.diff(errors) <= 1e-12 * errors[0])
    assert errors[-1] < 0.2 * errors[0]


def test_estimator_greedy_errors_are_non_increasing_on_the_thermal_block(thermal):
    _, _, _, greedy = thermal
    errors = np.array(greedy.max_errors)
    assert len(errors) == 13 and greedy.selected.shape == (12, 4)
    # the bound's maximum decreases overall by orders of magnitude ...
    assert errors[-1] < 0.05 * errors[0]
    # ... and never rises above its running minimum by more than a factor (weak greedy on a bound)
    running_min = np.minimum.accumulate(errors)
    assert np.all(errors <= 2.0 * running_min)


def _check_reproduction(problem, system, reductor, greedy):
    model = reductor.reduce()
    solution = model.solve(greedy.selected)
    full = np.stack([system.solve(mu) for mu in greedy.selected])
    error = x_norm(problem, full - model.reconstruct(solution.coefficients))
    assert np.all(error <= 1e-10 * x_norm(problem, full))
    # and the bound says so
    assert np.all(solution.bound <= 1e-8 * x_norm(problem, full))


def test_reduced_model_reproduces_the_full_solution_at_the_greedy_parameters(thermal):
    _check_reproduction(*thermal)


def test_non_affine_reduced_model_reproduces_the_full_solution_at_the_greedy_parameters(bump):
    _check_reproduction(*bump)


def test_extension_with_a_vector_in_the_span_fails(thermal):
    _, _, reductor, greedy = thermal
    with pytest.raises(ExtensionError, match="span"):
        reductor.extend(reductor.basis @ np.arange(1.0, reductor.size + 1))


def test_greedy_stops_at_the_relative_tolerance(thermal):
    problem, system, _, _ = thermal
    reductor = RBReductor(system)
    result = weak_greedy(reductor, problem.parameter_space.grid(2), 50, rtol=1e-2)
    assert "relative tolerance" in result.reason
    assert result.max_errors[-1] <= 1e-2 * result.max_errors[0]
    assert reductor.size == len(result.max_errors) - 1


def test_rbeim_build_records_greedy_times_and_compresses_the_bound():
    from surrogates.pdes.gaussian_bump import GaussianBump

    solver = RBEIM(eim_training_size=40, eim_check_size=10, eim_rtol=1e-6, training_size=30, max_basis_size=4)
    model = solver.build(GaussianBump(resolution=13))
    greedy = model.metadata["greedy"]
    assert len(greedy["elapsed"]) == len(greedy["max_errors"]) and np.all(np.diff(greedy["elapsed"]) >= 0)
    assert model.compressed is not None and model.metadata["compression"]["rtol"] == 1e-9
    assert model.compressed.P.shape == (model.compressed.rank, model.residual_R.shape[1])
    with pytest.raises(ValueError, match="stable"):
        RBEIM(estimator="compressed")  # the greedy selects on the stable (or classic) bound


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_outside_one_32_bit_word_are_refused(seed):
    # [2**32 + s, 0] is the word list [s, 1, 0], which SeedSequence reads as [s, 1]: seed s's greedy training set
    assert np.random.SeedSequence([2**32 + 5, 0]).generate_state(2).tolist() == \
        np.random.SeedSequence([5, 1]).generate_state(2).tolist()
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\)"):
        RBEIM(seed=seed)
