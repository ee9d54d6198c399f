"""The DCDM network: a convolutional approximation of ``A^{-1}`` (up to a constant) on a 2D grid.

Kaneda et al. (ICML 2023) train a CNN ``f`` so that ``A f(r)`` is parallel to ``r``: only the
direction of ``f(r)`` matters, because the conjugate direction iteration chooses the step length
itself. Here the network acts on 5-point operators of an ``m x m`` interior grid (Poisson, Darcy:
:mod:`surrogates.solvers.finite_differences`) in a scaled form ``Â = D^{-1/2} A D^{-1/2}`` (``D``
diagonal, see below), and it reads the operator's coefficients: four channels hold the scaled couplings ``-Â`` to the four
neighbours (about 1/4 each for Poisson, zero across the boundary), so one network serves a family of
variable-coefficient matrices (Darcy's ``{3, 12}`` fields) and the ``1/h^2`` scale of ``A`` never
reaches it.

Architecture. ``f(r) = N^T N r + sigma r`` with ``N`` a convolutional network that is *linear in r*
(the couplings set its weights through multiplicative gates, ``conv(h) * gate(couplings)``, the only
nonlinearity) and ``sigma = softplus(.) > 0`` learned. So ``f`` is a symmetric positive definite
operator for every matrix and every set of weights, and DCDM with it can never stall: with a general
nonlinear CNN (the paper's ReLU U-Net, which we tried first) an undertrained network's direction
became A-orthogonal to the error after a few iterations and the iteration stopped moving; ``N^T N`` is
the learned-factor idea of the GNN preconditioner (``P^{-1} = L^{-T} L^{-1}``) in convolutional form.
``N^T z`` is computed exactly as the gradient of ``<N u, z>`` in ``u``.

Two structures of ``N`` (``structure=``), both with weights shared by all levels, so a network trained
at 64 runs on finer grids with more levels and no new weights:

- ``"v_cycle"``: a recursive U-Net. A level smooths with residual 3x3 convolution blocks, average-pools
  to half the size, runs the *same* level on the coarse grid until it is at most ``coarsest`` nodes
  wide, adds the interpolated coarse correction (times ``coarse_gain``) and smooths again, like a
  multigrid V-cycle (the paper's U-Net has one coarsening). It does not carry to finer grids: trained
  at 64, ``||N v||^2`` of the smoothest Poisson mode is a small difference of large terms (stopping the
  recursion at the 16 x 16 level gives 2e4, going on to 8 x 8 gives 3e2: the deep levels cancel what
  the upper ones add), so ``v^T f v`` of the modes longer than about 32 cells is far too
  small (40 to 500 times) at every grid size, and a finer grid has more such modes (``docs/benchmarks.md``, section DCDM).
- ``"additive"``: the multilevel sum ``f = sigma I + sum_l gain^(2l) P_l S^T S P_l^T`` (BPX's form with a
  learned smoother), where ``S`` is the gated convolution stack of one level (lift, blocks, project)
  and ``P_l`` bilinear interpolation from level ``l`` (vertex-centred, :func:`interpolation`), so
  ``N r = (gain^l S P_l^T r)_l`` stacked over the levels. Every term is positive semidefinite: no level
  can cancel another. ``P^T`` sums (weights 4 in all), so a smooth mode's coefficient grows 4-fold per
  level, as its eigenvalue of the scaled operator does on the coarser grid: with ``gain = 1`` each level
  adds ``~ 1/lambda`` for the modes it resolves, the scaling that follows the grid, with nothing left to
  learn or extrapolate about it. The coarse levels read :func:`series_couplings`, which keep the
  boundary's zeros at every level.

Scaling and start (``scaling=``, ``init=``). With the Jacobi scaling ``D = diag(A)`` the near null space
of ``Â`` is ``D^{1/2}`` times a smooth function, which jumps by ``sqrt(12/3) = 2`` across a jump of
Darcy's coefficient, and no bilinear coarse level represents it: ``init="identity"`` (``S = I``, the
untrained network is BPX for ``Â``) needs 15, 16 and 17 DCDM iterations on Poisson at 64, 128 and 256
but 32, 53 and 97 on a Darcy matrix (one validation matrix per size). With ``scaling="mean"`` (``D = mean(diag A) I``) it is BPX for
``A`` itself: 29, 30 and 31 on the same Darcy matrix, and its couplings show the coefficient, so
training has something local to learn (``docs/solvers.md``, DCDM).

Input scaling. The residual is divided by its root mean square before the network sees it (the paper
normalizes it to unit norm; RMS keeps the entries O(1) at every grid size), so the direction
``f(c r) = f(r)`` for every ``c > 0``: exactly what the iteration needs (it is blind to the length of
``f(r)``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from surrogates.arguments import check_number
from surrogates.solvers.preconditioners.persistence import load_network, load_network_metadata, save_network

__all__ = ["COARSE_COUPLINGS", "COUPLING_CHANNELS", "SCALINGS", "DCDMNet", "average_couplings", "galerkin_couplings", "interpolation", "interpolation_adjoint", "load",
           "load_metadata", "series_couplings"]

COUPLING_CHANNELS = 4
"""Operator channels: scaled couplings to the neighbours at ``i - 1``, ``i + 1``, ``j - 1``, ``j + 1``."""

SCALINGS = ("diagonal", "mean")
"""The systems the network can work on (``scaling``): ``D^{-1/2} A D^{-1/2}`` with ``D = diag(A)`` or
``D = mean(diag(A)) I`` (:func:`~surrogates.solvers.dcdm.grid.grid_couplings`)."""


_IDENTITY_WEIGHT_INIT = -4.0  # softplus(-4) ~ 0.018: the identity starts as a small safeguard


def average_couplings(couplings: torch.Tensor) -> torch.Tensor:
    """Coarse couplings as 2 x 2 averages of the fine ones, ``(B, 4, m, m) -> (B, 4, ceil(m/2), ceil(m/2))``.

    A boundary's zero couplings are averaged with the interior's, so the boundary fades level by level
    (``1/8, 3/16, 7/32, ...`` for Poisson's ``1/4``).
    """
    return F.avg_pool2d(couplings, 2, ceil_mode=True)


def galerkin_couplings(couplings: torch.Tensor) -> torch.Tensor:
    """Scaled couplings of the aggregation coarse operator ``P^T Â P``, ``(B, 4, m, m) -> (B, 4, ceil(m/2), ceil(m/2))``.

    ``P`` maps a coarse node to the (up to) 2 x 2 fine nodes of its block (piecewise constant). With
    ``Â = I - C`` (``C`` the couplings), the coarse operator couples neighbouring blocks ``I, J`` by
    ``-sum_{k in I, l in J} c_kl`` and has the diagonal ``d_I = |I| - 2 sum_{internal edges} c_kl``; the
    result is diagonally scaled again, ``c_IJ / sqrt(d_I d_J)``, so every level sees its operator in the
    form the finest one has. Poisson's interior ``1/4`` stays ``1/4`` and the boundary's zeros stay zero
    at every level. ``d`` is clamped at ``1e-6 |I|``: positive for SPD ``Â`` anyway, this keeps other
    inputs finite.
    """
    m0, m1 = couplings.shape[-2:]
    pad = (0, m1 % 2, 0, m0 % 2)  # zero couplings and zero nodes complete the last blocks
    c = F.pad(couplings, pad)
    ones = F.pad(torch.ones_like(couplings[:, :1]), pad)
    up, down, left, right = c[:, 0], c[:, 1], c[:, 2], c[:, 3]

    def top(x):  # sum over the first row of each 2 x 2 block
        return x[..., 0::2, 0::2] + x[..., 0::2, 1::2]

    def bottom(x):
        return x[..., 1::2, 0::2] + x[..., 1::2, 1::2]

    def first(x):  # sum over the first column of each block
        return x[..., 0::2, 0::2] + x[..., 1::2, 0::2]

    def second(x):
        return x[..., 0::2, 1::2] + x[..., 1::2, 1::2]

    crossing = torch.stack([top(up), bottom(down), first(left), second(right)], dim=1)
    internal = bottom(up) + second(left)  # each edge inside a block once (its reverse is the same by symmetry)
    size = top(ones[:, 0]) + bottom(ones[:, 0])
    d = (size - 2 * internal).clamp_min(1e-6 * size)
    d_pad = F.pad(d[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # across the boundary the coupling is 0 anyway
    neighbours = torch.stack([d_pad[:, :-2, 1:-1], d_pad[:, 2:, 1:-1], d_pad[:, 1:-1, :-2], d_pad[:, 1:-1, 2:]], dim=1)
    return crossing / (d[:, None] * neighbours).sqrt()


_BILINEAR = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def interpolation(coarse: torch.Tensor, m: int) -> torch.Tensor:
    """Bilinear interpolation ``P`` from the ``M x M`` coarse nodes (fine nodes ``2K + 1``) to ``m x m`` fine nodes.

    Vertex-centred, with the Dirichlet boundary's zeros beyond both ends: a fine node between two coarse
    ones gets their mean, one between a coarse node and the boundary half its value. ``(B, C, M, M)`` ->
    ``(B, C, m, m)`` for ``M = m // 2``.
    """
    channels = coarse.shape[1]
    kernel = _BILINEAR.to(coarse).expand(channels, 1, 3, 3)
    return F.conv_transpose2d(coarse, kernel, stride=2, groups=channels)[..., :m, :m]


def interpolation_adjoint(fine: torch.Tensor) -> torch.Tensor:
    """``P^T`` of :func:`interpolation` (full weighting with weights summing to 4), ``(B, C, m, m) -> (B, C, m // 2, m // 2)``.

    ``P^T`` sums, so a smooth residual grows by 4 per level while its mode's eigenvalue of the scaled
    operator grows by 4 too: ``P S^T S P^T`` is the BPX scaling with no factor to learn.
    """
    m = fine.shape[-1]
    M = m // 2
    padded = F.pad(fine, (0, 2 * M + 1 - m, 0, 2 * M + 1 - m))
    channels = fine.shape[1]
    return F.conv2d(padded, _BILINEAR.to(fine).expand(channels, 1, 3, 3), stride=2, groups=channels)


def series_couplings(couplings: torch.Tensor) -> torch.Tensor:
    """Couplings of the coarse nodes of :func:`interpolation`, ``(B, 4, m, m) -> (B, 4, m // 2, m // 2)``.

    A coarse edge spans two fine edges in a row (through the fine node between the coarse ones): their
    series coupling ``2 a b / (a + b)`` (Poisson's ``1/4`` stays ``1/4``; a coarse node next to the
    boundary keeps a zero coupling there, at every level).
    """
    m = couplings.shape[-1]
    M = m // 2
    c = F.pad(couplings, (0, 2 * M + 2 - m, 0, 2 * M + 2 - m))

    def series(a, b):
        total = a + b
        return torch.where(total > 0, 2 * a * b / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(total))

    centre = (slice(None), slice(1, 2 * M + 1, 2), slice(1, 2 * M + 1, 2))
    up = series(c[:, 0][centre], c[:, 0][:, 0:2 * M:2, 1:2 * M + 1:2])
    down = series(c[:, 1][centre], c[:, 1][:, 2:2 * M + 2:2, 1:2 * M + 1:2])
    left = series(c[:, 2][centre], c[:, 2][:, 1:2 * M + 1:2, 0:2 * M:2])
    right = series(c[:, 3][centre], c[:, 3][:, 1:2 * M + 1:2, 2:2 * M + 2:2])
    return torch.stack([up, down, left, right], dim=1)


COARSE_COUPLINGS = {"average": average_couplings, "galerkin": galerkin_couplings}
"""How a level's couplings are coarsened for the next (``DCDMNet(coarse_couplings=...)``)."""


class _ResidualBlock(nn.Module):
    """``h + conv(conv(h) * gate(couplings))``: a smoothing step, linear in ``h``, whose weights the local operator sets."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.second = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.gate = nn.Sequential(
            nn.Conv2d(COUPLING_CHANNELS, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1),
        )

    def forward(self, h: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        return h + self.second(self.first(h) * self.gate(couplings))


class DCDMNet(nn.Module):
    """Recursive U-Net ``(r, couplings) -> d`` with ``A d`` approximately parallel to ``r`` (scaled system).

    Parameters
    ----------
    width
        Channels of the hidden state.
    blocks
        Residual blocks before and after the coarse correction on every level.
    coarsest
        A level with at most this many nodes along a side does not coarsen further.
    coarse_couplings
        How the V-cycle's next level's couplings are made: ``"average"`` (2 x 2 means, :func:`average_couplings`)
        or ``"galerkin"`` (the scaled aggregation operator, :func:`galerkin_couplings`). The additive
        structure uses :func:`series_couplings` (this must stay ``"average"``, the default).
    coarse_gain
        Fixed factor on every coarse correction. ``2`` follows the grid: a smooth mode's eigenvalue of the
        scaled operator is 4 times larger on the coarser grid, so ``N ~ Â^{-1/2}`` must amplify the coarse
        level's answer by 2, which the shared weights then need not learn (nor extrapolate to levels
        that training never saw). In the additive structure the factor ``gain^l`` on level ``l``'s
        part of ``N`` (``1`` follows the grid there, see the module docstring).
    structure
        ``"v_cycle"`` (recursive U-Net, the default, as saved networks without this entry) or
        ``"additive"`` (the multilevel sum).
    scaling
        The system the network works on (:func:`~surrogates.solvers.dcdm.grid.grid_couplings`):
        ``"diagonal"`` (``D^{-1/2} A D^{-1/2}``, as saved networks without this entry) or ``"mean"``
        (``A / mean(diag(A))``: the couplings show the coefficient, and BPX's interpolation fits the
        operator's smooth modes across coefficient jumps).
    init
        Starting weights: ``"random"`` (PyTorch's default initialization, as saved networks without this
        entry) or ``"identity"`` (additive structure only): the smoother ``S`` starts as the identity map
        (the lift copies ``r`` into every channel, the projection averages them, the blocks' second
        convolutions are zero; exact in floating point for a power-of-two width), so the untrained
        network is the BPX preconditioner ``sigma I + sum_l gain^(2l) P_l P_l^T`` of the scaled
        operator; the gates keep their random weights and the blocks start learning through their
        second convolutions.

    Attributes
    ----------
    init_kwargs : dict
        The constructor arguments (plain values), saved with the weights.
    """

    def __init__(self, width: int = 16, blocks: int = 2, coarsest: int = 4, coarse_couplings: str = "average",
                 coarse_gain: float = 1.0, structure: str = "v_cycle", init: str = "random",
                 scaling: str = "diagonal"):
        super().__init__()
        if width < 1 or blocks < 1 or coarsest < 1:
            raise ValueError(f"width, blocks and coarsest must be positive, got {width}, {blocks}, {coarsest}")
        if coarse_couplings not in COARSE_COUPLINGS:
            raise ValueError(f"coarse_couplings must be one of {sorted(COARSE_COUPLINGS)}, got {coarse_couplings!r}")
        check_number("coarse_gain", coarse_gain, 0.0, low_open=True)
        if structure not in ("v_cycle", "additive"):
            raise ValueError(f"structure must be 'v_cycle' or 'additive', got {structure!r}")
        if structure == "additive" and coarse_couplings != "average":
            raise ValueError("the additive structure coarsens the couplings itself (series_couplings)")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if init not in ("random", "identity"):
            raise ValueError(f"init must be 'random' or 'identity', got {init!r}")
        if init == "identity" and structure != "additive":
            raise ValueError("init='identity' is defined for the additive structure only")
        self.init_kwargs = {"width": int(width), "blocks": int(blocks), "coarsest": int(coarsest),
                            "coarse_couplings": str(coarse_couplings), "coarse_gain": float(coarse_gain),
                            "structure": str(structure), "init": str(init),
                            "scaling": str(scaling)}
        self.lift = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.pre = nn.ModuleList(_ResidualBlock(width) for _ in range(blocks))
        if structure == "v_cycle":  # the additive structure's levels are the smoother alone
            self.post = nn.ModuleList(_ResidualBlock(width) for _ in range(blocks))
            self.restrict = nn.Conv2d(width, width, 1, bias=False)
            self.prolong = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.project = nn.Conv2d(width, 1, 1, bias=False)
        # f = N^T N + sigma I with sigma = softplus(.) > 0: N may have a null space (checkerboards vanish in
        # average pooling), and then N^T N alone would stall the iteration on it
        self.identity_weight = nn.Parameter(torch.tensor(_IDENTITY_WEIGHT_INIT))
        if init == "identity":
            self._identity_smoother()

    @property
    def scaling(self) -> str:
        """The system the network works on, one of :data:`SCALINGS` (``"diagonal"`` for networks saved before it)."""
        return self.init_kwargs["scaling"]

    @torch.no_grad()
    def _identity_smoother(self) -> None:
        """Make ``S`` the identity map (``init="identity"``); the gates and first convolutions stay random."""
        self.lift.weight.zero_()
        self.lift.weight[:, 0, 1, 1] = 1.0
        self.project.weight.fill_(1.0 / self.lift.out_channels)  # the mean of width copies of r is r
        for block in self.pre:
            block.second.weight.zero_()  # h + 0: every block passes h on unchanged

    def forward(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        """One direction per residual.

        Parameters
        ----------
        r
            Scaled residuals ``D^{-1/2} r`` on the grid, shape ``(B, 1, m, m)`` (any scale: normalized here).
        couplings
            From :func:`~surrogates.solvers.dcdm.grid.grid_couplings`, shape ``(1 or B, 4, m, m)``.

        Returns
        -------
        torch.Tensor
            Directions of the scaled system, shape ``(B, 1, m, m)``.
        """
        if r.ndim != 4 or r.shape[1] != 1:
            raise ValueError(f"r must have shape (B, 1, m, m), got {tuple(r.shape)}")
        if couplings.ndim != 4 or couplings.shape[1] != COUPLING_CHANNELS or couplings.shape[-2:] != r.shape[-2:]:
            raise ValueError(f"couplings must have shape (1 or B, {COUPLING_CHANNELS}, {r.shape[-2]}, {r.shape[-1]}), "
                             f"got {tuple(couplings.shape)}")
        rms = r.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        r = r / torch.where(rms > 0, rms, torch.ones_like(rms))  # f(c r) = f(r) for c > 0; r = 0 stays 0
        couplings = couplings.expand(r.shape[0], -1, -1, -1)
        train = torch.is_grad_enabled()
        with torch.enable_grad():  # N^T z is the gradient of <N u, z> in u (N is linear in u)
            u = r.detach().requires_grad_(True)
            z = self.half(u, couplings)
            (out,) = torch.autograd.grad(z, u, grad_outputs=z, create_graph=train)
        return out + F.softplus(self.identity_weight) * r

    def half(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        """``N r``, the half of ``f = N^T N``: linear in ``r``, shapes ``(B, 1, m, m)`` and ``(B, 4, m, m)``.

        Returns ``(B, 1, m, m)`` for the V-cycle; for the additive structure the levels' outputs
        ``gain^l S (P^T)^l r``, flattened and concatenated, ``(B, total nodes of all levels)``.
        """
        if self.init_kwargs["structure"] == "additive":
            return self._additive(r, couplings)
        return self.project(self._level(self.lift(r), couplings))

    def _smoother(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        h = self.lift(r)
        for block in self.pre:
            h = block(h, couplings)
        return self.project(h)

    def _additive(self, r: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        gain = self.init_kwargs["coarse_gain"]
        outputs, level = [], 0
        while True:
            outputs.append((gain ** level) * self._smoother(r, couplings).flatten(1))
            if min(r.shape[-2:]) <= self.init_kwargs["coarsest"] or min(r.shape[-2:]) < 3:
                return torch.cat(outputs, dim=1)
            r, couplings, level = interpolation_adjoint(r), series_couplings(couplings), level + 1

    def _level(self, h: torch.Tensor, couplings: torch.Tensor) -> torch.Tensor:
        for block in self.pre:
            h = block(h, couplings)
        size = h.shape[-2:]
        if min(size) > self.init_kwargs["coarsest"]:
            coarse_h = F.avg_pool2d(self.restrict(h), 2, ceil_mode=True)
            coarse_c = COARSE_COUPLINGS[self.init_kwargs["coarse_couplings"]](couplings)
            coarse = self._level(coarse_h, coarse_c)
            correction = self.prolong(F.interpolate(coarse, size=size, mode="bilinear", align_corners=False))
            h = h + self.init_kwargs["coarse_gain"] * correction
        for block in self.post:
            h = block(h, couplings)
        return h

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the network through :mod:`surrogates.checkpoint` (kind ``"preconditioner"``); see :func:`load`."""
        return save_network(self, path, metadata)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> DCDMNet:
    """Load a :class:`DCDMNet` written by :meth:`DCDMNet.save` (eval mode); ``CheckpointError`` otherwise."""
    return load_network(path, map_location, expected=DCDMNet)


def load_metadata(path: str | Path) -> dict:
    """The training record saved with a :class:`DCDMNet` (``{}`` if none)."""
    return load_network_metadata(path)
