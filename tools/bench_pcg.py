"""Our batched torch PCG against scipy's cg (none, Jacobi, IC(0)) and pyamg's own AMG solver.

2D Poisson and Darcy (random {3, 12} coefficient) 5-point systems on s x s nodes, rtol 1e-8,
``b ~ N(0, I)``. For every size, problem and preconditioner, in ONE process with the two contenders
interleaved (so that machine noise hits both): iterations, seconds per solve (median of
``--repeats``) and the ratio ours / scipy on one right-hand side; then a batch of ``--batch``
right-hand sides solved by one batched call of ours against a loop of scipy solves (throughput ratio
= scipy loop seconds / ours). Written to ``docs/benchmarks.md`` (section ``pcg``).

Usage::

    python tools/bench_pcg.py --sizes 128 256 512 --threads 1

Same preconditioner on both sides: Jacobi and IC(0) use one object, whose ``scipy_operator`` gives
scipy the same ``M^{-1}`` (IC(0) through ``scipy.sparse.linalg.spsolve_triangular``, scipy having no
IC(0) of its own). AMG: ours is ``AMGPreconditioner`` (if installed) in our PCG; scipy's column is
pyamg's own ``smoothed_aggregation_solver(A).solve(b, tol, accel="cg")`` with default settings.
"""

from __future__ import annotations

import os
import sys


def _preparse_threads(argv: list[str]) -> int | None:
    """``--threads`` must limit BLAS/OpenMP pools before numpy and torch are imported."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return None


_THREADS = _preparse_threads(sys.argv[1:]) or 1  # the default of --threads
if _THREADS:  # scipy's dot products go through BLAS: keep it to the same thread count
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_THREADS)

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from benchmarks_md import update_section  # noqa: E402

from surrogates.pdes.darcy import Darcy  # noqa: E402
from surrogates.solvers.finite_differences import diffusion_operator, poisson_operator  # noqa: E402
from surrogates.solvers.pcg import pcg  # noqa: E402
from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner  # noqa: E402
from surrogates.solvers.preconditioners.jacobi import JacobiPreconditioner  # noqa: E402
from surrogates.solvers.sparse import SparseMatrix  # noqa: E402

try:  # written by another engineer; the benchmark runs without it
    from surrogates.solvers.preconditioners.amg import AMGPreconditioner
except ImportError:  # pragma: no cover
    AMGPreconditioner = None
try:
    import pyamg
except ImportError:  # pragma: no cover
    pyamg = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="nodes per direction, boundary included")
    p.add_argument("--problems", nargs="+", default=["poisson", "darcy"], choices=["poisson", "darcy"])
    p.add_argument("--preconditioners", nargs="+", default=["none", "jacobi", "ic0", "amg"],
                   choices=["none", "jacobi", "ic0", "amg"])
    p.add_argument("--repeats", type=int, default=3, help="timed single solves per contender (median)")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds after which repeats stop, and the reference loop is cut and scaled (at least one run)")
    p.add_argument("--batch", type=int, default=32, help="right-hand sides of the batch comparison (0: skip)")
    p.add_argument("--loop-sample", type=int, default=None,
                   help="time scipy's loop on at most this many right-hand sides and scale to --batch")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (scipy's sparse kernels use one)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads of our batched call (pcg workers=; CPU only); default: os.cpu_count()")
    p.add_argument("--chunk-size", type=int, default=None, help="right-hand sides per worker chunk (pcg chunk_size=)")
    p.add_argument("--device", default="cpu", help="device of our PCG (scipy always runs on the CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    return p.parse_args(argv)


# -- problems ----------------------------------------------------------------------------------


def make_matrix(problem: str, s: int, rng: np.random.Generator):
    """The 5-point operator on ``s x s`` nodes: Poisson, or Darcy with a random ``{3, 12}`` coefficient."""
    if problem == "poisson":
        return poisson_operator(s)
    a = Darcy(resolution=s).sample_inputs(1, rng)["a"][0]
    return diffusion_operator(a)


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Contender:
    """A way to solve: ``single(b) -> iterations`` and ``batch(B) -> iterations per system``."""

    single: Callable[[np.ndarray], int]
    batch: Callable[[np.ndarray], list[int]]
    setup_seconds: float = 0.0


def scipy_contender(A, M) -> Contender:
    def single(b: np.ndarray) -> int:
        count = [0]

        def callback(_xk: np.ndarray) -> None:
            count[0] += 1

        _, info = spla.cg(A, b, rtol=RTOL, M=M, callback=callback)
        if info != 0:
            raise RuntimeError(f"scipy cg did not converge (info={info})")
        return count[0]

    return Contender(single, lambda bs: [single(b) for b in bs])


def pyamg_contender(A) -> Contender:
    start = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(A)
    setup = time.perf_counter() - start

    def single(b: np.ndarray) -> int:
        residuals: list[float] = []
        ml.solve(b, tol=RTOL, accel="cg", residuals=residuals)
        return len(residuals) - 1

    return Contender(single, lambda bs: [single(b) for b in bs], setup)


def ours_contender(A, preconditioner, device: str) -> Contender:
    S = SparseMatrix.from_scipy(A).to(device)

    def solve(b: np.ndarray) -> list[int]:
        rhs = torch.from_numpy(b).to(device)
        workers = WORKERS if b.ndim == 2 else 1
        res = pcg(S, rhs, preconditioner, rtol=RTOL, record_history=False, workers=workers, chunk_size=CHUNK_SIZE)
        if not bool(res.converged.all()):
            raise RuntimeError("our PCG did not converge")
        if device != "cpu":
            torch.cuda.synchronize()
        return res.iterations.tolist()

    return Contender(lambda b: solve(b)[0], solve)


def build_pair(kind: str, A, device: str) -> tuple[Contender, Contender] | None:
    """(ours, reference) for one preconditioner; None when it is not available."""
    if kind == "none":
        return ours_contender(A, None, device), scipy_contender(A, None)
    if kind in ("jacobi", "ic0"):
        start = time.perf_counter()
        P = JacobiPreconditioner(A) if kind == "jacobi" else IC0Preconditioner(A)
        setup = time.perf_counter() - start
        ref = scipy_contender(A, P.scipy_operator())
        ours = ours_contender(A, P, device)
        ours.setup_seconds = ref.setup_seconds = setup  # one factor shared by both
        return ours, ref
    if kind == "amg":
        if AMGPreconditioner is None or pyamg is None:
            return None
        start = time.perf_counter()
        P = AMGPreconditioner(A, device=device)
        setup = time.perf_counter() - start
        ours = ours_contender(A, P, device)
        ours.setup_seconds = setup
        return ours, pyamg_contender(A)
    raise ValueError(kind)


# -- timing ------------------------------------------------------------------------------------


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = f()
    return time.perf_counter() - start, out


def compare_single(ours: Contender, ref: Contender, b: np.ndarray, repeats: int, budget: float) -> dict[str, Any]:
    """Interleaved single solves (alternating who goes first); medians of the seconds."""
    ours.single(b)  # warm-up: first-call costs (allocations, caches) excluded
    t_ours, t_ref, it_ours, it_ref = [], [], 0, 0
    spent = 0.0
    for k in range(repeats):
        pair = [(ours, t_ours), (ref, t_ref)]
        for contender, times in pair if k % 2 == 0 else pair[::-1]:
            seconds, iterations = timed(lambda: contender.single(b))
            times.append(seconds)
            spent += seconds
            if contender is ours:
                it_ours = iterations
            else:
                it_ref = iterations
        if spent > budget:
            break
    return {"it_ours": it_ours, "it_ref": it_ref, "t_ours": statistics.median(t_ours), "t_ref": statistics.median(t_ref),
            "runs": len(t_ours)}


def compare_batch(ours: Contender, ref: Contender, bs: np.ndarray, loop_sample: int | None, budget: float) -> dict[str, Any]:
    """One batched call of ours against scipy's loop.

    The loop runs right-hand side by right-hand side and stops early once it has used ``budget``
    seconds (or after ``loop_sample`` of them); its time is then scaled to the whole batch. The
    systems differ only in ``b``, so their solve times are alike (IC(0) on scipy at 512^2 would
    otherwise take half an hour for 32 solves).
    """
    limit = bs.shape[0] if loop_sample is None else min(loop_sample, bs.shape[0])
    spent, done = 0.0, 0
    while done < limit and (done == 0 or spent < budget):
        spent += timed(lambda: ref.single(bs[done]))[0]
        done += 1
    # the same loop spread over WORKERS threads (what a user could do with scipy alone)
    threaded = timed(lambda: threaded_loop(ref, bs[: max(done, min(WORKERS, limit))]))
    t_ours, iterations = timed(lambda: ours.batch(bs))
    return {"t_batch_ours": t_ours, "t_batch_ref": spent * bs.shape[0] / done, "loop_done": done,
            "t_batch_threads": threaded[0] * bs.shape[0] / max(done, min(WORKERS, limit)),
            "batch_it_max": max(iterations)}


def threaded_loop(ref: Contender, bs: np.ndarray) -> None:
    """The reference's single solves over ``WORKERS`` threads (scipy's kernels release the GIL)."""
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(ref.single, bs))


# -- report ------------------------------------------------------------------------------------


def fmt_seconds(t: float) -> str:
    return f"{t:.3g}" if t >= 0.01 else f"{t:.2e}"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, argv: list[str]) -> str:
    batch = args.batch
    lines = [
        "## Batched PCG against scipy's cg and pyamg",
        "",
        f"5-point systems on s x s nodes ((s-2)^2 unknowns), `b ~ N(0, I)`, rtol {args.rtol:g} "
        "(`||b - A x|| <= rtol ||b||`). Iterations: ours / reference. Seconds: one solve, median of "
        f"up to {args.repeats} interleaved runs (setup excluded, shown apart). Ratio = ours / reference "
        f"(< 1: ours faster). Batch: {batch} right-hand sides in one call of ours against a loop of "
        "reference solves; throughput = loop seconds / ours (> 1: ours faster)."
        + f" A loop that exceeds {args.budget:g} s is stopped and its time scaled to {batch} right-hand sides "
        "(marked 'k/B timed').",
        "",
        "Reference: `scipy.sparse.linalg.cg` with the same `M^{-1}` (Jacobi; IC(0) = our factor through two "
        "`spsolve_triangular` calls); for AMG, pyamg's own `smoothed_aggregation_solver(A).solve(b, tol, "
        "accel='cg')` (default pyamg hierarchy, so its iteration count differs from ours).",
        "",
        f"Batch columns: ours is one `pcg(..., workers={WORKERS}"
        + (f", chunk_size={CHUNK_SIZE}" if CHUNK_SIZE else "") + ")` call (the batch split into "
        f"chunks solved in {WORKERS} threads); 'loop' is the reference solving one right-hand side after "
        f"the other, 'threaded loop' the same solves spread over {WORKERS} threads; throughput columns = "
        "loop seconds / ours.",
        "",
        f"| problem | s | unknowns | M | iterations | setup s | ours s | reference s | ratio | batch {batch}: ours s | loop s | throughput | threaded loop s | throughput vs threaded |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        batch_cells = (
            f"{fmt_seconds(r['t_batch_ours'])} | {fmt_seconds(r['t_batch_ref'])}"
            + ("" if r["loop_done"] == batch else f" ({r['loop_done']}/{batch} timed)")
            + f" | {r['t_batch_ref'] / r['t_batch_ours']:.2f}x"
            + f" | {fmt_seconds(r['t_batch_threads'])} | {r['t_batch_threads'] / r['t_batch_ours']:.2f}x"
            if "t_batch_ours" in r else "- | - | - | - | -"
        )
        lines.append(
            f"| {r['problem']} | {r['s']} | {r['n']} | {r['kind']} | {r['it_ours']} / {r['it_ref']} | "
            f"{fmt_seconds(r['setup']) if r['setup'] else '-'} | {fmt_seconds(r['t_ours'])} | {fmt_seconds(r['t_ref'])} | "
            f"{r['t_ours'] / r['t_ref']:.2f} | {batch_cells} |"
        )
    device = args.device if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name()})"
    lines += [
        "",
        f"Generated {datetime.date.today().isoformat()} on {platform.machine()} ({platform.processor() or 'unknown CPU'}, "
        f"{os.cpu_count()} cores), ours on {device}, {args.threads} thread(s); torch {torch.__version__}, "
        f"scipy {scipy.__version__}" + (f", pyamg {pyamg.__version__}" if pyamg is not None else "") + ".",
        "",
        "```",
        "python tools/bench_pcg.py " + shlex.join(argv),
        "```",
    ]
    return "\n".join(lines)


RTOL = 1e-8
WORKERS = 1
CHUNK_SIZE: int | None = None


def main(argv: list[str] | None = None) -> None:
    global RTOL, WORKERS, CHUNK_SIZE
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    RTOL = args.rtol
    WORKERS = args.workers or os.cpu_count() or 1
    CHUNK_SIZE = args.chunk_size
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for s in args.sizes:
        for problem in args.problems:
            rng = np.random.default_rng(args.seed)
            A = make_matrix(problem, s, rng)
            n = A.shape[0]
            b = rng.standard_normal(n)
            bs = rng.standard_normal((args.batch, n)) if args.batch else None
            for kind in args.preconditioners:
                pair = build_pair(kind, A, args.device)
                if pair is None:
                    print(f"skip {kind}: not available", flush=True)
                    continue
                ours, ref = pair
                row = {"problem": problem, "s": s, "n": n, "kind": kind, "setup": ours.setup_seconds}
                row.update(compare_single(ours, ref, b, args.repeats, args.budget))
                if bs is not None:
                    row.update(compare_batch(ours, ref, bs, args.loop_sample, args.budget))
                rows.append(row)
                print(
                    f"{problem:8s} s={s:4d} {kind:6s} it {row['it_ours']}/{row['it_ref']}  "
                    f"t {row['t_ours']:.4f}/{row['t_ref']:.4f} s  ratio {row['t_ours'] / row['t_ref']:.2f}"
                    + (f"  batch {row['t_batch_ours']:.3f}/{row['t_batch_ref']:.3f}/{row['t_batch_threads']:.3f} s  "
                       f"throughput {row['t_batch_ref'] / row['t_batch_ours']:.2f}x "
                       f"(vs threaded {row['t_batch_threads'] / row['t_batch_ours']:.2f}x)" if bs is not None else ""),
                    flush=True,
                )
    text = markdown(rows, args, argv)
    print(text)
    if not args.no_write:
        update_section(args.out, "pcg", text)
        print(f"wrote section 'pcg' of {args.out}")


if __name__ == "__main__":
    main()
