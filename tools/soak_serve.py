"""Soak test of `surrogates-serve` against LitServe on the same checkpoint: latency, throughput, errors, memory.

Each server runs in its own subprocess on a loopback port, one after the other on the same machine:

- `surrogates-serve` (the real entry point, ``python -m surrogates.cli.serve``, micro-batching on), and
- LitServe (``litserve.LitServer`` with its batching, ``max_batch_size`` and ``batch_timeout`` equal to
  ours), whose ``LitAPI`` wraps ``surrogates.Surrogate.load`` of the same checkpoint and checks inputs as
  our service does (shape, finite values, the same ``max_elements``), at the same URL path.

For each server, in this order:

1. idle: one client, one-step requests one after the other (``--idle-requests``, at most 30 s): p50/p99;
2. clean: ``--clients`` clients sending only valid one-step requests for ``--clean-duration`` s: throughput;
3. soak: ``--clients`` clients for ``--duration`` s, each request drawn (seeded) from valid one-step
   requests, invalid ones (NaN, ragged or wrong-shaped arrays, wrong names), oversize bodies (above
   ``max_body_bytes``) and abandoned ones (the client sends a partial or whole request and closes the
   connection without reading the answer); every valid answer is compared with ``Surrogate.predict`` of its
   own sample (a lost answer is a valid request without a 200 or a 429; a mixed one is a 200 whose numbers
   are not its sample's). A 429 (`surrogates-serve`'s admission control) is counted as shed, and its client
   waits ``Retry-After`` seconds before its next request, as a well-behaved client does;
4. `surrogates-serve` only: single hostile bodies, each measured for peak resident memory: the NetCDF
   decompression bomb (3 MB on the wire, 3.2 GB decoded), an oversize body, and the largest JSON body
   the limits accept.

Resident memory is the server's whole process tree (LitServe runs its API server and inference worker in
child processes), sampled every 20 ms. Every client loop is bounded in requests and in seconds.

    .venv/bin/python tools/soak_serve.py                                  # 32 clients, 60 s soak, both servers
    .venv/bin/python tools/soak_serve.py --duration 10 --clean-duration 5 --no-write
    .venv/bin/python tools/soak_serve.py --clients 4 --duration 3 --no-litserve --no-write --json out.json

The checkpoint defaults to the load test's untrained 64x64 FNO (`darcy_fno` architecture; timings do not
depend on the weights); ``--checkpoint`` serves a trained one, e.g. from
``surrogates-train experiment=darcy_fno_demo`` (a 32x32 Darcy FNO; pass ``--resolution 32``).
Results: a JSON (``--json``) and the ``soak`` section of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools._serving import wait_for_health  # noqa: E402

MODEL = "fno-darcy"
PATH = f"/v1/models/{MODEL}/predict"
JSON_HEADERS = {"content-type": "application/json"}
KINDS = ("valid", "invalid", "oversize", "abandoned")
INVALID = ("NaN", "ragged", "vector", "unknown name", "cut JSON")  # the invalid bodies, in make_bodies' order


# -- the LitServe peer (runs in its own process: `soak_serve.py --peer litserve ...`) ----------------------
# LitServe starts its workers by spawning processes, so the API and the middleware live at module level.
try:
    import litserve as ls
except ImportError:  # the tool still measures surrogates-serve alone
    ls = None

if ls is not None:
    from starlette.responses import JSONResponse

    class SurrogateAPI(ls.LitAPI):
        """``Surrogate.load(checkpoint)`` behind LitServe; inputs checked like surrogates-serve checks them.

        An invalid request must not fail the valid ones batched with it: LitServe's batched loop answers an
        exception from any stage to every request of the batch, so errors travel as values and leave as
        responses with their status."""

        def __init__(self, checkpoint: str, torch_threads: int, max_elements: int, **kwargs):
            super().__init__(**kwargs)
            self.checkpoint, self.torch_threads, self.max_elements = checkpoint, torch_threads, max_elements

        def setup(self, device):
            import torch

            from surrogates import Surrogate

            if self.torch_threads:
                torch.set_num_threads(self.torch_threads)
            self.surrogate = Surrogate.load(self.checkpoint)

        def decode_request(self, request):
            import numpy as np

            if not isinstance(request, dict) or not isinstance(request.get("inputs"), dict):
                return (422, "invalid_request", "expected {'inputs': {'a': [[...]]}}")
            inputs = request["inputs"]
            if set(inputs) != {"a"}:
                return (422, "unknown_input", f"expected the input 'a', got {sorted(inputs)}")
            try:
                a = np.asarray(inputs["a"], dtype=np.float32)
            except (ValueError, TypeError):
                return (422, "invalid_array", "'a' must be a rectangular array of numbers")
            if a.size > self.max_elements:
                return (413, "too_many_values", f"{a.size} values > max_elements={self.max_elements}")
            if a.ndim != 2 or min(a.shape) < 1:
                return (422, "wrong_shape", f"'a' must be (x, y), got shape {a.shape}")
            if not np.isfinite(a).all():
                return (422, "non_finite", "'a' holds NaN or infinite values")
            return a

        def batch(self, inputs):
            return inputs

        def predict(self, batch):
            import numpy as np
            import torch

            out: list = list(batch)
            groups: dict[tuple, list[int]] = {}
            for i, x in enumerate(batch):
                if isinstance(x, np.ndarray):
                    groups.setdefault(x.shape, []).append(i)
            for indices in groups.values():  # one model call per grid, as the micro-batcher does
                x = torch.from_numpy(np.stack([batch[i] for i in indices])[:, None])
                y = self.surrogate.predict_tensor(x)[:, 0].numpy()
                for row, i in enumerate(indices):
                    out[i] = y[row]
            return out

        def unbatch(self, output):
            return output

        def encode_response(self, output):
            if isinstance(output, tuple):
                status, code, detail = output
                return JSONResponse({"detail": detail, "code": code}, status_code=status)
            return {"outputs": {"u": output.tolist()}}

    class BodyLimit:
        """Refuses bodies above ``max_body_bytes`` from their Content-Length, as surrogates-serve does (LitServe
        itself has no body limit); a plain ASGI middleware, so other requests pass untouched."""

        def __init__(self, app, max_body_bytes: int):
            self.app, self.max_body_bytes = app, max_body_bytes

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                length = dict(scope["headers"]).get(b"content-length", b"")
                if length.isdigit() and int(length) > self.max_body_bytes:
                    response = JSONResponse({"detail": f"body above max_body_bytes={self.max_body_bytes}",
                                             "code": "body_too_large"}, status_code=413)
                    return await response(scope, receive, send)
            return await self.app(scope, receive, send)


def run_litserve_peer(args: argparse.Namespace) -> None:
    api = SurrogateAPI(str(args.checkpoint), args.torch_threads, args.max_elements, max_batch_size=args.max_batch_size,
                       batch_timeout=args.max_wait_ms / 1000, api_path=PATH)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=120)
    server.app.add_middleware(BodyLimit, max_body_bytes=args.max_body_bytes)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, num_api_servers=1, log_level="warning")


# -- servers ------------------------------------------------------------------------------------------
class ServerProcess:
    def __init__(self, name: str, command: list[str], port: int, log: Path, torch_threads: int,
                 cpus: set[int] | None = None):
        self.name, self.port, self.url, self.log = name, port, f"http://127.0.0.1:{port}", log
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if torch_threads:
            env["OMP_NUM_THREADS"] = str(torch_threads)
        if cpus:  # pinned before the server's interpreter starts: every process it spawns inherits the CPU set
            command = [sys.executable, "-c", PIN_AND_EXEC, ",".join(map(str, sorted(cpus))), *command]
        self.log_handle = open(log, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log_handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 240.0) -> None:
        wait_for_health(self.url, self.process, timeout, self.name, lambda: _last_line(self.log))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its workers
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_handle.close()


PIN_AND_EXEC = "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); os.execv(sys.argv[2], sys.argv[2:])"
"""Run as ``python -c PIN_AND_EXEC <cpus> <command...>``: restrict to the CPUs, then become the command."""


def split_cpus(spec: str | None, available: set[int]) -> tuple[set[int] | None, set[int] | None]:
    """The server's and the clients' CPU sets: ``"auto"`` gives the server the first half of the CPUs this
    process may use (rounded up) and the clients the rest; ``"0:1-3"`` names them; ``"none"``: no pinning."""
    if spec in (None, "none") or len(available) < 2:
        return None, None
    if spec == "auto":
        cpus = sorted(available)
        half = (len(cpus) + 1) // 2
        return set(cpus[:half]), set(cpus[half:])

    def parse(part: str) -> set[int]:
        out: set[int] = set()
        for item in part.split(","):
            low, _, high = item.partition("-")
            out.update(range(int(low), int(high or low) + 1))
        return out

    server, _, clients = spec.partition(":")
    return parse(server), parse(clients)


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class RssSampler:
    """Resident memory of a process and its children (bytes), sampled every ``interval`` seconds.

    Finding the children scans every process of the machine (about 25 ms here), so the tree is looked up
    once a second and only its members' memory is read every ``interval``: a scan every 20 ms kept this
    thread busy and, through the GIL, slowed the clients of the same process down."""

    def __init__(self, pid: int, interval: float = 0.02, tree_every: float = 1.0):
        import psutil

        self.root, self.interval, self.tree_every = psutil.Process(pid), interval, tree_every
        self.peak, self.last = 0, 0
        self._tree, self._tree_at = [self.root], float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil

        if time.monotonic() - self._tree_at >= self.tree_every:
            try:
                self._tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                self._tree = [self.root]
            self._tree_at = time.monotonic()
        total = 0
        for proc in self._tree:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last = self.rss()
            self.peak = max(self.peak, self.last)
            time.sleep(self.interval)

    def start(self) -> "RssSampler":
        self.peak = self.rss()
        self._thread.start()
        return self

    def reset(self) -> int:
        self.peak = self.rss()
        return self.peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- bodies -------------------------------------------------------------------------------------------
def make_bodies(args, inputs) -> dict:
    import numpy as np

    n, res = len(inputs), args.resolution
    valid = [json.dumps({"inputs": {"a": a.tolist()}}).encode() for a in inputs]
    nan = inputs[0].copy()
    nan[res // 2, res // 3] = np.nan
    invalid = [
        json.dumps({"inputs": {"a": nan.tolist()}}).encode(),                           # NaN
        json.dumps({"inputs": {"a": inputs[1][: res // 2].tolist()[:-1] + [[1.0]]}}).encode(),  # ragged
        json.dumps({"inputs": {"a": inputs[2].ravel().tolist()}}).encode(),              # wrong shape (a vector)
        json.dumps({"inputs": {"b": inputs[3].tolist()}}).encode(),                      # wrong name
        b'{"inputs": {"a": [[1, 2], [3, 4]]',                                             # cut
    ]
    # oversize: numbers past max_body_bytes (a real JSON document, so a server without a limit parses it)
    row = json.dumps(np.round(np.random.default_rng(1).uniform(3, 12, 4096), 4).tolist()).encode()
    rows = args.max_body_bytes // (len(row) + 1) + 2
    oversize = b'{"inputs": {"a": [[' + b"],[".join([row] * rows) + b"]]}}"
    assert len(oversize) > args.max_body_bytes and n
    return {"valid": valid, "invalid": invalid, "oversize": oversize}


def bomb(n: int = 20000, chunk: int = 2000) -> bytes:
    """A NetCDF-4 body of about 3 MB holding ``a``: ``n x n`` float64 gzip-compressed zeros (3.2 GB decoded)."""
    import h5py
    import numpy as np

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for dim in ("x", "y"):
            f.create_dataset(dim, shape=(n,), dtype="f4")
            f[dim].make_scale(dim)
        big = f.create_dataset("a", shape=(n, n), dtype="f8", chunks=(chunk, chunk), compression="gzip")
        big.dims[0].attach_scale(f["x"])
        big.dims[1].attach_scale(f["y"])
        raw = zlib.compress(np.zeros((chunk, chunk)).tobytes(), 9)
        for i in range(0, n, chunk):
            for j in range(0, n, chunk):
                big.id.write_direct_chunk((i, j), raw)
    return buf.getvalue()


def largest_accepted_json(args) -> tuple[bytes, int]:
    """The largest one-input JSON body the limits accept: ``(n, res, res)`` samples just under ``max_body_bytes``
    (and ``max_elements``); the model runs on all of them (a request above ``max_batch_size`` runs alone)."""
    import numpy as np

    res = args.resolution
    sample = json.dumps(np.round(np.random.default_rng(2).uniform(3, 12, (res, res)), 3).tolist()).encode()
    n = min((args.max_body_bytes - 32) // (len(sample) + 1), args.max_elements // (res * res))
    return b'{"inputs": {"a": [' + b",".join([sample] * n) + b"]}}", n


# -- clients ------------------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    ms = 1000 * np.asarray(values)
    return {"n": len(values), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


class Checker:
    """Compares an answer with ``Surrogate.predict`` of its own sample (batched answers differ by round-off)."""

    def __init__(self, expected):
        import numpy as np

        self.expected = expected
        self.scale = [float(np.abs(e).max()) for e in expected]

    def matches(self, k: int, payload: dict) -> bool:
        import numpy as np

        try:
            u = np.asarray(payload["outputs"]["u"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            return False
        e = self.expected[k]
        return u.shape == e.shape and bool(np.allclose(u, e, rtol=1e-4, atol=1e-5 * self.scale[k]))


async def idle_latency(url: str, bodies: list[bytes], checker: Checker, requests: int, seconds: float) -> dict:
    import httpx

    latencies, server_side, errors = [], [], 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            k = i % len(bodies)
            t0 = time.perf_counter()
            response = await client.post(PATH, content=bodies[k], headers=JSON_HEADERS)
            elapsed = time.perf_counter() - t0
            payload = response.json() if response.status_code == 200 else {}
            if response.status_code == 200 and checker.matches(k, payload):
                latencies.append(elapsed)
                if isinstance(payload.get("elapsed_ms"), (int, float)):
                    server_side.append(payload["elapsed_ms"] / 1000)
            else:
                errors += 1
    in_server = percentiles(server_side)
    return {**percentiles(latencies), "errors": errors, "server_p50_ms": in_server["p50_ms"], "server_p99_ms": in_server["p99_ms"]}


def retry_after(response) -> float:
    """Seconds a 429 asks the client to wait (its ``Retry-After``; 1 when absent or not a number)."""
    try:
        return max(float(response.headers.get("retry-after", "1")), 0.0)
    except ValueError:
        return 1.0


async def abandon(port: int, body: bytes, partial: bool) -> None:
    """Send a request (all of it, or half its body) and close the connection without reading the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + (body[: len(body) // 2] if partial else body))
    await writer.drain()
    await asyncio.sleep(0.005)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def load(url: str, port: int, bodies: dict, checker: Checker, args, seconds: float, shares: dict, seed: int) -> dict:
    """``args.clients`` clients for ``seconds`` (and at most ``args.max_requests`` requests in all)."""
    import httpx
    import numpy as np

    kinds = list(shares)
    p = np.array([shares[k] for k in kinds], dtype=float)
    p /= p.sum()
    stats = {
        "sent": Counter(), "status": {k: Counter() for k in KINDS}, "transport_errors": Counter(),
        "lost": 0, "mixed": 0, "shed": 0, "latencies": [], "first_problem": None, "invalid_by_body": {},
    }
    sent = [0]
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(index: int) -> None:
            rng = np.random.default_rng([seed, index])
            while time.perf_counter() < deadline and sent[0] < args.max_requests:
                sent[0] += 1
                kind = kinds[int(rng.choice(len(kinds), p=p))]
                stats["sent"][kind] += 1
                try:
                    if kind == "abandoned":
                        k = int(rng.integers(len(bodies["valid"])))
                        await abandon(port, bodies["valid"][k], partial=bool(rng.integers(2)))
                        continue
                    if kind == "valid":
                        k = int(rng.integers(len(bodies["valid"])))
                        body = bodies["valid"][k]
                    elif kind == "invalid":
                        which = int(rng.integers(len(bodies["invalid"])))
                        body = bodies["invalid"][which]
                    else:
                        body = bodies["oversize"]
                    t0 = time.perf_counter()
                    response = await client.post(PATH, content=body, headers=JSON_HEADERS)
                    elapsed = time.perf_counter() - t0
                except httpx.HTTPError as error:
                    stats["transport_errors"][kind] += 1
                    if kind == "valid":
                        stats["lost"] += 1
                        stats["first_problem"] = stats["first_problem"] or f"valid request: {error!r}"
                    continue
                except OSError:  # abandoned connections that the server closed first
                    stats["transport_errors"][kind] += 1
                    continue
                stats["status"][kind][response.status_code] += 1
                if kind == "invalid":
                    stats["invalid_by_body"].setdefault(INVALID[which], Counter())[response.status_code] += 1
                if response.status_code == 429:  # shed by admission control: back off as the server asks
                    stats["shed"] += kind == "valid"
                    await asyncio.sleep(min(retry_after(response), max(deadline - time.perf_counter(), 0.0)))
                    continue
                if kind == "valid":
                    if response.status_code != 200:
                        stats["lost"] += 1
                        stats["first_problem"] = stats["first_problem"] or f"valid request: {response.status_code} {response.text[:200]}"
                    else:  # checked after the phase: parsing answers here would slow the other clients down
                        answered.append((k, response.content, elapsed))

        answered: list[tuple[int, bytes, float]] = []
        await asyncio.gather(*[worker(i) for i in range(args.clients)])
        wall = time.perf_counter() - start
    server_side = []  # what surrogates-serve's answers report (from the handler's start to the encoded answer)
    for k, content, elapsed in answered:
        payload = json.loads(content)
        if checker.matches(k, payload):
            stats["latencies"].append(elapsed)
            if isinstance(payload.get("elapsed_ms"), (int, float)):
                server_side.append(payload["elapsed_ms"] / 1000)
        else:
            stats["mixed"] += 1
            stats["first_problem"] = stats["first_problem"] or "valid request answered with other numbers"
    latency = percentiles(stats.pop("latencies"))
    in_server = percentiles(server_side)
    server_errors = sum(n for counter in stats["status"].values() for status, n in counter.items() if status >= 500)
    return {
        "seconds": wall, "clients": args.clients, "sent": dict(stats["sent"]),
        "status": {k: dict(sorted(v.items())) for k, v in stats["status"].items() if v},
        "transport_errors": dict(stats["transport_errors"]), "server_errors_5xx": server_errors,
        "valid_ok": latency["n"], "throughput_rps": latency["n"] / wall if wall > 0 else 0.0,
        "valid_sent": stats["sent"].get("valid", 0), "shed": stats["shed"],
        "shed_share": stats["shed"] / max(stats["sent"].get("valid", 0), 1),
        "p50_ms": latency["p50_ms"], "p90_ms": latency.get("p90_ms"), "p99_ms": latency["p99_ms"], "max_ms": latency.get("max_ms"),
        "server_p50_ms": in_server["p50_ms"], "server_p99_ms": in_server["p99_ms"],
        "lost": stats["lost"], "mixed": stats["mixed"], "first_problem": stats["first_problem"],
        "invalid_by_body": {label: dict(sorted(c.items())) for label, c in stats["invalid_by_body"].items()},
    }


def hostile_bodies_rss(server: ServerProcess, sampler: RssSampler, bodies: dict, args) -> list[dict]:
    """Peak resident memory of surrogates-serve while it answers each hostile body alone."""
    import httpx

    big, n = largest_accepted_json(args)
    cases = [
        ("NetCDF decompression bomb (3.2 GB decoded)", bomb(), {"content-type": "application/x-netcdf"}),
        ("oversize JSON body (> max_body_bytes)", bodies["oversize"], JSON_HEADERS),
        (f"largest accepted JSON body ({n} samples of {args.resolution}x{args.resolution})", big, JSON_HEADERS),
    ]
    rows = []
    for label, body, headers in cases:
        time.sleep(1.0)
        before = sampler.reset()
        t0 = time.perf_counter()
        try:
            response = httpx.post(f"{server.url}{PATH}", content=body, headers=headers, timeout=300)
            status = response.status_code
        except httpx.HTTPError as error:
            status = f"closed ({type(error).__name__})"
        elapsed = time.perf_counter() - t0
        time.sleep(0.2)
        rows.append({"body": label, "bytes": len(body), "status": status, "seconds": elapsed,
                     "rss_before_mib": before / 2**20, "peak_rss_mib": sampler.peak / 2**20})
        print(f"  {label}: {len(body) / 2**20:.1f} MiB, {status}, {elapsed:.2f} s, RSS {before / 2**20:.0f} -> peak "
              f"{sampler.peak / 2**20:.0f} MiB", flush=True)
    return rows


# -- one server, all phases -----------------------------------------------------------------------------
def measure(name: str, server: ServerProcess, bodies: dict, checker: Checker, args, hostile: bool) -> dict:
    import httpx

    server.wait_ready()
    sampler = RssSampler(server.process.pid).start()
    try:
        asyncio.run(idle_latency(server.url, bodies["valid"], checker, 20, 60))  # warm-up
        time.sleep(1.0)
        idle_rss = sampler.reset()
        idle = asyncio.run(idle_latency(server.url, bodies["valid"], checker, args.idle_requests, 30))
        print(f"{name}: idle RSS {idle_rss / 2**20:.0f} MiB; idle p50 {idle['p50_ms']:.1f} ms, p99 {idle['p99_ms']:.1f} ms", flush=True)
        clean = asyncio.run(load(server.url, server.port, bodies, checker, args, args.clean_duration, {"valid": 1.0}, args.seed))
        print(f"{name}: clean c={args.clients}: {clean['throughput_rps']:.1f} req/s, shed {clean['shed']}, "
              f"p50 {clean['p50_ms']:.1f} ms, "
              f"p99 {clean['p99_ms']:.1f} ms, 5xx {clean['server_errors_5xx']}, lost {clean['lost']}", flush=True)
        sampler.reset()
        shares = {"valid": args.valid_share, "invalid": args.invalid_share, "oversize": args.oversize_share,
                  "abandoned": args.abandoned_share}
        soak = asyncio.run(load(server.url, server.port, bodies, checker, args, args.duration, shares, args.seed + 1))
        soak["peak_rss_mib"] = sampler.peak / 2**20
        print(f"{name}: soak {soak['seconds']:.0f} s: sent {soak['sent']}, statuses {soak['status']}, transport errors "
              f"{soak['transport_errors']}, {soak['throughput_rps']:.1f} valid req/s, shed {soak['shed']}, p50 {soak['p50_ms']:.1f} ms, p99 "
              f"{soak['p99_ms']:.1f} ms, 5xx {soak['server_errors_5xx']}, lost {soak['lost']}, mixed {soak['mixed']}, "
              f"peak RSS {soak['peak_rss_mib']:.0f} MiB" + (f"; first problem: {soak['first_problem']}" if soak["first_problem"] else ""),
              flush=True)
        time.sleep(1.0)
        after = asyncio.run(idle_latency(server.url, bodies["valid"], checker, 10, 30))
        health = httpx.get(f"{server.url}/health", timeout=10).status_code
        result = {
            "idle_rss_mib": idle_rss / 2**20, "idle": idle, "clean": clean, "soak": soak,
            "after": {"alive": server.alive(), "health": health, "errors": after["errors"]},
        }
        if hostile:
            result["hostile_bodies"] = hostile_bodies_rss(server, sampler, bodies, args)
            result["alive_after_hostile_bodies"] = server.alive()
        return result
    finally:
        sampler.stop()


def markdown(results: dict, args: argparse.Namespace) -> str:
    def f(x, digits=1):
        return "-" if x is None else f"{x:.{digits}f}"

    lines = [
        "## Soak: `surrogates-serve` against LitServe",
        "",
        f"Written by `tools/soak_serve.py`: one checkpoint ({args.model_description}), each server in its own "
        f"subprocess on a loopback port, one after the other, driven by {args.clients} httpx async clients in the "
        f"tool's process. Batching on both: `max_batch_size={args.max_batch_size}`, `max_wait_ms={args.max_wait_ms:g}` "
        f"(LitServe: `batch_timeout={args.max_wait_ms / 1000:g}`); torch threads {args.torch_threads or 'default'} in "
        f"both; limits `max_body_bytes={args.max_body_bytes}`, `max_elements={args.max_elements}`; admission limit of "
        f"`surrogates-serve` `max_pending_requests={args.max_pending_requests or args.max_batch_size}`"
        + (f", `max_queue_ms={args.max_queue_ms:g}`" if args.max_queue_ms else "")
        + " (LitServe has none): a 429 is a shed request, not a lost one, and its client waits `Retry-After` before its next request; "
        "latencies are those of answered (200) valid requests, req/s counts them. Idle: "
        f"{args.idle_requests} one-step requests from one client. Clean: only valid requests for "
        f"{args.clean_duration:g} s. Soak: {args.duration:g} s, requests drawn valid {args.valid_share:g} / invalid "
        f"{args.invalid_share:g} / oversize {args.oversize_share:g} / abandoned {args.abandoned_share:g}. Machine: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), load average before the run "
        f"{args.load_before}, shared with other jobs: timings are noisy. "
        + (f"CPUs: the servers (every process of theirs) on {args.server_cpus}, the clients on {args.client_cpus}, as "
           "if the clients ran on other machines; idle and loaded phases alike."
           if args.server_cpus != "all" else "Servers and clients share every CPU."),
        "",
        "| server | idle RSS MiB | idle p50 / p99 ms | clean req/s | clean shed | clean p50 / p99 ms | soak valid req/s "
        "| soak shed | soak p50 / p99 ms | p99 soak / idle | 5xx | lost | mixed | peak RSS MiB (soak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | could not run: {r['error']} |" + " |" * 12)
            continue
        idle, clean, soak = r["idle"], r["clean"], r["soak"]
        ratio = soak["p99_ms"] / idle["p99_ms"] if soak["p99_ms"] and idle["p99_ms"] else None
        lines.append(
            f"| {name} | {r['idle_rss_mib']:.0f} | {f(idle['p50_ms'])} / {f(idle['p99_ms'])} | {clean['throughput_rps']:.1f} "
            f"| {100 * clean['shed_share']:.0f}% | {f(clean['p50_ms'])} / {f(clean['p99_ms'])} | {soak['throughput_rps']:.1f} "
            f"| {100 * soak['shed_share']:.0f}% | {f(soak['p50_ms'])} / "
            f"{f(soak['p99_ms'])} | {f(ratio)}x | {clean['server_errors_5xx'] + soak['server_errors_5xx']} | "
            f"{clean['lost'] + soak['lost']} | {clean['mixed'] + soak['mixed']} | {soak['peak_rss_mib']:.0f} |"
        )
    lines += ["", "Soak requests per kind and the answers they got (status: count; transport: the connection closed "
              "before an answer):", ""]
    for name, r in results.items():
        if "error" in r:
            continue
        soak = r["soak"]
        parts = []
        for kind in KINDS:
            statuses = ", ".join(f"{s}: {n}" for s, n in soak["status"].get(kind, {}).items())
            transport = soak["transport_errors"].get(kind)
            parts.append(f"{kind} {soak['sent'].get(kind, 0)} ({statuses or 'no answer read'}"
                         + (f"; transport: {transport}" if transport else "") + ")")
        lines.append(f"- {name}: " + "; ".join(parts) + f"; alive and healthy afterwards: "
                     f"{'yes' if r['after']['alive'] and r['after']['health'] == 200 and not r['after']['errors'] else 'no'}.")
        by_body = soak.get("invalid_by_body", {})
        lines.append("  Invalid bodies: " + "; ".join(
            f"{label} ({', '.join(f'{s}: {n}' for s, n in by_body[label].items())})" for label in INVALID if label in by_body) + ".")
    ours = results.get("surrogates-serve", {})
    if "hostile_bodies" in ours:
        lines += ["", "`surrogates-serve`, one hostile body at a time (peak resident memory of the server process):", "",
                  "| body | size MiB | answer | seconds | RSS before MiB | peak RSS MiB |", "|---|---|---|---|---|---|"]
        for row in ours["hostile_bodies"]:
            lines.append(f"| {row['body']} | {row['bytes'] / 2**20:.1f} | {row['status']} | {row['seconds']:.2f} | "
                         f"{row['rss_before_mib']:.0f} | {row['peak_rss_mib']:.0f} |")
    lines += ["", "Goals:", ""]
    peer = results.get("litserve", {})
    if "soak" in ours:
        idle_rss = ours["idle_rss_mib"]
        body_mib, decoded_mib = args.max_body_bytes / 2**20, 8 * args.max_elements / 2**20  # max_decoded_bytes: null
        peaks = [ours["soak"]["peak_rss_mib"]] + [row["peak_rss_mib"] for row in ours.get("hostile_bodies", [])]
        bound = 2 * idle_rss + body_mib + decoded_mib
        lines.append(f"- peak server RSS under any body <= 2 x idle RSS + the byte limits (`max_body_bytes` {body_mib:.0f} "
                     f"MiB + `max_decoded_bytes` {decoded_mib:.0f} MiB) = {bound:.0f} MiB: highest peak {max(peaks):.0f} MiB "
                     f"-> {'met' if max(peaks) <= bound else 'not met'} (2 x idle + `max_body_bytes` alone: "
                     f"{2 * idle_rss + body_mib:.0f} MiB).")
        errors = ours["clean"]["server_errors_5xx"] + ours["soak"]["server_errors_5xx"]
        lost = ours["clean"]["lost"] + ours["soak"]["lost"] + ours["clean"]["mixed"] + ours["soak"]["mixed"]
        lines.append(f"- 0 5xx and 0 lost or mixed samples: {errors} 5xx, {lost} lost or mixed -> "
                     f"{'met' if errors == 0 and lost == 0 else 'not met'}.")
        ratio = ours["soak"]["p99_ms"] / ours["idle"]["p99_ms"]
        lines.append(f"- p99 of admitted one-step requests under the soak <= 3 x idle p99: {ours['soak']['p99_ms']:.0f} ms vs "
                     f"{ours['idle']['p99_ms']:.1f} ms idle, {ratio:.1f}x -> {'met' if ratio <= 3 else 'not met'}; "
                     f"{ours['soak']['shed']} of {ours['soak']['valid_sent']} valid requests "
                     f"({100 * ours['soak']['shed_share']:.0f}%) were shed with 429. Inside the server (the answers' "
                     f"`elapsed_ms`, from the handler's start to the encoded answer): p99 {f(ours['soak']['server_p99_ms'], 0)} "
                     f"ms under the soak vs {f(ours['idle']['server_p99_ms'])} ms idle.")
        if "soak" in peer:
            for phase in ("clean", "soak"):
                a, b = ours[phase]["throughput_rps"], peer[phase]["throughput_rps"]
                lines.append(f"- throughput of successful valid requests at concurrency {args.clients} ({phase}) >= "
                             f"LitServe's: {a:.1f} vs {b:.1f} "
                             f"req/s, {a / max(b, 1e-9):.2f}x -> {'met' if a >= b else 'not met'}.")
        else:
            lines.append(f"- throughput against LitServe: not measured ({peer.get('error', 'LitServe not run')}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of soak per server")
    parser.add_argument("--clean-duration", type=float, default=15.0, help="seconds of valid-only load per server")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="most requests per phase, all clients together")
    parser.add_argument("--idle-requests", type=int, default=100)
    parser.add_argument("--valid-share", type=float, default=0.75)
    parser.add_argument("--invalid-share", type=float, default=0.13)
    parser.add_argument("--oversize-share", type=float, default=0.02)
    parser.add_argument("--abandoned-share", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="serve this checkpoint (default: an untrained 64x64 FNO)")
    parser.add_argument("--resolution", type=int, default=64, help="grid of the requests")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-body-bytes", type=int, default=16 << 20)
    parser.add_argument("--max-elements", type=int, default=1 << 24)
    parser.add_argument("--torch-threads", type=int, default=1, help="server torch threads (0: torch default)")
    parser.add_argument("--max-pending-requests", type=int, help="surrogates-serve's admission limit (default: the "
                        "service's, the max batch size)")
    parser.add_argument("--max-queue-ms", type=float, default=10.0, help="surrogates-serve's admission by time "
                        "(max_queue_ms; about one request's model time for the default checkpoint; 0: none)")
    parser.add_argument("--pin", default="auto", help="CPU sets of the servers and of the clients: auto (the servers "
                        "the first half of the CPUs, the clients the rest, as if they ran on other machines), "
                        "'SERVER:CLIENTS' (e.g. 0:1 or 0-3:4-7), or none (all share every CPU)")
    parser.add_argument("--no-litserve", action="store_true", help="measure surrogates-serve only")
    parser.add_argument("--no-hostile-bodies", action="store_true", help="skip the single hostile bodies")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write --out")
    # internal: run the LitServe peer in this process
    parser.add_argument("--peer", choices=["litserve"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer == "litserve":
        run_litserve_peer(args)
        return

    import torch

    from surrogates import Surrogate
    from tools.load_test_serve import free_port, sample_inputs, save_checkpoint

    args.load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    server_cpus, client_cpus = split_cpus(args.pin, os.sched_getaffinity(0))
    args.server_cpus = ",".join(map(str, sorted(server_cpus))) if server_cpus else "all"
    args.client_cpus = ",".join(map(str, sorted(client_cpus))) if client_cpus else "all"
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp) / "models"
        models_dir.mkdir()
        checkpoint = models_dir / f"{MODEL}.ckpt"
        if args.checkpoint:
            shutil.copy(args.checkpoint, checkpoint)
            args.model_description = f"`{args.checkpoint.name}`, {args.resolution}x{args.resolution} requests"
        else:
            save_checkpoint(checkpoint, args.resolution)
            args.model_description = (f"untrained FNO of the `darcy_fno` architecture, {args.resolution}x{args.resolution} "
                                      "Darcy inputs, as in the serving load test")
        inputs = sample_inputs(16, args.resolution)
        surrogate = Surrogate.load(checkpoint)
        checker = Checker([surrogate.predict(a) for a in inputs])
        bodies = make_bodies(args, inputs)
        args.max_requests = max(1, args.max_requests)

        servers = {
            "surrogates-serve": lambda port: [
                sys.executable, "-m", "surrogates.cli.serve", f"models_dir={models_dir}", f"port={port}",
                "micro_batching=true", f"max_batch_size={args.max_batch_size}", f"max_wait_ms={args.max_wait_ms}",
                f"max_body_bytes={args.max_body_bytes}", f"max_elements={args.max_elements}", "solvers={}",
                "log_level=warning", f"hydra.run.dir={Path(tmp) / 'run'}",
            ] + ([f"torch_threads={args.torch_threads}"] if args.torch_threads else [])
              + ([f"max_pending_requests={args.max_pending_requests}"] if args.max_pending_requests else [])
              + ([f"max_queue_ms={args.max_queue_ms}"] if args.max_queue_ms else []),
        }
        if not args.no_litserve and ls is None:
            results["litserve"] = {"error": "litserve is not installed (`pip install -e '.[soak]'`)"}
        elif not args.no_litserve:
            servers["litserve"] = lambda port: [
                sys.executable, str(Path(__file__).resolve()), "--peer", "litserve", "--port", str(port),
                "--checkpoint", str(checkpoint), "--max-batch-size", str(args.max_batch_size),
                "--max-wait-ms", str(args.max_wait_ms), "--max-elements", str(args.max_elements),
                "--torch-threads", str(args.torch_threads), "--max-body-bytes", str(args.max_body_bytes),
            ]
        for name, command in servers.items():
            port = free_port()
            server = ServerProcess(name, command(port), port, Path(tmp) / f"{name}.log", args.torch_threads, server_cpus)
            try:
                hostile = name == "surrogates-serve" and not args.no_hostile_bodies
                results[name] = measure(name, server, bodies, checker, args, hostile)
            except Exception as error:  # report why a server could not be measured, keep the others
                results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
                print(f"{name}: {results[name]['error']}", flush=True)
            finally:
                server.stop()
    section = markdown(results, args)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) or v is None},
                                         "results": results}, indent=2, default=str))
        print(f"wrote {args.json}")
    if not args.no_write:
        from tools.benchmarks_md import update_section

        update_section(args.out, "soak", section)
        print(f"wrote the soak section of {args.out}")
    ours = results.get("surrogates-serve", {})
    bad = "error" in ours or ours["clean"]["server_errors_5xx"] + ours["soak"]["server_errors_5xx"] > 0 or \
        ours["soak"]["lost"] + ours["soak"]["mixed"] + ours["clean"]["lost"] + ours["clean"]["mixed"] > 0 or \
        not (ours["after"]["alive"] and ours["after"]["health"] == 200)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
