"""Physics-informed Gaussians (Kang et al., "PIG: Physics-Informed Gaussians as Adaptive Parametric
Mesh Representations", ICLR 2025).

The solution of one PDE instance is represented as

    u(x) = MLP( sum_i G_i(x) f_i ),     G_i(x) = exp(-1/2 (x - mu_i)^T Sigma_i^{-1} (x - mu_i)),

with ``N`` Gaussians whose centers ``mu_i``, covariances ``Sigma_i`` and feature vectors ``f_i`` are
trained together with a small MLP (:mod:`surrogates.nn.gaussian_features`). Like a mesh, the
Gaussians localize the representation (each point sees the few Gaussians around it), and unlike a
fixed mesh they move and stretch towards where the residual needs resolution. The input ``x`` is a
point of any dimension: ``x`` (1D), ``(x, y)`` (2D), ``(t, x)`` or ``(t, x, y)`` (space-time).
"""

from __future__ import annotations

import torch

from surrogates.models.base import OperatorModel
from surrogates.models.mlp import mlp_layers
from surrogates.nn.gaussian_features import GaussianFeatures

__all__ = ["PIG"]


class PIG(OperatorModel):
    """Gaussian feature embedding followed by a small MLP: ``(P, d) -> (P, out_channels)``.

    Parameters
    ----------
    in_channels : int
        Number of input coordinates ``d``.
    out_channels : int
        Number of solution components.
    n_gaussians : int
        Number of Gaussians ``N``.
    features : int
        Length of each Gaussian's feature vector (the MLP's input width; the paper uses 4).
    width : int
        Units per hidden layer of the MLP (the paper uses 16).
    depth : int
        Hidden layers of the MLP (``0``: a linear read-out of the features).
    activation : {"tanh", "gelu", "silu", "sin"}
        Nonlinearity of the MLP.
    bounds : list of [low, high], optional
        The domain box; centers are initialized uniformly inside it (``[-1, 1]^d`` when omitted).
    sigma_init : float
        Initial standard deviation as a fraction of each side of the box.
    covariance : {"full", "diagonal"}
        Full (rotated) or axis-aligned covariances; both stay positive definite.
    feature_init_std : float
        Standard deviation of the initial features.
    normalize : bool
        Divide the weighted features by ``sum_i G_i(x)``.

    Examples
    --------
    >>> net = PIG(in_channels=2, n_gaussians=100, bounds=[[-1, 1], [-1, 1]])
    >>> net(torch.rand(10, 2)).shape
    torch.Size([10, 1])
    >>> net.gaussians.covariance().shape
    torch.Size([100, 2, 2])
    """

    registered_name = "pig"

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        n_gaussians: int = 400,
        features: int = 4,
        width: int = 16,
        depth: int = 1,
        activation: str = "tanh",
        bounds: list[list[float]] | None = None,
        sigma_init: float = 0.05,
        covariance: str = "full",
        feature_init_std: float = 0.1,
        normalize: bool = False,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.gaussians = GaussianFeatures(
            in_channels, n_gaussians, features, bounds=bounds, sigma_init=sigma_init, covariance=covariance,
            feature_init_std=feature_init_std, normalize=normalize,
        )
        self.mlp = mlp_layers(features, out_channels, width, depth, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_channels) -> (..., out_channels)``."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"PIG expects points of shape (..., {self.in_channels}), got {tuple(x.shape)}")
        return self.mlp(self.gaussians(x))
