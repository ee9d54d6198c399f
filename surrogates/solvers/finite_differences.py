"""Five-point finite differences for ``-div(a grad u)`` on the unit square with ``u = 0`` on the boundary.

Grid: ``s x s`` nodes including the boundary, ``x_i = i h``, ``y_j = j h``, ``h = 1 / (s - 1)``; node
arrays are indexed ``[i, j]`` (first axis x, second axis y). The unknowns are the ``(s - 2)^2``
interior nodes, numbered row-major: ``(i, j) -> (i - 1) (s - 2) + (j - 1)``.

At an interior node the flux form is

    (A u)_ij = [ a_{i+1/2,j} (u_ij - u_{i+1,j}) + a_{i-1/2,j} (u_ij - u_{i-1,j})
               + a_{i,j+1/2} (u_ij - u_{i,j+1}) + a_{i,j-1/2} (u_ij - u_{i,j-1}) ] / h^2,

with boundary values zero. The coefficient is given at the nodes; a face value is the harmonic mean
``2 a_P a_Q / (a_P + a_Q)`` of the two nodes it joins. The harmonic mean is the exact effective
conductivity of two resistors in series, so it keeps the flux continuous across a jump of ``a``
(the standard choice for piecewise-constant coefficients such as Darcy's ``{3, 12}`` fields) and
is second-order accurate for smooth ``a``. The matrix is symmetric positive definite for ``a > 0``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def harmonic_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise harmonic mean ``2 a b / (a + b)`` of positive arrays of the same shape."""
    return 2.0 * a * b / (a + b)


def diffusion_operator(a: np.ndarray) -> sp.csr_matrix:
    """Assemble the 5-point operator of ``-div(a grad u)`` with homogeneous Dirichlet boundary.

    Parameters
    ----------
    a
        Positive coefficient at the nodes, shape ``(s, s)`` with ``s >= 3`` (boundary nodes included).

    Returns
    -------
    scipy.sparse.csr_matrix
        SPD matrix of shape ``((s - 2)^2, (s - 2)^2)`` acting on the interior nodes (row-major), scaled
        by ``1 / h^2`` so that ``A u = f`` discretizes the PDE with ``f`` sampled at the interior nodes.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(f"a must have shape (s, s) with s >= 3, got {a.shape}")
    if not np.all(a > 0):
        raise ValueError("the coefficient a must be positive at every node")
    s = a.shape[0]
    m = s - 2
    inv_h2 = float(s - 1) ** 2
    fx = harmonic_mean(a[:-1, :], a[1:, :]) * inv_h2  # (s-1, s): face between (i, j) and (i+1, j)
    fy = harmonic_mean(a[:, :-1], a[:, 1:]) * inv_h2  # (s, s-1): face between (i, j) and (i, j+1)

    diagonal = fx[:-1, 1:-1] + fx[1:, 1:-1] + fy[1:-1, :-1] + fy[1:-1, 1:]  # (m, m)
    index = np.arange(m * m).reshape(m, m)
    # couplings between interior neighbours only: boundary neighbours are zero and drop out
    x_rows, x_cols, x_vals = index[:-1, :].ravel(), index[1:, :].ravel(), -fx[1:-1, 1:-1].ravel()
    y_rows, y_cols, y_vals = index[:, :-1].ravel(), index[:, 1:].ravel(), -fy[1:-1, 1:-1].ravel()
    rows = np.concatenate([index.ravel(), x_rows, x_cols, y_rows, y_cols])
    cols = np.concatenate([index.ravel(), x_cols, x_rows, y_cols, y_rows])
    vals = np.concatenate([diagonal.ravel(), x_vals, x_vals, y_vals, y_vals])
    return sp.csr_matrix((vals, (rows, cols)), shape=(m * m, m * m))


def poisson_operator(s: int) -> sp.csr_matrix:
    """The constant-coefficient operator ``-Laplacian`` (``a = 1``) on ``s x s`` nodes, built from Kronecker products.

    Parameters
    ----------
    s
        Nodes per direction including the boundary, ``s >= 3``.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``((s - 2)^2, (s - 2)^2)``: ``(T kron I + I kron T) / h^2`` with ``T = tridiag(-1, 2, -1)``.
    """
    if s < 3:
        raise ValueError(f"s must be >= 3, got {s}")
    m = s - 2
    t = sp.diags([-np.ones(m - 1), 2.0 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    eye = sp.identity(m)
    return ((sp.kron(t, eye) + sp.kron(eye, t)) * float(s - 1) ** 2).tocsr()


def interior(field: np.ndarray) -> np.ndarray:
    """Interior values of node fields, flattened row-major: ``(..., s, s) -> (..., (s - 2)^2)``."""
    inner = np.asarray(field)[..., 1:-1, 1:-1]
    return inner.reshape(inner.shape[:-2] + (-1,))


def with_boundary(u_interior: np.ndarray, s: int) -> np.ndarray:
    """Embed interior values ``(..., (s - 2)^2)`` into node fields ``(..., s, s)`` with zero boundary."""
    u_interior = np.asarray(u_interior)
    out = np.zeros(u_interior.shape[:-1] + (s, s), dtype=u_interior.dtype)
    out[..., 1:-1, 1:-1] = u_interior.reshape(u_interior.shape[:-1] + (s - 2, s - 2))
    return out
