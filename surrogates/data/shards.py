"""File names of splits and their shards, and completeness checks for resuming generation.

A split is either one file, ``<split>.h5``, or ``num_shards`` files written by independent jobs,
``<split>-<shard>-of-<num_shards>.h5`` with five-digit zero-padded numbers, e.g.
``train-00003-of-00008.h5``. The padding makes lexical order equal to shard order; the total in the
name tells a reader whether every shard is there. Each job writes only its own files (several
processes never append to one HDF5 file).
"""

from __future__ import annotations

import re
from pathlib import Path

from surrogates.data import fingerprint as fp
from surrogates.data.schema import DatasetFileError, inspect_file

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
        If the shards carry different generator fingerprints (:func:`check_same_fingerprint`).
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
    return files


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
