"""The DCDM network: a convolutional approximation of ``A^{-1}`` (up to a constant) on a 2D grid.

Kaneda et al. (ICML 2023) train a CNN ``f`` so that ``A f(r)`` is parallel to ``r``: only the
direction of ``f(r)`` matters, because the conjugate direction iteration chooses the step length
itself. Here the network acts on 5-point operators of an ``m x m`` interior grid (Poisson, Darcy:
:mod:`surrogates.solvers.finite_differences`) in their diagonally scaled form ``Â = D^{-1/2} A D^{-1/2}``,
and it reads the operator's coefficients: four channels hold the scaled couplings ``-Â`` to the four
neighbours (about 1/4 each for Poisson, zero across the boundary), so one network serves a family of
variable-coefficient matrices (Darcy's ``{3, 12}`` fields) and the ``1/h^2`` scale of ``A`` never
reaches it.

Architecture. ``f(r) = N^T N r + sigma r`` with ``N`` a convolutional network that is *linear in r*
(the couplings set its weights through multiplicative gates, ``conv(h) * gate(couplings)``, the only
nonlinearity) and ``sigma = softplus(.) > 0`` learned. So ``f`` is a symmetric positive definite
operator for every matrix and every set of weights, and DCDM with it can never stall: with a general
nonlinear CNN (the paper's ReLU U-Net, which we tried first) an undertrained network's direction
became A-orthogonal to the error after a few iterations and the iteration stopped moving; ``N^T N`` is
the learned-factor idea of the GNN preconditioner (``P^{-1} = L^{-T} L^{-1}``) in convolutional form.
``N^T z`` is computed exactly as the gradient of ``<N u, z>`` in ``u``.

``N`` is a recursive U-Net with shared weights: a level smooths with residual 3x3 convolution blocks,
average-pools to half the size, runs the *same* level on the coarse grid until it is at most
``coarsest`` nodes wide, adds the interpolated coarse correction and smooths again, like a multigrid
V-cycle (the paper's U-Net has one coarsening). A 256 grid gets two more levels than a 64 grid, with no
new weights, so a network trained at 64 runs on finer grids, where ``A^{-1}`` couples ever more
distant nodes (how well it transfers is measured in ``docs/benchmarks.md``: not well after minutes of training).

Input scaling. The residual is divided by its root mean square before the network sees it (the paper
normalizes it to unit norm; RMS keeps the entries O(1) at every grid size), so the direction
``f(c r) = f(r)`` for every ``c > 0``: exactly what the iteration needs (it is blind to the length of
``f(r)``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from surrogates.solvers.preconditioners.persistence import load_network, load_network_metadata, save_network

__all__ = ["COUPLING_CHANNELS", "DCDMNet", "load", "load_metadata"]

COUPLING_CHANNELS = 4
"""Operator channels: scaled couplings to the neighbours at ``i - 1``, ``i + 1``, ``j - 1``, ``j + 1``."""


_IDENTITY_WEIGHT_INIT = -4.0  # softplus(-4) ~ 0.018: the identity starts as a small safeguard


class _ResidualBlock(nn.Module):
    """``h + conv(conv(h) * gate(couplings))``: a smoothing step, linear in ``h``, whose weights the local operator sets."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.second = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.gate = nn.Sequential(
            nn.Conv2d(COUPLING_CHANNELS, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1),
        )

    def forward(self, h: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        return h + self.second(self.first(h) * self.gate(couplings))


class DCDMNet(nn.Module):
    """Recursive U-Net ``(r, couplings) -> d`` with ``A d`` approximately parallel to ``r`` (scaled system).

    Parameters
    ----------
    width
        Channels of the hidden state.
    blocks
        Residual blocks before and after the coarse correction on every level.
    coarsest
        A level with at most this many nodes along a side does not coarsen further.

    Attributes
    ----------
    init_kwargs : dict
        The constructor arguments (plain values), saved with the weights.
    """

    def __init__(self, width: int = 16, blocks: int = 2, coarsest: int = 4):
        super().__init__()
        if width < 1 or blocks < 1 or coarsest < 1:
            raise ValueError(f"width, blocks and coarsest must be positive, got {width}, {blocks}, {coarsest}")
        self.init_kwargs = {"width": int(width), "blocks": int(blocks), "coarsest": int(coarsest)}
        self.lift = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.pre = nn.ModuleList(_ResidualBlock(width) for _ in range(blocks))
        self.post = nn.ModuleList(_ResidualBlock(width) for _ in range(blocks))
        self.restrict = nn.Conv2d(width, width, 1, bias=False)
        self.prolong = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.project = nn.Conv2d(width, 1, 1, bias=False)
        # f = N^T N + sigma I with sigma = softplus(.) > 0: N may have a null space (checkerboards vanish in
        # average pooling), and then N^T N alone would stall the iteration on it
        self.identity_weight = nn.Parameter(torch.tensor(_IDENTITY_WEIGHT_INIT))

    def forward(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        """One direction per residual.

        Parameters
        ----------
        r
            Scaled residuals ``D^{-1/2} r`` on the grid, shape ``(B, 1, m, m)`` (any scale: normalized here).
        couplings
            From :func:`~surrogates.solvers.dcdm.grid.grid_couplings`, shape ``(1 or B, 4, m, m)``.

        Returns
        -------
        torch.Tensor
            Directions of the scaled system, shape ``(B, 1, m, m)``.
        """
        if r.ndim != 4 or r.shape[1] != 1:
            raise ValueError(f"r must have shape (B, 1, m, m), got {tuple(r.shape)}")
        if couplings.ndim != 4 or couplings.shape[1] != COUPLING_CHANNELS or couplings.shape[-2:] != r.shape[-2:]:
            raise ValueError(f"couplings must have shape (1 or B, {COUPLING_CHANNELS}, {r.shape[-2]}, {r.shape[-1]}), "
                             f"got {tuple(couplings.shape)}")
        rms = r.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        r = r / torch.where(rms > 0, rms, torch.ones_like(rms))  # f(c r) = f(r) for c > 0; r = 0 stays 0
        couplings = couplings.expand(r.shape[0], -1, -1, -1)
        train = torch.is_grad_enabled()
        with torch.enable_grad():  # N^T z is the gradient of <N u, z> in u (N is linear in u)
            u = r.detach().requires_grad_(True)
            z = self.half(u, couplings)
            (out,) = torch.autograd.grad(z, u, grad_outputs=z, create_graph=train)
        return out + F.softplus(self.identity_weight) * r

    def half(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        """``N r``, the half of ``f = N^T N``: linear in ``r``, shapes ``(B, 1, m, m)`` and ``(B, 4, m, m)`` -> ``(B, 1, m, m)``."""
        return self.project(self._level(self.lift(r), couplings))

    def _level(self, h: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        for block in self.pre:
            h = block(h, couplings)
        size = h.shape[-2:]
        if min(size) > self.init_kwargs["coarsest"]:
            coarse_h = F.avg_pool2d(self.restrict(h), 2, ceil_mode=True)
            coarse_c = F.avg_pool2d(couplings, 2, ceil_mode=True)
            coarse = self._level(coarse_h, coarse_c)
            h = h + self.prolong(F.interpolate(coarse, size=size, mode="bilinear", align_corners=False))
        for block in self.post:
            h = block(h, couplings)
        return h

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the network through :mod:`surrogates.checkpoint` (kind ``"preconditioner"``); see :func:`load`."""
        return save_network(self, path, metadata)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> DCDMNet:
    """Load a :class:`DCDMNet` written by :meth:`DCDMNet.save` (eval mode); ``CheckpointError`` otherwise."""
    return load_network(path, map_location, expected=DCDMNet)


def load_metadata(path: str | Path) -> dict:
    """The training record saved with a :class:`DCDMNet` (``{}`` if none)."""
    return load_network_metadata(path)
