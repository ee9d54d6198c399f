"""Import a source into a dataset folder: recognise its layout, split it, stream it into our files.

The layouts are recognised and joined into one plan in :mod:`~.planning`, the settings are
:class:`~.settings.ImportSettings`, and the samples are assigned to splits by :func:`~.splits.assign_splits`; this
module hashes the sources, writes the split files and publishes them.

One pass over the source: blocks of samples (``chunk_size`` samples, or as many as fit in ``chunk_bytes``)
are read part after part and each sample goes to the file of its split, so memory stays bounded whatever
the source's size. Each output file is written under a temporary name and renamed when complete
(:class:`~surrogates.data.streaming_writer.StreamingDatasetWriter`); the files of one run are renamed together once all are
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
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

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
from surrogates.data.importers.plan import ImportDataError, Part, Plan, file_sha256, source_bytes, source_root, source_state
from surrogates.data.importers.planning import make_plan
from surrogates.data.importers.settings import ImportSettings, samples_per_block
from surrogates.data.importers.splits import assign_splits
from surrogates.data.progress import progress_bar
from surrogates.data.publishing import publish_files, signals_deferred
from surrogates.data.schema import SCHEMA_VERSION, DatasetFileError
from surrogates.data.shards import SPLITS, shard_path
from surrogates.data.streaming_writer import StreamingDatasetWriter
from surrogates.data.temporaries import remove_stale_temporaries


def checksums(plan: Plan, progress: bool = True, stop: threading.Event | None = None) -> dict[str, str]:
    """SHA-256 of every source file, read in blocks, with a progress bar in bytes; ``stop`` set ends it early
    (:class:`InterruptedError`) at the next block."""
    files = plan.source_paths()
    bar = progress_bar(total=sum(source_bytes(path) for path in files), desc="sha256 of the source", unit="B", unit_scale=True,
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


def _split_writers(plan: Plan, settings: ImportSettings, sizes: dict[str, int], pending: dict[str, Path],
                   sums: dict[str, str] | Future, fingerprint: dict[str, Any] | None) -> dict[str, StreamingDatasetWriter]:
    """Per pending split, the (not yet opened) writer of its file, with the file attributes of an import; the source
    checksums and the fingerprint read ``"pending"`` while ``sums`` is still computing."""
    sources = [str(path) for path in plan.source_paths()]
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
    return writers


def _write(plan: Plan, settings: ImportSettings, assignment: list[np.ndarray], sizes: dict[str, int],
           pending: dict[str, Path], sums: dict[str, str] | Future, fingerprint: dict[str, Any] | None,
           states: dict[Path, tuple]) -> tuple[list[tuple[Path, Path]], dict[str, Any]]:
    """Stream the samples into the ``pending`` split files, left complete under their temporary names; returns the
    ``(temporary, final)`` pairs for :func:`~surrogates.data.publishing.publish_files` and the fingerprint written into
    them. ``sums`` may still be computing (a future): the files are then written with placeholders and get the
    checksums and the fingerprint once the sources are found unchanged since ``states`` (:func:`_check_unchanged`).
    On any fault the temporaries are removed."""
    ids = {name: i for i, name in enumerate(SPLITS)}
    names = [*plan.variables]
    writers = _split_writers(plan, settings, sizes, pending, sums, fingerprint)
    block = samples_per_block(plan, settings)
    total = sum(int(np.isin(a, [ids[s] for s in pending]).sum()) for a in assignment)
    positions = dict.fromkeys(pending, 0)
    bar = progress_bar(total=total, desc=f"{plan.pde} -> {Path(settings.data_dir).name}", unit="sample",
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
