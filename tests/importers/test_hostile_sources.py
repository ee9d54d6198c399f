"""Sources `surrogates-import` refuses from their header, before it reads or writes anything: data stored in
other files (surrogates/data/hdf5_storage.py) and reads that would decode or hold too much
(surrogates/data/read_limits.py, surrogates/data/importers/source_checks.py)."""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pytest

from surrogates.data import read_limits
from surrogates.data.importers import ImportDataError, ImportSettings, import_dataset
from surrogates.data.xarray_view import open_split
from tests.importers.conftest import write_darcy, write_xarray

N, S = 20, 8  # the Darcy sources' samples and points per side


def _settings(source: Path, out: Path, **kwargs) -> ImportSettings:
    return ImportSettings(source=str(source), data_dir=out, progress=False, **kwargs)


def _darcy_reading_elsewhere(path: Path, kind: str, raw: Path, other: Path) -> None:
    """A PDEBench Darcy source whose ``tensor`` lives in ``raw`` (external raw storage) or ``other:/secret``."""
    write_darcy(path, n=N, s=S)
    shape = (N, 1, S, S)
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.full(shape, 4242.0, np.float32))
    np.full(shape, 31337.0, np.float32).tofile(raw)
    with h5py.File(path, "r+") as f:
        del f["tensor"]
        if kind == "external raw storage":
            f.create_dataset("tensor", shape=shape, dtype="f4", external=[(str(raw), 0, int(np.prod(shape)) * 4)])
        elif kind == "virtual dataset":
            layout = h5py.VirtualLayout(shape, "f4")
            layout[...] = h5py.VirtualSource(str(other), "secret", shape=shape)
            f.create_virtual_dataset("tensor", layout)
        else:
            f["tensor"] = h5py.ExternalLink(str(other), "/secret")


@pytest.mark.parametrize("kind", ["external raw storage", "virtual dataset", "external link"])
def test_a_pdebench_source_reading_another_file_is_refused(tmp_path, kind):
    source = tmp_path / "src" / "2D_DarcyFlow_beta1.0_Train.hdf5"
    source.parent.mkdir()
    _darcy_reading_elsewhere(source, kind, tmp_path / "raw.bin", tmp_path / "other.h5")
    with pytest.raises(ImportDataError) as error:
        import_dataset(_settings(source, tmp_path / "out"))
    message = str(error.value)
    assert message.startswith(str(source)) and "'tensor'" in message and kind.split()[0] in message, message
    assert not (tmp_path / "out").exists()  # refused while planning: nothing written, nothing hashed


def test_a_netcdf_source_with_an_external_variable_is_refused(tmp_path):
    source = tmp_path / "plain.nc"
    write_xarray(source, n=N, s=S)
    raw = tmp_path / "raw.bin"
    np.full((N, S, S), 31337.0, np.float32).tofile(raw)
    with h5py.File(source, "r+") as f:
        b = f.create_dataset("b", shape=(N, S, S), dtype="f4", external=[(str(raw), 0, N * S * S * 4)])
        for i, dim in enumerate(("sample", "x", "y")):
            b.dims[i].attach_scale(f[dim])
    with pytest.raises(ImportDataError, match=r"plain\.nc: variable 'b' keeps its values in other files"):
        import_dataset(_settings(source, tmp_path / "out", layout="xarray", inputs=["b"], targets=["u"]))


def _chunked(path: Path, n: int, chunk_samples: int, written: int | None = None) -> Path:
    """``a``, ``u (sample, x, y)`` float32 of 4 x 4 points in chunks of ``chunk_samples`` samples."""
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sample": n, "x": 4, "y": 4}
        for name in ("a", "u"):
            var = f.create_variable(name, ("sample", "x", "y"), dtype="f4", chunks=(chunk_samples, 4, 4))
            var[: n if written is None else written] = np.ones((n if written is None else written, 4, 4), "f4")
    return path


def test_blocks_that_decode_far_more_than_they_read_are_refused(tmp_path, monkeypatch):
    sample = 4 * 4 * 4
    monkeypatch.setattr(read_limits, "DECODE_FLOOR", sample)  # bring the floor under one chunk of this tiny file
    n, chunk = 64, 4 * read_limits.DECODE_FACTOR
    source = _chunked(tmp_path / "big_chunks.nc", n, chunk)
    settings = dict(inputs=["a"], targets=["u"])
    # blocks of 2 samples decode a whole chunk of 4 x DECODE_FACTOR samples each: 2 x DECODE_FACTOR x what they read
    with pytest.raises(ImportDataError) as error:
        import_dataset(_settings(source, tmp_path / "out", chunk_size=2, **settings))
    message = str(error.value)
    assert message.startswith(str(source)) and "'a'" in message and f"chunk_size to a multiple of {chunk}" in message
    files = import_dataset(_settings(source, tmp_path / "out", chunk_size=chunk, **settings))  # blocks of whole chunks
    assert sum(open_split(path.parent, path.stem).sizes["sample"] for path in files) == n


def test_samples_too_large_or_never_written_are_refused_before_reading(tmp_path, monkeypatch):
    source = _chunked(tmp_path / "f.nc", 8, 1)
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", 4 * 4 * 4 - 1)
    with pytest.raises(ImportDataError, match=r"f\.nc: variable 'a' \(8, 4, 4\) float32: one sample takes 64 bytes"):
        import_dataset(_settings(source, tmp_path / "out", inputs=["a"], targets=["u"]))
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", None)
    monkeypatch.setattr(read_limits, "UNWRITTEN_CHECK_BYTES", 0)
    holes = _chunked(tmp_path / "holes.nc", 8, 1, written=6)
    with pytest.raises(ImportDataError, match=r"holes\.nc: variable 'a' .*2 of its 8 chunks were never written"):
        import_dataset(_settings(holes, tmp_path / "out", inputs=["a"], targets=["u"]))
    assert not (tmp_path / "out").exists()
