"""Compact nine-point ("Mehrstellen") finite differences for ``-Laplacian u = f`` on the unit square.

Same grid and numbering as :mod:`surrogates.solvers.finite_differences`: ``s x s`` nodes including the
boundary, ``h = 1 / (s - 1)``, node arrays indexed ``[i, j]`` (first axis x), unknowns the ``(s - 2)^2``
interior nodes numbered row-major ``(i, j) -> (i - 1) (s - 2) + (j - 1)``; Dirichlet data on the boundary.

The operator is

    (A u)_ij = [ 20 u_ij - 4 (u_{i+-1,j} + u_{i,j+-1}) - (u_{i+-1,j+-1}) ] / (6 h^2).

By Taylor expansion ``A u = -Lap u - (h^2 / 12) Lap^2 u + O(h^4)``: it is only second order against
the plain right-hand side ``f``, but with ``-Lap u = f`` the error term equals ``+(h^2 / 12) Lap f``,
so the corrected right-hand side

    b_ij = f_ij + (h^2 / 12) (Lap_h f)_ij = [ 8 f_ij + f_{i+-1,j} + f_{i,j+-1} ] / 12

(``Lap_h`` the five-point Laplacian, which needs ``f`` on the boundary nodes too) makes the scheme
fourth-order accurate while the stencil stays compact (one ring of neighbours). Known Dirichlet
values move to the right-hand side as ``+ (4 g_edge + g_corner) / (6 h^2)`` for each boundary
neighbour; :func:`mehrstellen_rhs` does both. The matrix is symmetric positive definite: its
eigenvalues are ``[20 - 8 (cos a + cos b) - 4 cos a cos b] / (6 h^2) > 0`` for the sine modes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

# (di, dj, weight) of the stencil of 6 h^2 A, centre excluded: edge neighbours 4, corners 1
_NEIGHBOURS = (
    (1, 0, 4.0), (-1, 0, 4.0), (0, 1, 4.0), (0, -1, 4.0),
    (1, 1, 1.0), (1, -1, 1.0), (-1, 1, 1.0), (-1, -1, 1.0),
)  # fmt: skip
_CENTRE = 20.0


def _check_size(s: int) -> int:
    if int(s) != s or s < 3:
        raise ValueError(f"s must be an integer >= 3, got {s}")
    return int(s)


def poisson_operator_9point(s: int) -> sp.csr_matrix:
    """Assemble the nine-point Mehrstellen operator of ``-Laplacian`` with Dirichlet boundary.

    Parameters
    ----------
    s
        Nodes per direction including the boundary, ``s >= 3``.

    Returns
    -------
    scipy.sparse.csr_matrix
        SPD matrix of shape ``((s - 2)^2, (s - 2)^2)`` on the interior nodes (row-major), scaled by
        ``1 / (6 h^2)``. Pair it with :func:`mehrstellen_rhs` for fourth-order accuracy.
    """
    s = _check_size(s)
    m = s - 2
    scale = float(s - 1) ** 2 / 6.0
    index = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [index.ravel()], [index.ravel()], [np.full(m * m, _CENTRE * scale)]
    for di, dj, weight in _NEIGHBOURS:
        # interior (i, j) whose neighbour (i + di, j + dj) is interior too; boundary ones drop out
        src = index[max(0, -di) : m - max(0, di), max(0, -dj) : m - max(0, dj)]
        dst = index[max(0, di) : m - max(0, -di), max(0, dj) : m - max(0, -dj)]
        rows.append(src.ravel())
        cols.append(dst.ravel())
        vals.append(np.full(src.size, -weight * scale))
    shape = (m * m, m * m)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def mehrstellen_rhs(
    f: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray],
    s: int | None = None,
    boundary_values: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Fourth-order right-hand side for :func:`poisson_operator_9point`.

    Parameters
    ----------
    f
        Source at all nodes, shape ``(s, s)`` (boundary included: the correction needs it), or a
        callable ``f(x, y)`` evaluated on the grid (then ``s`` is required).
    s
        Nodes per direction; inferred from an array ``f``.
    boundary_values
        Dirichlet data ``g``: node array ``(s, s)`` of which only the boundary entries are used, or
        a callable ``g(x, y)``; ``None`` means ``u = 0`` on the boundary.

    Returns
    -------
    np.ndarray
        ``b`` of shape ``((s - 2)^2,)``: ``(8 f_P + f_E + f_W + f_N + f_S) / 12`` plus the boundary
        neighbours' ``(4 g_edge + g_corner) / (6 h^2)``.
    """
    f_nodes = _nodes(f, s)
    s = f_nodes.shape[0]
    inner = (slice(1, -1), slice(1, -1))
    b = (8.0 * f_nodes[inner] + f_nodes[2:, 1:-1] + f_nodes[:-2, 1:-1] + f_nodes[1:-1, 2:] + f_nodes[1:-1, :-2]) / 12.0
    if boundary_values is not None:
        g = _nodes(boundary_values, s).copy()
        g[inner] = 0.0  # only boundary data enters: interior entries are the unknowns
        b += _neighbour_sum(g) * (float(s - 1) ** 2 / 6.0)
    return b.ravel()


def _neighbour_sum(g: np.ndarray) -> np.ndarray:
    """``sum_k w_k g_{P + k}`` over the eight stencil neighbours of every interior node: ``(s, s) -> (s-2, s-2)``."""
    s = g.shape[0]
    total = np.zeros((s - 2, s - 2))
    for di, dj, weight in _NEIGHBOURS:
        total += weight * g[1 + di : s - 1 + di, 1 + dj : s - 1 + dj]
    return total


def _nodes(values: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray], s: int | None) -> np.ndarray:
    """Node values ``(s, s)`` from an array or a callable ``(x, y) -> values`` on the grid."""
    if callable(values):
        if s is None:
            raise ValueError("s is required when f is a callable")
        x = np.linspace(0.0, 1.0, _check_size(s))
        xx, yy = np.meshgrid(x, x, indexing="ij")
        values = np.broadcast_to(values(xx, yy), xx.shape)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] < 3:
        raise ValueError(f"node values must have shape (s, s) with s >= 3, got {values.shape}")
    if s is not None and values.shape[0] != s:
        raise ValueError(f"node values have shape {values.shape}, expected ({s}, {s})")
    return values
