"""Write a PDE's dataset split by split and shard by shard, resuming where a previous run stopped.

Random numbers are drawn per chunk of ``chunk_size`` samples, seeded by ``(seed, split, first
sample index)`` (:func:`split_entropy`), so a dataset does not depend on how it was split into shards
or jobs, and no two splits share inputs.

Generation never mixes data: every file records the dataset's fingerprint
(:mod:`surrogates.data.fingerprint`); a rerun whose fingerprint differs from the files already in
the folder is refused (:class:`GenerationError`) unless ``overwrite`` replaces them. Settings are
checked before any work (:func:`check_settings`), and SIGTERM / SIGINT remove this process's
temporary files before the run stops (:class:`GenerationInterrupted`).

Without ``overwrite`` each file is published (renamed from its temporary name) as soon as it is complete,
so an interrupted run resumes. With ``overwrite`` a job's new files stay under their temporary names until
all of them are complete and are then published together (:func:`~surrogates.data.publishing.publish_files`):
a fault before that leaves the previous dataset as it was. Files of the previous dataset that the new one
does not have are removed once the new dataset is complete (:func:`remove_replaced_files`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from surrogates.data import fingerprint as fp
from surrogates.data.progress import progress_bar
from surrogates.data.schema import CONTENT_VERSION, SCHEMA_VERSION, DatasetFileError, inspect_file
from surrogates.data.shards import SPLITS, SUFFIX, shard_path
from surrogates.data.publishing import publish_files, signals_deferred
from surrogates.data.streaming_writer import StreamingDatasetWriter
from surrogates.data.temporaries import remove_stale_temporaries, temporary_path
from surrogates.data.writer import created_now, write_dataset

_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
_OTHER_SPLIT = 99

_SHARD_NAME = re.compile(r"^(?P<split>.+)-\d{5}-of-\d{5}\.h5$")
MAX_SHARDS = 99_999


class GenerationError(ValueError):
    """A generation run refused before doing any work; the message is one line saying why and what to do."""


class GenerationInterrupted(BaseException):
    """SIGTERM or SIGINT arrived during generation; this process's temporary files were removed.

    A ``BaseException`` (like ``KeyboardInterrupt``), so ``except Exception`` does not swallow it. ``kept``: the
    folder of an ``overwrite=true`` run stopped before it published anything, which the message names as kept.
    """

    def __init__(self, signum: int, kept: str | Path | None = None):
        self.signum = int(signum)
        name = signal.Signals(signum).name
        if kept is None:
            text = ", complete files are kept; rerun the same command to resume"
        else:  # an overwrite=true run: nothing new was published
            text = f"; {previous_kept(kept)}; rerun the same command to replace them"
        super().__init__(f"interrupted by {name}: this job's temporary files were removed{text}")


def previous_kept(data_dir: str | Path) -> str:
    """What a failed ``overwrite=true`` run leaves, for its messages."""
    return (
        "nothing new was published (overwrite=true publishes a job's files only once all are complete), "
        f"so the previous files in {data_dir} are kept as they were"
    )


@contextmanager
def saying_previous_kept(data_dir: str | Path, overwrite: bool, command: str) -> Iterator[None]:
    """Around the writing of a run's files before they are published: when ``overwrite`` is true, a signal
    becomes a :class:`GenerationInterrupted` saying the previous files are kept, and any other fault prints that
    on stderr (``<command>: ...``) before it propagates."""
    try:
        yield
    except GenerationInterrupted as error:
        if not overwrite:
            raise
        raise GenerationInterrupted(error.signum, kept=data_dir) from None
    except BaseException:
        if overwrite:
            print(f"{command}: stopped before the new files were complete: {previous_kept(data_dir)}",
                  file=sys.stderr, flush=True)
        raise


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise GenerationError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def check_settings(
    sizes: Mapping[str, Any], seed: Any, shard: Any, num_shards: Any, chunk_size: Any, overwrite: Any = False
) -> tuple[dict[str, int], int, int, int, int]:
    """Check generation settings before any work; returns them as ints ``(sizes, seed, shard, num_shards, chunk_size)``.

    Raises
    ------
    GenerationError
        With a one-line message naming the setting (``n_<split>``, ``seed``, ``shard``,
        ``num_shards``, ``chunk_size``, ``overwrite``) when a value is not an integer (``abc``,
        ``1.5``, ``true``), is negative, or is zero where that is not allowed: split sizes are
        ``>= 0`` with at least one ``> 0``, ``chunk_size >= 1``, ``1 <= num_shards <= 99999``,
        ``0 <= shard < num_shards``, ``0 <= seed < 2**32``.
    """
    checked: dict[str, int] = {}
    for split, n in sizes.items():
        if not split or "/" in split or "\\" in split:
            raise GenerationError(f"invalid split name {split!r}")
        checked[split] = _integer(f"n_{split}", n)
        if checked[split] < 0:
            raise GenerationError(f"n_{split} must be >= 0 (0 skips the split), got {checked[split]}")
    if not any(checked.values()):
        names = ", ".join(f"n_{split}" for split in checked) or "the split sizes"
        raise GenerationError(f"nothing to generate: {names} are all 0; set at least one to a positive number")
    seed = _integer("seed", seed)
    if not 0 <= seed < SEED_LIMIT:
        raise GenerationError(f"seed must be in [0, 2**32) = [0, {SEED_LIMIT - 1}], got {seed}")
    chunk_size = _integer("chunk_size", chunk_size)
    if chunk_size < 1:
        raise GenerationError(f"chunk_size must be >= 1, got {chunk_size}")
    num_shards = _integer("num_shards", num_shards)
    if not 1 <= num_shards <= MAX_SHARDS:
        raise GenerationError(f"num_shards must be in [1, {MAX_SHARDS}], got {num_shards}")
    shard = _integer("shard", shard)
    if not 0 <= shard < num_shards:
        raise GenerationError(f"shard must be in [0, num_shards) = [0, {num_shards}), got {shard}")
    if not isinstance(overwrite, bool | np.bool_):
        raise GenerationError(f"overwrite must be true or false, got {overwrite!r}")
    return checked, seed, shard, num_shards, chunk_size


SWALLOWED_SIGNAL_GRACE = 5.0
"""Seconds after a signal before a run whose :class:`GenerationInterrupted` was swallowed is ended anyway."""


@contextmanager
def stop_cleanly_on_signals(folder: str | Path | None = None) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`GenerationInterrupted` while the block runs (main thread only).

    The exception unwinds through the writers, which remove their temporary files. Further
    signals are ignored until the block exits, so the clean-up itself is not interrupted.
    Python drops an exception raised while it runs a weakref callback or a finalizer (a signal that
    lands in the import machinery, say): the run would then go on with signals ignored. So a signal
    also arms a timer: if the block has not ended :data:`SWALLOWED_SIGNAL_GRACE` seconds later, this
    process's temporary files in ``folder`` are removed, the message is printed and the process exits
    with ``128 + signal``, as the entry point would have.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    timers: list[threading.Timer] = []

    def end_anyway(signum: int) -> None:
        if folder is not None:  # this process's temporary files: <name>.tmp-<host>-<pid>
            for path in Path(folder).glob("*.tmp-*"):
                if path == temporary_path(path.with_name(path.name.rsplit(".tmp-", 1)[0])):
                    path.unlink(missing_ok=True)
        print(f"surrogates-generate: {GenerationInterrupted(signum)}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def handler(signum: int, frame: Any) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        timer = threading.Timer(SWALLOWED_SIGNAL_GRACE, end_anyway, args=(signum,))
        timer.daemon = True
        timer.start()
        timers.append(timer)
        raise GenerationInterrupted(signum)

    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)




def shard_range(n: int, shard: int, num_shards: int, chunk_size: int) -> range:
    """Sample indices of one shard: contiguous, aligned to chunks, all shards together cover ``range(n)``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    n_chunks = -(-n // chunk_size)
    first_chunk = shard * n_chunks // num_shards
    last_chunk = (shard + 1) * n_chunks // num_shards
    return range(min(first_chunk * chunk_size, n), min(last_chunk * chunk_size, n))


SEED_LIMIT = 2**32
"""Seeds are one 32-bit word of a chunk's entropy ``[seed, *split_entropy(split), start]``: ``SeedSequence`` would
spread a larger seed over two words, so seed ``2**32``'s train chunks would be seed 0's val chunks (Lightning's
``seed_everything`` has the same bound)."""


def split_entropy(split: str) -> list[int]:
    """The words that identify a split in the seed of its chunks: ``[0]``, ``[1]``, ``[2]`` for train, val, test.

    Any other name gives ``[99, len, *utf8 bytes]``: one shared id for every other name drew the same
    inputs for two such splits of a dataset. The length keeps the word lists of two names distinct
    (``SeedSequence`` treats short lists that differ by trailing zeros alike).
    """
    if split in _SPLIT_IDS:
        return [_SPLIT_IDS[split]]
    encoded = split.encode()
    return [_OTHER_SPLIT, len(encoded), *encoded]


def generate_split(
    pde: Any,
    path: Path,
    split: str,
    indices: range,
    seed: int,
    chunk_size: int,
    attrs: Mapping[str, Any],
    progress: bool = True,
    publish: bool = True,
) -> Path:
    """Generate the samples ``indices`` of a split with ``pde`` and write them atomically to ``path``.

    Parameters
    ----------
    pde
        A :class:`surrogates.pdes.base.PDE` (duck-typed: ``generate``, ``variables``, ``coords``).
    indices
        Global sample indices of this shard within the split (chunk aligned).
    attrs
        Extra file attributes (config, shard, ...); ``pde``, ``split``, ``seed``, ``solver_report``,
        ``created``, ``schema_version``, ``inputs`` and ``targets`` are filled in here.
    publish
        ``False``: leave the complete file under its temporary name and return that name; the caller publishes
        it (:func:`~surrogates.data.publishing.publish_files`) or removes it.
    """
    tmp = temporary_path(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.touch()  # claims the name at once: an interrupted run removes it (or the next run does)
    try:
        return _generate_split(pde, path, split, indices, seed, chunk_size, attrs, progress, publish)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _generate_split(
    pde: Any, path: Path, split: str, indices: range, seed: int, chunk_size: int, attrs: Mapping[str, Any],
    progress: bool, publish: bool,
) -> Path:
    file_attrs = {
        **attrs,
        "pde": pde.name,
        "schema_version": SCHEMA_VERSION,
        "inputs": " ".join(pde.inputs),
        "targets": " ".join(pde.targets),
        "split": split,
        "seed": int(seed),
        "created": "",  # both filled in once every sample is written
        "solver_report": "",
    }
    if not len(indices):  # a shard without chunks: a file of zero samples
        file_attrs.update(created=created_now(), solver_report=json.dumps({}))
        return write_dataset(path, {}, pde.variables(), pde.coords(), file_attrs, overwrite=True, publish=publish)
    # each chunk is written as soon as it is solved: a file never holds more than one chunk in memory
    writer = StreamingDatasetWriter(path, len(indices), pde.variables(), pde.coords(), file_attrs, overwrite=True)
    report = None
    # Without an explicit `disable`, tqdm honours TQDM_DISABLE=1 from the environment.
    disable = {} if progress else {"disable": True}
    # a bar on a terminal, a line every 30 s in a log (surrogates.data.progress)
    bar = progress_bar(total=len(indices), desc=f"{pde.name} {split} -> {path.name}", unit="sample", **disable)
    writer.__enter__()
    try:
        for start in range(indices.start, indices.stop, chunk_size):
            count = min(chunk_size, indices.stop - start)
            rng = np.random.default_rng(np.random.SeedSequence([seed, *split_entropy(split), start]))
            # Solvers work on small vectors: threaded BLAS only adds overhead, and under contention from
            # parallel shard jobs it slows solves by an order of magnitude.
            with threadpool_limits(limits=1, user_api="blas"):
                fields, chunk_report = pde.generate(count, rng)
            writer.write(start - indices.start, fields)
            report = chunk_report if report is None else report.merged(chunk_report)
            bar.update(count)
        writer.update_attrs({"created": created_now(), "solver_report": json.dumps(report.summary() if report is not None else {})})
        tmp = writer.finish()
    except BaseException:
        writer.__exit__(None, None, None)  # removes its temporary file
        raise
    finally:
        bar.close()
    return writer.publish() if publish else tmp


def generate_dataset(
    pde: Any,
    data_dir: str | Path,
    sizes: Mapping[str, int],
    seed: int = 0,
    shard: int = 0,
    num_shards: int = 1,
    chunk_size: int = 16,
    config_yaml: str = "",
    overwrite: bool = False,
    progress: bool = True,
    pde_config: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Generate this job's shard of every split; complete files of the same dataset are skipped.

    Parameters
    ----------
    sizes
        Number of samples per split, e.g. ``{"train": 1000, "val": 100, "test": 200}``.
    pde_config
        The resolved config that built ``pde`` (the CLI passes the Hydra ``pde`` node); it enters
        the fingerprint. ``None``: the PDE's class path and public plain-valued attributes.
    overwrite
        Replace the folder's dataset: this job's files are regenerated under temporary names and
        published together once all are complete, so a fault before that leaves the previous
        dataset as it was. Dataset files the new dataset would not write (other splits, another
        shard layout) are removed once every file of the new dataset is there (after the last shard
        job). Without it, a folder holding files of a different fingerprint is refused, and each
        file is published as soon as it is complete (a rerun resumes).

    Returns
    -------
    list of Path
        The shard files of this job, one per non-empty split.

    Raises
    ------
    GenerationError
        Before any work: invalid settings (:func:`check_settings`), or files of another dataset
        (different or unknown fingerprint) in ``data_dir`` without ``overwrite``.
    GenerationInterrupted
        On SIGTERM / SIGINT (when called from the main thread), after removing this job's
        temporary files.
    """
    sizes, seed, shard, num_shards, chunk_size = check_settings(sizes, seed, shard, num_shards, chunk_size, overwrite)
    fingerprint = fp.make_fingerprint(
        pde_config if pde_config is not None else fp.describe_pde(pde), seed, sizes, chunk_size, num_shards,
        CONTENT_VERSION,
    )
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise GenerationError(f"{data_dir} exists and is not a folder")
    own = {split: shard_path(data_dir, split, shard, num_shards) for split, n in sizes.items() if n > 0}
    planned = {
        shard_path(data_dir, split, i, num_shards).name for split, n in sizes.items() if n > 0 for i in range(num_shards)
    }
    existing = _dataset_files(data_dir, set(sizes) | set(SPLITS))
    conflicts = {path: old for path, old in existing.items() if old is not _UNREADABLE and old != fingerprint}
    if conflicts and not overwrite:
        raise GenerationError(_conflict_message(data_dir, conflicts, fingerprint))

    data_dir.mkdir(parents=True, exist_ok=True)
    for path in remove_stale_temporaries(data_dir):
        print(f"removed {path.name}, left by a process of this host that no longer runs")
    if overwrite:
        others = sorted(p.name for p in conflicts if p.name in planned and p not in own.values())
        if others:
            print(f"{', '.join(others)} still hold the previous dataset until their shard jobs run with overwrite=true")

    file_attrs = {
        "config": config_yaml, "shard": shard, "num_shards": num_shards, fp.FINGERPRINT_ATTR: fp.dumps(fingerprint),
    }
    jobs = []  # (split, path, indices, attrs) of every non-empty split
    for split, n in sizes.items():
        if n > 0:
            indices = shard_range(n, shard, num_shards, chunk_size)
            jobs.append((split, own[split], indices, {**file_attrs, "n_total": n}))
    with stop_cleanly_on_signals(data_dir):
        if not overwrite:
            return _generate_resumable(pde, jobs, fingerprint, seed, chunk_size, progress)
        with saying_previous_kept(data_dir, overwrite, "surrogates-generate"):
            staged = _generate_staged(pde, jobs, seed, chunk_size, progress)
        with signals_deferred():  # a signal now would leave the previous files that the new dataset lacks
            publish_files(staged)
            remove_replaced_files(data_dir, planned, set(sizes) | set(SPLITS), fingerprint)
    return [path for _, path, _, _ in jobs]


def _generate_resumable(
    pde: Any, jobs: list[tuple[str, Path, range, dict[str, Any]]], fingerprint: dict[str, Any], seed: int,
    chunk_size: int, progress: bool,
) -> list[Path]:
    """Write each file of ``jobs`` that is not complete yet, publishing it as soon as it is (a rerun resumes)."""
    written = []
    for split, path, indices, attrs in jobs:
        place = {"split": split, "shard": attrs["shard"], "num_shards": attrs["num_shards"]}
        if _is_done(path, fingerprint, len(indices), place):
            print(f"{path} is complete; skipping (overwrite=true regenerates it)")
        else:
            generate_split(pde, path, split, indices, seed, chunk_size, attrs, progress)
        written.append(path)
    return written


def _generate_staged(
    pde: Any, jobs: list[tuple[str, Path, range, dict[str, Any]]], seed: int, chunk_size: int, progress: bool,
) -> list[tuple[Path, Path]]:
    """Write every file of ``jobs`` under its temporary name; returns ``(temporary, final)`` pairs to publish.

    On any fault (an error, a signal) the temporaries written so far are removed and nothing is published.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for split, path, indices, attrs in jobs:
            tmp = generate_split(pde, path, split, indices, seed, chunk_size, attrs, progress, publish=False)
            staged.append((tmp, path))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def remove_replaced_files(
    data_dir: Path, planned: set[str], splits: set[str], fingerprint: dict[str, Any]
) -> list[Path]:
    """After an ``overwrite=true`` run published its files: once every file of the new dataset (``planned``, file
    names) is in ``data_dir`` with ``fingerprint``, remove the dataset files of ``splits`` that it does not have.

    A sharded dataset is complete only after its last shard job: the earlier jobs leave the previous dataset's
    other files in place (the readers refuse the mixed folder meanwhile), and the job that completes it removes
    them. Until the new files are all there the previous ones are the only copy of the old data.

    Returns
    -------
    list of Path
        The files removed (none while the new dataset is incomplete).
    """
    found = _dataset_files(data_dir, splits)
    new = {path.name: value for path, value in found.items() if path.name in planned}
    replaced = sorted(path for path in found if path.name not in planned)
    if set(new) != planned or any(value != fingerprint for value in new.values()):
        if replaced:
            waiting = len(planned - {name for name, value in new.items() if value == fingerprint})
            print(f"{', '.join(p.name for p in replaced)} of the previous dataset are kept until the {waiting} file(s) "
                  "of the new dataset that other shard jobs write are published (the last job removes them)")
        return []
    for path in replaced:
        path.unlink(missing_ok=True)  # another shard job finishing at the same time may remove it first
        print(f"removed {path} (overwrite=true: not part of the new dataset)")
    return replaced


_UNREADABLE = object()


def _dataset_files(data_dir: Path, splits: set[str]) -> dict[Path, Any]:
    """Dataset files of ``splits`` in ``data_dir`` (single or shard names) -> fingerprint, None or _UNREADABLE."""
    if not data_dir.is_dir():
        return {}
    found: dict[Path, Any] = {}
    for candidate in sorted(data_dir.iterdir()):
        match = _SHARD_NAME.match(candidate.name)
        single = candidate.name.endswith(SUFFIX) and candidate.name[: -len(SUFFIX)] in splits
        if not candidate.is_file() or not (single or (match and match["split"] in splits)):
            continue
        try:
            found[candidate] = fp.read_fingerprint(candidate)
        except OSError:  # truncated or not HDF5: never published by a writer, regenerated when it is ours
            found[candidate] = _UNREADABLE
    return found


def _conflict_message(data_dir: Path, conflicts: Mapping[Path, Any], fingerprint: dict[str, Any]) -> str:
    groups: dict[str, list[str]] = {}
    for path, old in conflicts.items():
        groups.setdefault(fp.dumps(old) if old is not None else "", []).append(path.name)
    parts = []
    for key, names in groups.items():
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        if key == "":
            parts.append(f"{listed}: unknown fingerprint (written before fingerprints existed)")
        else:
            parts.append(f"{listed}: {fp.differences(json.loads(key), fingerprint)} (existing -> requested)")
    return (
        f"{data_dir} holds another dataset ({'; '.join(parts)}); refusing to mix them. "
        "Rerun with overwrite=true to replace it, or choose another name=<folder>"
    )


def _is_done(path: Path, fingerprint: dict[str, Any], n_samples: int, place: dict[str, Any] | None = None) -> bool:
    """Whether ``path`` is a complete file of this dataset with the expected number of samples, holding the part
    of it that its name says: the attributes in ``place`` (``split``, ``shard``, ``num_shards``) that the file
    records must have these values. Every shard and split of a dataset has the same fingerprint, so without them a
    file copied over another shard's or split's name would count as done (and duplicate samples or mix splits)."""
    try:
        info = inspect_file(path, check_finite=False)
    except DatasetFileError:
        return False
    stored = info.attrs.get(fp.FINGERPRINT_ATTR)
    try:
        stored = json.loads(stored) if isinstance(stored, str) else None
    except ValueError:
        return False
    misplaced = any(key in info.attrs and info.attrs[key] != value for key, value in (place or {}).items())
    return stored == fingerprint and info.n_samples == n_samples and not misplaced
