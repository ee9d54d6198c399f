"""Multi-grid domain decomposition of 2D fields (Kossaifi et al., MG-TFNO).

A field of ``n1 x n2`` points is cut into ``P x P`` patches, ``P = 2**levels``, of ``s1 x s2`` points
(``s = n / P``). Each patch is widened by ``p`` points of its neighbours on every side (the padding,
cropped again after the network), and given, as extra channels, the context of its surroundings on
coarser grids: at level ``l = 1 .. levels`` the field averaged over ``2**l x 2**l`` blocks, cut to a
window of the same ``(s + 2p)`` points centred on the patch, so that it covers a region ``2**l`` times
larger in each direction. At the top level the context covers the whole domain (``2**levels`` patch
widths), so every patch sees the global field, coarsely, and its own neighbourhood finely. All levels
have the same number of points, so a patch is one ``(C * (levels + 1), s1 + 2p1, s2 + 2p2)`` sample.

Points outside the domain are taken periodically (the paper's choice, right for periodic problems) or
by mirror reflection about the boundary points (``"reflect"``, for closed non-periodic grids).

Why coarse context is averaged rather than sub-sampled: block averages do not alias the fine scales
into the coarse channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["BOUNDARIES", "PatchGrid", "multigrid_patches", "stitch_patches"]

BOUNDARIES = ("periodic", "reflect")


@dataclass(frozen=True)
class PatchGrid:
    """The geometry of a decomposition of an ``n1 x n2`` field.

    Parameters
    ----------
    sizes : tuple of int
        ``(n1, n2)``, each divisible by ``2**levels``.
    levels : int
        Number of coarser context levels; ``2**levels`` patches per dimension.
    padding_fraction : float
        Padding on every side, as a fraction of the patch size (``round(f * s)`` points).
    boundary : {"periodic", "reflect"}
        How points outside the domain are taken.
    """

    sizes: tuple[int, int]
    levels: int
    padding_fraction: float
    boundary: str = "periodic"

    def __post_init__(self):
        if self.levels < 0 or self.padding_fraction < 0:
            raise ValueError(f"levels and padding_fraction must be >= 0, got {self.levels} and {self.padding_fraction}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if any(n % self.per_dim for n in self.sizes):
            raise ValueError(
                f"grid {self.sizes[0]}x{self.sizes[1]} is not divisible into {self.per_dim}x{self.per_dim} patches "
                f"(levels={self.levels}): each size must be a multiple of {self.per_dim}"
            )

    @property
    def per_dim(self) -> int:
        """Patches per dimension, ``P = 2**levels``."""
        return 2**self.levels

    @property
    def patch(self) -> tuple[int, int]:
        """Patch size without padding, ``(s1, s2)``."""
        return tuple(n // self.per_dim for n in self.sizes)

    @property
    def pad(self) -> tuple[int, int]:
        """Padding on each side, ``(p1, p2)``."""
        return tuple(round(self.padding_fraction * s) for s in self.patch)

    @property
    def window(self) -> tuple[int, int]:
        """Points of a padded patch (every level's window), ``(s1 + 2 p1, s2 + 2 p2)``."""
        return tuple(s + 2 * p for s, p in zip(self.patch, self.pad))

    def indices(self, level: int, axis: int) -> torch.Tensor:
        """Indices into the level-``level`` grid of every patch's window along ``axis``, shape ``(P, window)``."""
        s, p, w = self.patch[axis], self.pad[axis], self.window[axis]
        n = self.sizes[axis] // 2**level
        centres = torch.arange(self.per_dim) * (2 * s) + s  # twice the fine centre, to stay in integers
        # Window start on the coarse grid: centred on the patch's centre (floor when it falls between points).
        starts = centres // 2 ** (level + 1) - (s // 2 + p)
        index = starts[:, None] + torch.arange(w)[None, :]
        if self.boundary == "periodic":
            return index % n
        period = max(2 * n - 2, 1)
        index = index % period
        return torch.where(index >= n, period - index, index)


def multigrid_patches(x: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Cut fields into padded patches with their coarse context.

    Parameters
    ----------
    x : torch.Tensor
        Fields of shape ``(B, C, n1, n2)``, ``(n1, n2) == grid.sizes``.
    grid : PatchGrid
        The decomposition.

    Returns
    -------
    torch.Tensor
        Shape ``(B * P * P, C * (levels + 1), w1, w2)``: patch ``(i, j)`` of sample ``b`` at index
        ``(b * P + i) * P + j``; channels level by level (the fine patch first).
    """
    if x.ndim != 4 or tuple(x.shape[2:]) != tuple(grid.sizes):
        raise ValueError(f"expected fields of shape (batch, channels, {grid.sizes[0]}, {grid.sizes[1]}), got {tuple(x.shape)}")
    batch, channels = x.shape[:2]
    levels = []
    for level in range(grid.levels + 1):
        field = F.avg_pool2d(x, 2**level) if level else x
        rows, cols = grid.indices(level, 0).to(x.device), grid.indices(level, 1).to(x.device)
        cut = field[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (B, C, P, w1, P, w2)
        levels.append(cut.permute(0, 2, 4, 1, 3, 5))
    patches = torch.cat(levels, dim=3)  # (B, P, P, C * (levels + 1), w1, w2)
    return patches.reshape(batch * grid.per_dim**2, channels * (grid.levels + 1), *grid.window)


def stitch_patches(patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Crop the padding of per-patch outputs and put the patches back together.

    Parameters
    ----------
    patches : torch.Tensor
        Shape ``(B * P * P, C, w1, w2)`` in the order of :func:`multigrid_patches`.
    grid : PatchGrid
        The decomposition.

    Returns
    -------
    torch.Tensor
        Shape ``(B, C, n1, n2)``.
    """
    per_dim = grid.per_dim
    if patches.ndim != 4 or patches.shape[0] % per_dim**2 or tuple(patches.shape[2:]) != tuple(grid.window):
        raise ValueError(
            f"expected patches of shape (batch * {per_dim**2}, channels, {grid.window[0]}, {grid.window[1]}), "
            f"got {tuple(patches.shape)}"
        )
    (s1, s2), (p1, p2) = grid.patch, grid.pad
    inner = patches[:, :, p1 : p1 + s1, p2 : p2 + s2]
    batch, channels = patches.shape[0] // per_dim**2, patches.shape[1]
    inner = inner.reshape(batch, per_dim, per_dim, channels, s1, s2).permute(0, 3, 1, 4, 2, 5)
    return inner.reshape(batch, channels, *grid.sizes)
