"""Recognise each source file's layout and make one :class:`~.plan.Plan` over all of them.

Each file is planned by its layout's module (:mod:`~.pdebench`, :mod:`~.the_well`, :mod:`~.xarray_layout`) after
its header is checked (:mod:`~.source_checks`); :func:`make_plan` then joins the files into one plan, refusing
files whose layout, variables, grid or attributes differ, since the output files hold one of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from surrogates.data.importers import pdebench, the_well, xarray_layout
from surrogates.data.importers.plan import (
    ImportDataError,
    NotThisLayout,
    Plan,
    describe_variables,
    expand_names,
    grid_difference,
    source_files,
    source_root,
    split_of,
)
from surrogates.data.importers.settings import ImportSettings, samples_per_block
from surrogates.data.importers.source_checks import check_source_reads, checked_source_header
from surrogates.data.read_limits import StoredArray


def _found(path: Path) -> str:
    """What a source file holds, for messages: top-level variables / groups with shapes."""
    try:
        with h5py.File(path, "r") as f:
            items = []
            for key, obj in f.items():
                items.append(f"{key} {obj.shape}" if isinstance(obj, h5py.Dataset) else f"{key}/")
                if len(items) >= 12:
                    items.append("...")
                    break
            return f"HDF5 with {', '.join(items) or 'nothing'}"
    except OSError:
        pass
    try:
        ds = xarray_layout.open_source(path)
    except Exception:  # noqa: BLE001 - any failure means: a format neither h5py nor xarray reads
        return "a file neither HDF5 nor readable by xarray" if path.is_file() else "a folder xarray cannot open"
    with ds:
        listed = ", ".join(f"{name} {tuple(var.dims)} {tuple(var.shape)}" for name, var in ds.data_vars.items())
    return f"an xarray dataset with {listed or 'no variables'}"


def detect_layout(path: Path) -> tuple[str, Any, dict[str, StoredArray] | None]:
    """``("pdebench", kind)``, ``("the_well", None)`` or ``("xarray", None)`` for one source file, and the header
    of an HDF5 source (``None`` for other formats), checked before any layout reads from it.

    Raises
    ------
    ImportDataError
        An HDF5 source that keeps data in other files or declares more than can be read
        (:func:`~.source_checks.checked_source_header`).
    """
    if path.is_file():
        try:
            with h5py.File(path, "r") as handle:
                arrays = checked_source_header(handle, path)
                if the_well.detect(handle):
                    return "the_well", None, arrays
                kind = pdebench.detect(handle)
                if kind:
                    return "pdebench", kind, arrays
                return "xarray", None, arrays
        except OSError:
            pass  # not HDF5: NetCDF 3 or another format xarray may read
    return "xarray", None, None


def unknown_layout(path: Path, reason: str) -> ImportDataError:
    expected = "; ".join((pdebench.EXPECTED, the_well.EXPECTED, xarray_layout.EXPECTED))
    return ImportDataError(f"{path}: unknown layout ({reason}); found {_found(path)}; expected one of: {expected}")


def plan_file(path: Path, split: str | None, settings: ImportSettings) -> Plan:
    """The plan of one source file, in the layout asked for or recognised; refused when its header shows data stored
    in other files or reads that would decode or hold too much (:mod:`~surrogates.data.importers.source_checks`)."""
    layout, kind, arrays = detect_layout(path)
    plan = _plan_layout(path, split, settings, layout, kind)
    _check_coords(path, plan)
    sample_dim = str((settings.dims or {}).get("sample") or "sample")
    check_source_reads(path, plan, arrays, samples_per_block(plan, settings), sample_dim)
    return plan


def _check_coords(path: Path, plan: Plan) -> None:
    """Refuse a coordinate with NaN or infinite values, or a variable named like a coordinate, while planning: the
    writer refused them once samples were read, naming the output file instead of the source.

    Raises
    ------
    ImportDataError
        Naming the source file and the coordinate.
    """
    for name, coord in plan.coords.items():
        values = np.asarray(coord.values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ImportDataError(
                f"{path}: coordinate {name!r} has NaN or infinite values ({name}[{int(bad[0])}] = {values[bad[0]]}); "
                "expected finite numbers, one per grid point"
            )
        if name in plan.variables:
            raise ImportDataError(
                f"{path}: a variable and the coordinate of the dim {name!r} have one name; expected distinct names "
                "(rename the variable in the source)"
            )


def _plan_layout(path: Path, split: str | None, settings: ImportSettings, layout: str, kind: Any) -> Plan:
    wanted = settings.layout
    if wanted != "auto" and wanted != layout:
        if wanted == "xarray":
            layout = "xarray"
        else:
            raise unknown_layout(path, f"layout={wanted} was asked for")
    if layout == "pdebench":
        return pdebench.plan_file(path, kind, split)
    if layout == "the_well":
        return the_well.plan_file(path, split)
    options = {
        "dims": settings.dims, "component_dims": settings.component_dims, "periodic": settings.periodic,
        "pde": settings.pde, "inputs": settings.inputs, "targets": settings.targets,
    }
    try:
        return xarray_layout.plan_file(path, split, options)
    except NotThisLayout as error:  # a fault of a file xarray reads as data (e.g. two variables, one name) is its own
        if settings.layout == "xarray":
            raise
        reason = str(error).removeprefix(f"{path}: ").split("; found")[0]  # what was found is listed once, below
        raise unknown_layout(path, reason + ("; set dims.sample=<dim>" if "no dim" in reason else "")) from error


def make_plan(settings: ImportSettings) -> Plan:
    """One plan over every source file: all must have the same layout, variables, grid (coordinate values, units,
    periodic flags) and file attributes, since the output files hold one of each.

    Raises
    ------
    ImportDataError
        Naming the two files and their first difference, or a setting that does not fit the source.
    """
    output = Path(settings.data_dir).resolve()
    files = [path for path in source_files(settings.source) if not path.resolve().is_relative_to(output)]
    if not files:
        raise ImportDataError(f"source={settings.source!r} holds only the output folder {settings.data_dir}")
    root = source_root(settings.source)
    plans = [plan_file(path, split_of(path, root), settings) for path in files]
    first = plans[0]
    for plan in plans[1:]:
        part = plan.parts[0]
        if plan.layout != first.layout or part.layout_key != first.parts[0].layout_key:
            raise ImportDataError(
                f"{part.label} does not match {first.parts[0].label}: {plan.layout} with {describe_variables(plan.variables)} "
                f"vs {first.layout} with {describe_variables(first.variables)}; import them separately"
            )
        # the output files have one grid and one set of attributes, the first file's: all files must share them
        difference = grid_difference(plan, first)
        if difference is None and not settings.pde and plan.pde != first.pde:
            difference = f"pde {plan.pde!r} vs {first.pde!r} (pde=<name> sets one for all)"
        if difference is not None:
            raise ImportDataError(
                f"{part.label} does not match {first.parts[0].label}: {difference}; "
                "the output files have one grid and one set of attributes: import them separately"
            )
        first.parts.append(part)
        first.notes += plan.notes
    splits = {part.split for part in first.parts}
    if None in splits and len(splits) > 1:
        listed = ", ".join(f"{p.label} ({p.split or 'no split'})" for p in first.parts[:6])
        raise ImportDataError(
            f"some source files name a split (a train/, valid/, test/ folder or file) and others do not: {listed}"
        )
    if settings.pde:
        first.pde = str(settings.pde)
    source_name = settings.source
    if settings.inputs:
        first.inputs = expand_names(settings.inputs, first.variables, "inputs", source_name, first.left_out)
    else:
        first.inputs = expand_names(first.inputs, first.variables, "inputs (from the file)", source_name, first.left_out)
    if settings.targets:
        first.targets = expand_names(settings.targets, first.variables, "targets", source_name, first.left_out)
    else:
        first.targets = expand_names(first.targets, first.variables, "targets (from the file)", source_name, first.left_out)
    if not first.inputs or not first.targets:
        raise ImportDataError(
            f"name the inputs and targets of {source_name}: inputs=[...] targets=[...]; "
            f"available: {describe_variables(first.variables)}"
        )
    for name in settings.periodic or ():
        if name in first.coords:
            first.coords[name].attrs["periodic"] = 1
        elif settings.layout != "xarray" and first.layout != "xarray":
            raise ImportDataError(f"periodic: {name!r} is not a dim of the data; dims: {sorted(first.coords)}")
    return first
