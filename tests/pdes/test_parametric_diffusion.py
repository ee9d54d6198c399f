"""Thermal block and Gaussian bump as dataset generators: variables, affine structure, reference solves."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from surrogates.pdes.base import PDE
from surrogates.pdes.gaussian_bump import GaussianBump
from surrogates.pdes.thermal_block import ThermalBlock


@pytest.mark.parametrize("cls", [ThermalBlock, GaussianBump])
def test_generate_writes_coefficient_parameters_and_solution(cls):
    pde = cls(resolution=17)
    assert isinstance(pde, PDE)
    fields, report = pde.generate(3, np.random.default_rng(0))
    names = pde.parameter_space.names
    assert pde.inputs == ("a", *names) and pde.targets == ("u",)
    assert set(fields) == {"a", "u", *names} == set(pde.variables())
    assert fields["a"].shape == fields["u"].shape == (3, 17, 17)
    for name in names:
        assert fields[name].shape == (3,)
    u = fields["u"]
    assert np.all(u[:, 0, :] == 0) and np.all(u[:, :, 0] == 0) and np.all(u[:, 1:-1, 1:-1] > 0)
    assert report.summary()["residual_max"] <= 1e-12
    mu = np.array([fields[name][0] for name in names])
    direct = spla.spsolve(pde.operator(mu).tocsc(), pde.rhs(mu))
    np.testing.assert_allclose(u[0, 1:-1, 1:-1].ravel(), direct, rtol=1e-9)


@pytest.mark.parametrize("discretization", ["fd", "p1"])
def test_thermal_block_operator_is_affine_in_the_block_values(discretization):
    pde = ThermalBlock(resolution=17, discretization=discretization)
    low = np.full(4, 0.1)
    # A_q: the operator of block q alone, from two admissible parameters (A is linear in mu if affine)
    terms = [(pde.operator(low + 0.9 * np.eye(4)[q]) - pde.operator(low)) / 0.9 for q in range(4)]
    mu = np.array([0.3, 0.7, 0.1, 0.9])
    combination = sum(m * t for m, t in zip(mu, terms))
    assert abs(pde.operator(mu) - combination).max() <= 1e-10 * abs(combination).max()
    assert abs(pde.operator(low) - 0.1 * sum(terms)).max() <= 1e-10 * abs(combination).max()


def test_thermal_block_blocks_follow_pymor_numbering():
    pde = ThermalBlock(blocks=(2, 2))
    points = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [1.0, 1.0], [0.5, 0.5]])
    np.testing.assert_array_equal(pde.block_index(points), [0, 1, 2, 3, 3, 3])


def test_gaussian_bump_coefficient_and_validation():
    pde = GaussianBump(a0=1.0, amplitude=5.0)
    mu = np.array([[0.5, 0.5, 0.25]])
    assert pde.coefficient(np.array([[0.5, 0.5]]), mu)[0, 0] == pytest.approx(6.0)
    assert pde.parameter_space.names == ("center_x", "center_y", "width")
    with pytest.raises(ValueError):
        GaussianBump(a0=0.0)
    with pytest.raises(ValueError, match="discretization"):
        GaussianBump(discretization="fem")
