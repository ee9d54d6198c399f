"""The data schema: what a model's data are, one type from the dataset file to the service's OpenAPI.

A :class:`DataSchema` is built from a dataset file by the DataModule that trains on it, stored in the
checkpoint as plain data (:meth:`DataSchema.to_dict`, read back by :meth:`DataSchema.from_dict`),
used by :class:`~surrogates.serve.surrogate.Surrogate` and the evaluation to lay out inputs and to
compute grid spacings, and listed by the service (``GET /v1/models``), whose OpenAPI document
describes these very classes. Nothing else describes variables, coordinates or grids.

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["BOUNDARIES", "KINDS", "Component", "Coordinate", "DataSchema", "SchemaError", "Variable", "is_dim_mapping"]

KINDS = ("fields", "trajectory", "pointwise")
"""``fields``: input fields -> target fields (operators); ``trajectory``: states over time with
per-trajectory parameters (one-step models); ``pointwise``: one PDE instance on a box (PIG, PINN)."""

BOUNDARIES = ("bounded", "periodic")
"""A coordinate's boundary kind: the grid ends at the domain's edges, or wraps around."""

MAX_EVAL_POINTS = 10**7
"""Most points of a pointwise model's reference grid (``eval_resolution``): evaluation holds the grid's
points, the reference solution and the predictions in memory (10^7 points of 2D problems: a few hundred MB)."""


class SchemaError(ValueError):
    """A stored data schema is malformed (the message names the entry and the problem)."""


@dataclass(frozen=True)
class Component:
    """Where a variable sits in a vector or tensor field stored with a component dim.

    ``velocity_x`` of ``velocity (sample, x, y, component)`` with ``component = ["x", "y"]`` is
    ``Component("velocity", "x", "component")``: answers in the user's layout put it back there.
    """

    field: str
    label: str
    dim: str = "component"


@dataclass(frozen=True)
class Variable:
    """A variable of a dataset or model: its name and the dims of one sample.

    ``dims`` excludes the leading ``"sample"`` dim, e.g. ``("x", "y")`` or ``("time", "x")``; a scalar per
    sample (a viscosity, a time step) has ``dims == ()``. ``component``: the vector field it is a
    component of, when it was stored as one.
    """

    name: str
    dims: tuple[str, ...] = ()
    units: str = "1"
    long_name: str = ""
    component: Component | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(str(d) for d in self.dims))


@dataclass(frozen=True)
class Coordinate:
    """A 1D coordinate of the data (``x``, ``y``, ``time``) as a model needs it.

    ``spacing`` is the distance between neighbouring points of the uniform grid of ``size`` points
    from ``min`` to ``max`` (``None`` for a single point or an unknown extent).
    """

    name: str
    size: int
    units: str = "1"
    long_name: str = ""
    min: float | None = None
    max: float | None = None
    spacing: float | None = None
    boundary: str = "bounded"

    def __post_init__(self) -> None:
        if self.boundary not in BOUNDARIES:
            raise SchemaError(f"coordinate {self.name!r}: boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.spacing is None and self.size > 1 and self.min is not None and self.max is not None:
            object.__setattr__(self, "spacing", (self.max - self.min) / (self.size - 1))

    def spacing_at(self, n: int) -> float | None:
        """The spacing of an ``n``-point grid over the same domain (``spacing`` when ``n == size``).

        A periodic grid of ``size`` points covers ``size * spacing`` (the last point is one step
        before the first's image); a bounded grid covers ``max - min`` with points at both ends.
        """
        if self.spacing is None or n < 1:
            return None
        if n == self.size:
            return self.spacing
        if self.boundary == "periodic":
            return self.spacing * self.size / n
        return (self.max - self.min) / (n - 1) if n > 1 else None


@dataclass(frozen=True)
class DataSchema:
    """What a model was trained on and expects: variables, coordinates, grid, and how samples are made.

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    pde
        Name of the PDE that generated the data (``"darcy"``), empty for unknown sources.
    inputs, targets
        Variable names, one channel each, in channel order.
    variables
        Every variable a model uses, by name (``dims`` of one sample).
    coords
        Coordinates of the dims, by name.
    spatial_dims, spatial_shape
        The grid a model maps on (``("x", "y")``, ``(64, 64)``); space-time operators start with ``time``.
    input_time, target_time
        Time index taken from time-dependent inputs / targets (``None``: no time dim, or all times).
    state, conditioning, n_steps
        Trajectories: the state variables, the per-trajectory parameters the model is conditioned on,
        and the steps per trajectory.
    time_stride, n_times
        Space-time operators: stride and number of stored times.
    bounds, problem, eval_resolution
        Pointwise models: the box (coordinate -> ``(low, high)``), the problem's configuration and the
        resolution of its reference grid.
    schema_version
        Version of the dataset file format.
    source
        Folder (or file) of the training data on the machine that trained (a default for evaluation; the
        service never shows it).
    window
        Time windows (``n_steps_input`` states -> ``n_steps_output`` states): the stored variables and the
        window sizes, ``{"inputs": ["u"], "targets": ["u"], "n_steps_input": 2, "n_steps_output": 1}``;
        :attr:`inputs` and :attr:`targets` then name the channels (``u_t0``, ``u_t1`` -> ``u_t2``). Stored
        variables that are components of a vector field are listed under ``"components"``
        (``{"v_x": {"field": "v", "label": "x", "dim": "component"}}``; see :meth:`window_component`).
    reader
        How to read :attr:`source` again when it is not a dataset folder of the package: plain data,
        e.g. ``{"name": "xarray", "sample_dim": "n", "val_fraction": 0.1, ...}`` for ``data=xarray``.
    source_dims
        The user's names of the dims of data imported with ``surrogates-import`` from their own file: platform dim ->
        the source's dim, ``{"sample": "run", "time": "t", "x": "lon"}``; ``None`` when the data have no other names
        (generated data, PDEBench, The Well, checkpoints written before it). ``Surrogate.predict`` and the service's NetCDF
        bodies take and answer the source's names with it.
    """

    kind: str = "fields"
    pde: str = ""
    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    variables: dict[str, Variable] = field(default_factory=dict)
    coords: dict[str, Coordinate] = field(default_factory=dict)
    spatial_dims: tuple[str, ...] = ()
    spatial_shape: tuple[int, ...] = ()
    input_time: int | None = None
    target_time: int | None = None
    state: tuple[str, ...] = ()
    conditioning: tuple[str, ...] = ()
    n_steps: int | None = None
    time_stride: int | None = None
    n_times: int | None = None
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    problem: dict[str, Any] | None = None
    eval_resolution: int | tuple[int, ...] | None = None
    schema_version: str = ""
    source: str = ""
    window: dict[str, Any] | None = None
    reader: dict[str, Any] | None = None
    source_dims: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("inputs", "targets", "spatial_dims", "state", "conditioning"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        object.__setattr__(self, "spatial_shape", tuple(int(n) for n in self.spatial_shape))
        if isinstance(self.eval_resolution, (list, tuple)):
            object.__setattr__(self, "eval_resolution", tuple(int(n) for n in self.eval_resolution))

    # -- questions ---------------------------------------------------------------------------------
    def variable(self, name: str) -> Variable:
        """The variable ``name``; a field on the spatial dims when the schema does not list it."""
        return self.variables.get(name) or Variable(name, self.spatial_dims)

    def window_component(self, name: str) -> Component | None:
        """The vector field a stored variable of a time window (``window["inputs"]``, ``window["targets"]``)
        is a component of; ``None`` when it is not one or the schema has no windows."""
        raw = ((self.window or {}).get("components") or {}).get(name)
        return _component(f"window.components.{name}", raw)

    def sample_dims(self, name: str) -> tuple[str, ...]:
        """Dims of one sample of ``name`` as a model takes or returns it: a time-dependent variable from
        which one time index is taken (``input_time`` / ``target_time``) loses its ``time`` dim."""
        dims = list(self.variable(name).dims)
        index = self.input_time if name in self.inputs else self.target_time
        if index is not None and "time" in dims and "time" not in self.spatial_dims:
            dims.remove("time")
        return tuple(dims)

    def units_of(self, name: str) -> str | None:
        """The units of a variable as stored: its own, else those its window channels (``u_t2``) or its vector
        field's components (``v_x``, ``v_y``) agree on; ``None`` when the schema does not list it or they disagree."""
        if name in self.variables:
            return self.variables[name].units
        window = self.window or {}
        steps = range(int(window.get("n_steps_input") or 0) + int(window.get("n_steps_output") or 0))
        stored = [name] + [v.name for v in self.variables.values() if v.component is not None and v.component.field == name]
        stored += [part for part in (window.get("components") or {}) if (c := self.window_component(part)) and c.field == name]
        members = [*stored, *(window_channel(part, k) for part in stored for k in steps)]
        units = {self.variables[member].units for member in members if member in self.variables}
        return units.pop() if len(units) == 1 else None

    @property
    def boundary(self) -> str:
        """``"periodic"`` or ``"bounded"`` when every spatial dim has that kind, else ``"mixed"`` (``""``
        without coordinates)."""
        kinds = {self.coords[d].boundary for d in self.spatial_dims if d in self.coords}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "")

    def periodic_dims(self, shape: Sequence[int] | None = None) -> list[bool] | None:
        """Whether each spatial dim of a grid of ``shape`` (default: the trained grid) wraps around.

        ``False`` for a dim without a coordinate; ``None`` when ``shape`` is not a grid on the spatial
        dims (as :meth:`grid_spacing`): metrics then treat every dim as bounded.
        """
        shape = tuple(self.spatial_shape if shape is None else shape)
        if len(shape) != len(self.spatial_dims) or not shape:
            return None
        return [d in self.coords and self.coords[d].boundary == "periodic" for d in self.spatial_dims]

    def grid_spacing(self, shape: Sequence[int] | None = None) -> list[float] | None:
        """Spacing per spatial dim of a grid of ``shape`` (default: the trained grid) over the data's domain.

        ``None`` when a spatial dim has no known extent: metrics then assume a unit grid step.
        """
        shape = tuple(self.spatial_shape if shape is None else shape)
        if len(shape) != len(self.spatial_dims) or not shape:
            return None
        spacing = []
        for dim, n in zip(self.spatial_dims, shape):
            coordinate = self.coords.get(dim)
            step = coordinate.spacing_at(int(n)) if coordinate is not None else None
            if step is None:
                return None
            spacing.append(step)
        return spacing

    def for_service(self) -> "DataSchema":
        """This schema without :attr:`source` and :attr:`reader` (paths on the training machine). :attr:`source_dims`
        stays: the service takes NetCDF bodies in those dim names and answers in them, as ``Surrogate.predict`` does."""
        return replace(self, source="", reader=None)

    # -- plain data ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint (JSON-serializable); :meth:`from_dict` reads it back.

        ``variables`` maps a name to its stored dims (with ``"sample"``), as checkpoint format 3 always
        did; units and long names go in ``variable_attrs``.
        """
        out: dict[str, Any] = {
            "kind": self.kind,
            "pde": self.pde,
            "schema_version": self.schema_version,
            "data_dir": self.source,
            "inputs": list(self.inputs),
            "targets": list(self.targets),
            "input_time": self.input_time,
            "target_time": self.target_time,
            "spatial_dims": list(self.spatial_dims),
            "spatial_shape": list(self.spatial_shape),
            "variables": {name: ["sample", *var.dims] for name, var in self.variables.items()},
            "variable_attrs": {name: _variable_attrs(var) for name, var in self.variables.items()},
            "coords": {
                name: {
                    "size": c.size, "units": c.units, "long_name": c.long_name, "min": c.min, "max": c.max,
                    "spacing": c.spacing, "boundary": c.boundary,
                }
                for name, c in self.coords.items()
            },
        }
        optional = {
            "state": list(self.state), "conditioning": list(self.conditioning), "n_steps": self.n_steps,
            "time_stride": self.time_stride, "n_times": self.n_times, "problem": self.problem,
            "eval_resolution": list(self.eval_resolution) if isinstance(self.eval_resolution, tuple) else self.eval_resolution,
            "reader": self.reader,
            "window": self.window,
            "source_dims": self.source_dims,
        }
        out.update({key: value for key, value in optional.items() if value not in (None, [])})
        if self.bounds:
            out["coordinates"] = list(self.bounds)
            out["bounds"] = [list(b) for b in self.bounds.values()]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DataSchema":
        """Read a schema written by :meth:`to_dict`, or by an earlier version of the package.

        Earlier files have no ``kind`` (fields, or pointwise when they hold ``bounds``), no
        ``variable_attrs`` and coordinates without ``spacing`` / ``boundary``.

        Raises
        ------
        SchemaError
            Naming the entry that has the wrong type or value.
        """
        if not isinstance(raw, Mapping):
            raise SchemaError(f"a data schema must be a mapping, got {type(raw).__name__}")
        kind = raw.get("kind") or ("pointwise" if "bounds" in raw else "fields")
        attrs = _mapping(raw, "variable_attrs")
        variables = {}
        for name, dims in _mapping(raw, "variables").items():
            dims = _strings(dims, f"variables.{name}")
            extra = attrs.get(name) if isinstance(attrs.get(name), Mapping) else {}
            variables[str(name)] = Variable(
                str(name), tuple(d for d in dims if d != "sample"),
                str(extra.get("units") or "1"), str(extra.get("long_name") or ""), _component(name, extra.get("component")),
            )
        coords = {str(name): _coordinate(str(name), info) for name, info in _mapping(raw, "coords").items()}
        bounds = {}
        if raw.get("bounds") is not None:
            names = _strings(raw.get("coordinates") or [], "coordinates")
            boxes = raw["bounds"]
            if not isinstance(boxes, list) or len(boxes) != len(names):
                raise SchemaError(f"bounds must be one [low, high] per coordinate {names}, got {boxes!r}")
            for name, box in zip(names, boxes):
                if not (isinstance(box, list) and len(box) == 2 and all(_is_number(v) for v in box)):
                    raise SchemaError(f"bounds of {name!r} must be [low, high], got {box!r}")
                bounds[name] = (float(box[0]), float(box[1]))
        shape = raw.get("spatial_shape") or []
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise SchemaError(f"spatial_shape must be a list of positive integers, got {shape!r}")
        problem = raw.get("problem")
        if problem is not None and not isinstance(problem, Mapping):
            raise SchemaError(f"problem must be a mapping, got {type(problem).__name__}")
        window = raw.get("window")
        if window is not None and not (
            isinstance(window, Mapping)
            and all(isinstance(window.get(k), int) and window[k] >= 1 for k in ("n_steps_input", "n_steps_output"))
            and all(isinstance(window.get(k), list) for k in ("inputs", "targets"))
            and isinstance(window.get("components", {}), Mapping)
        ):
            raise SchemaError(f"window must name inputs, targets and positive n_steps_input, n_steps_output; got {window!r}")
        for name, component in (window or {}).get("components", {}).items():
            _component(f"window.components.{name}", component)  # a SchemaError when malformed
        reader = raw.get("reader")
        if reader is not None and not (isinstance(reader, Mapping) and isinstance(reader.get("name"), str)):
            raise SchemaError(f"reader must be a mapping with a 'name', got {reader!r}")
        source_dims = raw.get("source_dims")  # absent from checkpoints written before imports recorded it
        if source_dims is not None and not is_dim_mapping(source_dims):
            raise SchemaError(f"source_dims must map dim names to the source's dim names (strings), got {source_dims!r}")
        return cls(
            kind=str(kind),  # checked by __post_init__
            pde=str(raw.get("pde") or ""),
            inputs=_strings(raw.get("inputs") or [], "inputs"),
            targets=_strings(raw.get("targets") or [], "targets"),
            variables=variables,
            coords=coords,
            spatial_dims=_strings(raw.get("spatial_dims") or [], "spatial_dims"),
            spatial_shape=tuple(shape),
            input_time=_optional_int(raw, "input_time"),
            target_time=_optional_int(raw, "target_time"),
            state=_strings(raw.get("state") or [], "state"),
            conditioning=_strings(raw.get("conditioning") or [], "conditioning"),
            n_steps=_optional_int(raw, "n_steps"),
            time_stride=_optional_int(raw, "time_stride"),
            n_times=_optional_int(raw, "n_times"),
            bounds=bounds,
            problem=dict(problem) if problem is not None else None,
            eval_resolution=_resolution(raw.get("eval_resolution"), len(bounds)),
            schema_version=str(raw.get("schema_version") or ""),
            source=str(raw.get("data_dir") or ""),
            reader=dict(reader) if reader is not None else None,
            window=dict(window) if window is not None else None,
            source_dims=dict(source_dims) if source_dims is not None else None,
        )


def is_dim_mapping(value: Any) -> bool:
    """Whether ``value`` maps dim names to dim names (non-empty strings), each name of the source used once, as
    :attr:`DataSchema.source_dims` does."""
    return (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items())
        and len(set(value.values())) == len(value)
    )


def window_channel(name: str, step: int) -> str:
    """The channel of variable ``name`` at ``step`` of a time window (``u``, 2 -> ``u_t2``), see ``DataSchema.window``."""
    return f"{name}_t{step}"


# -- reading helpers --------------------------------------------------------------------------------
def _variable_attrs(var: Variable) -> dict[str, Any]:
    out: dict[str, Any] = {"units": var.units, "long_name": var.long_name}
    if var.component is not None:
        out["component"] = {"field": var.component.field, "label": var.component.label, "dim": var.component.dim}
    return out


def _component(name: str, raw: Any) -> Component | None:
    if raw is None:
        return None
    if not (isinstance(raw, Mapping) and all(isinstance(raw.get(k), str) and raw.get(k) for k in ("field", "label", "dim"))):
        where = name if name.startswith("window.") else f"variable_attrs.{name}.component"
        raise SchemaError(f"{where} must name a field, label and dim, got {raw!r}")
    return Component(raw["field"], raw["label"], raw["dim"])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise SchemaError(f"{key} must be a mapping, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise SchemaError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _optional_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(f"{key} must be an integer or null, got {value!r}")
    return value


def _resolution(value: Any, dims: int = 0) -> int | tuple[int, ...] | None:
    """A reference grid's resolution: points per dim, one number for every dim (``dims`` of them, the
    coordinates of ``bounds``; at least one) or one per dim; at most :data:`MAX_EVAL_POINTS` points in all."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        sizes = [value] * max(dims, 1)
    elif isinstance(value, list) and value and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value):
        sizes = value
    else:
        raise SchemaError(f"eval_resolution must be a positive integer or a list of them, got {value!r}")
    if math.prod(sizes) > MAX_EVAL_POINTS:
        raise SchemaError(f"eval_resolution {value!r} makes a grid of {math.prod(sizes)} points, more than {MAX_EVAL_POINTS}")
    return value if isinstance(value, int) else tuple(value)


def _coordinate(name: str, info: Any) -> Coordinate:
    if not isinstance(info, Mapping):
        raise SchemaError(f"coords.{name} must be a mapping, got {type(info).__name__}")
    size = info.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SchemaError(f"coords.{name}.size must be a non-negative integer, got {size!r}")
    numbers = {}
    for key in ("min", "max", "spacing"):
        value = info.get(key)
        if value is not None and not _is_number(value):
            raise SchemaError(f"coords.{name}.{key} must be a finite number or null, got {value!r}")
        numbers[key] = float(value) if value is not None else None
    boundary = info.get("boundary", "bounded")
    if boundary not in BOUNDARIES:
        raise SchemaError(f"coords.{name}.boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return Coordinate(
        name, size, str(info.get("units") or "1"), str(info.get("long_name") or ""),
        numbers["min"], numbers["max"], numbers["spacing"], boundary,
    )
