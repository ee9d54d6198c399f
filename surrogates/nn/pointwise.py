"""Pointwise layers of grid operators: a channel-mixing linear map at every grid point, and activations.

Shared by FNO and MgNO (lifting, skips, projections): both keep channels first, ``(B, C, *spatial)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "ChannelScale", "PointwiseLinear"]

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh, "silu": F.silu}
"""Activation functions of the grid operators, by the name their ``activation`` argument takes."""


class PointwiseLinear(nn.Module):
    """A linear map of the channels at every grid point (a 1x1 convolution of any dimension).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels before and after.

    Notes
    -----
    Computed as one ``baddbmm`` on the channels-first tensor with the grid flattened: ``bias + W @ x[b]``
    for every batch entry, the bias added inside the matrix product and the output written in its
    final layout. Measured on CPU (1 thread, 20 x 32 x 64 x 64, forward + backward) it takes a half
    to a third of the time of ``einsum("oi,bi...->bo...") + bias`` (which permutes, multiplies, permutes
    back and adds the bias in another pass) and of a 1x1 ``conv2d``. Initialized like ``nn.Linear``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"in_channels={self.weight.shape[1]}, out_channels={self.weight.shape[0]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial) -> (B, C_out, *spatial)``."""
        batch = x.shape[0]
        out = torch.baddbmm(self.bias.view(1, -1, 1), self.weight.expand(batch, -1, -1),
                            x.flatten(2) if x.ndim > 2 else x.unsqueeze(-1))
        return out.view(batch, out.shape[1], *x.shape[2:])


class ChannelScale(nn.Module):
    """Multiply every channel by a learned scalar (neuraloperator's "soft gating" skip), ones at start.

    Parameters
    ----------
    channels : int
        ``C``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial) -> (B, C, *spatial)``."""
        return x * self.weight.view(1, -1, *([1] * (x.ndim - 2)))
