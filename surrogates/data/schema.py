"""The dataset file format (schema version 1.1) and a validating reader of its metadata.

A dataset file is an HDF5 file in NetCDF-4 conventions:

- every data variable has the leading dimension ``"sample"``, e.g. ``a (sample, x, y)``,
  ``u (sample, time, x)`` or a per-sample scalar ``nu (sample,)``; fields are float32;
- every other dimension has a 1D float64 coordinate variable of the same name (``x``, ``y``,
  ``time``) with a ``units`` attribute;
- file attributes :data:`REQUIRED_ATTRS` describe the content, and one complete set of
  :data:`PROVENANCE_ATTRS` its provenance: generated files record the generator config, the solver
  report and the seed; imported files (``surrogates-import``, schema 1.1) the source, its checksum and
  the import config.

:func:`inspect_file` checks all of this and raises :class:`DatasetFileError`, naming the file and
the problem, instead of letting a training run fail later on a bad file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from surrogates.data.hdf5_storage import checked_header, netcdf_view
from surrogates.data.read_limits import StoredArray, read_problem
from surrogates.schema import is_dim_mapping

SCHEMA_VERSION = "1.1"
"""Version written by :func:`surrogates.data.writer.write_dataset`.

1.1 added imported files (provenance ``source``, ``source_sha256``, ``import_config`` instead of
``config``, ``solver_report``, ``seed``); 1.0 files are read unchanged."""

CONTENT_VERSION = "1.0"
"""The format version a generated dataset's fingerprint records. Schema 1.1 added only the provenance of
imported files; generated data are laid out as in 1.0, so folders written under 1.0 keep their
fingerprint and a rerun resumes them."""

SUPPORTED_MAJOR_VERSIONS = ("1",)
"""Files whose ``schema_version`` has one of these major versions can be read."""

SAMPLE_DIM = "sample"
"""Name of the leading dimension of every data variable."""

TIME_DIM = "time"
"""Name of the (optional) time dimension; it follows ``sample`` in time-dependent variables."""

REQUIRED_ATTRS = ("pde", "schema_version", "inputs", "targets", "created")
"""File attributes every dataset file carries, besides one set of :data:`PROVENANCE_ATTRS`.

``pde`` (str: the problem's name, e.g. ``darcy``, ``pdebench_darcy``, ``the_well_<dataset>``),
``schema_version`` (str), ``inputs`` / ``targets`` (space-separated variable names),
``created`` (ISO 8601 UTC). Optional: ``split``, ``shard``, ``num_shards``, ``n_total``,
``fingerprint`` (JSON, :mod:`surrogates.data.fingerprint`), ``boundary_conditions`` (JSON, imported files),
:data:`SOURCE_DIMS_ATTR` (JSON, files imported from an xarray source).
"""

SOURCE_DIMS_ATTR = "source_dims"
"""File attribute of files imported from an xarray source: JSON mapping each of their dims to the source's dim it
was, ``{"sample": "run", "time": "t", "x": "lon"}``. Models trained on them record it
(``DataSchema.source_dims``) and take and answer data in the source's dim names."""

PROVENANCE_ATTRS = {
    "generated": ("config", "solver_report", "seed"),
    "imported": ("source", "source_sha256", "import_config"),
}
"""Where the data come from: a file carries every attribute of at least one of these sets.

- ``generated`` (``surrogates-generate``): ``config`` (resolved generator config as YAML, may be empty),
  ``solver_report`` (JSON), ``seed`` (int);
- ``imported`` (``surrogates-import``, schema 1.1): ``source`` (the source file(s), JSON list),
  ``source_sha256`` (JSON: file -> SHA-256 of its bytes), ``import_config`` (the resolved import config, YAML).
"""


def source_dims(attrs: Mapping[str, Any]) -> dict[str, str] | None:
    """The :data:`SOURCE_DIMS_ATTR` of a file's ``attrs`` as a mapping; ``None`` when absent, or malformed (an
    optional convenience: a model without it takes the platform's names, as before)."""
    text = attrs.get(SOURCE_DIMS_ATTR)
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return dict(value) if is_dim_mapping(value) else None


def missing_provenance(attrs: Mapping[str, Any]) -> str | None:
    """``None`` when ``attrs`` hold one complete set of :data:`PROVENANCE_ATTRS`, else what is missing (one line)."""
    if any(all(key in attrs for key in keys) for keys in PROVENANCE_ATTRS.values()):
        return None
    return "; ".join(
        f"{kind} files need {list(keys)} (missing {[key for key in keys if key not in attrs]})"
        for kind, keys in PROVENANCE_ATTRS.items()
    )


_SCAN_BYTES = 64 * 2**20  # finite scan reads at most this many bytes at a time


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable or does not follow the schema.

    The message always starts with the file's path, followed by the problem.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VariableInfo(NamedTuple):
    """Dimensions and shape of a variable as stored (``dims`` includes ``"sample"`` for data variables)."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any]


@dataclass
class FileInfo:
    """What :func:`inspect_file` found in a valid dataset file.

    Attributes
    ----------
    path
        The file.
    n_samples
        Length of the ``"sample"`` dimension.
    attrs
        File attributes as plain Python values (str, int, float, list).
    variables
        Data variables: name -> :class:`VariableInfo` (``dims``, ``shape``, ``dtype``, ``attrs``);
        e.g. ``variables["a"].dims == ("sample", "x", "y")``.
    coords
        Coordinate variables (1D, named after their dimension), same layout as ``variables``.
    """

    path: Path
    n_samples: int
    attrs: dict[str, Any]
    variables: dict[str, VariableInfo]
    coords: dict[str, VariableInfo] = field(default_factory=dict)

    @property
    def inputs(self) -> list[str]:
        """Input variable names from the ``inputs`` attribute."""
        return str(self.attrs.get("inputs", "")).split()

    @property
    def targets(self) -> list[str]:
        """Target variable names from the ``targets`` attribute."""
        return str(self.attrs.get("targets", "")).split()


FileInfoT = TypeVar("FileInfoT", bound=FileInfo)


def plain(value: Any) -> Any:
    """Convert an attribute value read from HDF5 to a plain Python value (str, int, float, list)."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.ndim == 0 or value.size == 1:
            return plain(value.reshape(-1)[0]) if value.size else []
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe(variables: Mapping[str, VariableInfo], dim_names: Mapping[str, str] | None = None) -> str:
    """``"a (sample, x, y), u (sample, x, y)"``: variables with their dims, for error messages; ``dim_names``
    maps our dim names to the file's where they differ (a foreign file's ``n`` read as ``sample``)."""
    if not variables:
        return "no variables"
    names = dim_names or {}
    return ", ".join(f"{name} ({', '.join(names.get(d, d) for d in info.dims)})" for name, info in sorted(variables.items()))


def inspect_file(path: str | Path, check_finite: bool = True) -> FileInfo:
    """Read and validate a dataset file's metadata (and, optionally, that every field is finite).

    Parameters
    ----------
    path
        An HDF5/NetCDF-4 dataset file.
    check_finite
        Also scan every float variable for NaN/inf, reading a block of samples at a time
        (so memory stays bounded on large files). Costs one pass over the data.

    Returns
    -------
    FileInfo
        Sample count, attributes, data variables and coordinates.

    Raises
    ------
    DatasetFileError
        If the file does not exist, is not readable HDF5 (truncated or corrupt), lacks a required
        attribute, has an unsupported schema version, a variable without the leading ``"sample"``
        dim or with another sample count, an ``inputs``/``targets`` name without a variable, a dim
        without a coordinate variable, or (``check_finite``) a NaN/inf value.
    """
    def read(handle: Any) -> FileInfo:
        info = _read_metadata(path, handle)
        _validate(info)
        return info

    # every variable and coordinate: reading every chunk also verifies its checksum
    path = Path(path)
    return read_dataset_file(
        path, read, lambda info: [*sorted(info.variables), *sorted(info.coords)] if check_finite else [],
        unreadable="is not a readable HDF5 file (truncated or corrupt?)",
    )


def read_dataset_file(
    path: Path,
    read: Callable[[Any], FileInfoT],
    scanned: Callable[[FileInfoT], Iterable[str]],
    unreadable: str,
    not_opened: str | None = None,
    sample_dim: str = SAMPLE_DIM,
) -> FileInfoT:
    """Open ``path`` with h5netcdf, check what reading its variables costs, ``read`` its metadata from the
    handle, scan the ``scanned(info)`` variables for NaN/inf (:func:`check_finite_values`); every failure a
    :class:`DatasetFileError`.

    Before h5netcdf looks at the file, its header is walked once with h5py: a variable whose data live in
    another file (external link, external raw storage, virtual dataset) is refused
    (:mod:`surrogates.data.hdf5_storage`). Then, before ``read`` may read any value, every variable with
    ``sample_dim`` first (one sample) and every coordinate (whole) must pass
    :func:`surrogates.data.read_limits.read_problem` (:func:`check_reads`).

    ``unreadable`` says what the file is not when reading fails (the error's text follows);
    ``not_opened``, when given, says it when the file cannot even be opened. The readers of our files
    (:func:`inspect_file`) and of foreign ones (:func:`surrogates.data.foreign.inspect_foreign`) share it.
    """
    import h5py

    if not path.exists():
        raise DatasetFileError(path, "file does not exist")
    if not path.is_file():
        raise DatasetFileError(path, "is not a file")
    try:
        raw = h5py.File(path, "r")
    except Exception as error:  # h5py raises OSError for truncated and foreign files
        raise DatasetFileError(path, not_opened.format(error=error) if not_opened else f"{unreadable}: {error}") from error
    try:
        with raw:
            arrays = checked_header(raw, path, DatasetFileError)
            with netcdf_view(raw, phony_dims="access") as handle:
                check_reads(path, handle, arrays, sample_dim)
                info = read(handle)
                for name in scanned(info):
                    check_finite_values(path, name, handle.variables[name])
    except DatasetFileError:
        raise
    except Exception as error:  # reading a damaged file can fail anywhere
        raise DatasetFileError(path, f"{unreadable}: {error}") from error
    return info


def check_reads(path: Path, handle: Any, arrays: Mapping[str, StoredArray], sample_dim: str = SAMPLE_DIM) -> None:
    """Raise :class:`DatasetFileError` when reading one sample of a variable of the open h5netcdf file ``handle``
    (those with ``sample_dim`` first: the variables readers take samples of), or a coordinate whole, would decode
    or hold too much (:func:`~surrogates.data.read_limits.read_problem`); ``arrays``: the header facts of the
    file's datasets (:func:`~surrogates.data.hdf5_storage.checked_header`). Variables without the sample dim
    are never read by the readers, and are not looked at."""
    for name, var in sorted(handle.variables.items()):
        dims = tuple(var.dimensions)
        per_sample = dims[:1] == (sample_dim,) and dims != (name,)
        if name not in arrays or not (per_sample or dims == (name,)):
            continue
        chunks = arrays[name].chunks
        hint = ""
        if per_sample and chunks:
            hint = f", or import it with surrogates-import (chunk_size={chunks[0]} reads blocks of whole chunks)"
        problem = read_problem(arrays[name], 0 if per_sample else None, alternative=hint)
        if problem:
            raise DatasetFileError(path, problem)


def _read_metadata(path: Path, handle: Any) -> FileInfo:
    attrs = {key: plain(value) for key, value in handle.attrs.items() if not key.startswith("_")}
    variables: dict[str, VariableInfo] = {}
    coords: dict[str, VariableInfo] = {}
    for name, var in handle.variables.items():
        info = VariableInfo(
            tuple(var.dimensions),
            tuple(int(n) for n in var.shape),
            str(var.dtype),
            {key: plain(value) for key, value in var.attrs.items() if not key.startswith("_")},
        )
        if info.dims == (name,):
            coords[name] = info
        else:
            variables[name] = info
    n_samples = 0
    for info in variables.values():
        if info.dims and info.dims[0] == SAMPLE_DIM:
            n_samples = info.shape[0]
            break
    return FileInfo(path, n_samples, attrs, variables, coords)


def _validate(info: FileInfo) -> None:
    path = info.path
    missing = [key for key in REQUIRED_ATTRS if key not in info.attrs]
    if missing:
        raise DatasetFileError(
            path, f"missing file attribute(s) {missing} (schema {SCHEMA_VERSION} requires {list(REQUIRED_ATTRS)})"
        )
    provenance = missing_provenance(info.attrs)
    if provenance:
        raise DatasetFileError(path, f"no provenance attributes: {provenance}")
    version = str(info.attrs["schema_version"])
    if version.split(".")[0] not in SUPPORTED_MAJOR_VERSIONS:
        raise DatasetFileError(
            path, f"schema_version {version!r} is not supported (this reader reads {SUPPORTED_MAJOR_VERSIONS[0]}.x)"
        )
    if not info.variables:
        raise DatasetFileError(path, "contains no data variables")
    for name, var in info.variables.items():
        if not var.dims or var.dims[0] != SAMPLE_DIM:
            raise DatasetFileError(
                path, f"variable {name!r} has dims {var.dims}; the first dim of every data variable must be 'sample'"
            )
        if var.shape[0] != info.n_samples:
            raise DatasetFileError(
                path, f"variable {name!r} has {var.shape[0]} samples but other variables have {info.n_samples}"
            )
        for dim, size in zip(var.dims[1:], var.shape[1:]):
            if dim not in info.coords:
                raise DatasetFileError(
                    path,
                    f"variable {name!r} has dim {dim!r} without a coordinate variable "
                    f"(coordinates: {sorted(info.coords) or 'none'})",
                )
            if info.coords[dim].shape[0] != size:
                raise DatasetFileError(
                    path, f"variable {name!r} has {size} points along {dim!r} but coordinate {dim!r} has "
                    f"{info.coords[dim].shape[0]}"
                )
    for role in ("inputs", "targets"):
        names = getattr(info, role)
        if not names:
            raise DatasetFileError(path, f"attribute {role!r} names no variable")
        unknown = [name for name in names if name not in info.variables]
        if unknown:
            raise DatasetFileError(
                path, f"attribute {role!r} names {unknown}, which the file lacks; it has {describe(info.variables)}"
            )


def check_finite_values(path: Path, name: str, var: Any) -> None:
    """Raise :class:`DatasetFileError` at the first sample of a float variable with a NaN or inf (bounded reads)."""
    if not np.issubdtype(var.dtype, np.floating) and not np.issubdtype(var.dtype, np.complexfloating):
        return
    n = int(var.shape[0])
    per_sample = max(1, int(np.prod(var.shape[1:], dtype=np.int64)) * var.dtype.itemsize)
    step = max(1, _SCAN_BYTES // per_sample)
    for start in range(0, n, step):
        block = np.asarray(var[start : start + step])
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = start + np.flatnonzero(~finite)
            more = f" (and {bad.size - 1} more in this block)" if bad.size > 1 else ""
            raise DatasetFileError(path, f"variable {name!r} contains NaN or inf at sample {int(bad[0])}{more}")


def require_variables(
    info: FileInfo,
    names: Iterable[str],
    dims: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Check that a file holds the variables a consumer needs.

    Parameters
    ----------
    info
        From :func:`inspect_file`.
    names
        Variable names that must exist as data variables.
    dims
        Optional expected dims per name, as stored, i.e. including ``"sample"``:
        ``{"a": ("sample", "x", "y")}``.

    Raises
    ------
    DatasetFileError
        Naming the missing variable (or the one with the wrong dims) and listing the available
        variables with their dims.
    """
    names = list(names)

    def available() -> str:  # only for a refusal: in the file's own dim names
        return describe(info.variables, getattr(info, "file_dim_names", None))

    missing = [name for name in names if name not in info.variables]
    if missing:
        raise DatasetFileError(info.path, f"missing variable(s) {missing}; available: {available()}")
    for name, expected in (dims or {}).items():
        if name not in info.variables:
            raise DatasetFileError(info.path, f"missing variable {name!r}; available: {available()}")
        if tuple(info.variables[name].dims) != tuple(expected):
            raise DatasetFileError(
                info.path,
                f"variable {name!r} has dims {info.variables[name].dims}, expected {tuple(expected)}; "
                f"available: {available()}",
            )
