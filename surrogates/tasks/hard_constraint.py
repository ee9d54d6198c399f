"""Physics-informed training of hard-constraint (and soft-constraint) space-time operators.

The model (:class:`~surrogates.models.hc_moe.HardConstraintMoE`) predicts a whole trajectory
``u (B, 1, T, *spatial)`` from the initial state. As in the paper's experiments, the training loss
is physics-informed:

    loss = pde_weight * rms(r(u))  +  ic_weight * rms(u(t=0) - u0)  +  data_weight * relL2(u, u_ref),

where ``r`` is the PDE's residual (:mod:`surrogates.pdes`) of the *assembled* prediction on the whole
grid after the initial time (its derivatives cross the expert boundaries, so jumps between experts
are penalized), ``u0`` is the input's initial state (the initial-condition error is absolute: a
relative one explodes for PDEBench's diffusion-sorption states near zero) and ``u_ref`` the
dataset's trajectory.
``data_weight = 0`` (default) trains without solution data, as the paper does; the reference
trajectories are then only used for validation and testing. For the hard constraint the residual is
also minimized inside the model, at the sampled points, for every prediction; for the soft
constraint (``constraint="soft"``) the loss is its only appearance.

Metrics: relative L2 and H1 over the whole space-time trajectory (``val/rel_l2``, ``test/rel_l2``),
the residual (``*/pde_residual``) and the solver's iterations (``train/lm_iterations``).
The checkpoint has the layout of :class:`~surrogates.tasks.operator_regression.OperatorRegression`'s,
so :class:`surrogates.Surrogate` loads it; the saved model's normalizers (``task.model``, a
:class:`~surrogates.models.normalized.NormalizedOperator`) keep their identity statistics (mean 0,
std 1): the network normalizes its backbone's input itself and needs the initial state in physical
units. The physics losses and validation call ``net.solve`` on the physical inputs, for the residual and
the solver's iterations that ``forward`` does not return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from surrogates import metrics
from surrogates.models.hc_moe import HardConstraintMoE
from surrogates.tasks.operator_regression import VALIDATION_METRICS, OperatorRegression

__all__ = ["HardConstraintTask"]


class HardConstraintTask(OperatorRegression):
    """Lightning task for :class:`~surrogates.models.hc_moe.HardConstraintMoE` (module docstring).

    Parameters
    ----------
    net
        The model.
    optimizer, scheduler
        Partial constructors, as for :class:`OperatorRegression`.
    pde_weight, ic_weight, data_weight
        Weights of the loss terms.
    """

    eval_metric_names = (*VALIDATION_METRICS, "pde_residual", "loss")

    def __init__(
        self,
        net: HardConstraintMoE,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        pde_weight: float = 1.0,
        ic_weight: float = 1.0,
        data_weight: float = 0.0,
    ):
        if not isinstance(net, HardConstraintMoE):
            raise TypeError(f"net must be a HardConstraintMoE, got {type(net).__name__}")
        super().__init__(net, optimizer, scheduler, loss="rel_l2")
        self.pde_weight, self.ic_weight, self.data_weight = float(pde_weight), float(ic_weight), float(data_weight)

    # -- data -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Give the network the training split's input statistics; keep the saved model's normalizers the identity."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or stage != "fit":
            return
        if datamodule.in_channels != self.net.init_kwargs["in_channels"] or datamodule.out_channels != 1:
            raise ValueError(
                f"the model maps {self.net.init_kwargs['in_channels']} -> 1 channels but the data has "
                f"{datamodule.in_channels} input and {datamodule.out_channels} target channels"
            )
        self.net.input_normalizer.load_state_dict(datamodule.input_normalizer.state_dict())
        self.data_schema = datamodule.data_schema()
        self._check_time_axis()

    def _check_time_axis(self) -> None:
        """The model's ``final_time`` must be the data's last stored time."""
        schema = self.data_schema
        if schema is None or schema.spatial_dims[:1] != ("time",):
            raise ValueError(
                "the hard-constraint task needs whole trajectories (time as the first grid axis); "
                "use surrogates.data.space_time.SpaceTimeDataModule"
            )
        last = schema.coords["time"].max if "time" in schema.coords else None
        final = getattr(self.net.physics, "final_time", None)
        if final is not None and last is not None and abs(last - final) > 1e-6 * max(1.0, final):
            raise ValueError(
                f"the model's pde_params.final_time is {final} but the data's last time is {last}; "
                "set model.pde_params.final_time to match"
            )

    # -- losses -----------------------------------------------------------------------------------
    def _losses(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        out = self.net.solve(batch["x"])
        u = out.solution[:, 0]  # (B, T, *spatial), float64
        residual = self.net.physics.residual(u)[:, 1:]
        pde = _rms(residual).mean()
        u0 = batch["x"][:, 0, 0].to(u.dtype)
        ic = _rms(u[:, 0] - u0).mean()
        target = batch["y"][:, 0].to(u.dtype)
        data = ((u - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()
        losses = {"pde": pde, "ic": ic, "data": data}
        losses["loss"] = self.pde_weight * pde + self.ic_weight * ic + self.data_weight * data
        return losses, out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses, out = self._losses(batch)
        size = batch["x"].shape[0]
        self.log("train/loss", losses["loss"].float(), prog_bar=True, batch_size=size, sync_dist=True)
        for name in ("pde", "ic", "data"):
            self.log(f"train/{name}", losses[name].float(), batch_size=size)
        if out.iterations is not None:
            self.log("train/lm_iterations", out.iterations.float().mean(), batch_size=size)
        return losses["loss"].float()

    def _errors(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses, out = self._losses(batch)
        pred = out.solution.to(batch["y"].dtype)
        spacing, periodic = self._grid(pred.shape[2:])
        errors = {name: metrics.compute_metric(name, pred, batch["y"], spacing, periodic) for name in VALIDATION_METRICS}
        errors["pde_residual"] = losses["pde"].float()
        errors["loss"] = losses["loss"].float()
        return errors


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square per sample; finite gradient at 0 (the exact initial condition makes the IC error 0)."""
    return (x.pow(2).flatten(1).mean(1) + 1e-30).sqrt()
