"""From a 5-point matrix to what the DCDM network reads, and from the network back to directions.

The unknowns are the ``m x m`` interior nodes numbered row-major, ``(i, j) -> i m + j``
(:mod:`surrogates.solvers.finite_differences`), so the neighbours of unknown ``k`` are ``k -+ m``
(axis 0) and ``k -+ 1`` (axis 1). The network works on ``Â = D^{-1/2} A D^{-1/2}``: a direction
``d̂`` of the scaled system is ``d = D^{-1/2} d̂`` of the original one, and the scaled residual is
``D^{-1/2} r``. ``D`` is ``diag(A)`` (``scaling="diagonal"``) or its mean times ``I``
(``scaling="mean"``: only the ``1/h^2`` and the coefficients' overall level are divided out).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from surrogates.solvers.dcdm.network import COUPLING_CHANNELS, SCALINGS, DCDMNet
from surrogates.solvers.sparse import SparseMatrix, as_sparse_matrix

__all__ = ["SCALINGS", "DirectionOperator", "grid_couplings", "grid_side"]


def grid_side(n: int) -> int:
    """``m`` with ``m^2 = n``; ``ValueError`` when ``n`` is not a square."""
    m = math.isqrt(n)
    if m * m != n or m < 2:
        raise ValueError(f"DCDM needs a 5-point matrix on an m x m grid (m >= 2), got {n} unknowns")
    return m


def grid_couplings(A: SparseMatrix, scaling: str = "diagonal") -> tuple[torch.Tensor, torch.Tensor]:
    """The network's operator channels and ``D^{-1/2}`` of a 5-point SPD matrix.

    Parameters
    ----------
    A
        One (not batched) matrix ``(n, n)``, ``n = m^2``, nonzeros only on the diagonal and at offsets
        ``-+1`` and ``-+m`` (no coupling across the end of a grid row).
    scaling
        ``"diagonal"``: ``D = diag(A)``, so ``Â`` has a unit diagonal (Poisson's couplings are 1/4 and
        Darcy's too, away from a jump of the coefficient). ``"mean"``: ``D = mean(diag(A)) I``, so the
        couplings keep the coefficient's variation (Darcy's ``{3, 12}``: about ``0.1`` and ``0.4``) and
        ``Â``'s near null space stays the smooth functions, which a bilinear interpolation represents
        across a jump too (with ``diag(A)``, ``D^{1/2}`` times a smooth function jumps there).

    Returns
    -------
    couplings : torch.Tensor
        ``-Â_{k, k+o}`` for ``o = -m, +m, -1, +1``, shape ``(1, 4, m, m)`` (zero at the boundary), on ``A``'s
        device and dtype.
    inverse_sqrt_diagonal : torch.Tensor
        ``D^{-1/2}``, shape ``(n,)``.

    Raises
    ------
    ValueError
        When ``A`` is batched, not on a square grid, has a non-positive diagonal or another stencil.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if A.is_batched:
        raise ValueError("DCDM solves with one matrix shared by the right-hand sides, got a batch of matrices")
    n = A.n
    m = grid_side(n)
    rows = A.row_indices().long()
    cols = A.col_indices.long()
    values = A.values
    diagonal = A.diagonal()
    if not bool((diagonal > 0).all()):
        raise ValueError("A must have a positive diagonal (SPD)")
    offsets = cols - rows
    wraps = (offsets.abs() == 1) & (torch.div(rows, m, rounding_mode="floor") != torch.div(cols, m, rounding_mode="floor"))
    allowed = (offsets == 0) | (offsets.abs() == 1) | (offsets.abs() == m)
    if not bool((allowed & ~wraps).all()):
        raise ValueError(f"A is not a 5-point matrix on a {m} x {m} grid (nonzeros outside offsets 0, +-1, +-{m})")
    inverse_sqrt = diagonal.rsqrt() if scaling == "diagonal" else diagonal.mean().rsqrt().expand(n).clone()
    scaled = -values * inverse_sqrt[rows] * inverse_sqrt[cols]
    couplings = values.new_zeros(COUPLING_CHANNELS, n)
    for channel, offset in enumerate((-m, m, -1, 1)):
        hit = offsets == offset
        couplings[channel, rows[hit]] = scaled[hit]
    return couplings.view(1, COUPLING_CHANNELS, m, m), inverse_sqrt


class DirectionOperator:
    """``r -> d = D^{-1/2} f(D^{-1/2} r)``: the network's search directions for one matrix.

    Parameters
    ----------
    network
        A :class:`~surrogates.solvers.dcdm.network.DCDMNet` (its device and dtype are kept: residuals are
        cast to them and directions cast back); its ``scaling`` sets ``D``.
    A
        The 5-point SPD matrix (scipy sparse, torch, or :class:`SparseMatrix`), ``(n, n)`` with ``n = m^2``.

    Notes
    -----
    Calls run under ``torch.no_grad`` unless gradients are wanted (training calls the network directly).
    """

    def __init__(self, network: DCDMNet, A: Any):
        self.network = network
        param = next(network.parameters())
        S = as_sparse_matrix(A, param.device, torch.float64)
        couplings, inverse_sqrt = grid_couplings(S, network.scaling)
        self.couplings = couplings.to(param.dtype)
        self.inverse_sqrt_diagonal = inverse_sqrt
        self.m = couplings.shape[-1]

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """Directions for residuals ``(B, n)`` (``n = m^2``), same shape, device and dtype."""
        if r.ndim != 2 or r.shape[1] != self.m * self.m:
            raise ValueError(f"residuals must have shape (B, {self.m * self.m}), got {tuple(r.shape)}")
        scale = self.inverse_sqrt_diagonal.to(r.device)
        scaled = (r.to(torch.float64) * scale).to(self.couplings.device, self.couplings.dtype)
        with torch.no_grad():
            out = self.network(scaled.view(-1, 1, self.m, self.m), self.couplings)
        return (out.reshape(r.shape[0], -1).to(device=r.device, dtype=torch.float64) * scale).to(r.dtype)
