"""Physics-informed hard constraints with a mixture of experts (Chalapathi, Du and Krishnapriyan,
"Scaling physics-informed hard constraints with mixture-of-experts", ICLR 2024).

A neural operator (an :class:`~surrogates.models.fno.FNO` over space-time) maps the input (the
initial state, broadcast over time) to ``N`` basis functions ``b_1 .. b_N`` on the space-time grid.
The prediction is a linear combination whose weights are *solved for*, not predicted:

    u = u_off + sum_n w_{k(p), n} btilde_n(p),

where ``k(p)`` is the expert owning grid point ``p``. The router is a fixed uniform partition of
the space-time grid into ``K = prod(experts)`` boxes (``experts`` lists the number of pieces along
time and each spatial axis). Expert ``k`` solves its own nonlinear least-squares problem for
``w_k in R^N`` with Levenberg-Marquardt in float64 (:mod:`surrogates.nn.least_squares`), on
residual rows that lie in its box:

- PDE residual at ``n_points / K`` points sampled uniformly at random in the box, excluding the
  initial time (the initial condition constrains it) and the points of the next item;
- PDE residual at the boundary points that the PDE marks (diffusion-sorption: the first and last
  cells, whose residual carries the boundary conditions), weight ``boundary_weight``;
- with ``ic_mode="residual"``: ``u(0, x) - u0(x)`` at the initial-time points, weight ``ic_weight``;
- ridge rows ``ridge * w_k`` (1e-4, as in the reference implementation).

The boundary and initial rows are those of the whole domain in every expert's problem
(``shared_rows=True``, as the reference, which replicates the global initial and boundary terms to
each expert), or only those inside the expert's box (``shared_rows=False``). Shared rows carry the
boundary data to experts that do not touch the boundary: with local rows an interior
diffusion-sorption expert has the exact local solution ``u = u0``.

Each group of rows is divided by the square root of its size, so that the objective is a sum of
mean squares and does not grow with ``n_points``. All experts of all samples form one batch of
independent problems; gradients reach the network through each expert's optimum by the implicit
function theorem. ``K = 1`` is the single hard constraint; ``constraint="soft"`` is the
soft-constraint baseline with the same backbone: the weights are one learned vector and the PDE
residual only enters the training loss (:mod:`surrogates.tasks.hard_constraint`).

Initial condition (``ic_mode``):

- ``"exact"`` (Navier-Stokes, as the reference's mollifier): ``btilde_n = (t / T) (b_n - mean_x b_n)``
  (the spatial mean is removed when the PDE's field has zero mean, periodic vorticity) and
  ``u_off = u0``, so ``u(t = 0) = u0`` holds exactly at every grid point of the initial time, for
  every expert and every ``w``; it also holds for the soft baseline.
- ``"residual"`` (diffusion-sorption, as the reference): ``btilde = b``, ``u_off = 0``, and the initial
  condition enters each expert's least-squares problem as rows; it holds only approximately.

The residual terms of the basis (derivatives, velocities) are computed once on the whole grid, as
linear maps of the basis functions, and only gathered at the sampled points, so the experts see the
same discrete operators as a single constraint would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from surrogates.arguments import check_count, check_number
from surrogates.models.base import OperatorModel
from surrogates.models.fno import FNO
from surrogates.nn.least_squares import solve_least_squares
from surrogates.nn.normalization import Normalizer
from surrogates.pdes.diffusion_sorption import DiffusionSorptionResidual
from surrogates.pdes.navier_stokes import VorticityResidual

__all__ = ["HardConstraintMoE", "HardConstraintOutput", "expert_labels", "partition", "assemble", "PHYSICS"]

PHYSICS = {"diffusion_sorption": DiffusionSorptionResidual, "navier_stokes": VorticityResidual}
"""PDE name -> residual class (constructed with ``pde_params``)."""

CONSTRAINTS = ("hard", "soft")
MAX_ITERATIONS = 10_000
"""Largest ``max_iter`` of the Levenberg-Marquardt solve (50 by default; 500 solves to round-off)."""


def _check_settings(**values: float) -> None:
    """Weights, tolerances and damping of the least-squares solve: finite and >= 0 (``ValueError`` otherwise)."""
    for name, value in values.items():
        check_number(name, value, 0.0)

IC_MODES = ("exact", "residual")


def expert_labels(grid_shape: Sequence[int], experts: Sequence[int], device=None) -> torch.Tensor:
    """Expert of every grid point for a uniform partition, ``(*grid_shape)`` int64 in ``[0, prod(experts))``.

    Along an axis of ``n`` points cut into ``e`` pieces, point ``i`` belongs to piece ``floor(i e / n)``
    (pieces differ in size by at most one point); experts are numbered in row-major order of the pieces.
    """
    if len(grid_shape) != len(experts):
        raise ValueError(f"experts {list(experts)} must give one count per grid axis {list(grid_shape)}")
    label = torch.zeros((), dtype=torch.long, device=device)
    for n, e in zip(grid_shape, experts):
        if not 1 <= e <= n:
            raise ValueError(f"cannot cut an axis of {n} points into {e} experts")
        piece = torch.arange(n, device=device) * e // n
        label = label[..., None] * e + piece
    return label


def partition(field: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Split ``field`` (``(..., *grid)``) into the values owned by each expert, each ``(..., n_k)``."""
    flat = field.flatten(-labels.ndim)
    flat_labels = labels.flatten()
    return [flat[..., (flat_labels == k).nonzero().squeeze(-1)] for k in range(int(flat_labels.max()) + 1)]


def assemble(parts: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`partition`: put each expert's values back on the grid, ``(..., *grid)``."""
    flat_labels = labels.flatten()
    lead = parts[0].shape[:-1]
    out = parts[0].new_empty(*lead, flat_labels.numel())
    for k, part in enumerate(parts):
        out[..., (flat_labels == k).nonzero().squeeze(-1)] = part
    return out.view(*lead, *labels.shape)


@dataclass
class HardConstraintOutput:
    """What :meth:`HardConstraintMoE.solve` computed.

    Attributes
    ----------
    solution
        ``u``, float64, ``(B, 1, T, *spatial)``.
    weights
        ``w``, ``(B, K, N)`` (the soft baseline: its learned vector for every sample, ``K = 1``).
    iterations, converged
        Levenberg-Marquardt iterations and convergence flags per expert, ``(B, K)`` (None when soft).
    cost
        ``0.5 ||r||^2`` of each expert's problem at its solution, ``(B, K)`` (None when soft).
    points
        Flat grid indices of each expert's sampled PDE points, ``(B, K, m)`` (None when soft).
    """

    solution: torch.Tensor
    weights: torch.Tensor
    iterations: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    cost: torch.Tensor | None = None
    points: torch.Tensor | None = None


class HardConstraintMoE(OperatorModel):
    """FNO basis functions combined with weights solved per expert under the PDE (module docstring).

    Input ``(B, C_in, T, *spatial)``: the input fields broadcast over the time axis (channel 0 is the
    initial state ``u0``, read at the first time); output ``(B, 1, T, *spatial)``: the trajectory.
    The stored times are ``linspace(0, final_time, T)`` with ``final_time`` from ``pde_params``.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output (``out_channels`` must be 1: one scalar field).
    pde
        ``"diffusion_sorption"`` or ``"navier_stokes"`` (keys of :data:`PHYSICS`).
    pde_params
        Keyword arguments of the PDE's residual class (``final_time``, physical constants).
    constraint
        ``"hard"`` (solved weights) or ``"soft"`` (learned weights, residual only in the loss).
    experts
        Pieces of the uniform partition along time and every spatial axis; all ones is the single
        hard constraint.
    n_basis
        Basis functions ``N`` (the backbone's output channels).
    n_points
        PDE residual points sampled per sample and step, over all experts (``n_points / K`` each,
        fewer if a box has fewer points). Sampling is random in training (points of their own for every
        sample) and seeded by ``eval_seed`` in evaluation (the same points for every sample of a batch), so
        that a prediction is reproducible and does not depend on the batch it is computed in.
    ic_mode
        ``"exact"`` or ``"residual"`` (module docstring).
    ic_weight, boundary_weight, ridge
        Weights of the initial-condition rows, of the always-included boundary rows, and of the
        ridge rows (finite, >= 0).
    shared_rows
        Whether every expert's problem holds the boundary and initial rows of the whole domain.
    w_init
        Initial guess of every weight (finite).
    hessian
        Backward of the least-squares layer: ``"exact"`` or ``"gauss_newton"``.
    max_iter, ftol, xtol, gtol, damping
        Levenberg-Marquardt settings (:func:`surrogates.nn.least_squares.levenberg_marquardt`):
        ``0 <= max_iter <= MAX_ITERATIONS`` (every prediction may run them all), tolerances and damping
        finite and >= 0.
    modes, width, n_layers, projection_channels, activation, padding, grid
        The FNO backbone (:class:`~surrogates.models.fno.FNO`, of dimension ``1 + spatial``).
    eval_seed
        Seed of the point sampling in evaluation mode.
    """

    registered_name = "hc_moe"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        pde: str = "diffusion_sorption",
        pde_params: dict[str, Any] | None = None,
        constraint: str = "hard",
        experts: list[int] | None = None,
        n_basis: int = 16,
        n_points: int = 1000,
        ic_mode: str = "residual",
        ic_weight: float = 1.0,
        boundary_weight: float = 1.0,
        shared_rows: bool = True,
        ridge: float = 1e-4,
        w_init: float = 0.0,
        hessian: str = "exact",
        max_iter: int = 50,
        ftol: float = 1e-10,
        xtol: float = 1e-10,
        gtol: float = 1e-10,
        damping: float = 1e-3,
        modes: int | list[int] = 8,
        width: int = 32,
        n_layers: int = 4,
        projection_channels: int = 64,
        activation: str = "gelu",
        padding: float = 0.0,
        grid: str = "closed",
        eval_seed: int = 0,
    ):
        super().__init__()
        if pde not in PHYSICS:
            raise ValueError(f"pde must be one of {sorted(PHYSICS)}, got {pde!r}")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
        if ic_mode not in IC_MODES:
            raise ValueError(f"ic_mode must be one of {IC_MODES}, got {ic_mode!r}")
        if out_channels != 1:
            raise ValueError(f"the hard-constraint model predicts one scalar field; out_channels must be 1, got {out_channels}")
        if n_basis < 1 or n_points < 1 or in_channels < 1:
            raise ValueError("need n_basis >= 1, n_points >= 1 and in_channels >= 1")
        _check_settings(ic_weight=ic_weight, boundary_weight=boundary_weight, ridge=ridge, ftol=ftol, xtol=xtol, gtol=gtol,
                        damping=damping)
        check_number("w_init", w_init)
        check_count("max_iter", max_iter, 0, MAX_ITERATIONS)
        self.physics = PHYSICS[pde](**(pde_params or {}))
        self.dim = 1 + self.physics.spatial_dims
        experts = [1] * self.dim if experts is None else [int(e) for e in experts]
        if len(experts) != self.dim:
            raise ValueError(f"experts needs {self.dim} counts (time and each spatial axis), got {experts}")
        self.experts = experts
        self.n_experts = math.prod(experts)
        self.constraint, self.ic_mode, self.n_basis, self.n_points = constraint, ic_mode, int(n_basis), int(n_points)
        self.ic_weight, self.boundary_weight, self.ridge = float(ic_weight), float(boundary_weight), float(ridge)
        self.shared_rows = bool(shared_rows)
        self.w_init, self.hessian, self.eval_seed = float(w_init), hessian, int(eval_seed)
        self.solver_options = {
            "max_iter": int(max_iter), "ftol": float(ftol), "xtol": float(xtol), "gtol": float(gtol),
            "damping": float(damping),
        }
        self.input_normalizer = Normalizer(in_channels)
        self.backbone = FNO(
            in_channels, n_basis, modes=modes, width=width, n_layers=n_layers, dim=self.dim,
            projection_channels=projection_channels, activation=activation, padding=padding, grid=grid,
        )
        if constraint == "soft":
            self.soft_weights = nn.Parameter(torch.randn(n_basis) / math.sqrt(n_basis))
        self._layout_cache: dict[tuple, dict[str, Any]] = {}

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the trajectory, ``(B, 1, T, *spatial)`` in the input's dtype."""
        return self.solve(x).solution.to(x.dtype)

    def solve(self, x: torch.Tensor, n_points: int | None = None) -> HardConstraintOutput:
        """Run the backbone and the constraint; see :class:`HardConstraintOutput`.

        Parameters
        ----------
        x
            ``(B, C_in, T, *spatial)``.
        n_points
            Overrides the sampled points of this call.
        """
        if torch.is_inference_mode_enabled():
            # the Jacobians of the constraint use autograd, which inference tensors do not allow
            with torch.inference_mode(False), torch.no_grad():
                return self.solve(x.clone(), n_points)
        if x.ndim != self.dim + 2 or x.shape[1] != self.input_normalizer.num_channels:
            raise ValueError(
                f"expected input (batch, {self.input_normalizer.num_channels}, time, "
                f"{', '.join(['n'] * (self.dim - 1))}), got {tuple(x.shape)}"
            )
        grid_shape = tuple(x.shape[2:])
        if grid_shape[0] < 3:
            raise ValueError(f"need at least 3 times for the time derivative, got {grid_shape[0]}")
        u0 = x[:, 0, 0].to(torch.float64)  # (B, *spatial)
        basis = self.backbone(self.input_normalizer.encode(x)).to(torch.float64)  # (B, N, T, *spatial)
        basis, offset = self._construct(basis, u0, grid_shape)
        if self.constraint == "soft":
            w = self.soft_weights.to(torch.float64).expand(x.shape[0], 1, self.n_basis)
            solution = offset + torch.einsum("bn...,bn->b...", basis, w[:, 0])
            return HardConstraintOutput(solution.unsqueeze(1), w)
        return self._hard(basis, offset, u0, grid_shape, n_points or self.n_points)

    def _construct(self, basis: torch.Tensor, u0: torch.Tensor, grid_shape: tuple[int, ...]):
        """``(btilde, u_off)`` of the initial-condition construction (module docstring)."""
        if self.ic_mode == "residual":
            return basis, torch.zeros(basis.shape[:1] + basis.shape[2:], dtype=basis.dtype, device=basis.device)
        nt = grid_shape[0]
        if self.physics.zero_mean:
            basis = basis - basis.mean(dim=tuple(range(3, basis.ndim)), keepdim=True)
        ramp = torch.linspace(0.0, 1.0, nt, dtype=basis.dtype, device=basis.device)
        basis = basis * ramp.view(1, 1, nt, *([1] * (basis.ndim - 3)))
        offset = u0.unsqueeze(1).expand(u0.shape[0], nt, *u0.shape[1:])
        return basis, offset

    # -- the constraint ---------------------------------------------------------------------------
    def _layout(self, grid_shape: tuple[int, ...], device) -> dict[str, Any]:
        """Expert labels, each expert's candidate points, boundary and initial-time rows (cached per grid)."""
        key = (grid_shape, str(device))
        if key in self._layout_cache:
            return self._layout_cache[key]
        labels = expert_labels(grid_shape, self.experts, device)
        flat = labels.flatten()
        initial = torch.zeros(grid_shape, dtype=torch.bool, device=device)
        initial[0] = True
        boundary = self.physics.boundary_mask(grid_shape, device)
        boundary = torch.zeros_like(initial) if boundary is None else boundary & ~initial
        candidates = []
        for k in range(self.n_experts):
            free = (flat == k) & ~initial.flatten() & ~boundary.flatten()
            candidates.append(free.nonzero().squeeze(-1))
        _check_candidates(candidates, grid_shape, self.experts)
        boundary_index = boundary.flatten().nonzero().squeeze(-1)
        initial_index = initial.flatten().nonzero().squeeze(-1)
        experts = torch.arange(self.n_experts, device=device)[:, None]
        own_boundary = (flat[boundary_index][None, :] == experts) | self.shared_rows
        own_initial = (flat[initial_index][None, :] == experts) | self.shared_rows
        layout = {
            "labels": labels,
            "candidates": candidates,
            "boundary_index": boundary_index,
            "initial_index": initial_index,
            "boundary_weight": _row_weights(own_boundary, self.boundary_weight),
            "initial_weight": _row_weights(own_initial, self.ic_weight),
        }
        self._layout_cache[key] = layout
        return layout

    def _sample(self, layout: dict[str, Any], batch: int, n_points: int, device) -> torch.Tensor:
        """``(B, K, m)`` flat indices: ``m = n_points // K`` random points of each expert's candidates.

        In training every sample draws its own points. In evaluation the points are drawn once from
        ``eval_seed`` and shared by the samples of the batch, so that a sample's prediction does not depend on
        the batch it is in (its size, its other samples, its position: the service batches requests)."""
        candidates = layout["candidates"]
        m = max(1, min(n_points // self.n_experts, min(c.numel() for c in candidates)))
        generator = None
        if not self.training:
            generator = torch.Generator(device=device).manual_seed(self.eval_seed)
        rows = batch if self.training else 1
        picks = []
        for cand in candidates:
            keys = torch.rand(rows, cand.numel(), generator=generator, device=device)
            picks.append(cand[keys.topk(m, dim=1).indices].expand(batch, m))
        return torch.stack(picks, dim=1)

    def _hard(self, basis, offset, u0, grid_shape, n_points) -> HardConstraintOutput:
        B, N = basis.shape[:2]
        K, device, dtype = self.n_experts, basis.device, basis.dtype
        layout = self._layout(grid_shape, device)
        points = self._sample(layout, B, n_points, device)  # (B, K, m)
        m = points.shape[-1]
        rows = torch.cat([points, layout["boundary_index"].expand(B, K, -1)], dim=-1)  # (B, K, m + nb)
        nb = layout["boundary_index"].numel()
        row_weight = torch.cat(
            [torch.full((K, m), 1.0 / math.sqrt(m), dtype=dtype, device=device), layout["boundary_weight"].to(dtype)],
            dim=-1,
        ).expand(B, K, m + nb)

        linear = self.physics.linear_terms(basis)  # name -> (B, N, T, *S)
        offsets = self.physics.linear_terms(offset) if self.ic_mode == "exact" else {}
        constants = self.physics.constant_terms(grid_shape, dtype, device)
        flat_rows = rows.reshape(B, -1)
        names, values = [], []
        for name in self.physics.term_names:
            term = linear[name].flatten(2)  # (B, N, G)
            gathered = term.gather(2, flat_rows[:, None, :].expand(B, N, -1))  # (B, N, K*(m+nb))
            values.append(gathered.view(B, N, K, -1).permute(0, 2, 3, 1).reshape(B * K, -1, N))
            names.append(name)
        offset_names, offset_values = [], []
        for name in sorted(set(offsets) | set(constants)):
            total = torch.zeros(B, *grid_shape, dtype=dtype, device=device)
            if name in offsets:
                total = total + offsets[name]
            if name in constants:
                total = total + constants[name]
            offset_values.append(total.flatten(1).gather(1, flat_rows).view(B * K, -1))
            offset_names.append(name)
        params = [*values, *offset_values, row_weight.reshape(B * K, -1)]

        if self.ic_mode == "residual":
            init = layout["initial_index"]
            ic_basis = basis.flatten(2)[:, :, init]  # (B, N, ni)
            ic_basis = ic_basis[:, None].expand(B, K, N, -1).permute(0, 1, 3, 2).reshape(B * K, -1, N)
            target = u0.flatten(1)[:, None, :].expand(B, K, -1).reshape(B * K, -1)
            ic_w = layout["initial_weight"].to(dtype)[None].expand(B, K, -1).reshape(B * K, -1)
            params += [ic_basis, target, ic_w]

        residual, jacobian, curvature = self._residual_functions(names, offset_names)
        w0 = torch.full((B * K, N), self.w_init, dtype=dtype, device=device)
        result = solve_least_squares(
            residual, w0, params, jacobian=jacobian, hessian=self.hessian, curvature=curvature,
            **self.solver_options,
        )
        w = result.w.view(B, K, N)
        labels = layout["labels"]
        parts = [
            torch.einsum("bnp,bn->bp", piece, w[:, k])
            for k, piece in enumerate(partition(basis, labels))
        ]
        solution = offset + assemble(parts, labels)
        return HardConstraintOutput(
            solution.unsqueeze(1), w, result.iterations.view(B, K), result.converged.view(B, K),
            result.cost.view(B, K), points,
        )

    def _residual_functions(self, names: list[str], offset_names: list[str]):
        """Batched residual, analytic Jacobian and closed-form curvature (``sum_i r_i grad^2 r_i``, the
        second-order part of the Hessian of ``0.5 ||r||^2``) of the experts' problems over the parameter
        list of :meth:`_hard`."""
        physics, ridge, residual_ic = self.physics, self.ridge, self.ic_mode == "residual"
        n_terms, n_offsets = len(names), len(offset_names)

        def split(params):
            terms = params[:n_terms]
            offs = params[n_terms:n_terms + n_offsets]
            row_w = params[n_terms + n_offsets]
            rest = params[n_terms + n_offsets + 1:]
            return terms, offs, row_w, rest

        def values(w, terms, offs):
            vals = {name: (term @ w.unsqueeze(-1)).squeeze(-1) for name, term in zip(names, terms)}
            for name, off in zip(offset_names, offs):
                vals[name] = vals[name] + off if name in vals else off
            return vals

        def residual(w, *params):
            terms, offs, row_w, rest = split(params)
            pieces = [row_w * physics.pointwise(values(w, terms, offs))]
            if residual_ic:
                ic_basis, target, ic_w = rest
                pieces.append(ic_w * ((ic_basis @ w.unsqueeze(-1)).squeeze(-1) - target))
            pieces.append(ridge * w)
            return torch.cat(pieces, dim=-1)

        def partials(w, terms, offs, order):
            """``f_a`` (``order`` 1) or also ``f_ab`` (``order`` 2) of ``pointwise`` at the rows, by name; None where identically 0."""
            with torch.enable_grad():
                vals = values(w, terms, offs)
                leaves = {k: v.detach().requires_grad_(k in names) for k, v in vals.items()}
                out = physics.pointwise(leaves)
                wanted = [leaves[name] for name in names]
                # pointwise is elementwise: the gradient of the sum is each entry's own derivative
                first = torch.autograd.grad(out.sum(), wanted, allow_unused=True, create_graph=order > 1)
                second = {}
                if order > 1:
                    for a, f_a in zip(names, first):
                        if f_a is None or not f_a.requires_grad:
                            continue  # f is linear in term a
                        row = torch.autograd.grad(f_a.sum(), wanted, allow_unused=True, retain_graph=True)
                        for b, f_ab in zip(names, row):
                            if f_ab is not None:
                                second[a, b] = f_ab.detach()
            first = [None if f_a is None else f_a.detach() for f_a in first]
            return out.detach(), first, second

        def jacobian(w, *params):
            terms, offs, row_w, rest = split(params)
            _, first, _ = partials(w, terms, offs, order=1)
            J = 0.0
            for term, f_a in zip(terms, first):
                if f_a is not None:
                    J = J + f_a.unsqueeze(-1) * term
            pieces = [row_w.unsqueeze(-1) * J]
            if residual_ic:
                ic_basis, _, ic_w = rest
                pieces.append(ic_w.unsqueeze(-1) * ic_basis)
            n = w.shape[-1]
            pieces.append(ridge * torch.eye(n, dtype=w.dtype, device=w.device).expand(w.shape[0], n, n))
            return torch.cat(pieces, dim=1)

        def curvature(w, *params):
            # sum_i r_i grad^2 r_i: only the PDE rows r_i = rho_i f(v_i) are nonlinear in w, with
            # v_a = T_a w + offset: grad^2 r_i = rho_i sum_ab f_ab(v_i) t_ai t_bi^T.
            terms, offs, row_w, _ = split(params)
            f, _, second = partials(w, terms, offs, order=2)
            H = torch.zeros(w.shape[0], w.shape[1], w.shape[1], dtype=w.dtype, device=w.device)
            index = {name: i for i, name in enumerate(names)}
            for (a, b), f_ab in second.items():
                if index[b] < index[a]:
                    continue  # the symmetric pair is added with the transpose below
                coefficient = row_w * row_w * f * f_ab  # (P, m)
                block = terms[index[a]].transpose(1, 2) @ (coefficient.unsqueeze(-1) * terms[index[b]])
                H = H + (block if a == b else block + block.transpose(1, 2))
            return H

        return residual, jacobian, curvature


def _check_candidates(candidates: list[torch.Tensor], grid_shape: tuple[int, ...], experts: list[int]) -> None:
    """Raise ``ValueError`` when an expert's box holds no point for PDE rows (all of it initial time or boundary)."""
    empty = [k for k, c in enumerate(candidates) if c.numel() == 0]
    if empty:
        raise ValueError(
            f"experts {empty} of the partition {experts} of the grid {list(grid_shape)} hold no PDE residual point "
            f"(their boxes lie on the initial time or the boundary only): use fewer experts or a finer grid"
        )


def _row_weights(own: torch.Tensor, weight: float) -> torch.Tensor:
    """Rows owned by an expert get ``weight / sqrt(count owned)``, the others 0; ``own`` is ``(K, rows)`` bool."""
    count = own.sum(-1, keepdim=True).clamp_min(1)
    return own.to(torch.float64) * (weight / count.to(torch.float64).sqrt())
