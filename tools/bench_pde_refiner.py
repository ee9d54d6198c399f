"""PDE-Refiner vs the MSE-trained U-Net on Kuramoto-Sivashinsky: high-correlation time, spread, cost per step.

Both models are the same network (``PDERefiner`` with ``num_refinement_steps = 3`` and ``0``, the
configs ``model=pde_refiner`` and ``model=unet_mse`` at a CPU size), trained in ONE process on the
same pairs ``u[s, i] -> u[s, i + 1]`` in the same batch order, alternating batch by batch (so that
machine noise hits both), with the same optimizer, step budget and schedule, each with its own
objective (``PDERefiner.loss``). They are then rolled out on the test trajectories from their first
state to their last; the refiner once per noise seed. Reported: high-correlation time (Pearson
correlation >= 0.8 / 0.9, time units), rollout MSE, the refiner's spread across seeds (next to its
error), network evaluations and milliseconds per step, wall times. Written to
``docs/benchmarks.md`` (section ``pde_refiner``, or ``--section``) with ``docs/figures/<section>_correlation.png``,
``docs/figures/<section>_spacetime.png`` and ``docs/figures/<section>_spectrum.png`` (the
one-step error per wavenumber of the baseline and of the refiner after each refinement step).

Usage::

    python tools/bench_pde_refiner.py                         # generates datasets/ks_256 if missing (make bench)
    python tools/bench_pde_refiner.py --n-train 32 --n-test 8 --epochs 0.05 --no-write   # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from _training_bench import count_parameters, cpu_model  # noqa: E402
from benchmarks_md import update_section  # noqa: E402

from surrogates.data.autoregressive import AutoregressiveDataset  # noqa: E402
from surrogates.data.normalization import Normalizer  # noqa: E402
from surrogates.data.shards import split_files  # noqa: E402
from surrogates.models.pde_refiner import PDERefiner  # noqa: E402
from surrogates.serve.rollout import RolloutSurrogate  # noqa: E402
from surrogates.metrics import error_spectrum  # noqa: E402
from surrogates.evaluation.rollouts import evaluate_rollouts  # noqa: E402
from surrogates.plots import plot_correlation, plot_error_spectrum, plot_spacetime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENERATE = "surrogates-generate pde=ks resolution=256 n_train={n_train} n_val=0 n_test={n_test} name=ks_256"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT / "datasets" / "ks_256")
    p.add_argument("--n-train", type=int, default=512, help="training trajectories (140 states each)")
    p.add_argument("--n-test", type=int, default=64, help="test trajectories rolled out")
    p.add_argument("--epochs", type=float, default=1.5, help="passes over all training pairs (fractions allowed)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden-channels", type=int, default=16)
    p.add_argument("--channel-multipliers", type=int, nargs="+", default=[1, 2, 2, 4])
    p.add_argument("--refinement-steps", type=int, default=3)
    p.add_argument("--min-noise-std", type=float, default=6.3e-4)
    p.add_argument("--first-step-probability", type=float, default=None,
                   help="share of the refiner's training samples drawn at k = 0 (default 1/(K+1), the paper's uniform draw)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (training, rollouts and timings on that device)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="evaluate an exponential moving average of the weights (0: the last weights)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--save-dir", type=Path, default=ROOT / "outputs" / "bench_pde_refiner")
    p.add_argument("--section", default="pde_refiner",
                   help="section of docs/benchmarks.md and prefix of the figures (one per setup, e.g. pde_refiner_64)")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/")
    return p.parse_args(argv)


def ensure_data(args: argparse.Namespace) -> float:
    """Generate the KS dataset when missing (same as the printed command); returns wall seconds."""
    if all((args.data_dir / f"{s}.h5").exists() for s in ("train", "test")):
        return 0.0
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.ks import KuramotoSivashinsky

    print("generating:", GENERATE.format(n_train=args.n_train, n_test=args.n_test), flush=True)
    tic = time.perf_counter()
    generate_dataset(KuramotoSivashinsky(resolution=256), args.data_dir, {"train": args.n_train, "test": args.n_test},
                     seed=0, chunk_size=16)
    return time.perf_counter() - tic


def build(args: argparse.Namespace, k: int) -> PDERefiner:
    torch.manual_seed(args.seed)  # the same initial weights for both
    return PDERefiner(
        1, 1, n_params=2, num_refinement_steps=k, min_noise_std=args.min_noise_std, dim=1,
        first_step_probability=args.first_step_probability if k > 0 else None,
        hidden_channels=args.hidden_channels, channel_multipliers=args.channel_multipliers, padding_mode="circular",
    )


def train(models: dict[str, PDERefiner], u: torch.Tensor, params: torch.Tensor, args: argparse.Namespace) -> dict:
    """Alternate one batch per model, same batches; AdamW, cosine decay per step; returns wall seconds and losses."""
    n, t = u.shape[:2]
    pairs = n * (t - 1)
    steps = max(1, math.ceil(args.epochs * pairs / args.batch_size))
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=1e-5) for name, m in models.items()}
    schedules = {name: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=steps) for name, o in optimizers.items()}
    generators = {name: torch.Generator(device=u.device).manual_seed(args.seed + 1) for name in models}
    averages = {name: ema_copy(m, args.ema_decay) for name, m in models.items()} if args.ema_decay > 0 else {}
    seconds = {name: 0.0 for name in models}
    losses: dict[str, list[float]] = {name: [] for name in models}
    order = torch.randperm(pairs, generator=torch.Generator().manual_seed(args.seed))
    for m in models.values():
        m.train()
    print(f"training {len(models)} models for {steps} steps of {args.batch_size} pairs ({args.epochs:g} epochs)", flush=True)
    for step in range(steps):
        start = (step * args.batch_size) % pairs
        idx = order[start : start + args.batch_size]
        s, i = idx // (t - 1), idx % (t - 1)
        x, y, p = u[s, i], u[s, i + 1], params[s]
        for name, model in models.items():
            tic = time.perf_counter()
            loss = model.loss(x, y, p, generators[name])
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            schedules[name].step()
            if averages:
                averages[name].update_parameters(model)
            losses[name].append(loss.item())  # waits for the device, so the time below is the step's
            seconds[name] += time.perf_counter() - tic
        if (step + 1) % max(1, steps // 20) == 0:
            report = ", ".join(f"{name} {np.mean(v[-50:]):.4g}" for name, v in losses.items())
            print(f"  step {step + 1}/{steps}: loss {report}", flush=True)
    for name, average in averages.items():  # evaluate (and save) the averaged weights
        models[name].load_state_dict(average.module.state_dict())
    return {"steps": steps, "seconds": seconds, "final_loss": {k: float(np.mean(v[-100:])) for k, v in losses.items()}}


def ema_copy(model: PDERefiner, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights (buffers copied), updated after each step."""
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )


def stepper(model: PDERefiner, normalizer: Normalizer, param_mean: np.ndarray):
    """The saved model of a trained network: normalize -> network -> denormalize (a copy of the normalizer)."""
    import copy

    from surrogates.models.normalized import NormalizedStepper

    return NormalizedStepper(model, copy.deepcopy(normalizer), torch.as_tensor(param_mean, dtype=torch.float32))


def save_checkpoints(models: dict[str, PDERefiner], normalizer: Normalizer, param_mean: np.ndarray, args) -> None:
    """Rollout checkpoints of both models (``RolloutSurrogate.load``, ``surrogates-evaluate``) under ``--save-dir``."""
    from surrogates import __version__
    from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
    from surrogates.models.pde_refiner import ROLLOUT_KIND

    args.save_dir.mkdir(parents=True, exist_ok=True)
    schema = {"kind": "trajectory", "pde": "ks", "data_dir": str(args.data_dir), "inputs": ["u"], "targets": ["u"],
              "state": ["u"], "conditioning": ["dt", "dx"], "spatial_dims": ["x"]}
    for key, model in models.items():
        metadata = CheckpointMetadata(
            kind=ROLLOUT_KIND, model=ClassSpec.from_dict(model.init_config(), "model"),
            conditioning={"names": ["dt", "dx"]},
            data_schema=schema, task="autoregressive", package_version=__version__,
        )
        write_checkpoint(args.save_dir / f"{key}.ckpt", metadata, stepper(model, normalizer, param_mean).state_dict())
    print(f"checkpoints: {args.save_dir}/{{refiner,baseline}}.ckpt", flush=True)


@torch.no_grad()
def refinement_chain(models: dict[str, PDERefiner], u: torch.Tensor, params: torch.Tensor, std: float) -> dict:
    """One-step RMSE and error spectrum (physical units) of the refiner's estimate after each step
    ``k = 0 .. K`` and of the baseline, on pairs ``u[:, i] -> u[:, i + 1]`` for ``i = 10, 15, .., 55``
    of normalized test trajectories; with the spectrum of the true next states."""
    x = u[:, 10:60:5].flatten(0, 1)
    y = u[:, 11:61:5].flatten(0, 1)
    p = params[:, None].expand(-1, 10, -1).flatten(0, 1)
    rmse = lambda e: float((e - y).pow(2).mean().sqrt()) * std  # noqa: E731
    spectrum = lambda e: (error_spectrum(e, y) * std**2).cpu().numpy()  # noqa: E731
    for m in models.values():
        m.eval()
    refiner = models["refiner"].refinement_estimates(x, p, torch.Generator(device=x.device).manual_seed(0))
    baseline = models["baseline"].predict(x, p)
    return {
        "pairs": x.shape[0], "refiner": [rmse(e) for e in refiner], "baseline": rmse(baseline),
        "refiner_spectra": [spectrum(e) for e in refiner], "baseline_spectrum": spectrum(baseline),
        "reference_spectrum": (error_spectrum(y, torch.zeros_like(y)) * std**2).cpu().numpy(),
    }


def plot_chain_spectra(chain: dict, path: Path, refinement_steps: int) -> Path:
    """The one-step error spectrum of the MSE U-Net and of the refiner after each step, next to the solution's."""
    spectra = {"MSE U-Net": chain["baseline_spectrum"]}
    for k, spectrum in enumerate(chain["refiner_spectra"]):
        spectra[f"PDE-Refiner after k = {k}" + (" (its prediction)" if k == 0 else "")] = spectrum
    return plot_error_spectrum(spectra, path, reference=chain["reference_spectrum"],
                               title=f"KS, one-step error per wavenumber ({chain['pairs']} test pairs, K = {refinement_steps})")


SPECTRAL_BANDS = ((0, 8), (8, 24), (24, 48), (48, None))
"""Wavenumber bands of the chain table (with L ~ 64 the linearly unstable modes are m < ~10)."""


def band_table(chain: dict, refinement_steps: int) -> list[str]:
    """Markdown rows: RMS of the solution and of each one-step error in each wavenumber band."""
    def band(spectrum: np.ndarray, lo: int, hi: int | None) -> str:
        return f"{float(np.sqrt(spectrum[lo:hi].sum())):.1e}"

    names = [f"m {lo}-{(hi or len(chain['reference_spectrum'])) - 1}" for lo, hi in SPECTRAL_BANDS]
    rows = [("true next state", chain["reference_spectrum"]), ("MSE U-Net error", chain["baseline_spectrum"])]
    rows += [(f"PDE-Refiner error after k = {k}", sp) for k, sp in enumerate(chain["refiner_spectra"])]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(band(sp, lo, hi) for lo, hi in SPECTRAL_BANDS) + " |" for label, sp in rows]
    return lines


def device_label(args: argparse.Namespace) -> str:
    """Where the run trained and rolled out: CPU threads, or the GPU's name."""
    if str(args.device).startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name(torch.device(args.device))}"
    return f"{args.threads} thread"


def render(args, results, training, data_seconds, figures, total_seconds, available, chain=None) -> str:
    refiner, baseline = results["refiner"], results["baseline"]
    r, b = refiner["summary"], baseline["summary"]
    ratio = {t: r[f"high_corr_time_{t}"] / max(b[f"high_corr_time_{t}"], 1e-12) for t in ("0.8", "0.9")}
    met = ratio["0.8"] >= 1.2
    rel = lambda p: Path(p).resolve().relative_to(args.out.resolve().parent).as_posix()  # noqa: E731
    lines = [
        f"## PDE-Refiner vs MSE U-Net (Kuramoto-Sivashinsky, {args.n_train} training trajectories)",
        "",
        f"`tools/bench_pde_refiner.py`, run {datetime.date.today().isoformat()} on {cpu_model()} "
        f"({device_label(args)}, a machine shared with other jobs; torch {torch.__version__}, Python {platform.python_version()}).",
        "",
        f"Data: `{GENERATE.format(n_train=available['train'], n_test=available['test'])}` (256 points, L ~ 64 +- 10 %, "
        f"140 states dt ~ 0.8 +- 10 % apart after a dropped transient; "
        f"{f'generated in {data_seconds:.0f} s' if data_seconds else 'reused from an earlier run'}). "
        f"Training: {'the first ' if args.n_train < available['train'] else ''}{args.n_train} trajectories, "
        f"{args.n_train * 139} pairs, {args.epochs:g} epoch(s) = "
        f"{training['steps']} steps of {args.batch_size}, AdamW lr {args.lr:g} with cosine decay"
        f"{f', weights averaged (EMA, decay {args.ema_decay:g})' if args.ema_decay > 0 else ''}, the same batches and "
        f"initial weights for both. Network (both): `PDERefiner(hidden_channels={args.hidden_channels}, "
        f"channel_multipliers={args.channel_multipliers}, padding_mode=circular)`, "
        f"{count_parameters(results['refiner']['model']):,} parameters; refiner K = {args.refinement_steps}, "
        f"min_noise_std = {args.min_noise_std:g}, "
        f"{'k drawn uniformly' if args.first_step_probability is None else f'k = 0 drawn with probability {args.first_step_probability:g}'}"
        f" in training. Test: {'the first ' if args.n_test < available['test'] else ''}{args.n_test} trajectories rolled out from their first state for "
        f"139 steps (~111 time units); the refiner with seeds {args.seeds}.",
        "",
        "| model | high-corr. time 0.8 | high-corr. time 0.9 | one-step RMSE | rollout MSE | spread / RMSE at t(0.8) | evaluations per step | ms per step (per trajectory) | training wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = (("baseline", "MSE U-Net"), ("refiner", f"PDE-Refiner (K={args.refinement_steps})"),
            ("refiner_k0", "PDE-Refiner, first step only (ablation)"))
    for key, label in rows:
        wall = f"{training['seconds'][key] / 60:.1f} min" if key in training["seconds"] else "(the refiner's weights)"
        s = results[key]["summary"]
        seed_std = f" +- {s['high_corr_time_0.8_seed_std']:.1f}" if len(s["seeds"]) > 1 else ""
        seed_std9 = f" +- {s['high_corr_time_0.9_seed_std']:.1f}" if len(s["seeds"]) > 1 else ""
        spread = f"{s['spread_at_high_corr_time_0.8']:.3f} / {s['rmse_at_high_corr_time_0.8']:.3f}" if len(s["seeds"]) > 1 else f"- / {s['rmse_at_high_corr_time_0.8']:.3f}"
        lines.append(
            f"| {label} | {s['high_corr_time_0.8']:.1f}{seed_std} | {s['high_corr_time_0.9']:.1f}{seed_std9} | "
            f"{s['curves']['rmse'][0]:.2g} | {s['mse_mean']:.3g} | {spread} | {s['evaluations_per_step']} | "
            f"{s['ms_per_step']:.2f} | {wall} |"
        )
    lines += [
        "",
        f"**Ratio PDE-Refiner / MSE U-Net: {ratio['0.8']:.2f}x (0.8), {ratio['0.9']:.2f}x (0.9); "
        f"goal 1.2x at 0.8: {'met' if met else 'not met'}.** "
        f"Times are means over trajectories (per-trajectory dt); `+-` is the standard deviation across noise "
        f"seeds of that mean. Spread: standard deviation of the refiner's predicted states across seeds (RMS over space "
        f"and trajectories) at each trajectory's high-correlation time, next to the RMS error there. Final training "
        f"loss (mean of the last 100 steps): MSE U-Net {training['final_loss']['baseline']:.3g}, PDE-Refiner "
        f"{training['final_loss']['refiner']:.3g} (its own objective, not comparable). A refiner step costs "
        f"K + 1 = {args.refinement_steps + 1} network evaluations. The ablation row rolls the trained refiner out with "
        f"its first (k = 0) prediction only, which shows what the refinement steps add. One-step RMSE: first rollout step, "
        f"physical units (std of u ~ {float(results['refiner']['std']):.2f}). Total wall time {total_seconds / 60:.1f} min; "
        f"the models are saved as rollout checkpoints in `{args.save_dir.relative_to(ROOT) if args.save_dir.is_relative_to(ROOT) else args.save_dir}`.",
        "",
        *([
            f"Refinement chain (one-step RMSE, physical units, {chain['pairs']} test pairs, noise seed 0) after steps "
            f"k = 0 .. {args.refinement_steps}: " + " / ".join(f"{v:.2g}" for v in chain["refiner"])
            + f"; MSE U-Net {chain['baseline']:.2g}. By wavenumber (modes per domain; RMS over the band):",
            "",
            *band_table(chain, args.refinement_steps),
            "",
            f"![one-step error per wavenumber]({rel(figures[2])})",
            "",
        ] if chain else []),
        f"The paper (Lippe et al. 2023) reports about 1.3x on its full setup (2048+ trajectories, a U-Net of ~hidden 64, "
        f"hundreds of epochs on a GPU); this CPU run trains a {count_parameters(results['refiner']['model']) / 1e3:.0f}k-parameter "
        f"network for {args.epochs:g} epoch(s).",
        "",
        f"![correlation vs time]({rel(figures[0])})",
        "",
        f"![space-time: reference, predictions, errors]({rel(figures[1])})",
        "",
        "Command: `" + " ".join(shlex.quote(a) for a in ["python", "tools/bench_pde_refiner.py", *sys.argv[1:]]) + "`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    data_seconds = ensure_data(args)
    train_set = AutoregressiveDataset(split_files(args.data_dir, "train"), ["u"], ["dt", "dx"], pairs=False,
                                      n_trajectories=args.n_train)
    test_set = AutoregressiveDataset(split_files(args.data_dir, "test"), ["u"], ["dt", "dx"], pairs=False,
                                     n_trajectories=args.n_test)
    mean, std, param_mean = train_set.statistics()
    normalizer = Normalizer.from_stats(mean, std)
    u_train, p_train = train_set.trajectories()
    u_n = normalizer.encode(u_train.flatten(0, 1)).view(u_train.shape).to(args.device)
    p_n = (p_train / torch.as_tensor(param_mean, dtype=torch.float32)).to(args.device)

    models = {"refiner": build(args, args.refinement_steps).to(args.device), "baseline": build(args, 0).to(args.device)}
    training = train(models, u_n, p_n, args)

    save_checkpoints(models, normalizer, param_mean, args)
    # ablation: the trained refiner's first step alone (its k = 0 prediction, no refinement)
    first_step = build(args, 0).to(args.device)
    first_step.load_state_dict(models["refiner"].state_dict())
    runs = {**models, "refiner_k0": first_step}

    u_test, p_test = test_set.trajectories()
    dt = p_test[:, 0].double().numpy()
    results = {}
    for key, model in runs.items():
        surrogate = RolloutSurrogate(stepper(model, normalizer, param_mean), ["dt", "dx"],
                                     {"spatial_dims": ["x"], "pde": "ks"}, device=args.device)
        name = {"refiner": f"PDE-Refiner (K={args.refinement_steps})", "baseline": "MSE U-Net",
                "refiner_k0": "PDE-Refiner, first step only"}[key]
        print(f"rolling out {name}", flush=True)
        ev = evaluate_rollouts(surrogate, u_test, p_test, seeds=args.seeds, dt=dt, batch_size=args.n_test, name=name)
        results[key] = {"model": model, "evaluation": ev, "summary": ev.summary(), "std": std[0]}
        s = results[key]["summary"]
        print(f"  {name}: t(0.8) {s['high_corr_time_0.8']:.2f}, t(0.9) {s['high_corr_time_0.9']:.2f}, "
              f"MSE {s['mse_mean']:.4g}, {s['ms_per_step']:.2f} ms/step", flush=True)

    figure_dir = args.out.parent / "figures"
    evaluations = [results["baseline"]["evaluation"], results["refiner"]["evaluation"]]
    figures = (
        plot_correlation(evaluations + [results["refiner_k0"]["evaluation"]], figure_dir / f"{args.section}_correlation.png", time_label="time",
                         title=f"KS, {args.n_test} test trajectories (band: min-max over seeds)"),
        plot_spacetime(u_test[0, 1:, 0].numpy(), {ev.name: ev.first_trajectory[:, 0] for ev in evaluations},
                       figure_dir / f"{args.section}_spacetime.png", dt=float(dt[0]), title="KS test trajectory 0"),
    )
    normalizer.to(args.device)  # (the surrogates hold copies of it)
    u_test_n = normalizer.encode(u_test.flatten(0, 1).to(args.device)).view(u_test.shape)
    chain = refinement_chain(models, u_test_n,
                             (p_test / torch.as_tensor(param_mean, dtype=torch.float32)).to(args.device), float(std[0]))
    figures += (plot_chain_spectra(chain, figure_dir / f"{args.section}_spectrum.png", args.refinement_steps),)
    available = {split: AutoregressiveDataset(split_files(args.data_dir, split), ["u"], ["dt", "dx"], pairs=False).n_trajectories
                 for split in ("train", "test")}  # what the files hold (the run may use fewer)
    section = render(args, results, training, data_seconds, figures, time.perf_counter() - wall, available, chain)
    if args.no_write:
        print(section)
    else:
        update_section(args.out, args.section, section)
        print(f"wrote {args.out} and {figures[0]}, {figures[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
