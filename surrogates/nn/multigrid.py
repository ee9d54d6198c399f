"""A linear operator parameterized by one multigrid V-cycle (He, Liu, Xu, MgNO, ICLR 2024).

:class:`VCycle` maps a field ``f`` with ``in_channels`` channels to a field ``u`` with
``out_channels`` channels on the same grid, the way one V-cycle of a multigrid method maps a
right-hand side to an approximate solution, but with every operator learned. On level ``l``
(``l = 0`` is the input grid, each level halves the points per dimension) with ``nu_l`` smoothing
steps:

.. code-block:: text

    level 0:     u_0 = 0
    every level: u_l <- u_l + S_{l,i} (f_l - A_l u_l),        i = 1 .. nu_l      (smoothing)
    going down:  f_{l+1} = R_l (f_l - A_l u_l)                                  (restricted residual)
                 u_{l+1} = Pi_l u_l                                              (initial guess)
    going up:    u_l <- u_l + P_l u_{l+1}                                       (coarse correction)
                 u_l <- u_l + T_{l,i} (f_l - B_l u_l),        i = 1 .. mu_l      (post-smoothing)
    output:      u_0

- ``A_l`` (``C_out -> C_in``), ``S_{l,i}`` (``C_in -> C_out``): 3-point / 3x3 convolutions, one
  ``A_l`` per level (as in MgNet), one smoother per step. The first step on level 0 starts from
  ``u = 0`` and needs no ``A``.
- ``R_l`` (``C_in -> C_in``) and ``Pi_l`` (``C_out -> C_out``): 3-point / 3x3 convolutions with
  stride 2.
- ``P_l`` (``C_out -> C_out``): a transposed convolution with kernel 3 and stride 2; with the
  weights ``[1/2, 1, 1/2]`` it is linear interpolation.
- ``B_l``, ``T_{l,i}``: the post-smoothing operators (none by default, as in the authors' Darcy
  setting).

With ``restrict_residual=False`` the coarse right-hand side is ``f_{l+1} = R_l f_l`` (the
default of the authors' released code) instead of the restricted residual of the paper.
No convolution has a bias, so the V-cycle is linear.

Boundary conditions
-------------------
They enter through the padding of every convolution: ``"dirichlet"`` pads with zeros,
``"periodic"`` wraps around (circular padding), ``"neumann"`` mirrors (reflect padding). The
prolongation pads its coarse input in the same way before the transposed convolution, so that a
periodic V-cycle commutes with circular shifts by multiples of ``2^(levels - 1)`` points.

Grid sizes
----------
Sizes need not be powers of two. Level ``l + 1`` keeps every other point of level ``l``: ``n``
points become ``ceil(n / 2)`` (coarse point ``j`` sits on fine point ``2 j``), and the prolongation
returns exactly ``n`` points (the coarse grid is padded by one point on the far side, as the
boundary condition says, and the result is cropped). With zero or circular padding every size
works (coarse grids may shrink to a single point, e.g. 16 points with 5 levels end on 1 point).
Reflect padding (``"neumann"``) needs at least two points on every grid, i.e. ``n >= 2^(levels - 1)
+ 1`` (17 points for 5 levels); a smaller grid raises a ``ValueError`` naming the size and the
number of levels (:func:`min_grid_size`). For periodic data, sizes divisible by ``2^(levels - 1)``
keep every coarse grid periodic (other sizes are computed, but their coarse grids do not wrap
around evenly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from surrogates.arguments import check_count

__all__ = ["BOUNDARY_CONDITIONS", "VCycle", "coarse_sizes", "min_grid_size"]

BOUNDARY_CONDITIONS = {"dirichlet": "zeros", "periodic": "circular", "neumann": "reflect"}
"""Boundary condition -> padding mode of the convolutions (``torch.nn.Conv*d(padding_mode=...)``)."""

_PAD_MODES = {"zeros": "constant", "circular": "circular", "reflect": "reflect"}
"""Convolution padding mode -> ``torch.nn.functional.pad`` mode."""

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


def coarse_sizes(size: int, levels: int) -> list[int]:
    """Points per dimension on every level: ``[n, ceil(n/2), ceil(n/4), ...]`` (``levels`` entries)."""
    sizes = [int(size)]
    for _ in range(levels - 1):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def min_grid_size(levels: int, boundary: str = "dirichlet") -> int:
    """Smallest number of points per dimension a V-cycle with ``levels`` grids accepts.

    1 with zero or circular padding; with reflect padding (``"neumann"``) the coarsest grid must
    keep 2 points: ``2^(levels - 1) + 1``.
    """
    return 2 ** (levels - 1) + 1 if BOUNDARY_CONDITIONS[boundary] == "reflect" else 1


def _per_level(value: int | Sequence[int], count: int, name: str, minimum: int) -> list[int]:
    values = [int(value)] * count if isinstance(value, int) else [int(v) for v in value]
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries, expected {count} (one per level)")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} entries must be >= {minimum}, got {values}")
    return values


MAX_LEVELS = 16
"""Most grids of a V-cycle: each level halves the grid, so 16 levels already need ``2^15 + 1`` points a side."""


class VCycle(nn.Module):
    """A learned V-cycle: a linear operator ``(B, C_in, *grid) -> (B, C_out, *grid)``, 1D or 2D.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the right-hand side ``f`` and of the solution ``u``.
    dim : int
        Spatial dimension, 1 or 2.
    levels : int
        Number of grids, the input grid included (``levels=1``: smoothing only, no coarse grid), at most
        :data:`MAX_LEVELS`.
    smoothing : int or list of int
        Smoothing steps ``nu_l`` on the way down, per level (one int for all); each >= 1.
    post_smoothing : int or list of int
        Smoothing steps ``mu_l`` after the coarse correction on levels ``0 .. levels - 2``; >= 0.
    boundary : {"dirichlet", "periodic", "neumann"}
        Padding of the convolutions: zeros, circular or reflect.
    restrict_residual : bool
        ``f_{l+1} = R (f_l - A_l u_l)`` (the paper) or ``f_{l+1} = R f_l``.
    kernel_size : int
        Odd kernel size of the smoothers and of ``A`` (3 in MgNO).

    Notes
    -----
    The module docstring states the algorithm, the boundary conditions and the rule for sizes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        levels: int = 4,
        smoothing: int | Sequence[int] = 1,
        post_smoothing: int | Sequence[int] = 0,
        boundary: str = "dirichlet",
        restrict_residual: bool = True,
        kernel_size: int = 3,
    ):
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"VCycle supports dim 1 or 2, got {dim}")
        check_count("levels", levels, 1, MAX_LEVELS)
        if boundary not in BOUNDARY_CONDITIONS:
            raise ValueError(f"boundary must be one of {sorted(BOUNDARY_CONDITIONS)}, got {boundary!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.in_channels, self.out_channels, self.dim, self.levels = in_channels, out_channels, dim, levels
        self.boundary = boundary
        self.padding_mode = BOUNDARY_CONDITIONS[boundary]
        self.restrict_residual = bool(restrict_residual)
        self.smoothing = _per_level(smoothing, levels, "smoothing", 1)
        self.post_smoothing = _per_level(post_smoothing, levels - 1, "post_smoothing", 0) if levels > 1 else []

        conv, conv_t = _CONV[dim], _CONV_T[dim]

        def stencil(c_in: int, c_out: int, stride: int = 1, size: int = kernel_size) -> nn.Module:
            return conv(c_in, c_out, size, stride=stride, padding=size // 2, bias=False, padding_mode=self.padding_mode)

        # A_l is needed where a residual is formed: smoothing steps after the first on level 0, every
        # step on coarser levels, and the restriction when it restricts the residual.
        self.A = nn.ModuleList()
        self.S = nn.ModuleList()
        for level, steps in enumerate(self.smoothing):
            needs_a = level > 0 or steps > 1 or (self.restrict_residual and levels > 1)
            self.A.append(stencil(out_channels, in_channels) if needs_a else nn.Identity())
            self.S.append(nn.ModuleList(stencil(in_channels, out_channels) for _ in range(steps)))
        self.R = nn.ModuleList(stencil(in_channels, in_channels, stride=2, size=3) for _ in range(levels - 1))
        self.Pi = nn.ModuleList(stencil(out_channels, out_channels, stride=2, size=3) for _ in range(levels - 1))
        self.P = nn.ModuleList(
            conv_t(out_channels, out_channels, 3, stride=2, padding=1, bias=False) for _ in range(levels - 1)
        )
        self.B = nn.ModuleList(
            stencil(out_channels, in_channels) if steps else nn.Identity() for steps in self.post_smoothing
        )
        self.T = nn.ModuleList(
            nn.ModuleList(stencil(in_channels, out_channels) for _ in range(steps)) for steps in self.post_smoothing
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights ~ U(-b, b) with ``b = sqrt(2 / fan_in)``: sqrt(2) times PyTorch's default bound.

        With PyTorch's default the V-cycle shrinks its input about 2x, so activations fade layer
        by layer in a deep MgNO and training starts on a long plateau; this scale keeps them O(1)
        for the default settings.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
                # Conv weights are (out, in, *k), transposed-conv weights (in, out, *k).
                transposed = isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d))
                fan_in = module.weight.shape[0 if transposed else 1] * module.weight[0, 0].numel()
                bound = math.sqrt(2.0 / fan_in)
                nn.init.uniform_(module.weight, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, dim={self.dim}, "
            f"levels={self.levels}, smoothing={self.smoothing}, post_smoothing={self.post_smoothing}, "
            f"boundary={self.boundary!r}, restrict_residual={self.restrict_residual}"
        )

    def check_sizes(self, sizes: Sequence[int]) -> None:
        """Raise ``ValueError`` when a grid is too small for the number of levels and the padding."""
        smallest = min_grid_size(self.levels, self.boundary)
        if min(sizes) < smallest:
            raise ValueError(
                f"a V-cycle with {self.levels} levels and {self.boundary} (reflect) padding needs at least "
                f"{smallest} points per dimension (the coarsest grid, ceil(n / 2^{self.levels - 1}), must "
                f"keep 2 points); got a grid of size {tuple(sizes)}: use fewer levels or a finer grid"
            )

    def prolong(self, level: int, coarse: torch.Tensor, fine_sizes: Sequence[int]) -> torch.Tensor:
        """``P_level``: coarse grid of level ``level + 1`` -> the grid of ``level`` (exactly ``fine_sizes``)."""
        # Pad one coarse point on the far side of every dimension, as the boundary condition says,
        # so that the last fine point (between the last coarse point and the next) is interpolated
        # from both neighbours; then crop to the fine size.
        pads = [0, 1] * self.dim
        mode = _PAD_MODES[self.padding_mode]
        padded = F.pad(coarse, pads, mode=mode) if mode != "constant" else F.pad(coarse, pads)
        fine = self.P[level](padded)
        index = (slice(None), slice(None)) + tuple(slice(0, n) for n in fine_sizes)
        return fine[index]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Apply the V-cycle.

        Parameters
        ----------
        f : torch.Tensor
            Shape ``(B, in_channels, *grid)`` with ``dim`` spatial dimensions.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, *grid)``.
        """
        if f.ndim != self.dim + 2 or f.shape[1] != self.in_channels:
            raise ValueError(
                f"VCycle expects input of shape (batch, {self.in_channels}, {self.dim} spatial dims), "
                f"got {tuple(f.shape)}"
            )
        self.check_sizes(f.shape[2:])
        rhs: list[torch.Tensor] = []
        solutions: list[torch.Tensor] = []
        u: torch.Tensor | None = None
        for level in range(self.levels):
            if level > 0:
                previous_f, previous_u = rhs[-1], solutions[-1]
                residual = previous_f - self.A[level - 1](previous_u) if self.restrict_residual else previous_f
                f = self.R[level - 1](residual)
                u = self.Pi[level - 1](previous_u)
            for smoother in self.S[level]:
                u = smoother(f) if u is None else u + smoother(f - self.A[level](u))
            rhs.append(f)
            solutions.append(u)
        u = solutions[-1]
        for level in range(self.levels - 2, -1, -1):
            f = rhs[level]
            u = solutions[level] + self.prolong(level, u, f.shape[2:])
            for smoother in self.T[level]:
                u = u + smoother(f - self.B[level](u))
        return u
