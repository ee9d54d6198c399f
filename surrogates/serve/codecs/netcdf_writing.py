"""Writing NetCDF answers (NetCDF-4 or NetCDF-3, the kind of the request's body), and which of a request's
coordinates and attributes such an answer can store."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from surrogates.serve.errors import unprocessable

log = logging.getLogger("surrogates.serve")

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


def check_answerable(coords: Mapping[str, tuple[np.ndarray, dict]], engine: str) -> None:
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
