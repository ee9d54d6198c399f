"""Autoregressive training of one-step models: PDE-Refiner and its MSE-trained U-Net baseline.

The task trains a :class:`~surrogates.models.pde_refiner.PDERefiner` on pairs
``u[s, i] -> u[s, i + 1]`` (:class:`~surrogates.data.autoregressive.AutoregressiveDataModule`) with
the model's own objective (``num_refinement_steps = 0``: one-step MSE; ``K > 0``: the PDE-Refiner
loss), in normalized units: states are normalized with the training split's per-channel mean and
std, conditioning parameters divided by their training mean. Validation and test report one-step
errors of the full prediction (``K + 1`` evaluations) in physical units (``*/mse``, ``*/rel_l2``),
with refinement noise drawn from a fixed seed. :meth:`Autoregressive.rollout` rolls trajectories out.

The checkpoint is self-describing (model constructor, normalization, conditioning scale, data schema,
version, ``kind = "rollout"``): :class:`surrogates.serve.rollout.RolloutSurrogate` loads it without
Hydra or Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from surrogates import metrics
from surrogates.data.normalization import Normalizer
from surrogates.models.pde_refiner import ROLLOUT_KIND, PDERefiner
from surrogates.tasks.checkpointing import load_metadata, save_metadata, statistics
from surrogates.tasks.optimization import optimizer_config

__all__ = ["Autoregressive", "ROLLOUT_KIND"]


class Autoregressive(L.LightningModule):
    """Train a one-step model ``u(t), params -> u(t + dt)`` for autoregressive rollouts.

    Parameters
    ----------
    net
        A :class:`~surrogates.models.pde_refiner.PDERefiner` (``num_refinement_steps = 0`` for the
        MSE baseline).
    optimizer
        Partial constructor taking the parameters (Hydra ``_partial_: true``).
    scheduler
        Optional partial constructor taking the optimizer; stepped once per epoch.
    eval_seed
        Seed of the refinement noise in validation and test (batch ``b`` uses ``eval_seed + b``).
    """

    def __init__(
        self,
        net: PDERefiner,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        eval_seed: int = 0,
    ):
        super().__init__()
        if not isinstance(net, PDERefiner):
            raise TypeError(f"net must be a PDERefiner (num_refinement_steps=0 for the MSE baseline), got {type(net).__name__}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.state_normalizer = Normalizer(net.in_channels)
        self.register_buffer("param_scale", torch.ones(net.n_params))
        self.conditioning: list[str] = []
        self.data_schema: dict[str, Any] | None = None

    # -- data -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take the statistics, conditioning names and data schema from the trainer's data module."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or stage != "fit":
            return
        if datamodule.in_channels != self.net.in_channels or len(datamodule.conditioning) != self.net.n_params:
            raise ValueError(
                f"the model takes {self.net.in_channels} state channel(s) and {self.net.n_params} parameter(s); the data "
                f"has {datamodule.in_channels} state variable(s) {datamodule.inputs} and conditioning {datamodule.conditioning}"
            )
        self.state_normalizer.load_state_dict(datamodule.state_normalizer.state_dict())
        self.param_scale.copy_(torch.as_tensor(datamodule.param_scale, dtype=self.param_scale.dtype))
        self.conditioning = list(datamodule.conditioning)
        self.data_schema = datamodule.data_schema()

    def encode_params(self, params: torch.Tensor | None) -> torch.Tensor | None:
        """Parameters ``(B, P)`` in physical units -> the model's scaled parameters."""
        if self.net.n_params == 0:
            return None
        return params.to(self.param_scale.dtype) / self.param_scale

    # -- prediction -------------------------------------------------------------------------------
    def forward(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The next state in physical units, ``(B, C, *spatial)``."""
        pred = self.net.predict(self.state_normalizer.encode(state), self.encode_params(params), generator)
        return self.state_normalizer.decode(pred)

    @torch.no_grad()
    def rollout(
        self,
        state: torch.Tensor,
        steps: int,
        params: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``steps`` predictions from ``state`` ``(B, C, *spatial)`` in physical units: ``(B, steps, C, *spatial)``."""
        out = self.net.rollout(self.state_normalizer.encode(state), steps, self.encode_params(params), generator)
        return self.state_normalizer.decode(out.flatten(0, 1)).view(out.shape)

    # -- steps ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net.loss(
            self.state_normalizer.encode(batch["x"]),
            self.state_normalizer.encode(batch["y"]),
            self.encode_params(batch.get("params")),
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])
        return loss

    def _log_errors(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        generator = torch.Generator(device=batch["x"].device).manual_seed(self.hparams.eval_seed + batch_idx)
        pred = self(batch["x"], batch.get("params"), generator)
        size = batch["x"].shape[0]
        self.log(f"{stage}/mse", (pred - batch["y"]).pow(2).mean(), batch_size=size)
        self.log(f"{stage}/rel_l2", metrics.relative_l2(pred, batch["y"]).mean(), prog_bar=True, batch_size=size)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("val", batch, batch_idx)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("test", batch, batch_idx)

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.parameters(), self.optimizer_factory, self.scheduler_factory)

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-describing (see the module docstring)."""
        stats = statistics(self.state_normalizer)
        conditioning = {"names": list(self.conditioning), "scale": self.param_scale.tolist()}
        # input and target are the same state variables
        save_metadata(self, checkpoint, ROLLOUT_KIND, {"input": stats, "target": stats}, self.data_schema, conditioning)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = load_metadata(checkpoint)
        self.data_schema = meta.data_schema
        self.conditioning = list((meta.conditioning or {}).get("names", []))
