"""``M = L L^T`` from a given lower-triangular factor: the application shared by IC(0) and the learned preconditioner.

``M^{-1} r`` is two sparse triangular solves, ``L y = r`` and ``L^T z = y``, with
``torch.triangular_solve`` on sparse CSR factors (MKL's sparse triangular solver on the CPU, cuSPARSE
on CUDA), for a batch of right-hand sides at once. On the CPU this was 4-15x faster per solve than
``scipy.sparse.linalg.spsolve_triangular``, whose per-call setup (rescaling and copying the factor,
SuperLU's solve) dominates for one vector.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from surrogates.solvers.preconditioners.base import Preconditioner
from surrogates.solvers.sparse import csr_from_scipy, move_csr

__all__ = ["FactoredPreconditioner"]


class FactoredPreconditioner(Preconditioner):
    """``M^{-1} r = L^{-T} L^{-1} r`` for lower-triangular factors ``L`` with a positive diagonal.

    Parameters
    ----------
    factors
        One scipy CSR factor ``(n, n)`` shared by every right-hand side, or a sequence of ``B`` factors
        (one per matrix of a batch; row ``b`` of the residuals uses factor ``b``).
    batched
        Whether ``factors`` is a per-matrix batch (a sequence of one factor may still be a batch of one).

    Attributes
    ----------
    factors
        The scipy CSR factors, one per matrix (for scipy's CG, see :meth:`scipy_operator`).
    """

    name = "factored"

    def __init__(self, factors: sp.spmatrix | Sequence[sp.spmatrix], batched: bool | None = None) -> None:
        if sp.issparse(factors):
            factors, batched = [factors], bool(batched)
        self.factors = [sp.csr_matrix(L, dtype=np.float64) for L in factors]
        self.batched = len(self.factors) > 1 if batched is None else batched
        L = sp.block_diag(self.factors, format="csr") if self.batched else self.factors[0]
        if not (sp.triu(L, 1).nnz == 0 and np.all(L.diagonal() > 0)):
            raise ValueError("the factor must be lower triangular with a positive diagonal (M = L L^T SPD)")
        self.n = self.factors[0].shape[0]
        self._lower = csr_from_scipy(L)
        self._upper = csr_from_scipy(L.T.tocsr())

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``(L L^T)^{-1} r`` for residuals ``r`` of shape ``(B, n)``; returns ``(B, n)``.

        One factor: the ``B`` columns of ``r.T`` are solved together (no copy when ``r`` is the
        transpose view that PCG uses). A batch of factors: one block-diagonal solve of size ``B n``.
        """
        if self.batched:
            B = r.shape[0]
            rhs = r.reshape(B * self.n, 1)
            return _solve(self._upper, _solve(self._lower, rhs, upper=False), upper=True).view(B, self.n)
        rhs = r.T
        if not rhs.is_contiguous():
            rhs = rhs.contiguous()
        return _solve(self._upper, _solve(self._lower, rhs, upper=False), upper=True).T

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "FactoredPreconditioner":
        self._lower = move_csr(self._lower, device, dtype)
        self._upper = move_csr(self._upper, device, dtype)
        return self

    def scipy_operator(self) -> spla.LinearOperator:
        """The same ``M^{-1}`` for ``scipy.sparse.linalg.cg``: two ``spsolve_triangular`` calls (one factor)."""
        if self.batched:
            raise ValueError("scipy_operator is defined for one matrix, not a batch")
        L = self.factors[0]
        U = L.T.tocsr()
        n = L.shape[0]

        def matvec(r: np.ndarray) -> np.ndarray:
            y = spla.spsolve_triangular(L, np.ravel(r), lower=True)
            return spla.spsolve_triangular(U, y, lower=False)

        return spla.LinearOperator((n, n), matvec=matvec, dtype=L.dtype)


def _solve(T: torch.Tensor, rhs: torch.Tensor, upper: bool) -> torch.Tensor:
    """Sparse triangular solve ``T x = rhs`` for ``rhs`` of shape ``(n, k)``."""
    with warnings.catch_warnings():
        # torch.triangular_solve is deprecated for dense inputs in favour of torch.linalg.solve_triangular,
        # which has no sparse CSR kernel; the sparse path is the one we need
        warnings.simplefilter("ignore", UserWarning)
        if T.device.type != "cpu":
            return torch.triangular_solve(rhs, T, upper=upper).solution
        # On the CPU, MKL's sparse triangular solve synchronizes its OpenMP threads once per level
        # (~2 m levels on an m x m grid); with a busy core each barrier can wait a scheduler time
        # slice: 256 unknowns took 31 ms with 2 threads on a loaded 2-core machine, 0.05 ms with one.
        # The solve is sequential at heart, so it runs on one thread (switching costs ~0.3 us).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return torch.triangular_solve(rhs, T, upper=upper).solution
        finally:
            torch.set_num_threads(threads)
