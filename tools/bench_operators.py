"""Neural operators side by side: our FNO, MgNO and U-Net and neuraloperator's FNO on Darcy and Burgers.

Every model trains through the package, as ``surrogates-train experiment=<problem>_<model>`` does
(see ``tools/_training_bench.py``): the DataModule of ``conf/data/`` with its training-split
normalizers, the ``OperatorRegression`` task, Adam with the cosine schedule, a Lightning ``Trainer``.
neuraloperator's FNO is plugged into the task of ``experiment=<problem>_fno`` as its network (same
Fourier modes, width and layers as ours). All models see the same data, normalization, loss,
optimizer, schedule, number of epochs and batch order (same seed); they train one after the other in
one process. Written to ``docs/benchmarks.md`` (section ``operators``) with a plot of the validation
error per epoch.

Usage::

    python tools/bench_operators.py --epochs 25 --threads 1                   # full size (make bench)
    python tools/bench_operators.py --epochs 2 --n-train 64 --out /tmp/b.md  # a quick check

Data (default folders; generate them with the commands printed when missing)::

    surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64
    surrogates-generate pde=burgers resolution=256 n_train=1000 n_val=100 n_test=200 name=burgers_256
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from _training_bench import cpu_model, inference_ms_per_sample, train_run  # noqa: E402
from benchmarks_md import update_section  # noqa: E402

PROBLEMS = {
    "darcy": {
        "title": "Darcy flow 2D",
        "data_dir": "datasets/darcy_64",
        "generate": "surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64",
    },
    "burgers": {
        "title": "Burgers 1D",
        "data_dir": "datasets/burgers_256",
        "generate": "surrogates-generate pde=burgers resolution=256 n_train=1000 n_val=100 n_test=200 name=burgers_256",
    },
}

MODELS = ("fno", "mgno", "unet", "neuralop_fno")
LABELS = {"fno": "FNO", "mgno": "MgNO", "unet": "U-Net", "neuralop_fno": "neuraloperator FNO"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=["darcy", "burgers"])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--darcy-dir", type=Path, default=Path(PROBLEMS["darcy"]["data_dir"]))
    p.add_argument("--burgers-dir", type=Path, default=Path(PROBLEMS["burgers"]["data_dir"]))
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--figure", type=Path, default=None,
                   help="default: <out dir>/figures/operators_error_vs_epoch.png")
    return p.parse_args(argv)


# -- training ----------------------------------------------------------------------------------


def describe(problem: str, name: str, model: dict) -> str:
    if name == "neuralop_fno":
        return (f"`neuralop.models.FNO` with its defaults, width {model['width']}, {model['n_layers']} layers, "
                f"the same Fourier modes as ours, in the task of `experiment={problem}_fno`")
    kwargs = {k: v for k, v in model.items() if k not in ("in_channels", "out_channels")}
    return f"`experiment={problem}_{name}`: " + ", ".join(f"{k}={v}" for k, v in kwargs.items())


def run_problem(problem: str, data_dir: Path, args: argparse.Namespace) -> dict:
    overrides = [f"data.data_dir={data_dir.resolve()}"]
    if args.n_train is not None:
        overrides.append(f"++data.n_train={args.n_train}")
    results = {}
    for name in args.models:
        peer = name == "neuralop_fno"
        experiment = f"{problem}_{'fno' if peer else name}"
        r = train_run(experiment, args.seed, args.epochs, peer=peer, overrides=overrides, keep_model=True)
        task, datamodule = r.pop("task"), r.pop("datamodule")
        results[name] = {
            **r,
            "epoch_s": sorted(r["epoch_s"])[len(r["epoch_s"]) // 2],
            "inference_ms": inference_ms_per_sample(task.model, datamodule.test_dataloader()),
            "history": r["val_rel_l2"],
            "description": describe(problem, name, r["model"]),
        }
        print(f"{problem} {name}: test rel. L2 {r['test_rel_l2']:.4f}, {r['samples_per_s']:.1f} samples/s", flush=True)
    first = next(iter(results.values()))
    return {"results": results, "n_train": first["n_train"], "n_test": first["n_test"], "resolution": first["resolution"]}


# -- report ------------------------------------------------------------------------------------


def render_problem(problem: str, report: dict) -> str:
    results = report["results"]
    rows = "\n".join(
        f"| {LABELS[name]} | {r['params']:,} | {r['test_rel_l2']:.4f} | {r['test_rel_h1']:.4f} | "
        f"{r['epoch_s']:.2f} | {r['inference_ms']:.3f} |"
        for name, r in results.items())
    grid = "x".join(str(n) for n in report["resolution"])
    lines = [f"### {PROBLEMS[problem]['title']} ({grid}, {report['n_train']} training / {report['n_test']} test samples)",
             "",
             "| model | parameters | test rel. L2 | test rel. H1 | s / epoch (median) | inference ms / sample |",
             "|---|---:|---:|---:|---:|---:|",
             rows, ""]
    if "fno" in results and "mgno" in results:
        fno, mgno = results["fno"], results["mgno"]
        error_ratio, param_ratio = mgno["test_rel_l2"] / fno["test_rel_l2"], mgno["params"] / fno["params"]
        verdict = "at or below" if error_ratio <= 1 else "above"
        lines += [f"MgNO / FNO: test rel. L2 ratio **{error_ratio:.3f}** ({verdict} FNO's error) with "
                  f"**{param_ratio:.2f}x** the parameters.", ""]
    lines += ["Models:", ""] + [f"- {LABELS[name]}: {r['description']}" for name, r in results.items()]
    return "\n".join(lines)


def render(args: argparse.Namespace, reports: dict[str, dict], figure: Path, out: Path) -> str:
    import neuralop

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    try:
        figure_link = figure.resolve().relative_to(out.resolve().parent)
    except ValueError:
        figure_link = figure
    sections = "\n\n".join(render_problem(problem, report) for problem, report in reports.items())
    return f"""## Neural operators: FNO, MgNO, U-Net and neuraloperator's FNO

Trained through the package, as `surrogates-train experiment=<problem>_<model>` does: the
DataModule of `conf/data/` (per-channel Gaussian normalization with training-split statistics, seeded
shuffle, batch 20), the `OperatorRegression` task (relative L2 loss in physical units), Adam (lr 0.001,
weight decay 0.0001) with the cosine schedule over {args.epochs} epochs, a Lightning `Trainer` without
logger, checkpoint files or progress bar; seed {args.seed} for every model (same batch order);
neuraloperator's FNO is the network of the FNO experiment's task. Models train one after the other in
one process. Errors: the task's `test_step` (mean over the test samples) with the weights of the last
epoch (relative H1 with second-order finite-difference gradients on the data's grid spacing). Seconds
per epoch: median over the epochs of a training epoch (validation excluded). Inference: the saved
model (`task.model`: normalize, network, decode) in eval mode over the test loader (batches of 20),
median of 3 passes, divided by the number of samples.

{sections}

Machine: {cpu_model()}, {args.threads} torch thread(s), torch {torch.__version__}, neuraloperator {neuralop.__version__},
Python {platform.python_version()}. Date: {datetime.date.today().isoformat()}.

Command: `{command}`

![validation error per epoch]({figure_link})
"""


def plot(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 3.6), squeeze=False)
    for ax, (problem, report) in zip(axes[0], reports.items()):
        for name, r in report["results"].items():
            ax.plot(range(1, len(r["history"]) + 1), r["history"], label=f"{LABELS[name]} ({r['params'] / 1e6:.2f}M)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation relative L2")
        ax.set_yscale("log")
        ax.set_title(PROBLEMS[problem]["title"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dirs = {"darcy": args.darcy_dir, "burgers": args.burgers_dir}
    missing = [p for p in args.problems if not all((dirs[p] / f"{s}.h5").exists() for s in ("train", "val", "test"))]
    if missing:
        for problem in missing:
            print(f"no {problem} data in {dirs[problem]} (train.h5, val.h5, test.h5); generate it with:\n"
                  f"  {PROBLEMS[problem]['generate']}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    reports = {problem: run_problem(problem, dirs[problem], args) for problem in args.problems}
    figure = args.figure or args.out.parent / "figures" / "operators_error_vs_epoch.png"
    plot(reports, figure)
    update_section(args.out, "operators", render(args, reports, figure, args.out))
    print(f"wrote {args.out} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
