"""Level-scheduled sparse triangular solves in torch, batched over right-hand sides.

A lower-triangular row ``i`` can be eliminated as soon as every column ``j < i`` it references is
known. Grouping rows into *levels* (level of ``i`` = 1 + the largest level among its dependencies)
gives sets of rows that are independent of each other, so each level is one vectorized gather /
scatter over all its rows and all right-hand sides at once. For the 5-point grid in natural
ordering the levels are the anti-diagonals: ``2 m - 1`` levels for ``m^2`` unknowns, instead of
``m^2`` sequential row updates. The same code solves upper-triangular systems (levels from the
bottom row up), which is what ``L^T z = y`` needs.

Works for any triangular CSR matrix with a nonzero diagonal; the schedule is built once (numpy)
and reused for every solve.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["TriangularSolver", "levels"]


def levels(T: sp.csr_matrix, lower: bool = True) -> np.ndarray:
    """Level of every row of a triangular matrix in the dependency DAG of forward/backward substitution.

    Parameters
    ----------
    T
        Triangular CSR matrix, shape ``(n, n)``; only its strict triangle's pattern is used.
    lower
        ``True``: row ``i`` depends on columns ``j < i``; ``False``: on ``j > i``.

    Returns
    -------
    np.ndarray
        Integer levels, shape ``(n,)``, starting at 0; rows of level ``k`` depend only on rows of
        levels ``< k``.
    """
    T = sp.csr_matrix(T)
    n = T.shape[0]
    indptr, indices = T.indptr.tolist(), T.indices.tolist()
    level = [0] * n
    # One pass in substitution order: every dependency's level is final when a row is reached, so
    # this is O(nnz) for any pattern (a sweep-until-stable vectorized version costs O(levels * nnz)).
    for i in (range(n) if lower else range(n - 1, -1, -1)):
        deps = [level[j] for j in indices[indptr[i]:indptr[i + 1]] if (j < i if lower else j > i)]
        level[i] = max(deps) + 1 if deps else 0
    return np.asarray(level, dtype=np.int64)


class TriangularSolver:
    """Solve ``T x = b`` for a fixed sparse triangular ``T`` and batches of ``b``.

    Parameters
    ----------
    T
        Triangular matrix (scipy sparse), shape ``(n, n)``, nonzero diagonal.
    lower
        Whether ``T`` is lower (forward substitution) or upper (backward substitution) triangular.
    dtype, device
        Where the schedule's values live; move later with :meth:`to`.

    Notes
    -----
    Per level ``k`` the solver stores its rows, the inverse diagonal of those rows and the strict
    triangle's entries ``(position within the level, column, value)``. A solve is one
    ``index_select`` + ``index_add_`` per level, on ``x`` laid out as ``(n, B)`` so gathers copy
    contiguous rows.
    """

    def __init__(self, T: sp.spmatrix, lower: bool = True, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None):
        T = sp.csr_matrix(T)
        T.sum_duplicates()
        T.sort_indices()
        n = T.shape[0]
        if T.shape != (n, n):
            raise ValueError(f"T must be square, got {T.shape}")
        diagonal = T.diagonal()
        if np.any(diagonal == 0):
            raise ValueError("T has a zero on its diagonal: it is singular")
        rows = np.repeat(np.arange(n), np.diff(T.indptr))
        wrong = T.indices > rows if lower else T.indices < rows
        if np.any(wrong & (T.data != 0)):
            raise ValueError(f"T is not {'lower' if lower else 'upper'} triangular")
        self.n, self.lower = n, lower
        level = levels(T, lower)
        self.n_levels = int(level.max()) + 1 if n else 0

        strict = (T.indices < rows) if lower else (T.indices > rows)
        e_rows, e_cols, e_vals = rows[strict], T.indices[strict], T.data[strict]
        order = np.argsort(level, kind="stable")
        bounds = np.searchsorted(level[order], np.arange(self.n_levels + 1))
        # position of each row inside its level, so that entries scatter into a (len(level), B) block
        position = np.empty(n, dtype=np.int64)
        for k in range(self.n_levels):
            position[order[bounds[k]:bounds[k + 1]]] = np.arange(bounds[k + 1] - bounds[k])
        e_level = level[e_rows]
        e_order = np.argsort(e_level, kind="stable")
        e_bounds = np.searchsorted(e_level[e_order], np.arange(self.n_levels + 1))

        self._rows, self._inv_diag, self._e_pos, self._e_cols, self._e_vals = [], [], [], [], []
        for k in range(self.n_levels):
            r = order[bounds[k]:bounds[k + 1]]
            e = e_order[e_bounds[k]:e_bounds[k + 1]]
            self._rows.append(torch.from_numpy(r))
            self._inv_diag.append(torch.from_numpy(1.0 / diagonal[r]))
            self._e_pos.append(torch.from_numpy(position[e_rows[e]]))
            self._e_cols.append(torch.from_numpy(e_cols[e].astype(np.int64)))
            self._e_vals.append(torch.from_numpy(e_vals[e]))
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        self.to(device, dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TriangularSolver":
        """Move the schedule to ``device`` / cast its values to ``dtype``; returns ``self``."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        move_index = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        move_value = lambda ts: [t.to(device=device, dtype=dtype) for t in ts]  # noqa: E731
        self._rows, self._e_pos, self._e_cols = move_index(self._rows), move_index(self._e_pos), move_index(self._e_cols)
        self._inv_diag, self._e_vals = move_value(self._inv_diag), move_value(self._e_vals)
        self.device, self.dtype = device, dtype
        return self

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """Solve ``T x = b``.

        Parameters
        ----------
        b
            Right-hand sides, shape ``(B, n)`` or ``(n,)``.

        Returns
        -------
        torch.Tensor
            ``x``, same shape as ``b``.
        """
        squeeze = b.dim() == 1
        bt = b.reshape(1, -1) if squeeze else b
        if bt.shape[-1] != self.n:
            raise ValueError(f"b has {bt.shape[-1]} unknowns, T has {self.n}")
        rhs = bt.t().to(self.dtype)  # (n, B): gathering rows of x copies contiguous memory
        x = torch.empty_like(rhs, memory_format=torch.contiguous_format)
        for rows, inv_diag, pos, cols, vals in zip(self._rows, self._inv_diag, self._e_pos, self._e_cols, self._e_vals):
            acc = rhs.index_select(0, rows)  # (len(rows), B)
            if cols.numel():
                acc = acc.index_add(0, pos, x.index_select(0, cols) * vals[:, None], alpha=-1.0)
            x[rows] = acc * inv_diag[:, None]
        x = x.t().to(b.dtype)
        return x.reshape(-1) if squeeze else x
