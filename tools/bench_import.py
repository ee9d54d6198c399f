"""Import throughput and peak memory of `surrogates-import`, against `dd`'s sequential read of the same file.

Writes a PDEBench-layout file (2D compressible NS: ``density``, ``pressure``, ``Vx``, ``Vy`` ``(N, T, 64, 64)``)
and a The Well-layout file (a scalar and a vector field, ``(N, T, 64, 64[, 2])``) of about ``--size-gb`` each,
then for each: reads it with ``dd bs=8M iflag=direct`` (the disk's sequential read speed, past the page cache)
and with plain ``dd`` from the page cache, computes its SHA-256 alone, and imports it in a child process
(``import_dataset``: one streaming pass that writes train/val/test while a thread hashes the source) from a cold file (dropped from
the page cache with ``posix_fadvise(POSIX_FADV_DONTNEED)`` after an fsync), recording wall time and the child's
peak RSS (``VmHWM``: its own memory after exec, not this process's at the fork), and each stage of the import alone (where the time goes). Then the training side: the imported train split read by ``FieldDataModule``'s loader
(samples and MiB per second) and a small FNO trained on it (samples per second), in a child process.

    .venv/bin/python tools/bench_import.py                 # ~200 MB per layout
    .venv/bin/python tools/bench_import.py --size-gb 2     # larger than the default 256 MiB block budget x 8
    .venv/bin/python tools/bench_import.py --size-gb 2 --before 171bce7   # also time that commit's importer
    .venv/bin/python tools/bench_import.py --size-gb 2 --workdir /tmp/b --dest /tmp/b /dev/shm/b   # also into memory
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
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


def drop_from_cache(path: Path) -> None:
    """Flush ``path`` to disk and drop its pages from the page cache, so that the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether two folders lie on one filesystem (one device)."""
    return a.stat().st_dev == b.stat().st_dev


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (``ext4``, ``tmpfs``, ...), from /proc/mounts: the longest mount
    point above it."""
    path, best, kind = path.resolve(), "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and (path == Path(fields[1]) or Path(fields[1]) in path.parents) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def destination_label(dest: Path, work: Path) -> str:
    """How a table names where an import wrote: the source's disk, or another filesystem and its type."""
    return "source's disk" if same_filesystem(dest, work) else f"{filesystem_type(dest)} ({dest})"


def dd_seconds(path: Path, direct: bool = False) -> float:
    """Sequential read of ``path`` with ``dd bs=8M``; ``direct``: with O_DIRECT (``iflag=direct``), past the page cache."""
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=8M", *(["iflag=direct"] if direct else [])],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def dd_write_seconds(path: Path, nbytes: int) -> float:
    """Sequential write of ``nbytes`` with ``dd`` and an fsync at the end (the importer fsyncs its files too)."""
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=8M", f"count={max(1, nbytes // 2**23)}", "conv=fsync"],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def dd_together_seconds(source: Path, path: Path, nbytes: int) -> float:
    """Seconds of the direct read of ``source`` and the write of ``nbytes`` to ``path`` started at the same time
    (two ``dd`` as in :func:`dd_seconds` and :func:`dd_write_seconds`), until both are done: what the disk gives
    an importer that reads and writes at once."""
    start = time.perf_counter()
    read = subprocess.Popen(["dd", f"if={source}", "of=/dev/null", "bs=8M", "iflag=direct"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    write = subprocess.Popen(["dd", "if=/dev/zero", f"of={path}", "bs=8M", f"count={max(1, nbytes // 2**23)}", "conv=fsync"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if read.wait() != 0 or write.wait() != 0:
        raise SystemExit("dd failed")
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


# The child's own peak RSS: VmHWM of its memory after exec. ru_maxrss from wait4 would also hold the RSS of this
# (forking) process at the fork, which Linux carries across exec, and hide any child peak below it.
PEAK_RSS = "import atexit; atexit.register(lambda: print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], flush=True)); "


def _peak_rss_mib(stdout: str) -> float:
    return float([line for line in stdout.splitlines() if line.startswith("VmHWM ")][-1].split()[1]) / 1024


def baseline_process() -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of a process that only imports the importer (interpreter and libraries)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK_RSS + "import surrogates.data.importers.run"], cwd=REPO,
                         check=True, capture_output=True, text=True)
    return _peak_rss_mib(out.stdout), time.perf_counter() - start


def sha_seconds(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
    return time.perf_counter() - start


def import_in_child(source: Path, out: Path, chunk_bytes: int, package_root: Path | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds: user + system) of one import of a cold ``source`` in a fresh process;
    ``package_root``: a folder holding another version of the ``surrogates`` package to import with instead (e.g.
    ``git archive`` of an older commit)."""
    drop_from_cache(source)
    code = PEAK_RSS + (
        "from pathlib import Path; from surrogates.data.importers import ImportSettings, import_dataset; "
        f"import_dataset(ImportSettings(source={str(source)!r}, data_dir=Path({str(out)!r}), chunk_bytes={chunk_bytes}, "
        "progress=False, overwrite=True))"
    )
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(package_root)} if package_root is not None else None
    child = subprocess.Popen([sys.executable, "-c", code], cwd=package_root or REPO, stdout=subprocess.PIPE, env=env, text=True)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import of {source} failed")
    return seconds, _peak_rss_mib(stdout), usage.ru_utime + usage.ru_stime


def stage_seconds(source: Path, work: Path, chunk_bytes: int) -> dict[str, float]:
    """Where an import's time goes: each stage of ``import_dataset`` alone, with the package's own functions, over
    the whole source in its blocks: reading them from a cold file (``part.read``: HDF5 decoding and copies), the
    NaN scan of the writer (``np.isfinite``), writing them into one dataset file (``StreamingDatasetWriter``:
    one HDF5 chunk per sample with its Fletcher-32 checksum, :mod:`surrogates.data.checksummed_chunks`, then fsync and rename), and the SHA-256 of the source (``checksums``)."""
    from surrogates.data.importers.planning import make_plan
    from surrogates.data.importers.run import checksums
    from surrogates.data.importers.settings import ImportSettings, samples_per_block
    from surrogates.data.streaming_writer import StreamingDatasetWriter

    settings = ImportSettings(source=str(source), data_dir=work / "stages", chunk_bytes=chunk_bytes, progress=False)
    plan = make_plan(settings)
    block = samples_per_block(plan, settings)
    seconds = dict.fromkeys(("read", "nan_scan", "write", "fsync_rename", "sha256"), 0.0)
    drop_from_cache(source)
    n = sum(part.n_samples for part in plan.parts)
    attrs = {"pde": "bench", "inputs": " ".join(plan.inputs), "targets": " ".join(plan.targets),
             "source": str(source), "source_sha256": "{}", "import_config": "", "import_layout": plan.layout}
    with StreamingDatasetWriter(work / "stages.h5", n, plan.variables, plan.coords, attrs, overwrite=True,
                                variable_attrs={k: v.attrs for k, v in plan.variables.items()}) as out:
        done = 0
        for part in plan.parts:
            for start in range(0, part.n_samples, block):
                stop = min(start + block, part.n_samples)
                tic = time.perf_counter()
                data = part.read(start, stop)
                seconds["read"] += time.perf_counter() - tic
                tic = time.perf_counter()
                for values in data.values():
                    np.isfinite(values).reshape(len(values), -1).all(axis=1)
                seconds["nan_scan"] += time.perf_counter() - tic
                tic = time.perf_counter()
                out.write(done, data)  # scans again: subtract the NaN scan to get the HDF5 write
                seconds["write"] += time.perf_counter() - tic
                done += stop - start
        tic = time.perf_counter()
        out.commit()
        seconds["fsync_rename"] = time.perf_counter() - tic
    seconds["write"] -= seconds["nan_scan"]
    (work / "stages.h5").unlink()
    drop_from_cache(source)
    tic = time.perf_counter()
    checksums(plan, progress=False)
    seconds["sha256"] = time.perf_counter() - tic
    return seconds


TRAIN_CODE = """
import json, sys, time, torch
from surrogates.data.datamodule import FieldDataModule
from surrogates.models.fno import FNO
names = sys.argv[2].split(",")
dm = FieldDataModule(sys.argv[1], names, names, batch_size=32, input_time=0, target_time=1, check_finite=False)
dm.setup("fit")
loader = dm.train_dataloader()
start, n, nbytes = time.perf_counter(), 0, 0
for k, batch in enumerate(loader):
    n += len(batch["x"]); nbytes += batch["x"].numel() * 4 + batch["y"].numel() * 4
    if k == 40: break
load_s = time.perf_counter() - start
torch.manual_seed(0)
model = FNO(len(names), len(names), dim=2, modes=8, width=16, projection_channels=32)
opt = torch.optim.Adam(model.parameters(), 1e-3)
start, m = time.perf_counter(), 0
for k, batch in enumerate(loader):
    loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"]); opt.zero_grad(); loss.backward(); opt.step()
    m += len(batch["x"])
    if k == 10: break
print(json.dumps({"load_samples_s": n / load_s, "load_mib_s": nbytes / 2**20 / load_s, "train_samples_s": m / (time.perf_counter() - start)}))
"""


def train_in_child(data_dir: Path, names: list[str]) -> dict[str, float]:
    """Loader throughput of the imported train split and the training throughput of a small FNO on it (one process)."""
    out = subprocess.run([sys.executable, "-c", TRAIN_CODE, str(data_dir), ",".join(names)], cwd=REPO, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _before_table(commit: str | None, rows: list[str]) -> str:
    if not commit or not rows:
        return ""
    return f"""The importer before this change (`--before {commit}`: that commit's package, same source, same cold start,
the last destination and block budget) against the current one, run alternately, medians of `--repeat` imports each: wall seconds,
CPU seconds (user + system, less sensitive to the other jobs on the machine) and peak RSS:

| layout | chunk MiB | before s | before CPU s | before peak RSS MiB | now s | now CPU s | now peak RSS MiB | wall speed-up | CPU ratio |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=0.2, help="size of each source file (default 0.2)")
    parser.add_argument("--chunk-mb", type=int, nargs="+", default=[256, 32],
                        help="block budgets of the importer (chunk_bytes, MiB), one import each (default 256 32)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--dest", type=Path, nargs="+", default=None,
                        help="where the imported datasets go, one import per folder per block budget (default: the workdir, "
                             "the source's disk); e.g. --dest /tmp/bimp /dev/shm/bimp adds imports into memory (tmpfs), "
                             "which the disk's write speed does not bound")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    parser.add_argument("--pairs", type=int, default=3,
                        help="direct reads and imports, alternately, per layout, destination and block budget; medians (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="imports of each version for the --before comparison")
    parser.add_argument("--before", default=None,
                        help="a git commit whose importer is timed too, from `git archive` of it (e.g. the one before a change)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_import_"))
    work.mkdir(parents=True, exist_ok=True)
    dests = args.dest or [work]
    for dest in dests:
        dest.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 2**30)
    rows, training, profile, before, disk = [], [], [], [], []
    ratios: dict[str, list[float]] = {}
    old_root = None
    if args.before:
        old_root = work / f"package_{args.before}"
        old_root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", args.before, "surrogates"], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
    try:
        for label, writer, filename, fields in (
            ("PDEBench 2D CFD (4 fields)", write_pdebench, "2D_CFD_Rand_periodic_Train.hdf5",
             ["density", "pressure", "velocity_x", "velocity_y"]),
            ("The Well (scalar + vector field)", write_the_well, "bench_well.hdf5", ["buoyancy", "velocity_x", "velocity_y"]),
        ):
            source = work / filename
            n = writer(source, size)
            nbytes = source.stat().st_size
            mb = nbytes / 2**20
            drop_from_cache(source)
            dd_cold = dd_seconds(source, direct=True)
            dd = dd_seconds(source)
            dd_write = dd_write_seconds(work / "dd_write.bin", nbytes)
            drop_from_cache(source)
            together = dd_together_seconds(source, work / "dd_write.bin", nbytes)
            sha = sha_seconds(source)
            disk.append((label, dd_cold, dd_write, together, dd_cold + dd_write))
            for dest, chunk_mb in ((d, c) for d in dests for c in args.chunk_mb):
                out = dest / f"out_{source.stem}"
                # pairs of a direct read and an import, one right after the other: this disk's speed drifts by
                # 2x within minutes (a shared host), so each import is compared with the read next to it
                pairs = []
                for _ in range(args.pairs):
                    shutil.rmtree(out, ignore_errors=True)
                    read_s = dd_seconds(source, direct=True)
                    pairs.append((read_s, *import_in_child(source, out, chunk_mb * 2**20)))
                read_s, seconds = (float(np.median([p[i] for p in pairs])) for i in (0, 1))
                rss = max(p[2] for p in pairs)
                ratio = float(np.median([p[0] / p[1] for p in pairs]))  # (MiB / import s) / (MiB / dd s)
                same_disk, where = same_filesystem(dest, work), destination_label(dest, work)
                ratios.setdefault(where, []).append(ratio)
                # into another filesystem the disk only reads: the bound is the direct read (or the hash, alongside)
                bound = max(together if same_disk else read_s, sha)
                write_ratio = f"{dd_write / seconds:.2f}" if same_disk else "-"
                rows.append(f"| {label} | {where} | {n} | {mb:.0f} | {mb / read_s:.0f} | {mb / dd:.0f} | {mb / dd_write:.0f} "
                            f"| {together:.1f} | {mb / sha:.0f} | {chunk_mb} | {seconds:.1f} | {mb / seconds:.0f} | {ratio:.2f} "
                            f"({min(p[0] / p[1] for p in pairs):.2f}-{max(p[0] / p[1] for p in pairs):.2f}) | {write_ratio} "
                            f"| {bound / seconds:.2f} | {rss:.0f} | {os.getloadavg()[0]:.1f} |")
                print(rows[-1], flush=True)
                if dest != dests[-1] or chunk_mb != args.chunk_mb[-1]:
                    shutil.rmtree(out, ignore_errors=True)
                    continue
                if old_root is not None:
                    # before and now alternately, medians: the machine's other jobs make single timings vary a lot
                    runs: dict[str, list[tuple[float, float, float]]] = {"before": [], "now": []}
                    for _ in range(args.repeat):
                        for key, root in (("before", old_root), ("now", None)):
                            shutil.rmtree(out, ignore_errors=True)
                            runs[key].append(import_in_child(source, out, chunk_mb * 2**20, root))
                    old, new = ({k: float(np.median([r[i] for r in runs[key]])) for i, k in enumerate(("s", "rss", "cpu"))}
                                for key in ("before", "now"))
                    before.append(f"| {label} | {chunk_mb} | {old['s']:.1f} | {old['cpu']:.1f} | {old['rss']:.0f} | {new['s']:.1f} "
                                  f"| {new['cpu']:.1f} | {new['rss']:.0f} | {old['s'] / new['s']:.2f} | {old['cpu'] / new['cpu']:.2f} |")
                    print(before[-1], flush=True)
                stages = stage_seconds(source, dest, chunk_mb * 2**20)
                profile.append(f"| {label} | " + " | ".join(f"{v:.1f} ({mb / max(v, 1e-9):.0f})" for v in stages.values())
                               + f" | {seconds:.1f} |")
                print(profile[-1], flush=True)
                rates = train_in_child(out, fields)
                training.append(f"| {label} | {rates['load_samples_s']:.0f} | {rates['load_mib_s']:.0f} "
                                f"| {rates['train_samples_s']:.1f} |")
                print(training[-1], flush=True)
                shutil.rmtree(out, ignore_errors=True)
            source.unlink()
        base, startup = baseline_process()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python tools/bench_import.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    disk_table = "\n".join(f"| {label} | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} | {d / c:.2f} |" for label, a, b, c, d in disk)
    verdicts = "; ".join(f"into the {where}: {'met' if min(r) >= 0.5 else 'not met'} (lowest ratio {min(r):.2f})"
                         for where, r in ratios.items())
    markdown = f"""## Import throughput: `surrogates-import` vs `dd`

`{command.strip()}` on {platform.machine()} ({os.cpu_count()} CPUs shared with other jobs, so timings vary by tens of
percent between runs), {datetime.date.today()}: one source file per layout of {args.size_gb:g} GiB (samples of {T} steps
on a {S}x{S} grid). The disk's sequential read speed is `dd bs=8M iflag=direct` (O_DIRECT, past the page cache);
`dd cached` reads the same file from the page cache, `dd write` writes as many bytes with an fsync (the disk's
side of the import), `dd read + write` runs the direct read and the write at the same time (seconds until both
are done), `sha256` hashes the file alone. Each row is the median of `--pairs` direct reads and imports run
alternately (this shared disk's speed drifts by up to 2x within minutes): `dd direct` is the median of its reads, and
`vs dd read` the median, over the pairs, of the import's speed over the read's next to it (range in brackets);
the other `dd` columns are one measurement per layout. Each import runs in a fresh process from a cold source
(dropped from the page cache with `posix_fadvise(POSIX_FADV_DONTNEED)` after an fsync) with the block budget
`chunk_bytes`: one streaming pass that writes train/val/test (each file fsynced, then renamed) while a thread
hashes the source. `vs dd read` is the import's MiB/s over the direct read's, `vs dd write` over the sequential
write's, `vs bound` over what one pass can reach on this machine: the import reads every byte from the disk while
it writes as many back to the same disk (`dd read + write` seconds), and hashes every byte (`sha256` seconds, in
a thread alongside), so the bound is the larger of the two times (the import's time also holds the process
start, below). An import into another filesystem (`imported into`, e.g. tmpfs: memory) leaves the disk only the
read, so there the bound is the direct read or the hash, whichever is slower, and `vs dd write` does not apply.
`load` is the 1-minute load average after the import (other jobs on the machine).

| layout | imported into | samples | MiB | dd direct MiB/s | dd cached MiB/s | dd write MiB/s | dd read + write s | sha256 MiB/s | chunk MiB | import s | import MiB/s | vs dd read | vs dd write | vs bound | peak RSS MiB | load |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**Goal (import at >= 50 % of the disk's sequential read)**: {verdicts}.
Does the disk read and write at once? The direct read and the write of as many bytes, each alone, one after
the other, and both started together (seconds; `overlap` is the sum over together, 1 when they take turns,
2 when neither slows the other):

| layout | dd direct s | dd write s | dd read + write s | sum of the two alone s | overlap |
|---|---|---|---|---|---|
{disk_table}

{_before_table(args.before, before)}Where the time goes (`stage_seconds`: each stage of the import alone over the whole source, with the
package's own functions; seconds and, in brackets, MiB/s of source data; the last destination and block budget):

| layout | read (cold, HDF5 decode + copy) | NaN scan | HDF5 write (checksummed chunks) | fsync + rename | sha256 | import s |
|---|---|---|---|---|---|---|
{chr(10).join(profile)}

Training from the imported files (the train split through `FieldDataModule`'s loader, batch 32, read in the
training process itself (no loader workers): samples and MiB of `x` + `y` per second; a small FNO, width 16, 8 modes, trained on those batches on the
CPU: samples per second), in a fresh process:

| layout | loader samples/s | loader MiB/s | FNO training samples/s |
|---|---|---|---|
{chr(10).join(training)}

The import's seconds include starting the process: a process that only imports the importer takes
{startup:.1f} s and peaks at {base:.0f} MiB; the rest of the peak grows with `chunk_bytes` (the
block read from the source and the temporaries made from it; each split's rows are written from views of it),
not with the source's size: a source larger than memory imports in bounded memory.
"""
    print(markdown)
    if not args.no_write:
        update_section(args.output, "import", markdown)
        print(f"wrote section 'import' of {args.output}")


if __name__ == "__main__":
    main()
