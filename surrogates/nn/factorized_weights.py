"""All spectral weights of an FNO as one factorized tensor (Kossaifi et al., MG-TFNO).

The dense weights of the ``L`` spectral convolutions of an FNO (each ``(K, C_in, C_out, 2)``, see
:mod:`surrogates.nn.spectral_conv`) are stacked into one real tensor of order ``4 + d``

.. math::

    \\mathcal W \\in \\mathbb R^{L \\times k_1 \\times \\dots \\times k_d \\times C_{in} \\times C_{out} \\times 2}

(layers, kept modes per dimension, channels, real/imaginary part) and that tensor is held in a low-rank
format:

* Tucker: ``W = G x_1 U_1 x_2 U_2 ... x_N U_N``, a core ``G`` of shape ``(R_1, ..., R_N)`` and one factor
  ``U_n`` of shape ``(I_n, R_n)`` per mode;
* CP: ``W = sum_r a^1_r o a^2_r o ... o a^N_r``, one factor ``A_n`` of shape ``(I_n, R)`` per mode.

The rank is given as a fraction of the dense size (``rank=0.1``: about a tenth of the parameters; CP:
tensorly's ``validate_cp_rank``; Tucker: the modes named in ``full_rank_modes``, by default the
real/imaginary part, keep their full rank, the others get ranks ``c I_n`` for the one ``c`` that brings
the parameter count closest to the fraction, rounded up on the modes of ``round_up_modes`` (the configs:
the layers) and to nearest on the rest (with no mode rounded up, the classes' default: tensorly's
``validate_tucker_rank``);
``rank=1.0`` is the full Tucker rank) or explicitly (a list of Tucker ranks, or an int CP rank).
Reconstruction and decomposition use tensorly (PyTorch backend, set for the current thread only, so
autograd flows through the factors). Real/imaginary parts are a mode of the real tensor rather than
complex factors, so optimizers and all-reduce see plain real parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorly as tl
import torch
from tensorly.cp_tensor import validate_cp_rank
from tensorly.decomposition import parafac, tucker
from tensorly.tucker_tensor import validate_tucker_rank
from torch import nn

__all__ = ["FACTORIZATIONS", "FULL_RANK_MODES", "FULL_RANK_MODE_NAMES", "MAX_CP_BYTES", "RECOMMENDED_ROUND_UP_MODES",
           "ROUND_UP_MODES", "FactorizedSpectralWeights", "cp_work_bytes", "tucker_parameter_count"]

FACTORIZATIONS = ("tucker", "cp")
# Modes a fractional Tucker rank may keep at full rank or round up, by name: both are small (L layers, 2
# parts), so full rank there costs a factor of L (or 2) in the core.
FULL_RANK_MODE_NAMES = ("layers", "complex")
FULL_RANK_MODES = ("complex",)  # the default
# The classes' default: no mode rounded up, the rule of networks saved before the option (their recorded
# arguments lack it, so their ranks must not change); the configs (conf/model/tfno.yaml) use ("layers",).
ROUND_UP_MODES = ()
RECOMMENDED_ROUND_UP_MODES = ("layers",)  # better on validation in tools/bench_tfno.py's setting
# CP's reconstruction (tensorly's cp_to_tensor) forms the Khatri-Rao product of all factors but the first,
# prod(I_2..I_N) x R numbers, on every forward pass (and autograd keeps it for the backward); its start forms
# R x R Gram matrices. A fraction near 1 makes R about as large as the dense size over the sum of the mode
# sizes: tens of GiB for an FNO layer stack. Refused beyond this many bytes unless raised on purpose.
MAX_CP_BYTES = 2**31


class FactorizedSpectralWeights(nn.Module):
    """One Tucker or CP tensor holding the spectral weights of ``n_layers`` convolutions.

    Parameters
    ----------
    n_layers : int
        ``L``, the number of spectral convolutions.
    weight_shape : sequence of int
        Kept-mode bins per spatial dimension, ``(k_1, ..., k_d)`` (``SpectralConv.weight_shape``).
    in_channels, out_channels : int
        ``C_in``, ``C_out`` of every convolution.
    factorization : {"tucker", "cp"}
        The low-rank format.
    rank : float, int or sequence of int
        A float in ``(0, 1]``: the fraction of the dense parameter count; for Tucker a list of one rank
        per mode (``L, k_1, ..., k_d, C_in, C_out, 2``); for CP an int.
    std : float
        Standard deviation of the reconstructed entries at initialization (that of the dense layers').
    full_rank_modes : sequence of {"layers", "complex"}
        With a fractional Tucker rank: the modes kept at full rank (``"layers"``: every layer its own
        kernel; ``"complex"``: real and imaginary parts not tied to one phase). The other modes' ranks
        are scaled alike to meet the fraction. Ignored for explicit ranks and for CP.
    round_up_modes : sequence of {"layers", "complex"}
        With a fractional Tucker rank: the other modes get ranks ``round(c I_n)`` and these ``ceil(c I_n)``
        (``I_n`` the mode's size), ``c`` common to all and chosen so that the parameter count is the
        closest to the fraction. Rounding up keeps a small mode's share (4 layers at ``c = 0.6``: rank 3,
        not 2) at the cost of a slightly smaller ``c`` on the large modes. Empty (the default, so that
        networks saved before the option keep their ranks; ``conf/model/tfno.yaml`` sets ``[layers]``):
        tensorly's ``validate_tucker_rank`` (its own ``c``, every rank rounded to nearest).
    max_cp_bytes : int
        CP only: the most bytes the reconstruction's Khatri-Rao product (``prod(I_2..I_N) x R``) and the
        start's Gram matrices (``N`` of ``R x R``) may take; a larger rank is refused with a ``ValueError``
        before anything is allocated (2 GiB by default; lower the rank, use Tucker, or raise it on purpose).

    Attributes
    ----------
    shape : tuple of int
        Shape of the dense tensor ``(L, k_1, ..., k_d, C_in, C_out, 2)``.
    ranks : list of int
        Tucker ranks (one per mode) or ``[R]`` for CP.
    """

    def __init__(
        self,
        n_layers: int,
        weight_shape: Sequence[int],
        in_channels: int,
        out_channels: int,
        factorization: str = "tucker",
        rank: float | int | Sequence[int] = 0.1,
        std: float = 0.1,
        full_rank_modes: Sequence[str] = FULL_RANK_MODES,
        round_up_modes: Sequence[str] = ROUND_UP_MODES,
        max_cp_bytes: int = MAX_CP_BYTES,
    ):
        super().__init__()
        if factorization not in FACTORIZATIONS:
            raise ValueError(f"factorization must be one of {FACTORIZATIONS}, got {factorization!r}")
        self.factorization = factorization
        self.shape = (int(n_layers), *(int(k) for k in weight_shape), int(in_channels), int(out_channels), 2)
        self.ranks = _ranks(self.shape, factorization, rank, full_rank_modes, round_up_modes)
        if factorization == "cp":
            work = cp_work_bytes(self.shape, self.ranks[0])
            if work > max_cp_bytes:
                raise ValueError(
                    f"CP rank {self.ranks[0]} (rank={rank!r}) of the {self.shape} weight tensor needs {work / 2**30:.1f} GiB "
                    f"to reconstruct it (the Khatri-Rao product of the factors, on every forward pass); the limit is "
                    f"{max_cp_bytes / 2**30:.1f} GiB (max_cp_bytes): use a lower rank or factorization='tucker'"
                )
        generator_std = float(std)
        if factorization == "tucker":
            # Orthonormal factors keep ||W|| = ||G||; E W_i^2 = var(G) prod(R_n / I_n) on average.
            core_std = generator_std * math.sqrt(math.prod(self.shape) / math.prod(self.ranks))
            self.core = nn.Parameter(core_std * torch.randn(*self.ranks))
            self.factors = nn.ParameterList(
                nn.Parameter(torch.linalg.qr(torch.randn(size, r))[0]) for size, r in zip(self.shape, self.ranks)
            )
        else:
            (r,) = self.ranks
            # E W_i^2 = R prod_n var(A_n): every factor gets the same share.
            factor_std = (generator_std**2 / r) ** (1.0 / (2 * len(self.shape)))
            self.core = None
            self.factors = nn.ParameterList(nn.Parameter(factor_std * torch.randn(size, r)) for size in self.shape)
        self._balance(generator_std)

    @torch.no_grad()
    def _balance(self, std: float, sweeps: int = 3) -> None:
        """Rescale the factors' rows so that every slice of the tensor has the spread ``std``.

        Random factors give every index of a mode its own scale: with Tucker rank 2 over 4 layers, the
        rows of an orthonormal ``4 x 2`` factor have random norms, and at initialization some layers'
        weights came out 4x smaller than others'. Every entry of the tensor is linear in the row of
        ``U_n`` at its index ``i_n``, so scaling that row scales exactly the slice ``W[..., i_n, ...]``;
        a few sweeps over the modes (``sweeps`` for Tucker, two for CP) bring every slice's root mean square
        to ``std`` (a dense layer's entries all have it).
        """
        tiny = torch.finfo(self.factors[0].dtype).tiny
        if self.factorization == "cp":
            # Without the dense tensor (CP's reconstruction holds rank x dense-size numbers): the squares of
            # the slice at index i of mode n sum to a_i^T H a_i, a_i the row, H the entrywise product of the
            # other factors' Gram matrices.
            grams = [f.T @ f for f in self.factors]
            for _ in range(2):  # two sweeps: R x R products per mode, slow at large ranks
                for mode, factor in enumerate(self.factors):
                    others = math.prod(n for m, n in enumerate(self.shape) if m != mode)
                    hadamard = torch.ones_like(grams[0])
                    for m, gram in enumerate(grams):
                        if m != mode:
                            hadamard.mul_(gram)
                    mean_square = ((factor @ hadamard) * factor).sum(dim=1) / others
                    factor.mul_((std / mean_square.clamp_min(tiny).sqrt()).unsqueeze(1))
                    grams[mode] = factor.T @ factor
            return
        tensor = self.dense()  # Tucker: the dense size
        for _ in range(sweeps):
            for mode, factor in enumerate(self.factors):
                other = [m for m in range(len(self.shape)) if m != mode]
                scale = std / tensor.square().mean(dim=other).sqrt().clamp_min(tiny)
                factor.mul_(scale.unsqueeze(1))
                tensor.mul_(scale.reshape([-1 if m == mode else 1 for m in range(len(self.shape))]))

    def extra_repr(self) -> str:
        return f"factorization={self.factorization}, shape={self.shape}, ranks={self.ranks}"

    @property
    def dense_size(self) -> int:
        """Number of entries of the dense tensor (the dense layers' spectral parameter count)."""
        return math.prod(self.shape)

    def dense(self) -> torch.Tensor:
        """The reconstructed tensor, shape ``(L, k_1, ..., k_d, C_in, C_out, 2)``."""
        with tl.backend_context("pytorch", local_threadsafe=True):
            if self.factorization == "tucker":
                return tl.tucker_to_tensor((self.core, list(self.factors)))
            ones = self.factors[0].new_ones(self.ranks[0])
            return tl.cp_to_tensor((ones, list(self.factors)))

    def forward(self) -> list[torch.Tensor]:
        """Every layer's weight, ``L`` tensors of shape ``(K, C_in, C_out, 2)``, ``K = prod(k_i)``."""
        n_layers, *_, c_in, c_out, _ = self.shape
        return [w.reshape(-1, c_in, c_out, 2) for w in self.dense().unbind(0)]

    @torch.no_grad()
    def load_dense(self, tensor: torch.Tensor, n_iter_max: int = 100) -> None:
        """Set the factors to tensorly's decomposition of a dense tensor of shape :attr:`shape`, at :attr:`ranks`.

        Tucker is HOOI started from the truncated HOSVD (exact, up to round-off, at full ranks); CP is
        ALS, exact only for a tensor of CP rank at most ``R``.
        """
        if tuple(tensor.shape) != self.shape:
            raise ValueError(f"expected a tensor of shape {self.shape}, got {tuple(tensor.shape)}")
        with tl.backend_context("pytorch", local_threadsafe=True):
            if self.factorization == "tucker":
                core, factors = tucker(tensor.detach(), rank=self.ranks, init="svd", n_iter_max=n_iter_max)
                self.core.copy_(core)
            else:
                weights, factors = parafac(tensor.detach(), rank=self.ranks[0], init="svd", n_iter_max=n_iter_max)
                factors = [f * (weights if i == 0 else 1) for i, f in enumerate(factors)]
        for parameter, factor in zip(self.factors, factors):
            parameter.copy_(factor)


def cp_work_bytes(shape: Sequence[int], rank: int, itemsize: int = 4) -> int:
    """Bytes of a CP tensor's largest temporaries: the reconstruction's Khatri-Rao product of all factors but
    the first (``prod(shape[1:]) x rank``) plus the start's Gram matrices (``len(shape)`` of ``rank x rank``)."""
    return itemsize * rank * (math.prod(shape[1:]) + len(shape) * rank)


def _ranks(
    shape: tuple[int, ...], factorization: str, rank, full_rank_modes: Sequence[str] = FULL_RANK_MODES,
    round_up_modes: Sequence[str] = ROUND_UP_MODES,
) -> list[int]:
    """Explicit ranks of a ``shape`` tensor from a fraction or from given ranks."""
    for name, modes in (("full_rank_modes", full_rank_modes), ("round_up_modes", round_up_modes)):
        if isinstance(modes, str) or not all(m in FULL_RANK_MODE_NAMES for m in modes):
            raise ValueError(f"{name} must name modes of {FULL_RANK_MODE_NAMES}, got {modes!r}")
    if isinstance(rank, bool):
        raise ValueError(f"rank must be a fraction or explicit ranks, got {rank!r}")
    if isinstance(rank, float):
        if not 0 < rank <= 1:
            raise ValueError(f"a fractional rank must lie in (0, 1], got {rank}")
        if factorization == "tucker":
            index = {"layers": 0, "complex": len(shape) - 1}
            fixed = sorted({index[m] for m in full_rank_modes})
            if round_up_modes:
                return _tucker_ranks_rounded_up(shape, rank, fixed, [index[m] for m in round_up_modes])
            return [max(1, int(r)) for r in validate_tucker_rank(shape, rank=rank, fixed_modes=fixed)]
        return [max(1, int(validate_cp_rank(shape, rank=rank)))]
    if factorization == "cp":
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"a CP rank must be a positive int or a fraction, got {rank!r}")
        return [rank]
    # any sequence (a Hydra config's list is a ListConfig), not a string
    ranks = [int(r) for r in rank] if isinstance(rank, Sequence) and not isinstance(rank, str) else None
    if ranks is None or len(ranks) != len(shape) or not all(1 <= r <= n for r, n in zip(ranks, shape)):
        raise ValueError(f"Tucker ranks must be a fraction or {len(shape)} ints within {list(shape)}, got {rank!r}")
    return ranks


def tucker_parameter_count(shape: Sequence[int], ranks: Sequence[int]) -> int:
    """Parameters of a Tucker tensor: the core ``prod(R_n)`` and the factors ``sum(I_n R_n)``."""
    return math.prod(ranks) + sum(n * r for n, r in zip(shape, ranks))


def _tucker_ranks_rounded_up(
    shape: tuple[int, ...], fraction: float, fixed: Sequence[int], up: Sequence[int]
) -> list[int]:
    """Ranks ``I_n`` on the ``fixed`` modes, ``ceil(c I_n)`` on the ``up`` modes and ``round(c I_n)`` on the
    others, for the ``c`` whose parameter count is closest to ``fraction * prod(I_n)`` (ties: the smaller
    count); ``fraction=1`` gives the full ranks."""
    if fraction == 1:
        return list(shape)
    target = fraction * math.prod(shape)

    def at(c: float) -> list[int]:
        return [n if m in fixed else min(n, max(1, math.ceil(c * n) if m in up else math.floor(c * n + 0.5)))
                for m, n in enumerate(shape)]

    # The ranks change only where c crosses k / I_n (rounded up) or (k + 1/2) / I_n (to nearest): the ranks
    # just below and just above every such point are all the distinct choices.
    points = {(k if m in up else k + 0.5) / n for m, n in enumerate(shape) if m not in fixed for k in range(n + 1)}
    candidates = [at(p + side) for p in points for side in (-1e-9, 1e-9) if 0 < p + side <= 1]
    return min(candidates, key=lambda r: (abs(tucker_parameter_count(shape, r) - target),
                                          tucker_parameter_count(shape, r)))
