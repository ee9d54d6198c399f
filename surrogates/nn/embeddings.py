"""Positional embeddings for grid-based neural operators.

Grid convention
---------------
Coordinates lie in ``[0, 1]`` along every spatial dimension and are computed from the input's
size at run time, so the same module works at every resolution.

- ``grid="closed"`` (default): ``n`` points include both ends, ``x_j = j / (n - 1)``. This matches
  data sampled on the nodes of ``[0, 1]`` including both boundary nodes (the Darcy datasets), so
  that the point ``x_j`` of a 32-point grid and the point ``x_{2j}`` of a 63-point grid have the same
  coordinate. (A single point gets coordinate 0.)
- ``grid="periodic"``: ``x_j = j / n``, the right end excluded, as for periodic data where the
  point 1 is the point 0 (``neuraloperator``'s convention). Points of a 32-point grid coincide with
  the even points of a 64-point grid.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GridEmbedding", "grid_coordinates"]

_GRIDS = ("closed", "periodic")


def grid_coordinates(
    sizes: list[int] | tuple[int, ...],
    grid: str = "closed",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Coordinates of a regular grid on ``[0, 1]^d``.

    Parameters
    ----------
    sizes : sequence of int
        Grid points per dimension ``(n_1, ..., n_d)``.
    grid : {"closed", "periodic"}
        Endpoint convention, see the module docstring.
    dtype, device
        Of the result.

    Returns
    -------
    torch.Tensor
        Shape ``(d, n_1, ..., n_d)``; channel ``i`` holds the ``i``-th coordinate.
    """
    if grid not in _GRIDS:
        raise ValueError(f"grid must be one of {_GRIDS}, got {grid!r}")
    axes = []
    for n in sizes:
        denominator = max(n - 1, 1) if grid == "closed" else n
        axes.append(torch.arange(n, dtype=torch.float64, device=device) / denominator)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh).to(dtype)


class GridEmbedding(nn.Module):
    """Append the grid coordinates to the channels of a field.

    Parameters
    ----------
    dim : int
        Number of spatial dimensions ``d``.
    grid : {"closed", "periodic"}
        Endpoint convention, see the module docstring.

    Notes
    -----
    The last grid used is cached (per size, dtype and device), not saved in the state dict.
    """

    def __init__(self, dim: int, grid: str = "closed"):
        super().__init__()
        if grid not in _GRIDS:
            raise ValueError(f"grid must be one of {_GRIDS}, got {grid!r}")
        self.dim = int(dim)
        self.grid = grid
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def extra_channels(self) -> int:
        """Channels added: one per spatial dimension."""
        return self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, grid={self.grid!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate coordinates.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, n_1, ..., n_d)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C + d, n_1, ..., n_d)``; the last ``d`` channels are the coordinates.
        """
        if x.ndim != self.dim + 2:
            raise ValueError(
                f"GridEmbedding(dim={self.dim}) expects (batch, channels, {self.dim} spatial dims), "
                f"got {tuple(x.shape)}"
            )
        coords = self._coordinates(tuple(x.shape[2:]), x.dtype, x.device)
        return torch.cat([x, coords.expand(x.shape[0], *coords.shape[1:])], dim=1)

    def _coordinates(self, sizes: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (sizes, dtype, device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, grid_coordinates(sizes, self.grid, dtype, device).unsqueeze(0))
        return self._cache[1]
