"""Building blocks of a modern U-Net for fields on 1D and 2D grids.

- :class:`SinusoidalEmbedding`: scalars (a time, a noise level) -> sinusoidal features, as in
  transformers and diffusion models.
- :class:`ConditionEmbedding`: ``(B, n_cond)`` scalars -> one conditioning vector per sample
  (sinusoidal features of every scalar, then a two-layer MLP).
- :class:`ResidualBlock`: GroupNorm -> GELU -> conv -> (FiLM from the conditioning vector) ->
  GroupNorm -> GELU -> conv, plus a (1x1 conv) skip; the block of the PDEArena / PDE-Refiner
  U-Nets ("pre-activation" residual block with scale-shift conditioning).
- :class:`Downsample` (stride-2 convolution) and :class:`Upsample` (nearest-neighbour doubling,
  then a convolution).

Convolutions take ``padding_mode`` ``"zeros"`` or ``"circular"`` (periodic data).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionEmbedding", "Downsample", "ResidualBlock", "SinusoidalEmbedding", "Upsample", "conv_nd", "group_count"]

PADDING_MODES = ("zeros", "circular")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def conv_nd(dim: int, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
            padding_mode: str = "zeros") -> nn.Module:
    """A ``dim``-D convolution with "same" padding (``kernel_size // 2``)."""
    if dim not in _CONV:
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return _CONV[dim](c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, padding_mode=padding_mode)


def group_count(channels: int, norm_groups: int) -> int:
    """GroupNorm groups for ``channels``: ``gcd(channels, norm_groups)``, a divisor of both.

    Not the largest divisor of ``channels`` up to ``norm_groups`` (12 channels, 8 groups: 4, not 6). The
    group count changes no weight's shape, so saved networks rely on this rule to give their outputs.
    """
    return math.gcd(channels, norm_groups) or 1


class SinusoidalEmbedding(nn.Module):
    """Scalars -> ``[sin(c w_k), cos(c w_k)]`` with frequencies ``w_k = max_period^(-k / half)``.

    Parameters
    ----------
    features : int
        Output features per scalar (even).
    max_period : float
        Longest period; scalars are resolved on scales from about 1 up to ``max_period``, so
        scale inputs to that range (e.g. a diffusion step index, or a time in units of dt).
    """

    def __init__(self, features: int, max_period: float = 10000.0):
        super().__init__()
        if features < 2 or features % 2:
            raise ValueError(f"features must be an even number >= 2, got {features}")
        half = features // 2
        frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.features = features

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """``(*shape)`` scalars -> ``(*shape, features)``."""
        angles = c.unsqueeze(-1).to(self.frequencies.dtype) * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConditionEmbedding(nn.Module):
    """``(B, n_cond)`` scalars -> ``(B, channels)``: sinusoidal features of each, concatenated, then an MLP."""

    def __init__(self, n_cond: int, channels: int, features: int = 64, max_period: float = 10000.0):
        super().__init__()
        self.n_cond = n_cond
        self.sinusoidal = SinusoidalEmbedding(features, max_period)
        self.mlp = nn.Sequential(nn.Linear(n_cond * features, channels), nn.GELU(), nn.Linear(channels, channels))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        if cond.ndim != 2 or cond.shape[1] != self.n_cond:
            raise ValueError(f"cond must have shape (batch, {self.n_cond}), got {tuple(cond.shape)}")
        return self.mlp(self.sinusoidal(cond).flatten(1))


class ResidualBlock(nn.Module):
    """Pre-activation residual block with optional scale-shift (FiLM) conditioning.

    ``h = conv1(gelu(norm1(x)))``; ``h = norm2(h) * (1 + scale) + shift`` with ``(scale, shift)``
    a linear map of the conditioning vector (skipped without one); ``h = conv2(gelu(h))``;
    returns ``h + skip(x)`` (``skip`` is a 1x1 convolution when the channels change).
    """

    def __init__(self, dim: int, c_in: int, c_out: int, cond_channels: int = 0, norm_groups: int = 8,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in, norm_groups), c_in)
        self.conv1 = conv_nd(dim, c_in, c_out, padding_mode=padding_mode)
        self.norm2 = nn.GroupNorm(group_count(c_out, norm_groups), c_out)
        self.conv2 = conv_nd(dim, c_out, c_out, padding_mode=padding_mode)
        self.film = nn.Linear(cond_channels, 2 * c_out) if cond_channels else None
        self.skip = conv_nd(dim, c_in, c_out, kernel_size=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.gelu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            if cond is None:
                raise ValueError("this block is conditioned: pass the conditioning vector")
            scale, shift = self.film(cond).view(cond.shape[0], -1, *([1] * (x.ndim - 2))).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.conv2(F.gelu(h)) + self.skip(x)


class Downsample(nn.Module):
    """Halve the grid with a stride-2 convolution (``n`` even -> ``n / 2``)."""

    def __init__(self, dim: int, channels: int, padding_mode: str = "zeros"):
        super().__init__()
        self.conv = conv_nd(dim, channels, channels, stride=2, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the grid: nearest-neighbour repetition, then a convolution."""

    def __init__(self, dim: int, channels: int, padding_mode: str = "zeros"):
        super().__init__()
        self.conv = conv_nd(dim, channels, channels, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
