"""Request and response bodies: JSON arrays <-> numpy, NetCDF bytes <-> xarray.

Every decoding error is a :class:`~surrogates.serve.errors.ServiceError` whose message names the
variable, the shape or the byte-level problem, so that a client can fix its request:

- malformed JSON or NetCDF bytes: 400;
- bodies beyond the service's limits (values, decoded bytes, variables, attributes): 413, checked from
  a NetCDF body's header before its data is read;
- well-formed bodies with wrong content (unknown or missing variables, ragged or non-numeric arrays,
  wrong dims, too many HDF5 chunks): 422;
- a body still decoding at the request's deadline: 504.

Values travel as float32 (the models' dtype). In JSON, a float32 is written as the shortest decimal
that reads back as the same float64, which converts back to the same float32: JSON answers are
exact, bit for bit.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from surrogates.data.hdf5_storage import find_stored_elsewhere, netcdf_view
from surrogates.data import read_limits
from surrogates.serve.errors import ServiceError, bad_request, name_list, unprocessable
from surrogates.serve.inputs import InputError, declared_units, input_time_index
from surrogates.serve.codecs.json_bodies import (  # the names the service and tests import from codecs
    ITEMWISE_VALUES,
    encode_json,
    json_array,
    parse_json_request,
    release_nested,
)
from surrogates.serve.codecs.media_types import JSON_MEDIA_TYPE, NETCDF_MEDIA_TYPE, NETCDF_MEDIA_TYPES, body_kind

log = logging.getLogger("surrogates.serve")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02")


# -- NetCDF ---------------------------------------------------------------------------------------
MAX_VARIABLES = 1000
"""Default of ``max_variables``: most variables of a NetCDF body (of a NetCDF-4 body: objects in its root group)."""

MAX_ATTRIBUTES = 1000
"""Default of ``max_attributes``: most attributes read from a NetCDF body: those of the variables a request reads
(NetCDF-4: xarray reads each in about 0.4 ms), or all of them (NetCDF-3: scipy parses every one, about 10 us each)."""

MAX_CHUNKS = 1 << 16
"""Default of ``max_chunks``: most HDF5 chunks that reading a NetCDF body's variables may touch. HDF5 spends
about 15 us and 4 KiB of bookkeeping on every chunk it reads, however small the chunk (measured: 65536 chunks
of one value, about 1 s and 240 MiB)."""

CHUNK_BOOKKEEPING = 4096
"""Bytes HDF5 holds per chunk while it reads a chunked variable (measured: about 3.8 KiB, whatever the chunk's
size), counted in the decoded bytes with the chunks' data."""

DECODING = {"decode_times": False, "decode_timedelta": False}
"""How xarray decodes a body: CF masking and scaling, but times stay the numbers the file holds (with their
``units``), so that coordinates are echoed unchanged and every time axis can be written back."""


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
    text: bool = False
    """Variable-length strings (HDF5): how many bytes they hold is known only once they are read."""
    attributes: int = 0
    """How many attributes reading the variable reads (NetCDF-4; NetCDF-3 headers are checked whole)."""
    stored: tuple[int, ...] | None = None
    """The shape of the data an HDF5 dataset holds, where it differs from its dims' sizes (``shape``, which is
    what h5netcdf reports): xarray would read a larger dataset whole, whatever its dims say."""

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def header_facts(self) -> read_limits.StoredArray:
        """The variable as :mod:`surrogates.data.read_limits` measures a stored array (shape, dtype, chunks)."""
        return read_limits.StoredArray(self.name, self.shape, str(self.dtype), max(int(self.dtype.itemsize), 1), self.chunks)

    @property
    def chunks_read(self) -> int:
        """HDF5 chunks that reading the whole variable touches (none for contiguous data, or no values)."""
        return read_limits.chunks_touched(self.header_facts, None)

    @property
    def decoded_bytes(self) -> int:
        """Bytes produced by reading the whole variable: for a chunked (compressed) variable every chunk it
        touches is decompressed whole, so a chunk larger than the variable counts in full, and HDF5's
        bookkeeping of each chunk (:data:`CHUNK_BOOKKEEPING`) counts too."""
        return read_limits.decoded_bytes(self.header_facts, None) + self.chunks_read * CHUNK_BOOKKEEPING


class NetcdfHeader(Mapping[str, NetcdfVariable]):
    """The variables of an open NetCDF body by name. Each is described (dims, shape, dtype, chunks, where its
    data lives) when first looked up, so that the variables a request does not need cost nothing."""

    engine = ""

    def __init__(self, names: Iterable[str]):
        self._names = dict.fromkeys(names)
        self._described: dict[str, NetcdfVariable] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, name: str) -> NetcdfVariable:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._described:
            with _as_malformed():
                self._described[name] = self._describe(name)
        return self._described[name]

    def _describe(self, name: str) -> NetcdfVariable:
        raise NotImplementedError

    def dataset(self, keep: Sequence[str]) -> AbstractContextManager[Any]:
        """The variables ``keep`` as an ``xarray.Dataset`` (CF-decoded as :data:`DECODING` says), data read on access."""
        raise NotImplementedError

    def strings(self, name: str, budget: int) -> list[str]:
        """The variable-length strings of ``name`` (only NetCDF-4 has them)."""
        raise NotImplementedError

    def dim_names(self) -> list[str]:
        """The names of the body's dims, from the header alone (no variable is described)."""
        raise NotImplementedError


class _Hdf5Header(NetcdfHeader):
    """The variables of a NetCDF-4 body open with h5netcdf."""

    engine = "h5netcdf"

    def __init__(self, file: Any, body_size: int):
        super().__init__(str(name) for name in file.variables)
        self._file, self._body_size = file, body_size

    def _describe(self, name: str) -> NetcdfVariable:
        import h5py

        var = self._file.variables[name]
        dtype = np.dtype(var.dtype) if not isinstance(var.dtype, type) else np.dtype(object)
        shape, stored = tuple(int(n) for n in var.shape), tuple(int(n) for n in var._h5ds.shape)
        return NetcdfVariable(
            name, tuple(map(str, var.dimensions)), shape, dtype,
            tuple(int(c) for c in var.chunks) if var.chunks else None,
            text=var.dtype is str or h5py.check_vlen_dtype(dtype) in (str, bytes),
            attributes=int(h5py.h5o.get_info(var._h5ds.id).num_attrs),
            stored=None if stored == shape else stored,
        )

    @contextmanager
    def dataset(self, keep: Sequence[str]) -> Iterator[Any]:
        import xarray as xr

        with _as_malformed():
            # not closed here: closing it would close the h5netcdf file, which the header's block closes
            yield xr.open_dataset(_selected_store(self._file, keep), **DECODING)

    def dim_names(self) -> list[str]:
        with _as_malformed():
            return [str(name) for name in self._file.dimensions]

    def strings(self, name: str, budget: int) -> list[str]:
        """The strings of ``name`` read a block at a time, refusing (413) more than ``budget`` bytes of them.

        The header cannot tell their size: each element points at a heap object, and many elements may point
        at the same one. An object is at most the body's size, so a block of ``budget // body size`` elements
        decodes at most ``budget`` bytes whatever the elements point at."""
        block, used, out = max(1, budget // max(self._body_size, 1)), 0, []
        with _as_malformed():
            data = self._file.variables[name]._h5ds
            for start in range(0, int(data.shape[0]), block):
                items = [item if isinstance(item, bytes) else str(item).encode() for item in data[start : start + block]]
                used += sum(len(item) for item in items)
                if used > budget:
                    raise ServiceError(
                        413, "too_many_values",
                        f"the strings of variable {name!r} hold more than {budget} bytes, the room that "
                        "max_decoded_bytes leaves after the inputs and coordinates",
                    )
                out += [item.decode("utf-8", "replace") for item in items]
        return out


def _selected_store(file: Any, keep: Sequence[str]) -> Any:
    """An xarray store of an open h5netcdf file that opens only the variables ``keep`` and no global attributes:
    xarray's own store opens every variable (about 3 ms each), however few are read."""
    from xarray.backends import H5NetCDFStore

    class SelectedStore(H5NetCDFStore):
        __slots__ = ()

        def get_variables(self) -> dict[str, Any]:
            variables = self.ds.variables
            return {name: self.open_store_variable(name, variables[name]) for name in keep}

        def get_attrs(self) -> dict[str, Any]:
            return {}  # never used, and attributes can be large

    return SelectedStore(file)


class _ClassicHeader(NetcdfHeader):
    """The variables of a NetCDF-3 body, from :func:`classic_header`."""

    engine = "scipy"

    def __init__(self, body: bytes, variables: Mapping[str, NetcdfVariable]):
        super().__init__(variables)
        self._body, self._variables = body, variables

    def _describe(self, name: str) -> NetcdfVariable:
        return self._variables[name]

    def dim_names(self) -> list[str]:
        return list(dict.fromkeys(dim for var in self._variables.values() for dim in var.dims))

    @contextmanager
    def dataset(self, keep: Sequence[str]) -> Iterator[Any]:
        # scipy copies every variable's data on opening: at most the body's length, as classic_header checked
        import xarray as xr

        kept = set(keep)
        drop = [name for name in self if name not in kept]
        with _as_malformed():
            ds = xr.open_dataset(io.BytesIO(self._body), engine="scipy", drop_variables=drop, **DECODING)
        with ds:
            yield ds


class _RenamedHeader(NetcdfHeader):
    """Another header with some dims (and the variables of the same name, their coordinates) renamed, as
    ``xarray.Dataset.rename`` renames them: a body in the dim names of a model's source file read in the trained ones."""

    def __init__(self, inner: NetcdfHeader, renames: Mapping[str, str]):
        super().__init__(renames.get(name, name) for name in inner)
        self.engine = inner.engine
        self._inner, self._renames = inner, dict(renames)
        self._originals = {new: old for old, new in self._renames.items()}

    def _describe(self, name: str) -> NetcdfVariable:
        var = self._inner[self._originals.get(name, name)]
        return replace(var, name=name, dims=tuple(self._renames.get(dim, dim) for dim in var.dims))

    @contextmanager
    def dataset(self, keep: Sequence[str]) -> Iterator[Any]:
        with self._inner.dataset([self._originals.get(name, name) for name in keep]) as ds:
            present = set(ds.dims) | set(ds.variables)
            yield ds.rename({old: new for old, new in self._renames.items() if old in present})

    def strings(self, name: str, budget: int) -> list[str]:
        return self._inner.strings(self._originals.get(name, name), budget)

    def dim_names(self) -> list[str]:
        return [self._renames.get(dim, dim) for dim in self._inner.dim_names()]


@contextmanager
def _hdf5_header(body: bytes, max_variables: int) -> Iterator[NetcdfHeader]:
    import h5py

    with h5py.File(io.BytesIO(body), "r") as raw:
        # h5netcdf's constructor opens every object of the root group: count them first (one HDF5 call)
        _check_count(len(raw), max_variables, "objects in its root group (variables, dimensions, groups)")
        # and it would follow an external link to a file of the server: walk the links first, following none
        elsewhere = find_stored_elsewhere(raw)
        if elsewhere is not None:  # the message names no server path
            raise unprocessable("invalid_array", _ELSEWHERE.format(name=elsewhere.name))
        with netcdf_view(raw) as f:  # a corrupt root attribute fails in it, not in a half-built File
            yield _Hdf5Header(f, len(body))


def _check_count(count: int, limit: int, what: str, setting: str = "max_variables") -> None:
    if count > limit:
        raise ServiceError(
            413, f"too_many_{setting.removeprefix('max_')}", f"the NetCDF body holds {count} {what}; the limit is {limit} ({setting})"
        )


@contextmanager
def _as_malformed() -> Iterator[None]:
    """Errors of h5py, h5netcdf, scipy and xarray on a truncated or corrupt body as 400 ``malformed_netcdf`` (the
    exception is logged, not answered)."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as error:  # the readers raise many types for truncated or corrupt files
        log.info("unreadable NetCDF body: %s: %s", type(error).__name__, error)
        raise bad_request("malformed_netcdf", "cannot read the NetCDF body (truncated or corrupt?)") from None


_ELSEWHERE = (
    "variable {name!r} keeps its data outside the body (an HDF5 external link, external or virtual dataset); "
    "send a file that holds its data"
)


class NetcdfBody:
    """A NetCDF request body, whose variable names are listed once however many times they are asked for.

    The service looks at a body's variable names first (which layout did the client send?) and then reads
    it (:func:`read_netcdf`), which describes and decodes only the variables it needs. A body of more than
    ``max_variables`` variables is refused (413 ``too_many_variables``) before anything walks them: opening a
    NetCDF-4 file costs HDF5 about 0.3 ms per object of its root group. ``max_attributes`` bounds the attributes
    read (413 ``too_many_attributes``): a NetCDF-3 body's all, checked here, a NetCDF-4 body's of the variables
    :func:`read_netcdf` reads.
    """

    def __init__(self, body: bytes, max_variables: int = MAX_VARIABLES, max_attributes: int = MAX_ATTRIBUTES):
        self.body = body
        self.max_variables = max_variables
        self.max_attributes = max_attributes
        self.renames: dict[str, str] = {}
        """Dims read under other names (the body's -> the model's), see :meth:`rename_dims`."""
        self._names: list[str] | None = None
        self._dims: list[str] | None = None
        self._classic: dict[str, NetcdfVariable] | None = None

    @property
    def engine(self) -> str:
        return netcdf_engine(self.body)

    def variable_names(self) -> set[str]:
        """The names of the body's variables, from its header; 400 ``malformed_netcdf`` when unreadable."""
        self._list_names()
        return set(self._names or ())

    def dim_names(self) -> set[str]:
        """The names of the body's dims, from its header (listed with :meth:`variable_names`)."""
        self._list_names()
        return set(self._dims or ())

    def _list_names(self) -> None:
        if self._names is None:
            with self.opened() as header:
                self._names, self._dims = list(header), header.dim_names()

    def rename_dims(self, renames: Mapping[str, str]) -> None:
        """Read the body with its dims ``renames`` (the body's name -> the model's) renamed, and the variables of
        those names (their coordinates): a body in the dim names of a model's source file read in the trained
        ones (:func:`~surrogates.serve.inputs.trained_dim_names`). Call it before :func:`read_netcdf`."""
        self.renames = dict(renames)
        if self._names is not None and self._dims is not None:  # the lists as the renamed header gives them
            self._names = [self.renames.get(name, name) for name in self._names]
            self._dims = [self.renames.get(dim, dim) for dim in self._dims]

    @contextmanager
    def opened(self) -> Iterator[NetcdfHeader]:
        """The body's header, open while the block runs; 400 ``malformed_netcdf`` when it cannot be read, 413
        ``too_many_variables`` beyond ``max_variables``."""
        stack = ExitStack()
        with _as_malformed():
            if self.engine == "h5netcdf":
                header: NetcdfHeader = stack.enter_context(_hdf5_header(self.body, self.max_variables))
            else:
                if self._classic is None:
                    self._classic = classic_header(self.body, self.max_variables, self.max_attributes)
                header = _ClassicHeader(self.body, self._classic)
            if self.renames:
                header = _RenamedHeader(header, self.renames)
        try:
            yield header
        finally:
            with _as_malformed():
                stack.close()


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
    _check_answerable(coords, header.engine)
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


def check_deadline(deadline: float, timeout_s: float | None) -> None:
    """504 ``deadline_exceeded`` once ``time.monotonic()`` is past ``deadline``, while a body is decoded."""
    if time.monotonic() > deadline:
        raise ServiceError(
            504, "deadline_exceeded",
            f"the request did not finish within {timeout_s or 0:g} s (request_timeout_s); decoding its body was stopped",
        )


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
    with header.dataset(keep) as ds, _as_malformed():
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


_TEXT_ONLY_ATTRS = frozenset({"bounds", "coordinates"})  # name other variables: xarray's writer reads them as text
_WRITER_ATTRS = frozenset({"_FillValue"})  # the writer sets it from the values' dtype


def writable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a NetCDF answer can store: strings, numbers and numeric vectors. Others that an HDF5 file
    can hold (object references, compound values, booleans, nested or empty values) are left out, and so are
    attributes xarray's writer interprets that would make it fail (a ``bounds`` that is not text)."""
    return {str(key): value for key, value in attrs.items() if _writable_attr(str(key), value)}


def _writable_attr(key: str, value: Any) -> bool:
    if key in _WRITER_ATTRS:
        return False
    if key in _TEXT_ONLY_ATTRS:
        return isinstance(value, str)
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return True
    return isinstance(value, np.ndarray) and value.ndim <= 1 and value.size > 0 and value.dtype.kind in "iuf"


_CLASSIC_STORED = frozenset(np.dtype(t) for t in ("i1", "i2", "i4", "f4", "f8", "S1", "?"))


def _check_answerable(coords: Mapping[str, tuple[np.ndarray, dict]], engine: str) -> None:
    """Refuse (422) a coordinate that the answer, a file of the body's kind, could not store, before the model
    runs: the answer echoes the coordinates. A coordinate of a dtype the format surely stores (the attributes are
    :func:`writable_attrs`) is not tried; others (e.g. a NetCDF-3 coordinate that CF decoding made unsigned)
    are written to a scratch file first."""
    for dim, (values, attrs) in coords.items():
        dtype = np.asarray(values).dtype
        surely = dtype.newbyteorder("=") in _CLASSIC_STORED if engine == "scipy" else dtype.kind in "biufSU"
        if not surely and not _stores(dim, values, attrs, engine):
            kind = "NetCDF-4" if engine == "h5netcdf" else "NetCDF-3"
            raise unprocessable(
                "invalid_array",
                f"coordinate {dim!r} ({dtype}) cannot be written back into a {kind} answer; send it as numbers or "
                "strings that format stores",
            )


def _stores(dim: str, values: np.ndarray, attrs: dict, engine: str) -> bool:
    import xarray as xr

    try:
        xr.Dataset(coords={dim: xr.Variable((dim,), values, attrs)}).to_netcdf(engine=engine)
    except Exception as error:  # the writers raise many types for what a format cannot store
        log.info("coordinate %r cannot be written with %s: %s: %s", dim, engine, type(error).__name__, error)
        return False
    return True


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


# -- NetCDF-3 (classic) headers ---------------------------------------------------------------------
_CLASSIC_TYPES = {1: np.dtype(">i1"), 2: np.dtype("S1"), 3: np.dtype(">i2"), 4: np.dtype(">i4"), 5: np.dtype(">f4"), 6: np.dtype(">f8")}
_DIMENSIONS, _VARIABLES, _ATTRIBUTES = 0x0A, 0x0B, 0x0C
MAX_CLASSIC_DIMS = 1024  # NC_MAX_VAR_DIMS


def classic_header(
    body: bytes, max_variables: int = MAX_VARIABLES, max_attributes: int = MAX_ATTRIBUTES
) -> dict[str, NetcdfVariable]:
    """The variables of a classic NetCDF-3 body (CDF-1 or CDF-2), from its header alone, after checking that
    their data lie within the body without overlapping.

    scipy copies every variable's data when it opens a body: a header that points many variables at the same
    bytes would make a small body cost many times its size. With the data ranges checked, opening copies at
    most the body's length. Dimensions and variables are each limited to ``max_variables`` (413
    ``too_many_variables``), attributes all together to ``max_attributes`` (413 ``too_many_attributes``): scipy
    parses every one of them.

    Raises
    ------
    ServiceError
        400 ``malformed_netcdf`` for overlapping or out-of-body data; 413 ``too_many_variables``,
        ``too_many_attributes``.
    ValueError
        For a truncated or inconsistent header (the caller answers 400).
    """
    header = _ClassicCursor(body, max_attributes)
    offset = 8 if body[3:4] == b"\x02" else 4
    records = header.count()
    if records == 0xFFFFFFFF:
        raise ValueError("a streaming NetCDF-3 file (unknown number of records)")
    dims = [(header.name(), header.count()) for _ in range(header.list(_DIMENSIONS, max_variables, "dimensions"))]
    header.skip_attributes()
    variables, extents, record_begin, record_size = {}, [], None, 0
    for _ in range(header.list(_VARIABLES, max_variables, "variables")):
        name = header.name()
        ndims = header.count()
        if ndims > MAX_CLASSIC_DIMS:
            raise ValueError(f"variable {name!r} has {ndims} dims")
        ids = [header.count() for _ in range(ndims)]
        header.skip_attributes()
        dtype, vsize, begin = _CLASSIC_TYPES[header.count()], header.count(), header.unsigned(offset)
        names, sizes = [dims[i][0] for i in ids], [dims[i][1] for i in ids]
        if 0 in sizes[1:]:
            raise ValueError(f"variable {name!r}: the record dim is not its first dim")
        record = sizes[:1] == [0]
        shape = (records, *sizes[1:]) if record else tuple(sizes)
        variables[name] = NetcdfVariable(name, tuple(names), shape, dtype)
        if record:  # as scipy reads them: records x (the sum of their vsize) from the first one's begin
            record_begin = begin if record_begin is None else record_begin
            record_size += vsize
        else:
            extents.append((name, begin, math.prod(shape) * dtype.itemsize))
    if record_begin is not None:
        extents.append(("the record variables", record_begin, records * record_size))
    _check_extents(extents, len(body))
    return variables


def _check_extents(extents: Sequence[tuple[str, int, int]], size: int) -> None:
    """Refuse data beyond the body, and variables whose data overlap (400)."""
    previous = None
    for name, start, length in sorted((e for e in extents if e[2] > 0), key=lambda e: e[1]):
        if start + length > size:
            raise bad_request(
                "malformed_netcdf", f"the data of {_what(name)} lie beyond the end of the body (truncated or corrupt?)"
            )
        if previous is not None and start < previous[1] + previous[2]:
            raise bad_request(
                "malformed_netcdf",
                f"{_what(previous[0])} and {_what(name)} point at the same bytes of the body; each variable needs its own data",
            )
        previous = (name, start, length)


def _what(name: str) -> str:
    return name if name == "the record variables" else f"variable {name!r}"


class _ClassicCursor:
    """Big-endian reads from a classic NetCDF header, refusing (``ValueError``) reads beyond the body."""

    def __init__(self, body: bytes, max_attributes: int):
        self.body, self.at = memoryview(body), 4
        self.attributes, self.max_attributes = 0, max_attributes

    def take(self, n: int) -> memoryview:
        if n < 0 or self.at + n > len(self.body):
            raise ValueError("the NetCDF-3 header is truncated")
        self.at += n
        return self.body[self.at - n : self.at]

    def unsigned(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def count(self) -> int:
        return self.unsigned(4)

    def name(self) -> str:
        n = self.count()
        name = bytes(self.take(n)).decode("latin1")  # as scipy decodes names
        self.take(-n % 4)
        return name

    def list(self, tag: int, limit: int, what: str, setting: str = "max_variables") -> int:
        """The number of items of a list (dimensions, attributes, variables), at most ``limit`` (413 beyond)."""
        found, count = self.count(), self.count()
        if found not in (0, tag) or (found == 0 and count):
            raise ValueError(f"unexpected list tag {found:#x} in the NetCDF-3 header")
        _check_count(count, limit, what, setting)
        return count

    def skip_attributes(self) -> None:
        """Past an attribute list, counting its attributes against ``max_attributes`` (413 beyond)."""
        count = self.list(_ATTRIBUTES, self.max_attributes, "attributes in one list", "max_attributes")
        self.attributes += count
        _check_count(self.attributes, self.max_attributes, "attributes", "max_attributes")
        for _ in range(count):
            self.name()
            dtype, n = _CLASSIC_TYPES[self.count()], self.count()
            size = n * dtype.itemsize
            self.take(size + (-size % 4))


def write_netcdf(
    variables: Mapping[str, tuple[Sequence[str], np.ndarray]],
    coords: Mapping[str, tuple[np.ndarray, dict]],
    attrs: Mapping[str, Any],
    engine: str,
    variable_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> bytes:
    """NetCDF bytes (NetCDF-4 with ``h5netcdf``, NetCDF-3 with ``scipy``) of the answer's variables.

    ``variable_attrs``: name -> attributes of an answer variable (``units``, ``long_name``).

    The coordinates' attributes come from the request (:func:`writable_attrs`); should the writer still refuse
    one of them, the answer is written without the coordinates' attributes rather than not at all (logged)."""
    try:
        return _write_netcdf(variables, coords, attrs, engine, variable_attrs)
    except Exception as error:  # the writers raise many types; the model's work is done, answer it
        log.warning("answer written without its coordinates' attributes: %s: %s", type(error).__name__, error)
        bare = {dim: (values, {}) for dim, (values, _) in coords.items()}
        return _write_netcdf(variables, bare, attrs, engine, variable_attrs)


def _write_netcdf(
    variables: Mapping[str, tuple[Sequence[str], np.ndarray]],
    coords: Mapping[str, tuple[np.ndarray, dict]],
    attrs: Mapping[str, Any],
    engine: str,
    variable_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> bytes:
    import xarray as xr

    variable_attrs = variable_attrs or {}
    data_vars = {name: (tuple(dims), values, dict(variable_attrs.get(name, {}))) for name, (dims, values) in variables.items()}
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