"""Neural operators side by side: our FNO, MgNO and U-Net and neuraloperator's FNO on Darcy and Burgers.

Every model trains in ONE process with the same data, loss, optimizer, schedule, batch order and
number of epochs, one epoch each in turn (so that machine noise hits all of them). The models are
built from the project's experiment configs (``experiment=darcy_fno``, ``darcy_mgno``,
``darcy_unet``, ``burgers_*``); neuraloperator's FNO keeps the same Fourier modes and width as ours.
Written to ``docs/benchmarks.md`` (section ``operators``) with a plot of test error per epoch.

Usage::

    python tools/bench_operators.py --epochs 25                         # full size (make bench)
    python tools/bench_operators.py --epochs 2 --n-train 64 --n-test 32  # a quick check

Data (default folders; generate them with the commands printed when missing)::

    surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64
    surrogates-generate pde=burgers resolution=256 n_train=1000 n_val=100 n_test=200 name=burgers_256
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
    grid_spacing,
    inference_ms_per_sample,
    load_pair,
    make_optimizer,
    neuralop_fno,
    train_epoch,
)
from benchmarks_md import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PROBLEMS = {
    "darcy": {
        "title": "Darcy flow 2D",
        "data_dir": "datasets/darcy_64",
        "inputs": "a", "targets": "u", "input_time": None, "target_time": None, "dims": ("x", "y"),
        "generate": "surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64",
    },
    "burgers": {
        "title": "Burgers 1D",
        "data_dir": "datasets/burgers_256",
        "inputs": "u", "targets": "u", "input_time": 0, "target_time": -1, "dims": ("x",),
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
    p.add_argument("--n-test", type=int, default=None, help="use only the first N test samples")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--figure", type=Path, default=None,
                   help="default: <out dir>/figures/operators_error_vs_epoch.png")
    return p.parse_args(argv)


# -- models ------------------------------------------------------------------------------------


def experiment_model_configs(problem: str) -> dict[str, dict]:
    """The ``model`` node of ``experiment=<problem>_<model>`` for fno, mgno and unet, resolved."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import surrogates.cli  # noqa: F401  (registers the config resolvers)

    configs = {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name in ("fno", "mgno", "unet"):
            cfg = compose(config_name="train", overrides=[f"experiment={problem}_{name}"])
            configs[name] = OmegaConf.to_container(cfg.model, resolve=True)
    GlobalHydra.instance().clear()
    return configs


def build_models(problem: str, names: list[str], seed: int) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """Models (seeded alike) and a one-line description of each."""
    from hydra.utils import instantiate

    configs = experiment_model_configs(problem)
    models, descriptions = {}, {}
    for name in names:
        torch.manual_seed(seed)
        if name == "neuralop_fno":
            fno = configs["fno"]
            models[name] = neuralop_fno(fno["modes"], fno["width"], fno["n_layers"], dim=fno["dim"])
            descriptions[name] = (f"`neuralop.models.FNO` with its defaults, width {fno['width']}, "
                                  f"{fno['n_layers']} layers, the same Fourier modes as ours")
        else:
            models[name] = instantiate(configs[name])
            kwargs = {k: v for k, v in configs[name].items() if k not in ("_target_", "in_channels", "out_channels")}
            descriptions[name] = f"`experiment={problem}_{name}`: " + ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return models, descriptions


# -- training ----------------------------------------------------------------------------------


def run_problem(problem: str, data_dir: Path, args: argparse.Namespace) -> dict:
    spec = PROBLEMS[problem]
    load = dict(inputs=spec["inputs"], targets=spec["targets"], input_time=spec["input_time"],
                target_time=spec["target_time"])
    a_train, u_train = load_pair(data_dir / "train.h5", limit=args.n_train, **load)
    a_test, u_test = load_pair(data_dir / "test.h5", limit=args.n_test, **load)
    spacing = grid_spacing(data_dir / "test.h5", spec["dims"])
    norm_a, norm_u = Gaussian(a_train), Gaussian(u_train)
    models, descriptions = build_models(problem, args.models, args.seed)
    optimizers = {name: make_optimizer(m, args.lr, args.weight_decay, args.epochs) for name, m in models.items()}
    history = {name: {"epoch_s": [], "test_rel_l2": []} for name in models}
    for epoch in range(args.epochs):
        order = epoch_order(len(a_train), args.seed, epoch)  # the same batches for every model
        for name, model in models.items():
            optimizer, scheduler = optimizers[name]
            history[name]["epoch_s"].append(
                train_epoch(model, optimizer, a_train, u_train, norm_a, norm_u, order, args.batch_size))
            scheduler.step()
            history[name]["test_rel_l2"].append(
                evaluate(model, a_test, u_test, norm_a, norm_u, args.batch_size, spacing)["rel_l2"])
        print(f"{problem} epoch {epoch + 1}/{args.epochs}  " + "  ".join(
            f"{n}: {h['epoch_s'][-1]:.1f}s {h['test_rel_l2'][-1]:.4f}" for n, h in history.items()), flush=True)
    results = {}
    for name, model in models.items():
        errors = evaluate(model, a_test, u_test, norm_a, norm_u, args.batch_size, spacing)
        results[name] = {
            "params": count_parameters(model),
            "test_rel_l2": errors["rel_l2"],
            "test_rel_h1": errors["rel_h1"],
            "epoch_s": statistics.median(history[name]["epoch_s"]),
            "inference_ms": inference_ms_per_sample(model, a_test, norm_a, args.batch_size),
            "history": history[name]["test_rel_l2"],
            "description": descriptions[name],
        }
    return {"results": results, "n_train": len(a_train), "n_test": len(a_test),
            "resolution": list(a_train.shape[2:])}


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

Same budget for every model: {args.epochs} epochs, batch {args.batch_size}, Adam (lr {args.lr}, weight decay
{args.weight_decay}), cosine schedule over the epochs, relative L2 loss in physical units, per-channel
Gaussian normalization of input and target (training statistics), identical batch order; all models
trained in one process, one epoch each in turn. Errors: mean over the test samples after the last
epoch (relative H1 with second-order finite-difference gradients on the data's grid spacing).
Seconds per epoch: median training time of an epoch. Inference: forward passes in eval mode over the
test set in batches of {args.batch_size}, median of 3 passes, divided by the number of samples.

{sections}

Machine: {cpu_model()}, {args.threads} threads, torch {torch.__version__}, neuraloperator {neuralop.__version__},
Python {platform.python_version()}. Date: {datetime.date.today().isoformat()}.

Command: `{command}`

![test error per epoch]({figure_link})
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
        ax.set_ylabel("test relative L2")
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
    missing = [p for p in args.problems if not all((dirs[p] / f"{s}.h5").exists() for s in ("train", "test"))]
    if missing:
        for problem in missing:
            print(f"no {problem} data in {dirs[problem]} (train.h5, test.h5); generate it with:\n"
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
