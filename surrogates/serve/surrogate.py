"""`Surrogate`: a trained model loaded from its checkpoint alone, predicting on numpy or xarray data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.checkpoint import Checkpoint, read_checkpoint
from surrogates.errors import CheckpointError
from surrogates.models.base import OperatorModel
from surrogates.models.normalized import NormalizedOperator

__all__ = ["CheckpointError", "Surrogate", "checkpoint_metadata", "read_checkpoint"]

KIND_LOADERS = {
    "operator": "surrogates.Surrogate.load(path)",
    "rollout": "surrogates.serve.rollout.RolloutSurrogate.load(path)",
    "pointwise": "surrogates.serve.pointwise.PointwiseSurrogate.load(path)",
}
"""Which loader takes a checkpoint of each kind (named in the error when the wrong one is used)."""


class Surrogate:
    """A neural operator with its normalization and data schema, ready for inference.

    Load with :meth:`load`; no Hydra config or training code is needed: the checkpoint describes
    the model (constructor arguments) and the data it expects, and holds the saved model's weights and
    normalization statistics. Predictions are calls of that saved model, the
    :class:`~surrogates.models.normalized.NormalizedOperator` the training task trained and evaluated.

    Parameters
    ----------
    predictor
        The saved model: network with its input and target normalizers (physical units in and out).
    schema
        The checkpoint's data schema.
    metadata
        What :func:`checkpoint_metadata` reports about the file.
    device
        Where the model runs.

    Examples
    --------
    >>> s = Surrogate.load("outputs/demo/train/checkpoints/best.ckpt")  # doctest: +SKIP
    >>> u = s.predict(a)  # a: (n, 32, 32) numpy array -> u: (n, 32, 32)  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: NormalizedOperator,
        schema: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ):
        if not isinstance(predictor, NormalizedOperator):
            raise TypeError(f"predictor must be a NormalizedOperator, got {type(predictor).__name__}")
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        self.schema = schema
        self.metadata = metadata or {}

    @property
    def model(self) -> OperatorModel:
        """The network inside :attr:`predictor` (on normalized fields; its ``init_kwargs`` describe it)."""
        return self.predictor.net

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Surrogate":
        """Rebuild a surrogate from a training checkpoint (``.ckpt``) of an operator model.

        Raises
        ------
        CheckpointError
            When the file is missing, unreadable, not a surrogates checkpoint, holds another kind of
            model, or its metadata, weights or statistics are invalid (see :mod:`surrogates.checkpoint`).
        """
        return cls.from_checkpoint(read_checkpoint(path), device)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: str | torch.device = "cpu") -> "Surrogate":
        """:meth:`load` on a checkpoint already read by :func:`surrogates.checkpoint.read_checkpoint`."""
        require_kind(checkpoint, "operator")
        predictor = checkpoint.build_predictor()
        return cls(predictor, checkpoint.metadata.data_schema or {}, checkpoint_metadata(checkpoint), device)

    # -- schema -----------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        """Input variable names, one channel each."""
        return list(self.schema.get("inputs", []))

    @property
    def targets(self) -> list[str]:
        """Target variable names, one channel each."""
        return list(self.schema.get("targets", []))

    @property
    def spatial_dims(self) -> list[str]:
        """Names of the spatial dimensions, e.g. ``["x", "y"]``."""
        dims = self.schema.get("spatial_dims")
        if dims is None:
            return [f"dim_{i}" for i in range(self.model.init_kwargs.get("dim", 2))]
        return list(dims)

    # -- prediction -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Predict targets for inputs in physical units.

        Parameters
        ----------
        x
            Inputs, shape ``(B, C_in, *spatial)``.

        Returns
        -------
        torch.Tensor
            Targets, shape ``(B, C_out, *spatial)``, on the input's device.
        """
        self._check_tensor(x)
        outputs = []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].to(self.device, torch.float32)
            outputs.append(self.predictor(chunk).to(x.device))
        return torch.cat(outputs)

    def predict(self, x: Any, batch_size: int = 64) -> Any:
        """Predict targets for a numpy array or an xarray Dataset, returning the same kind.

        Parameters
        ----------
        x
            numpy array of shape ``(*spatial)`` (one sample, one input variable),
            ``(n, *spatial)`` (one input variable) or ``(n, C_in, *spatial)``; or an
            ``xarray.Dataset`` holding the input variables with dims ``("sample", *spatial_dims)``
            (or without ``"sample"`` for one sample).

        Returns
        -------
        numpy array with the input's layout (channel axis ``C_out`` when there are several
        targets), or an ``xarray.Dataset`` of the target variables on the input's coordinates.
        """
        if isinstance(x, np.ndarray):
            return self._predict_numpy(x, batch_size)
        try:
            import xarray as xr
        except ImportError:  # pragma: no cover - xarray is a dependency
            xr = None
        if xr is not None and isinstance(x, xr.Dataset):
            return self._predict_xarray(x, batch_size)
        raise TypeError(f"predict takes a numpy array or an xarray.Dataset, got {type(x).__name__}")

    def _predict_numpy(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        d, c_in, c_out = len(self.spatial_dims), len(self.inputs) or 1, len(self.targets) or 1
        if x.ndim == d and c_in == 1:
            batch, single = x[None, None], True
        elif x.ndim == d + 1 and c_in == 1:
            batch, single = x[:, None], False
        elif x.ndim == d + 1 and c_in > 1:
            batch, single = x[None], True
        elif x.ndim == d + 2 and x.shape[1] == c_in:
            batch, single = x, False
        else:
            raise ValueError(self._layout_message(x.shape))
        pred = self.predict_tensor(torch.as_tensor(np.ascontiguousarray(batch), dtype=torch.float32), batch_size)
        out = pred.cpu().numpy()
        if x.ndim == d + 2 or c_out > 1:
            return out[0] if single else out
        return out[0, 0] if single else out[:, 0]

    def _predict_xarray(self, ds: Any, batch_size: int) -> Any:
        import xarray as xr

        missing = [name for name in self.inputs if name not in ds.data_vars]
        if missing:
            raise ValueError(f"dataset lacks input variable(s) {missing}; it has {sorted(ds.data_vars)}")
        fields = []
        for name in self.inputs:
            var = ds[name]
            time_index = self.schema.get("input_time")
            if "time" in var.dims and "time" not in self.spatial_dims:
                if time_index is None:
                    raise ValueError(f"variable {name!r} has a time dim but the model was trained on no time index")
                var = var.isel(time=time_index)
            expected = [dim for dim in ("sample", *self.spatial_dims) if dim in var.dims]
            if set(var.dims) != set(expected) or not set(self.spatial_dims) <= set(var.dims):
                raise ValueError(
                    f"variable {name!r} has dims {var.dims}; expected ('sample', {', '.join(map(repr, self.spatial_dims))})"
                )
            fields.append(var.transpose(*expected).values)
        has_sample = "sample" in ds[self.inputs[0]].dims
        stacked = np.stack(fields, axis=1 if has_sample else 0)
        if not has_sample:
            stacked = stacked[None]
        pred = self.predict_tensor(torch.as_tensor(stacked, dtype=torch.float32), batch_size).cpu().numpy()
        dims = ("sample", *self.spatial_dims) if has_sample else tuple(self.spatial_dims)
        out_vars = {}
        for k, name in enumerate(self.targets):
            values = pred[:, k] if has_sample else pred[0, k]
            out_vars[name] = xr.DataArray(values, dims=dims, attrs={"long_name": f"predicted {name}"})
        coords = {name: ds.coords[name] for name in dims if name in ds.coords}
        return xr.Dataset(out_vars, coords=coords, attrs={"model_checkpoint": self.metadata.get("checkpoint", "")})

    def _check_tensor(self, x: torch.Tensor) -> None:
        d, c_in = len(self.spatial_dims), len(self.inputs) or self.model.init_kwargs.get("in_channels")
        if x.ndim != d + 2 or x.shape[1] != c_in:
            raise ValueError(self._layout_message(tuple(x.shape)))
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"input contains NaN or infinite values (samples {bad[:10]}); nothing was predicted")

    def _layout_message(self, shape: tuple[int, ...]) -> str:
        spatial = ", ".join(self.spatial_dims)
        names = ", ".join(self.inputs) or "inputs"
        return (
            f"input of shape {tuple(shape)} does not match the model: expected (n, {len(self.inputs)}, {spatial}) "
            f"with channels [{names}], or (n, {spatial}) / ({spatial}) when there is one input variable"
        )


def require_kind(checkpoint: Checkpoint, kind: str) -> None:
    """Raise :class:`CheckpointError` naming the right loader unless ``checkpoint`` holds a ``kind`` model."""
    if checkpoint.kind != kind:
        loader = KIND_LOADERS.get(checkpoint.kind, "the loader of its kind")
        raise CheckpointError(
            checkpoint.path, f"holds a {checkpoint.kind!r} model, not the {kind!r} kind this loader takes; load it with {loader}"
        )


def checkpoint_metadata(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a loaded model reports about its file: kind, task, versions, path and training summary (plain data)."""
    meta = checkpoint.metadata
    return {
        "kind": meta.kind,
        "task": meta.task,
        "package_version": meta.package_version,
        "format_version": meta.format_version,
        "serving": meta.serving or {},
        "checkpoint": str(checkpoint.path),
        "training": checkpoint.training_summary(),
    }
