"""Generation never mixes data (issue 18, item 3): fingerprints, overwrite, settings checks, signals.

Each case is run as a user would: `generate(cfg)` on a config composed like `surrogates-generate`,
or the console script in a subprocess (exit codes, one-line messages, signals).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogates.cli.generate import generate
from surrogates.data.fingerprint import FINGERPRINT_ATTR, read_fingerprint
from surrogates.data.generation import GenerationError, generate_dataset
from surrogates.data.schema import DatasetFileError
from surrogates.data.shards import shard_path, split_files
from surrogates.data.publishing import PartialPublishError, publish_files, signals_deferred
from surrogates.data.temporaries import host_name, temporary_path
from surrogates.data.writer import write_dataset
from surrogates.data.xarray_view import open_split
from surrogates.pdes.darcy import Darcy
from tests.cli.conftest import compose_cfg  # noqa: F401  (the fixture composing configs like the entry point)
from tests.data.conftest import stationary

SCRIPT = str(Path(sys.executable).parent / "surrogates-generate")
QUIET_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}


def _run(compose_cfg, root: Path, *overrides: str) -> list[Path]:
    cfg = compose_cfg(
        "generate",
        ["pde=darcy", "resolution=8", "n_train=8", "n_val=4", "n_test=0", "chunk_size=4", "name=d",
         f"paths.data_dir={root}", *overrides],
    )
    return generate(cfg)


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_every_file_records_the_same_fingerprint_without_path_time_or_shard(compose_cfg, tmp_path):
    files = _run(compose_cfg, tmp_path / "a")
    files += _run(compose_cfg, tmp_path / "b", "name=elsewhere", "shard=1", "num_shards=2")
    fingerprints = [read_fingerprint(f) for f in files]
    assert fingerprints[0] == fingerprints[1]  # train and val of one dataset
    assert fingerprints[2]["num_shards"] == 2 and fingerprints[0]["num_shards"] == 1
    fp = fingerprints[0]
    assert set(fp) == {"schema_version", "pde", "seed", "sizes", "chunk_size", "num_shards"}
    assert fp["sizes"] == {"train": 8, "val": 4, "test": 0} and fp["seed"] == 0 and fp["chunk_size"] == 4
    assert fp["pde"]["_target_"].endswith("Darcy") and fp["pde"]["resolution"] == 8
    assert str(tmp_path) not in json.dumps(fp)


def test_rerun_with_another_seed_and_size_refuses_and_keeps_the_files(compose_cfg, tmp_path):
    _run(compose_cfg, tmp_path)
    before = _stamps(tmp_path / "d")
    with pytest.raises(GenerationError) as error:
        _run(compose_cfg, tmp_path, "n_train=12", "seed=7")
    message = str(error.value)
    assert "\n" not in message and "overwrite=true" in message
    assert "seed 0 -> 7" in message and "sizes.train 8 -> 12" in message and "train.h5" in message
    assert _stamps(tmp_path / "d") == before  # nothing touched


def test_same_fingerprint_resumes_and_skips_complete_files(compose_cfg, tmp_path):
    files = _run(compose_cfg, tmp_path)
    files[1].unlink()  # val lost: the rerun regenerates only it
    train_stamp = files[0].stat().st_mtime_ns
    _run(compose_cfg, tmp_path)
    assert files[0].stat().st_mtime_ns == train_stamp and files[1].is_file()


def test_a_shard_copied_over_another_is_not_taken_as_complete(compose_cfg, tmp_path):
    # every shard and split of a dataset has the same fingerprint: the file's recorded place tells them apart
    _run(compose_cfg, tmp_path, "shard=0", "num_shards=2")
    shard0, shard1 = (shard_path(tmp_path / "d", "train", i, 2) for i in (0, 1))
    shutil.copy(shard0, shard1)
    _run(compose_cfg, tmp_path, "shard=1", "num_shards=2")  # regenerates shard 1 instead of skipping the copy
    with h5py.File(shard1) as f:
        assert f.attrs["shard"].tolist() == [1]
    assert split_files(tmp_path / "d", "train") == [shard0, shard1]


def test_overwrite_replaces_the_dataset_and_removes_files_it_would_not_write(compose_cfg, tmp_path, capsys):
    _run(compose_cfg, tmp_path)  # train.h5, val.h5
    files = _run(compose_cfg, tmp_path, "n_train=12", "n_val=0", "seed=7", "overwrite=true")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["train.h5"]
    assert [f.name for f in files] == ["train.h5"]
    fp = read_fingerprint(files[0])
    assert fp["seed"] == 7 and fp["sizes"]["train"] == 12
    with h5py.File(files[0]) as f:
        assert f["a"].shape[0] == 12
    assert "val.h5 (overwrite=true: not part of the new dataset)" in capsys.readouterr().out


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_successful_overwrite_replaces_every_file_and_removes_the_stale_ones(compose_cfg, tmp_path):
    _run(compose_cfg, tmp_path, "n_test=4")  # train.h5, val.h5, test.h5 of seed 0
    before = _bytes(tmp_path / "d")
    _run(compose_cfg, tmp_path, "seed=7", "overwrite=true")  # train and val of seed 7, no test split
    folder = tmp_path / "d"
    assert sorted(p.name for p in folder.iterdir()) == ["train.h5", "val.h5"]
    for split in ("train", "val"):
        assert (folder / f"{split}.h5").read_bytes() != before[f"{split}.h5"]
        assert read_fingerprint(folder / f"{split}.h5")["seed"] == 7
        assert split_files(folder, split) == [folder / f"{split}.h5"]  # one dataset again: readable


def test_an_overwrite_that_fails_midway_keeps_the_previous_dataset(compose_cfg, tmp_path, monkeypatch, capsys):
    """A fault after the new train split is complete publishes nothing: the previous files stay byte-identical
    and readable (test.h5 too, which the new dataset would not have), no temporary file is left, and the
    message says the previous dataset was kept; the same command then replaces it."""
    import surrogates.data.generation as generation

    _run(compose_cfg, tmp_path, "n_test=4")
    folder = tmp_path / "d"
    before = _bytes(folder)
    real = generation._generate_split

    def fail_at_val(pde, path, split, *args):
        if split == "val":
            assert temporary_path(folder / "train.h5").stat().st_size > 0  # train is complete, not published
            claimed = {temporary_path(folder / name).name for name in ("train.h5", "val.h5")}
            assert _bytes(folder).keys() == before.keys() | claimed
            raise RuntimeError("solver failed")
        return real(pde, path, split, *args)

    monkeypatch.setattr(generation, "_generate_split", fail_at_val)
    with pytest.raises(RuntimeError, match="solver failed"):
        _run(compose_cfg, tmp_path, "seed=7", "overwrite=true")
    assert _bytes(folder) == before
    assert f"nothing new was published (overwrite=true publishes a job's files only once all are complete), so the " \
           f"previous files in {folder} are kept as they were" in capsys.readouterr().err
    for split in ("train", "val", "test"):
        ds = open_split(folder, split)
        assert ds.attrs["seed"] == 0
        ds.close()
    monkeypatch.setattr(generation, "_generate_split", real)
    _run(compose_cfg, tmp_path, "seed=7", "overwrite=true")
    assert sorted(p.name for p in folder.iterdir()) == ["train.h5", "val.h5"]
    assert read_fingerprint(folder / "val.h5")["seed"] == 7


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_an_overwrite_killed_midway_keeps_the_previous_dataset(compose_cfg, tmp_path, signum):
    """Killed while the val split is solved (train already complete under its temporary name): SIGTERM removes
    the temporaries and says the previous dataset was kept; SIGKILL leaves them to the next run. Either way the
    previous files are byte-identical and readable."""
    _run(compose_cfg, tmp_path / "datasets", "n_test=4")
    folder = tmp_path / "datasets" / "d"
    before = _bytes(folder)
    command = [SCRIPT, "pde=darcy", "resolution=8", "n_train=8", "n_val=1000000", "n_test=0", "chunk_size=4",
               "name=d", "seed=7", "overwrite=true"]
    process = subprocess.Popen(command, cwd=tmp_path, env=QUIET_ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    try:
        while not list(folder.glob("val.h5.tmp-*")):  # claimed once train is complete
            assert process.poll() is None and time.monotonic() < deadline, "val was never started"
            time.sleep(0.05)
        time.sleep(1)  # into val's solves, past the lazy imports
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == (128 + signum if signum != signal.SIGKILL else -signum)
    left = _bytes(folder)
    temporaries = sorted(name for name in left if ".tmp-" in name)
    assert {name: data for name, data in left.items() if ".tmp-" not in name} == before
    for split in ("train", "val", "test"):
        assert split_files(folder, split) == [folder / f"{split}.h5"]
    if signum == signal.SIGTERM:
        assert temporaries == []
        assert stderr.splitlines() == [
            f"surrogates-generate: interrupted by SIGTERM: this job's temporary files were removed; nothing new was "
            f"published (overwrite=true publishes a job's files only once all are complete), so the previous files "
            f"in {folder} are kept as they were; rerun the same command to replace them"
        ]
    else:
        assert temporaries == [f"train.h5.tmp-{host_name()}-{process.pid}", f"val.h5.tmp-{host_name()}-{process.pid}"]
        _run(compose_cfg, tmp_path / "datasets", "n_val=4", "seed=7", "overwrite=true")  # removes them
        assert sorted(p.name for p in folder.iterdir()) == ["train.h5", "val.h5"]


def test_sharded_overwrite_keeps_the_previous_files_until_the_last_shard_job(compose_cfg, tmp_path, capsys):
    """Each shard job publishes its own files; the previous dataset's files that the new layout lacks stay until
    the job that completes the new dataset removes them. Meanwhile the readers refuse the mixed folder."""
    _run(compose_cfg, tmp_path)  # train.h5, val.h5
    folder = tmp_path / "d"
    before = _bytes(folder)
    _run(compose_cfg, tmp_path, "shard=1", "num_shards=2", "overwrite=true")
    assert "train.h5, val.h5 of the previous dataset are kept until the 2 file(s)" in capsys.readouterr().out
    assert {name: data for name, data in _bytes(folder).items() if "-of-" not in name} == before
    with pytest.raises(FileNotFoundError, match="holds both train.h5 and shards"):
        split_files(folder, "train")
    _run(compose_cfg, tmp_path, "shard=0", "num_shards=2", "overwrite=true")
    assert "removed" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [
        "train-00000-of-00002.h5", "train-00001-of-00002.h5", "val-00000-of-00002.h5", "val-00001-of-00002.h5",
    ]
    assert len(split_files(folder, "train")) == 2 and len(split_files(folder, "val")) == 2


def test_publish_files_renames_together_and_names_a_partial_publish(tmp_path, monkeypatch):
    staged = []
    for name in ("train.h5", "val.h5", "test.h5"):
        final = tmp_path / name
        final.write_bytes(b"old")
        temporary_path(final).write_bytes(b"new")
        staged.append((temporary_path(final), final))
    real = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("no space")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    partial = r"publishing stopped at val\.h5 \(no space\): train\.h5 replaced, val\.h5, test\.h5 not"
    with pytest.raises(PartialPublishError, match=partial):
        publish_files(staged)
    assert _bytes(tmp_path) == {"test.h5": b"old", "train.h5": b"new", "val.h5": b"old"}  # no temporary left
    monkeypatch.setattr(os, "replace", real)
    for tmp, final in staged:
        tmp.write_bytes(b"new")
    publish_files(staged)
    assert _bytes(tmp_path) == dict.fromkeys(("test.h5", "train.h5", "val.h5"), b"new")


def test_a_signal_during_publishing_waits_until_the_renames_are_done():
    done = []
    # Python's own Ctrl-C handler, also where the tests run with SIGINT ignored (started in the background)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)  # the handler has run by now: it only recorded the signal
                done.append(True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == [True]


def test_files_without_fingerprint_are_refused_as_unknown(compose_cfg, tmp_path):
    folder = tmp_path / "d"
    fields, variables, coords, attrs = stationary(64)  # a dataset written before fingerprints existed
    write_dataset(folder / "train.h5", fields, variables, coords, attrs)
    with pytest.raises(GenerationError, match=r"train\.h5: unknown fingerprint \(written before fingerprints"):
        _run(compose_cfg, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["train.h5"]
    _run(compose_cfg, tmp_path, "overwrite=true")
    assert read_fingerprint(folder / "train.h5")["sizes"]["train"] == 8


def test_a_zero_sample_leftover_is_not_taken_as_complete(compose_cfg, tmp_path):
    # What chunk_size=-16 used to leave: a valid file with 0 samples and no fingerprint.
    fields, variables, coords, attrs = stationary(0)
    write_dataset(tmp_path / "d" / "train.h5", {}, variables, coords, attrs)
    with pytest.raises(GenerationError, match="unknown fingerprint"):
        _run(compose_cfg, tmp_path)


def test_a_shard_job_with_other_settings_is_refused(compose_cfg, tmp_path):
    _run(compose_cfg, tmp_path, "shard=0", "num_shards=2")
    with pytest.raises(GenerationError, match=r"train-00000-of-00002\.h5.*seed 0 -> 7"):
        _run(compose_cfg, tmp_path, "shard=1", "num_shards=2", "seed=7")


def test_split_files_and_open_split_refuse_shards_of_different_fingerprints(compose_cfg, tmp_path):
    _run(compose_cfg, tmp_path / "a", "shard=0", "num_shards=2")
    _run(compose_cfg, tmp_path / "b", "shard=1", "num_shards=2", "seed=7")
    shutil.copy(shard_path(tmp_path / "b" / "d", "train", 1, 2), tmp_path / "a" / "d")
    pattern = r"train-00001-of-00002\.h5: .*another fingerprint than train-00000-of-00002\.h5 \(seed 0 -> 7"
    with pytest.raises(DatasetFileError, match=pattern):
        split_files(tmp_path / "a" / "d", "train")
    with pytest.raises(DatasetFileError, match=pattern):
        open_split(tmp_path / "a" / "d", "train")


def test_splits_of_two_datasets_side_by_side_are_refused(compose_cfg, tmp_path):
    # What a crash while an overwrite=true run with another seed renamed its files into place can leave: the old
    # val.h5 beside the new train.h5 (val drawn with seed 0, train with seed 7) must not train or evaluate together.
    _run(compose_cfg, tmp_path / "a")
    _run(compose_cfg, tmp_path / "b", "seed=7")
    shutil.copy(tmp_path / "b" / "d" / "train.h5", tmp_path / "a" / "d" / "train.h5")
    folder = tmp_path / "a" / "d"
    with pytest.raises(DatasetFileError, match=r"train\.h5: belongs to another dataset than val\.h5 .*seed 0 -> 7"):
        split_files(folder, "train")
    with pytest.raises(DatasetFileError, match=r"val\.h5: belongs to another dataset than train\.h5 .*seed 7 -> 0"):
        split_files(folder, "val")
    shutil.copy(tmp_path / "b" / "d" / "val.h5", folder / "val.h5")  # the rerun finishes: one dataset again
    assert split_files(folder, "train") == [folder / "train.h5"] and split_files(folder, "val") == [folder / "val.h5"]


def test_shards_without_fingerprints_still_combine_but_not_with_fingerprinted_ones(compose_cfg, tmp_path):
    for shard in range(2):
        fields, variables, coords, attrs = stationary(3, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    assert len(split_files(tmp_path, "train")) == 2
    with h5py.File(shard_path(tmp_path, "train", 1, 2), "a") as f:
        f.attrs[FINGERPRINT_ATTR] = json.dumps({"seed": 1})
    with pytest.raises(DatasetFileError, match="unknown fingerprint"):
        split_files(tmp_path, "train")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["n_train=-1"], "n_train must be >= 0 (0 skips the split), got -1"),
        (["chunk_size=-16"], "chunk_size must be >= 1, got -16"),
        (["chunk_size=0"], "chunk_size must be >= 1, got 0"),
        (["n_train=abc"], "n_train must be an integer, got 'abc' (str)"),
        (["n_train=1.5"], "n_train must be an integer, got 1.5 (float)"),
        (["n_val=true"], "n_val must be an integer, got True (bool)"),
        (["n_train=0", "n_val=0"], "nothing to generate: n_train, n_val, n_test are all 0"),
        (["num_shards=0"], "num_shards must be in [1, 99999], got 0"),
        (["shard=2", "num_shards=2"], "shard must be in [0, num_shards) = [0, 2), got 2"),
        (["shard=-1"], "shard must be in [0, num_shards) = [0, 1), got -1"),
        (["seed=-3"], "seed must be in [0, 2**32) = [0, 4294967295], got -3"),
        # 2**32 would be the words [0, 1]: the chunks of seed 0's val split
        (["seed=4294967296"], "seed must be in [0, 2**32) = [0, 4294967295], got 4294967296"),
        (["overwrite=maybe"], "overwrite must be true or false, got 'maybe'"),
    ],
)
def test_invalid_settings_are_refused_before_any_work(compose_cfg, tmp_path, monkeypatch, overrides, message):
    def no_work(*args, **kwargs):
        raise AssertionError("the PDE was instantiated before the settings were checked")

    monkeypatch.setattr("surrogates.cli.generate.instantiate", no_work)
    with pytest.raises(GenerationError) as error:
        _run(compose_cfg, tmp_path, *overrides)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not tmp_path.joinpath("d").exists()


def test_console_script_refuses_with_one_line_and_exit_status_2(tmp_path):
    result = subprocess.run([SCRIPT, "n_train=abc", "name=d"], cwd=tmp_path, env=QUIET_ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["surrogates-generate: error: n_train must be an integer, got 'abc' (str)"]
    assert not (tmp_path / "datasets").exists()


def test_a_value_the_pde_refuses_is_one_line_and_exit_status_2(tmp_path):
    """the PDE's own check (Hydra's instantiate wraps it) ends like the settings' checks, not in Hydra's message"""
    result = subprocess.run([SCRIPT, "resolution=2", "name=d"], cwd=tmp_path, env=QUIET_ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "surrogates-generate: error: pde (surrogates.pdes.darcy.Darcy): resolution must be >= 3"
    ), lines
    assert not (tmp_path / "datasets").exists()


def test_temporary_files_of_dead_processes_of_this_host_are_removed(compose_cfg, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f"train.h5.tmp-{host_name()}-{dead.pid}"
    kept = [
        folder / f"train.h5.tmp-some-other-host-{dead.pid}",  # another host's: its pid means nothing here
        folder / f"val.h5.tmp-{host_name()}-{os.getppid()}",  # a live process
        folder / f"val.h5.tmp-{dead.pid}",  # old name without host
    ]
    for path in (stale, *kept):
        path.write_bytes(b"partial")
    assert temporary_path(folder / "train.h5").name == f"train.h5.tmp-{host_name()}-{os.getpid()}"
    _run(compose_cfg, tmp_path)
    assert not stale.exists() and all(path.exists() for path in kept)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_temporary_files_and_exits_with_one_line(tmp_path, signum):
    # Large enough to be still solving when the signal arrives.
    command = [SCRIPT, "pde=darcy", "resolution=32", "n_train=100000", "n_val=0", "n_test=0", "chunk_size=8", "name=d"]
    process = subprocess.Popen(command, cwd=tmp_path, env=QUIET_ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "datasets" / "d"
    deadline = time.monotonic() + 60
    try:
        while not list(folder.glob("*.tmp-*")):
            assert process.poll() is None and time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        # let the first chunks run, so the signal does not land in a lazy import (where Python drops the
        # exception; the run then ends through the fallback timer, see the test below)
        time.sleep(2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum
    assert stderr.splitlines() == [
        f"surrogates-generate: interrupted by {signal.Signals(signum).name}: this job's temporary files were "
        "removed, complete files are kept; rerun the same command to resume"
    ]
    assert list(folder.iterdir()) == []  # no temporary file, and nothing that looks complete


def test_a_swallowed_interruption_still_ends_the_run(tmp_path):
    # Python drops an exception raised in a weakref callback or finalizer; here the code swallows it itself.
    code = (
        "import os, signal, time\n"
        "from pathlib import Path\n"
        "from surrogates.data.generation import GenerationInterrupted, stop_cleanly_on_signals\n"
        "from surrogates.data.temporaries import temporary_path\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "with stop_cleanly_on_signals(folder):\n"
        "    temporary_path(folder / 'train.h5').write_bytes(b'partial')\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(1)\n"
        "    except GenerationInterrupted:\n"
        "        pass\n"
        "    time.sleep(60)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 30
    assert result.stderr.splitlines() == [
        "surrogates-generate: interrupted by SIGTERM: this job's temporary files were removed, complete files are "
        "kept; rerun the same command to resume"
    ]
    assert list(tmp_path.iterdir()) == []


def test_splits_with_names_of_their_own_never_share_inputs(tmp_path):
    """Every split name outside train/val/test used to get the same seed id: two such splits of one
    dataset held the same samples. Each name now seeds its own chunks; train keeps its old seeds."""
    pde = Darcy(resolution=6)
    sizes = {"train": 2, "ood_a": 2, "ood_b": 2, "b": 2, "bb": 2}
    files = generate_dataset(pde, tmp_path / "d", sizes, seed=3, chunk_size=2, progress=False)
    fields = {}
    for path in files:
        with h5py.File(path) as f:
            fields[path.stem] = f["a"][...]
    assert sorted(fields) == sorted(sizes)
    names = sorted(fields)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not np.array_equal(fields[first], fields[second]), (first, second)
    # train's chunk 0 is still drawn from SeedSequence([seed, 0, start]), as datasets written before
    rng = np.random.default_rng(np.random.SeedSequence([3, 0, 0]))
    np.testing.assert_array_equal(fields["train"], pde.sample_inputs(2, rng)["a"].astype(np.float32))


def test_progress_off_a_terminal_is_whole_lines_not_carriage_returns(tmp_path, capsys, monkeypatch):
    """In a log file tqdm's in-place redraws made one line of many carriage-return-separated states; off a
    terminal each state is a line of its own, the first and the last at least, at most one per 30 s between."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    generate_dataset(Darcy(resolution=6), tmp_path / "d", {"train": 6}, seed=0, chunk_size=1, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("darcy train -> train.h5:   0%") and "6/6" in lines[1], lines
