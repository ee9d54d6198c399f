"""PDEBench files (https://github.com/pdebench/PDEBench), recognised by their layout.

=====================  ==========================================================  ===========================
layout                 source                                                      output
=====================  ==========================================================  ===========================
2D Darcy               ``nu (N, s, s)``, ``tensor (N, 1, s, s)``,                  ``nu (sample, x, y)`` ->
                       ``x-coordinate (s)``, ``y-coordinate (s)``, attr ``beta``   ``u (sample, x, y)``; ``beta (sample)``
1D tensor              ``tensor (N, T, X)``, ``x-coordinate (X)``,                 ``u (sample, time, x)``, x periodic;
(Burgers, advection,   ``t-coordinate (T + 1)``, attr ``Nu`` / ``beta`` / ...      ``Nu`` etc. ``(sample)``
1D reaction-diffusion)
compressible NS (CFD)  ``density``, ``pressure``, ``Vx`` [``Vy``, ``Vz``]          ``density``, ``pressure``,
1D / 2D / 3D           ``(N, T, *space)``, ``x/y/z-coordinate``, ``t-coordinate``  ``velocity_x`` ... (sample, time, ...)
one group per sample   ``0000/data (T, *space, C)``, ``0000/grid/x`` [``y``],      ``u`` [``v``] / ``h``
(diffusion-sorption,   ``0000/grid/t``                                             ``(sample, time, *space)``
diffusion-reaction,
shallow water)
=====================  ==========================================================  ===========================

Time coordinates: PDEBench's ``t-coordinate`` holds ``T + 1`` values (the edges of the saved steps' intervals);
the first ``T`` are the times of the saved states. Coordinates are checked when the plan is made: 1-D, one value per
grid point (the time coordinate: at least one per saved step). Per-sample groups are samples in the numeric order of
their names (``9`` before ``10``, also past PDEBench's four zero-padded digits).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from surrogates.data.importers.plan import ImportDataError, OutCoord, OutVar, Part, Plan, component_names, dtype_eps

EXPECTED = (
    "PDEBench 2D Darcy: nu (N, s, s), tensor (N, 1, s, s), x-coordinate, y-coordinate; "
    "PDEBench 1D: tensor (N, T, X), x-coordinate, t-coordinate; "
    "PDEBench CFD: density, pressure, Vx [Vy, Vz] (N, T, *space), x-/y-/z-coordinate, t-coordinate; "
    "PDEBench per-sample groups: 0000/data (T, *space, C), 0000/grid/x [y], 0000/grid/t"
)

_GROUP = re.compile(r"^\d+$")
_AXES = ("x", "y", "z")


def detect(handle: h5py.File) -> str | None:
    """``"darcy"``, ``"tensor_1d"``, ``"cfd"``, ``"groups"`` or ``None`` for a file of another layout."""
    # datasets, not merely names: a group under one of these names is another layout (listed as such in the message)
    keys = {key for key in handle.keys() if isinstance(handle.get(key), h5py.Dataset)}
    if {"nu", "tensor", "x-coordinate", "y-coordinate"} <= keys:
        return "darcy"
    if {"density", "pressure", "Vx", "x-coordinate", "t-coordinate"} <= keys:
        return "cfd"
    if {"tensor", "x-coordinate", "t-coordinate"} <= keys and handle["tensor"].ndim == 3:
        return "tensor_1d"
    keys = set(handle.keys())
    groups = sample_groups(handle)
    if groups and len(groups) == len(keys):
        first = handle[groups[0]]
        if isinstance(first, h5py.Group) and "data" in first and "grid" in first and "t" in first["grid"]:
            return "groups"
    return None


def _name(path: Path, kind: str, n_channels: int = 0) -> str:
    stem = path.name.lower()
    if kind == "darcy":
        return "pdebench_darcy"
    if kind == "tensor_1d":
        for key, name in (("burgers", "burgers"), ("advection", "advection"), ("reacdiff", "reaction_diffusion"),
                          ("react", "reaction_diffusion")):
            if key in stem:
                return f"pdebench_{name}"
        return "pdebench_1d"
    if kind == "cfd":
        return "pdebench_cfd"
    for key, name in (("diff-sorp", "diffusion_sorption"), ("diff_sorp", "diffusion_sorption"),
                      ("diff-react", "diffusion_reaction"), ("diff_react", "diffusion_reaction"),
                      ("rdb", "shallow_water"), ("swe", "shallow_water")):
        if key in stem:
            return f"pdebench_{name}"
    return "pdebench"


def _channel_names(pde: str, n: int) -> list[str]:
    if pde == "pdebench_diffusion_reaction" and n == 2:
        return ["u", "v"]
    if pde == "pdebench_shallow_water" and n == 1:
        return ["h"]
    return ["u"] if n == 1 else [f"u{i}" for i in range(n)]


def _file_params(handle: h5py.File) -> dict[str, float]:
    """Numeric file attributes (PDEBench's ``beta``, ``Nu``, ``eta``, ``zeta``, ``M``): per-sample scalars."""
    out = {}
    for key, value in handle.attrs.items():
        value = np.asarray(value)
        if value.size == 1 and np.issubdtype(value.dtype, np.number) and re.match(r"^[A-Za-z_]\w*$", key):
            out[key] = float(value.reshape(-1)[0])
    return out


def _periodic(path: Path, kind: str, pde: str) -> bool:
    if kind == "cfd":
        return "periodic" in path.name.lower()
    return pde in ("pdebench_burgers", "pdebench_advection", "pdebench_reaction_diffusion")


def plan_file(path: Path, kind: str, split: str | None) -> Plan:
    """The plan of one PDEBench file of layout ``kind`` (from :func:`detect`)."""
    with h5py.File(path, "r") as handle:
        params = _file_params(handle)
        pde = _name(path, kind)
        periodic = _periodic(path, kind, pde)
        variables: dict[str, OutVar] = {}
        coords: dict[str, OutCoord] = {}

        def space_coord(name: str, key: str, values: Any, size: int, along: str) -> None:
            values = _axis_values(path, key, values, size, along)
            attrs = {"periodic": 1} if periodic else {}
            coords[name] = OutCoord(values.astype(np.float64), "1", f"{name} coordinate", attrs, dtype_eps(values.dtype))

        if kind == "darcy":
            nu, tensor = handle["nu"], handle["tensor"]
            if nu.ndim != 3 or tensor.ndim != 4 or tensor.shape[1] != 1 or tensor.shape[0] != nu.shape[0] \
                    or tensor.shape[2:] != nu.shape[1:]:
                raise ImportDataError(
                    f"{path}: PDEBench 2D Darcy layout expects nu (N, s, s) and tensor (N, 1, s, s); found "
                    f"nu {nu.shape}, tensor {tensor.shape}"
                )
            n = nu.shape[0]
            for i, axis in enumerate(("x", "y")):
                space_coord(axis, f"{axis}-coordinate", handle[f"{axis}-coordinate"][...], nu.shape[1 + i],
                            f"axis {1 + i} of nu {nu.shape}")
            variables["nu"] = OutVar("nu", ("x", "y"), "1", "diffusion coefficient")
            variables["u"] = OutVar("u", ("x", "y"), "1", "solution")
            inputs, targets = ["nu"], ["u"]

            def read(start: int, stop: int) -> dict[str, np.ndarray]:
                with h5py.File(path, "r") as f:
                    return {"nu": f["nu"][start:stop], "u": f["tensor"][start:stop, 0]}

            sample_bytes = 2 * int(np.prod(nu.shape[1:])) * nu.dtype.itemsize
        elif kind == "tensor_1d":
            tensor = handle["tensor"]
            n, steps, nx = tensor.shape
            space_coord("x", "x-coordinate", handle["x-coordinate"][...], nx, f"axis 2 of tensor {tensor.shape}")
            coords["time"] = _time_coord(path, "t-coordinate", handle["t-coordinate"][...], steps)
            variables["u"] = OutVar("u", ("time", "x"), "1", "solution")
            inputs, targets = ["u"], ["u"]

            def read(start: int, stop: int) -> dict[str, np.ndarray]:
                with h5py.File(path, "r") as f:
                    return {"u": f["tensor"][start:stop]}

            sample_bytes = int(np.prod(tensor.shape[1:])) * tensor.dtype.itemsize
        elif kind == "cfd":
            density = handle["density"]
            n, steps = density.shape[:2]
            ndim = density.ndim - 2
            axes = _AXES[:ndim]
            for i, axis in enumerate(axes):
                key = f"{axis}-coordinate"
                if not isinstance(handle.get(key), h5py.Dataset):
                    raise ImportDataError(
                        f"{path}: PDEBench CFD layout with {ndim}D fields needs a dataset {key}; found {sorted(handle)}"
                    )
                space_coord(axis, key, handle[key][...], density.shape[2 + i], f"axis {2 + i} of density {density.shape}")
            coords["time"] = _time_coord(path, "t-coordinate", handle["t-coordinate"][...], steps)
            sources = {"density": "density", "pressure": "pressure"}
            variables["density"] = OutVar("density", ("time", *axes), "1", "density")
            variables["pressure"] = OutVar("pressure", ("time", *axes), "1", "pressure")
            for axis, name in zip(axes, component_names("velocity", axes)):
                key = f"V{axis}"
                if not isinstance(handle.get(key), h5py.Dataset):
                    raise ImportDataError(f"{path}: PDEBench {ndim}D CFD layout needs a dataset {key}; found {sorted(handle)}")
                sources[name] = key
                variables[name] = OutVar(name, ("time", *axes), "1", f"velocity, {axis} component",
                                         {"field": "velocity", "component": axis})
            for name, key in sources.items():
                if handle[key].shape != density.shape:
                    raise ImportDataError(f"{path}: {key} has shape {handle[key].shape}, density {density.shape}")
            inputs = targets = list(variables)

            def read(start: int, stop: int) -> dict[str, np.ndarray]:
                with h5py.File(path, "r") as f:
                    return {name: f[key][start:stop] for name, key in sources.items()}

            sample_bytes = len(sources) * int(np.prod(density.shape[1:])) * density.dtype.itemsize
        else:  # one group per sample
            groups = sample_groups(handle)
            first = handle[groups[0]]
            data = first["data"]
            grid = first["grid"]
            ndim = data.ndim - 2
            if ndim < 1:
                raise ImportDataError(f"{path}: group {groups[0]}/data has shape {data.shape}; expected (T, *space, C)")
            axes = _AXES[:ndim]
            for i, axis in enumerate(axes):
                if axis not in grid:
                    raise ImportDataError(f"{path}: {groups[0]}/grid lacks {axis}; found {sorted(grid)}")
                space_coord(axis, f"{groups[0]}/grid/{axis}", grid[axis][...], data.shape[1 + i],
                            f"axis {1 + i} of {groups[0]}/data {data.shape}")
            steps = data.shape[0]
            coords["time"] = _time_coord(path, f"{groups[0]}/grid/t", grid["t"][...], steps)
            channels = _channel_names(pde, data.shape[-1])
            for name in channels:
                variables[name] = OutVar(name, ("time", *axes), "1", name)
            inputs = targets = list(channels)
            n = len(groups)
            shape = data.shape
            for key in groups[1:]:  # headers only: a group that is not a sample is named before anything is read
                _group_data(handle, path, key, shape, groups[0])
            # every group carries its own grid, but the output has one: each must be the first group's
            reference = {axis: grid[axis][...] for axis in (*axes, "t")}

            def read(start: int, stop: int) -> dict[str, np.ndarray]:
                with h5py.File(path, "r") as f:
                    blocks = []
                    for key in groups[start:stop]:
                        block = _group_data(f, path, key, shape, groups[0])
                        _check_same_grid(path, key, f[key].get("grid"), reference, groups[0])
                        blocks.append(block[...])
                stacked = np.stack(blocks)
                return {name: stacked[..., i] for i, name in enumerate(channels)}

            sample_bytes = int(np.prod(shape)) * data.dtype.itemsize

    for key, value in params.items():
        if key in variables or key in coords:
            continue
        variables[key] = OutVar(key, (), "1", f"parameter {key} (file attribute)")

    def read_all(start: int, stop: int, _read: Any = read, _params: dict = params) -> dict[str, np.ndarray]:
        out = _read(start, stop)
        count = stop - start
        for key, value in _params.items():
            if key not in out:
                out[key] = np.full(count, value)
        return out

    layout_key = (pde, tuple((k, v.dims) for k, v in sorted(variables.items())),
                  tuple((k, len(c.values)) for k, c in sorted(coords.items())))
    part = Part(str(path), int(n), read_all, (path,), split, int(sample_bytes), layout_key)
    return Plan(f"pdebench_{kind}", pde, variables, coords, inputs, targets, [part])


def _group_data(handle: h5py.File, path: Path, key: str, shape: tuple[int, ...], first: str) -> h5py.Dataset:
    """Group ``key``'s ``data``, a dataset of the first group's ``shape``.

    Raises
    ------
    ImportDataError
        Naming the group and what it holds instead.
    """
    try:  # one lookup for the usual case (a sample group); the cases below only word the refusal
        data = handle.get(f"{key}/data")
    except (KeyError, ValueError, TypeError):
        data = None
    if isinstance(data, h5py.Dataset) and data.shape == shape:
        return data
    group = handle.get(key)
    if not isinstance(group, h5py.Group):
        found = f"{key} is a dataset, not a group"
    elif not isinstance(group.get("data"), h5py.Dataset):
        found = f"group {key} has no dataset data (it holds {sorted(group)})"
    elif group["data"].shape != shape:
        found = f"{key}/data has shape {group['data'].shape}"
    else:
        return group["data"]
    raise ImportDataError(f"{path}: {found}; expected {key}/data {shape} like {first}/data (one group per sample)")


def _check_same_grid(path: Path, key: str, grid: Any, reference: dict[str, np.ndarray], first: str) -> None:
    """Refuse group ``key`` when its ``grid/`` differs from the first group's (the samples would be written on the
    first group's grid)."""
    for axis, values in reference.items():
        found = grid.get(axis) if isinstance(grid, h5py.Group) else None
        if not isinstance(found, h5py.Dataset) or found.shape != values.shape or not np.array_equal(found[...], values):
            raise ImportDataError(
                f"{path}: {key}/grid/{axis} differs from {first}/grid/{axis} (or is missing); the imported samples share "
                "one grid: import groups on different grids separately"
            )


def sample_groups(handle: h5py.File) -> list[str]:
    """The per-sample groups' names in sample order: numeric (``9``, ``10``; PDEBench writes ``str(i).zfill(4)``,
    which sorts as text only up to ``9999``), names of equal value in text order."""
    return sorted((k for k in handle.keys() if _GROUP.match(k)), key=lambda k: (int(k), k))


def _axis_values(path: Path, key: str, values: Any, size: int, along: str) -> np.ndarray:
    """A space coordinate's values, checked at plan time: 1-D, one value per grid point along its axis.

    Raises
    ------
    ImportDataError
        Naming the source file, the coordinate, its shape and the field's shape.
    """
    values = np.asarray(values)
    if values.ndim != 1 or values.size != size or not np.issubdtype(values.dtype, np.number):
        raise ImportDataError(
            f"{path}: {key} has shape {values.shape} ({values.dtype}); expected 1-D numbers, {size} values, "
            f"one per point along {along}"
        )
    return values


def _time_coord(path: Path, key: str, values: Any, steps: int) -> OutCoord:
    """The times of the ``steps`` saved states: the first ``steps`` values of a 1-D time coordinate (PDEBench's
    ``t-coordinate`` holds ``T + 1``).

    Raises
    ------
    ImportDataError
        Naming the source file and the coordinate when it is not 1-D or has fewer values than saved steps.
    """
    values = np.asarray(values)
    if values.ndim != 1 or values.size < steps or not np.issubdtype(values.dtype, np.number):
        raise ImportDataError(
            f"{path}: the time coordinate {key} has shape {values.shape} ({values.dtype}); expected 1-D numbers, "
            f"at least one per saved step ({steps})"
        )
    return OutCoord(values[:steps].astype(np.float64), "1", "time", {}, dtype_eps(values.dtype))
