"""Small reduced models (full dimension 225) shared by the reduced-basis tests."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.pdes.gaussian_bump import GaussianBump
from surrogates.pdes.thermal_block import ThermalBlock
from surrogates.solvers.reduced_basis import RBEIM, RBReductor, weak_greedy


def build(problem, max_basis_size=10, **options):
    """Offline stage by hand, returning (system, reductor, greedy result)."""
    settings = {"eim_training_size": 60, "eim_check_size": 20, "training_set": "random", "training_size": 60, **options}
    solver = RBEIM(max_basis_size=max_basis_size, **settings)
    system = solver.build_system(problem)
    reductor = RBReductor(system)
    greedy = weak_greedy(reductor, solver.greedy_training_set(problem), max_basis_size, rtol=None)
    return system, reductor, greedy


@pytest.fixture(scope="package", params=["fd", "p1"])
def thermal(request):
    """Thermal block 2 x 2 on 17 x 17 nodes, finite differences and P1."""
    problem = ThermalBlock(resolution=17, discretization=request.param)
    return (problem, *build(problem, max_basis_size=12, training_set="grid", training_size=3))


@pytest.fixture(scope="package")
def bump():
    """Gaussian bump on 17 x 17 nodes with a 1e-8 EIM."""
    problem = GaussianBump(resolution=17)
    return (problem, *build(problem, max_basis_size=10, eim_rtol=1e-8, eim_training_size=150))


def x_norm(problem, e: np.ndarray) -> np.ndarray:
    """``||e||_X`` of rows ``e`` ``(B, N_h)``."""
    return np.sqrt(np.einsum("bi,bi->b", e, (problem.product @ e.T).T))
