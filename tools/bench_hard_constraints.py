"""Soft constraint, single hard constraint and hard-constraint mixture of experts on two PDEs.

For diffusion-sorption (PDEBench parameters) and 2D vorticity Navier-Stokes, the three models of
``conf/experiment/{pde}_{soft,hard,moe}.yaml`` (same FNO backbone) are trained in one process with
the same data, batches, optimizer and number of steps, physics-informed without solution data (the
paper's protocol), and measured on the test split:

- test relative L2 over the whole space-time trajectory, at the training number of sampled points
  and, for the hard constraints, as the number of sampled points of the constraint grows;
- training seconds per step (forward, solve, implicit backward, optimizer step) as the number of
  sampled points grows (median of a few steps on the same batch, after training);
- inference seconds per sample as the number of sampled points grows.

Torch runs on one thread (``--threads``) so that timings are not disturbed by thread contention.
Results go to ``docs/benchmarks.md``, section ``hard_constraints``.

Usage::

    python tools/bench_hard_constraints.py                        # make bench: 3 seeds, 960 / 256 steps (about 35 minutes, one thread)
    python tools/bench_hard_constraints.py --epochs 1 --seeds 0 --points 200 400 --output /tmp/hc.md   # a quick check

The datasets are generated when missing (``datasets/diffusion_sorption_64``, ``datasets/navier_stokes_32``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from benchmarks_md import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import surrogates.cli  # noqa: E402,F401  (registers the config resolvers)
from surrogates.data.generation import generate_dataset  # noqa: E402

MODELS = ("soft", "hard", "moe")
LABELS = {"soft": "soft constraint", "hard": "single hard constraint", "moe": "hard-constraint MoE"}
NOTE = (
    "On one device the experts of all samples run as one batch of problems: with the same total number of"
    " sampled points, one Levenberg-Marquardt iteration costs the same for one and for four experts (`J^T J`:"
    " points x N^2), and the backbone, the residual terms on the whole grid and the implicit backward cost the"
    " same for both, so the MoE can only gain through fewer iterations (the LM its column; a trained model"
    " needs few for either). The paper's speed-up comes from running the experts in parallel on separate GPUs"
    " (its abstract; the reference code shards the experts across devices), which a single CPU or GPU cannot"
    " reproduce; the breakdown below shows what each part of a step costs here."
)
PAPER = {"diffusion_sorption": (85.9, 7.55, 3.60), "navier_stokes": (18.08, 11.75, 8.30)}


def problems(args) -> dict:
    from surrogates.pdes.diffusion_sorption import DiffusionSorption
    from surrogates.pdes.navier_stokes import NavierStokes2D

    return {
        "diffusion_sorption": {
            "title": "Diffusion-sorption 1D (PDEBench parameters; 64 cells x 51 times, t in [0, 500])",
            "pde": DiffusionSorption(resolution=64, refinement=16, n_snapshots=51),
            "data_dir": ROOT / "datasets" / "diffusion_sorption_64",
            "experts": "4 along x",
        },
        "navier_stokes": {
            "title": "Navier-Stokes 2D, vorticity (nu = 1e-3, FNO forcing; 32 x 32 x 21 times, t in [0, 2])",
            "pde": NavierStokes2D(resolution=32, refinement=2, final_time=2.0, n_snapshots=21, dt=0.01),
            "data_dir": ROOT / "datasets" / "navier_stokes_32",
            "experts": "2 x 2 in space",
        },
    }


def _has_sizes(data_dir: Path, sizes: dict) -> bool:
    """Whether the folder holds exactly these split sizes (a complete dataset of another size is regenerated)."""
    import h5py

    try:
        for split, n in sizes.items():
            with h5py.File(data_dir / f"{split}.h5", "r") as f:
                if f[next(iter(f.attrs["targets"].split()))].shape[0] != n:
                    return False
    except (OSError, KeyError, StopIteration):
        return False
    return True


def compose_experiment(name: str, data_dir: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={name}", f"data.data_dir={data_dir}", *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)
        cfg.paths.output_dir = str(ROOT / "outputs" / "bench_hard_constraints")
    OmegaConf.resolve(cfg)
    return cfg


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_error(task, loader, n_points: int | None) -> float:
    task.eval()
    errors = []
    with torch.no_grad():
        for batch in loader:
            u = task.net.solve(batch["x"], n_points=n_points).solution[:, 0]
            y = batch["y"][:, 0].to(u.dtype)
            errors.append((u - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1))
    return float(torch.cat(errors).mean())


def run_problem(key: str, spec: dict, args, seed: int, sweep: bool) -> dict:
    """Train the three models of one PDE with one seed; test errors, and the timing sweep when ``sweep``."""
    sizes = {"train": args.n_train, "val": 4, "test": args.n_test}
    print(f"[{key}] data: {spec['data_dir']}, seed {seed}", flush=True)
    generate_dataset(spec["pde"], spec["data_dir"], sizes, seed=0, chunk_size=8, progress=False,
                     overwrite=not _has_sizes(spec["data_dir"], sizes))
    results = {}
    tasks, datamodules = {}, {}
    for kind in MODELS:
        cfg = compose_experiment(f"{key}_{kind}", spec["data_dir"], [f"data.n_train={args.n_train}", f"seed={seed}"])
        torch.manual_seed(seed)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        net = instantiate(cfg.model)
        task = instantiate(cfg.task, net=net)
        task.net.input_normalizer.load_state_dict(datamodule.input_normalizer.state_dict())
        tasks[kind], datamodules[kind] = task, datamodule
        results[kind] = {"n_points": int(getattr(net, "n_points", 0)), "parameters": sum(p.numel() for p in net.parameters())}

    # train: same batches in the same order for the three models, one epoch each in turn
    optimizers = {kind: torch.optim.Adam(tasks[kind].net.parameters(), lr=args.lr) for kind in MODELS}
    steps_per_epoch = len(datamodules["soft"].train_dataloader())
    epochs = args.epochs_of[key]
    total = epochs * steps_per_epoch
    schedulers = {kind: torch.optim.lr_scheduler.CosineAnnealingLR(optimizers[kind], T_max=total) for kind in MODELS}
    step_times = {kind: [] for kind in MODELS}
    # one loader per model, kept across epochs, so that each epoch gets a new order (the same for the
    # three models: their loaders share the seed); and one random stream per model for the training
    # points, so that a model's draws do not depend on the models trained before it
    loaders = {kind: datamodules[kind].train_dataloader() for kind in MODELS}
    streams = {kind: torch.Generator().manual_seed(seed).get_state() for kind in MODELS}
    for epoch in range(epochs):
        for kind in MODELS:
            task = tasks[kind]
            task.train()
            torch.set_rng_state(streams[kind])
            for batch in loaders[kind]:
                start = time.perf_counter()
                losses, _ = task._losses(batch)
                optimizers[kind].zero_grad()
                losses["loss"].backward()
                optimizers[kind].step()
                schedulers[kind].step()
                step_times[kind].append(time.perf_counter() - start)
            streams[kind] = torch.get_rng_state()
        line = ", ".join(f"{kind} {test_error(tasks[kind], datamodules[kind].val_dataloader(), None):.3f}" for kind in MODELS)
        print(f"[{key}] epoch {epoch + 1}/{epochs}: val rel. L2 {line}", flush=True)

    test_loader = {kind: datamodules[kind].test_dataloader() for kind in MODELS}
    persistence = []
    for batch_ in test_loader["soft"]:
        y = batch_["y"][:, 0].double()
        persistence.append((y - y[:, :1]).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1))
    results["persistence"] = float(torch.cat(persistence).mean())
    batch = next(iter(datamodules["soft"].train_dataloader()))
    test_batch = next(iter(test_loader["soft"]))
    for kind in MODELS:
        task = tasks[kind]
        res = results[kind]
        res["train_s_per_step"] = statistics.median(step_times[kind])
        res["test_rel_l2"] = test_error(task, test_loader[kind], None)
        res["sweep"] = {}
        for n_points in args.points if sweep else []:
            entry = {}
            if kind == "soft" and res["sweep"]:
                res["sweep"][n_points] = next(iter(res["sweep"].values()))  # no constraint: nothing depends on the points
                continue

            def train_step(n=n_points, task=task):
                task.train()
                out = task.net.solve(batch["x"], n_points=n)
                loss = task.net.physics.residual(out.solution[:, 0])[:, 1:].pow(2).mean()
                task.net.zero_grad()
                loss.backward()

            train_step()  # warm-up
            entry["train_s_per_step"] = timed(train_step, args.repeats)
            if n_points == args.points[-1]:
                entry["breakdown"] = step_breakdown(task.net, batch["x"], n_points, args.repeats)
            task.eval()
            with torch.no_grad():
                task.net.solve(test_batch["x"], n_points=n_points)
                entry["infer_s_per_sample"] = timed(
                    lambda n=n_points: task.net.solve(test_batch["x"], n_points=n), args.repeats
                ) / test_batch["x"].shape[0]
                out = task.net.solve(test_batch["x"], n_points=n_points)
            entry["lm_iterations"] = None if out.iterations is None else float(out.iterations.float().mean())
            entry["test_rel_l2"] = res["test_rel_l2"] if kind == "soft" else test_error(task, test_loader[kind], n_points)
            res["sweep"][n_points] = entry
            print(f"[{key}] {kind} n_points={n_points}: {entry}", flush=True)
        task.net.zero_grad()
    return results


def step_breakdown(net, x: torch.Tensor, n_points: int, repeats: int) -> dict:
    """Seconds of the parts of a training step: the backbone alone (forward and backward) and the whole
    forward (backbone, residual terms on the grid, constraint solve) without gradients."""
    net.train()

    def backbone():
        net.zero_grad()
        net.backbone(net.input_normalizer.encode(x)).square().mean().backward()

    def forward():
        with torch.no_grad():
            net.solve(x, n_points=n_points)

    backbone()
    out = {"backbone_s": timed(backbone, repeats), "forward_s": timed(forward, repeats)}
    net.zero_grad()
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}%"
    return f"{100 * statistics.mean(values):.1f}% +- {100 * statistics.stdev(values):.1f}"


def markdown(all_runs: dict, specs: dict, args, seconds: float) -> str:
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        "## Hard constraints: soft vs single hard constraint vs mixture of experts",
        "",
        f"Generated by `{shlex.join(['python', 'tools/bench_hard_constraints.py', *sys.argv[1:]])}` on "
        f"{datetime.date.today().isoformat()} ({platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s); whole run {seconds / 60:.1f} min).",
        "",
        f"Budget (CPU): {args.n_train} training and {args.n_test} test trajectories per PDE, "
        + ", ".join(f"{e} epochs ({e * math.ceil(args.n_train / 4)} steps) for {k.replace('_', '-')}" for k, e in args.epochs_of.items())
        + " with batches of 4 (the paper: 4050 steps for diffusion-sorption), "
        f"Adam lr {args.lr} with cosine decay; "
        "physics-informed training without solution data (loss: PDE residual + initial condition), as in the "
        "paper. All three models share the FNO backbone and the number of basis functions "
        "(`conf/experiment/<pde>_{soft,hard,moe}.yaml`); the experts of the MoE are a fixed uniform partition. "
        f"Each PDE is trained with seed(s) {seeds} (initial weights, batches, sampled points; the three models "
        "see the same batches in the same order, reshuffled every epoch, and each draws its training points "
        "from its own random stream); test errors are "
        "the mean (+- standard deviation) over the seeds. Training s/step and inference s/sample are medians "
        f"on one batch of 4 after training with seed {args.seeds[0]}; the rel. L2 column of the sweep "
        "re-solves the constraint of that trained model with that many points. " + NOTE,
        "",
    ]
    for key, runs in all_runs.items():
        spec = specs[key]
        paper = PAPER[key]
        first = runs[0]
        errors = {kind: [run[kind]["test_rel_l2"] for run in runs] for kind in MODELS}
        lines += [f"### {spec['title']}", "",
                  "| model | test rel. L2 | per seed | paper | train s/step (training run) | parameters |",
                  "|---|---|---|---|---|---|",
                  f"| (reference: u(t) = u0, no model) | {100 * first['persistence']:.1f}% | | | | |"]
        for kind, ref in zip(MODELS, paper):
            r = first[kind]
            name = LABELS[kind] + (f" ({spec['experts']})" if kind == "moe" else "")
            per_seed = " / ".join(f"{100 * e:.1f}" for e in errors[kind])
            lines.append(f"| {name} | {_mean_std(errors[kind])} | {per_seed} | {ref}% | {r['train_s_per_step']:.3f} | {r['parameters']:,} |")
        lines += ["", "| sampled points | " + " | ".join(f"{LABELS[k]}: rel. L2 / train s/step / infer s/sample / LM its" for k in MODELS) + " |",
                  "|---|" + "---|" * len(MODELS)]
        for n_points in args.points:
            cells = []
            for kind in MODELS:
                e = first[kind]["sweep"][n_points]
                its = "-" if e["lm_iterations"] is None else f"{e['lm_iterations']:.1f}"
                cells.append(f"{100 * e['test_rel_l2']:.1f}% / {e['train_s_per_step']:.3f} / {e['infer_s_per_sample']:.4f} / {its}")
            lines.append(f"| {n_points} | " + " | ".join(cells) + " |")
        largest = args.points[-1]
        hard, moe = first["hard"]["sweep"][largest], first["moe"]["sweep"][largest]
        lines += ["", f"Where a training step goes at {largest} points (seconds, seed {args.seeds[0]}): the backbone alone "
                  "(forward and backward), the whole forward without gradients (backbone, residual terms on the grid, "
                  "the experts' Levenberg-Marquardt solves), and the whole step (forward, implicit backward).", "",
                  "| model | backbone fwd+bwd | forward (no grad) | whole step | LM its |", "|---|---|---|---|---|"]
        for kind, e in (("hard", hard), ("moe", moe)):
            b = e["breakdown"]
            lines.append(f"| {LABELS[kind]} | {b['backbone_s']:.3f} | {b['forward_s']:.3f} | {e['train_s_per_step']:.3f} | {e['lm_iterations']:.1f} |")
        means = [statistics.mean(errors[k]) for k in MODELS]
        ordering = means[0] > means[1] > means[2]
        held = sum(run["soft"]["test_rel_l2"] > run["hard"]["test_rel_l2"] > run["moe"]["test_rel_l2"] for run in runs)
        speedup = hard["train_s_per_step"] / moe["train_s_per_step"]
        lines += [
            "",
            f"Goals: error ordering soft > single > MoE (means): **{'met' if ordering else 'not met'}** "
            f"({' > '.join(f'{100 * e:.1f}%' for e in means)}; it holds for {held} of {len(runs)} seed(s)); "
            f"MoE training step at {largest} points {speedup:.2f}x faster than the single hard constraint "
            f"(goal 2x): **{'met' if speedup >= 2 else 'not met'}**; "
            f"inference {hard['infer_s_per_sample'] / moe['infer_s_per_sample']:.2f}x.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[60, 16],
                        help="epochs, one value for every PDE or one per PDE in --pdes order")
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--points", type=int, nargs="+", default=[250, 500, 1000, 2000, 3000])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="train every PDE once per seed; errors are reported as mean +- std over them")
    parser.add_argument("--pdes", nargs="+", default=["diffusion_sorption", "navier_stokes"])
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    args.points = sorted(args.points)
    if len(args.epochs) not in (1, len(args.pdes)):
        parser.error("--epochs takes one value or one per PDE")
    args.epochs_of = dict(zip(args.pdes, args.epochs * len(args.pdes) if len(args.epochs) == 1 else args.epochs))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    specs = problems(args)
    results = {
        key: [run_problem(key, specs[key], args, seed, sweep=i == 0) for i, seed in enumerate(args.seeds)]
        for key in args.pdes
    }
    text = markdown(results, specs, args, time.perf_counter() - start)
    update_section(args.output, "hard_constraints", text)
    print(text)


if __name__ == "__main__":
    main()
