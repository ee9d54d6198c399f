"""The one check of a model's inputs, used by every entry point with the same messages.

The service (:meth:`~surrogates.serve.entries.ModelEntry.prepare`), :class:`~surrogates.serve.surrogate.Surrogate`
(numpy, xarray and tensors) and :class:`~surrogates.serve.rollout.RolloutSurrogate` all check inputs here, once
per request: named arrays against the model's input :class:`~surrogates.schema.Variable` list
(:func:`check_layout`, :func:`check_finite`, then :func:`stack` into one ``(n, C, *spatial)`` batch), or
one stacked array against the channel layout (:func:`split_channels`, :func:`check_channels`).
An :class:`InputError` carries the service's error code; the Python API raises it as the ``ValueError`` it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from surrogates.schema import Coordinate, DataSchema, Variable, window_channel
from surrogates.serve.errors import ServiceError, name_list

__all__ = [
    "InputError", "Layout", "check_channels", "check_domain", "check_finite", "check_layout", "check_numbers", "check_units",
    "check_xarray_coordinates", "declared_units", "dims_named_as_sent", "input_time_index", "named_as_sent", "predicted_attrs",
    "sent_dim_names", "source_dim_names", "split_channels", "stack", "trained_dim_names",
]


class InputError(ValueError):
    """Inputs that do not fit a model. ``code``: ``wrong_shape``, ``non_finite``, ``missing_input``, ``unknown_input``,
    ``invalid_array``, ``wrong_domain``, ``wrong_dims``, ``too_few_times``, ``wrong_units``."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Layout:
    """How request arrays map onto a batch: one sample or ``n``, the grid, scalars sent once for all samples."""

    single: bool
    n: int
    spatial_shape: tuple[int, ...]
    broadcast: frozenset[str] = frozenset()


def _shape(shape: Iterable[int]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def check_layout(
    model: str,
    variables: Sequence[Variable],
    arrays: Mapping[str, np.ndarray],
    spatial_dims: Sequence[str],
    ignored: Iterable[str] = (),
) -> Layout:
    """Check named input arrays against a model's input variables.

    Each array is one sample ``(*dims)`` or a batch ``(n, *dims)``, all alike; a scalar variable may be
    sent as one number for every sample.

    Parameters
    ----------
    model
        The model's name, for messages.
    variables
        The model's inputs in channel order (``dims`` of one sample).
    arrays
        Name -> array.
    spatial_dims
        The grid's dims, in order.
    ignored
        Names accepted and not used.

    Raises
    ------
    InputError
        Unknown or missing variables, values other than real numbers, wrong shapes, disagreeing sample counts or
        grid sizes, no samples.
    """
    names = [v.name for v in variables]
    unknown = sorted(set(arrays) - set(names) - set(ignored))
    if unknown:
        raise InputError("unknown_input", f"model {model!r} has no input(s) {name_list(unknown)}; its inputs are {names}")
    missing = [name for name in names if name not in arrays]
    if missing:
        raise InputError("missing_input", f"model {model!r} needs input(s) {missing}; its inputs are {names}")
    for name in names:
        check_numbers(name, arrays[name])
    # a number for a scalar input (e.g. a time step) goes with every sample when fields carry the sample dim
    broadcast = {v.name for v in variables if not v.dims and np.ndim(arrays[v.name]) == 0}
    if len(broadcast) == len(variables) or not any(v.dims for v in variables):
        broadcast = set()
    singles, counts, sizes = set(), set(), {}
    for var in variables:
        if var.name in broadcast:
            continue
        array, d = arrays[var.name], len(var.dims)
        if np.ndim(array) not in (d, d + 1):
            layout = ", ".join(var.dims)
            raise InputError(
                "wrong_shape",
                f"input {var.name!r} has shape {_shape(np.shape(array))}; model {model!r} expects "
                f"(n{', ' + layout if layout else ''}) for n samples or ({layout}) for one sample",
            )
        single = np.ndim(array) == d
        singles.add(single)
        counts.add(1 if single else np.shape(array)[0])
        for dim, size in zip(var.dims, np.shape(array)[np.ndim(array) - d :]):
            sizes.setdefault(dim, set()).add(int(size))
    if len(singles) > 1:
        raise InputError("wrong_shape", "send every input with a leading sample dim, or none of them (one sample)")
    if len(counts) > 1:
        raise InputError("wrong_shape", f"inputs disagree on the number of samples: {sorted(counts)}")
    n = counts.pop()
    if n == 0:
        raise InputError("wrong_shape", "the request holds no samples (a leading dim of size 0)")
    disagreeing = {dim: sorted(values) for dim, values in sizes.items() if len(values) > 1}
    if disagreeing:
        raise InputError("wrong_shape", f"inputs disagree on grid sizes: {disagreeing}")
    spatial_shape = tuple(next(iter(sizes[dim])) for dim in spatial_dims if dim in sizes)
    return Layout(singles.pop(), n, spatial_shape, frozenset(broadcast))


FLOAT32_EPS = float(np.finfo(np.float32).eps)

UNIFORM_RTOL = 1e-3
"""How far a step of a request's grid may differ from the mean step (relative) and still count as uniform."""


def check_domain(
    model: str, coords: Mapping[str, Coordinate], dims: Sequence[str], given: Mapping[str, Any]
) -> None:
    """Refuse a request whose spatial coordinates cover another domain than the trained one.

    Resolution-agnostic: a coordinate of ``n`` points passes when it is a uniform grid whose ends lie within one
    grid step (the larger of the request's and the trained step) of the trained domain's ends, so that nodes and
    cell centres of any resolution of the same domain pass, and a shifted or rescaled (other units) domain does not.
    The ends of a periodic grid are its first point and the first point's image ``first + n * h``; of a bounded
    one its first and last points.

    Parameters
    ----------
    model
        The model's name, for messages.
    coords
        The trained coordinates (``DataSchema.coords``); a dim without one, or without an extent, is not checked.
    dims
        The spatial dims to check.
    given
        The request's coordinates: dim -> 1D values; a dim the request gives no coordinate for is not checked
        (the trained grid is assumed), nor a coordinate of fewer than two points or of non-numbers.

    Raises
    ------
    InputError
        ``wrong_domain``, naming the dim, the request's span and the trained one.
    """
    for dim in dims:
        trained = coords.get(dim)
        if trained is None or trained.min is None or trained.max is None or given.get(dim) is None:
            continue
        values = np.asarray(given[dim])
        if values.ndim != 1 or len(values) < 2 or values.dtype.kind not in "fiu":
            continue
        _check_axis(model, trained, values.astype(np.float64))


def _span(first: float, step: float, n: int, boundary: str) -> tuple[float, float]:
    """The ends of a grid of ``n`` points from ``first`` by ``step``: a periodic grid ends at the first point's image."""
    return first, first + step * (n if boundary == "periodic" else n - 1)


def _check_axis(model: str, trained: Coordinate, values: np.ndarray) -> None:
    n = len(values)
    step = (values[-1] - values[0]) / (n - 1)
    # Coordinates sent in float32 are rounded to half an ulp, about 6e-8 * |value| each: a difference of two
    # of them is off by up to 2 ulps of the largest value. Allow 4 (and a UNIFORM_RTOL of the step) so that the
    # trained grid written in float32 passes; a real shift or rescaling is a whole step or more.
    roundoff = 4 * FLOAT32_EPS * float(np.max(np.abs(values)))
    uniform = step != 0 and np.all(np.abs(np.diff(values) - step) <= UNIFORM_RTOL * abs(step) + roundoff)
    trained_step = trained.spacing_at(trained.size) or 0.0
    lo, hi = _span(trained.min, trained_step, trained.size, trained.boundary)
    first, last = _span(float(values[0]), step, n, trained.boundary)
    tolerance = max(abs(step), trained_step) + roundoff + 4 * FLOAT32_EPS * max(abs(lo), abs(hi))
    if uniform and abs(first - lo) <= tolerance and abs(last - hi) <= tolerance:
        return
    units = f" {trained.units}" if trained.units and trained.units != "1" else ""
    shape = "" if uniform else "a non-uniform grid "
    raise InputError(
        "wrong_domain",
        f"model {model!r}: coordinate {trained.name!r} of the request spans {shape}[{first:.6g}, {last:.6g}]; the model "
        f"was trained on {trained.name!r} in [{lo:.6g}, {hi:.6g}]{units} ({trained.boundary}), and takes any grid "
        "covering that domain to within one step at each end",
    )


DIMENSIONLESS = frozenset({"", "1", "-", "dimensionless"})
"""Spellings of "no units" that compare equal (the schema records a variable without units as ``"1"``)."""


def declared_units(attrs: Mapping[str, Any]) -> str | None:
    """The ``units`` attribute of a request's variable or coordinate as text; ``None`` when it declares none."""
    units = attrs.get("units")
    if units is None:
        return None
    return units.decode("utf-8", "replace") if isinstance(units, bytes) else str(units)


def _normalized_units(units: str) -> str:
    """``units`` stripped, every spelling of dimensionless as ``"1"``: units are compared as text, never converted."""
    text = units.strip()
    return "1" if text.lower() in DIMENSIONLESS else text


def check_units(
    model: str, schema: DataSchema | None, variables: Mapping[str, str | None], coords: Mapping[str, str | None] | None = None
) -> None:
    """Refuse a request that declares other units than the model was trained on.

    Without it a pressure sent in ``kPa`` to a model trained in ``Pa`` would be answered 1000x off, silently.
    Units are compared as text after stripping whitespace (``"1"``, ``""``, ``"-"`` and ``"dimensionless"`` are
    the same); nothing is converted. What the request does not declare, or the schema does not record, passes, and
    so does any declared unit of a variable trained as ``"1"`` (what data without a units attribute record too).

    Parameters
    ----------
    model
        The model's name, for messages.
    schema
        The model's data schema; ``None``: nothing is checked.
    variables
        The request's variables as sent (an input, a window's stored variable, a vector field sent whole) -> their
        ``units`` attribute (:func:`declared_units`); compared with :meth:`~surrogates.schema.DataSchema.units_of`.
    coords
        The request's spatial (and, for models on time windows, time) coordinates -> their ``units``; compared with
        the schema's coordinate of that name.

    Raises
    ------
    InputError
        ``wrong_units``, naming the variable or coordinate, the request's units and the trained ones.
    """
    if schema is None:
        return
    for name, units in variables.items():
        _check_one(model, "variable", name, units, schema.units_of(name))
    for dim, units in (coords or {}).items():
        trained = schema.coords.get(dim)
        _check_one(model, "coordinate", dim, units, trained.units if trained is not None else None)


def _check_one(model: str, what: str, name: str, given: str | None, trained: str | None) -> None:
    # A trained "1" is also what data without a units attribute record, so it cannot tell "dimensionless" from
    # "not recorded": a unit declared against it is taken (refusing would turn away every request with units to a
    # model trained on a file without them).
    if given is None or trained is None or _normalized_units(trained) == "1":
        return
    if _normalized_units(given) == _normalized_units(trained):
        return
    raise InputError(
        "wrong_units",
        f"model {model!r}: {what} {name!r} of the request is in units {given.strip()!r}; the model was trained on "
        f"{name!r} in {trained.strip()!r} (units are compared as written, not converted: convert the values and "
        "their units attribute, or send none)",
    )


def check_xarray_coordinates(
    model: str, schema: DataSchema, data: Any, variables: Mapping[str, str | None], unit_dims: Sequence[str],
    spatial_dims: Sequence[str],
) -> None:
    """The units and domain checks of an xarray request (``Surrogate.predict``, ``RolloutSurrogate.rollout``).

    :func:`check_units` on the ``variables`` read (name -> ``units`` attribute) and on the coordinates of
    ``unit_dims`` of ``data`` (an ``xarray.Dataset`` or ``DataArray``), then :func:`check_domain` on its
    coordinates of ``spatial_dims``; dims without coordinates pass. The service checks NetCDF bodies with the same
    two functions (``ModelEntry.check_body_units``, ``ModelEntry.check_grid``).

    Raises
    ------
    InputError
        ``wrong_units`` or ``wrong_domain``.
    """
    coords = {dim: declared_units(data.coords[dim].attrs) for dim in unit_dims if dim in data.coords}
    check_units(model, schema, variables, coords)
    given = {dim: data.coords[dim].values for dim in spatial_dims if dim in data.coords}
    check_domain(model, schema.coords, spatial_dims, given)


def trained_dim_names(source_dims: Mapping[str, str] | None, dims: Iterable[str], taken: Iterable[str]) -> dict[str, str]:
    """The renaming of an input's dims from the user's source file to the trained ones (``run, t, lon`` -> ``sample,
    time, x``) for a model trained on data imported from it (``DataSchema.source_dims``): ``{"run": "sample", ...}``.

    A dim is renamed only when the input has it (``dims``) under the source's name and no dim or variable of the
    input is already called by the trained name (``taken``), so inputs in the platform's names pass unchanged (and
    are answered in them); nothing is renamed for other models. ``Surrogate.predict`` and the service's NetCDF
    bodies both rename with it, and answer with :func:`source_dim_names` of the result.
    """
    dims, taken = set(dims), set(taken)
    return {
        theirs: ours for ours, theirs in (source_dims or {}).items()
        if theirs != ours and theirs in dims and ours not in taken
    }


def source_dim_names(renames: Mapping[str, str]) -> dict[str, str]:
    """The renaming of an answer back to the names its input was sent in: the inverse of :func:`trained_dim_names`'s
    result (``{"sample": "run", ...}``)."""
    return {ours: theirs for theirs, ours in renames.items()}


def sent_dim_names(source_dims: Mapping[str, str] | None, renames: Mapping[str, str], dims: Iterable[str]) -> dict[str, str]:
    """How a request's messages name the trained dims: the names it was sent in (:func:`source_dim_names` of
    ``renames``, :func:`trained_dim_names`'s result) and, for a request in the source file's names, those of the
    source's dims it lacks (``dims``: the request's dims as sent), so that a missing ``lon`` is called ``lon``.
    Empty for a request in the platform's names: its messages are left as they are."""
    if not renames:
        return {}
    dims = set(dims)
    lacking = {
        ours: theirs for ours, theirs in (source_dims or {}).items() if theirs != ours and not {ours, theirs} & dims
    }
    return {**lacking, **source_dim_names(renames)}


def named_as_sent(message: str, names: Mapping[str, str]) -> str:
    """``message`` with the trained dims it names called as the request sent them (``names``: trained -> sent,
    :func:`sent_dim_names`), so that a request in the dim names of a model's source file is refused in them.

    A dim is named in the checks' messages quoted (``'x'``, in a tuple or a dict too), bare in a layout in
    parentheses (``(n, 1, x)``) or, for the sample and time dims, as ``its time dim``; each becomes the sent name
    (``'lon'``, ``(n, 1, lon)``, ``its time dim 't'``). Without ``names`` the message is returned as it is.
    """
    if not names:
        return message
    dims = "|".join(re.escape(dim) for dim in sorted(names, key=len, reverse=True))
    message = re.sub(rf"(['\"])({dims})\1", lambda m: f"{m.group(1)}{names[m.group(2)]}{m.group(1)}", message)
    message = re.sub(
        r"\(([^()]*)\)", lambda m: "(" + ", ".join(names.get(part, part) for part in m.group(1).split(", ")) + ")", message
    )
    return re.sub(rf"\b({dims}) dim\b(?! ')", lambda m: f"{m.group(1)} dim {names[m.group(1)]!r}", message)


@contextmanager
def dims_named_as_sent(names: Mapping[str, str]) -> Iterator[None]:
    """Refuse the request checked in the block in its own dim names: an :class:`InputError` (or other
    ``ValueError``) or a :class:`~surrogates.serve.errors.ServiceError` raised there is raised again, its code and
    status unchanged, its message :func:`named_as_sent` with ``names`` (trained -> sent; empty: unchanged).

    ``Surrogate.predict``, ``RolloutSurrogate.rollout`` and the service's NetCDF bodies check a request in the
    source file's dim names (``DataSchema.source_dims``) after renaming it to the trained ones; each checks it in
    this block, so that the message names ``lon`` where the request sent ``lon``.
    """
    try:
        yield
    except (ValueError, ServiceError) as error:
        if names and error.args and isinstance(error.args[0], str):
            error.args = (named_as_sent(error.args[0], names), *error.args[1:])
            if isinstance(error, ServiceError):
                error.message = error.args[0]
        raise


def input_time_index(name: str, input_time: int | None, n_times: int) -> int:
    """Which state of a trajectory a one-state model takes: the one at the trained ``input_time``.

    A model trained on the state at ``input_time`` of trajectories (``DataSchema.input_time``) takes the
    trajectories as stored, in ``Surrogate.predict`` and over HTTP alike; both pick the state here.

    Parameters
    ----------
    name
        The input variable, for messages.
    input_time
        The schema's ``input_time`` (``None``: the model was trained on no time index).
    n_times
        The length of the variable's time dim.

    Returns
    -------
    int
        The index along the time dim (a negative ``input_time`` counts from the end, as in training).

    Raises
    ------
    InputError
        ``wrong_dims`` when the model takes no time index, ``too_few_times`` when the trajectory is too short.
    """
    if input_time is None:
        raise InputError(
            "wrong_dims", f"variable {name!r} has a time dim but the model was trained on no time index (input_time); send one state"
        )
    if not -n_times <= input_time < n_times:
        raise InputError(
            "too_few_times",
            f"variable {name!r} has {n_times} state(s) along its time dim; the model takes the state at input_time={input_time}",
        )
    return int(input_time)


def predicted_attrs(schema: DataSchema | None, name: str) -> dict[str, str]:
    """Attributes of a predicted variable in every answer (Python and HTTP): its long name, and the trained
    target's ``units`` when the schema records them (:meth:`~surrogates.schema.DataSchema.units_of`)."""
    units = schema.units_of(name) if schema is not None else None
    return {"long_name": f"predicted {name}", **({"units": units} if units is not None else {})}


def check_numbers(name: str, values: Any, what: str = "input") -> None:
    """Raise :class:`InputError` (``invalid_array``) unless ``values`` are real numbers (floats or integers):
    complex values would lose their imaginary part in float32, and booleans, strings and objects are no numbers."""
    dtype = np.asarray(values).dtype
    if dtype.kind not in "fiu":
        raise InputError("invalid_array", f"{what} {name!r} has dtype {dtype}; expected real numbers (floats or integers)")


def non_finite_message(name: str, bad_samples: Sequence[int]) -> str:
    """The message of every non-finite input, naming the variable and the first bad samples."""
    return (
        f"input {name!r} contains NaN or infinite values (samples {list(bad_samples)[:10]}; values beyond "
        "float32's range, about 3.4e38, count as infinite); nothing was predicted"
    )


def check_finite(variables: Sequence[Variable], arrays: Mapping[str, np.ndarray], layout: Layout) -> None:
    """Raise :class:`InputError` (``non_finite``) naming the first input with a NaN or infinite value, in float32
    (the models' dtype): a float64 value beyond float32's range counts as infinite."""
    for var in variables:
        array = np.asarray(arrays[var.name])
        with np.errstate(over="ignore"):
            finite = np.isfinite(array.astype(np.float32, copy=False))
        if not finite.all():
            rows = 1 if array.ndim == len(var.dims) else array.shape[0]
            bad = np.flatnonzero(~finite.reshape(rows, -1).all(axis=1)).tolist()
            raise InputError("non_finite", non_finite_message(var.name, bad))


def stack(variables: Sequence[Variable], arrays: Mapping[str, np.ndarray], layout: Layout) -> np.ndarray:
    """Checked arrays as one float32 batch ``(n, C_in, *spatial)``; a scalar per sample fills a constant channel."""
    n, spatial_shape = layout.n, layout.spatial_shape
    x = np.empty((n, len(variables), *spatial_shape), dtype=np.float32)
    for k, var in enumerate(variables):
        array = np.asarray(arrays[var.name])
        array = np.broadcast_to(array, (n,)) if var.name in layout.broadcast else array
        per_sample = array.shape[array.ndim - len(var.dims) :]  # () for a scalar
        x[:, k] = array.reshape((n, *per_sample, *(1,) * (len(spatial_shape) - len(per_sample))))
    return x


def layout_message(shape: Sequence[int], names: Sequence[str], spatial_dims: Sequence[str]) -> str:
    """Why a stacked array does not fit: the layouts a model of ``names`` channels on ``spatial_dims`` takes."""
    spatial = ", ".join(spatial_dims)
    return (
        f"input of shape {_shape(shape)} does not match the model: expected (n, {len(names)}, {spatial}) "
        f"with channels [{', '.join(names)}], or (n, {spatial}) / ({spatial}) when there is one input variable"
    )


def split_channels(
    x: np.ndarray, names: Sequence[str], spatial_dims: Sequence[str]
) -> tuple[dict[str, np.ndarray], bool, bool]:
    """One stacked array as named arrays: ``(*spatial)`` or ``(n, *spatial)`` for one variable, ``(C, *spatial)``
    or ``(n, C, *spatial)`` for ``C`` variables.

    Returns
    -------
    arrays, single, channel_axis
        Name -> ``(n, *spatial)`` array; whether one sample was given; whether the array had a channel axis.

    Raises
    ------
    InputError
        ``wrong_shape`` when the array fits none of the layouts.
    """
    d, c = len(spatial_dims), len(names)
    x = np.asarray(x)
    if x.ndim == d and c == 1:
        return {names[0]: x[None]}, True, False
    if x.ndim == d + 1 and c == 1:
        return {names[0]: x}, False, False
    if x.ndim == d + 1 and c > 1 and x.shape[0] == c:
        return {name: x[None, k] for k, name in enumerate(names)}, True, True
    if x.ndim == d + 2 and x.shape[1] == c:
        return {name: x[:, k] for k, name in enumerate(names)}, False, True
    raise InputError("wrong_shape", layout_message(x.shape, names, spatial_dims))


def check_channels(x: Any, names: Sequence[str], spatial_dims: Sequence[str]) -> None:
    """Check a batch tensor (``torch.Tensor``) ``(n, C, *spatial)``: the channel layout and finite values, with the messages above.

    Raises
    ------
    InputError
        ``invalid_array`` (complex or boolean values), ``wrong_shape`` or ``non_finite``.
    """
    import torch

    if x.is_complex() or x.dtype == torch.bool:
        raise InputError(
            "invalid_array", f"the input tensor (channels [{', '.join(names)}]) has dtype {x.dtype}; expected real numbers"
        )
    if x.ndim != len(spatial_dims) + 2 or x.shape[1] != len(names):
        raise InputError("wrong_shape", layout_message(tuple(x.shape), names, spatial_dims))
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad_channel = int((~finite).transpose(0, 1).reshape(x.shape[1], -1).any(dim=1).nonzero()[0])
        bad = (~finite[:, bad_channel]).reshape(x.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        raise InputError("non_finite", non_finite_message(names[bad_channel], bad))


def last_states(name: str, values: np.ndarray, n_in: int, axis: int) -> dict[str, np.ndarray]:
    """The last ``n_in`` states of ``values`` along ``axis`` as a windowed model's channels, oldest first:
    ``u (n, T, *spatial)`` -> ``u_t0 ... (n, *spatial)`` (the caller checks that ``T >= n_in``)."""
    return {window_channel(name, k): np.take(values, values.shape[axis] - n_in + k, axis=axis) for k in range(n_in)}


def next_times(times: np.ndarray, n: int) -> np.ndarray | None:
    """The ``n`` times after ``times``, continued with its last step; ``None`` unless ``times`` is a numeric
    1D coordinate of at least two values."""
    times = np.asarray(times)
    if times.ndim != 1 or len(times) < 2 or not np.issubdtype(times.dtype, np.number):
        return None
    return times[-1] + (times[-1] - times[-2]) * np.arange(1, n + 1)
