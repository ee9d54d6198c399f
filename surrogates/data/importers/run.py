"""Import a source into a dataset folder: recognise its layout, split it, stream it into our files.

One pass over the source: blocks of samples (``chunk_size`` samples, or as many as fit in ``chunk_bytes``)
are read part after part and each sample goes to the file of its split, so memory stays bounded whatever
the source's size. Each output file is written under a temporary name and renamed when complete
(:class:`~surrogates.data.writer.StreamingDatasetWriter`); the files of one run are renamed together once all are
complete (:func:`~surrogates.data.publishing.publish_files`), so with ``overwrite`` a fault before that leaves the
previous dataset as it was, and its files that the new dataset lacks are removed only after. A rerun with the same
fingerprint (the import settings, the source files' relative paths and checksums in pool order, the split sizes)
skips complete files, one with another fingerprint is refused unless ``overwrite`` (:mod:`surrogates.data.generation`'s
rules). Several source files make one dataset only when they share its grid and file attributes
(:func:`~.plan.grid_difference`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from surrogates.data import fingerprint as fp
from surrogates.data.generation import (
    _UNREADABLE,
    GenerationError,
    _conflict_message,
    _dataset_files,
    _is_done,
    remove_replaced_files,
    saying_previous_kept,
    stop_cleanly_on_signals,
)
from surrogates.data.importers import pdebench, the_well, xarray_layout
from surrogates.data.importers.plan import (
    ImportDataError,
    NotThisLayout,
    Part,
    Plan,
    describe_variables,
    expand_names,
    file_sha256,
    grid_difference,
    source_bytes,
    source_files,
    source_root,
    source_state,
    split_of,
)
from surrogates.data.importers.source_checks import check_source_reads, checked_source_header
from surrogates.data.read_limits import StoredArray
from surrogates.data.schema import SCHEMA_VERSION, DatasetFileError
from surrogates.data.shards import SPLITS, shard_path
from surrogates.data.publishing import publish_files, signals_deferred
from surrogates.data.temporaries import remove_stale_temporaries
from surrogates.data.writer import StreamingDatasetWriter

LAYOUTS = ("auto", "xarray", "pdebench", "the_well")


@dataclass
class ImportSettings:
    """What ``surrogates-import`` is asked to do (``conf/import.yaml``)."""

    source: str
    data_dir: Path
    layout: str = "auto"
    pde: str | None = None
    inputs: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    dims: Mapping[str, Any] = field(default_factory=dict)
    component_dims: Sequence[str] | None = None
    periodic: Sequence[str] = ()
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    chunk_size: int | None = None
    chunk_bytes: int = 64 * 2**20
    overwrite: bool = False
    progress: bool = True
    config_yaml: str = ""

    def check(self) -> None:
        if self.layout not in LAYOUTS:
            raise ImportDataError(f"layout={self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ImportDataError(f"{name} must be a number in [0, 1), got {value!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ImportDataError(f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + {self.test_fraction}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ImportDataError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ImportDataError(f"chunk_size must be a positive integer or null, got {self.chunk_size!r}")
        if isinstance(self.chunk_bytes, bool) or not isinstance(self.chunk_bytes, int) or self.chunk_bytes < 1:
            raise ImportDataError(f"chunk_bytes must be a positive integer, got {self.chunk_bytes!r}")
        if not isinstance(self.overwrite, bool):
            raise ImportDataError(f"overwrite must be true or false, got {self.overwrite!r}")

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings that change the written data (not the paths, chunking or progress bar)."""
        return {
            "layout": self.layout, "pde": self.pde,
            "inputs": list(self.inputs) if self.inputs else None, "targets": list(self.targets) if self.targets else None,
            "dims": json.loads(json.dumps(dict(self.dims or {}), default=str)),
            "component_dims": list(self.component_dims) if self.component_dims else None,
            "periodic": sorted(str(p) for p in self.periodic or ()),
            "val_fraction": float(self.val_fraction), "test_fraction": float(self.test_fraction),
        }


# -- recognising a layout --------------------------------------------------------------------------------------
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
    check_source_reads(path, plan, arrays, _block_size(plan, settings), sample_dim)
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


# -- splitting -------------------------------------------------------------------------------------------------
def assign_splits(plan: Plan, settings: ImportSettings) -> list[np.ndarray]:
    """Per part, the split index (0 train, 1 val, 2 test) of every sample.

    Splits of the source are kept; a split the source lacks (all of them when it has none) is drawn from
    its training samples with ``val_fraction`` / ``test_fraction`` of them (at least one sample for a fraction
    above 0), by a permutation seeded with ``seed``.

    Raises
    ------
    ImportDataError
        When the source has no training samples, or too few to draw the asked splits and keep one for training:
        a split asked for is never silently empty.
    """
    ids = {name: i for i, name in enumerate(SPLITS)}
    assignment = [np.full(part.n_samples, ids.get(part.split or "train", 0), dtype=np.int8) for part in plan.parts]
    present = {part.split or "train" for part in plan.parts if part.n_samples}
    if not present:
        raise ImportDataError("the source holds no samples (a sample dim of length 0); expected at least one")
    if "train" not in present:
        raise ImportDataError(
            f"the source has no training samples (its splits: {', '.join(sorted(present))}); expected a train/ folder "
            "or file, or files without a split to draw val and test from"
        )
    missing = [split for split in ("val", "test") if split not in present]
    if not missing:
        return assignment
    offsets = np.cumsum([0] + [part.n_samples for part in plan.parts])
    pool = np.concatenate([offsets[k] + np.flatnonzero(a == 0) for k, a in enumerate(assignment)]) if assignment else np.zeros(0)
    n = pool.size
    fractions = {"val": settings.val_fraction, "test": settings.test_fraction}
    counts = {split: int(round(fractions[split] * n)) for split in missing}
    for split in missing:
        if fractions[split] > 0 and counts[split] == 0:
            counts[split] = 1  # a tiny source still gets a sample to validate / test on, never an empty split
    if n - sum(counts.values()) < 1:
        asked = ", ".join(f"{split}_fraction={fractions[split]} ({counts[split]})" for split in missing if counts[split])
        raise ImportDataError(
            f"the source has {n} training sample(s): too few to split off {asked} and keep one for training; "
            f"expected at least {sum(counts.values()) + 1}, or set "
            f"{' '.join(f'{split}_fraction=0' for split in missing if counts[split])} to import without it"
        )
    order = np.random.default_rng(settings.seed).permutation(n)
    start = 0
    for split in ("test", "val"):
        if split not in counts:
            continue
        chosen = pool[order[start : start + counts[split]]]
        start += counts[split]
        for k in range(len(plan.parts)):
            local = chosen[(chosen >= offsets[k]) & (chosen < offsets[k + 1])] - offsets[k]
            assignment[k][local] = ids[split]
    return assignment


# -- writing ---------------------------------------------------------------------------------------------------
def _block_size(plan: Plan, settings: ImportSettings) -> int:
    if settings.chunk_size:
        return int(settings.chunk_size)
    per_sample = max(max(part.sample_bytes for part in plan.parts), 1)
    return max(1, settings.chunk_bytes // per_sample)


def checksums(plan: Plan, progress: bool = True, stop: threading.Event | None = None) -> dict[str, str]:
    """SHA-256 of every source file, read in blocks, with a progress bar in bytes; ``stop`` set ends it early
    (:class:`InterruptedError`) at the next block."""
    files = plan.source_paths()
    bar = tqdm(total=sum(source_bytes(path) for path in files), desc="sha256 of the source", unit="B", unit_scale=True,
               **({} if progress else {"disable": True}))

    def advance(n: int) -> None:
        if stop is not None and stop.is_set():
            raise InterruptedError("the import stopped")
        bar.update(n)

    try:
        return {str(path): file_sha256(path, progress=advance) for path in files}
    finally:
        bar.close()


def import_dataset(settings: ImportSettings) -> list[Path]:
    """Import ``settings.source`` into ``settings.data_dir/{train,val,test}.h5``; returns the files of the dataset.

    Raises
    ------
    ImportDataError
        An unknown layout, a mapping that names a missing variable, bad settings (before any work).
    GenerationError
        The folder holds another dataset (different fingerprint) and ``overwrite`` is false.

    Notes
    -----
    With ``overwrite`` the previous files stay as they are until every new file is complete; the new ones are
    then renamed into place together and the previous files the new dataset lacks (a split it does not have)
    are removed. Any fault before that leaves the folder as it was, and a line on stderr says so.
    """
    settings.check()
    plan = make_plan(settings)
    states = _source_states(plan)
    assignment = assign_splits(plan, settings)
    sizes = {split: int(sum(int((a == i).sum()) for a in assignment)) for i, split in enumerate(SPLITS)}
    data_dir = Path(settings.data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise ImportDataError(f"{data_dir} exists and is not a folder")
    existing = _dataset_files(data_dir, set(SPLITS))
    # with nothing to resume, the checksums are computed while the samples are written (below)
    resume = bool(existing) and not settings.overwrite
    sums, fingerprint = None, None
    if resume:
        sums = checksums(plan, settings.progress)
        fingerprint = _fingerprint(plan, settings, sizes, sums)
        conflicts = {path: old for path, old in existing.items() if old is not _UNREADABLE and old != fingerprint}
        if conflicts:
            raise GenerationError(_conflict_message(data_dir, conflicts, fingerprint))
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in remove_stale_temporaries(data_dir):
        print(f"removed {path.name}, left by a process of this host that no longer runs")
    targets = {split: shard_path(data_dir, split) for split in SPLITS if sizes[split] > 0}
    pending = {}
    for split, path in targets.items():
        if resume and _is_done(path, fingerprint, sizes[split], {"split": split}):
            print(f"{path} is complete; skipping (overwrite=true rewrites it)")
        else:
            pending[split] = path
    for note in plan.notes:
        print(note)
    if not pending:
        return list(targets.values())
    with stop_cleanly_on_signals(data_dir):
        with saying_previous_kept(data_dir, settings.overwrite, "surrogates-import"):
            staged, fingerprint = _write_pending(
                plan, settings, assignment, sizes, pending, sums, fingerprint, states, resume
            )
        with signals_deferred():  # a signal now would leave the previous files that the new dataset lacks
            publish_files(staged)
            if settings.overwrite:
                remove_replaced_files(data_dir, {path.name for path in targets.values()}, set(SPLITS), fingerprint)
    return list(targets.values())


def _write_pending(plan: Plan, settings: ImportSettings, assignment: list[np.ndarray], sizes: dict[str, int],
                   pending: dict[str, Path], sums: dict[str, str] | None, fingerprint: dict[str, Any] | None,
                   states: dict[Path, tuple], resume: bool) -> tuple[list[tuple[Path, Path]], dict[str, Any]]:
    """:func:`_write`; without ``sums`` (nothing to resume), the source is hashed in a thread while its samples are
    written. Returns the ``(temporary, final)`` pairs to publish and the dataset's fingerprint."""
    if resume:
        return _write(plan, settings, assignment, sizes, pending, sums, fingerprint, states)
    # hash the source in a thread while its samples are written (hashlib releases the GIL on large blocks);
    # the checksums go into the files before they are published
    stop = threading.Event()
    pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
    try:
        return _write(plan, settings, assignment, sizes, pending, pool.submit(checksums, plan, False, stop), None, states)
    finally:
        stop.set()  # an interrupted import does not wait for the hash to finish
        pool.shutdown(wait=True)


def consecutive_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted row indices as runs ``[first, last)`` of consecutive rows: ``[0, 1, 2, 5, 6]`` -> ``[(0, 3), (5, 7)]``."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    firsts, lasts = rows[np.r_[0, breaks]], rows[np.r_[breaks - 1, rows.size - 1]] + 1
    return [(int(a), int(b)) for a, b in zip(firsts, lasts)]


def _fingerprint(plan: Plan, settings: ImportSettings, sizes: dict[str, int], sums: dict[str, str]) -> dict[str, Any]:
    """What makes an imported dataset: the import settings, the layout, the sources in pool order with their
    checksums (:func:`_ordered_sources`) and the split sizes."""
    return json.loads(fp.dumps({
        "schema_version": SCHEMA_VERSION, "import": settings.fingerprint_settings(), "layout": plan.layout,
        "pde": plan.pde, "inputs": plan.inputs, "targets": plan.targets,
        "source_sha256": _ordered_sources(plan, settings, sums), "seed": int(settings.seed), "sizes": sizes,
    }))


def _ordered_sources(plan: Plan, settings: ImportSettings, sums: dict[str, str]) -> list[list[str]]:
    """``[[path relative to the source root, sha256], ...]`` in the order of the plan's parts, which is the order of
    the sample pool that the split permutation indexes: files that trade names or contents, or are renamed, change
    it, so a resumed import never combines files split from two different pools. Relative paths (a single file's
    name) keep the fingerprint of a source folder that moved."""
    root = source_root(settings.source)
    return [[_relative_name(path, root), sums[str(path)]] for part in plan.parts for path in part.files]


def _relative_name(path: Path, root: Path | None) -> str:
    """A source file's path below the source root (a single file or store, without root: its name)."""
    if root is None:
        return path.name
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _source_states(plan: Plan) -> dict[Path, tuple]:
    return {path: source_state(path) for path in plan.source_paths()}


def _check_unchanged(states: dict[Path, tuple]) -> None:
    """Raise :class:`ImportDataError` when a source file changed (size, modification time, inode) since the import
    began: its samples and its checksum may come from two versions of it."""
    for path, before in states.items():
        try:
            now = source_state(path)
        except OSError as error:
            raise ImportDataError(f"{path} became unreadable during the import ({error}); nothing was published") from error
        if now != before:
            raise ImportDataError(
                f"{path} changed while it was imported (size, modification time or inode differ); "
                "nothing was published: import it again once it is no longer written to"
            )


def _check_finite(part: Part, start: int, data: Mapping[str, np.ndarray]) -> None:
    """Refuse a block of samples ``start ..`` of ``part`` with NaN or infinite values (as float32, the stored dtype),
    naming the source's sample indices: the writer names the rows of an output split, which a user cannot find in
    the source.

    Raises
    ------
    ImportDataError
        Naming the source, the variable and the samples (their index in the source file).
    """
    for name, values in data.items():
        with np.errstate(over="ignore"):
            values = np.asarray(values).astype(np.float32, copy=False)  # beyond float32's range: inf, as stored
        if values.size == 0:
            continue
        bad = np.flatnonzero(~np.isfinite(values).reshape(values.shape[0], -1).all(axis=1))
        if bad.size:
            listed = ", ".join(str(start + i) for i in bad[:10]) + (f", ... ({bad.size} in this block)" if bad.size > 10 else "")
            raise ImportDataError(
                f"{part.label}: variable {name!r} has NaN, missing (_FillValue) or infinite values (as float32) at "
                f"source sample(s) {listed}; expected finite values; nothing was published"
            )


def _write(plan: Plan, settings: ImportSettings, assignment: list[np.ndarray], sizes: dict[str, int],
           pending: dict[str, Path], sums: dict[str, str] | Future, fingerprint: dict[str, Any] | None,
           states: dict[Path, tuple]) -> tuple[list[tuple[Path, Path]], dict[str, Any]]:
    """Stream the samples into the ``pending`` split files, left complete under their temporary names; returns the
    ``(temporary, final)`` pairs for :func:`~surrogates.data.publishing.publish_files` and the fingerprint written into
    them. ``sums`` may still be computing (a future): the files are then written with placeholders and get the
    checksums and the fingerprint once the sources are found unchanged since ``states`` (:func:`_check_unchanged`).
    On any fault the temporaries are removed."""
    ids = {name: i for i, name in enumerate(SPLITS)}
    sources = [str(path) for path in plan.source_paths()]
    names = [*plan.variables]
    writers = {}
    for split, path in pending.items():
        attrs = {
            **plan.attrs,
            "pde": plan.pde, "schema_version": SCHEMA_VERSION,
            "inputs": " ".join(plan.inputs), "targets": " ".join(plan.targets),
            "source": json.dumps(sources),
            "source_sha256": json.dumps(sums, sort_keys=True) if isinstance(sums, dict) else "pending",
            "import_config": settings.config_yaml, "import_layout": plan.layout,
            "split": split, "n_total": sizes[split], "split_seed": int(settings.seed),
            fp.FINGERPRINT_ATTR: fp.dumps(fingerprint) if fingerprint is not None else "pending",
        }
        writers[split] = StreamingDatasetWriter(
            path, sizes[split], plan.variables, plan.coords, attrs, overwrite=True,
            variable_attrs={name: var.attrs for name, var in plan.variables.items()},
        )
    block = _block_size(plan, settings)
    total = sum(int(np.isin(a, [ids[s] for s in pending]).sum()) for a in assignment)
    positions = dict.fromkeys(pending, 0)
    bar = tqdm(total=total, desc=f"{plan.pde} -> {Path(settings.data_dir).name}", unit="sample",
               **({} if settings.progress else {"disable": True}))
    opened = []
    try:
        for writer in writers.values():
            opened.append(writer.__enter__())
        for part, split_ids in zip(plan.parts, assignment):
            wanted = np.isin(split_ids, [ids[s] for s in pending])
            for start in range(0, part.n_samples, block):
                stop = min(start + block, part.n_samples)
                if not wanted[start:stop].any():
                    continue
                data = part.read(start, stop)
                missing = [name for name in names if name not in data]
                if missing:
                    raise ImportDataError(f"{part.label}: could not read {missing}")
                try:
                    for split in pending:
                        # each run of consecutive rows of a split is written from a view of the block: no gathered copy
                        for first, last in consecutive_runs(np.flatnonzero(split_ids[start:stop] == ids[split])):
                            writers[split].write(positions[split], {name: np.asarray(data[name])[first:last] for name in names})
                            positions[split] += last - first
                            bar.update(last - first)
                except DatasetFileError:
                    # the writer names rows of an output split; name the source's samples instead (checked only
                    # here, so a clean block is not scanned twice)
                    _check_finite(part, start, {name: data[name] for name in names})
                    raise
        if isinstance(sums, Future):
            sums = sums.result()
            fingerprint = _fingerprint(plan, settings, sizes, sums)
            for writer in writers.values():
                writer.update_attrs({"source_sha256": json.dumps(sums, sort_keys=True), fp.FINGERPRINT_ATTR: fp.dumps(fingerprint)})
        _check_unchanged(states)
        # every file is closed and flushed here, so that publishing them is only renames, back to back
        staged = [(writer.finish(), writer.path) for writer in writers.values()]
    except BaseException:
        for writer in opened:
            writer.__exit__(None, None, None)  # removes its temporary file
        raise
    finally:
        bar.close()
    return staged, fingerprint
