"""Operator checkpoints (FNO, MgNO, U-Net ...): input fields in, output fields out, micro-batched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from surrogates.schema import Variable
from surrogates.serve.entries import ModelEntry, ResolutionRule
from surrogates.serve.loaders.common import training_metrics


def load_operator_checkpoint(path: Path, name: str, device: str, surrogate: Any = None) -> ModelEntry:
    """A neural operator through :class:`~surrogates.serve.surrogate.Surrogate`: its inputs and targets as
    fields on the spatial dims of its data schema (scalars allowed as inputs).

    The grids it takes: a rule recorded in the checkpoint (``CheckpointMetadata.serving["resolution"]``),
    else the model class's ``resolution_rule``, else any grid.
    ``surrogate``: the file's ``Surrogate`` when the caller has loaded it already.
    """
    import torch

    from surrogates.serve.surrogate import Surrogate

    surrogate = surrogate or Surrogate.load(path, device=device)
    schema = surrogate.schema
    spatial = list(surrogate.spatial_dims)

    def variable(name: str) -> Variable:
        known = schema.variables.get(name)
        dims = schema.sample_dims(name) if known else tuple(spatial)
        return Variable(name, dims, known.units if known else "1", known.long_name if known else "")

    target_names = surrogate.targets
    inputs = [variable(v) for v in surrogate.inputs]
    outputs = [variable(v) for v in target_names]
    for var in inputs + outputs:
        if var.dims not in ((), tuple(spatial)):
            raise ValueError(f"variable {var.name!r} has dims {var.dims}; the service serves fields on {tuple(spatial)} or scalars")
    if not any(var.dims for var in inputs):
        raise ValueError("the model takes no field input; the service cannot tell the output grid")
    trained = tuple(schema.spatial_shape) or None
    serving = surrogate.metadata.get("serving")  # CheckpointMetadata.serving, e.g. {"resolution": "fixed"}
    record = serving.get("resolution") if isinstance(serving, dict) else None
    record = record if record is not None else getattr(surrogate.model, "resolution_rule", None)
    resolution = ResolutionRule.from_record(record, trained)

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # the service hands at most max_batch_size samples (ModelEntry.chunked): one call of the network
        y = surrogate.predict_checked(torch.from_numpy(x), batch_size=max(len(x), 1)).numpy()  # prepare checked x
        return {name: y[:, k] for k, name in enumerate(target_names)}, {}

    return ModelEntry(
        name=name,
        kind="surrogate",
        source=str(path),
        pde=schema.pde or None,
        description=f"{type(surrogate.model).__name__} checkpoint",
        inputs=inputs,
        outputs=outputs,
        spatial_dims=spatial,
        data_schema=schema,
        resolution=resolution,
        batchable=True,
        chunked=True,
        device=str(surrogate.device),
        metrics=training_metrics(path, surrogate.metadata),
        model_config=surrogate.model.init_config(),
        runner=run,
    )
