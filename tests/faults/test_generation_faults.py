"""SIGKILL `surrogates-generate` at seeded random points (one while each split is written), rerun, and compare with an uninterrupted run.

SIGKILL gives the process no chance to clean up (unlike SIGTERM and SIGINT, tested in
tests/data/test_generation_safety.py): what it leaves is whatever was on disk at that instant. The
writer's promise is that this is only complete files under their final names plus this process's
temporary file (``<name>.tmp-<host>-<pid>``), which the next run removes; the rerun then writes
exactly the arrays an uninterrupted run writes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogates.data.fingerprint import read_fingerprint
from surrogates.data.schema import inspect_file
from surrogates.data.temporaries import temporary_owner
from tests.data.test_generation_safety import QUIET_ENV, SCRIPT

SPLITS = {"train": 32, "val": 32, "test": 32}  # about a second of solving each, so the kill lands inside the split
ARGS = ["pde=darcy", "resolution=16", "chunk_size=4", "name=d"] + [f"n_{split}={n}" for split, n in SPLITS.items()]
SEED = 20261206  # the kill points below are drawn from it
KILL_POINTS = 3  # one per number of complete files at the kill: 0, 1, 2

# What every case observed, for docs/reliability.md (printed at the end of the test).
REPORT: dict[str, list] = {"kills": []}


def _generate(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *ARGS], cwd=cwd, env=QUIET_ENV, capture_output=True, text=True, timeout=300)


def _arrays(folder: Path) -> dict[str, dict[str, bytes]]:
    """Every variable (data and coordinates) of every dataset file, as raw bytes with dtype and shape."""
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            out[path.name] = {
                name: (str(f[name].dtype), f[name].shape, f[name][()].tobytes())
                for name in f if isinstance(f[name], h5py.Dataset)
            }
    return out


def _complete_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.h5"))


def _kill_when(process: subprocess.Popen, folder: Path, complete: int, delay: float) -> list[str]:
    """SIGKILL ``process`` ``delay`` seconds after its temporary file of split number ``complete`` appeared
    (``complete`` files are done by then); returns the files present at the kill."""
    deadline = time.monotonic() + 240
    while True:
        done = _complete_files(folder) if folder.exists() else []
        temporary = list(folder.glob("*.tmp-*")) if folder.exists() else []
        if len(done) >= complete and (temporary or len(done) > complete):
            break
        assert process.poll() is None, f"the run ended before the kill point: {process.communicate()}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.01)
    time.sleep(delay)
    present = sorted(p.name for p in folder.iterdir())
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return present


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = _generate(cwd)
    assert result.returncode == 0, result.stderr
    folder = cwd / "datasets" / "d"
    assert _complete_files(folder) == sorted(f"{s}.h5" for s in SPLITS)
    return {"arrays": _arrays(folder), "fingerprint": read_fingerprint(folder / "train.h5")}


@pytest.mark.parametrize("case", range(KILL_POINTS))
def test_sigkill_at_a_random_point_then_rerun_equals_an_uninterrupted_run(tmp_path, uninterrupted, case):
    rng = np.random.default_rng([SEED, case])
    complete, delay = case, float(rng.uniform(0.0, 0.5))  # the instant within the split is random
    folder = tmp_path / "datasets" / "d"
    process = subprocess.Popen([SCRIPT, *ARGS], cwd=tmp_path, env=QUIET_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _kill_when(process, folder, complete, delay)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL

    # What the kill left: complete files of this dataset under final names, and the killed run's temporary file.
    left = sorted(p.name for p in folder.iterdir())
    for name in _complete_files(folder):
        info = inspect_file(folder / name)  # readable, schema-valid, finite
        split = name.removesuffix(".h5")
        assert info.n_samples == SPLITS[split]
        assert json.loads(info.attrs["fingerprint"]) == uninterrupted["fingerprint"]
    temporaries = [name for name in left if not name.endswith(".h5")]
    assert all(temporary_owner(name) and temporary_owner(name)[1] == process.pid for name in temporaries), left
    assert len(temporaries) <= 1, left
    kept = {name: (folder / name).stat().st_mtime_ns for name in _complete_files(folder)}

    rerun = _generate(tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    after = sorted(p.name for p in folder.iterdir())
    assert after == sorted(f"{s}.h5" for s in SPLITS), after  # no temporary file left behind
    for name in temporaries:
        assert f"removed {name}" in rerun.stdout
    assert all((folder / name).stat().st_mtime_ns == stamp for name, stamp in kept.items())  # complete files kept

    arrays = _arrays(folder)
    assert arrays.keys() == uninterrupted["arrays"].keys()
    lost = 0
    for name, variables in uninterrupted["arrays"].items():
        assert arrays[name].keys() == variables.keys(), name
        for var, (dtype, shape, raw) in variables.items():
            assert arrays[name][var][:2] == (dtype, shape), (name, var)
            lost += sum(a != b for a, b in zip(arrays[name][var][2], raw))
    assert lost == 0  # bitwise equal: no byte lost or changed
    REPORT["kills"].append({"case": case, "after_complete_files": complete, "delay_s": round(delay, 3),
                            "left": left, "bytes_differing": lost})
    print(f"\nkill point {case}: after {complete} complete file(s) + {delay:.3f} s, left {left}; "
          f"rerun equals the uninterrupted run bit for bit ({lost} bytes differ)")
