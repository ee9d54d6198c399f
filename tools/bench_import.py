"""Import throughput and peak memory of `surrogates-import`, against `dd`'s sequential read of the same file.

Writes a PDEBench-layout file (2D compressible NS: ``density``, ``pressure``, ``Vx``, ``Vy`` ``(N, T, 64, 64)``)
and a The Well-layout file (a scalar and a vector field, ``(N, T, 64, 64[, 2])``) of about ``--size-gb`` each,
then for each: reads it with ``dd bs=8M`` (the sequential read speed of this disk and page cache), computes its
SHA-256 alone, and imports it in a child process (``import_dataset``: checksum pass + one streaming pass that
writes train/val/test), recording wall time and the child's peak RSS (``wait4``). The files are read right after
they were written, so they may sit in the page cache: the numbers compare the importer with the fastest read
this machine gives, not with a cold disk.

    .venv/bin/python tools/bench_import.py                 # ~200 MB per layout
    .venv/bin/python tools/bench_import.py --size-gb 2     # larger than the default 256 MiB block budget x 8
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from benchmarks_md import update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
S, T = 64, 10  # grid and stored steps of one sample


def write_pdebench(path: Path, size_bytes: int) -> int:
    per_sample = 4 * T * S * S * 4
    n = max(10, size_bytes // per_sample)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        sets = {name: f.create_dataset(name, (n, T, S, S), dtype="f4") for name in ("density", "pressure", "Vx", "Vy")}
        for start in range(0, n, 64):
            stop = min(n, start + 64)
            for ds in sets.values():
                ds[start:stop] = rng.random((stop - start, T, S, S), dtype=np.float32) + 0.5
        for axis in ("x", "y"):
            f.create_dataset(f"{axis}-coordinate", data=((np.arange(S) + 0.5) / S).astype(np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 1, T + 1, dtype=np.float32))
        f.attrs["eta"], f.attrs["zeta"], f.attrs["M"] = 0.01, 0.01, 0.1
    return n


def write_the_well(path: Path, size_bytes: int) -> int:
    per_sample = 3 * T * S * S * 4
    n = max(10, size_bytes // per_sample)
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "bench", "grid_type": "cartesian", "n_spatial_dims": 2, "n_trajectories": n,
                        "simulation_parameters": ["Rayleigh"], "Rayleigh": 1e6})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        for key, values in (("time", np.linspace(0, 1, T)), ("x", np.linspace(0, 1, S)), ("y", np.linspace(0, 1, S))):
            dims.create_dataset(key, data=values.astype(np.float32)).attrs["sample_varying"] = False
        bc = f.create_group("boundary_conditions").create_group("x_periodic")
        bc.attrs.update({"associated_dims": ["x"], "associated_fields": [], "bc_type": "PERIODIC"})
        bc.create_dataset("mask", data=np.zeros(S, bool))
        f.create_group("scalars").attrs["field_names"] = []
        f.create_group("t2_fields").attrs["field_names"] = []
        fields = {}
        for group, name, shape in (("t0_fields", "buoyancy", (n, T, S, S)), ("t1_fields", "velocity", (n, T, S, S, 2))):
            g = f.create_group(group)
            g.attrs["field_names"] = [name]
            ds = g.create_dataset(name, shape, dtype="f4")
            ds.attrs.update({"dim_varying": [True, True], "sample_varying": True, "time_varying": True})
            fields[name] = ds
        for start in range(0, n, 64):
            stop = min(n, start + 64)
            for ds in fields.values():
                ds[start:stop] = rng.random((stop - start, *ds.shape[1:]), dtype=np.float32)
    return n


def dd_seconds(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=8M"], check=True, capture_output=True)
    return time.perf_counter() - start


def dd_write_seconds(path: Path, nbytes: int) -> float:
    """Sequential write of ``nbytes`` with ``dd`` and an fsync at the end (the importer fsyncs its files too)."""
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=8M", f"count={max(1, nbytes // 2**23)}", "conv=fsync"],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def baseline_rss() -> float:
    """Peak RSS (MiB) of a process that only imports the importer (interpreter and libraries)."""
    child = subprocess.Popen([sys.executable, "-c", "import surrogates.data.importers.run"], cwd=REPO)
    _, _, usage = os.wait4(child.pid, 0)
    return usage.ru_maxrss / 1024


def sha_seconds(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
    return time.perf_counter() - start


def import_in_child(source: Path, out: Path, chunk_bytes: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one import in a fresh process."""
    code = (
        "from pathlib import Path; from surrogates.data.importers import ImportSettings, import_dataset; "
        f"import_dataset(ImportSettings(source={str(source)!r}, data_dir=Path({str(out)!r}), chunk_bytes={chunk_bytes}, "
        "progress=False, overwrite=True))"
    )
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import of {source} failed")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=0.2, help="size of each source file (default 0.2)")
    parser.add_argument("--chunk-mb", type=int, nargs="+", default=[256, 32],
                        help="block budgets of the importer (chunk_bytes, MiB), one import each (default 256 32)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_import_"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 2**30)
    rows = []
    try:
        for label, writer, filename in (("PDEBench 2D CFD (4 fields)", write_pdebench, "2D_CFD_Rand_periodic_Train.hdf5"),
                                        ("The Well (scalar + vector field)", write_the_well, "bench_well.hdf5")):
            source = work / filename
            n = writer(source, size)
            nbytes = source.stat().st_size
            mb = nbytes / 2**20
            dd = dd_seconds(source)
            dd_write = dd_write_seconds(work / "dd_write.bin", nbytes)
            sha = sha_seconds(source)
            for chunk_mb in args.chunk_mb:
                seconds, rss = import_in_child(source, work / f"out_{source.stem}", chunk_mb * 2**20)
                rows.append(f"| {label} | {n} | {mb:.0f} | {mb / dd:.0f} | {mb / dd_write:.0f} | {mb / sha:.0f} | {chunk_mb} "
                            f"| {seconds:.1f} | {mb / seconds:.0f} | {rss:.0f} |")
                print(rows[-1], flush=True)
                shutil.rmtree(work / f"out_{source.stem}", ignore_errors=True)
            source.unlink()
        base = baseline_rss()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python tools/bench_import.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    markdown = f"""## Import throughput: `surrogates-import` vs `dd`

`{command.strip()}` on {platform.machine()} ({os.cpu_count()} CPUs, shared), {datetime.date.today()}: one source
file per layout of {args.size_gb:g} GiB (samples of {T} steps on a {S}x{S} grid), read by `dd bs=8M`, hashed
alone (SHA-256), and imported in a fresh process per block budget `chunk_bytes` (a checksum pass, then one
streaming pass writing train/val/test, each file fsynced); `dd write` is a sequential write of the same size
with an fsync, the disk's side of the import. The sources were just written, so their reads come from the page
cache (`dd read` shows it): the import is bounded by the write, the checksum and the copies, not by reading.

| layout | samples | MiB | dd read MiB/s | dd write MiB/s | sha256 MiB/s | chunk MiB | import s | import MiB/s | peak RSS MiB |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

A process that only imports the importer peaks at {base:.0f} MiB; the rest of the peak is about two blocks (one
read, its rows copied for a split), set by `chunk_bytes`, not by the source's size: a source larger than memory
imports in bounded memory.
"""
    print(markdown)
    if not args.no_write:
        update_section(args.output, "import", markdown)
        print(f"wrote section 'import' of {args.output}")


if __name__ == "__main__":
    main()
