"""What `surrogates-import` refuses (one line naming what was found and expected), and how it resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogates.data.fingerprint import read_fingerprint
from surrogates.data.generation import GenerationError
from surrogates.data.importers import ImportDataError, ImportSettings, import_dataset
from surrogates.data.schema import DatasetFileError, inspect_file
from surrogates.data.streaming_writer import StreamingDatasetWriter
from surrogates.data.xarray_view import open_split
from tests.importers.conftest import write_darcy, write_tensor_1d, write_xarray

REPO = Path(__file__).resolve().parents[2]


def test_unknown_layout_names_what_was_found_and_what_each_layout_expects(run_import, tmp_path):
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f.create_dataset("fields", data=np.zeros((3, 4, 4)))
        f.create_group("meta")
    with pytest.raises(ImportDataError) as caught:
        run_import(f"source={tmp_path / 'odd.h5'}")
    message = str(caught.value)
    assert "unknown layout" in message and "fields (3, 4, 4)" in message and "meta/" in message
    for expected in ("PDEBench 2D Darcy: nu (N, s, s), tensor (N, 1, s, s)", "The Well: groups dimensions/",
                     "an xarray dataset", "dims.sample="):
        assert expected in message


def test_a_named_variable_that_is_missing_lists_the_available_ones(run_import, tmp_path):
    write_xarray(tmp_path / "plain.nc")
    with pytest.raises(ImportDataError, match=r"targets: 'p' is not a variable .*available: a \(sample, x, y\), u \(sample, x, y\)"):
        run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[p]")
    with pytest.raises(ImportDataError, match=r"name the inputs and targets"):
        run_import(f"source={tmp_path / 'plain.nc'}")
    with pytest.raises(ImportDataError, match=r"no dim 'run'.*found a \('sample', 'x', 'y'\) \(20, 8, 8\)"):
        run_import(f"source={tmp_path / 'plain.nc'}", "layout=xarray", "dims.sample=run", "inputs=[a]", "targets=[u]")


@pytest.mark.parametrize("override, message", [
    ("val_fraction=1.5", "val_fraction must be a number in"),
    ("test_fraction=abc", "test_fraction must be a number in"),
    ("layout=pdebenchh", "layout='pdebenchh'; expected one of"),
    ("chunk_size=0", "chunk_size must be a positive integer"),
    ("seed=-1", "seed must be an integer >= 0"),
])
def test_settings_are_checked_before_any_work(run_import, tmp_path, override, message):
    write_xarray(tmp_path / "plain.nc")
    with pytest.raises(ImportDataError, match=message):
        run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]", override)
    assert not (tmp_path / "datasets").exists()


def test_missing_source(run_import, tmp_path):
    with pytest.raises(ImportDataError, match="does not exist"):
        run_import(f"source={tmp_path / 'nothing.h5'}")
    with pytest.raises(ImportDataError, match="matches no file"):
        run_import(f"source={tmp_path}/*.h5")


def test_console_script_prints_one_line_and_exits_2(tmp_path):
    (tmp_path / "notes.txt").write_text("not data")
    command = [str(Path(sys.executable).parent / "surrogates-import"), f"source={tmp_path / 'notes.txt'}",
               f"paths.data_dir={tmp_path / 'd'}", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surrogates-import: error: ") and "unknown layout" in lines[0]


def test_rerun_skips_complete_files_and_refuses_other_settings(run_import, tmp_path, capsys):
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    write_darcy(path, n=20)
    files = run_import(f"source={path}", "name=d")
    mtimes = [f.stat().st_mtime_ns for f in files]
    files[1].unlink()  # a lost split is rewritten, the others are kept
    run_import(f"source={path}", "name=d")
    assert [f.stat().st_mtime_ns for f in (files[0], files[2])] == [mtimes[0], mtimes[2]] and files[1].is_file()
    assert "train.h5 is complete; skipping" in capsys.readouterr().out
    with pytest.raises(GenerationError, match=r"seed 0 -> 1 \(existing -> requested\).*overwrite=true"):
        run_import(f"source={path}", "name=d", "seed=1")
    write_darcy(path, n=20, seed=5)  # same name, other content: the checksum differs
    with pytest.raises(GenerationError, match="source_sha256"):
        run_import(f"source={path}", "name=d")
    run_import(f"source={path}", "name=d", "overwrite=true")
    assert files[0].stat().st_mtime_ns != mtimes[0]


def test_overwrite_removes_splits_the_new_import_does_not_write(run_import, tmp_path):
    write_xarray(tmp_path / "plain.nc")
    files = run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]", "name=p")
    assert len(files) == 3
    before = {f.name: f.read_bytes() for f in files}
    files = run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]", "name=p", "val_fraction=0",
                       "overwrite=true")
    assert sorted(p.name for p in files[0].parent.iterdir()) == ["test.h5", "train.h5"]
    for path in files:  # every file replaced, and the folder reads as one dataset
        assert path.read_bytes() != before[path.name]
        assert read_fingerprint(path)["import"]["val_fraction"] == 0
        open_split(path.parent, path.stem).close()


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _fail_at_second_finish(monkeypatch, error: BaseException) -> None:
    """``StreamingDatasetWriter.finish`` raises ``error`` once the first split's file is complete."""
    real = StreamingDatasetWriter.finish
    finished = []

    def finish(self):
        if finished:
            raise error
        finished.append(real(self))
        return finished[-1]

    monkeypatch.setattr(StreamingDatasetWriter, "finish", finish)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_overwrite_that_fails_midway_keeps_the_previous_dataset(run_import, tmp_path, monkeypatch, capsys, error):
    """The new train file is complete (under its temporary name) when the import fails: nothing is published, the
    previous files (val.h5 included, which the new import would not write) stay byte-identical and readable, no
    temporary is left, and stderr says the previous dataset was kept."""
    write_xarray(tmp_path / "plain.nc")
    source = [f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]", "name=p"]
    files = run_import(*source)
    folder = files[0].parent
    before = _contents(folder)
    _fail_at_second_finish(monkeypatch, error)
    with pytest.raises(type(error)):
        run_import(*source, "val_fraction=0", "seed=1", "overwrite=true")
    assert _contents(folder) == before
    assert f"surrogates-import: stopped before the new files were complete: nothing new was published " \
           f"(overwrite=true publishes a job's files only once all are complete), so the previous files in {folder} " \
           "are kept as they were" in capsys.readouterr().err
    for path in files:
        ds = open_split(folder, path.stem)
        assert ds.attrs["split_seed"] == 0
        ds.close()
    monkeypatch.undo()
    run_import(*source, "val_fraction=0", "seed=1", "overwrite=true")
    assert sorted(p.name for p in folder.iterdir()) == ["test.h5", "train.h5"]


def test_an_overwrite_interrupted_by_a_signal_says_the_previous_dataset_was_kept(tmp_path, monkeypatch):
    from surrogates.data.generation import GenerationInterrupted

    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=12)
    import_dataset(ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=False))
    before = _contents(tmp_path / "out")
    _fail_at_second_finish(monkeypatch, GenerationInterrupted(15))  # what stop_cleanly_on_signals raises on SIGTERM
    settings = ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=False, seed=4,
                              overwrite=True)
    with pytest.raises(GenerationInterrupted, match=r"nothing new was published .* kept as they were; rerun the same "
                                                    r"command to replace them"):
        import_dataset(settings)
    assert _contents(tmp_path / "out") == before


def test_streaming_in_small_blocks_writes_the_same_files(run_import, tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=23)
    whole = run_import(f"source={path}", "name=whole")
    blocks = run_import(f"source={path}", "name=blocks", "chunk_size=2")
    for a, b in zip(whole, blocks):
        x, y = open_split(a.parent, a.stem), open_split(b.parent, b.stem)
        np.testing.assert_array_equal(x["u"].values, y["u"].values)
        x.close(), y.close()


def test_an_error_midway_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=12)
    with h5py.File(path, "r+") as f:
        f["tensor"][7, 2, 3] = np.nan
    settings = ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=False)
    with pytest.raises(ImportDataError, match="NaN"):
        import_dataset(settings)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("engine", ["h5netcdf", "scipy"])
def test_non_finite_values_are_named_by_the_source_s_sample(run_import, tmp_path, engine):
    """The last source sample holds a NaN (NetCDF-4) or a _FillValue (NetCDF-3, read as NaN); whichever split it is
    drawn into, its row there is another number (train holds 16 of 20, val and test 2): the message names the source's
    index, the one the user can look up."""
    import xarray as xr

    source = write_xarray(tmp_path / "plain.nc", n=20)
    u = source["u"].values.copy()
    if engine == "scipy":
        u = np.round(u * 1000).astype(np.int16)
        u[19, 2, 3] = -1
        data = xr.Dataset({"a": source["a"], "u": (("sample", "x", "y"), u)})
        data["u"].encoding["_FillValue"] = np.int16(-1)
    else:
        u[19, 2, 3] = np.nan
        data = xr.Dataset({"a": source["a"], "u": (("sample", "x", "y"), u)})
    data.to_netcdf(tmp_path / "holed.nc", engine=engine)
    with pytest.raises(ImportDataError, match=r"holed\.nc: variable 'u' has NaN.* at source sample\(s\) 19; "):
        run_import(f"source={tmp_path / 'holed.nc'}", "inputs=[a]", "targets=[u]", "chunk_size=7")
    assert not any((tmp_path / "datasets" / "holed").iterdir())


@pytest.mark.parametrize("resume", [False, True])
def test_a_source_changed_during_the_import_is_not_published(tmp_path, monkeypatch, resume):
    """A source rewritten while its samples are read (here: a value changed in place after the first block, so its
    size stays the same) may give samples of two versions and a checksum of neither: nothing is published, with
    or without a resumed folder (whose checksums are computed before the writes)."""
    import surrogates.data.importers.run as run

    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=12)
    settings = ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=False)
    if resume:
        import_dataset(settings)
        (tmp_path / "out" / "val.h5").unlink()  # the rerun has one split left to write
    published = sorted(p.name for p in (tmp_path / "out").iterdir()) if resume else []
    real_make_plan = run.make_plan

    def make_plan(settings):
        plan = real_make_plan(settings)
        part, read = plan.parts[0], plan.parts[0].read

        def read_then_rewrite(start, stop):
            data = read(start, stop)
            if start == 0:
                with h5py.File(path, "r+") as f:
                    f["tensor"][11, 0, 0] = 123.0
                os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # coarse clocks: a different mtime for sure
            return data

        part.read = read_then_rewrite
        return plan

    monkeypatch.setattr(run, "make_plan", make_plan)
    with pytest.raises(ImportDataError, match="changed while it was imported"):
        import_dataset(settings)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == published


def test_streaming_writer_publishes_only_complete_files(tmp_path):
    from types import SimpleNamespace as NS

    variables = {"u": NS(dims=("x",), units="1", long_name="u")}
    coords = {"x": NS(values=np.arange(4.0), units="1", long_name="x")}
    attrs = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "{}", "import_config": ""}
    with StreamingDatasetWriter(tmp_path / "a.h5", 3, variables, coords, attrs) as out:
        out.write(0, {"u": np.ones((2, 4))})
        with pytest.raises(DatasetFileError, match="2 of 3 samples were written"):
            out.commit()
    assert list(tmp_path.iterdir()) == []
    with StreamingDatasetWriter(tmp_path / "a.h5", 3, variables, coords, attrs) as out:
        out.write(0, {"u": np.ones((2, 4))})
        out.write(2, {"u": np.zeros((1, 4))})
        out.commit()
    info = inspect_file(tmp_path / "a.h5")
    assert info.n_samples == 3 and [p.name for p in tmp_path.iterdir()] == ["a.h5"]
    with pytest.raises(DatasetFileError, match="no provenance attributes"):
        StreamingDatasetWriter(tmp_path / "b.h5", 1, variables, coords, {k: attrs[k] for k in ("pde", "inputs", "targets")})


def test_schema_reads_generated_and_imported_provenance_and_refuses_neither(tmp_path):
    from types import SimpleNamespace as NS

    import h5py as h5

    variables = {"u": NS(dims=("x",), units="1", long_name="u")}
    coords = {"x": NS(values=np.arange(4.0), units="1", long_name="x")}
    imported = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "{}", "import_config": ""}
    with StreamingDatasetWriter(tmp_path / "a.h5", 1, variables, coords, imported) as out:
        out.write(0, {"u": np.ones((1, 4))})
        out.commit()
    assert inspect_file(tmp_path / "a.h5").attrs["source"] == "[]"
    with h5.File(tmp_path / "a.h5", "r+") as f:
        del f.attrs["source_sha256"]
        f.attrs["schema_version"] = "1.0"
    with pytest.raises(DatasetFileError, match=r"no provenance attributes: generated files need \['config', 'solver_report', "
                                               r"'seed'\].*imported files need .*missing \['source_sha256'\]"):
        inspect_file(tmp_path / "a.h5")
    with h5.File(tmp_path / "a.h5", "r+") as f:  # a 1.0 file of the generator reads as before
        f.attrs["config"], f.attrs["solver_report"], f.attrs["seed"] = "", "{}", 0
    assert inspect_file(tmp_path / "a.h5").attrs["schema_version"] == "1.0"


def test_an_interrupt_midway_removes_the_temporary_files(tmp_path, monkeypatch):
    from surrogates.data.importers import pdebench

    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=12)
    original = pdebench.plan_file

    def interrupted_plan(*args, **kwargs):
        plan = original(*args, **kwargs)
        read = plan.parts[0].read

        def read_then_stop(start, stop):
            if start >= 6:
                raise KeyboardInterrupt
            return read(start, stop)

        plan.parts[0].read = read_then_stop
        return plan

    monkeypatch.setattr(pdebench, "plan_file", interrupted_plan)
    settings = ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(settings)
    assert list((tmp_path / "out").iterdir()) == []  # no published file, no temporary left behind


def test_the_well_time_varying_per_trajectory_is_kept_as_a_variable(run_import, tmp_path):
    from tests.importers.conftest import write_the_well

    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4, steps=5)
    times = np.arange(20, dtype=np.float32).reshape(4, 5) * 0.5
    with h5py.File(path, "r+") as f:
        del f["dimensions/time"]
        f["dimensions"].create_dataset("time", data=times)
        f["dimensions/time"].attrs["sample_varying"] = True
    files = run_import(f"source={path}", "name=tv", "val_fraction=0.25", "test_fraction=0.25")
    parts = [open_split(f.parent, f.stem) for f in files]
    got = np.concatenate([p["time_values"].values for p in parts])
    assert parts[0]["time"].values.tolist() == [0, 1, 2, 3, 4]  # the step index; the times per trajectory:
    np.testing.assert_array_equal(np.sort(got[:, 0]), times[:, 0])
    for p in parts:
        p.close()


def test_help_says_what_the_script_does():
    command = [str(Path(sys.executable).parent / "surrogates-import"), "--help"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, cwd=REPO).stdout
    assert out.startswith("surrogates-import: ") and "Main options" in out and "Example: surrogates-import" in out


@pytest.mark.parametrize("n, overrides, message", [
    (1, [], r"1 training sample\(s\): too few to split off val_fraction=0.1 \(1\), test_fraction=0.1 \(1\) .*"
            r"expected at least 3, or set val_fraction=0 test_fraction=0"),
    (2, [], r"2 training sample\(s\): too few .*expected at least 3"),
    (1, ["val_fraction=0"], r"1 training sample\(s\): too few to split off test_fraction=0.1 \(1\) .*test_fraction=0 "),
])
def test_a_source_too_small_for_the_splits_asked_is_refused(run_import, tmp_path, n, overrides, message):
    """A split with a fraction above 0 is never silently left out: 1 or 2 samples cannot give train, val and test."""
    write_xarray(tmp_path / "tiny.nc", n=n)
    with pytest.raises(ImportDataError, match=message):
        run_import(f"source={tmp_path / 'tiny.nc'}", "inputs=[a]", "targets=[u]", *overrides)
    assert not (tmp_path / "datasets" / "tiny").exists()


def test_a_tiny_source_gets_every_split_it_can_and_only_train_when_asked(run_import, tmp_path):
    write_xarray(tmp_path / "two.nc", n=2)
    files = run_import(f"source={tmp_path / 'two.nc'}", "inputs=[a]", "targets=[u]", "test_fraction=0", "name=two")
    assert [(f.name, inspect_file(f, check_finite=False).n_samples) for f in files] == [("train.h5", 1), ("val.h5", 1)]
    files = run_import(f"source={tmp_path / 'two.nc'}", "inputs=[a]", "targets=[u]", "val_fraction=0", "test_fraction=0",
                       "name=two_train")
    assert [(f.name, inspect_file(f, check_finite=False).n_samples) for f in files] == [("train.h5", 2)]


def test_a_source_without_training_samples_is_refused(run_import, tmp_path):
    (tmp_path / "src").mkdir()
    for split in ("val", "test"):
        write_xarray(tmp_path / "src" / f"{split}.nc", n=4)
    with pytest.raises(ImportDataError, match=r"no training samples \(its splits: test, val\)"):
        run_import(f"source={tmp_path / 'src'}", "inputs=[a]", "targets=[u]")
    assert not (tmp_path / "datasets" / "src").exists()


@pytest.mark.parametrize("overrides, message", [
    (["dims.time=tt"], r"dims.time='tt' is not a dim of the file; its dims: \{'sample': 5, 't': 3, 'x': 4, 'lon': 2\}"),
    (["+dims.rename={q: x}"], r"dims.rename names \['q'\], not dims of the file; its dims: \{'sample': 5, 't': 3"),
    (["+dims.rename={lon: x}"], r"dims 'x' and 'lon' would both be named 'x'"),
    (["dims.time=t", "+dims.rename={x: time}"], r"dims 't' and 'x' would both be named 'time'|dims 'x' and 't'"),
])
def test_dims_settings_that_do_not_fit_the_file_are_refused(run_import, tmp_path, overrides, message):
    """A typo in dims.time imported trajectories without a time axis, one in dims.rename kept the file's name, and a
    rename onto another dim's name merged two grids: each is named with the file's dims instead."""
    import xarray as xr

    rng = np.random.default_rng(0)
    xr.Dataset({"a": (("sample", "t", "x"), rng.random((5, 3, 4))), "b": (("sample", "lon"), rng.random((5, 2)))}).to_netcdf(
        tmp_path / "runs.nc", engine="h5netcdf")
    with pytest.raises(ImportDataError, match=message):
        run_import(f"source={tmp_path / 'runs.nc'}", "inputs=[a]", "targets=[a]", *overrides)
    assert not (tmp_path / "datasets" / "runs").exists()


def test_an_input_with_white_space_in_its_name_is_refused_naming_it(run_import, tmp_path):
    """The files' inputs / targets attributes are space-separated: 'my a' was refused by the writer as an unknown
    variable 'my a' among ['my a', 'u'], a message that contradicts itself."""
    import xarray as xr

    source = write_xarray(tmp_path / "plain.nc", n=10)
    source.rename({"a": "my a"}).to_netcdf(tmp_path / "spaced.nc", engine="h5netcdf")
    with pytest.raises(ImportDataError, match=r"^inputs: the variable 'my a' of .*spaced\.nc has white space in its name.*"
                                              r"ds\.rename\(\{'my a': 'my_a'\}\)$"):
        run_import(f"source={tmp_path / 'spaced.nc'}", "inputs=[my a]", "targets=[u]")
    files = run_import(f"source={tmp_path / 'spaced.nc'}", "inputs=[u]", "targets=[u]")  # unused, it is imported as is
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        assert "my a" in ds and ds.attrs["inputs"] == "u"


@pytest.mark.parametrize("extra, name, why", [
    ({"mask": (("x", "y"), np.ones((8, 8)))}, "mask", r"has no dim 'sample' \(its dims: \('x', 'y'\)\)"),
    ({"label": ("sample", np.array([f"r{i}" for i in range(10)]))}, "label", r"is not a real number \(<U2\)"),
])
def test_an_input_the_import_leaves_out_is_named_with_why(run_import, tmp_path, extra, name, why):
    """A variable of the file that is not imported was reported as "not a variable of" the file that holds it."""
    source = write_xarray(tmp_path / "plain.nc", n=10).assign(extra)
    source.to_netcdf(tmp_path / "more.nc", engine="h5netcdf")
    with pytest.raises(ImportDataError, match=rf"^inputs: '{name}' of .*more\.nc {why}, so it is not imported; "
                                              r"available: a \(sample, x, y\), u \(sample, x, y\)$"):
        run_import(f"source={tmp_path / 'more.nc'}", f"inputs=[a,{name}]", "targets=[u]")


def test_a_per_sample_coordinate_named_as_input_says_how_to_make_it_data(run_import, tmp_path):
    source = write_xarray(tmp_path / "plain.nc", n=10).assign_coords(nu=("sample", np.linspace(0.1, 1, 10)))
    source.to_netcdf(tmp_path / "coords.nc", engine="h5netcdf")
    with pytest.raises(ImportDataError, match=r"inputs: 'nu' of .*coords\.nc is a coordinate along 'sample', not a data "
                                              r"variable \(ds\.reset_coords\('nu'\) makes it one\)"):
        run_import(f"source={tmp_path / 'coords.nc'}", "inputs=[a,nu]", "targets=[u]")


def test_a_source_without_samples_says_so(run_import, tmp_path):
    import xarray as xr

    xr.Dataset({"a": (("sample", "x"), np.zeros((0, 4)))}).to_netcdf(tmp_path / "empty.nc", engine="h5netcdf")
    with pytest.raises(ImportDataError, match=r"^the source holds no samples \(a sample dim of length 0\)"):
        run_import(f"source={tmp_path / 'empty.nc'}", "inputs=[a]", "targets=[a]")


def test_import_progress_off_a_terminal_is_whole_lines_not_carriage_returns(tmp_path, capsys, monkeypatch):
    """In a log file the samples' bar prints whole lines, not tqdm's in-place redraws."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=12)
    import_dataset(ImportSettings(source=str(path), data_dir=tmp_path / "out", chunk_size=3, progress=True))
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("pdebench_burgers -> out:   0%") and "12/12" in lines[-1], lines
