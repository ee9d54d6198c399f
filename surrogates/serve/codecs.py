"""Request and response bodies: JSON arrays <-> numpy, NetCDF bytes <-> xarray.

Every decoding error is a :class:`~surrogates.serve.errors.ServiceError` whose message names the
variable, the shape or the byte-level problem, so that a client can fix its request:

- malformed JSON or NetCDF bytes: 400;
- well-formed bodies with wrong content (unknown or missing variables, ragged or non-numeric arrays,
  wrong dims): 422.

Values travel as float32 (the models' dtype). In JSON, a float32 is written as the shortest decimal
that reads back as the same float64, which converts back to the same float32: JSON answers are
exact, bit for bit.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from surrogates.data.hdf5_storage import find_stored_elsewhere
from surrogates.serve.errors import ServiceError, bad_request, unprocessable
from surrogates.serve.schemas import PredictRequest

try:  # optional: fast, exact float32 JSON
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

JSON_MEDIA_TYPE = "application/json"
NETCDF_MEDIA_TYPE = "application/x-netcdf"
NETCDF_MEDIA_TYPES = (NETCDF_MEDIA_TYPE, "application/netcdf", "application/x-hdf5", "application/x-hdf")
"""Content types read as NetCDF (NetCDF-4/HDF5 or classic NetCDF-3, told apart by the file signature)."""

log = logging.getLogger("surrogates.serve")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02")


def body_kind(content_type: str | None) -> str:
    """``"json"`` or ``"netcdf"`` from a Content-Type header (no header: JSON); 415 otherwise."""
    media = (content_type or JSON_MEDIA_TYPE).split(";")[0].strip().lower()
    if media == JSON_MEDIA_TYPE or media.endswith("+json"):
        return "json"
    if media in NETCDF_MEDIA_TYPES:
        return "netcdf"
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {media!r}: send {JSON_MEDIA_TYPE!r} (JSON arrays) or {NETCDF_MEDIA_TYPE!r} (a NetCDF file)",
    )


# -- JSON -----------------------------------------------------------------------------------------
def parse_json_request(body: bytes) -> PredictRequest:
    """Validate a JSON predict request (400 when it is not JSON, 422 when its structure is wrong)."""
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            detail = problems[0].get("ctx", {}).get("error") or problems[0]["msg"]
            raise bad_request("malformed_json", f"the body is not valid JSON: {detail}") from None
        if any(p["type"] == "model_type" for p in problems):
            raise unprocessable("invalid_request", 'the JSON body must be an object like {"inputs": {"a": [[...]]}}') from None
        messages = [f"{'.'.join(str(part) for part in p['loc']) or 'body'}: {p['msg']}" for p in problems[:5]]
        raise unprocessable("invalid_request", "invalid request: " + "; ".join(messages)) from None


def json_array(name: str, value: Any) -> np.ndarray:
    """A nested JSON list (or a number) as a float32 array, refusing ragged, non-numeric and out-of-range data."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        kind = "null" if value is None else type(value).__name__
        raise unprocessable("invalid_array", f"input {name!r} must be a number or nested arrays of numbers, got {kind}")
    by_items = _items_as_float32(value)
    if by_items is not None:
        return by_items
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as error:
        raise unprocessable(
            "invalid_array",
            f"input {name!r} is not a rectangular array (nested lists of different lengths?): {error}",
        ) from None
    if array.dtype.kind not in "fiu":
        what = "booleans" if array.dtype.kind == "b" else "nulls, strings or values of several kinds"
        if array.dtype.kind == "O" and _is_ragged(value):
            what = "nested lists of different lengths (not a rectangular array)"
        raise unprocessable("invalid_array", f"input {name!r} must hold only numbers; it holds {what}")
    with np.errstate(over="ignore"):
        return array.astype(np.float32)


ITEMWISE_VALUES = 1 << 16
"""JSON arrays of at least this many numbers are converted one outer item at a time (:func:`json_array`)."""


def _items_as_float32(value: Any) -> np.ndarray | None:
    """A nested list of numbers converted one outer item at a time (the same float32 values as converting it
    whole), or ``None`` when it is not a list of equally shaped numeric lists (then the whole conversion
    finds the error and names it).

    One ``np.asarray`` of millions of numbers is one C call that holds the GIL for a few hundred ms (the
    event loop stalls even when decoding runs in a thread); item by item, other threads run between items.
    Integers go through float64 as in a whole conversion, so the results are the same bits.
    """
    if not isinstance(value, list) or len(value) < 2 or not isinstance(value[0], list):
        return None
    size, inner = 1, value
    while isinstance(inner, list) and inner:  # the size if the array is rectangular: a cheap estimate
        size, inner = size * len(inner), inner[0]
    if size < ITEMWISE_VALUES:  # converting it whole is faster and stalls nothing for long
        return None
    parts, shape = [], None
    for item in value:
        try:
            part = np.asarray(item)
        except (ValueError, OverflowError):
            return None
        if part.dtype.kind not in "fiu" or (shape is not None and part.shape != shape):
            return None
        shape = part.shape
        with np.errstate(over="ignore"):
            parts.append(part.astype(np.float64, copy=False).astype(np.float32))
    return np.stack(parts)


def release_nested(value: Any) -> None:
    """Empty a parsed JSON array one outer item at a time, so that freeing it lets other threads run.

    Freeing a nested list of millions of numbers at once is one C-level cascade that holds the GIL
    (about 0.2 s for 8 million numbers), stalling the event loop; item by item, the interpreter can
    switch threads between two items (one sample, or one row, each).
    """
    while isinstance(value, list) and value:
        del value[-1]


def _is_ragged(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    kinds = {isinstance(item, list) for item in value}
    if len(kinds) > 1:
        return True
    if kinds == {True}:
        return len({len(item) for item in value}) > 1 or any(_is_ragged(item) for item in value)
    return False


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """JSON bytes of a payload whose leaves may be numpy arrays (written as nested lists, exactly).

    With ``orjson`` installed (the ``serve`` extra), float32 arrays are written natively, each value
    as the shortest decimal that reads back as the same float32 (about 20x faster than the standard
    library for a 64x64 field); otherwise as float64 reprs, which are exact too.
    """
    if orjson is not None:
        return orjson.dumps(payload, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(payload, default=_json_default, allow_nan=False, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # non-contiguous or of a dtype orjson does not write
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# -- NetCDF ---------------------------------------------------------------------------------------
def netcdf_engine(body: bytes) -> str:
    """The xarray engine for a NetCDF body, from its signature: ``h5netcdf`` (NetCDF-4) or ``scipy`` (NetCDF-3)."""
    if body.startswith(HDF5_SIGNATURE):
        return "h5netcdf"
    if body.startswith(NETCDF3_SIGNATURES):
        return "scipy"
    if body.startswith(b"CDF\x05"):
        raise bad_request("malformed_netcdf", "64-bit-data NetCDF (CDF-5) is not supported; send NetCDF-4 or classic NetCDF-3")
    raise bad_request(
        "malformed_netcdf",
        "the body is not a NetCDF file: it starts with neither the HDF5 signature (NetCDF-4) nor 'CDF' (NetCDF-3)",
    )


@dataclass(frozen=True)
class NetcdfVariable:
    """What a NetCDF file's header says about one variable (nothing of its data is read)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def decoded_bytes(self) -> int:
        """Bytes produced by reading the whole variable: for a chunked (compressed) variable every chunk it
        touches is decompressed whole, so a chunk larger than the variable counts in full."""
        itemsize = max(int(self.dtype.itemsize), 1)
        if not self.chunks:
            return self.elements * itemsize
        touched = math.prod(-(-n // c) for n, c in zip(self.shape, self.chunks)) if self.elements else 0
        return touched * math.prod(self.chunks) * itemsize


def netcdf_header(body: bytes, engine: str) -> dict[str, NetcdfVariable]:
    """Every variable of a NetCDF body with its dims, shape, dtype and chunks, read from the header only.

    NetCDF-4 (HDF5) bodies are opened with ``h5netcdf``, which reads metadata and no variable data, after h5py
    walked their links (:func:`~surrogates.data.hdf5_storage.find_stored_elsewhere`): a body with an object whose
    data live outside it (an external link, an external or virtual dataset) is refused with 422 before anything
    of it is read, since reading it would read files of the server. NetCDF-3 bodies are uncompressed, so
    whatever scipy reads is bounded by the body's size.
    """
    if engine == "h5netcdf":
        import h5netcdf
        import h5py

        with h5py.File(io.BytesIO(body), "r") as raw:
            elsewhere = find_stored_elsewhere(raw)
            if elsewhere is not None:  # the message names no server path
                raise unprocessable("invalid_array", _ELSEWHERE.format(name=elsewhere.name))
            # the attribute h5netcdf's constructor reads first: a corrupt one fails here, not inside that
            # constructor, which would leave a half-built File whose finalizer raises AttributeError
            raw.attrs.get("_nc3_strict")
            with h5netcdf.File(raw, "r") as f:
                return {
                    str(name): NetcdfVariable(
                        str(name), tuple(map(str, var.dimensions)), tuple(int(n) for n in var.shape),
                        np.dtype(var.dtype) if not isinstance(var.dtype, type) else np.dtype(object),
                        tuple(int(c) for c in var.chunks) if var.chunks else None,
                    )
                    for name, var in f.variables.items()
                }
    from scipy.io import netcdf_file

    with netcdf_file(io.BytesIO(body), "r", mmap=False) as f:
        return {
            str(name): NetcdfVariable(str(name), tuple(map(str, var.dimensions)), tuple(int(n) for n in var.shape), np.dtype(var.data.dtype))
            for name, var in f.variables.items()
        }


_ELSEWHERE = (
    "variable {name!r} keeps its data outside the body (an HDF5 external link, external or virtual dataset); "
    "send a file that holds its data"
)


class NetcdfBody:
    """A NetCDF request body whose header is parsed once, however many times it is asked for.

    The service looks at a body's variable names first (which layout did the client send?) and then reads
    it (:func:`read_netcdf`); both take this object, so the header (``h5netcdf`` walking the HDF5 metadata)
    is read a single time.
    """

    def __init__(self, body: bytes):
        self.body = body
        self._header: dict[str, NetcdfVariable] | None = None

    @property
    def engine(self) -> str:
        return netcdf_engine(self.body)

    def header(self) -> dict[str, NetcdfVariable]:
        """Every variable of the body (:func:`netcdf_header`); 400 ``malformed_netcdf`` when unreadable."""
        if self._header is None:
            self._header = _checked_header(self.body, self.engine)
        return self._header

    def variable_names(self) -> set[str]:
        """The names of the body's variables, from its header."""
        return set(self.header())


def read_netcdf(
    body: bytes | NetcdfBody,
    specs: Mapping[str, Sequence[str]],
    max_elements: int,
    max_decoded_bytes: int | None = None,
    sample_dims: Sequence[str] = ("sample",),
    components: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], str, str, dict[str, str]]:
    """The model's input variables of a NetCDF body, read after their sizes were checked in the header.

    Only the inputs (``specs``: name -> dims without ``"sample"``) and the coordinates of their dims
    are decoded; other variables are never read, whatever they hold. Before any data is read, every
    input must have the dims of its layout, a numeric dtype and at most ``max_elements`` values
    (all inputs together too), and the bytes that reading decompresses (whole chunks, inputs and
    coordinates together) must stay within ``max_decoded_bytes`` (default: 8 bytes per allowed value).

    ``sample_dims``: the names a body may give its sample dim (``sample``, and the name in the model's
    training data when it was trained on a file of the user's, ``data=xarray``); one body uses one of them.

    ``components``: input name -> its :class:`~surrogates.schema.Component` for inputs that are components of a
    vector field. A body may send the field in its own layout instead, ``velocity (sample, x, y, component)``
    for ``velocity_x``, ``velocity_y``: it is checked like any input (dims, size) and split into the components
    by the labels of its component coordinate (else the labels are read as indices ``0, 1, ...``).

    Returns
    -------
    arrays, coords, engine, sample_dim, fields
        float32 arrays per input transposed to ``(sample_dim, *dims)`` or ``dims``, the coordinates
        (numpy, with attrs) of the dims used, to be written back with the answer, the xarray engine,
        the body's name of its sample dim (to answer with), and the fields sent whole (field -> component dim).
    """
    import xarray as xr

    parsed = body if isinstance(body, NetcdfBody) else NetcdfBody(body)
    body, engine = parsed.body, parsed.engine
    limit = 8 * max_elements if max_decoded_bytes is None else max_decoded_bytes
    header = parsed.header()
    components = {name: c for name, c in (components or {}).items() if name in specs}
    specs, fields = _whole_fields(specs, header, components)
    missing = [name for name in specs if name not in header]
    if missing:
        raise unprocessable("missing_input", f"the NetCDF body lacks input variable(s) {missing}; it has {sorted(header)}")
    orders, used_dims, total_elements, total_bytes = {}, set(), 0, 0
    named = [dim for dim in dict.fromkeys(sample_dims) if any(dim in header[name].dims for name in specs)]
    sample_dim = named[0] if named else sample_dims[0]
    if len(named) > 1:
        raise unprocessable("wrong_dims", f"the inputs use both {named[0]!r} and {named[1]!r} as their sample dim; use one")
    for name, dims in specs.items():
        var = header[name]
        allowed = (sample_dim, *dims)
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
        total_bytes += var.decoded_bytes
        orders[name] = [dim for dim in allowed if dim in var.dims]
        used_dims.update(orders[name])
    coord_names = [dim for dim in used_dims if dim in header and header[dim].dims == (dim,) and header[dim].dtype.kind in "fiuMmSUb"]
    total_bytes += sum(header[dim].decoded_bytes for dim in coord_names)
    if total_bytes > limit:
        raise ServiceError(
            413, "too_many_values",
            f"reading the NetCDF inputs would decompress {total_bytes} bytes (whole chunks, with coordinates); "
            f"the limit is {limit} bytes (max_decoded_bytes)",
        )
    labelled = [dim for dim in fields.values() if dim in header and header[dim].dims == (dim,) and dim not in coord_names]
    keep = set(specs) | set(coord_names) | set(labelled)
    try:
        with xr.open_dataset(io.BytesIO(body), engine=engine, drop_variables=[n for n in header if n not in keep]) as ds:
            arrays = {}
            for name, order in orders.items():
                values = ds[name].transpose(*order).values
                if values.dtype.kind not in "fiu":  # e.g. decoded to datetimes by CF conventions
                    raise unprocessable("invalid_array", f"variable {name!r} has dtype {values.dtype}; expected numbers")
                with np.errstate(over="ignore"):
                    arrays[name] = values.astype(np.float32)
            coords = {dim: (ds.coords[dim].values, dict(ds.coords[dim].attrs)) for dim in coord_names if dim in ds.coords}
            labels = {dim: [str(v) for v in np.asarray(ds[dim].values).tolist()] for dim in labelled if dim in ds.variables}
    except ServiceError:
        raise
    except Exception as error:
        log.info("unreadable NetCDF body: %s: %s", type(error).__name__, error)
        raise bad_request("malformed_netcdf", "cannot read the NetCDF body (truncated or corrupt?)") from None
    for field, dim in fields.items():
        values = arrays.pop(field)
        names = labels.get(dim) or ([str(v) for v in np.asarray(coords[dim][0]).tolist()] if dim in coords else [])
        names = names or [str(k) for k in range(values.shape[-1])]
        for name, component in components.items():
            if component.field == field and component.dim == dim:
                if component.label not in names:
                    raise unprocessable("missing_input", f"field {field!r} has no component {component.label!r} along {dim!r} (it has {names})")
                arrays[name] = np.ascontiguousarray(values[..., names.index(component.label)])
        coords.setdefault(dim, (np.asarray(names), {}))
    return arrays, coords, engine, sample_dim, fields


def _checked_header(body: bytes, engine: str) -> dict[str, NetcdfVariable]:
    try:
        return netcdf_header(body, engine)
    except ServiceError:
        raise
    except Exception as error:  # h5py, h5netcdf and scipy raise many types for truncated or corrupt files
        log.info("unreadable NetCDF body: %s: %s", type(error).__name__, error)
        raise bad_request("malformed_netcdf", "cannot read the NetCDF body (truncated or corrupt?)") from None


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


def write_netcdf(
    variables: Mapping[str, tuple[Sequence[str], np.ndarray]],
    coords: Mapping[str, tuple[np.ndarray, dict]],
    attrs: Mapping[str, Any],
    engine: str,
) -> bytes:
    """NetCDF bytes (NetCDF-4 with ``h5netcdf``, NetCDF-3 with ``scipy``) of the answer's variables."""
    import xarray as xr

    data_vars = {name: (tuple(dims), values) for name, (dims, values) in variables.items()}
    all_dims = {dim for dims, _ in variables.values() for dim in dims}
    coord_vars = {}
    for dim, (values, coord_attrs) in coords.items():
        if dim in all_dims:
            coord_vars[dim] = xr.Variable((dim,), values, coord_attrs)
    ds = xr.Dataset(data_vars, coords=coord_vars, attrs={k: _netcdf_attr(v) for k, v in attrs.items()})
    return bytes(ds.to_netcdf(engine=engine))


def _netcdf_attr(value: Any) -> Any:
    if isinstance(value, (str, int, float, np.number)):
        return value
    return json.dumps(value)
