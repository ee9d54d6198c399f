"""Autoregressive training of one-step models: PDE-Refiner and its MSE-trained U-Net baseline.

The task trains a :class:`~surrogates.models.pde_refiner.PDERefiner` on pairs
``u[s, i] -> u[s, i + 1]``, or on time windows of ``n_steps_input`` states -> the next ``n_steps_output``
(the model's and the data's window must agree; rollouts then move the window on by ``n_steps_output``),
(:class:`~surrogates.data.autoregressive.AutoregressiveDataModule`) with
the model's own objective (``num_refinement_steps = 0``: one-step MSE; ``K > 0``: the PDE-Refiner
loss), in normalized units: states are normalized with the training split's per-channel mean and
std, conditioning parameters divided by their training mean. Validation and test report one-step
errors of the full prediction (``K + 1`` evaluations) in physical units (``*/mse``, ``*/rel_l2``),
with refinement noise drawn from a fixed seed. :meth:`Autoregressive.rollout` rolls trajectories out.

The task holds the saved model, :attr:`Autoregressive.model`, a
:class:`~surrogates.models.normalized.NormalizedStepper` (network, state normalizer, parameter scale:
normalize -> network -> denormalize); training, validation and rollouts go through it. The checkpoint is
self-describing (model constructor, conditioning names, data schema, version, ``kind = "rollout"``; the
statistics are buffers of the model, in the ``state_dict``): :class:`surrogates.serve.rollout.RolloutSurrogate`
loads it without Hydra or Lightning.

The weight average (``ema_decay > 0``) averages the network only (``ema.module.*`` in the checkpoint); it
predicts inside the same normalization (:meth:`NormalizedStepper.with_network`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from surrogates import metrics
from surrogates.models.normalized import NormalizedStepper
from surrogates.models.pde_refiner import ROLLOUT_KIND, PDERefiner
from surrogates.tasks.checkpointing import load_metadata, save_metadata
from surrogates.tasks.optimization import optimizer_config
from surrogates.tasks.reduction import EvaluationMeans, SampleMeans
from surrogates.schema import DataSchema

__all__ = ["Autoregressive", "ROLLOUT_KIND"]


class Autoregressive(EvaluationMeans, L.LightningModule):
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
    ema_decay
        Decay of an exponential moving average of the weights, updated after every optimizer step
        and used for validation, test and the saved model (as in PDE-Refiner's reference code);
        0 turns it off.
    rollout_trajectories
        Validation trajectories rolled out from their first state at every validation, scored by
        their high-correlation time (``val/high_corr_time``, in the units of the ``dt`` conditioning
        when there is one, else in steps), so that the best checkpoint can be chosen by rollout
        quality rather than one-step error; 0 turns it off.
    rollout_threshold
        Correlation threshold of ``val/high_corr_time``.
    """

    def __init__(
        self,
        net: PDERefiner,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        eval_seed: int = 0,
        ema_decay: float = 0.0,
        rollout_trajectories: int = 0,
        rollout_threshold: float = 0.8,
    ):
        super().__init__()
        if not isinstance(net, PDERefiner):
            raise TypeError(f"net must be a PDERefiner (num_refinement_steps=0 for the MSE baseline), got {type(net).__name__}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if rollout_trajectories < 0:
            raise ValueError(f"rollout_trajectories must be >= 0, got {rollout_trajectories}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.model = NormalizedStepper(net)
        # The average (of the network) is a module of the task, so it is saved, resumed and moved with it.
        self.ema = None
        if ema_decay > 0:
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.conditioning: list[str] = []
        self.data_schema: DataSchema | None = None
        # validation trajectories of the rollout metric (CPU), read once per fit
        self._rollout_reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self._means = {stage: SampleMeans(("mse", "rel_l2")) for stage in ("val", "test")}
        # optimizer steps when the current training batch started (the average follows steps, not batches)
        self._steps_before_batch: int | None = None

    @property
    def net(self) -> PDERefiner:
        """The trained network inside :attr:`model` (on normalized states)."""
        return self.model.net

    # -- data -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take the statistics, conditioning names and data schema from the trainer's data module."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or stage != "fit":
            return
        self._rollout_reference = None
        if datamodule.in_channels != self.net.in_channels or len(datamodule.conditioning) != self.net.n_params:
            raise ValueError(
                f"the model takes {self.net.in_channels} state channel(s) and {self.net.n_params} parameter(s); the data "
                f"has {datamodule.in_channels} state variable(s) {datamodule.inputs} and conditioning {datamodule.conditioning}"
            )
        window = (getattr(datamodule, "n_steps_input", 1), getattr(datamodule, "n_steps_output", 1))
        if window != (self.net.n_steps_input, self.net.n_steps_output):
            raise ValueError(
                f"the model maps windows of {self.net.n_steps_input} -> {self.net.n_steps_output} states; the data gives "
                f"{window[0]} -> {window[1]} (set model.n_steps_input / n_steps_output like data.n_steps_input / n_steps_output)"
            )
        self.model.state_normalizer.load_state_dict(datamodule.state_normalizer.state_dict())
        param_scale = self.model.param_scale
        param_scale.copy_(torch.as_tensor(datamodule.param_scale, dtype=param_scale.dtype))
        self.conditioning = list(datamodule.conditioning)
        self.data_schema = datamodule.data_schema()

    # -- prediction -------------------------------------------------------------------------------
    def forward(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The next state in physical units, ``(B, C, *spatial)`` (:attr:`evaluated_model`)."""
        return self.evaluated_model.predict(state, params, generator)

    @property
    def evaluated_net(self) -> PDERefiner:
        """The network that predicts outside training: the weight average when there is one."""
        return self.ema.module if self.ema is not None and not self.training else self.net

    @property
    def evaluated_model(self) -> NormalizedStepper:
        """:attr:`model`, or outside training with a weight average, the average in the same normalization."""
        net = self.evaluated_net
        return self.model if net is self.net else self.model.with_network(net)

    @torch.no_grad()
    def rollout(self, state: torch.Tensor, steps: int, params: torch.Tensor | None = None, generator: Any = None) -> torch.Tensor:
        """``steps`` predictions from ``state`` ``(B, C, *spatial)`` (with a time window the first ``n_steps_input``
        states, ``(B, n_steps_input C, *spatial)``, :meth:`NormalizedStepper.initial_window`) in physical units:
        ``(B, steps, C, *spatial)``."""
        return self.evaluated_model.rollout(state, steps, params, generator)

    # -- steps ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(batch["x"], batch["y"], batch.get("params"))
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0], sync_dist=True)
        return loss

    def _log_errors(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        generator = torch.Generator(device=batch["x"].device).manual_seed(self.hparams.eval_seed + batch_idx)
        pred = self(batch["x"], batch.get("params"), generator)
        size = batch["x"].shape[0]
        errors = {"mse": (pred - batch["y"]).pow(2).flatten(1).mean(1), "rel_l2": metrics.relative_l2(pred, batch["y"])}
        self._means[stage].update(errors, size)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._steps_before_batch = self.trainer.global_step if self._trainer is not None else None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the weight average after a batch that stepped the optimizer.

        With gradient accumulation (``trainer.accumulate_grad_batches > 1``) most batches only add
        gradients; averaging after them too would apply the decay several times per step, to
        unchanged weights. Called outside a trainer, every call counts as a step.
        """
        if self.ema is None:
            return
        before = self._steps_before_batch
        if before is None or self.trainer.global_step > before:
            self.ema.update_parameters(self.net)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("val", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        """Log the one-step means; roll out the first ``rollout_trajectories`` validation trajectories and log
        ``val/high_corr_time`` (every process rolls out the same ones)."""
        super().on_validation_epoch_end()
        n = self.hparams.rollout_trajectories
        datamodule = getattr(self.trainer, "datamodule", None)
        if n == 0 or not hasattr(datamodule, "dataset"):
            return
        if self._rollout_reference is None:  # the same trajectories every validation: read (and checked) once
            dataset = datamodule.dataset("val", pairs=False)
            try:
                self._rollout_reference = dataset.trajectories(range(min(n, dataset.n_trajectories)))
            finally:
                dataset.close()
        states, params = self._rollout_reference
        states = states.to(self.device, torch.float32)
        params = params.to(self.device, torch.float32) if self.conditioning else None
        generator = torch.Generator(device=self.device).manual_seed(self.hparams.eval_seed)
        n_in = self.model.n_steps_input
        pred = self.rollout(self.model.initial_window(states), states.shape[1] - n_in, params, generator)
        dt = params[:, self.conditioning.index("dt")] if params is not None and "dt" in self.conditioning else 1.0
        times = metrics.high_correlation_time(pred.double(), states[:, n_in:].double(), dt, self.hparams.rollout_threshold)
        self.log("val/high_corr_time", times.mean().float(), prog_bar=True, batch_size=len(times))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("test", batch, batch_idx)

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.parameters(), self.optimizer_factory, self.scheduler_factory)

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-describing (see the module docstring)."""
        save_metadata(self, checkpoint, ROLLOUT_KIND, self.data_schema, {"names": list(self.conditioning)})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = load_metadata(checkpoint)
        self.data_schema = meta.data_schema
        self.conditioning = list((meta.conditioning or {}).get("names", []))
