"""DCDM against PCG with none / IC(0) / AMG / the learned GNN preconditioner on Darcy matrices across sizes.

Both learned solvers are trained at ``--resolution`` (64: 62^2 unknowns) on Darcy matrices (``{3, 12}``
coefficients) and evaluated, without retraining, on held-out Darcy matrices at every
``--eval-resolutions`` (64, 128, 256), right-hand sides ``b ~ N(0, I)``, to ``||b - A x|| <= rtol ||b||``
(rtol 1e-6). Every method runs in this one process through the package's own code:
``surrogates.solvers.pcg.pcg`` with ``IdentityPreconditioner``, ``IC0Preconditioner``,
``AMGPreconditioner`` and ``LearnedPreconditioner`` (GNN trained by ``train_preconditioner``), and
``surrogates.solvers.dcdm.dcdm`` with the network of ``tools/train_dcdm.py``. Training is repeated for
each ``--seeds`` (learned columns: mean over seeds, spread in brackets); ``--dcdm-models`` takes the
DCDM networks from ``tools/train_dcdm.py`` runs instead (one per seed, e.g. trained side by side), after
checking that their training records match this run's options. Written to
``docs/benchmarks.md`` (section ``dcdm``).

Usage::

    python tools/bench_dcdm.py --seeds 0 1 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from benchmarks_md import update_section  # noqa: E402
from train_dcdm import add_training_arguments, train  # noqa: E402
from train_learned_preconditioner import darcy_matrices  # noqa: E402

from surrogates.solvers.dcdm import DCDMNet, dcdm, load, load_metadata  # noqa: E402
from surrogates.solvers.pcg import pcg  # noqa: E402
from surrogates.solvers.preconditioners import AMGPreconditioner, IC0Preconditioner, IdentityPreconditioner  # noqa: E402
from surrogates.solvers.preconditioners.learned import LearnedPreconditioner, train_preconditioner  # noqa: E402

SECTION = "dcdm"
CLASSICAL = {"none": lambda A: IdentityPreconditioner(), "IC(0)": IC0Preconditioner, "AMG": AMGPreconditioner}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(p)
    p.add_argument("--eval-resolutions", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--n-test", type=int, default=2, help="held-out matrices per resolution")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds of the learned solvers")
    p.add_argument("--gnn-epochs", type=int, default=10)
    p.add_argument("--gnn-n-train", type=int, default=8)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--maxiter", type=int, default=2000)
    p.add_argument("--dcdm-models", type=Path, nargs="+", default=None,
                   help="networks written by tools/train_dcdm.py with the same training options, one per --seeds "
                        "entry (trained in parallel processes), instead of training them here")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true")
    return p.parse_args(argv)


def trained(args: argparse.Namespace, seed: int, path: Path) -> tuple[DCDMNet, dict]:
    """A network of ``tools/train_dcdm.py`` and its record, checked against this run's training options and seed."""
    net, meta = load(path), load_metadata(path)
    expected = {"resolution": args.resolution, "extra_resolutions": list(args.extra_resolutions), "n_train": args.n_train,
                "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
                "ritz_steps": args.ritz_steps, "weighting": args.weighting, "seed": seed,
                "validation_resolutions": list(args.validation_resolutions), "n_val": args.n_val}
    architecture = {"width": args.width, "blocks": args.blocks, "coarsest": args.coarsest, "coarse_couplings": args.coarse_couplings,
                    "coarse_gain": args.coarse_gain, "structure": args.structure, "init": args.init, "scaling": args.scaling}
    found = {**{k: meta.get(k) for k in expected}, **{k: net.init_kwargs.get(k) for k in architecture}}
    # training records from before an option ran with what it is now when off (the network's own arguments,
    # init and scaling included, are always complete: its constructor fills them in)
    found["weighting"] = meta.get("weighting", "paper")
    found["validation_resolutions"] = meta.get("validation_resolutions", [])
    found["n_val"] = meta.get("n_val", args.n_val) if found["validation_resolutions"] else args.n_val
    if found != {**expected, **architecture}:
        raise SystemExit(f"{path} was trained with {found}, this run needs {expected | architecture}")
    return net, meta


def timed_solve(solve: Callable[[], object]) -> tuple[int, float]:
    """Iterations and seconds of one solve (which must converge)."""
    start = time.perf_counter()
    result = solve()
    seconds = time.perf_counter() - start
    if not bool(result.converged.all()):
        raise RuntimeError("a solve did not converge within maxiter")
    return int(result.iterations.max()), seconds


def evaluate(args, nets: list, gnns: list) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """``{s: {method: [(iterations, seconds), ...]}}``; learned methods once per seed and matrix."""
    out: dict[int, dict[str, list[tuple[int, float]]]] = {}
    for s in args.eval_resolutions:
        rows: dict[str, list[tuple[int, float]]] = {}
        for k, A in enumerate(darcy_matrices(s, args.n_test, 1000 + s)):  # seeds never used for training
            b = torch.from_numpy(np.random.default_rng(k).standard_normal((1, A.shape[0])))
            for name, build in CLASSICAL.items():
                M = build(A)
                rows.setdefault(name, []).append(timed_solve(lambda: pcg(A, b, M, rtol=args.rtol, maxiter=args.maxiter)))
            for gnn in gnns:
                M = LearnedPreconditioner(gnn, A)
                rows.setdefault("GNN", []).append(timed_solve(lambda: pcg(A, b, M, rtol=args.rtol, maxiter=args.maxiter)))
            for net in nets:
                rows.setdefault("DCDM", []).append(timed_solve(lambda: dcdm(A, b, net, rtol=args.rtol, maxiter=args.maxiter)))
            print(s, k, {name: v[-1] for name, v in rows.items()}, flush=True)
        out[s] = rows
    return out


def markdown(args, results, metas: list[dict], gnn_seconds: list[float], argv: list[str]) -> str:
    names = ["none", "IC(0)", "AMG", "GNN", "DCDM"]
    mean_it = {s: {n: float(np.mean([r[0] for r in rows[n]])) for n in names} for s, rows in results.items()}
    mean_t = {s: {n: float(np.mean([r[1] for r in rows[n]])) for n in names} for s, rows in results.items()}
    sizes = list(results)
    lines = [
        "## DCDM against PCG (none / IC(0) / AMG / learned GNN) on Darcy matrices",
        "",
        f"Deep conjugate direction method (Kaneda et al., ICML 2023; `surrogates.solvers.dcdm`, keep = 2 previous "
        f"directions) with a `DCDMNet(width={args.width}, blocks={args.blocks}, structure=\"{args.structure}\", coarsest={args.coarsest}, "
        f"coarse_couplings=\"{args.coarse_couplings}\", coarse_gain={args.coarse_gain:g}, init=\"{args.init}\", "
        f"scaling=\"{args.scaling}\")` trained at s = {args.resolution} "
        f"on {args.n_train} Darcy matrices"
        + "".join(f" and at s = {s} on {args.n_train}" for s in args.extra_resolutions)
        + f", {args.epochs * args.steps_per_epoch} steps of {args.batch_size} Ritz-vector "
        + ("" if args.weighting == "paper" else f"(weighting \"{args.weighting}\") ")
        + f"training vectors ({args.ritz_steps} Lanczos steps per matrix), "
        f"{np.mean([m['seconds'] for m in metas]):.0f} s per seed; loss "
        f"{np.mean([m['loss_first'] for m in metas]):.3g} -> {np.mean([m['loss_last'] for m in metas]):.3g}. "
        + (f"Kept per seed: the epoch (0 = the untrained start) with the fewest DCDM iterations on {args.n_val} held-out "
           f"validation matrices at s = {', '.join(map(str, args.validation_resolutions))} (seeds 2000 + s): epochs "
           + ", ".join(str(m["selected_epoch"]) for m in metas) + "; validation counts per epoch: "
           + "; ".join("[" + ", ".join(f"{v:.4g}" for v in m["validation_history"]) + "]" for m in metas) + ". "
           if args.validation_resolutions else "")
        + f"GNN preconditioner (`PreconditionerGNN`, Li et al.) trained at the same s on {args.gnn_n_train} matrices, "
        f"{args.gnn_epochs} epochs, {np.mean(gnn_seconds):.0f} s per seed. Seeds {args.seeds}: learned columns are "
        "means over seeds and test matrices.",
        f"Held out: {args.n_test} Darcy matrices per size, `b ~ N(0, I)`, to `||b - A x|| <= {args.rtol:g} ||b||`; "
        "seconds are the solve alone (set-up excluded), mean per right-hand side.",
        "",
        "| s | unknowns | " + " | ".join(f"{n} it" for n in names) + " | DCDM / IC(0) it | "
        + " | ".join(f"{n} s" for n in names) + " | DCDM / IC(0) s |",
        "|---|---|" + "---|" * (2 * len(names) + 2),
    ]
    for s in sizes:
        it, t = mean_it[s], mean_t[s]
        lines.append(
            f"| {s} | {(s - 2) ** 2} | " + " | ".join(f"{it[n]:.1f}" for n in names) + f" | {it['DCDM'] / it['IC(0)']:.2f} | "
            + " | ".join(f"{t[n]:.3g}" for n in names) + f" | {t['DCDM'] / t['IC(0)']:.2f} |"
        )
    fewer = all(mean_it[s]["DCDM"] < mean_it[s]["IC(0)"] for s in sizes)
    growth = mean_it[sizes[-1]]["DCDM"] / mean_it[sizes[0]]["DCDM"]
    ic0_growth = mean_it[sizes[-1]]["IC(0)"] / mean_it[sizes[0]]["IC(0)"]
    # evaluate() appends the learned solvers seed by seed within each matrix: seed i is every len(seeds)-th entry
    per_seed = {s: [float(np.mean([r[0] for r in results[s]["DCDM"][i::len(args.seeds)]]))
                    for i in range(len(args.seeds))] for s in sizes}
    lines += [
        "",
        f"DCDM iterations per training seed {args.seeds}: " + "; ".join(f"s = {s}: " + ", ".join(f"{v:.1f}" for v in per_seed[s]) for s in sizes) + ".",
        "",
        "Goals:",
        f"- DCDM needs fewer iterations than IC(0)-PCG at every size: **{'met' if fewer else 'not met'}** "
        f"(DCDM / IC(0) = " + ", ".join(f"{mean_it[s]['DCDM'] / mean_it[s]['IC(0)']:.2f} at {s}" for s in sizes) + ").",
        f"- DCDM's count grows less than 1.5x from {sizes[0]} to {sizes[-1]}: **{'met' if growth < 1.5 else 'not met'}** "
        f"({growth:.2f}x; IC(0): {ic0_growth:.2f}x).",
        "",
        f"Generated {datetime.date.today().isoformat()} on {platform.machine()} ({os.cpu_count()}-core CPU, shared), "
        f"{args.threads} torch thread(s), torch {torch.__version__}.",
        "",
        "```",
        *([m["command"] for m in metas] if args.dcdm_models is not None else []),  # the networks it read, one per seed
        "python tools/bench_dcdm.py " + shlex.join(argv),
        "```",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    nets, metas, gnns, gnn_seconds = [], [], [], []
    if args.dcdm_models is not None and len(args.dcdm_models) != len(args.seeds):
        raise SystemExit(f"--dcdm-models needs one file per seed ({len(args.seeds)}), got {len(args.dcdm_models)}")
    for i, seed in enumerate(args.seeds):
        net, meta = train(args, seed) if args.dcdm_models is None else trained(args, seed, args.dcdm_models[i])
        nets.append(net)
        metas.append(meta)
        print(f"DCDM seed {seed}: {meta['seconds']:.0f} s, loss {meta['loss_first']:.3g} -> {meta['loss_last']:.3g}", flush=True)
        start = time.perf_counter()
        gnns.append(train_preconditioner(darcy_matrices(args.resolution, args.gnn_n_train, seed), epochs=args.gnn_epochs,
                                         seed=seed, progress=False))
        gnn_seconds.append(time.perf_counter() - start)
        print(f"GNN seed {seed}: {gnn_seconds[-1]:.0f} s", flush=True)
    results = evaluate(args, nets, gnns)
    text = markdown(args, results, metas, gnn_seconds, argv)
    print(text)
    if not args.no_write:
        print(f"wrote {update_section(args.out, SECTION, text)}")


if __name__ == "__main__":
    main()
