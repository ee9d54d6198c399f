"""Save and load :class:`~.power_partition.PowerLimitPartition` as one HDF5 file (arrays and JSON attributes).

The file holds plain arrays and plain-data attributes only. The problem is re-created from its
registered name and constructor arguments (:func:`~.model.problem_of_file`, the package's allowlist);
nothing named in the file is imported or called. Layout::

    attrs: format, format_version, kind, package_version, created, problem_target, problem_config,
           parameter_space, eim_error, series, dim, info
    edges                                   (P, s + 1); the homogeneous cover: (P, 2), and
    cells                                   (C, P) int, attrs: step
    system/{operator,rhs}/{basis, magic, interpolation_matrix, combination, selected, errors,
                           positions, collateral, mus}
    boxes/<i>/{mus, log_dets, coefficient_rows, point_interval, reference, multiplicities, lower,
               upper, features_lower, features_upper, exponents, powers/{...as above...},
               [solutions, rhs_gram]}, attrs: info
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from surrogates.errors import CheckpointError
from surrogates.solvers.reduced_basis.model_files import create_model_file, open_model_file
from surrogates.solvers.reduced_basis.eim import EIMBasis, ParametricEIM
from surrogates.solvers.reduced_basis.model import _json_default, problem_of_file
from surrogates.solvers.reduced_basis.polynomial_basis import ChebyshevProducts
from surrogates.solvers.reduced_basis.power_limits import PowerLimitModel
from surrogates.solvers.reduced_basis.power_partition import PowerLimitPartition
from surrogates.solvers.reduced_basis.problem import ParameterSpace
from surrogates.solvers.reduced_basis.reductor import EIMSystem
from surrogates.solvers.reduced_basis.series_bounds import SERIES

FORMAT = "surrogates.power_limits"
FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR_VERSIONS = ("1",)
SUFFIX = ".logdet.h5"
EIM_FIELDS = ("basis", "magic", "interpolation_matrix", "combination", "selected", "errors")
BOX_ARRAYS = (
    "mus", "log_dets", "coefficient_rows", "point_interval", "reference", "multiplicities", "lower", "upper",
    "features_lower", "features_upper", "exponents",
)


class PowerLimitsFileError(CheckpointError):
    """A power-limit model file is missing, unreadable, foreign, of an unsupported version or inconsistent."""


def _write_eim(group: h5py.Group, eim: EIMBasis) -> None:
    for name in EIM_FIELDS:
        group.create_dataset(name, data=np.asarray(getattr(eim, name)))


def save_partition(partition: PowerLimitPartition, path: str | Path) -> Path:
    """Write ``partition`` to ``path`` (atomically: a temporary name renamed on success)."""
    path = Path(path)
    system = partition.system
    first = partition.models[0]
    with create_model_file(path, FORMAT, FORMAT_VERSION, "power_limits", system.problem,
                           system.problem.parameter_space, system.eim_error) as f:
        f.attrs["series"] = first.series
        f.attrs["dim"] = int(first.dim)
        f.attrs["info"] = json.dumps(partition.info, default=_json_default)
        f.create_dataset("edges", data=partition.edges)
        if partition.homogeneous:
            f.create_dataset("cells", data=partition.cells)
            f.attrs["step"] = float(partition.step)
        for name, eim in (("operator", system.operator), ("rhs", system.rhs)):
            group = f.create_group(f"system/{name}")
            _write_eim(group, eim.eim)
            for field in ("positions", "collateral", "mus"):
                group.create_dataset(field, data=np.asarray(getattr(eim, field)))
        for i, model in enumerate(partition.models):
            group = f.create_group(f"boxes/{i}")
            arrays = {
                "mus": model.mus, "log_dets": model.log_dets, "coefficient_rows": model.coefficient_rows,
                "point_interval": np.asarray(model.point_interval), "reference": model.reference,
                "multiplicities": model.multiplicities, "lower": model.lower, "upper": model.upper,
                "features_lower": model.features.lower, "features_upper": model.features.upper,
                "exponents": model.features.exponents,
            }
            for name, value in arrays.items():
                group.create_dataset(name, data=np.asarray(value))
            _write_eim(group.create_group("powers"), model.powers)
            if model.solutions is not None:
                group.create_dataset("solutions", data=model.solutions)
                group.create_dataset("rhs_gram", data=model.rhs_gram)
            group.attrs["info"] = json.dumps(model.info or {}, default=_json_default)
    return path


def _attr(f, name: str, path: Path):
    if name not in f.attrs:
        raise PowerLimitsFileError(path, f"missing attribute {name!r}")
    value = f.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _array(group: h5py.Group, name: str, path: Path) -> np.ndarray:
    if name not in group:
        raise PowerLimitsFileError(path, f"missing dataset {group.name}/{name}")
    try:
        value = np.asarray(group[name][...])
    except (OSError, RuntimeError, TypeError) as error:
        raise PowerLimitsFileError(path, f"cannot read dataset {group.name}/{name}: {error}") from error
    if value.dtype.kind not in "fiu":
        raise PowerLimitsFileError(path, f"dataset {group.name}/{name} is not numeric")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise PowerLimitsFileError(path, f"dataset {group.name}/{name} holds NaN or infinite values")
    return value


def _read_eim(group: h5py.Group, path: Path) -> EIMBasis:
    arrays = {name: _array(group, name, path) for name in EIM_FIELDS}
    n = len(arrays["magic"])
    B = arrays["interpolation_matrix"]
    if B.shape != (n, n) or arrays["combination"].shape != (n, n) or len(arrays["selected"]) != n:
        raise PowerLimitsFileError(path, f"{group.name}: interpolation data do not fit {n} terms")
    if n and not (np.allclose(np.diag(B), 1.0) and np.allclose(np.triu(B, 1), 0.0)):
        raise PowerLimitsFileError(path, f"{group.name}/interpolation_matrix is not unit lower triangular")
    return EIMBasis(
        arrays["basis"], arrays["magic"].astype(np.int64), B, arrays["combination"],
        arrays["selected"].astype(np.int64), arrays["errors"],
    )


def load_partition(path: str | Path) -> PowerLimitPartition:
    """Read a file written by :func:`save_partition`.

    Raises
    ------
    PowerLimitsFileError
        Missing file, not HDF5, not a power-limit model, unsupported version, missing or inconsistent
        datasets, non-finite values, a problem that cannot be re-created.
    """
    path = Path(path)
    f = open_model_file(path, PowerLimitsFileError, FORMAT, "a power-limit model", SUPPORTED_MAJOR_VERSIONS,
                        FORMAT_VERSION)
    with f:
        try:
            target = _attr(f, "problem_target", path)
            config = json.loads(_attr(f, "problem_config", path))
            space = ParameterSpace.from_dict(json.loads(_attr(f, "parameter_space", path)))
            eim_error, dim = float(_attr(f, "eim_error", path)), int(_attr(f, "dim", path))
            series = str(_attr(f, "series", path))
            info = json.loads(_attr(f, "info", path))
        except (ValueError, KeyError, TypeError) as error:
            raise PowerLimitsFileError(path, f"unreadable attributes: {error}") from error
        if series not in SERIES or not (np.isfinite(eim_error) and eim_error >= 0):
            raise PowerLimitsFileError(path, f"series {series!r} or eim_error {eim_error} is invalid")
        try:
            problem = problem_of_file(target, config, space, path)
        except CheckpointError as error:
            raise PowerLimitsFileError(path, error.problem) from None
        eims = {}
        for name in ("operator", "rhs"):
            group = f.get(f"system/{name}")
            if group is None:
                raise PowerLimitsFileError(path, f"missing group system/{name}")
            eims[name] = ParametricEIM(
                _read_eim(group, path), _array(group, "positions", path).astype(np.int64),
                _array(group, "collateral", path), _array(group, "mus", path),
            )
        system = EIMSystem(problem, eims["operator"], eims["rhs"], eim_error)
        edges = _array(f, "edges", path)
        cells = _array(f, "cells", path) if "cells" in f else None
        step = float(_attr(f, "step", path)) if cells is not None else None
        n_boxes = len(f["boxes"]) if "boxes" in f else 0
        models = [_read_box(f[f"boxes/{i}"] if f"boxes/{i}" in f else None, i, system, dim, series, path)
                  for i in range(n_boxes)]
    if dim != problem.dim:
        raise PowerLimitsFileError(path, f"the file is for N_h = {dim}, the re-created problem has {problem.dim}")
    try:
        return PowerLimitPartition(edges, models, info, cells, step)
    except ValueError as error:
        raise PowerLimitsFileError(path, f"inconsistent partition: {error}") from None


def _read_box(group, i: int, system: EIMSystem, dim: int, series: str, path: Path) -> PowerLimitModel:
    if group is None:
        raise PowerLimitsFileError(path, f"missing group boxes/{i}")
    a = {name: _array(group, name, path) for name in BOX_ARRAYS}
    if "powers" not in group:
        raise PowerLimitsFileError(path, f"missing group boxes/{i}/powers")
    powers = _read_eim(group["powers"], path)
    D, M = powers.size, system.operator.size
    checks = [
        (a["mus"].shape == (D, system.problem.parameter_space.dim), "mus is not (D, P)"),
        (a["log_dets"].shape == (D,), "log_dets is not (D,)"),
        (a["coefficient_rows"].ndim == 2 and a["coefficient_rows"].shape[1] == M, "coefficient_rows is not (U, M)"),
        (a["point_interval"].shape == (2,), "point_interval is not (2,)"),
        (a["exponents"].ndim == 2 and a["exponents"].shape[1] == M and len(a["exponents"]) == powers.basis.shape[1],
         "exponents do not fit the power basis"),
        (powers.magic.size == 0 or powers.magic.max() < len(a["exponents"]), "magic indices out of range"),
    ]
    bad = [message for ok, message in checks if not ok]
    if bad:
        raise PowerLimitsFileError(path, f"boxes/{i}: " + "; ".join(bad))
    solutions = _array(group, "solutions", path) if "solutions" in group else None
    rhs_gram = _array(group, "rhs_gram", path) if solutions is not None else None
    try:
        info = json.loads(group.attrs.get("info", "{}"))
        features = ChebyshevProducts(a["features_lower"], a["features_upper"], a["exponents"].astype(np.int64))
        return PowerLimitModel(
            system=system, features=features, powers=powers, mus=a["mus"], log_dets=a["log_dets"],
            coefficient_rows=a["coefficient_rows"], point_interval=tuple(float(v) for v in a["point_interval"]),
            dim=dim, series=series, solutions=solutions, rhs_gram=rhs_gram, info=info, reference=a["reference"],
            multiplicities=a["multiplicities"], lower=a["lower"], upper=a["upper"],
        )
    except (ValueError, TypeError) as error:
        raise PowerLimitsFileError(path, f"boxes/{i}: {error}") from None
