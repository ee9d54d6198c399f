"""What a task writes into its Lightning checkpoints, through :mod:`surrogates.checkpoint`.

Every task calls :func:`save_metadata` from ``on_save_checkpoint`` and :func:`load_metadata` from
``on_load_checkpoint``, so a training checkpoint always carries checked, typed metadata
(:class:`~surrogates.checkpoint.CheckpointMetadata`) and a resumed or tested run refuses a file whose
metadata is not valid. Normalization statistics are not metadata: they are buffers of the task's saved
model (:mod:`surrogates.models.normalized`) and travel in the ``state_dict``. :func:`load_metadata`
migrates an older file in place first, so that Lightning restores its ``state_dict`` in the current layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from surrogates import __version__
from surrogates.checkpoint import METADATA_KEY, CheckpointMetadata, ClassSpec, migrate_checkpoint
from surrogates.checkpoint.registry import task_name
from surrogates.schema import DataSchema

__all__ = ["load_metadata", "save_metadata"]


def save_metadata(
    task: L.LightningModule,
    checkpoint: dict[str, Any],
    kind: str,
    data_schema: DataSchema | None,
    conditioning: Mapping[str, Sequence[Any]] | None = None,
    problem: ClassSpec | None = None,
) -> None:
    """Store the task's :class:`CheckpointMetadata` in ``checkpoint`` (the dict Lightning is saving).

    The network is ``task.net``; the metrics at save time are the trainer's finite callback metrics.
    """
    metadata = CheckpointMetadata(
        kind=kind,
        model=ClassSpec.from_dict(task.net.init_config(), "model"),
        data_schema=data_schema,
        conditioning=dict(conditioning) if conditioning is not None else None,
        problem=problem,
        task=task_name(task),
        training=_training(task),
        package_version=__version__,
    )
    checkpoint[METADATA_KEY] = metadata.to_dict()


def load_metadata(checkpoint: dict[str, Any]) -> CheckpointMetadata:
    """The checked metadata of a checkpoint Lightning is loading (``CheckpointError`` when invalid).

    ``checkpoint`` of an older format is migrated in place (:func:`~surrogates.checkpoint.migrate_checkpoint`:
    metadata and ``state_dict``): Lightning calls ``on_load_checkpoint`` before it loads the ``state_dict``,
    so resuming or testing from a format-1 or format-2 file restores the current layout.
    """
    checkpoint.update(migrate_checkpoint(checkpoint))
    return CheckpointMetadata.from_dict(checkpoint.get(METADATA_KEY))


def _training(task: L.LightningModule) -> dict[str, Any]:
    """Epoch, step and the finite scalar metrics the trainer holds (empty outside a trainer)."""
    if task._trainer is None:
        return {}
    trainer = task.trainer
    metrics = {}
    for name, value in trainer.callback_metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            metrics[str(name)] = number
    return {"epoch": int(trainer.current_epoch), "global_step": int(trainer.global_step), "metrics": metrics}
