"""`XarrayDataModule` (``data=xarray``): train on your own NetCDF-4/HDF5 files without converting them.

Give the file(s) and the names: ``surrogates-train data=xarray data.path=my.nc data.inputs=[a]
data.targets=[u]``. The files need no attributes of ours; their variables need a sample dim (first,
named by ``sample_dim``). One file is split into train / val / test by ``val_fraction`` and
``test_fraction`` with ``split_seed``; files per split are given as ``train``, ``val``, ``test``.
Samples are read lazily, one h5py handle per file and worker process, as for the package's own datasets
(:class:`~surrogates.data.dataset.FieldDataset`, :mod:`surrogates.data.foreign`).

The split of one file is a function of its number of samples, the fractions and the seed only, so the schema
records, besides these, the file's identity (:func:`file_identity`: the number of samples and a SHA-256 of
some of them); evaluation (:meth:`XarrayDataModule.from_schema`) refuses a file with other samples, which
would give another split, with samples the model was trained on in its test split.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.datamodule import FieldDataModule
from surrogates.data.dataset import FieldDataset
from surrogates.data.fields import expand_field_names
from surrogates.data.foreign import DEFAULT_COMPONENT_DIMS, ForeignFileInfo, ForeignLayout, inspect_foreign
from surrogates.data.schema import DatasetFileError
from surrogates.schema import DataSchema

__all__ = ["READER_NAME", "XarrayDataModule", "check_same_samples", "file_identity", "split_indices"]

READER_NAME = "xarray"
"""``DataSchema.reader["name"]`` of data read by this module (so evaluation can read them again)."""

IDENTITY_BYTES = 16 * 2**20
""":func:`file_identity` hashes at most about this many bytes of samples (as float32) ..."""

IDENTITY_SAMPLES = 64
"""... and at most this many samples (at least the first and the last)."""


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint sorted sample indices of ``train``, ``val`` and ``test`` drawn from ``n`` samples.

    A seeded permutation: ``round(test_fraction * n)`` samples go to ``test``, ``round(val_fraction * n)``
    to ``val``, the rest to ``train``; the same ``(n, fractions, seed)`` always gives the same split.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    order = np.random.default_rng(int(seed)).permutation(n)
    n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
    if n - n_test - n_val < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training sample of {n}"
        )
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def file_identity(info: ForeignFileInfo, variables: Sequence[str]) -> dict[str, Any]:
    """What identifies the samples of a file split by fractions: their number and a SHA-256 of some of them.

    The hashed samples are evenly spaced over the file, the first and the last among them, as many as fit in
    :data:`IDENTITY_BYTES` (2 to :data:`IDENTITY_SAMPLES`); they are hashed as the model reads them (float32),
    so a copy of the file, or the same values written again with another encoding or chunking, has the same
    identity, while a file with samples appended, removed, reordered or regenerated has another. It costs a few
    samples' reads, not a pass over the file; a change to samples between the hashed ones goes unnoticed (it
    cannot move samples between splits).

    Parameters
    ----------
    info
        The file, from :func:`~surrogates.data.foreign.inspect_foreign`.
    variables
        The stored variables to hash (those the model reads).

    Returns
    -------
    dict
        ``{"n_samples": 100, "variables": ["a", "u"], "samples": [0, 33, 66, 99], "sha256": "..."}``, plain data.
    """
    import h5py

    n, names = info.n_samples, sorted(set(variables))
    with h5py.File(info.path, "r") as handle:
        per_sample = sum(4 * int(np.prod(handle[name].shape[1:], dtype=np.int64)) for name in names)
    count = min(n, max(2, min(IDENTITY_SAMPLES, IDENTITY_BYTES // max(1, per_sample))))
    samples = sorted({int(i) for i in np.linspace(0, n - 1, count).round()}) if n else []
    return {"n_samples": n, "variables": names, "samples": samples, "sha256": _samples_sha256(info.path, names, samples)}


def check_same_samples(info: ForeignFileInfo, recorded: Mapping[str, Any]) -> None:
    """Refuse a file whose :func:`file_identity` differs from the ``recorded`` one (the file trained on).

    Raises
    ------
    DatasetFileError
        Naming the file and what changed: the number of samples, a variable, or the hashed samples.
    """
    path, n, expected = info.path, info.n_samples, int(recorded["n_samples"])
    why = "the split recomputed on it would not be the training run's (its test split could hold samples the model was trained on)"
    if n != expected:
        raise DatasetFileError(
            path, f"holds {n} samples, but the file the model was trained on held {expected}: {why}; evaluate on "
            "the file as it was when trained on (a copy is fine)"
        )
    stored = {source for source, _ in info.sources.values()}
    missing = [name for name in recorded["variables"] if name not in stored]
    if missing:
        raise DatasetFileError(path, f"lacks the variable(s) {missing} of the file the model was trained on: another file?")
    found = _samples_sha256(path, list(recorded["variables"]), [int(i) for i in recorded["samples"]])
    if found != recorded["sha256"]:
        raise DatasetFileError(
            path, f"holds other samples than the file the model was trained on (as many, {n}, but samples "
            f"{_listed(recorded['samples'])} of {list(recorded['variables'])} differ: SHA-256 {found[:12]}..., "
            f"trained on {str(recorded['sha256'])[:12]}...): replaced, regenerated or reordered since? {why}"
        )


def _samples_sha256(path: Path, variables: Sequence[str], samples: Sequence[int]) -> str:
    """SHA-256 of ``samples`` of the stored ``variables``, as float32, variable after variable."""
    import h5py

    digest = hashlib.sha256()
    try:
        with h5py.File(path, "r") as handle:
            for name in variables:
                digest.update(name.encode() + b"\0")
                for i in samples:
                    digest.update(np.ascontiguousarray(handle[name][i], dtype="<f4").tobytes())
    except (OSError, ValueError, TypeError) as error:  # a damaged file, or a variable no longer numeric
        raise DatasetFileError(path, f"cannot read samples of {list(variables)} to identify the file: {error}") from error
    return digest.hexdigest()


def _listed(values: Sequence[int], at_most: int = 6) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:at_most])) + (f", ... ({len(values)} in all)" if len(values) > at_most else "")


class XarrayDataModule(FieldDataModule):
    """Loaders of NetCDF-4/HDF5 files written by anything (xarray, netCDF4, h5netcdf), given names.

    Parameters
    ----------
    inputs, targets
        Variable names stacked as channels. A vector or tensor field stored with a trailing component
        dim (``component_dims``) is named by component: ``velocity_x``, ``velocity_y`` (the component
        coordinate's values) or ``velocity_0``, ``velocity_1``.
    path
        One file with every sample, split by the fractions.
    train, val, test
        Files of each split instead of ``path`` (``val`` and ``test`` may be omitted).
    sample_dim, time_dim, component_dims
        The file's names of its sample dim, time dim and component dims.
    val_fraction, test_fraction, split_seed
        How ``path`` is split (ignored with ``train``).
    expect_file
        The :func:`file_identity` of the file trained on (:meth:`from_schema` passes it): ``path`` must hold the
        same samples, else the split is refused (:func:`check_same_samples`).
    **kwargs
        As for :class:`~surrogates.data.datamodule.FieldDataModule` (``batch_size``, ``input_time`` ...).
    """

    def __init__(
        self,
        inputs: Sequence[str],
        targets: Sequence[str],
        path: str | Path | None = None,
        train: str | Path | None = None,
        val: str | Path | None = None,
        test: str | Path | None = None,
        sample_dim: str = "sample",
        time_dim: str = "time",
        component_dims: Sequence[str] = DEFAULT_COMPONENT_DIMS,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        expect_file: Mapping[str, Any] | None = None,
        data_dir: str | Path | None = None,
        **kwargs: Any,
    ):
        # `data_dir` is an experiment's default dataset folder (experiment=burgers_fno data=xarray merges it in);
        # the user's file is data.path / data.train, so the folder is not read.
        del data_dir
        if (path is None) == (train is None):
            raise ValueError("give data.path (one file, split by fractions) or data.train (with optional val, test)")
        super().__init__(path if path is not None else train, inputs, targets, **kwargs)
        self.path = None if path is None else Path(str(path))
        self.files = {name: Path(str(f)) for name, f in (("train", train), ("val", val), ("test", test)) if f is not None}
        self.layout = ForeignLayout(str(sample_dim), str(time_dim), tuple(str(d) for d in component_dims))
        self.val_fraction, self.test_fraction, self.split_seed = float(val_fraction), float(test_fraction), int(split_seed)
        self.expect_file = None if expect_file is None else dict(expect_file)
        self._indices: dict[str, np.ndarray] | None = None
        self._identity: dict[str, Any] | None = None

    # -- splits -----------------------------------------------------------------------------------
    def _split_indices(self) -> dict[str, np.ndarray]:
        if self._indices is None:
            info = inspect_foreign(self.path, self.layout, check_finite=False)
            if self.expect_file is not None:
                check_same_samples(info, self.expect_file)
                self._identity = dict(self.expect_file)
            else:  # the file as it is split now, recorded in the schema (reader)
                self._identity = file_identity(info, self._stored_variables(info))
            self._indices = split_indices(info.n_samples, self.val_fraction, self.test_fraction, self.split_seed)
        return self._indices

    def _stored_variables(self, info: ForeignFileInfo) -> list[str]:
        """The stored variables behind the inputs and targets (names the file lacks are left to the dataset)."""
        names = expand_field_names([*self.inputs, *self.targets], info.variables)
        info.require_usable(names)
        return sorted({info.sources[name][0] for name in names if name in info.sources})

    def _has_split(self, split: str) -> bool:
        if self.path is None:
            return split in self.files
        return bool(self._split_indices()[split].size)

    def _load(self, split: str) -> FieldDataset:
        if split not in self.datasets:
            if not self._has_split(split):
                given = "its fraction is 0" if self.path is not None else f"no data.{split} file was given"
                raise FileNotFoundError(f"no {split!r} split: {given}")
            files = [self.path] if self.path is not None else [self.files[split]]
            indices = self._split_indices()[split] if self.path is not None else None
            self.datasets[split] = FieldDataset(
                files, self.inputs, self.targets, input_time=self.input_time, target_time=self.target_time,
                check_finite=self.check_finite, layout=self.layout, indices=indices,
                n_steps_input=self.n_steps_input, n_steps_output=self.n_steps_output,
            )
            self._take_names(self.datasets[split])
        return self.datasets[split]

    def _reference(self) -> FieldDataset:
        return next(iter(self.datasets.values()), None) or self._load("train")

    # -- description ------------------------------------------------------------------------------
    def reader(self) -> dict[str, Any]:
        """How to read these data again (``DataSchema.reader``): names, dims, files and the split; with ``path``,
        the file's identity (``file``, :func:`file_identity`), which evaluation checks."""
        reader = {
            "name": READER_NAME,
            **self.layout.to_dict(),
            "files": {name: str(f.absolute()) for name, f in self.files.items()},  # read again from any folder
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }
        if self.path is not None:
            self._split_indices()
            reader["file"] = dict(self._identity)
        return reader

    def data_schema(self) -> DataSchema:
        """:meth:`FieldDataModule.data_schema` with the :meth:`reader`; ``source`` is the file (or the train file)."""
        return replace(super().data_schema(), reader=self.reader())

    @classmethod
    def from_schema(cls, schema: DataSchema, source: str | Path | None = None, **kwargs: Any) -> "XarrayDataModule":
        """The data module a checkpoint's schema was made by, for evaluation: the same variables, dims and split.

        ``source`` replaces the recorded file (``path``); files per split are taken as recorded. A file split by
        fractions must hold the samples trained on (the recorded ``file`` identity), else loading a split raises
        :class:`~surrogates.data.schema.DatasetFileError`; schemas written before the identity was recorded are
        read without the check (with a warning).
        """
        reader = dict(schema.reader or {})
        if reader.get("name") != READER_NAME:
            raise ValueError(f"the schema was not made by data=xarray (reader {reader.get('name')!r})")
        files = dict(reader.get("files") or {})
        path = None if files else (source or schema.source)
        if path and reader.get("file") is None:
            warnings.warn(
                f"the checkpoint does not record which samples {path} held when it was trained (it predates that "
                "record): its split is recomputed without checking that the file is unchanged",
                stacklevel=2,
            )
        window = schema.window or {}
        if window:
            kwargs = {"n_steps_input": window["n_steps_input"], "n_steps_output": window["n_steps_output"], **kwargs}
        return cls(
            list(window.get("inputs") or schema.inputs), list(window.get("targets") or schema.targets), path=path,
            **({} if path else files),
            sample_dim=reader.get("sample_dim", "sample"), time_dim=reader.get("time_dim", "time"),
            component_dims=reader.get("component_dims", DEFAULT_COMPONENT_DIMS),
            val_fraction=reader.get("val_fraction", 0.1), test_fraction=reader.get("test_fraction", 0.1),
            split_seed=reader.get("split_seed", 0), input_time=schema.input_time, target_time=schema.target_time,
            expect_file=reader.get("file") if path else None, **kwargs,
        )
