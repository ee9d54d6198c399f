"""Supervised operator regression: learn the map from input fields to target fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from surrogates import metrics
from surrogates.models.base import OperatorModel
from surrogates.models.normalized import NormalizedOperator
from surrogates.tasks.checkpointing import load_metadata, save_metadata
from surrogates.tasks.optimization import optimizer_config
from surrogates.tasks.reduction import EvaluationMeans, SampleMeans
from surrogates.schema import DataSchema

LOSSES = ("rel_l2", "rel_h1")
"""Metrics of :mod:`surrogates.metrics` that can serve as the training loss."""

VALIDATION_METRICS = ("rel_l2", "rel_h1")
"""Metrics logged as ``val/<name>`` and ``test/<name>``: means over the split's samples (every process's)."""


class OperatorRegression(EvaluationMeans, L.LightningModule):
    """Train a neural operator on (input field, target field) pairs.

    The task holds the saved model, :attr:`model` (a
    :class:`~surrogates.models.normalized.NormalizedOperator`: inputs normalized with per-channel
    statistics of the training split, the network predicting normalized targets, decoded to physical
    units); losses and metrics are computed on its physical outputs. The model (statistics included,
    as buffers) and the data schema are saved in every checkpoint, so that :class:`surrogates.Surrogate`
    calls the same module without the data module.

    Parameters
    ----------
    net
        The operator, an :class:`~surrogates.models.base.OperatorModel` mapping
        ``(B, C_in, *spatial) -> (B, C_out, *spatial)``.
    optimizer
        Partial constructor taking the parameters (Hydra ``_partial_: true``).
    scheduler
        Optional partial constructor taking the optimizer; stepped once per epoch.
    loss
        ``"rel_l2"`` (relative L2, the FNO paper's loss) or ``"rel_h1"`` (relative H1).
    """

    def __init__(
        self,
        net: OperatorModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss: str = "rel_l2",
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
        if not isinstance(net, OperatorModel):
            raise TypeError(f"net must be an OperatorModel (it records its constructor), got {type(net).__name__}")
        # Optimizer factories are not plain data; keep them out of the checkpoint's hyperparameters.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.model = NormalizedOperator(net)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.data_schema: DataSchema | None = None
        self._means = {stage: SampleMeans(self.eval_metric_names) for stage in ("val", "test")}

    eval_metric_names: tuple[str, ...] = VALIDATION_METRICS
    """The keys of :meth:`_errors`."""

    @property
    def net(self) -> OperatorModel:
        """The network inside :attr:`model` (on normalized fields)."""
        return self.model.net

    # -- data -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take normalization statistics and the data schema from the trainer's data module."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or stage != "fit":
            return
        expected = (self.net.init_kwargs["in_channels"], self.net.init_kwargs["out_channels"])
        if (datamodule.in_channels, datamodule.out_channels) != expected:
            raise ValueError(
                f"the model maps {expected[0]} -> {expected[1]} channels but the data has "
                f"{datamodule.in_channels} input and {datamodule.out_channels} target channels"
            )
        self.model.input_normalizer.load_state_dict(datamodule.input_normalizer.state_dict())
        self.model.target_normalizer.load_state_dict(datamodule.target_normalizer.state_dict())
        self.data_schema = datamodule.data_schema()

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Targets ``(B, C_out, *spatial)`` from inputs ``(B, C_in, *spatial)``, both in physical units: the saved
        model :attr:`model` (:meth:`NormalizedOperator.forward <surrogates.models.normalized.NormalizedOperator.forward>`)."""
        return self.model(x)

    def _grid(self, shape: torch.Size) -> tuple[list[float] | None, list[bool] | None]:
        """The grid spacing per spatial dim of a grid of ``shape`` and whether each dim wraps around, from the data
        schema, for the grid-aware metrics (``rel_h1``); ``(None, None)`` when unknown: unit step, no dim periodic."""
        if self.data_schema is None:
            return None, None
        return self.data_schema.grid_spacing(tuple(shape)), self.data_schema.periodic_dims(tuple(shape))

    def _errors(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample errors (shape ``(B,)``) or batch means (0-d), keyed by :attr:`eval_metric_names`."""
        pred = self(batch["x"])
        spacing, periodic = self._grid(pred.shape[2:])
        return {name: metrics.compute_metric(name, pred, batch["y"], spacing, periodic) for name in VALIDATION_METRICS}

    # -- steps ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self(batch["x"])
        spacing, periodic = self._grid(pred.shape[2:])
        loss = metrics.compute_metric(self.hparams.loss, pred, batch["y"], spacing, periodic).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_errors("test", batch)

    def _log_errors(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        self._means[stage].update(self._errors(batch), batch["x"].shape[0])

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.parameters(), self.optimizer_factory, self.scheduler_factory)

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-describing: model constructor, data schema, version (the statistics are
        buffers of :attr:`model`, in the ``state_dict``)."""
        save_metadata(self, checkpoint, "operator", self.data_schema)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_schema = load_metadata(checkpoint).data_schema
