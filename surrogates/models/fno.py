"""Fourier Neural Operator (Li et al., "Fourier Neural Operator for Parametric PDEs", ICLR 2021).

Architecture, for an input ``a`` of shape ``(B, C_in, *spatial)``::

    v_0     = P(a, grid)                                   lifting: pointwise linear (or MLP)
    v_{l+1} = act(K_l v_l + W_l v_l + b_l),  l < L - 1     Fourier layers: spectral conv + pointwise skip
    v_L     =     K_{L-1} v_{L-1} + W_{L-1} v_{L-1} + b    (no activation after the last one)
    u       = Q(v_L)                                       projection: pointwise MLP width -> p -> C_out

Options that default to off (``lifting_channels=0``, ``channel_mlp_expansion=0``) add
``neuraloperator``'s variants: a two-layer lifting MLP, and after every Fourier layer a channel MLP
``M_l`` (width -> e * width -> width) with a per-channel scaling ``g_l`` of the layer's input as its
skip: ``w = act(K_l v_l + W_l v_l + b_l)``, ``v_{l+1} = act(M_l(w) + g_l * v_l)`` (no activations
after the last layer).

Two more options come from the MG-TFNO paper's backbone study (Kossaifi et al.): ``norm`` normalizes
each Fourier layer's output before its activation (``"instance"``: per sample and channel;
``"group"``: per sample over all channels, i.e. a layer norm), and ``skip`` chooses the pointwise
skip ``W_l`` (``"linear"``, the FNO paper's; ``"soft_gating"``, a per-channel scale; ``"identity"``).

The spectral convolutions ``K_l`` keep the FNO paper's modes (see :mod:`surrogates.nn.spectral_conv`).
Channels stay first throughout (``(B, C, *spatial)``): pointwise layers are batched matrix products
over the flattened grid, and the FFTs run over contiguous memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surrogates.arguments import check_count, check_number
from surrogates.models.base import MAX_LAYERS, OperatorModel
from surrogates.nn.embeddings import GridEmbedding
from surrogates.nn.pointwise import ACTIVATIONS, ChannelScale, PointwiseLinear
from surrogates.nn.spectral_conv import SpectralConv

__all__ = ["FNO"]

NORMS = {
    "none": None,
    "instance": lambda width: nn.GroupNorm(width, width),  # one group per channel: instance norm, any dim
    "group": lambda width: nn.GroupNorm(1, width),
}
"""Normalizations of a Fourier layer's output (``width`` channels)."""

SKIPS = {
    "linear": lambda width: PointwiseLinear(width, width),
    "soft_gating": ChannelScale,
    "identity": lambda width: nn.Identity(),
}
"""Pointwise skips of a Fourier layer (``width`` channels)."""

MAX_PADDING = 1.0
"""Largest ``padding`` fraction: each dimension at most doubled (see :class:`FNO`)."""


class FNO(OperatorModel):
    """Fourier Neural Operator on a regular 1D, 2D or 3D grid.

    Parameters
    ----------
    in_channels : int
        Channels of the input function ``C_in`` (grid coordinates are added on top).
    out_channels : int
        Channels of the output function ``C_out``.
    modes : int or list of int
        Fourier modes per dimension (one int for all). Non-last dims keep frequencies
        ``[-m, m - 1]``, the last ``[0, m - 1]``; ``modes=12`` in 2D equals ``neuralop``'s
        ``n_modes=(24, 22)``.
    width : int
        Channels of the hidden representation.
    n_layers : int
        Number of Fourier layers, at most :data:`~surrogates.models.base.MAX_LAYERS`.
    dim : int
        Spatial dimension, 1, 2 or 3.
    projection_channels : int
        Hidden channels of the projection MLP.
    positional_embedding : bool
        Append the grid coordinates in ``[0, 1]`` (``grid`` convention) as input channels.
    activation : {"gelu", "relu", "tanh", "silu"}
        Nonlinearity between layers and inside the projection.
    padding : float
        Zero padding appended to the end of every spatial dimension, as a fraction of its size
        (``round(padding * n)`` points), for non-periodic problems; cropped before the projection.
        In ``[0, MAX_PADDING]`` (1: every dimension doubled, which already removes the FFT's periodic
        wrap-around entirely; more would only cost memory, ``(1 + padding)^dim`` times the field's).
    grid : {"closed", "periodic"}
        Convention of the positional embedding (see :mod:`surrogates.nn.embeddings`): "closed" for
        data on grids that include both boundary nodes (Darcy), "periodic" for periodic data.
    lifting_channels : int
        0 (default): the lifting is one pointwise linear map; ``> 0``: a two-layer pointwise MLP with
        this many hidden channels (``neuraloperator``'s default is ``2 * width``).
    channel_mlp_expansion : float
        0 (default): no channel MLP; ``> 0``: after every Fourier layer a pointwise MLP with
        ``round(e * width)`` hidden channels and a soft-gating skip (``neuraloperator``'s default is 0.5).
    norm : {"none", "instance", "group"}
        Normalization of every Fourier layer's output (before its activation); ``"group"`` is one group
        over all channels. Both have a per-channel affine map.
    skip : {"linear", "soft_gating", "identity"}
        The pointwise skip ``W_l`` of every Fourier layer: a linear channel map (with bias), a
        per-channel scale, or the identity.

    Examples
    --------
    >>> model = FNO(in_channels=1, out_channels=1, modes=12, width=32)
    >>> model(torch.randn(4, 1, 64, 64)).shape
    torch.Size([4, 1, 64, 64])
    """

    registered_name = "fno"

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
    ):
        super().__init__()
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
        modes_list = [int(modes)] * dim if isinstance(modes, int) else [int(m) for m in modes]
        if len(modes_list) != dim:
            raise ValueError(f"modes has {len(modes_list)} entries but dim={dim}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                            ("projection_channels", projection_channels)):
            check_count(name, value, 1)  # a config typo (model.width=abc) is named here, not deep inside torch
        check_count("lifting_channels", lifting_channels, 0)
        check_count("n_layers", n_layers, 0, MAX_LAYERS)
        check_number("padding", padding, 0.0, MAX_PADDING)
        check_number("channel_mlp_expansion", channel_mlp_expansion, 0.0)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {sorted(SKIPS)}, got {skip!r}")
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.padding = float(padding)
        self.activation = activation

        self.embedding = GridEmbedding(dim, grid) if positional_embedding else None
        lift_in = in_channels + (self.embedding.extra_channels if self.embedding is not None else 0)
        if lifting_channels:
            self.lifting_hidden = PointwiseLinear(lift_in, int(lifting_channels))
            self.lifting = PointwiseLinear(int(lifting_channels), width)
        else:
            self.lifting_hidden = None
            self.lifting = PointwiseLinear(lift_in, width)
        self.spectral = nn.ModuleList(
            SpectralConv(width, width, modes_list, own_weight=self._spectral_owns_weights) for _ in range(n_layers)
        )
        self.skips = nn.ModuleList(SKIPS[skip](width) for _ in range(n_layers))
        self.norms = nn.ModuleList(NORMS[norm](width) for _ in range(n_layers)) if norm != "none" else None
        if channel_mlp_expansion:
            hidden = max(1, round(channel_mlp_expansion * width))
            self.mlp_hidden = nn.ModuleList(PointwiseLinear(width, hidden) for _ in range(n_layers))
            self.mlp_out = nn.ModuleList(PointwiseLinear(hidden, width) for _ in range(n_layers))
            self.mlp_gates = nn.ParameterList(nn.Parameter(torch.ones(width)) for _ in range(n_layers))
        else:
            self.mlp_hidden = self.mlp_out = self.mlp_gates = None
        self.projection_hidden = PointwiseLinear(width, projection_channels)
        self.projection_out = PointwiseLinear(projection_channels, out_channels)

    _spectral_owns_weights = True
    """Whether every spectral convolution holds its own dense weight (the tensorized FNO's do not)."""

    def spectral_weights(self) -> list[torch.Tensor | None]:
        """The spectral convolutions' weights, one ``(K, width, width, 2)`` tensor per layer, or ``None``
        for a layer that uses its own (the dense FNO). Subclasses build them from shared parameters."""
        return [None] * len(self.spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map input functions to output functions on the same grid.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, in_channels, *spatial)`` with ``dim`` spatial dimensions of any size.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, *spatial)``.
        """
        self._check_input(x)
        return self.forward_with_weights(x, self.spectral_weights())

    def forward_with_weights(self, x: torch.Tensor, weights: list[torch.Tensor | None]) -> torch.Tensor:
        """:meth:`forward` (without the input check) with the spectral weights given, one per layer
        (see :meth:`spectral_weights`): callers that apply the network many times reconstruct them once.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, in_channels, *spatial)``.
        weights : list of torch.Tensor or None
            ``n_layers`` entries of shape ``(K, width, width, 2)`` (or ``None``: the layer's own weight).

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, *spatial)``.
        """
        if self.embedding is not None:
            x = self.embedding(x)
        act = ACTIVATIONS[self.activation]
        v = self.lifting(x if self.lifting_hidden is None else act(self.lifting_hidden(x)))
        sizes = v.shape[2:]
        v = self._pad(v)
        last = len(self.spectral) - 1
        for i, (spectral, skip) in enumerate(zip(self.spectral, self.skips)):
            w = spectral(v, weights[i]) + skip(v)
            if self.norms is not None:
                w = self.norms[i](w)
            if i < last:
                w = act(w)
            if self.mlp_hidden is not None:
                gate = self.mlp_gates[i].view(-1, *([1] * (v.ndim - 2)))
                w = self.mlp_out[i](act(self.mlp_hidden[i](w))) + gate * v
                if i < last:
                    w = act(w)
            v = w
        v = self._crop(v, sizes)
        return self.projection_out(ACTIVATIONS[self.activation](self.projection_hidden(v)))

    def _check_input(self, x: torch.Tensor) -> None:
        self.check_grid_input(x)

    def _pad(self, v: torch.Tensor) -> torch.Tensor:
        if self.padding <= 0:
            return v
        # F.pad lists (left, right) pairs from the last dimension backwards.
        pads = []
        for n in reversed(v.shape[2:]):
            pads += [0, round(self.padding * n)]
        return F.pad(v, pads)

    def _crop(self, v: torch.Tensor, sizes: torch.Size) -> torch.Tensor:
        if self.padding <= 0:
            return v
        index = (slice(None), slice(None)) + tuple(slice(0, n) for n in sizes)
        return v[index]
