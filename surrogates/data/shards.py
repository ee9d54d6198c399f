"""File names of splits and their shards, and completeness checks for resuming generation.

A split is either one file, ``<split>.h5``, or ``num_shards`` files written by independent jobs,
``<split>-<shard>-of-<num_shards>.h5`` with five-digit zero-padded numbers, e.g.
``train-00003-of-00008.h5``. The padding makes lexical order equal to shard order; the total in the
name tells a reader whether every shard is there. Each job writes only its own files (several
processes never append to one HDF5 file).

A file also says which part it holds, in its attributes ``split``, ``shard``, ``num_shards`` and ``n_total``:
:func:`split_files` checks them against its name (a shard copied over another, or another split's file copied
in, is refused), and the readers check that the files of a split share their grid (:func:`check_same_coordinates`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data import fingerprint as fp
from surrogates.data.schema import SAMPLE_DIM, DatasetFileError, inspect_file, plain

SUFFIX = ".h5"
_SHARD = re.compile(r"^(?P<split>.+)-(?P<shard>\d{5})-of-(?P<total>\d{5})\.h5$")


def shard_path(data_dir: str | Path, split: str, shard: int = 0, num_shards: int = 1) -> Path:
    """Path of one shard of a split.

    Parameters
    ----------
    data_dir
        The dataset folder, e.g. ``datasets/darcy_64``.
    split
        ``"train"``, ``"val"``, ``"test"`` or another name without ``/``.
    shard, num_shards
        ``0 <= shard < num_shards``.

    Returns
    -------
    Path
        ``data_dir/<split>.h5`` when ``num_shards == 1``, else ``data_dir/<split>-00003-of-00008.h5``.
    """
    if not split or "/" in split or "\\" in split:
        raise ValueError(f"invalid split name {split!r}")
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards, got shard={shard}, num_shards={num_shards}")
    if num_shards >= 100_000:
        raise ValueError(f"at most 99999 shards, got {num_shards}")
    data_dir = Path(data_dir)
    if num_shards == 1:
        return data_dir / f"{split}{SUFFIX}"
    return data_dir / f"{split}-{shard:05d}-of-{num_shards:05d}{SUFFIX}"


def split_files(data_dir: str | Path, split: str) -> list[Path]:
    """All files of a split, in shard order.

    Returns
    -------
    list of Path
        ``[data_dir/<split>.h5]`` or every ``<split>-XXXXX-of-NNNNN.h5``, sorted by shard.

    Raises
    ------
    FileNotFoundError
        If the folder or the split is missing (the message lists what the folder holds), if some of
        the ``num_shards`` shards are missing (it names them), or if the folder mixes a single file
        with shards or shards of different ``num_shards``.
    DatasetFileError
        If the shards carry different generator fingerprints (:func:`check_same_fingerprint`), or a file's
        attributes say it holds another part than its name (:func:`check_split_attributes`).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"dataset folder {data_dir} does not exist (generate it with surrogates-generate)")
    single = data_dir / f"{split}{SUFFIX}"
    shards: dict[int, dict[int, Path]] = {}
    for candidate in data_dir.iterdir():
        match = _SHARD.match(candidate.name)
        if match and match["split"] == split and candidate.is_file():
            shards.setdefault(int(match["total"]), {})[int(match["shard"])] = candidate
    if single.is_file() and shards:
        raise FileNotFoundError(
            f"{data_dir} holds both {single.name} and shards of split {split!r}; remove one of them"
        )
    if single.is_file():
        check_split_attributes([single], split)
        check_same_dataset_as_other_splits(data_dir, split, single)
        return [single]
    if not shards:
        content = sorted(p.name for p in data_dir.iterdir())
        raise FileNotFoundError(
            f"no file for split {split!r} in {data_dir} (expected {split}{SUFFIX} or "
            f"{split}-00000-of-NNNNN{SUFFIX}); the folder holds: {', '.join(content) or 'nothing'}"
        )
    if len(shards) > 1:
        raise FileNotFoundError(
            f"{data_dir} mixes shards of split {split!r} written with different num_shards {sorted(shards)}"
        )
    total, found = next(iter(shards.items()))
    missing = [i for i in range(total) if i not in found]
    if missing:
        listed = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise FileNotFoundError(
            f"split {split!r} in {data_dir} is incomplete: {len(missing)} of {total} shards missing "
            f"(shard {listed}); run the generation for them (shard=<i> num_shards={total})"
        )
    files = [found[i] for i in range(total)]
    check_same_fingerprint(files)
    check_split_attributes(files, split)
    check_same_dataset_as_other_splits(data_dir, split, files[0])
    return files


def check_split_attributes(files: Sequence[Path], split: str) -> None:
    """Refuse files of ``split`` (in shard order) whose attributes say they hold another part of the data.

    Each recorded attribute must agree with the file's place: ``split`` with ``split``, ``shard`` with its
    index, ``num_shards`` with the number of files; the files' samples must sum to ``n_total``. A file copied
    under another shard's or split's name (which would duplicate samples, or test on training samples) is so
    refused. Attributes a file lacks (files of other writers) are not checked; files that cannot be opened are
    left to the schema check.

    Raises
    ------
    DatasetFileError
        Naming the file, the attribute, its value and the expected one.
    """
    totals = {}
    counts = []
    for index, path in enumerate(files):
        try:
            attrs, n_samples = _part_attributes(path)
        except OSError:
            counts.append(None)
            continue
        expected = {
            "split": (split, f"holds split {attrs.get('split')!r}", f"is read as part of split {split!r}"),
            "shard": (index, f"holds shard {attrs.get('shard')!r}", f"is read as shard {index} of split {split!r}"),
            "num_shards": (len(files), f"is one of {attrs.get('num_shards')!r} shards", f"split {split!r} has {len(files)} file(s)"),
        }
        for key, (value, found, read_as) in expected.items():
            if key in attrs and attrs[key] != value:
                raise DatasetFileError(
                    path, f"{found} (its {key!r} attribute), but {read_as}: a file copied or renamed from another part "
                    "of the data? Refusing to read it here (it would duplicate samples or mix splits); put the right "
                    "file back, or remove it and generate it again"
                )
        if "n_total" in attrs:
            totals[path] = attrs["n_total"]
        counts.append(n_samples)
    if totals:
        _check_n_total(files, split, totals, counts)


def _part_attributes(path: Path) -> tuple[dict[str, Any], int | None]:
    """The file's ``split``, ``shard``, ``num_shards``, ``n_total`` attributes (those it has; numbers as int) and
    its number of samples (None when it has no ``sample`` dim)."""
    import h5py

    with h5py.File(path, "r") as handle:
        attrs = {key: plain(handle.attrs[key]) for key in ("split", "shard", "num_shards", "n_total") if key in handle.attrs}
        sample = handle.get(SAMPLE_DIM)
        n_samples = int(sample.shape[0]) if isinstance(sample, h5py.Dataset) and len(sample.shape) == 1 else None
    for key in ("shard", "num_shards", "n_total"):
        if key in attrs and isinstance(attrs[key], float) and attrs[key].is_integer():
            attrs[key] = int(attrs[key])
    return attrs, n_samples


def _check_n_total(files: Sequence[Path], split: str, totals: Mapping[Path, Any], counts: Sequence[int | None]) -> None:
    """Refuse a split whose files record different ``n_total`` or hold another number of samples in all."""
    first, reference = next(iter(totals.items()))
    for path, value in totals.items():
        if value != reference:
            raise DatasetFileError(
                path, f"records n_total {value!r}, but {first.name} records {reference!r}: files of different datasets in split {split!r}?"
            )
    if any(count is None for count in counts):
        return
    held = sum(counts)
    if held != reference:
        where = files[0] if len(files) == 1 else files[0].parent
        listed = "" if len(files) == 1 else " (" + ", ".join(f"{p.name}: {c}" for p, c in zip(files, counts)) + ")"
        raise DatasetFileError(
            where, f"split {split!r} holds {held} samples{listed}, but its files record n_total {reference!r}: "
            "a shard copied over another, truncated or of another dataset?"
        )


def check_same_fingerprint(files: list[Path]) -> None:
    """Refuse files of one split whose generator fingerprints differ (data of different datasets).

    Files without a fingerprint (written before fingerprints existed) may be combined with each
    other, not with files that have one. Files that cannot be opened are left to the schema check.

    Raises
    ------
    DatasetFileError
        Naming the first file and the first one that differs from it, and the differing keys.
    """
    if len(files) < 2:
        return
    prints = []
    for path in files:
        try:
            prints.append((path, fp.read_fingerprint(path)))
        except OSError:
            continue
    if not prints:
        return
    first, reference = prints[0]
    for path, other in prints[1:]:
        if other != reference:
            count = sum(1 for _, value in prints if value != reference)
            raise DatasetFileError(
                path,
                f"was generated with another fingerprint than {first.name} "
                f"({fp.differences(reference, other)}; {first.name} -> {path.name}); "
                f"{count} of {len(prints)} shards differ, refusing to combine data of different datasets "
                "(regenerate the shards with the same settings, or overwrite=true)",
            )


SPLITS = ("train", "val", "test")
"""The splits of a dataset that the package writes and reads by name (other split names are the user's)."""


def check_same_dataset_as_other_splits(data_dir: Path, split: str, first: Path) -> None:
    """Refuse a split whose first file carries another fingerprint than the first file of ``train``, ``val`` or
    ``test`` in the same folder: every file of one generated or imported dataset carries one fingerprint, so a
    difference means splits of two datasets side by side (shard jobs of an ``overwrite=true`` run of which only
    some have finished, a crash while a run renamed its files into place, or files copied between folders), e.g.
    validation data drawn with another seed or from another source than the training data. The other splits'
    first files stand for them (their shards are compared when they are read); files that cannot be opened are
    left to the schema check.

    Raises
    ------
    DatasetFileError
        Naming both files and the fingerprint keys that differ.
    """
    try:
        reference = fp.read_fingerprint(first)
    except OSError:
        return
    for other in SPLITS:
        if other == split:
            continue
        candidates = [data_dir / f"{other}{SUFFIX}"] + sorted(
            p for p in data_dir.iterdir() if (m := _SHARD.match(p.name)) and m["split"] == other and m["shard"] == "00000"
        )
        for path in candidates:
            if not path.is_file():
                continue
            try:
                found = fp.read_fingerprint(path)
            except OSError:
                continue
            if found != reference:
                raise DatasetFileError(
                    first,
                    f"belongs to another dataset than {path.name} beside it ({fp.differences(found, reference)}; "
                    f"{path.name} -> {first.name}); refusing to mix splits of two datasets (an "
                    "overwrite=true run whose shard jobs have not all finished leaves this: finish or rerun them, or "
                    "regenerate / re-import the folder)",
                )


def has_split(data_dir: str | Path, split: str) -> bool:
    """Whether ``data_dir`` holds any file of ``split`` (single or shard; complete or not)."""
    data_dir = Path(data_dir)
    if (data_dir / f"{split}{SUFFIX}").is_file():
        return True
    if not data_dir.is_dir():
        return False
    return any((m := _SHARD.match(p.name)) and m["split"] == split for p in data_dir.iterdir())


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a finished, valid dataset file (a cheap check: metadata only, no data scan).

    Files are only ever published by an atomic rename, so an existing file that passes
    :func:`~surrogates.data.schema.inspect_file` was written completely.
    """
    try:
        inspect_file(path, check_finite=False)
    except DatasetFileError:
        return False
    return True


def check_same_coordinates(
    first: Path, expected: Mapping[str, np.ndarray], path: Path, found: Mapping[str, np.ndarray]
) -> None:
    """Refuse a file of a split whose coordinates differ from the first file's (``expected``).

    The files of a split are read as samples on one grid, with the first file's coordinates. The values are
    compared exactly: the shards of one dataset are written with the same coordinates, computed the same way,
    so any difference is another grid (or another dataset).

    Raises
    ------
    DatasetFileError
        Naming ``path``, the coordinate and its first differing value, and the first file.
    """
    for name in sorted(set(expected) | set(found)):
        if name not in found or name not in expected:
            has, lacks = (first.name, "this file") if name not in found else ("this file", first.name)
            raise DatasetFileError(
                path, f"coordinate {name!r}: {has} has it, {lacks} has not; all files of a split must share their grid"
            )
        a, b = np.asarray(expected[name]), np.asarray(found[name])
        if a.shape != b.shape:
            raise DatasetFileError(
                path, f"coordinate {name!r} has {b.size} values, {first.name}'s has {a.size}; all files of a split must share their grid"
            )
        if not np.array_equal(a, b):
            i = int(np.flatnonzero(a != b)[0])
            raise DatasetFileError(
                path, f"coordinate {name!r} differs from {first.name}'s: {_span(b)} here, {_span(a)} there (first "
                f"difference at index {i}: {b[i].tolist()!r} here, {a[i].tolist()!r} there); all files of a split must share their grid"
            )


def _span(values: np.ndarray) -> str:
    """``[0.0 .. 1.0] (8 values)``, for messages."""
    if values.size == 0:
        return "no values"
    return f"[{values[0].tolist()!r} .. {values[-1].tolist()!r}] ({values.size} values)"
