"""Per-channel normalization of fields: ``(x - mean) / (std + eps)`` and its inverse.

The statistics are one scalar mean and standard deviation per channel, pooled over samples and
grid points, not a mean field per grid point: a pointwise normalizer would tie the model to the
training grid, whereas per-channel scalars keep a discretization-invariant model (FNO, MgNO)
usable at any resolution. They are computed from the training split by
:func:`surrogates.data.normalization.channel_statistics` and live as buffers of the saved model
(:mod:`surrogates.models.normalized`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Normalizer"]


class Normalizer(nn.Module):
    """``encode(x) = (x - mean) / (std + eps)`` per channel, and its inverse ``decode``.

    Parameters
    ----------
    num_channels
        ``C``. An empty normalizer (mean 0, std 1) has the right buffers for
        ``load_state_dict`` of a trained one.
    eps
        Added to ``std`` so that a constant channel (``std == 0``) does not divide by zero.

    Attributes
    ----------
    mean, std
        Buffers of shape ``(C,)`` (saved in the ``state_dict``).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_channels: int = 1, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(int(num_channels)))
        self.register_buffer("std", torch.ones(int(num_channels)))

    @classmethod
    def from_stats(cls, mean: Any, std: Any, eps: float = 1e-6) -> "Normalizer":
        """Build from per-channel statistics (sequences, numpy arrays or tensors of shape ``(C,)``)."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float64), dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float64), dtype=torch.float32).reshape(-1)
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std must have the same length, got {mean_t.numel()} and {std_t.numel()}")
        if (std_t < 0).any() or not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
            raise ValueError(f"invalid statistics: mean={mean_t.tolist()}, std={std_t.tolist()}")
        normalizer = cls(mean_t.numel(), eps)
        normalizer.mean.copy_(mean_t)
        normalizer.std.copy_(std_t)
        return normalizer

    @property
    def num_channels(self) -> int:
        return self.mean.numel()

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected a tensor of shape (B, {self.num_channels}, *spatial), got {tuple(x.shape)}"
            )
        return (1, self.num_channels) + (1,) * (x.ndim - 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(B, C, *spatial)``; same shape."""
        shape = self._shape(x)
        return (x - self.mean.view(shape)) / (self.std.view(shape) + self.eps)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`encode` on ``x`` of shape ``(B, C, *spatial)``; same shape."""
        shape = self._shape(x)
        return x * (self.std.view(shape) + self.eps) + self.mean.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(x)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, eps={self.eps}"
