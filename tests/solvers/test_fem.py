"""P1 finite elements: assembly invariants, second-order convergence, mesh files through meshio."""

from __future__ import annotations

import meshio
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from surrogates.solvers.fem import (
    apply_dirichlet,
    assemble_p1,
    boundary_nodes,
    full_solution,
    load_vector,
    read_mesh,
    structured_triangle_mesh,
    write_mesh,
)

PI = np.pi


def exact(x, y):
    return np.sin(PI * x) * np.sin(PI * y)


def coefficient(x, y):
    return 1.0 + x + 2.0 * y * y


def forcing_variable(x, y):
    """``-div(a grad u)`` for ``u = exact`` and ``a = coefficient``."""
    u_x = PI * np.cos(PI * x) * np.sin(PI * y)
    u_y = PI * np.sin(PI * x) * np.cos(PI * y)
    return coefficient(x, y) * 2 * PI**2 * exact(x, y) - u_x - 4.0 * y * u_y


def solve(points, triangles, f, a=None, g=None):
    """Assemble, eliminate the boundary, solve; returns nodal solution ``(n,)`` and the mass matrix."""
    boundary = boundary_nodes(triangles)
    K, M = assemble_p1(points, triangles, a)
    values = 0.0 if g is None else g(*points[boundary].T)
    A, b, free = apply_dirichlet(K, load_vector(points, triangles, f), boundary, values)
    return full_solution(spla.spsolve(A.tocsc(), b), free, boundary, values), M


def l2_orders(f, u, a=None, g=None, sizes=(8, 16, 32, 64)):
    errors = []
    for n in sizes:
        points, triangles = structured_triangle_mesh(n)
        u_h, M = solve(points, triangles, f, a, g)
        e = u_h - u(*points.T)
        errors.append(np.sqrt(e @ (M @ e)))  # L2 norm of the interpolated nodal error
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:]))


def test_structured_mesh_and_boundary():
    points, triangles = structured_triangle_mesh(4, 3)
    assert points.shape == (20, 2) and triangles.shape == (24, 3)
    boundary = boundary_nodes(triangles)
    on_edge = np.isclose(points, 0).any(1) | np.isclose(points, 1).any(1)
    np.testing.assert_array_equal(boundary, np.flatnonzero(on_edge))


def test_assembly_invariants():
    rng = np.random.default_rng(0)
    points, triangles = structured_triangle_mesh(6, 5)
    points = points + 0.03 * rng.uniform(-1, 1, points.shape) * ~boundary_mask(points)  # distorted interior
    K, M = assemble_p1(points, triangles, coefficient=rng.uniform(1, 5, len(triangles)))
    np.testing.assert_allclose(np.asarray(K.sum(axis=1)).ravel(), 0.0, atol=1e-12)  # constants in the kernel
    assert np.isclose(M.sum(), 1.0)  # domain area
    for matrix in (K, M):
        assert abs(matrix - matrix.T).max() < 1e-13
    assert np.linalg.eigvalsh(M.toarray()).min() > 0
    # integral of x over the square: exact for linear f with nodal values
    assert np.isclose(load_vector(points, triangles, points[:, 0]).sum(), 0.5)
    assert np.isclose(load_vector(points, triangles, lambda x, y: x).sum(), 0.5)


def boundary_mask(points):
    return (np.isclose(points, 0) | np.isclose(points, 1)).any(1, keepdims=True)


def test_orientation_does_not_matter():
    points, triangles = structured_triangle_mesh(3)
    K, M = assemble_p1(points, triangles)
    K2, M2 = assemble_p1(points, triangles[:, ::-1])  # clockwise
    assert abs(K - K2).max() < 1e-14 and abs(M - M2).max() < 1e-14


def test_reduced_system_spd():
    points, triangles = structured_triangle_mesh(6)
    K, _ = assemble_p1(points, triangles)
    A, b, free = apply_dirichlet(K, np.ones(len(points)), boundary_nodes(triangles))
    assert A.shape == (25, 25) and b.shape == (25,) and len(free) == 25
    dense = A.toarray()
    assert np.allclose(dense, dense.T) and np.linalg.eigvalsh(dense).min() > 0


def test_second_order_poisson():
    orders = l2_orders(lambda x, y: 2 * PI**2 * exact(x, y), exact)
    assert np.all((orders > 1.8) & (orders < 2.2)), orders


def test_second_order_variable_coefficient():
    orders = l2_orders(forcing_variable, exact, a=coefficient)
    assert np.all((orders > 1.8) & (orders < 2.2)), orders


def test_second_order_nonzero_dirichlet():
    u = lambda x, y: np.exp(x) * np.cos(2 * y)  # noqa: E731  (-Laplacian u = 3 u)
    orders = l2_orders(lambda x, y: 3 * u(x, y), u, g=u)
    assert np.all((orders > 1.8) & (orders < 2.2)), orders


def test_coefficient_forms_agree():
    points, triangles = structured_triangle_mesh(5)
    centroids = points[triangles].mean(axis=1)
    K_callable, _ = assemble_p1(points, triangles, coefficient)
    K_array, _ = assemble_p1(points, triangles, coefficient(*centroids.T))
    assert abs(K_callable - K_array).max() < 1e-14
    K_one, _ = assemble_p1(points, triangles)
    assert abs(assemble_p1(points, triangles, 2.5)[0] - 2.5 * K_one).max() < 1e-13
    with pytest.raises(ValueError, match="positive"):
        assemble_p1(points, triangles, -1.0)
    with pytest.raises(ValueError, match="shape"):
        assemble_p1(points, triangles, np.ones(3))


@pytest.mark.parametrize("suffix", [".vtk", ".msh", ".xdmf"])
def test_mesh_file_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(1)
    points, triangles = structured_triangle_mesh(7, 5)
    points = points + 0.02 * rng.uniform(-1, 1, points.shape) * ~boundary_mask(points)
    path = tmp_path / f"mesh{suffix}"
    write_mesh(path, points, triangles)
    points2, triangles2, boundary2 = read_mesh(path)
    np.testing.assert_array_equal(boundary2, boundary_nodes(triangles))
    systems = []
    for p, t, bnd in ((points, triangles, boundary_nodes(triangles)), (points2, triangles2, boundary2)):
        K, _ = assemble_p1(p, t, coefficient)
        systems.append(apply_dirichlet(K, load_vector(p, t, forcing_variable), bnd))
    (A, b, free), (A2, b2, free2) = systems
    np.testing.assert_array_equal(free, free2)
    assert abs(A - A2).max() < 1e-12
    np.testing.assert_allclose(b, b2, rtol=1e-12, atol=1e-14)


def test_read_mesh_drops_unused_points_and_other_cells(tmp_path):
    points, triangles = structured_triangle_mesh(2)
    extra = np.vstack([[5.0, 5.0], points])  # a geometry point used by no triangle, first
    mesh = meshio.Mesh(
        np.column_stack([extra, np.zeros(len(extra))]),
        [("vertex", np.array([[0]])), ("line", np.array([[1, 2]])), ("triangle", triangles + 1)],
    )
    path = tmp_path / "with_extras.vtk"
    meshio.write(path, mesh)
    points2, triangles2, boundary2 = read_mesh(path)
    np.testing.assert_allclose(points2, points)
    np.testing.assert_array_equal(triangles2, triangles)
    assert len(boundary2) == 8


def test_read_mesh_errors(tmp_path):
    path = tmp_path / "lines.vtk"
    meshio.write(path, meshio.Mesh(np.zeros((2, 3)), [("line", np.array([[0, 1]]))]))
    with pytest.raises(ValueError, match="no triangle"):
        read_mesh(path)
