"""Reading a NetCDF request body: the model's inputs, their coordinates and units, checked from the header
before any data is read."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from surrogates.serve.codecs.body_limits import CHUNK_BOOKKEEPING, MAX_CHUNKS, check_deadline
from surrogates.serve.codecs.netcdf_body import NetcdfBody, NetcdfHeader, as_malformed
from surrogates.serve.codecs.netcdf_writing import check_answerable, writable_attrs
from surrogates.serve.errors import ServiceError, name_list, unprocessable
from surrogates.serve.inputs import InputError, declared_units, input_time_index

def read_netcdf(
    body: bytes | NetcdfBody,
    specs: Mapping[str, Sequence[str]],
    max_elements: int,
    max_decoded_bytes: int | None = None,
    sample_dims: Sequence[str] = ("sample",),
    components: Mapping[str, Any] | None = None,
    max_chunks: int = MAX_CHUNKS,
    deadline: float = math.inf,
    timeout_s: float | None = None,
    time_dims: Sequence[str] = (),
    input_time: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], str, str, dict[str, str], dict[str, str | None]]:
    """The model's input variables of a NetCDF body, read after their sizes were checked in the header.

    Only the inputs (``specs``: name -> dims without ``"sample"``), the coordinates of their dims and the
    labels of a vector field's components are described and decoded; other variables are never read, whatever
    they hold. Before any data is read, every input must have the dims of its layout, a numeric dtype and at
    most ``max_elements`` values (all inputs together too); every variable to read must keep its data in
    the body, touch at most ``max_chunks`` HDF5 chunks (all of them together too), and all of them together
    must decompress to at most ``max_decoded_bytes`` (default: 8 bytes per allowed value).

    ``sample_dims``: the names a body may give its sample dim (``sample``, and the name in the model's
    training data when it was trained on a file of the user's, ``data=xarray``); one body uses one of them.

    ``components``: input name -> its :class:`~surrogates.schema.Component` for inputs that are components of a
    vector field. A body may send the field in its own layout instead, ``velocity (sample, x, y, component)``
    for ``velocity_x``, ``velocity_y``: it is checked like any input (dims, size) and split into the components
    by the labels of its component coordinate (else the labels are read as indices ``0, 1, ...``).

    ``time_dims``, ``input_time``: a model trained on the state at ``input_time`` of trajectories also takes an
    input with one of ``time_dims`` before its own dims (after the sample dim), ``u (sample, time, x, y)``: only the
    state at ``input_time`` is read (:func:`~surrogates.serve.inputs.input_time_index`, as ``Surrogate.predict``
    picks it), and the time coordinate is not. Without ``input_time`` a time dim is refused (422 ``wrong_dims``).

    ``deadline``: ``time.monotonic()`` past which decoding stops with 504 ``deadline_exceeded`` (checked between
    the header and the data, and between variables), naming ``timeout_s``.

    Returns
    -------
    arrays, coords, engine, sample_dim, fields, units
        float32 arrays per input transposed to ``(sample_dim, *dims)`` or ``dims``, the coordinates
        (numpy, with the attributes an answer can store) of the dims used, to be written back with the answer,
        the xarray engine, the body's name of its sample dim (to answer with), the fields sent whole
        (field -> component dim), and the ``units`` attribute of each variable read as the body names it
        (``None``: none declared), for :func:`~surrogates.serve.inputs.check_units`.

    Raises
    ------
    ServiceError
        400 for an unreadable body; 413 beyond ``max_variables``, ``max_attributes``, ``max_elements`` or
        ``max_decoded_bytes``; 422
        for missing inputs, wrong dims or dtypes, data outside the body, more than ``max_chunks`` chunks, or a
        coordinate the answer could not store; 504 past ``deadline``.
    """
    parsed = body if isinstance(body, NetcdfBody) else NetcdfBody(body)
    decoded = 8 * max_elements if max_decoded_bytes is None else max_decoded_bytes
    limits = _Limits(max_elements, decoded, max_chunks, parsed.max_attributes)
    components = {name: c for name, c in (components or {}).items() if name in specs}
    with parsed.opened() as header:
        plan = _plan(header, specs, components, sample_dims, limits, time_dims if input_time is not None else (), input_time)
        check_deadline(deadline, timeout_s)
        arrays, coords, labels, units = _decode(header, plan, limits.decoded_bytes - plan.decoded, deadline, timeout_s)
    _split_fields(arrays, coords, labels, plan.fields, components)
    check_answerable(coords, header.engine)
    return arrays, coords, header.engine, plan.sample_dim, plan.fields, units


def _split_fields(
    arrays: dict[str, np.ndarray], coords: dict[str, Any], labels: Mapping[str, list[str]], fields: Mapping[str, str],
    components: Mapping[str, Any],
) -> None:
    """Replace each field sent whole in ``arrays`` by its components, picked by label (the label variable's, the
    component coordinate's, else ``0, 1, ...``); the labels become the component dim's coordinate if it has none."""
    for field, dim in fields.items():
        values = arrays.pop(field)
        names = labels.get(dim) or ([str(v) for v in np.asarray(coords[dim][0]).tolist()] if dim in coords else [])
        names = names or [str(k) for k in range(values.shape[-1])]
        for name, component in components.items():
            if component.field == field and component.dim == dim:
                if component.label not in names[: values.shape[-1]]:  # labels beyond the field's size name nothing
                    raise unprocessable(
                        "missing_input", f"field {field!r} has no component {component.label!r} along {dim!r} (it has {name_list(names)})"
                    )
                arrays[name] = np.ascontiguousarray(values[..., names.index(component.label)])
        coords.setdefault(dim, (np.asarray(names), {}))


@dataclass(frozen=True)
class _Limits:
    elements: int
    decoded_bytes: int
    chunks: int
    attributes: int


@dataclass(frozen=True)
class _Plan:
    """What :func:`read_netcdf` reads, checked: the inputs (name -> dims in the answer's order), the coordinates
    of their dims, the component labels of the fields sent whole, and the bytes that reading them decodes."""

    orders: dict[str, list[str]]
    times: dict[str, tuple[str, int]]
    """Inputs sent as trajectories -> their time dim and the index of the state read (at ``input_time``)."""
    fields: dict[str, str]
    sample_dim: str
    coordinates: list[str]
    labels: list[str]
    decoded: int


def _plan(
    header: NetcdfHeader, specs: Mapping[str, Sequence[str]], components: Mapping[str, Any], sample_dims: Sequence[str],
    limits: _Limits, time_dims: Sequence[str] = (), input_time: int | None = None,
) -> _Plan:
    """Every check of :func:`read_netcdf` that the header answers, before any data is read."""
    specs, fields = _whole_fields(specs, header, components)
    missing = [name for name in specs if name not in header]
    if missing:
        raise unprocessable("missing_input", f"the NetCDF body lacks input variable(s) {missing}; it has {name_list(sorted(header))}")
    named = [dim for dim in dict.fromkeys(sample_dims) if any(dim in header[name].dims for name in specs)]
    if len(named) > 1:
        raise unprocessable("wrong_dims", f"the inputs use both {named[0]!r} and {named[1]!r} as their sample dim; use one")
    sample_dim = named[0] if named else sample_dims[0]
    orders, times = _check_inputs(header, specs, sample_dim, limits.elements, time_dims)
    # a trajectory's time coordinate is not the answer's: the answer holds one state (or its own rollout steps)
    used_dims = dict.fromkeys(dim for name, order in orders.items() for dim in order if dim != times.get(name))
    coordinates = [dim for dim in used_dims if dim in header and header[dim].dims == (dim,) and header[dim].dtype.kind in "fiuMmSUb"]
    labels = _label_variables(header, fields, coordinates)
    decoded = _check_reads(header, [*orders, *coordinates, *labels], limits)
    return _Plan(orders, _time_indices(header, times, input_time), fields, sample_dim, coordinates, labels, decoded)


def _time_indices(header: NetcdfHeader, times: Mapping[str, str], input_time: int | None) -> dict[str, tuple[str, int]]:
    """Each trajectory's time dim and the index of the state at ``input_time``, or 422 as ``Surrogate.predict`` refuses it."""
    indices = {}
    for name, dim in times.items():
        try:
            indices[name] = (dim, input_time_index(name, input_time, header[name].shape[header[name].dims.index(dim)]))
        except InputError as error:
            raise unprocessable(error.code, str(error)) from None
    return indices


def _check_inputs(
    header: NetcdfHeader, specs: Mapping[str, Sequence[str]], sample_dim: str, max_elements: int, time_dims: Sequence[str] = ()
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each input's dims in the answer's order, after its dims, dtype, storage and size were checked; and the
    inputs sent as trajectories along one of ``time_dims`` -> that dim."""
    orders, times, total_elements = {}, {}, 0
    for name, dims in specs.items():
        var = header[name]
        time = next((dim for dim in time_dims if dim in var.dims and dim not in dims and dim != sample_dim), None)
        allowed = (sample_dim, *((time,) if time else ()), *dims)
        if len(var.dims) > len(allowed) or len(set(var.dims)) != len(var.dims) or set(var.dims) - set(allowed) or not set(dims) <= set(var.dims):
            raise unprocessable(
                "wrong_dims",
                f"variable {name!r} has dims {var.dims}; expected {allowed} (or {tuple(dims)} for one sample)",
            )
        if var.dtype.kind not in "fiu":
            raise unprocessable("invalid_array", f"variable {name!r} has dtype {var.dtype}; expected numbers")
        total_elements += var.elements
        if var.elements > max_elements or total_elements > max_elements:
            raise ServiceError(
                413, "too_many_values",
                f"the NetCDF input variable(s) hold {total_elements} values (variable {name!r}: shape {var.shape}); "
                f"the limit is {max_elements} (max_elements)",
            )
        orders[name] = [dim for dim in allowed if dim in var.dims]
        if time:
            times[name] = time
    return orders, times


def _label_variables(header: NetcdfHeader, fields: Mapping[str, str], coordinates: Sequence[str]) -> list[str]:
    """The variables naming the components of the fields sent whole (other than numeric coordinates), checked:
    numbers or strings."""
    labels = []
    for field, dim in fields.items():
        if dim in coordinates or dim in labels or dim not in header or header[dim].dims != (dim,):
            continue
        var = header[dim]
        if var.dtype.kind not in "fiuSU" and not var.text:
            raise unprocessable(
                "invalid_array", f"variable {dim!r}, the labels of the components of field {field!r}, has dtype {var.dtype}; "
                "expected numbers or strings",
            )
        labels.append(dim)
    return labels


def _check_reads(header: NetcdfHeader, names: Sequence[str], limits: _Limits) -> int:
    """The bytes that reading ``names`` decodes, after each was checked to keep its data in the body, to have few
    enough attributes and to touch few enough chunks; 413 when the bytes exceed the limit."""
    chunks = decoded = attributes = 0
    for name in dict.fromkeys(names):
        var = header[name]
        if var.stored is not None and (len(var.stored) != len(var.shape) or any(s > n for s, n in zip(var.stored, var.shape))):
            raise unprocessable(
                "wrong_dims",
                f"variable {name!r} holds data of shape {var.stored}, more than the sizes of its dims {var.dims}, "
                f"{var.shape}; send dims that fit its data",
            )
        attributes += var.attributes
        if attributes > limits.attributes:
            raise ServiceError(
                413, "too_many_attributes",
                f"the NetCDF variables to read hold {attributes} attributes (variable {name!r}: {var.attributes}); the "
                f"limit is {limits.attributes} (max_attributes)",
            )
        chunks += var.chunks_read
        if var.chunks_read > limits.chunks or chunks > limits.chunks:
            others = f" ({chunks} with the other variables read)" if chunks != var.chunks_read else ""
            raise unprocessable(
                "too_many_chunks",
                f"variable {name!r} is stored in chunks of shape {var.chunks}: reading it touches {var.chunks_read} chunks"
                f"{others}; the limit is {limits.chunks} (max_chunks): send it contiguous or in larger chunks",
            )
        decoded += var.decoded_bytes
    if decoded > limits.decoded_bytes:
        raise ServiceError(
            413, "too_many_values",
            f"reading the NetCDF inputs would decompress {decoded} bytes (whole chunks and HDF5's {CHUNK_BOOKKEEPING} "
            f"bytes per chunk, with coordinates and component labels); the limit is {limits.decoded_bytes} bytes "
            "(max_decoded_bytes)",
        )
    return decoded


def _decode(
    header: NetcdfHeader, plan: _Plan, budget: int, deadline: float, timeout_s: float | None
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, list[str]], dict[str, str | None]]:
    """The planned variables' data: float32 inputs, coordinates with their attributes, component labels, the
    inputs' ``units`` attributes.
    ``budget``: the bytes left for variable-length strings, which the header cannot size."""
    texts = [dim for dim in plan.labels if header[dim].text]
    keep = [*plan.orders, *plan.coordinates, *(dim for dim in plan.labels if dim not in texts)]
    arrays, units = {}, {}
    with header.dataset(keep) as ds, as_malformed():
        for name, order in plan.orders.items():
            check_deadline(deadline, timeout_s)
            var = ds[name]
            units[name] = declared_units(var.attrs)
            if name in plan.times:  # a trajectory: read the state at input_time only
                dim, index = plan.times[name]
                var, order = var.isel({dim: index}), [d for d in order if d != dim]
            values = var.transpose(*order).values
            if values.dtype.kind not in "fiu":  # e.g. decoded to another kind by CF conventions
                raise unprocessable("invalid_array", f"variable {name!r} has dtype {values.dtype}; expected numbers")
            with np.errstate(over="ignore"):
                arrays[name] = values.astype(np.float32)
        coords = {
            dim: (ds[dim].values, writable_attrs(ds[dim].attrs))
            for dim in plan.coordinates
            if dim in ds.variables and ds[dim].dims == (dim,)  # CF decoding can fold a char array into a string
        }
        labels = {dim: [str(v) for v in np.asarray(ds[dim].values).tolist()] for dim in keep if dim in plan.labels}
    for dim in texts:
        check_deadline(deadline, timeout_s)
        labels[dim] = header.strings(dim, budget)
    return arrays, coords, labels, units


def _whole_fields(
    specs: Mapping[str, Sequence[str]], header: Mapping[str, Any], components: Mapping[str, Any]
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The variables to read: inputs sent as components, and for inputs sent as a whole vector field (not as
    components, the field with its component dim last in the body) the field with dims ``(*dims, component dim)``."""
    out: dict[str, tuple[str, ...]] = {}
    fields: dict[str, str] = {}
    for name, dims in specs.items():
        component = components.get(name)
        field = header.get(component.field) if component is not None and name not in header else None
        if field is not None and field.dims[-1:] == (component.dim,):
            out[component.field] = (*dims, component.dim)
            fields[component.field] = component.dim
        else:
            out[name] = tuple(dims)
    return out, fields
