"""Linear (P1) finite elements on triangle meshes for ``-div(a grad u) = f`` with Dirichlet data.

A mesh file becomes a linear system in four calls::

    points, triangles, boundary = read_mesh("domain.msh")   # any format meshio reads
    K, M = assemble_p1(points, triangles, coefficient=a)     # stiffness and mass (CSR)
    F = load_vector(points, triangles, f)
    A, b, free = apply_dirichlet(K, F, boundary, values=g)   # SPD system for the free nodes

and :func:`full_solution` puts the boundary values back. Assembly is vectorized: all element
matrices are computed at once with numpy (shape ``(m, 3, 3)``) and summed into one sparse matrix, so
meshes with millions of triangles assemble in seconds.

Per triangle with vertices ``p_0, p_1, p_2`` and area ``|T|``, the hat functions have constant
gradients ``grad phi_k = (y_{k+1} - y_{k+2}, x_{k+2} - x_{k+1}) / (2 |T|_signed)`` (indices mod 3), so

    K_T = a_T |T| G G^T,      M_T = |T| / 12 [[2, 1, 1], [1, 2, 1], [1, 1, 2]],

with ``G`` the ``(3, 2)`` matrix of gradients and ``a_T`` the coefficient at the centroid (the
midpoint rule keeps the method second order in L2 for smooth ``a``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np
import scipy.sparse as sp

Field = Union[float, np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]

# reference mass matrix of a P1 triangle divided by its area
_MASS_REFERENCE = (np.ones((3, 3)) + np.eye(3)) / 12.0


# -- meshes -----------------------------------------------------------------------------------------
def structured_triangle_mesh(nx: int, ny: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate the unit square: ``nx x ny`` cells, each split along its diagonal into two triangles.

    Parameters
    ----------
    nx, ny
        Cells in x and y (``ny`` defaults to ``nx``).

    Returns
    -------
    points : np.ndarray
        Shape ``((nx + 1) (ny + 1), 2)``; node ``(i, j)`` at ``(i / nx, j / ny)`` has index ``i (ny + 1) + j``.
    triangles : np.ndarray
        Shape ``(2 nx ny, 3)``, int64, counter-clockwise.
    """
    ny = nx if ny is None else ny
    if nx < 1 or ny < 1:
        raise ValueError(f"nx and ny must be >= 1, got {nx}, {ny}")
    x, y = np.meshgrid(np.linspace(0.0, 1.0, nx + 1), np.linspace(0.0, 1.0, ny + 1), indexing="ij")
    points = np.column_stack([x.ravel(), y.ravel()])
    index = np.arange((nx + 1) * (ny + 1)).reshape(nx + 1, ny + 1)
    p00, p10 = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    p01, p11 = index[:-1, 1:].ravel(), index[1:, 1:].ravel()
    lower = np.column_stack([p00, p10, p11])
    upper = np.column_stack([p00, p11, p01])
    return points, np.concatenate([lower, upper]).astype(np.int64)


def boundary_nodes(triangles: np.ndarray) -> np.ndarray:
    """Nodes on the mesh boundary: the endpoints of edges that belong to exactly one triangle.

    Parameters
    ----------
    triangles
        Shape ``(m, 3)``, node indices.

    Returns
    -------
    np.ndarray
        Sorted unique node indices, int64.
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges.sort(axis=1)  # an interior edge appears once from each side, in opposite orientation
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a planar triangle mesh with meshio (``.msh``, ``.vtk``, ``.vtu``, ``.xdmf``, ...).

    All ``"triangle"`` cell blocks are taken; other cells (lines, vertices, quads) are ignored. Points
    used by no triangle (gmsh files often keep geometry points) are dropped and the triangles renumbered,
    since a node without elements would make the stiffness matrix singular.

    Parameters
    ----------
    path
        Mesh file.

    Returns
    -------
    points : np.ndarray
        Shape ``(n, 2)``, float64 (a z coordinate, if any, must be constant and is dropped).
    triangles : np.ndarray
        Shape ``(m, 3)``, int64.
    boundary : np.ndarray
        Boundary node indices (see :func:`boundary_nodes`).
    """
    import meshio  # only mesh I/O needs it

    mesh = meshio.read(path)
    blocks = [block.data for block in mesh.cells if block.type == "triangle"]
    if not blocks:
        raise ValueError(f"{path}: no triangle cells (found {sorted({block.type for block in mesh.cells})})")
    triangles = np.concatenate(blocks).astype(np.int64)
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.shape[1] == 3:
        if np.ptp(points[:, 2]) > 1e-12 * max(1.0, float(np.abs(points).max())):
            raise ValueError(f"{path}: the mesh is not planar (z varies); only 2D meshes are supported")
        points = points[:, :2]
    used, triangles = np.unique(triangles, return_inverse=True)
    triangles = triangles.reshape(-1, 3)
    points = points[used]
    return points, triangles, boundary_nodes(triangles)


def write_mesh(path: str | Path, points: np.ndarray, triangles: np.ndarray, **kwargs) -> None:
    """Write a triangle mesh with meshio; the format follows the file suffix (``kwargs`` go to :func:`meshio.write`).

    Points are padded with ``z = 0`` because several formats (VTK, gmsh) store 3D points.
    """
    import meshio

    points = np.asarray(points, dtype=np.float64)
    points3 = np.column_stack([points, np.zeros(len(points))]) if points.shape[1] == 2 else points
    meshio.write(path, meshio.Mesh(points3, [("triangle", np.asarray(triangles, dtype=np.int64))]), **kwargs)


# -- assembly ---------------------------------------------------------------------------------------
def element_geometry(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas, hat-function gradients and centroids of all triangles.

    Parameters
    ----------
    points
        Shape ``(n, 2)``.
    triangles
        Shape ``(m, 3)``.

    Returns
    -------
    area : np.ndarray
        Shape ``(m,)``, positive whatever the orientation.
    gradients : np.ndarray
        Shape ``(m, 3, 2)``: ``gradients[e, k]`` is ``grad phi_k`` on triangle ``e``.
    centroids : np.ndarray
        Shape ``(m, 2)``.
    """
    vertices = np.asarray(points, dtype=np.float64)[np.asarray(triangles, dtype=np.int64)]  # (m, 3, 2)
    x, y = vertices[..., 0], vertices[..., 1]
    # (x_{k+1}, y_{k+1}) and (x_{k+2}, y_{k+2}) for each local vertex k
    x1, x2 = np.roll(x, -1, axis=1), np.roll(x, -2, axis=1)
    y1, y2 = np.roll(y, -1, axis=1), np.roll(y, -2, axis=1)
    twice_signed_area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    if np.any(np.abs(twice_signed_area) <= 1e-14 * np.abs(vertices).max(initial=1.0) ** 2):
        raise ValueError("the mesh has degenerate (zero-area) triangles")
    gradients = np.stack([y1 - y2, x2 - x1], axis=-1) / twice_signed_area[:, None, None]
    return 0.5 * np.abs(twice_signed_area), gradients, vertices.mean(axis=1)


def _element_values(field: Field | None, centroids: np.ndarray, name: str) -> np.ndarray:
    """A coefficient per element ``(m,)`` from ``None`` (one), a constant, a callable ``(x, y)`` or an array ``(m,)``."""
    m = len(centroids)
    if field is None:
        return np.ones(m)
    if callable(field):
        values = np.asarray(field(centroids[:, 0], centroids[:, 1]), dtype=np.float64)
    else:
        values = np.asarray(field, dtype=np.float64)
    values = np.broadcast_to(values, (m,)) if values.ndim == 0 else values
    if values.shape != (m,):
        raise ValueError(f"{name} must be a constant, a callable or an array of shape ({m},), got {values.shape}")
    return values


def _scatter(triangles: np.ndarray, element_matrices: np.ndarray, n: int) -> sp.csr_matrix:
    """Sum element matrices ``(m, 3, 3)`` into an ``(n, n)`` CSR matrix (duplicates add up in the conversion)."""
    rows = np.repeat(triangles, 3, axis=1).ravel()  # (m, 9): row index of entry (a, b) is triangles[e, a]
    cols = np.tile(triangles, (1, 3)).ravel()
    return sp.coo_matrix((element_matrices.ravel(), (rows, cols)), shape=(n, n)).tocsr()


def assemble_p1(
    points: np.ndarray, triangles: np.ndarray, coefficient: Field | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Stiffness and mass matrices of P1 elements.

    Parameters
    ----------
    points
        Shape ``(n, 2)``.
    triangles
        Shape ``(m, 3)``.
    coefficient
        ``a`` in ``-div(a grad u)``: ``None`` (``a = 1``), a constant, a callable ``a(x, y)`` on arrays
        (evaluated at the centroids) or per-element values of shape ``(m,)``; must be positive.

    Returns
    -------
    K : scipy.sparse.csr_matrix
        Stiffness ``K_ij = int a grad phi_i . grad phi_j``, shape ``(n, n)``, symmetric positive
        semidefinite (rows sum to zero: constants are in its kernel).
    M : scipy.sparse.csr_matrix
        Mass ``M_ij = int phi_i phi_j``, shape ``(n, n)``, SPD; its entries sum to the domain's area.
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    n = len(points)
    area, gradients, centroids = element_geometry(points, triangles)
    a = _element_values(coefficient, centroids, "coefficient")
    if not np.all(a > 0):
        raise ValueError("the coefficient must be positive on every element")
    stiffness = (a * area)[:, None, None] * np.einsum("eid,ejd->eij", gradients, gradients)
    mass = area[:, None, None] * _MASS_REFERENCE
    return _scatter(triangles, stiffness, n), _scatter(triangles, mass, n)


def load_vector(points: np.ndarray, triangles: np.ndarray, f: Field) -> np.ndarray:
    """Load vector ``F_i = int f phi_i``.

    Parameters
    ----------
    points
        Shape ``(n, 2)``.
    triangles
        Shape ``(m, 3)``.
    f
        A constant, node values of shape ``(n,)`` (integrated exactly as their P1 interpolant:
        ``F = M f``), or a callable ``f(x, y)`` integrated with the edge-midpoint rule, which is exact
        for quadratic integrands ``f phi_i`` (``f`` linear) and keeps the method second order.

    Returns
    -------
    np.ndarray
        Shape ``(n,)``.
    """
    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    n = len(points)
    area, _, _ = element_geometry(points, triangles)
    if callable(f):
        vertices = points[triangles]  # (m, 3, 2)
        # midpoint of the edge opposite local vertex k, where phi_k = 0 and the other two are 1/2
        midpoints = 0.5 * (np.roll(vertices, -1, axis=1) + np.roll(vertices, -2, axis=1))
        values = np.asarray(f(midpoints[..., 0], midpoints[..., 1]), dtype=np.float64)
        values = np.broadcast_to(values, midpoints.shape[:2])
        # F_k = |T| / 3 * sum over midpoints of f * phi_k = |T| / 6 * (sum of f at the two midpoints touching k)
        local = (area / 6.0)[:, None] * (values.sum(axis=1, keepdims=True) - values)
    else:
        values = np.asarray(f, dtype=np.float64)
        nodal = np.broadcast_to(values, (n,)) if values.ndim == 0 else values
        if nodal.shape != (n,):
            raise ValueError(f"f must be a constant, a callable or node values of shape ({n},), got {values.shape}")
        local = area[:, None] * np.einsum("ab,eb->ea", _MASS_REFERENCE, nodal[triangles])
    return np.bincount(triangles.ravel(), weights=local.ravel(), minlength=n)


# -- boundary conditions ----------------------------------------------------------------------------
def apply_dirichlet(
    K: sp.spmatrix, F: np.ndarray, boundary: np.ndarray, values: float | np.ndarray = 0.0
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Eliminate Dirichlet nodes: ``u_boundary = values`` moves to the right-hand side.

    Removing the boundary rows and columns (instead of overwriting rows with the identity) keeps
    the reduced matrix symmetric positive definite, so CG and AMG apply directly.

    Parameters
    ----------
    K
        Stiffness matrix, shape ``(n, n)``.
    F
        Load vector, shape ``(n,)``.
    boundary
        Indices of the Dirichlet nodes, shape ``(k,)``.
    values
        Dirichlet values: a constant or shape ``(k,)`` (in the order of ``boundary``).

    Returns
    -------
    A : scipy.sparse.csr_matrix
        ``K[free, free]``, shape ``(n - k, n - k)``.
    b : np.ndarray
        ``F[free] - K[free, boundary] values``, shape ``(n - k,)``.
    free : np.ndarray
        Indices of the remaining nodes, shape ``(n - k,)``, sorted.
    """
    K = sp.csr_matrix(K)
    n = K.shape[0]
    boundary = np.asarray(boundary, dtype=np.int64)
    if len(np.unique(boundary)) != len(boundary):
        raise ValueError("boundary nodes must be unique")
    g = np.broadcast_to(np.asarray(values, dtype=np.float64), boundary.shape)
    is_free = np.ones(n, dtype=bool)
    is_free[boundary] = False
    free = np.flatnonzero(is_free)
    K_free = K[free]
    b = np.asarray(F, dtype=np.float64)[free] - K_free[:, boundary] @ g
    return K_free[:, free].tocsr(), b, free


def full_solution(
    u_free: np.ndarray, free: np.ndarray, boundary: np.ndarray, values: float | np.ndarray = 0.0, n: int | None = None
) -> np.ndarray:
    """Put the solution of the reduced system and the Dirichlet values back into one node vector.

    Parameters
    ----------
    u_free
        Shape ``(n - k,)`` (or ``(..., n - k)`` for several solutions).
    free, boundary
        As returned by / passed to :func:`apply_dirichlet`.
    values
        The Dirichlet values passed to :func:`apply_dirichlet`.
    n
        Number of nodes (default ``len(free) + len(boundary)``).

    Returns
    -------
    np.ndarray
        Shape ``(n,)`` (or ``(..., n)``).
    """
    u_free = np.asarray(u_free)
    boundary = np.asarray(boundary, dtype=np.int64)
    n = len(free) + len(boundary) if n is None else n
    u = np.zeros(u_free.shape[:-1] + (n,), dtype=np.result_type(u_free, np.float64))
    u[..., boundary] = values
    u[..., free] = u_free
    return u
