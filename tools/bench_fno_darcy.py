"""Our FNO against neuraloperator's FNO on Darcy flow: same data, loss, optimizer and batches.

Both models train in ONE process, alternating one epoch each, so that machine noise hits both.
Written to ``docs/benchmarks.md`` (section ``fno_darcy``) with a plot of test error per epoch.

Usage::

    python tools/bench_fno_darcy.py --data-dir datasets/darcy_64 --epochs 100 --threads 2

Mode sets: our ``modes=m`` keeps frequencies ``[-m, m-1] x [0, m-1]``. ``neuralop``'s SpectralConv
with ``n_modes=(2m, 2m-2)`` keeps, on the first dim, the ``2m`` bins centred on zero after
``fftshift`` (slice ``[n/2 - m, n/2 + m)``, i.e. frequencies ``[-m, m-1]``), and on the last (rfft)
dim ``(2m-2) // 2 + 1 = m`` bins (frequencies ``[0, m-1]``): the same set.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from _training_bench import (  # noqa: E402
    Gaussian,
    count_parameters,
    cpu_model,
    epoch_order,
    evaluate,
    load_split,
    make_optimizer,
    neuralop_fno,
    train_epoch,
)
from benchmarks_md import update_section  # noqa: E402

from surrogates.models.fno import FNO  # noqa: E402

GENERATE = "surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("datasets/darcy_64"))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--modes", type=int, default=12)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--scheduler", choices=["cosine", "step"], default="cosine",
                   help="cosine over all epochs, or step (halve every --step-size epochs)")
    p.add_argument("--step-size", type=int, default=100)
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=20, help="throughput phase: rounds of alternating step blocks")
    p.add_argument("--steps-per-round", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--figure", type=Path, default=None, help="default: <out dir>/figures/fno_darcy_error.png")
    return p.parse_args(argv)


# -- models ------------------------------------------------------------------------------------


def build_models(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    torch.manual_seed(args.seed)
    ours = FNO(1, 1, modes=args.modes, width=args.width, n_layers=args.layers)
    torch.manual_seed(args.seed)
    peer = neuralop_fno(args.modes, args.width, args.layers, dim=2)
    return {"surrogates": ours, "neuralop": peer}


# -- training ----------------------------------------------------------------------------------


def measure_throughput(models, a, u, norm_a, norm_u, args) -> dict[str, dict[str, float]]:
    """Training throughput in its own phase, robust to a busy machine.

    Copies of the models (so the training phase starts from the same weights) take turns running
    ``--steps-per-round`` optimizer steps on the same batches, for ``--rounds`` rounds. Pairing the
    two models round by round cancels slow drifts in machine load; medians drop bursts.
    """
    import copy

    contenders = {name: copy.deepcopy(model) for name, model in models.items()}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=args.lr, weight_decay=args.weight_decay)
                  for name, m in contenders.items()}
    generator = torch.Generator().manual_seed(args.seed)
    step_times: dict[str, list[float]] = {name: [] for name in contenders}
    ratios = []
    for round_index in range(args.rounds + 1):  # round 0 warms up (allocator, FFT plans) and is dropped
        order = torch.randperm(len(a), generator=generator)[: args.steps_per_round * args.batch_size]
        seconds = {}
        for name, model in contenders.items():
            seconds[name] = train_epoch(model, optimizers[name], a, u, norm_a, norm_u, order, args.batch_size)
        if round_index == 0:
            continue
        for name in contenders:
            step_times[name].append(seconds[name] / args.steps_per_round)
        ratios.append(seconds["neuralop"] / seconds["surrogates"])
    out = {name: {"step_s": statistics.median(t), "samples_per_s": args.batch_size / statistics.median(t)}
           for name, t in step_times.items()}
    out["speedup"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return out


def run(args: argparse.Namespace) -> dict:
    a_train, u_train = load_split(args.data_dir / "train.h5", args.n_train)
    a_test, u_test = load_split(args.data_dir / "test.h5")
    norm_a, norm_u = Gaussian(a_train), Gaussian(u_train)
    models = build_models(args)
    throughput = measure_throughput(models, a_train, u_train, norm_a, norm_u, args)
    print("throughput (samples/s): " + ", ".join(
        f"{n}: {throughput[n]['samples_per_s']:.1f}" for n in models) +
        f"; speed-up {throughput['speedup']['median']:.2f}x", flush=True)
    optimizers = {name: make_optimizer(m, args.lr, args.weight_decay, args.epochs, args.scheduler, args.step_size)
                  for name, m in models.items()}
    history = {name: {"epoch_s": [], "test_rel_l2": []} for name in models}
    for epoch in range(args.epochs):
        # Same batches for both models: one permutation per epoch from a seeded generator.
        order = epoch_order(len(a_train), args.seed, epoch)
        for name, model in models.items():  # alternate: noise hits both
            optimizer, scheduler = optimizers[name]
            seconds = train_epoch(model, optimizer, a_train, u_train, norm_a, norm_u, order, args.batch_size)
            scheduler.step()
            history[name]["epoch_s"].append(seconds)
            history[name]["test_rel_l2"].append(
                evaluate(model, a_test, u_test, norm_a, norm_u, args.batch_size)["rel_l2"])
        print(f"epoch {epoch + 1}/{args.epochs}  " + "  ".join(
            f"{n}: {h['epoch_s'][-1]:.2f}s test {h['test_rel_l2'][-1]:.4f}" for n, h in history.items()), flush=True)
    results = {}
    for name, model in models.items():
        median = statistics.median(history[name]["epoch_s"])
        results[name] = {
            "params": count_parameters(model),
            "test_rel_l2": history[name]["test_rel_l2"][-1],
            "epoch_s": median,
            "samples_per_s": throughput[name]["samples_per_s"],
            "history": history[name]["test_rel_l2"],
        }
    return {"results": results, "speedup": throughput["speedup"], "n_train": len(a_train), "n_test": len(a_test), "resolution": list(a_train.shape[2:])}


# -- report ------------------------------------------------------------------------------------


def render(args: argparse.Namespace, report: dict, figure: Path, out: Path) -> str:
    import neuralop

    ours, peer = report["results"]["surrogates"], report["results"]["neuralop"]
    rows = "\n".join(
        f"| {name} | {r['params']:,} | {r['test_rel_l2']:.4f} | {r['epoch_s']:.2f} | {r['samples_per_s']:.1f} |"
        for name, r in report["results"].items())
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    m = args.modes
    try:
        figure_link = figure.resolve().relative_to(out.resolve().parent)
    except ValueError:
        figure_link = figure
    return f"""## FNO on Darcy flow: `surrogates` vs `neuraloperator`

Darcy {report['resolution'][0]}x{report['resolution'][1]}, {report['n_train']} training / {report['n_test']} test samples,
{args.epochs} epochs, batch {args.batch_size}, Adam (lr {args.lr}, weight decay {args.weight_decay}),
{args.scheduler} schedule, relative L2 loss in physical units, per-channel Gaussian normalization of
input and target (training statistics), identical batch order; both models trained in one process,
alternating one epoch each.

| model | parameters | test rel. L2 | s / epoch (median, training phase) | training samples / s (throughput phase) |
|---|---:|---:|---:|---:|
{rows}

- error ratio (ours / neuralop): **{ours['test_rel_l2'] / peer['test_rel_l2']:.3f}**
- training throughput ratio (ours / neuralop): **{report['speedup']['median']:.2f}x** (median over
  {args.rounds} rounds; per-round range {report['speedup']['min']:.2f}x to {report['speedup']['max']:.2f}x)

Throughput is measured in its own phase before training: copies of both models take turns running
{args.steps_per_round} optimizer steps (forward, backward, Adam) on the same batches, {args.rounds} rounds, and the
ratio is taken round by round, so that a busy machine slows both alike. Epoch times of the training
phase are listed for reference; they are noisier.

Models: `surrogates.models.FNO(1, 1, modes={m}, width={args.width}, n_layers={args.layers})` (linear lifting,
spectral conv + linear skip per layer, projection MLP {args.width} -> 128 -> 1) and
`neuralop.models.FNO(n_modes=({2 * m}, {2 * m - 2}), hidden_channels={args.width}, in_channels=1, out_channels=1,
n_layers={args.layers})` with its defaults (2-layer lifting MLP with {2 * args.width} hidden channels, a channel MLP with
soft-gating skip after every Fourier layer, spectral bias, projection {args.width} -> {2 * args.width} -> 1).
Both keep the same Fourier modes: ours keeps frequencies [-{m}, {m - 1}] x [0, {m - 1}]; neuralop's SpectralConv
keeps the {2 * m} `fftshift`-centred bins of the first dimension (frequencies [-{m}, {m - 1}]) and
({2 * m - 2}) // 2 + 1 = {m} rfft bins of the last (frequencies [0, {m - 1}]).

Machine: {cpu_model()}, {args.threads} threads, torch {torch.__version__}, neuraloperator {neuralop.__version__},
Python {platform.python_version()}. Date: {datetime.date.today().isoformat()}.

Command: `{command}`

![test error per epoch]({figure_link})
"""


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, r in report["results"].items():
        ax.plot(range(1, len(r["history"]) + 1), r["history"], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test relative L2")
    ax.set_yscale("log")
    ax.set_title("FNO on Darcy")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data_dir / "train.h5").exists() or not (args.data_dir / "test.h5").exists():
        print(f"no Darcy data in {args.data_dir} (train.h5, test.h5); generate it with:\n  {GENERATE}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    report = run(args)
    figure = args.figure or args.out.parent / "figures" / "fno_darcy_error.png"
    plot(report, figure)
    update_section(args.out, "fno_darcy", render(args, report, figure, args.out))
    ours, peer = report["results"]["surrogates"], report["results"]["neuralop"]
    print(f"wrote {args.out} and {figure}; throughput ratio {report['speedup']['median']:.2f}x, "
          f"error ratio {ours['test_rel_l2'] / peer['test_rel_l2']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
