"""Local assembly: the same matrices as the project's FD and P1 assembly, cheap entries, error bounds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from surrogates.pdes.gaussian_bump import GaussianBump
from surrogates.pdes.thermal_block import ThermalBlock
from surrogates.solvers import fem
from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator
from surrogates.solvers.reduced_basis.problem import ParameterSpace


def _grid(s):
    x = np.linspace(0, 1, s)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    return np.column_stack([gx.ravel(), gy.ravel()])


def test_fd_harmonic_assembly_equals_diffusion_operator():
    problem = GaussianBump(resolution=13)
    mu = np.array([0.45, 0.55, 0.22])
    a = problem.coefficient(_grid(13), mu[None]).reshape(13, 13)
    assert abs(problem.operator(mu) - diffusion_operator(a)).max() < 1e-12
    assert abs(problem.product - poisson_operator(13)).max() < 1e-12


def test_p1_assembly_equals_assemble_p1_with_dirichlet():
    problem = GaussianBump(resolution=9, discretization="p1")
    mu = np.array([0.5, 0.4, 0.25])
    points, triangles = fem.structured_triangle_mesh(8)
    _, _, centroids = fem.element_geometry(points, triangles)
    K, _ = fem.assemble_p1(points, triangles, coefficient=problem.coefficient(centroids, mu[None])[0])
    F = fem.load_vector(points, triangles, np.ones(len(points)))
    A, b, free = fem.apply_dirichlet(K, F, fem.boundary_nodes(triangles))
    assert abs(problem.operator(mu) - A).max() < 1e-12
    np.testing.assert_allclose(problem.rhs(mu), b, atol=1e-15)
    np.testing.assert_array_equal(problem.layout.free, free)


def test_p1_on_a_mesh_file(tmp_path):
    points, triangles = fem.structured_triangle_mesh(6)
    path = tmp_path / "square.vtk"
    fem.write_mesh(path, points, triangles)
    problem = ThermalBlock(resolution=7, discretization="p1", mesh_path=str(path))
    reference = ThermalBlock(resolution=7, discretization="p1")
    mu = np.array([0.2, 0.4, 0.6, 0.8])
    assert abs(problem.operator(mu) - reference.operator(mu)).max() < 1e-12
    assert problem.layout.grid_shape is None
    with pytest.raises(ValueError, match="mesh_path needs"):
        ThermalBlock(mesh_path=str(path))


def test_entries_are_evaluated_from_a_few_local_coefficients():
    problem = GaussianBump(resolution=11)
    positions = np.array([0, 5, 17, 40])
    local = problem.operator_assembly.entries(positions)
    assert local.points.shape[0] <= 4 * 5  # each entry touches at most 4 faces
    mus = problem.parameter_space.sample_uniform(3, np.random.default_rng(0))
    np.testing.assert_allclose(local.evaluate(problem.coefficient, mus), problem.operator_data(mus)[:, positions], rtol=1e-14)


def test_operator_error_bound_bounds_the_generalized_eigenvalues():
    problem = GaussianBump(resolution=9)
    mus = problem.parameter_space.sample_uniform(3, np.random.default_rng(1))
    selected, weights = mus[1:], np.array([[0.7, 0.4]])
    bound = problem.operator_error_bound(mus[:1], weights, selected)[0]
    E = problem.operator(mus[0]) - 0.7 * problem.operator(mus[1]) - 0.4 * problem.operator(mus[2])
    eigenvalues = sla.eigh(E.toarray(), problem.product.toarray(), eigvals_only=True)
    assert np.abs(eigenvalues).max() <= bound * (1 + 1e-12)
    assert np.abs(eigenvalues).max() >= 0.1 * bound  # and it is not wildly pessimistic here


def test_coefficient_lower_bounds_hold():
    for problem in (ThermalBlock(resolution=9), GaussianBump(resolution=9)):
        mus = problem.parameter_space.sample_uniform(20, np.random.default_rng(2))
        values = problem.coefficient(_grid(101), mus)
        assert np.all(problem.coefficient_lower_bound(mus) <= values.min(axis=1) + 1e-14)


def test_parameter_space_checks():
    space = ParameterSpace(("a", "b"), (0.0, 1.0), (1.0, 2.0))
    assert space.grid(3).shape == (9, 2)
    np.testing.assert_array_equal(space.check([1.0 + 1e-9, 1.5]), [[1.0, 1.5]])
    with pytest.raises(ValueError, match="b = 3"):
        space.check([0.5, 3.0])
    with pytest.raises(ValueError, match="finite"):
        space.check([np.nan, 1.0])
    with pytest.raises(ValueError, match="exceed"):
        ParameterSpace(("a",), (2.0,), (1.0,))


@pytest.mark.parametrize("discretization", ["fd", "p1"])
@pytest.mark.parametrize("resolution", [9, 16])
def test_grid_layout_predicts_the_assembled_layout(discretization, resolution):
    """What a model file's problem is checked against, before anything is assembled."""
    for problem in (ThermalBlock(resolution=resolution, discretization=discretization),
                    GaussianBump(resolution=resolution, discretization=discretization)):
        expected = problem.grid_layout()
        layout = problem.layout
        assert expected == (layout.n_nodes, len(layout.free), layout.grid_shape)
