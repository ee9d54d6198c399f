"""Multilayer perceptron on coordinates: the network of a classical PINN (Raissi et al., 2019).

``u(x) = W_L act(... act(W_1 s(x) + b_1) ...) + b_L``, where ``s`` maps the domain box linearly onto
``[-1, 1]^d`` (inputs of order one keep ``tanh`` out of saturation) and the weights are initialized
with Glorot's normal rule, as in the PINN literature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from surrogates.models.base import OperatorModel
from surrogates.nn.gaussian_features import box_bounds

__all__ = ["MLP", "ACTIVATIONS", "BoxScaling"]

ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "sin": None}
"""Names accepted by ``activation`` (``sin`` is :class:`Sine`)."""


class Sine(nn.Module):
    """``sin(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def make_activation(name: str) -> nn.Module:
    """``tanh``, ``gelu``, ``silu`` or ``sin``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return Sine() if name == "sin" else ACTIVATIONS[name]()


class BoxScaling(nn.Module):
    """Affine map of a box ``prod_j [low_j, high_j]`` onto ``[-1, 1]^d`` (identity without bounds)."""

    def __init__(self, dim: int, bounds: Sequence[Sequence[float]] | None):
        super().__init__()
        box = torch.tensor(box_bounds(dim, bounds))
        self.register_buffer("center", box.mean(1), persistent=False)
        self.register_buffer("half_width", (box[:, 1] - box[:, 0]) / 2, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.half_width


def mlp_layers(in_features: int, out_features: int, width: int, depth: int, activation: str) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units (``depth = 0``: one linear map), Glorot-normal weights, zero biases."""
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), make_activation(activation)]
        features = width
    layers.append(nn.Linear(features, out_features))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class MLP(OperatorModel):
    """A coordinate network ``(P, d) -> (P, out_channels)``: the PINN baseline.

    Parameters
    ----------
    in_channels : int
        Number of input coordinates ``d`` (e.g. 2 for ``(x, y)`` or ``(t, x)``).
    out_channels : int
        Number of solution components.
    width : int
        Units per hidden layer.
    depth : int
        Number of hidden layers.
    activation : {"tanh", "gelu", "silu", "sin"}
        Nonlinearity (PINNs use ``tanh``: smooth, so second derivatives exist everywhere).
    bounds : list of [low, high], optional
        The domain box; inputs are mapped from it onto ``[-1, 1]^d``. ``None`` leaves them as given.

    Examples
    --------
    >>> net = MLP(in_channels=2, out_channels=1, width=50, depth=4, bounds=[[0, 1], [0, 1]])
    >>> net(torch.rand(10, 2)).shape
    torch.Size([10, 1])
    """

    registered_name = "mlp"

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        width: int = 50,
        depth: int = 4,
        activation: str = "tanh",
        bounds: list[list[float]] | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scaling = BoxScaling(in_channels, bounds)
        self.layers = mlp_layers(in_channels, out_channels, width, depth, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_channels) -> (..., out_channels)``."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"MLP expects points of shape (..., {self.in_channels}), got {tuple(x.shape)}")
        return self.layers(self.scaling(x))
