"""A modern U-Net for fields on 1D and 2D grids (residual blocks, GroupNorm, GELU, skip connections).

Architecture, for an input ``x`` of shape ``(B, C_in, *spatial)``::

    h = conv3(x)                                           stem: C_in -> hidden_channels
    down path, level i = 0 .. L-1:  blocks_per_level residual blocks -> channels c_i,
                                    keep h as skip_i; stride-2 downsampling except on the last level
    middle:                         two residual blocks at c_{L-1}
    up path, level i = L-1 .. 0:    upsample (except on the last level), concatenate skip_i,
                                    blocks_per_level residual blocks -> c_i
    u = conv1(gelu(norm(h)))                               head: c_0 -> C_out

with ``c_i = hidden_channels * channel_multipliers[i]``. Residual blocks
(:mod:`surrogates.nn.unet_blocks`) are pre-activation GroupNorm -> GELU -> conv blocks; with
``n_cond > 0``, ``forward(x, cond)`` embeds ``cond`` (``(B, n_cond)`` scalars, e.g. a time and a
noise level) with sinusoidal features and an MLP, and every residual block applies it as a
scale-shift of its second normalization (FiLM).

Grid sizes: the grid is halved ``L - 1`` times, so every dimension must be divisible by
``2^(L-1)``. Other sizes are padded at the far end of each dimension up to the next multiple
(zeros for ``padding_mode="zeros"``, wrapped for ``"circular"``) and the output is cropped back:
any size works, and sizes divisible by ``2^(L-1)`` are computed without padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from surrogates.models.base import OperatorModel
from surrogates.nn.embeddings import GridEmbedding
from surrogates.nn.unet_blocks import (
    PADDING_MODES,
    ConditionEmbedding,
    Downsample,
    ResidualBlock,
    Upsample,
    conv_nd,
    group_count,
)

__all__ = ["UNet"]


class UNet(OperatorModel):
    """U-Net on a regular 1D or 2D grid, optionally conditioned on scalars.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output fields.
    dim : int
        Spatial dimension, 1 or 2.
    hidden_channels : int
        Channels of the first level.
    channel_multipliers : list of int
        Channels of every level as multiples of ``hidden_channels``; the number of entries is the
        number of levels ``L`` (the grid is halved ``L - 1`` times).
    blocks_per_level : int
        Residual blocks per level on the way down and on the way up.
    norm_groups : int
        GroupNorm groups, ``gcd(channels, norm_groups)`` per norm (a divisor of the channels).
    padding_mode : {"zeros", "circular"}
        Padding of every convolution and of grids whose size is not a multiple of ``2^(L-1)``;
        ``"circular"`` for periodic data.
    n_cond : int
        Number of conditioning scalars per sample (0: unconditioned).
    cond_channels : int or None
        Width of the conditioning vector (default ``4 * hidden_channels``).
    positional_embedding : bool
        Append the grid coordinates in ``[0, 1]`` as input channels.
    grid : {"closed", "periodic"}
        Convention of the positional embedding (see :mod:`surrogates.nn.embeddings`).

    Examples
    --------
    >>> model = UNet(1, 1, dim=1, hidden_channels=16, channel_multipliers=[1, 2], n_cond=2)
    >>> model(torch.randn(4, 1, 100), cond=torch.rand(4, 2)).shape
    torch.Size([4, 1, 100])
    """

    registered_name = "unet"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        hidden_channels: int = 32,
        channel_multipliers: Sequence[int] = (1, 2, 2, 4),
        blocks_per_level: int = 1,
        norm_groups: int = 8,
        padding_mode: str = "zeros",
        n_cond: int = 0,
        cond_channels: int | None = None,
        positional_embedding: bool = False,
        grid: str = "closed",
    ):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"UNet supports dim 1 or 2, got {dim}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        multipliers = [int(m) for m in channel_multipliers]
        if not multipliers or min(multipliers) < 1:
            raise ValueError(f"channel_multipliers must be a non-empty list of positive ints, got {multipliers}")
        if blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {blocks_per_level}")
        if n_cond < 0:
            raise ValueError(f"n_cond must be >= 0, got {n_cond}")
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.padding_mode = padding_mode
        self.n_cond = n_cond
        self.factor = 2 ** (len(multipliers) - 1)

        self.embedding = GridEmbedding(dim, grid) if positional_embedding else None
        cond_width = (cond_channels or 4 * hidden_channels) if n_cond else 0
        self.condition = ConditionEmbedding(n_cond, cond_width) if n_cond else None
        block = dict(cond_channels=cond_width, norm_groups=norm_groups, padding_mode=padding_mode)

        stem_in = in_channels + (self.embedding.extra_channels if self.embedding is not None else 0)
        self.stem = conv_nd(dim, stem_in, hidden_channels, padding_mode=padding_mode)
        widths = [hidden_channels * m for m in multipliers]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = hidden_channels
        for i, w in enumerate(widths):
            level = nn.ModuleList()
            for _ in range(blocks_per_level):
                level.append(ResidualBlock(dim, c, w, **block))
                c = w
            self.down.append(level)
            if i < len(widths) - 1:
                self.downsample.append(Downsample(dim, c, padding_mode))
        self.middle = nn.ModuleList(ResidualBlock(dim, c, c, **block) for _ in range(2))
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            level = nn.ModuleList()
            for j in range(blocks_per_level):
                level.append(ResidualBlock(dim, c + w if j == 0 else c, w, **block))
                c = w
            self.up.append(level)
            if i > 0:
                self.upsample.append(Upsample(dim, c, padding_mode))
        self.head_norm = nn.GroupNorm(group_count(c, norm_groups), c)
        self.head = conv_nd(dim, c, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Map input fields (and conditioning scalars) to output fields on the same grid.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, in_channels, *spatial)``, any sizes (see the module docstring).
        cond : torch.Tensor, optional
            Shape ``(B, n_cond)``; required when the model was built with ``n_cond > 0``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, *spatial)``.
        """
        self.check_grid_input(x)
        if self.condition is not None:
            if cond is None:
                raise ValueError(f"this UNet is conditioned on {self.n_cond} scalars: pass cond of shape (batch, {self.n_cond})")
            emb = self.condition(cond.to(x.dtype))
        elif cond is not None:
            raise ValueError("this UNet takes no conditioning (n_cond=0) but cond was given")
        else:
            emb = None
        if self.embedding is not None:
            x = self.embedding(x)
        sizes = x.shape[2:]
        h = self.stem(self._pad(x))
        skips = []
        for i, level in enumerate(self.down):
            for blk in level:
                h = blk(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for blk in self.middle:
            h = blk(h, emb)
        for i, level in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in level:
                h = blk(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        out = self.head(F.gelu(self.head_norm(h)))
        return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in sizes)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad the far end of each dimension up to a multiple of ``2^(L-1)`` (zeros, or wrapped)."""
        sizes = list(x.shape[2:])
        padded = [n + (-n % self.factor) for n in sizes]
        if padded == sizes:
            return x
        if self.padding_mode == "zeros":
            pads = []
            for n, m in zip(reversed(sizes), reversed(padded)):
                pads += [0, m - n]
            return F.pad(x, pads)
        # Periodic continuation, also when the padding is longer than the field (tiny grids).
        tiled = x.repeat(1, 1, *[-(-m // n) for n, m in zip(sizes, padded)])
        return tiled[(slice(None), slice(None)) + tuple(slice(0, m) for m in padded)]
