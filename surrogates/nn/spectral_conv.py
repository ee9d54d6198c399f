"""Spectral convolution: the global linear operator of a Fourier layer (Li et al., FNO).

A :class:`SpectralConv` multiplies the low Fourier coefficients of its input by learned complex
channel-mixing matrices, one per kept frequency, and transforms back:

.. math::

    (K v)(x) = \\sum_{k \\in \\mathcal{K}} W_k \\, \\hat v_k \\, e^{2 \\pi i k \\cdot x}

Modes convention (the FNO paper's)
----------------------------------
With ``modes = (m_1, ..., m_d)``, a non-last spatial dimension ``i`` keeps the integer frequencies
``k_i`` in ``[-m_i, m_i - 1]`` (the first ``m_i`` and the last ``m_i`` FFT bins); the last
dimension, where the real FFT stores only non-negative frequencies, keeps ``k_d`` in
``[0, m_d - 1]``. ``modes=(12, 12)`` therefore holds ``24 x 12`` complex matrices; it keeps the
same frequency set as ``neuralop``'s ``n_modes=(24, 22)``.

Discretization invariance
-------------------------
Transforms use ``norm="forward"``, so the Fourier coefficients of a sampled function do not depend
on the number of samples, and the layer can be applied on any grid. A grid too coarse to hold all
kept frequencies (fewer than ``2 m_i`` points on a non-last dimension, fewer than ``2 m_d - 2`` on
the last) keeps only the frequencies it resolves, i.e. the set is *clipped* to the frequencies of
the grid and the matching weights are used; on an even grid the Nyquist bin counts as frequency
``-n/2`` on non-last dimensions. For a band-limited input whose frequencies are all resolved, the
output at shared grid points is the same on every grid, up to round-off.

Speed (CPU)
-----------
The forward transform is pruned: a real FFT along the last dimension, truncated to the kept bins,
then complex FFTs along the other dimensions on that narrow slab only, each followed by the
selection of its kept bins. All kept modes are contracted in one batched real matrix product
``(K, B, 2 C_in) @ (K, 2 C_in, 2 C_out)`` (complex arithmetic on interleaved real/imaginary
channels, because a complex ``bmm`` on CPU loops over the batch). The inverse pads each dimension
back in the same pruned order and ends with ``irfft(n=...)``, which pads the last dimension
itself. The result equals ``irfftn(s=input size)`` of the zero-filled spectrum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SpectralConv", "kept_bins"]


def kept_bins(n: int, m: int, last: bool) -> tuple[int, int]:
    """How many FFT bins a dimension of ``n`` points keeps for ``m`` modes.

    Parameters
    ----------
    n : int
        Number of grid points along the dimension.
    m : int
        Modes of the dimension (see the module docstring for the convention).
    last : bool
        Whether this is the last (real-FFT) dimension.

    Returns
    -------
    (n_pos, n_neg) : tuple of int
        Non-negative frequencies ``0 .. n_pos - 1`` and negative frequencies ``-n_neg .. -1`` kept
        (``n_neg`` is 0 on the last dimension).
    """
    if last:
        return min(m, n // 2 + 1), 0
    n_neg = min(m, n // 2)
    return min(m, n - n_neg), n_neg


class SpectralConv(nn.Module):
    """Fourier-space linear layer on a 1D, 2D or 3D periodic grid.

    Parameters
    ----------
    in_channels : int
        Input channels ``C_in``.
    out_channels : int
        Output channels ``C_out``.
    modes : int or sequence of int
        Modes per spatial dimension; the dimension of the layer is ``len(modes)`` (an int means 1D).
        Non-last dimensions keep frequencies ``[-m, m - 1]``, the last keeps ``[0, m - 1]``.

    Notes
    -----
    The weight is stored as a real tensor of shape ``(K, C_in, C_out, 2)`` (real and imaginary
    parts), ``K = prod(2 m_i for i < d) * m_d``, in the order of the kept modes: along each non-last
    dimension the frequencies ``0 .. m - 1`` then ``-m .. -1``. Real storage keeps optimizers and
    distributed all-reduce on plain real tensors.

    With ``own_weight=False`` the layer holds no parameter and every call passes its weight (the
    tensorized FNO reconstructs all layers' weights from one factorized tensor,
    :mod:`surrogates.nn.factorized_weights`).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int | Sequence[int], own_weight: bool = True):
        super().__init__()
        modes = [int(modes)] if isinstance(modes, int) else [int(m) for m in modes]
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ValueError(f"modes must hold 1 to 3 positive ints (one per spatial dim), got {modes}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.modes = modes
        self.dim = len(modes)
        self.weight_shape = [2 * m for m in modes[:-1]] + [modes[-1]]
        n_kept = math.prod(self.weight_shape)
        # E|w|^2 = 2 / (C_in + C_out): Glorot-like, keeps the output variance near the input's.
        self.weight_std = math.sqrt(1.0 / (in_channels + out_channels))
        self.weight = (
            nn.Parameter(self.weight_std * torch.randn(n_kept, in_channels, out_channels, 2)) if own_weight else None
        )
        self._block_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, modes={self.modes}"

    @property
    def full_weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight, ``(K, C_in, C_out, 2)``."""
        return (math.prod(self.weight_shape), self.in_channels, self.out_channels, 2)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor
            Real input of shape ``(B, C_in, *spatial)`` with ``len(spatial) == dim``, any grid size,
            float32 or float64.
        weight : torch.Tensor, optional
            Weight of shape ``(K, C_in, C_out, 2)`` to use instead of the layer's own (required when
            the layer has none).

        Returns
        -------
        torch.Tensor
            Real output of shape ``(B, C_out, *spatial)``, same dtype as ``x``.
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralConv expects input of shape (batch, {self.in_channels}, "
                f"{', '.join(f'n{i}' for i in range(self.dim))}), got {tuple(x.shape)}"
            )
        if weight is None and self.weight is None:
            raise ValueError("this SpectralConv holds no weight (own_weight=False): pass weight=")
        if weight is not None and tuple(weight.shape) != self.full_weight_shape:
            raise ValueError(f"weight must have shape {self.full_weight_shape}, got {tuple(weight.shape)}")
        sizes = list(x.shape[2:])
        bins = [kept_bins(n, m, i == self.dim - 1) for i, (n, m) in enumerate(zip(sizes, self.modes))]
        coeffs = self._forward_transform(x, bins)
        coeffs = self._contract(coeffs, bins, weight)
        return self._inverse_transform(coeffs, sizes, bins)

    # -- pieces --------------------------------------------------------------------------------

    def _forward_transform(self, x: torch.Tensor, bins: list[tuple[int, int]]) -> torch.Tensor:
        """``(B, C, *n) real -> (B, C, *kept) complex``: the kept Fourier coefficients."""
        y = torch.fft.rfft(x, dim=-1, norm="forward")[..., : bins[-1][0]]
        # Non-last dims: FFT only the already truncated slab, then keep the two ends.
        for axis, (n_pos, n_neg) in zip(range(2, 2 + self.dim - 1), bins[:-1]):
            y = torch.fft.fft(y, dim=axis, norm="forward")
            n = y.shape[axis]
            if n_pos + n_neg < n:
                y = torch.cat([y.narrow(axis, 0, n_pos), y.narrow(axis, n - n_neg, n_neg)], dim=axis)
        return y

    def _weights(self, bins: list[tuple[int, int]], dtype: torch.dtype, weight: torch.Tensor) -> torch.Tensor:
        """Weights of the kept modes, ``(K_kept, C_in, C_out, 2)`` (real, imag), in ``dtype``."""
        w = weight if weight.dtype == dtype else weight.to(dtype)
        if [b[0] + b[1] for b in bins] == self.weight_shape:
            return w
        # A coarse grid: keep the weights of the frequencies it resolves.
        w = w.reshape(*self.weight_shape, self.in_channels, self.out_channels, 2)
        for axis, ((n_pos, n_neg), m) in enumerate(zip(bins, self.modes)):
            if axis == self.dim - 1:
                w = w.narrow(axis, 0, n_pos)
            else:
                w = torch.cat([w.narrow(axis, 0, n_pos), w.narrow(axis, 2 * m - n_neg, n_neg)], dim=axis)
        return w.reshape(-1, self.in_channels, self.out_channels, 2)

    def _contract(self, y: torch.Tensor, bins: list[tuple[int, int]], weight: torch.Tensor | None) -> torch.Tensor:
        """``(B, C_in, *kept) -> (B, C_out, *kept)``: one batched real matmul over all modes.

        A complex product ``(a + ib)(c + id)`` is written as the real product of
        ``[a, b]`` with ``[[c, d], [-d, c]]`` on interleaved (real, imag) channels: CPU BLAS has
        batched real GEMM, whereas a complex ``bmm`` on CPU loops over the batch.
        """
        batch, kept = y.shape[0], y.shape[2:]
        real_dtype = torch.float64 if y.dtype == torch.complex128 else torch.float32
        block = self._block(bins, real_dtype, weight)
        n_modes = block.shape[0]
        # Modes to the front: (K, B, 2 C_in) @ (K, 2 C_in, 2 C_out) -> (K, B, 2 C_out).
        yr = torch.view_as_real(y.flatten(2)).permute(2, 0, 1, 3).reshape(n_modes, batch, 2 * self.in_channels)
        out = torch.bmm(yr, block).view(n_modes, batch, self.out_channels, 2)
        out = torch.view_as_complex(out.permute(1, 2, 0, 3).contiguous())
        return out.view(batch, self.out_channels, *kept)

    def _block(self, bins: list[tuple[int, int]], dtype: torch.dtype, weight: torch.Tensor | None) -> torch.Tensor:
        """The real ``(K, 2 C_in, 2 C_out)`` form of the kept modes' complex weights.

        Without autograd (inference) the block of the layer's own weight is cached until the weight
        changes: rebuilding it took about 60% of a single-sample forward pass of a 64x64 FNO on the CPU.
        A weight passed in is not cached (it is a new tensor at every call).

        The cache is keyed by the weight's address and version counter, and holds an alias of the
        weight (sharing its memory and version counter) so that the address cannot be reused by another
        tensor while the entry lives: a weight swapped in by ``torch.func.functional_call`` or
        ``param.data = ...`` is then always a new address, and every tracked in-place write bumps the
        version. Writes through ``param.data`` are invisible to the version counter (as to autograd);
        after such a write call :meth:`clear_cache`.
        """
        w = self.weight if weight is None else weight
        cacheable = weight is None and not (torch.is_grad_enabled() and w.requires_grad)
        key = None  # a weight passed in may be an inference tensor, which has no version counter
        if cacheable:
            key = (w.data_ptr(), w._version, w.device, w.dtype, dtype, tuple(bins), torch.is_inference_mode_enabled())
        if cacheable and self._block_cache is not None and self._block_cache[0] == key:
            return self._block_cache[2]
        wk = self._weights(bins, dtype, w)  # (K, C_in, C_out, 2)
        wr, wi = wk.unbind(-1)
        block = torch.stack([torch.stack([wr, wi], -1), torch.stack([-wi, wr], -1)], 2)
        block = block.reshape(wk.shape[0], 2 * self.in_channels, 2 * self.out_channels)
        self._block_cache = (key, w.detach(), block) if cacheable else None
        return block

    def clear_cache(self) -> None:
        """Drop the cached weight block (needed only after writing the weight through ``.data``)."""
        self._block_cache = None

    def _inverse_transform(
        self, y: torch.Tensor, sizes: list[int], bins: list[tuple[int, int]]
    ) -> torch.Tensor:
        """``(B, C, *kept) complex -> (B, C, *sizes) real``, zero-filling the dropped modes."""
        for axis, (n_pos, n_neg), n in zip(range(2, 2 + self.dim - 1), bins[:-1], sizes[:-1]):
            if n_pos + n_neg < n:
                gap = list(y.shape)
                gap[axis] = n - n_pos - n_neg
                y = torch.cat([y.narrow(axis, 0, n_pos), y.new_zeros(gap), y.narrow(axis, n_pos, n_neg)], dim=axis)
            y = torch.fft.ifft(y, dim=axis, norm="forward")
        # irfft zero-pads the last dimension to n // 2 + 1 bins itself.
        return torch.fft.irfft(y, n=sizes[-1], dim=-1, norm="forward")
