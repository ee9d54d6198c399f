"""Tensorized Fourier Neural Operator (Kossaifi et al., "Multi-Grid Tensorized Fourier Neural Operator
for High-Resolution PDEs").

The FNO of :mod:`surrogates.models.fno` with the spectral weights of all its Fourier layers held as one
low-rank tensor (:class:`~surrogates.nn.factorized_weights.FactorizedSpectralWeights`: Tucker or CP,
rank as a fraction of the dense size). Each forward pass reconstructs the ``L`` dense weights once and
runs the FNO's layers with them; everything else (lifting, skips, norms, channel MLPs, projection) is
the FNO's. The paper's backbone choices are the FNO's options ``norm``, ``skip`` and
``channel_mlp_expansion``.
"""

from __future__ import annotations

import torch

from surrogates.models.fno import FNO
from surrogates.nn.factorized_weights import FULL_RANK_MODES, MAX_CP_BYTES, ROUND_UP_MODES, FactorizedSpectralWeights

__all__ = ["TFNO"]


class TFNO(FNO):
    """FNO whose spectral weights are one factorized (Tucker or CP) tensor.

    Parameters
    ----------
    in_channels, out_channels, modes, width, n_layers, dim, projection_channels, positional_embedding,
    activation, padding, grid, lifting_channels, channel_mlp_expansion, norm, skip
        As :class:`~surrogates.models.fno.FNO`.
    factorization : {"tucker", "cp"}
        Low-rank format of the stacked spectral weights ``(L, k_1, ..., k_d, width, width, 2)``.
    rank : float, int or list of int
        Fraction of the dense spectral parameter count in ``(0, 1]``, or explicit ranks (a list of
        ``4 + dim`` Tucker ranks, an int CP rank).
    full_rank_modes, round_up_modes : list of {"layers", "complex"}
        Tucker modes a fractional rank keeps at full rank, and those whose rank it rounds up (see
        :class:`~surrogates.nn.factorized_weights.FactorizedSpectralWeights`).
    max_cp_bytes : int
        CP only: the most bytes its reconstruction may take (larger ranks are refused; see
        :class:`~surrogates.nn.factorized_weights.FactorizedSpectralWeights`).

    Examples
    --------
    >>> model = TFNO(in_channels=1, out_channels=1, modes=12, width=32, rank=0.05)
    >>> model(torch.randn(4, 1, 64, 64)).shape
    torch.Size([4, 1, 64, 64])
    """

    registered_name = "tfno"
    _spectral_owns_weights = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | list[int] = 12,
        width: int = 32,
        n_layers: int = 4,
        dim: int = 2,
        projection_channels: int = 128,
        positional_embedding: bool = True,
        activation: str = "gelu",
        padding: float = 0.0,
        grid: str = "closed",
        lifting_channels: int = 0,
        channel_mlp_expansion: float = 0.0,
        norm: str = "none",
        skip: str = "linear",
        factorization: str = "tucker",
        rank: float | int | list[int] = 0.1,
        full_rank_modes: list[str] | tuple[str, ...] = FULL_RANK_MODES,
        round_up_modes: list[str] | tuple[str, ...] = ROUND_UP_MODES,
        max_cp_bytes: int = MAX_CP_BYTES,
    ):
        super().__init__(
            in_channels, out_channels, modes=modes, width=width, n_layers=n_layers, dim=dim,
            projection_channels=projection_channels, positional_embedding=positional_embedding,
            activation=activation, padding=padding, grid=grid, lifting_channels=lifting_channels,
            channel_mlp_expansion=channel_mlp_expansion, norm=norm, skip=skip,
        )
        first = self.spectral[0]
        self.factorized = FactorizedSpectralWeights(
            n_layers, first.weight_shape, width, width, factorization=factorization, rank=rank, std=first.weight_std,
            full_rank_modes=full_rank_modes, round_up_modes=round_up_modes, max_cp_bytes=max_cp_bytes,
        )

    def spectral_weights(self) -> list[torch.Tensor]:
        """Every layer's ``(K, width, width, 2)`` weight, reconstructed from the factorized tensor."""
        return self.factorized()
