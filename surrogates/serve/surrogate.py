"""`Surrogate`: a trained model loaded from its checkpoint alone, predicting on numpy or xarray data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.checkpoint import Checkpoint, read_checkpoint
from surrogates.errors import CheckpointError
from surrogates.models.base import OperatorModel
from surrogates.models.normalized import NormalizedOperator
from surrogates.schema import Component, DataSchema, Variable, window_channel
from surrogates.serve.inputs import (
    InputError, check_channels, check_finite, check_layout, check_xarray_coordinates, declared_units, dims_named_as_sent,
    input_time_index, last_states, next_times, predicted_attrs, sent_dim_names, source_dim_names, split_channels, stack, trained_dim_names,
)

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
        The checkpoint's data schema (variables, grid, coordinates).
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
        schema: DataSchema | None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ):
        if not isinstance(predictor, NormalizedOperator):
            raise TypeError(f"predictor must be a NormalizedOperator, got {type(predictor).__name__}")
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        self.schema = schema if schema is not None else DataSchema()
        self.metadata = metadata or {}

    @property
    def name(self) -> str:
        """What messages call the model: its checkpoint file's name (``best.ckpt``), else its class."""
        return Path(self.metadata.get("checkpoint") or "").name or type(self.model).__name__

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
        return cls(predictor, checkpoint.metadata.data_schema, checkpoint_metadata(checkpoint), device)

    # -- schema -----------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        """Input variable names, one channel each."""
        if self.schema.inputs:
            return list(self.schema.inputs)
        return [f"input_{i}" for i in range(int(self.model.init_kwargs.get("in_channels", 1)))]

    @property
    def targets(self) -> list[str]:
        """Target variable names, one channel each."""
        if self.schema.targets:
            return list(self.schema.targets)
        return [f"output_{i}" for i in range(int(self.model.init_kwargs.get("out_channels", 1)))]

    @property
    def spatial_dims(self) -> list[str]:
        """Names of the spatial dimensions, e.g. ``["x", "y"]``."""
        if not self.schema.spatial_dims:
            return [f"dim_{i}" for i in range(self.model.init_kwargs.get("dim", 2))]
        return list(self.schema.spatial_dims)

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
        check_channels(x, self.inputs, self.spatial_dims)
        return self.predict_checked(x, batch_size)

    @torch.no_grad()
    def predict_checked(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """:meth:`predict_tensor` on inputs already checked (by the service, or by :meth:`predict`)."""
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
            (or without ``"sample"`` for one sample); an input trained as a number per sample (``nu``)
            with dims ``("sample",)`` or none. A model trained on data imported from the user's own file
            (``schema.source_dims``) also takes that file's dim names (``run``, ``t``, ``lon``) and answers in them.

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
        arrays, single, channel_axis = split_channels(x, self.inputs, self.spatial_dims)
        batch = self._batch(arrays)
        out = self.predict_checked(torch.from_numpy(batch), batch_size).cpu().numpy()
        if channel_axis or len(self.targets) > 1:
            return out[0] if single else out
        return out[0, 0] if single else out[:, 0]

    def _batch(self, arrays: dict[str, np.ndarray], scalars: frozenset[str] = frozenset()) -> np.ndarray:
        """Named input arrays, checked as the service checks them, as one ``(n, C_in, *spatial)`` float32 batch;
        ``scalars`` are given as one number per sample (or one for all) and fill constant channels."""
        variables = [Variable(name, () if name in scalars else tuple(self.spatial_dims)) for name in self.inputs]
        layout = check_layout(self.name, variables, arrays, self.spatial_dims)
        check_finite(variables, arrays, layout)
        return stack(variables, arrays, layout)

    def _predict_xarray(self, ds: Any, batch_size: int, whole_fields: bool = False) -> Any:
        import xarray as xr

        renames = trained_dim_names(self.schema.source_dims, ds.dims, [*ds.variables, *ds.dims])
        if renames:  # the source file's layout (imported data): answer in it, vector fields whole as it stores them
            restore = source_dim_names(renames)
            with dims_named_as_sent(sent_dim_names(self.schema.source_dims, renames, ds.dims)):  # and refuse it in it
                out = self._predict_xarray(ds.rename(renames), batch_size, whole_fields=True)
            return out.rename({ours: theirs for ours, theirs in restore.items() if ours in out.variables or ours in out.dims})
        if self.schema.window is not None:
            return self._predict_windows(ds, batch_size)
        reader = self.schema.reader or {}
        # the user's layout when the model was trained on it (data=xarray): their sample dim name, components
        sample_dim = reader.get("sample_dim", "sample")
        if sample_dim not in ds.dims and "sample" in ds.dims:
            sample_dim = "sample"
        # the user's time dim name (data=xarray's data.time_dim), or `time` as an imported file has it
        time_dim = reader.get("time_dim", "time")
        if time_dim not in ds.dims and "time" in ds.dims:
            time_dim = "time"
        arrays, missing, units = {}, [], {}
        component_dims = tuple(reader.get("component_dims") or ())
        # a number per sample (data=xarray's `nu (sample,)`): sent as it is stored, a constant channel of the batch
        scalars = frozenset(name for name in self.inputs if not set(self.schema.variable(name).dims) - {"time"})
        for name in self.inputs:
            var = self._input_variable(ds, name, self.schema.variable(name).component, component_dims)
            if var is None:
                missing.append(name)
                continue
            units[str(var.name)] = declared_units(var.attrs)  # as sent: the input, or its vector field sent whole
            given = var.dims
            var = var.rename({dim: new for dim, new in ((sample_dim, "sample"), (time_dim, "time")) if dim in var.dims})
            if "time" in var.dims and "time" not in self.spatial_dims:  # a trajectory: the state at input_time, as over HTTP
                var = var.isel(time=input_time_index(name, self.schema.input_time, var.sizes["time"]))
            per_sample = () if name in scalars else tuple(self.spatial_dims)
            expected = [dim for dim in ("sample", *per_sample) if dim in var.dims]
            if set(var.dims) != set(expected) or not set(per_sample) <= set(var.dims):
                raise ValueError(
                    f"variable {name!r} has dims {given}; expected ({', '.join(map(repr, (sample_dim, *per_sample)))})"
                )
            arrays[name] = var.transpose(*expected).values
        if missing:  # what the dataset holds, so that a misspelt or renamed variable is seen at once (as the service says)
            raise InputError("missing_input", f"the dataset lacks input variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}")
        check_xarray_coordinates(self.name, self.schema, ds, units, self.spatial_dims, self.spatial_dims)
        fields = [array for name, array in arrays.items() if name not in scalars]
        has_sample = bool(fields) and fields[0].ndim == len(self.spatial_dims) + 1
        pred = self.predict_checked(torch.from_numpy(self._batch(arrays, scalars)), batch_size).cpu().numpy()
        dims = (sample_dim, *self.spatial_dims) if has_sample else tuple(self.spatial_dims)
        out_vars = {}
        for k, name in enumerate(self.targets):
            values = pred[:, k] if has_sample else pred[0, k]
            out_vars[name] = xr.DataArray(values, dims=dims, attrs=predicted_attrs(self.schema, name))
        coords = {name: ds.coords[name] for name in dims if name in ds.coords}
        # answer vector fields whole in a layout that stores them so: the user's file (data=xarray), or fields sent whole
        if whole_fields or reader.get("name") == "xarray" or any(name not in ds.data_vars for name in self.inputs):
            out_vars, field_coords = self._assemble_fields(out_vars, ds)
            coords.update(field_coords)
        return xr.Dataset(out_vars, coords=coords, attrs={"model_checkpoint": self.metadata.get("checkpoint", "")})

    def _predict_windows(self, ds: Any, batch_size: int) -> Any:
        """:meth:`predict` of a model trained on time windows (``schema.window``), in the user's layout: each
        stored input ``u (sample, time, *spatial)`` (or a vector field with its component dim) gives its last
        ``n_steps_input`` times as the channels ``u_t0 ...``; the answer holds ``u (sample, time, *spatial)`` with
        the ``n_steps_output`` predicted times (vector fields whole), the time coordinate continued with the
        input's last step when it has one."""
        import xarray as xr

        window, reader = self.schema.window, self.schema.reader or {}
        n_in, n_out = int(window["n_steps_input"]), int(window["n_steps_output"])
        sample_dim = reader.get("sample_dim", "sample")
        if sample_dim not in ds.dims and "sample" in ds.dims:
            sample_dim = "sample"
        time_dim = reader.get("time_dim", "time")
        component_dims = tuple(reader.get("component_dims") or ())
        arrays, missing, units = {}, [], {}
        for name in window["inputs"]:
            var = self._input_variable(ds, name, self.schema.window_component(name), component_dims)
            if var is None:
                missing.append(name)
                continue
            units[str(var.name)] = declared_units(var.attrs)
            var = var.rename({sample_dim: "sample"}) if sample_dim in var.dims else var
            expected = [dim for dim in ("sample", time_dim, *self.spatial_dims) if dim in var.dims]
            if set(var.dims) != set(expected) or time_dim not in var.dims or var.sizes[time_dim] < n_in:
                raise ValueError(
                    f"variable {name!r} has dims {dict(var.sizes)}; the model takes windows of {n_in} states: expected "
                    f"({sample_dim!r}, {time_dim!r}, {', '.join(map(repr, self.spatial_dims))}) with at least {n_in} times"
                )
            arrays.update(last_states(name, var.transpose(*expected).values, n_in, expected.index(time_dim)))
        if missing:  # the same code and words as for one-state models and the service
            raise InputError("missing_input", f"the dataset lacks input variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}")
        # the window's times have units too: hours are no seconds
        check_xarray_coordinates(self.name, self.schema, ds, units, [*self.spatial_dims, time_dim], self.spatial_dims)
        has_sample = next(iter(arrays.values())).ndim == len(self.spatial_dims) + 1
        pred = self.predict_checked(torch.from_numpy(self._batch(arrays)), batch_size).cpu().numpy()
        dims = ((sample_dim,) if has_sample else ()) + (time_dim, *self.spatial_dims)
        out_vars = {}
        for name in window["targets"]:
            channels = [self.targets.index(window_channel(name, n_in + k)) for k in range(n_out)]
            values = pred[:, channels]  # (n, n_out, *spatial)
            out_vars[name] = xr.DataArray(values if has_sample else values[0], dims=dims,
                                          attrs=predicted_attrs(self.schema, name))
        coords = {dim: ds.coords[dim] for dim in (sample_dim, *self.spatial_dims) if dim in dims and dim in ds.coords}
        if time_dim in ds.coords and (times := next_times(ds[time_dim].values, n_out)) is not None:
            coords[time_dim] = xr.Variable((time_dim,), times, dict(ds[time_dim].attrs))  # its units, as the service keeps them
        out_vars, field_coords = self._assemble_fields(out_vars, ds, self.schema.window_component)
        coords.update(field_coords)
        return xr.Dataset(out_vars, coords=coords, attrs={"model_checkpoint": self.metadata.get("checkpoint", "")})

    def _assemble_fields(
        self, outputs: dict[str, Any], ds: Any, component_of: Callable[[str], Component | None] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Predicted components put back into their vector fields, as the training data stored them: every
        component of ``velocity`` (``velocity_x``, ``velocity_y``) predicted -> ``velocity (..., component)``
        with the component coordinate (the request's when it has that dim, else the labels); other outputs as they are.
        ``component_of(name)``: where an output sits in a field (default: the schema's variable's ``component``).

        Returns the outputs and the coordinates of the component dims used."""
        import xarray as xr

        component_of = component_of or (lambda name: self.schema.variable(name).component)
        fields: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for name in outputs:
            component = component_of(name)
            if component is not None:
                fields.setdefault((component.field, component.dim), []).append((name, component.label))
        assembled: dict[str, Any] = {}
        coords: dict[str, Any] = {}
        placed = {name: key for key, members in fields.items() for name, _ in members}
        for name, array in outputs.items():
            key = placed.get(name)
            if key is None or key[0] in outputs:  # not a component, or an output has the field's name: as it is
                assembled[name] = array
                continue
            field, dim = key
            if field in assembled:  # built with its first component
                continue
            members = fields[key]
            labels = [label for _, label in members]
            stacked = xr.concat([outputs[member] for member, _ in members], dim=dim)
            assembled[field] = stacked.transpose(*array.dims, dim).assign_attrs(predicted_attrs(self.schema, field))
            given = ds.coords[dim] if dim in ds.coords else None
            keep = given is not None and [str(v) for v in np.asarray(given.values).tolist()] == labels
            coords[dim] = given if keep else xr.DataArray(labels, dims=(dim,))
        return assembled, coords

    @staticmethod
    def _input_variable(ds: Any, name: str, component: Component | None, component_dims: tuple[str, ...]) -> Any:
        """``ds[name]``, or the component ``label`` of a vector field ``ds[field]`` for ``name == field_label``
        (stored with a trailing component dim: the schema's ``component``, or as ``data=xarray`` reads it);
        None when neither exists."""
        if name in ds.data_vars:
            return ds[name]
        if component is not None:
            field, label = component.field, component.label
            component_dims = (component.dim, *component_dims)
        else:
            field, _, label = name.rpartition("_")
        if field in ds.data_vars and ds[field].dims and ds[field].dims[-1] in component_dims:
            dim = ds[field].dims[-1]
            labels = [str(v) for v in ds[dim].values] if dim in ds.coords else []
            if label in labels:
                return ds[field].isel({dim: labels.index(label)}, drop=True)
            if label.isdigit() and int(label) < ds[field].sizes[dim]:
                return ds[field].isel({dim: int(label)}, drop=True)
        return None


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
