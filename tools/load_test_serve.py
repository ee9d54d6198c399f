"""Load test of `surrogates-serve`: requests per second and p50/p99 latency of a 64x64 FNO over HTTP.

Builds an FNO with the Darcy experiment's architecture (width 32, 12 modes, 4 layers; untrained: the
timing does not depend on the weights) and saves it as a standard checkpoint, then for micro-batching
on and off starts the real entry point (``python -m surrogates.cli.serve``) in a subprocess on a
loopback port and drives it with httpx async clients at each concurrency (1, 8, 32 by default).
Every level is bounded in requests and in seconds. Results go to the ``serving`` section of
``docs/benchmarks.md``.

    .venv/bin/python tools/load_test_serve.py                       # defaults: 300 requests / 20 s per level
    .venv/bin/python tools/load_test_serve.py --requests 100 --seconds 5 --no-write
    .venv/bin/python tools/load_test_serve.py --device cuda --torch-threads 0   # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogates import __version__  # noqa: E402
from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint  # noqa: E402
from surrogates.models.fno import FNO  # noqa: E402
from surrogates.models.normalized import NormalizedOperator  # noqa: E402
from surrogates.nn.normalization import Normalizer  # noqa: E402
from tools._serving import wait_for_health  # noqa: E402
from tools.benchmarks_md import update_section  # noqa: E402

MODEL = "fno-darcy-64"


def save_checkpoint(path: Path, resolution: int = 64) -> Path:
    """An untrained FNO in the training checkpoint format (weights, constructor, normalization, schema)."""
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=2, modes=12, width=32, n_layers=4, projection_channels=128)
    metadata = CheckpointMetadata(
        kind="operator",
        model=ClassSpec.from_dict(net.init_config(), "model"),
        data_schema={
            "pde": "darcy",
            "inputs": ["a"],
            "targets": ["u"],
            "input_time": None,
            "target_time": None,
            "spatial_dims": ["x", "y"],
            "spatial_shape": [resolution, resolution],
            "variables": {"a": ["sample", "x", "y"], "u": ["sample", "x", "y"]},
        },
        package_version=__version__,
    )
    model = NormalizedOperator(net, Normalizer.from_stats([7.5], [4.5]), Normalizer.from_stats([0.005], [0.003]))
    return write_checkpoint(path, metadata, model.state_dict())


def sample_inputs(n: int, resolution: int = 64) -> np.ndarray:
    from surrogates.pdes.darcy import Darcy

    return Darcy(resolution=resolution).sample_inputs(n, np.random.default_rng(0))["a"].astype(np.float32)


def device_name(device: str) -> str:
    """``cpu``, or the GPU's name for ``cuda`` / ``auto`` on a machine with one."""
    if device != "cpu" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name()})"
    return device


class Server:
    """The `surrogates-serve` entry point in a subprocess."""

    def __init__(self, models_dir: Path, port: int, run_dir: Path, batching: bool, args: argparse.Namespace):
        self.url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "surrogates.cli.serve", f"models_dir={models_dir}", f"port={port}",
            f"micro_batching={str(batching).lower()}", f"max_batch_size={args.max_batch_size}",
            f"max_wait_ms={args.max_wait_ms}", "solvers={}", "log_level=warning", f"hydra.run.dir={run_dir}",
            f"device={args.device}",
        ]
        if args.torch_threads:
            command.append(f"torch_threads={args.torch_threads}")
        env = {**os.environ}
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        wait_for_health(self.url, self.process, timeout, detail=lambda: self.process.stderr.read() if self.process.poll() is not None else "")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def drive(url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float) -> dict:
    """``concurrency`` clients sending requests back to back until ``max_requests`` or ``max_seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await client.post(
                        f"/v1/models/{MODEL}/predict", content=body, headers={"content-type": "application/json"}
                    )
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - start
        usage = (await client.get(f"/v1/models/{MODEL}")).json().get("usage") or {}
    ms = sorted(1000 * t for t in latencies)
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": wall,
        "rps": len(latencies) / wall if wall > 0 else 0.0,
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms else float("nan"),
        "usage": usage,
    }


def check_answer(url: str, a: np.ndarray, checkpoint: Path) -> bool:
    """One answer against `Surrogate.predict` on the same sample (bit for bit)."""
    from surrogates import Surrogate

    response = httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"inputs": {"a": a.tolist()}}, timeout=60)
    answer = np.asarray(response.json()["outputs"]["u"], dtype=np.float32)
    expected = Surrogate.load(checkpoint).predict(a)
    return bool(np.array_equal(answer.view(np.uint32), expected.view(np.uint32)))


def model_cost(checkpoint: Path, inputs: np.ndarray, batch_sizes: list[int], seconds: float = 3.0) -> dict[int, float]:
    """Milliseconds per sample of `Surrogate.predict_tensor` alone (no HTTP), per batch size: the ceiling of the service."""
    from surrogates import Surrogate

    surrogate = Surrogate.load(checkpoint)
    out = {}
    for b in batch_sizes:
        x = torch.from_numpy(np.resize(inputs, (b, *inputs.shape[1:]))[:, None].copy())
        surrogate.predict_tensor(x)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or calls < 2:
            surrogate.predict_tensor(x)
            calls += 1
        out[b] = 1000 * (time.perf_counter() - start) / calls / b
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def markdown(results: dict[str, list[dict]], args: argparse.Namespace, checks: dict[str, bool]) -> str:
    by = {(mode, r["concurrency"]): r for mode, rows in results.items() for r in rows}
    lines = [
        "## HTTP serving: 64x64 FNO over `surrogates-serve`",
        "",
        "Written by `tools/load_test_serve.py`: the real entry point in a subprocess on a loopback port, "
        f"driven by httpx async clients in another process; JSON bodies (one 64x64 sample per request); "
        f"FNO width 32, 12 modes, 4 layers (the `darcy_fno` architecture). Each level: at most {args.requests} "
        f"requests or {args.seconds:g} s after a warm-up. Micro-batching: `max_batch_size={args.max_batch_size}`, "
        f"`max_wait_ms={args.max_wait_ms:g}`. Server device: {device_name(args.device)}; torch threads: {args.torch_threads or 'default'}; "
        f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"load average before the run {args.load_before}, shared with other jobs.",
        "",
        "| micro-batching | concurrency | requests | errors | req/s | p50 ms | p99 ms | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in results:
        for r in results[mode]:
            usage = r["usage"]
            mean_batch = f"{usage['samples'] / usage['calls']:.1f}" if usage.get("calls") else "-"
            lines.append(
                f"| {mode} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {mean_batch} |"
            )
    lines.append("")
    goals = []
    c_min, c_max = min(args.concurrency), max(args.concurrency)
    if ("off", c_min) in by:
        p50 = min(by[("off", c_min)]["p50_ms"], by.get(("on", c_min), by[("off", c_min)])["p50_ms"])
        goals.append(f"- p50 at concurrency {c_min}: {p50:.1f} ms (goal: under 20 ms on CPU) -> {'met' if p50 < 20 else 'not met'}.")
    if ("on", c_max) in by and ("off", c_max) in by:
        ratio = by[("on", c_max)]["rps"] / max(by[("off", c_max)]["rps"], 1e-9)
        goals.append(
            f"- throughput at concurrency {c_max}, micro-batching on / off: {ratio:.2f}x (goal: at least 2x) -> "
            f"{'met' if ratio >= 2 else 'not met'}."
        )
    if args.model_cost:
        costs = ", ".join(f"{ms:.1f} ms per sample in batches of {b}" for b, ms in args.model_cost.items())
        b1, bmax = args.model_cost[min(args.model_cost)], args.model_cost[max(args.model_cost)]
        goals.append(
            f"- the model alone (`predict_tensor`, no HTTP, same threads, measured after the load test): {costs}; "
            f"so batching can at most raise this model's throughput {b1 / bmax:.2f}x here, and one sample "
            "costs more than the 20 ms goal before any HTTP work."
        )
    total_errors = sum(r["errors"] for rows in results.values() for r in rows)
    goals.append(f"- errors: {total_errors} (goal: 0).")
    goals.append(
        "- answers equal `Surrogate.predict` on the same sample bit for bit: "
        + ", ".join(f"micro-batching {mode}: {'yes' if ok else 'no'}" for mode, ok in checks.items())
        + " (a lone request; batched answers agree to float32 round-off, see docs/serving.md)."
    )
    return "\n".join(lines + goals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=300, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per level")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--torch-threads", type=int, default=1, help="server torch threads (0: torch default; 1 leaves a core to the clients)")
    parser.add_argument("--device", default="cpu", help="the server's device (cpu, cuda, auto)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write docs/benchmarks.md")
    args = parser.parse_args()
    args.load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    if args.torch_threads:  # the bit-for-bit check computes here with the server's thread count
        torch.set_num_threads(args.torch_threads)

    inputs = sample_inputs(16)
    bodies = [json.dumps({"inputs": {"a": a.tolist()}}).encode() for a in inputs]
    results: dict[str, list[dict]] = {}
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp) / "models"
        models_dir.mkdir()
        checkpoint = save_checkpoint(models_dir / f"{MODEL}.ckpt")
        for mode, batching in (("on", True), ("off", False)):
            server = Server(models_dir, free_port(), Path(tmp) / f"run-{mode}", batching, args)
            try:
                server.wait_ready()
                asyncio.run(drive(server.url, bodies, 1, args.warmup, 60))
                checks[mode] = check_answer(server.url, inputs[0], checkpoint)
                rows = []
                for concurrency in args.concurrency:
                    before = asyncio.run(_usage(server.url))
                    row = asyncio.run(drive(server.url, bodies, concurrency, args.requests, args.seconds))
                    row["usage"] = {k: row["usage"].get(k, 0) - before.get(k, 0) for k in ("calls", "samples")}
                    rows.append(row)
                    print(
                        f"micro-batching {mode:3s} c={concurrency:3d}: {row['requests']:4d} requests, {row['errors']} errors, "
                        f"{row['rps']:7.1f} req/s, p50 {row['p50_ms']:7.1f} ms, p99 {row['p99_ms']:7.1f} ms"
                        + (f"  first error: {row['first_error']}" if row["errors"] else ""),
                        flush=True,
                    )
                results[mode] = rows
            finally:
                server.stop()
        args.model_cost = model_cost(checkpoint, inputs, [1, args.max_batch_size])
    section = markdown(results, args, checks)
    print(section)
    if not args.no_write:
        update_section(args.out, "serving", section)
        print(f"wrote the serving section of {args.out}")


async def _usage(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return (await client.get(f"/v1/models/{MODEL}")).json().get("usage") or {}


if __name__ == "__main__":
    main()
