"""The Well's HDF5 files (https://github.com/PolymathicAI/the_well, docs/data_format.md), read with h5py.

A file holds ``n_trajectories`` trajectories of one parameter set::

    @dataset_name, @grid_type, @n_spatial_dims, @n_trajectories, @simulation_parameters, @<param>
    dimensions/      @spatial_dims = [x, y]; time (T) or (B, T); x (W); y (H)   (@sample_varying, @time_varying)
    boundary_conditions/<name>/  @bc_type (periodic / wall / open), @associated_dims, @associated_fields, mask
    scalars/         @field_names; <name>: () or (B,) or (T,) or (B, T)        (@sample_varying, @time_varying)
    t0_fields/       @field_names; <name>: ([B], [T], *space)                  (@sample_varying, @time_varying, @dim_varying)
    t1_fields/       vectors, (..., *space, D)
    t2_fields/       tensors, (..., *space, D, D)

Output: a scalar field ``f`` -> ``f (sample, [time], *space)``; a vector field ``v`` -> ``v_x``, ``v_y``; a tensor
field ``T`` -> ``T_xx``, ``T_xy``, ``T_yx``, ``T_yy`` (the Well's own names), each with attributes ``field`` and
``component``. Fields that do not vary between trajectories or along some dims are broadcast. Scalars and the
simulation parameters become per-trajectory variables ``(sample,)`` (``(sample, time)`` when time varying).
Periodic boundary conditions set ``periodic = 1`` on their coordinates; every boundary condition is recorded in
the file attribute ``boundary_conditions`` (JSON). The metadata are checked against the data before anything is
read: every field's shape is ``([n_trajectories], [T], *the sizes of the dims it varies along, D ** order)`` by its
flags, every scalar's ``([n_trajectories], [T])``, and a missing group or dataset is named.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from surrogates.data.importers.plan import ImportDataError, OutCoord, OutVar, Part, Plan, dtype_eps

EXPECTED = (
    "The Well: groups dimensions/ (time, spatial dims), t0_fields/ [t1_fields/, t2_fields/], scalars/, "
    "boundary_conditions/ and file attributes dataset_name, n_trajectories, n_spatial_dims"
)
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")


def detect(handle: h5py.File) -> bool:
    """Whether ``handle`` is laid out like a file of The Well."""
    keys = set(handle.keys())
    return "dimensions" in keys and "t0_fields" in keys and "n_trajectories" in handle.attrs


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes | np.bytes_):
        return [value.decode()]
    if isinstance(value, str):
        return [value]
    return [v.decode() if isinstance(v, bytes | np.bytes_) else str(v) for v in np.asarray(value).reshape(-1).tolist()]


def _flag(obj: Any, key: str, default: bool = False) -> bool:
    value = obj.attrs.get(key)
    return default if value is None else bool(np.asarray(value).reshape(-1)[0])


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    if value.dtype.kind in "SO":
        return _strings(value) if value.size != 1 else _strings(value)[0]
    return value.reshape(-1)[0].item() if value.size == 1 else value.tolist()


def _spec(path: Path) -> dict[str, Any]:
    """What one file holds, read from its metadata (no field data), checked against itself: every field and scalar
    has the shape its flags, ``n_trajectories`` and ``dimensions/`` say.

    Raises
    ------
    ImportDataError
        Naming the file, what it lacks or holds and what was expected.
    """
    with h5py.File(path, "r") as f:
        n = _n_trajectories(f, path)
        spatial, time, axes = _dimensions(f, path, n)
        steps = int(time["values"].shape[-1])
        sizes = {d: axes[d].size for d in spatial}
        fields: list[dict[str, Any]] = []
        for order, group_name in enumerate(FIELD_GROUPS):
            if group_name not in f:
                continue
            group = f[group_name]
            names = _strings(group.attrs.get("field_names")) or sorted(group.keys())
            for name in names:
                ds = _dataset(f, path, f"{group_name}/{name}", f"the field {name!r} listed in {group_name}/@field_names")
                dim_varying = [bool(v) for v in np.asarray(ds.attrs.get("dim_varying", [True] * len(spatial))).reshape(-1)]
                fld = {
                    "group": group_name, "name": name, "order": order, "shape": tuple(ds.shape),
                    "sample_varying": _flag(ds, "sample_varying", True), "time_varying": _flag(ds, "time_varying", True),
                    "dim_varying": dim_varying,
                }
                _check_field(path, fld, n, steps, spatial, sizes)
                fields.append(fld)
        scalars = []
        if "scalars" in f:
            group = f["scalars"]
            for name in _strings(group.attrs.get("field_names")) or sorted(group.keys()):
                ds = _dataset(f, path, f"scalars/{name}", f"the scalar {name!r} listed in scalars/@field_names")
                sc = {"name": name, "shape": tuple(ds.shape), "sample_varying": _flag(ds, "sample_varying"),
                      "time_varying": _flag(ds, "time_varying")}
                _check_scalar(path, sc, n, steps)
                scalars.append(sc)
        params, other_params = {}, {}
        for name in _strings(f.attrs.get("simulation_parameters")):
            if name in f.attrs:
                value = np.asarray(f.attrs[name])
                if value.size == 1 and (np.issubdtype(value.dtype, np.number) or value.dtype.kind == "b"):
                    params[name] = float(value.reshape(-1)[0])
                else:  # a name, a list: no number per trajectory; left out with a note
                    other_params[name] = _plain(value)
        bcs = {}
        if "boundary_conditions" in f:
            for name, group in f["boundary_conditions"].items():
                bcs[name] = {
                    "bc_type": str(_plain(group.attrs.get("bc_type", ""))).lower(),
                    "associated_dims": _strings(group.attrs.get("associated_dims")),
                    "associated_fields": _strings(group.attrs.get("associated_fields")),
                }
        return {
            "dataset_name": str(_plain(f.attrs.get("dataset_name", path.parent.name))),
            "grid_type": str(_plain(f.attrs.get("grid_type", "cartesian"))),
            "n": n, "spatial": spatial, "steps": steps, "time_per_sample": time["per_sample"],
            "time": np.asarray(time["values"][0] if time["per_sample"] else time["values"], np.float64).reshape(-1),
            "time_eps": dtype_eps(time["values"].dtype),
            "axes": {d: axes[d].astype(np.float64) for d in spatial},
            "axes_eps": {d: dtype_eps(axes[d].dtype) for d in spatial},
            "fields": fields, "scalars": scalars, "params": params, "other_params": other_params, "bcs": bcs,
        }


def _dataset(f: h5py.File, path: Path, key: str, what: str) -> h5py.Dataset:
    """``f[key]``, a dataset, or an :class:`ImportDataError` naming the file and what was expected there."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        found = "nothing" if obj is None else "a group"
        raise ImportDataError(f"{path}: {key} holds {found}; expected a dataset with {what} (The Well's layout)")
    return obj


def _n_trajectories(f: h5py.File, path: Path) -> int:
    """The file attribute ``n_trajectories``: a positive integer (the fields' first dim is checked against it)."""
    value = np.asarray(f.attrs.get("n_trajectories"))
    whole = value.size == 1 and (np.issubdtype(value.dtype, np.integer)
                                 or np.issubdtype(value.dtype, np.floating) and float(value.reshape(-1)[0]).is_integer())
    if not whole or int(value.reshape(-1)[0]) < 1:
        raise ImportDataError(f"{path}: the attribute n_trajectories is {value.tolist()!r}; expected a positive integer")
    return int(value.reshape(-1)[0])


def _dimensions(f: h5py.File, path: Path, n: int) -> tuple[list[str], dict[str, Any], dict[str, np.ndarray]]:
    """The spatial dims (``dimensions/@spatial_dims``), the time (``{"values", "per_sample"}``: ``(T)``, or ``(n, T)``
    when sample varying) and each spatial dim's 1-D coordinate, checked."""
    dims = f.get("dimensions")
    if not isinstance(dims, h5py.Group):
        raise ImportDataError(f"{path}: no group dimensions/; expected dimensions/time and one dataset per spatial dim")
    spatial = _strings(dims.attrs.get("spatial_dims")) or [k for k in dims.keys() if k != "time"]
    time = _dataset(f, path, "dimensions/time", "the times of the stored steps, (T) or (n_trajectories, T)")
    per_sample = _flag(time, "sample_varying") and time.ndim == 2
    shape_ok = time.ndim == 1 or per_sample and time.shape[0] == n
    if not shape_ok or time.shape[-1] < 1 or not np.issubdtype(time.dtype, np.number):
        raise ImportDataError(
            f"{path}: dimensions/time has shape {time.shape} ({time.dtype}); expected numbers, (T) or, with "
            f"sample_varying, (n_trajectories={n}, T)"
        )
    axes = {}
    for d in spatial:
        values = _dataset(f, path, f"dimensions/{d}", f"the coordinate of the spatial dim {d!r}")
        if values.ndim == 2 and _flag(values, "sample_varying") and values.shape[0] == n:
            raise ImportDataError(
                f"{path}: dimensions/{d} {values.shape} holds one grid per trajectory (sample_varying); the imported "
                f"samples share one grid: expected dimensions/{d} 1-D (interpolate onto one grid first)"
            )
        if values.ndim != 1 or values.size < 1 or not np.issubdtype(values.dtype, np.number):
            raise ImportDataError(f"{path}: dimensions/{d} has shape {values.shape} ({values.dtype}); expected 1-D numbers")
        axes[d] = values[...]
    return spatial, {"values": time[...], "per_sample": per_sample}, axes


def _check_field(path: Path, fld: dict[str, Any], n: int, steps: int, spatial: list[str], sizes: dict[str, int]) -> None:
    """A field's stored shape is ``([n], [T], *sizes of the dims it varies along, D ** order)`` by its flags."""
    key = f"{fld['group']}/{fld['name']}"
    if len(fld["dim_varying"]) != len(spatial):
        raise ImportDataError(
            f"{path}: {key} has dim_varying {fld['dim_varying']}; expected one flag per spatial dim {spatial}"
        )
    names, expected = [], []
    if fld["sample_varying"]:
        names.append("n_trajectories"), expected.append(n)
    if fld["time_varying"]:
        names.append("time"), expected.append(steps)
    for d, varying in zip(spatial, fld["dim_varying"]):
        if varying:
            names.append(d), expected.append(sizes[d])
    names += ["component"] * fld["order"]
    expected += [len(spatial)] * fld["order"]
    shape = fld["shape"]
    if fld["sample_varying"] and shape[:1] != (n,):
        raise ImportDataError(
            f"{path}: {key} holds {shape[0] if shape else 0} trajectories (shape {shape}) but n_trajectories is {n}; "
            "expected them to agree"
        )
    if shape != tuple(expected):
        raise ImportDataError(
            f"{path}: {key} has shape {shape}; expected {tuple(expected)} = ({', '.join(names)}) from its flags "
            f"sample_varying, time_varying, dim_varying and dimensions/ (time {steps}, "
            f"{', '.join(f'{d} {sizes[d]}' for d in spatial)})"
        )


def _check_scalar(path: Path, sc: dict[str, Any], n: int, steps: int) -> None:
    """A scalar holds ``([n], [T])`` values by its flags (a constant one a single value, of any shape)."""
    names, expected = [], []
    if sc["sample_varying"]:
        names.append("n_trajectories"), expected.append(n)
    if sc["time_varying"]:
        names.append("time"), expected.append(steps)
    shape = sc["shape"]
    if int(np.prod(shape)) != int(np.prod(expected)) or sc["sample_varying"] and shape[:1] != (n,):
        raise ImportDataError(
            f"{path}: scalars/{sc['name']} has shape {shape}; expected {tuple(expected)} = ({', '.join(names)}) "
            "from its flags sample_varying, time_varying"
        )


def _components(spatial: list[str], order: int) -> list[str]:
    return ["".join(c) for c in product(spatial, repeat=order)] if order else [""]


def plan_file(path: Path, split: str | None) -> Plan:
    """The plan of one file of The Well (its trajectories are one :class:`Part`)."""
    spec = _spec(path)
    spatial, steps, n = spec["spatial"], spec["steps"], spec["n"]
    sizes = {d: spec["axes"][d].size for d in spatial}
    periodic_dims = {d for bc in spec["bcs"].values() if bc["bc_type"] == "periodic" for d in bc["associated_dims"]}
    coords = {
        "time": OutCoord(spec["time"], "1", "time", {}, spec["time_eps"]) if not spec["time_per_sample"]
        else OutCoord(np.arange(steps, dtype=np.float64), "1", "time step index"),
    }
    for d in spatial:
        coords[d] = OutCoord(spec["axes"][d], "1", f"{d} coordinate", {"periodic": 1} if d in periodic_dims else {},
                             spec["axes_eps"][d])
    variables: dict[str, OutVar] = {}
    readers: list[tuple[dict[str, Any], list[str]]] = []
    inputs: list[str] = []
    targets: list[str] = []
    for fld in spec["fields"]:
        components = _components(spatial, fld["order"])
        names = [f"{fld['name']}_{c}" if c else fld["name"] for c in components]
        dims = (("time",) if fld["time_varying"] else ()) + tuple(spatial)
        for name, component in zip(names, components):
            attrs = {"field": fld["name"], "component": component} if component else {}
            if name in variables:
                raise ImportDataError(f"{path}: two fields make the variable {name!r}")
            variables[name] = OutVar(name, dims, "1", f"{fld['name']} ({fld['group'][:2]} field)", attrs)
        readers.append((fld, names))
        inputs += names
        if fld["time_varying"]:
            targets += names
    if not targets:
        raise ImportDataError(f"{path}: The Well file has no time-varying field (fields: {[f['name'] for f in spec['fields']]})")
    for sc in spec["scalars"]:
        if sc["name"] in variables:
            continue
        dims = ("time",) if sc["time_varying"] else ()
        variables[sc["name"]] = OutVar(sc["name"], dims, "1", f"scalar {sc['name']}")
    if spec["time_per_sample"]:
        variables["time_values"] = OutVar("time_values", ("time",), "1", "time of each stored step")
    for name in spec["params"]:
        if name not in variables:
            variables[name] = OutVar(name, (), "1", f"simulation parameter {name}")

    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        count = stop - start
        out: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as f:
            for fld, names in readers:
                ds = f[fld["group"]][fld["name"]]
                data = ds[start:stop] if fld["sample_varying"] else ds[...][None]
                lead = (count,) + ((steps,) if fld["time_varying"] else ())
                # dims the field does not vary along are missing: insert them, then broadcast
                index = [slice(None)] * (1 + int(fld["time_varying"]))
                for varying in fld["dim_varying"]:
                    index.append(slice(None) if varying else None)
                index += [slice(None)] * fld["order"]
                data = data[tuple(index)]
                full = lead + tuple(sizes[d] for d in spatial) + (len(spatial),) * fld["order"]
                data = np.broadcast_to(data, full)
                flat = data.reshape(full[: len(full) - fld["order"]] + (-1,)) if fld["order"] else data[..., None]
                for i, name in enumerate(names):
                    out[name] = flat[..., i]
            for sc in spec["scalars"]:
                if sc["name"] not in variables or sc["name"] in out:
                    continue
                ds = f["scalars"][sc["name"]]
                data = np.asarray(ds[start:stop] if sc["sample_varying"] else ds[...][None], dtype=np.float64)
                shape = (count, steps) if sc["time_varying"] else (count,)
                out[sc["name"]] = np.broadcast_to(data.reshape(data.shape[0], *shape[1:]), shape)
            if spec["time_per_sample"]:
                out["time_values"] = f["dimensions"]["time"][start:stop]
        for name, value in spec["params"].items():
            if name not in out:
                out[name] = np.full(count, value)
        return out

    sample_bytes = sum(
        4 * int(np.prod([steps if var.dims[:1] == ("time",) else 1] + [sizes.get(d, 1) for d in var.dims if d != "time"]))
        for var in variables.values()
    )
    layout_key = (spec["dataset_name"], tuple((k, v.dims) for k, v in sorted(variables.items())),
                  tuple((k, len(c.values)) for k, c in sorted(coords.items())))
    part = Part(str(path), n, read, (path,), split, sample_bytes, layout_key)
    attrs = {
        "boundary_conditions": json.dumps(spec["bcs"], sort_keys=True),
        "grid_type": spec["grid_type"],
        "dataset_name": spec["dataset_name"],
    }
    notes = [f"{path.name}: left out simulation parameters that are not one number: "
             + ", ".join(f"{k} = {v!r}" for k, v in spec["other_params"].items())] if spec["other_params"] else []
    return Plan("the_well", f"the_well_{spec['dataset_name']}", variables, coords, inputs, targets, [part], attrs, notes)
