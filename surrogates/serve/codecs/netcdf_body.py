"""A NetCDF request body opened: its header (NetCDF-4 through h5py/h5netcdf, NetCDF-3 parsed directly) with its
variables described on demand and read through xarray."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from surrogates.data.hdf5_storage import find_stored_elsewhere, netcdf_view
from surrogates.serve.codecs.body_limits import MAX_ATTRIBUTES, MAX_VARIABLES, check_count
from surrogates.serve.codecs.netcdf3_header import classic_header
from surrogates.serve.codecs.netcdf_variable import NetcdfVariable
from surrogates.serve.errors import ServiceError, bad_request, unprocessable

log = logging.getLogger("surrogates.serve")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02")
"""File signatures: NetCDF-4 (HDF5) and classic NetCDF-3 (CDF-1, CDF-2)."""

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
            with as_malformed():
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

        with as_malformed():
            # not closed here: closing it would close the h5netcdf file, which the header's block closes
            yield xr.open_dataset(_selected_store(self._file, keep), **DECODING)

    def dim_names(self) -> list[str]:
        with as_malformed():
            return [str(name) for name in self._file.dimensions]

    def strings(self, name: str, budget: int) -> list[str]:
        """The strings of ``name`` read a block at a time, refusing (413) more than ``budget`` bytes of them.

        The header cannot tell their size: each element points at a heap object, and many elements may point
        at the same one. An object is at most the body's size, so a block of ``budget // body size`` elements
        decodes at most ``budget`` bytes whatever the elements point at."""
        block, used, out = max(1, budget // max(self._body_size, 1)), 0, []
        with as_malformed():
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
        with as_malformed():
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
        check_count(len(raw), max_variables, "objects in its root group (variables, dimensions, groups)")
        # and it would follow an external link to a file of the server: walk the links first, following none
        elsewhere = find_stored_elsewhere(raw)
        if elsewhere is not None:  # the message names no server path
            raise unprocessable("invalid_array", _ELSEWHERE.format(name=elsewhere.name))
        with netcdf_view(raw) as f:  # a corrupt root attribute fails in it, not in a half-built File
            yield _Hdf5Header(f, len(body))


@contextmanager
def as_malformed() -> Iterator[None]:
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
    it (:func:`~surrogates.serve.codecs.netcdf_reading.read_netcdf`), which describes and decodes only the variables it needs. A body of more than
    ``max_variables`` variables is refused (413 ``too_many_variables``) before anything walks them: opening a
    NetCDF-4 file costs HDF5 about 0.3 ms per object of its root group. ``max_attributes`` bounds the attributes
    read (413 ``too_many_attributes``): a NetCDF-3 body's all, checked here, a NetCDF-4 body's of the variables
    :func:`~surrogates.serve.codecs.netcdf_reading.read_netcdf` reads.
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
        ones (:func:`~surrogates.serve.inputs.trained_dim_names`). Call it before :func:`~surrogates.serve.codecs.netcdf_reading.read_netcdf`."""
        self.renames = dict(renames)
        if self._names is not None and self._dims is not None:  # the lists as the renamed header gives them
            self._names = [self.renames.get(name, name) for name in self._names]
            self._dims = [self.renames.get(dim, dim) for dim in self._dims]

    @contextmanager
    def opened(self) -> Iterator[NetcdfHeader]:
        """The body's header, open while the block runs; 400 ``malformed_netcdf`` when it cannot be read, 413
        ``too_many_variables`` beyond ``max_variables``."""
        stack = ExitStack()
        with as_malformed():
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
            with as_malformed():
                stack.close()
