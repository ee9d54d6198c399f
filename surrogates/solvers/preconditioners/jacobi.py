"""Jacobi (diagonal) preconditioner ``M = diag(A)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

from surrogates.solvers.preconditioners.base import Preconditioner
from surrogates.solvers.sparse import as_sparse_matrix

__all__ = ["JacobiPreconditioner"]


class JacobiPreconditioner(Preconditioner):
    """``M^{-1} r = r / diag(A)``, for one matrix or a batch of matrices.

    Parameters
    ----------
    A
        Anything :func:`surrogates.solvers.sparse.as_sparse_matrix` accepts: one matrix ``(n, n)``
        (the same diagonal for every right-hand side) or a batch of ``B`` matrices (row ``b`` of the
        residuals is scaled by the diagonal of matrix ``b``).

    Raises
    ------
    ValueError
        If a diagonal entry is not positive (``M`` would not be SPD), naming the first one.
    """

    name = "jacobi"
    elementwise = True

    def __init__(self, A: Any) -> None:
        S = as_sparse_matrix(A)
        diagonal = S.diagonal()
        bad = ~(diagonal > 0)  # also catches NaN
        if bool(bad.any()):
            where = torch.nonzero(bad)[0].tolist()
            place = f"row {where[-1]}" + (f" of matrix {where[0]}" if diagonal.ndim == 2 else "")
            value = float(diagonal[tuple(where)])
            raise ValueError(f"Jacobi needs a positive diagonal: A[{where[-1]}, {where[-1]}] = {value:.3e} at {place}")
        self.inverse_diagonal = 1.0 / diagonal  # (n,) or (B, n)

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``r / diag(A)``; ``r`` of shape ``(B, n)`` (any memory layout, which the result keeps)."""
        return r * self.inverse_diagonal

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "JacobiPreconditioner":
        self.inverse_diagonal = self.inverse_diagonal.to(device=device, dtype=dtype)
        return self

    def scipy_operator(self) -> spla.LinearOperator:
        """The same preconditioner for ``scipy.sparse.linalg.cg`` (one matrix only)."""
        if self.inverse_diagonal.ndim != 1:
            raise ValueError("scipy_operator is defined for one matrix, not a batch")
        inv = self.inverse_diagonal.detach().cpu().numpy()
        n = inv.shape[0]
        return spla.LinearOperator((n, n), matvec=lambda r: inv * np.ravel(r), dtype=inv.dtype)
