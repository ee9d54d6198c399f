"""What the service serves: a model's variables, the grids it takes, and its entry in the registry.

An entry turns request arrays into one float32 batch ``x`` (:meth:`ModelEntry.prepare`), and its
``runner`` maps ``x`` to output arrays (called in a worker thread, possibly on a micro-batch).
The loaders of :mod:`surrogates.serve.loaders` build entries; :mod:`surrogates.serve.registry` holds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surrogates.schema import DataSchema, Variable, window_channel
from surrogates.serve.errors import ServiceError, unprocessable
from surrogates.serve.inputs import (
    InputError, check_domain, check_finite, check_layout, check_units, declared_units, last_states, predicted_attrs, stack,
    trained_dim_names,
)

Runner = Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]
"""``x (B, C_in, *spatial)`` (or ``(B, C_in)`` without fields) -> (outputs ``name -> (B, *dims)``, info)."""

RolloutRunner = Callable[[np.ndarray, int], Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]]
"""``(x (B, C_in, *spatial), seed)`` -> the rollout's steps, each (outputs ``name -> (B, *dims)``, info) computed
when asked for: a model that rolls out itself (one-step models such as PDE-Refiner), with the seed of its
noise. The service asks for a few steps per job of the model's worker thread (``serve/work.py``)."""


@dataclass(frozen=True)
class ResolutionRule:
    """Which grid sizes a model takes; :meth:`check` raises a 422 naming the rule a grid breaks.

    ``policy``: ``"any"`` (at least ``min_size`` points per dim), ``"fixed"`` (exactly ``trained``),
    ``"multiple_of"`` (sizes divisible by ``multiple``), ``"none"`` (no field inputs).
    """

    policy: str = "any"
    trained: tuple[int, ...] | None = None
    min_size: int = 1
    multiple: int | None = None
    equal_sizes: bool = False

    def check(self, model: str, shape: tuple[int, ...]) -> None:
        def refuse(why: str) -> ServiceError:
            return unprocessable("wrong_resolution", f"model {model!r} cannot take a grid of {_shape(shape)}: {why}")

        if self.policy == "none":
            return
        if self.policy == "fixed" and self.trained is not None and tuple(shape) != tuple(self.trained):
            raise refuse(f"it only takes its own grid {_shape(self.trained)}")
        if min(shape, default=self.min_size) < self.min_size:
            raise refuse(f"every spatial dim needs at least {self.min_size} points")
        if self.policy == "multiple_of" and self.multiple and any(n % self.multiple for n in shape):
            raise refuse(f"every spatial size must be a multiple of {self.multiple}")
        if self.equal_sizes and len(set(shape)) > 1:
            raise refuse("all spatial dims must have the same size (a square grid)")

    def info(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "trained": list(self.trained) if self.trained is not None else None,
            "min_size": self.min_size,
            "multiple": self.multiple,
            "equal_sizes": self.equal_sizes,
        }

    @classmethod
    def from_record(cls, record: Any, trained: tuple[int, ...] | None) -> "ResolutionRule":
        """A rule recorded by a model or checkpoint: ``"fixed"``, ``"any"``, or a dict of the fields."""
        if isinstance(record, str):
            return cls(policy=record, trained=trained)
        if isinstance(record, Mapping):
            fields = {k: record[k] for k in ("policy", "min_size", "multiple", "equal_sizes") if k in record}
            if "multiple" in fields and "policy" not in fields:
                fields["policy"] = "multiple_of"
            return cls(trained=tuple(record.get("trained") or trained or ()) or None, **fields)
        return cls(trained=trained)


@dataclass
class Prepared:
    """Request arrays as one model batch."""

    x: np.ndarray
    single: bool
    n: int
    spatial_shape: tuple[int, ...]


@dataclass
class ModelEntry:
    """One servable model (ready) or a file that failed to load (unavailable)."""

    name: str
    kind: str  # "surrogate", "solver", "reduced_basis"
    source: str
    status: str = "ready"
    error: str | None = None
    """Why the model could not be loaded, in full (exception type and message, paths included): for the
    log and the operator's console, never for answers."""
    reason: str | None = None
    """The same in a few words, without paths or exception text: what ``GET /health``, ``GET /v1/models``
    and 503 answers say."""
    pde: str | None = None
    description: str = ""
    inputs: list[Variable] = field(default_factory=list)
    outputs: list[Variable] = field(default_factory=list)
    spatial_dims: list[str] = field(default_factory=list)
    data_schema: DataSchema | None = None
    """What the model was trained on (coordinates with units and spacing, boundary kind), when its file says."""
    resolution: ResolutionRule = field(default_factory=ResolutionRule)
    batchable: bool = False
    chunked: bool = False
    """Whether the service runs a request's samples in calls of at most ``max_batch_size`` (models whose
    memory per call grows with the samples: neural operators). Solvers loop over samples anyway, a
    pointwise model's samples are points (a few bytes each), and a one-step model rolls out the whole
    request at once (its noise is drawn for the whole batch)."""
    device: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] | None = None
    ignored_inputs: tuple[str, ...] = ()
    runner: Runner | None = None
    rollout_runner: RolloutRunner | None = None
    stochastic: bool = False

    @classmethod
    def unavailable(cls, name: str, kind: str, source: str, error: str, reason: str = "cannot load model") -> "ModelEntry":
        return cls(name=name, kind=kind, source=source, status="unavailable", error=error, reason=reason)

    @property
    def sample_dims(self) -> tuple[str, ...]:
        """Names a NetCDF body may give its sample dim: ``sample``, and the one of the model's training file
        when it was trained on a user's file (``data=xarray``), so that file's layout is accepted and answered."""
        reader = (self.data_schema.reader or {}) if self.data_schema is not None else {}
        return tuple(dict.fromkeys(["sample", str(reader.get("sample_dim") or "sample")]))

    @property
    def source_dims(self) -> dict[str, str]:
        """The dim names of the user's file a model trained on data imported from it was trained under
        (``DataSchema.source_dims``: ours -> theirs, ``{"sample": "run", "x": "lon"}``); empty for other models."""
        return dict((self.data_schema.source_dims or {}) if self.data_schema is not None else {})

    def body_renames(self, dims: set[str], names: set[str]) -> dict[str, str]:
        """How a NetCDF body with ``dims`` and variables ``names`` sent in the dim names of the model's source file
        is read in the trained ones (``{"run": "sample", "lon": "x"}``), as ``Surrogate.predict`` reads a Dataset
        (:func:`~surrogates.serve.inputs.trained_dim_names`); empty for a body in the platform's names."""
        return trained_dim_names(self.source_dims, dims, dims | names)

    @property
    def trained_on_user_files(self) -> bool:
        """Whether the model was trained on a user's own files (``data=xarray``), whose layout answers follow."""
        reader = (self.data_schema.reader or {}) if self.data_schema is not None else {}
        return reader.get("name") == "xarray"

    @property
    def components(self) -> dict[str, Any]:
        """Inputs and outputs that are components of a vector field: name -> :class:`~surrogates.schema.Component`."""
        if self.data_schema is None:
            return {}
        names = [v.name for v in self.inputs + self.outputs]
        return {name: c for name in names if (c := self.data_schema.variable(name).component) is not None}

    def assemble_fields(
        self, answer: dict[str, tuple[list[str], np.ndarray]]
    ) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, list[str]]]:
        """Answer variables ``name -> (dims, values)`` with the predicted components of each vector field put back
        together: ``velocity_x``, ``velocity_y`` -> ``velocity (*dims, component dim)``, in the order the model
        predicts them; and the labels along each component dim used (the answer's coordinate)."""
        return _assemble(answer, self.components)

    # -- time windows in the user's layout (models trained on windows of n_steps_input -> n_steps_output states)
    @property
    def window(self) -> dict[str, Any] | None:
        """The schema's time windows (``DataSchema.window``), ``None`` for other models."""
        return self.data_schema.window if self.data_schema is not None else None

    @property
    def time_dim(self) -> str:
        """The time dim of the model's stored trajectories (the user's name with ``data=xarray``)."""
        reader = (self.data_schema.reader or {}) if self.data_schema is not None else {}
        return str(reader.get("time_dim") or "time")

    @property
    def input_time(self) -> int | None:
        """The trajectories' time index a one-state model was trained on (``DataSchema.input_time``): a NetCDF body
        may send the trajectories, whose state at that index is read, as ``Surrogate.predict`` reads a Dataset's."""
        return self.data_schema.input_time if self.data_schema is not None and self.window is None else None

    @property
    def time_dims(self) -> tuple[str, ...]:
        """Names a trajectory's time dim may have: the stored one, and ``time`` (as ``Surrogate.predict`` accepts)."""
        return tuple(dict.fromkeys([self.time_dim, "time"]))

    def window_specs(self) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
        """What a NetCDF body in the stored layout holds: each stored input with dims ``(time, *spatial)``, and
        the vector fields their components belong to (for :func:`~surrogates.serve.codecs.read_netcdf`)."""
        assert self.window is not None and self.data_schema is not None
        names = list(self.window["inputs"])
        specs = {name: (self.time_dim, *self.spatial_dims) for name in names}
        components = {name: c for name in names if (c := self.data_schema.window_component(name)) is not None}
        return specs, components

    def split_windows(self, arrays: Mapping[str, np.ndarray], single: bool) -> dict[str, np.ndarray]:
        """Stored inputs ``(n, T, *spatial)`` (``(T, *spatial)`` with ``single``) as the model's channels: the
        last ``n_steps_input`` states, ``u -> u_t0, u_t1, ...``; 422 ``too_few_times`` with fewer states."""
        assert self.window is not None
        n_in = int(self.window["n_steps_input"])
        channels = {}
        for name, values in arrays.items():
            axis = 0 if single else 1
            if values.ndim <= axis or values.shape[axis] < n_in:
                raise unprocessable(
                    "too_few_times",
                    f"variable {name!r} has {values.shape[axis] if values.ndim > axis else 0} state(s) along "
                    f"{self.time_dim!r}; model {self.name!r} takes windows of {n_in}",
                )
            channels.update(last_states(name, values, n_in, axis))
        return channels

    def join_windows(self, answer: dict[str, tuple[list[str], np.ndarray]]) -> dict[str, tuple[list[str], np.ndarray]]:
        """Predicted channels ``u_t2, u_t3 (n, *spatial)`` as the stored targets ``u (n, time, *spatial)``."""
        assert self.window is not None
        n_in, n_out = int(self.window["n_steps_input"]), int(self.window["n_steps_output"])
        out = {}
        for name in self.window["targets"]:
            parts = [answer[window_channel(name, n_in + k)] for k in range(n_out)]
            dims = list(parts[0][0])
            at = 1 if dims and dims[0] not in self.spatial_dims else 0  # after the sample dim, if any
            out[name] = ([*dims[:at], self.time_dim, *dims[at:]], np.stack([values for _, values in parts], axis=at))
        return out

    def assemble_window_fields(
        self, answer: dict[str, tuple[list[str], np.ndarray]]
    ) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, list[str]]]:
        """:meth:`assemble_fields` for the stored targets of a windowed model (their components from the window)."""
        assert self.data_schema is not None
        components = {name: c for name in answer if (c := self.data_schema.window_component(name)) is not None}
        return _assemble(answer, components)

    @property
    def ready(self) -> bool:
        return self.status == "ready" and self.runner is not None

    @property
    def rollout(self) -> bool:
        """Whether ``steps`` is accepted: the model rolls out itself, or its outputs can be fed back as its
        inputs (same variables, all of them fields on the same dims)."""
        if self.ready and self.rollout_runner is not None:
            return True
        names_in, names_out = [v.name for v in self.inputs], [v.name for v in self.outputs]
        return (
            self.ready
            and bool(names_in)
            and names_in == names_out
            and all(v.dims == tuple(self.spatial_dims) for v in self.inputs + self.outputs)
        )

    def info(self, batching: bool) -> dict[str, Any]:
        """The ``GET /v1/models`` record."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "error": (self.reason or "cannot load model") if not self.ready else None,
            "source": self.source,
            "pde": self.pde,
            "description": self.description,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "spatial_dims": list(self.spatial_dims),
            "data_schema": self.data_schema.for_service() if self.data_schema is not None and self.ready else None,
            "resolution": self.resolution.info() if self.ready else None,
            "rollout": self.rollout,
            "stochastic": self.stochastic,
            "batching": bool(batching and self.batchable and self.ready),
            "device": self.device,
            "metrics": self.metrics,
            "model": self.model_config,
        }

    # -- requests ---------------------------------------------------------------------------------
    def output_elements(self, prepared: Prepared, steps: int | None = None) -> int:
        """Values of the answer to ``prepared``: samples x steps x (grid points of every output variable).

        An output dim the request's grid does not give (a reduced model's field) has the size of the
        model's own grid (``resolution.trained``)."""
        sizes = dict(zip(self.spatial_dims, prepared.spatial_shape))
        for dim, size in zip(self.spatial_dims, self.resolution.trained or ()):
            sizes.setdefault(dim, int(size))
        per_sample = sum(math.prod(sizes.get(dim, 1) for dim in var.dims) for var in self.outputs)
        return prepared.n * max(steps or 1, 1) * per_sample

    def prepare(self, arrays: Mapping[str, np.ndarray], max_elements: int) -> Prepared:
        """Check request arrays against the model and stack them as channels: ``(n, C_in, *spatial)``.

        Raises
        ------
        ServiceError
            422 for unknown or missing variables, wrong shapes, disagreeing sample counts or grids,
            a grid the model cannot take, NaN or infinite values; 413 when the batch is too large.
        """
        try:
            layout = check_layout(self.name, self.inputs, arrays, self.spatial_dims, self.ignored_inputs)
            if any(var.dims for var in self.inputs):
                self.resolution.check(self.name, layout.spatial_shape)
            total = layout.n * len(self.inputs) * math.prod(layout.spatial_shape)
            if total > max_elements:  # before the values are read or copied
                raise ServiceError(
                    413, "too_many_values", f"the request holds {total} input values; the limit is {max_elements} (max_elements)"
                )
            check_finite(self.inputs, arrays, layout)
        except InputError as error:
            raise unprocessable(error.code, str(error)) from None
        return Prepared(stack(self.inputs, arrays, layout), layout.single, layout.n, layout.spatial_shape)

    def answer_attrs(self, name: str) -> dict[str, str]:
        """Attributes of the answer's variable ``name``: its long name and the trained target's units, as
        ``Surrogate.predict`` gives them (:func:`~surrogates.serve.inputs.predicted_attrs`)."""
        return predicted_attrs(self.data_schema, name)

    def check_body_units(
        self, units: Mapping[str, str | None], coords: Mapping[str, tuple[np.ndarray, dict]], windowed: bool = False
    ) -> None:
        """422 ``wrong_units`` when a NetCDF body's variables (name -> ``units`` attribute) or its spatial coordinates
        (with ``windowed``, the time coordinate too) declare other units than the model was trained on
        (:func:`~surrogates.serve.inputs.check_units`); no schema: no check."""
        dims = [*self.spatial_dims, *([self.time_dim] if windowed else [])]
        given = {dim: declared_units(coords[dim][1]) for dim in dims if dim in coords}
        try:
            check_units(self.name, self.data_schema, units, given)
        except InputError as error:
            raise unprocessable(error.code, str(error)) from None

    def check_grid(self, coords: Mapping[str, tuple[np.ndarray, dict]]) -> None:
        """422 ``wrong_domain`` when a NetCDF body's spatial coordinates (dim -> (values, attributes)) cover another
        domain than the model was trained on (:func:`~surrogates.serve.inputs.check_domain`); no schema: no check."""
        if self.data_schema is None:
            return
        given = {dim: values for dim, (values, _) in coords.items()}
        try:
            check_domain(self.name, self.data_schema.coords, self.spatial_dims, given)
        except InputError as error:
            raise unprocessable(error.code, str(error)) from None


@dataclass
class PointwiseEntry(ModelEntry):
    """A pointwise model (PIG, PINN): one scalar input per coordinate, so that ``n`` samples are ``n`` query
    points; :meth:`prepare` also refuses points outside the trained domain (422 ``outside_domain``)."""

    domain: dict[str, list[float]] | None = None
    check_domain: Callable[[np.ndarray], None] | None = None

    def prepare(self, arrays: Mapping[str, np.ndarray], max_elements: int) -> Prepared:
        prepared = super().prepare(arrays, max_elements)
        if self.check_domain is not None:
            try:
                self.check_domain(prepared.x)
            except ValueError as error:
                raise unprocessable("outside_domain", f"model {self.name!r}: {error}") from None
        return prepared

    def info(self, batching: bool) -> dict[str, Any]:
        return {**super().info(batching), "domain": self.domain}


def _assemble(
    answer: dict[str, tuple[list[str], np.ndarray]], components: Mapping[str, Any]
) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, list[str]]]:
    """Answer variables with the components (``components``: name -> Component) of each field stacked on its
    component dim, in the answer's order; and the labels along each component dim used."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name in answer:
        if name in components:
            groups.setdefault((components[name].field, components[name].dim), []).append(name)
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    labels: dict[str, list[str]] = {}
    for name, (dims, values) in answer.items():
        component = components.get(name)
        if component is None or component.field in answer:
            out[name] = (dims, values)
        elif component.field not in out:
            members = groups[(component.field, component.dim)]
            out[component.field] = ([*dims, component.dim], np.stack([answer[m][1] for m in members], axis=-1))
            labels[component.dim] = [components[m].label for m in members]
    return out, labels


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")" if len(shape) != 1 else f"({int(shape[0])},)"
