"""Our FNO against neuraloperator's FNO, trained through the package: same data, task, loss, optimizer, batches.

Every run is ``surrogates-train experiment=darcy_fno`` (or ``burgers_fno``) in-process (see
``tools/_training_bench.py``): the package's DataModule with its training-split normalizers, the
``OperatorRegression`` task with its ``NormalizedOperator``, Adam and the cosine schedule of
``conf/task/operator_regression.yaml``, a Lightning ``Trainer``. The peer, ``neuralop.models.FNO``
with its defaults and the same Fourier modes, width and layers, is plugged into the same task as its
network. Runs are interleaved (ours seed 0, peer seed 0, ours seed 1, ...) so that machine noise hits
both; throughput is measured in the same runs (training samples per second of an epoch, median over
epochs). Each seed gives one error ratio and one throughput ratio (ours / peer); the report gives
their mean and standard deviation over the seeds. Written to ``docs/benchmarks.md`` (section
``fno_darcy``) with a plot of the validation error per epoch.

Results are appended to a JSON file run by run (``--results``), and a rerun with the same settings
skips the runs already there, so an interrupted benchmark resumes. ``--variant NAME
--ours model.KEY=VALUE ...`` trains a variant of our FNO (ablations) under its own name;
``--peer-kwargs '{"use_channel_mlp": false}'`` changes the peer.

Usage::

    python tools/bench_fno_darcy.py --epochs 10 --seeds 0 1 2 --threads 1
    python tools/bench_fno_darcy.py --problem burgers --epochs 30 --no-docs

Mode sets: our ``modes=m`` keeps frequencies ``[-m, m-1] x [0, m-1]``. ``neuralop``'s SpectralConv
with ``n_modes=(2m, 2m-2)`` keeps, on the first dim, the ``2m`` bins centred on zero after
``fftshift`` (slice ``[n/2 - m, n/2 + m)``, i.e. frequencies ``[-m, m-1]``), and on the last (rfft)
dim ``(2m-2) // 2 + 1 = m`` bins (frequencies ``[0, m-1]``): the same set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from _training_bench import cpu_model, mean_std, train_run  # noqa: E402
from benchmarks_md import update_section  # noqa: E402

PROBLEMS = {
    "darcy": {"experiment": "darcy_fno", "data_dir": "datasets/darcy_64", "title": "Darcy flow",
              "generate": "surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64"},
    "burgers": {"experiment": "burgers_fno", "data_dir": "datasets/burgers_256", "title": "Burgers 1D",
                "generate": "surrogates-generate pde=burgers resolution=256 n_train=1000 n_val=100 n_test=200 "
                            "name=burgers_256"},
}


ABLATION_TEXT = """Every run of the results files, grouped by problem, size and model (mean +- std over the seeds
listed; same training path as above). "change" lists the variant's constructor overrides of our FNO
(`conf/model/fno.yaml` otherwise) or the arguments given to neuraloperator's FNO."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problem", choices=sorted(PROBLEMS), default="darcy")
    p.add_argument("--data-dir", type=Path, default=None, help="default: datasets/darcy_64 or datasets/burgers_256")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variant", default="default", help="name of our FNO's variant (with --ours overrides)")
    p.add_argument("--ours", nargs="*", default=[], help="Hydra overrides of our model, e.g. model.padding=0.1")
    p.add_argument("--peer-variant", default="default")
    p.add_argument("--peer-kwargs", type=json.loads, default={}, help="JSON: extra neuralop.models.FNO arguments")
    p.add_argument("--only", choices=["ours", "peer"], default=None, help="train one side only")
    p.add_argument("--results", type=Path, default=None, help="default: outputs/bench/fno_<problem>.json")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    p.add_argument("--ablations", type=Path, nargs="*", default=None,
                   help="results files whose variants are tabulated under the comparison "
                        "(default: outputs/bench/fno_darcy.json and fno_burgers.json)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--figure", type=Path, default=None, help="default: <out dir>/figures/fno_darcy_error.png")
    return p.parse_args(argv)


# -- runs --------------------------------------------------------------------------------------


def run_key(args: argparse.Namespace, side: str, seed: int) -> str:
    variant = args.variant if side == "ours" else args.peer_variant
    return f"{args.problem}|n_train={args.n_train}|epochs={args.epochs}|{side}:{variant}|seed={seed}"


def load_results(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(path: Path, results: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def run(args: argparse.Namespace, results_path: Path) -> dict[str, dict]:
    spec = PROBLEMS[args.problem]
    data_dir = (args.data_dir or Path(spec["data_dir"])).resolve()
    overrides = [f"data.data_dir={data_dir}"]
    if args.n_train is not None:
        overrides.append(f"++data.n_train={args.n_train}")
    sides = [args.only] if args.only else ["ours", "peer"]
    results = load_results(results_path)
    for seed in args.seeds:
        for side in sides:  # interleaved: ours seed 0, peer seed 0, ours seed 1, ...
            key = run_key(args, side, seed)
            if key in results:
                print(f"{key}: done before, skipped", flush=True)
                continue
            run_overrides = overrides + (list(args.ours) if side == "ours" else [])
            out = train_run(spec["experiment"], seed, args.epochs, peer=side == "peer", overrides=run_overrides,
                            peer_kwargs=args.peer_kwargs if side == "peer" else None)
            out.update(side=side, variant=args.variant if side == "ours" else args.peer_variant,
                       overrides=run_overrides, peer_kwargs=args.peer_kwargs if side == "peer" else None,
                       date=datetime.date.today().isoformat(), threads=torch.get_num_threads(),
                       cpu=cpu_model(), torch=torch.__version__, command=command())
            results[key] = out
            save_results(results_path, results)
            print(f"{key}: test rel. L2 {out['test_rel_l2']:.4f}, {out['samples_per_s']:.1f} samples/s", flush=True)
    return results


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def paired(args: argparse.Namespace, results: dict[str, dict]) -> list[tuple[dict, dict]]:
    """(ours, peer) for each seed that has both."""
    pairs = []
    for seed in args.seeds:
        ours, peer = results.get(run_key(args, "ours", seed)), results.get(run_key(args, "peer", seed))
        if ours and peer:
            pairs.append((ours, peer))
    return pairs


def summary(pairs: list[tuple[dict, dict]]) -> dict[str, tuple[float, float]]:
    return {
        "error_ratio": mean_std([o["test_rel_l2"] / p["test_rel_l2"] for o, p in pairs]),
        "throughput_ratio": mean_std([o["samples_per_s"] / p["samples_per_s"] for o, p in pairs]),
        "ours_rel_l2": mean_std([o["test_rel_l2"] for o, _ in pairs]),
        "peer_rel_l2": mean_std([p["test_rel_l2"] for _, p in pairs]),
        "ours_samples_per_s": mean_std([o["samples_per_s"] for o, _ in pairs]),
        "peer_samples_per_s": mean_std([p["samples_per_s"] for _, p in pairs]),
    }


# -- report ------------------------------------------------------------------------------------


def ablation_table(paths: list[Path]) -> str:
    """Mean +- std test error and throughput of every (problem, size, model variant) in the results files."""
    groups: dict[tuple, list[dict]] = {}
    for path in paths:
        for key, r in load_results(path).items():
            problem, n_train, epochs = key.split("|")[:3]
            label = ("ours" if r["side"] == "ours" else "neuralop") + (f" {r['variant']}" if r["variant"] != "default" else "")
            change = " ".join(o for o in r["overrides"] if o.startswith("model.")) if r["side"] == "ours" else \
                ", ".join(f"{k}={v}" for k, v in (r.get("peer_kwargs") or {}).items())
            groups.setdefault((problem, r["n_train"], epochs.split("=")[1], label, change), []).append(r)
    if not groups:
        return ""
    rows = []
    for (problem, n_train, epochs, label, change), runs in groups.items():
        l2, rate = mean_std([r["test_rel_l2"] for r in runs]), mean_std([r["samples_per_s"] for r in runs])
        seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        rows.append(f"| {problem} | {n_train} | {epochs} | {label} | {change or '-'} | {runs[0]['params']:,} | {seeds} | "
                    f"{l2[0]:.3g} +- {l2[1]:.2g} | {rate[0]:.1f} |")
    ratios = []
    for (problem, n_train, epochs, label, change), runs in groups.items():
        if label != "ours":
            continue
        peers = {r["seed"]: r for r in groups.get((problem, n_train, epochs, "neuralop", ""), [])}
        pairs = [(r, peers[r["seed"]]) for r in runs if r["seed"] in peers]
        if pairs:
            s = summary(pairs)
            ratios.append(f"- {problem}, {n_train} training samples, {epochs} epochs, {len(pairs)} seed(s): error ratio "
                          f"(ours / neuralop) **{s['error_ratio'][0]:.3f} +- {s['error_ratio'][1]:.3f}**, throughput "
                          f"ratio **{s['throughput_ratio'][0]:.2f}x +- {s['throughput_ratio'][1]:.2f}**")
    return "\n".join([
        "| problem | training samples | epochs | model | change | parameters | seeds | test rel. L2 | samples / s |",
        "|---|---:|---:|---|---|---:|---|---:|---:|", *rows, "", *ratios])


def render(args: argparse.Namespace, pairs: list[tuple[dict, dict]], figure: Path, out: Path, ablations: str = "") -> str:
    import neuralop

    s = summary(pairs)
    ours0, peer0 = pairs[0]
    rows = "\n".join(
        f"| {o['seed']} | {o['test_rel_l2']:.4f} | {p['test_rel_l2']:.4f} | {o['test_rel_l2'] / p['test_rel_l2']:.3f} | "
        f"{o['samples_per_s']:.1f} | {p['samples_per_s']:.1f} | {o['samples_per_s'] / p['samples_per_s']:.2f}x |"
        for o, p in pairs)
    m = ours0["model"]
    modes, width = m["modes"], m["width"]
    grid = "x".join(str(n) for n in ours0["resolution"])
    try:
        figure_link = figure.resolve().relative_to(out.resolve().parent)
    except ValueError:
        figure_link = figure
    er, tr = s["error_ratio"], s["throughput_ratio"]
    er_verdict = "met" if er[0] <= 1.0 else "not met"
    tr_verdict = "met" if tr[0] >= 1.2 else "not met"
    ours_args = ", ".join(f"{k}={v}" for k, v in m.items())
    return f"""## FNO on Darcy flow: `surrogates` vs `neuraloperator`

Trained through the package, as `surrogates-train experiment={PROBLEMS[args.problem]['experiment']}` does:
the DataModule of `conf/data/` (`FieldDataModule`, per-channel Gaussian normalization with training-split
statistics, seeded shuffle), the `OperatorRegression` task (its `NormalizedOperator`, relative L2 loss in
physical units), Adam (lr 0.001, weight decay 0.0001) with the cosine schedule over the epochs, batch
20, a Lightning `Trainer` without logger, checkpoint files or progress bar; the test split is evaluated
by the task's `test_step` with the weights of the last epoch. neuraloperator's FNO is plugged into the
same task as its network, so both see the same data, normalization, loss, optimizer, schedule and batch
order (same seed). Runs interleaved: ours seed 0, neuralop seed 0, ours seed 1, ...

Darcy {grid}, {ours0['n_train']} training{' (the first ' + str(ours0['n_train']) + ' of the generated split, `--n-train`)' if args.n_train else ''} / {ours0['n_test']} test samples, {args.epochs} epochs,
{len(pairs)} seeds ({', '.join(str(o['seed']) for o, _ in pairs)}; a seed sets the weights' initialization
and the batch order). Throughput: training samples per second of an epoch (data loading, forward,
backward, Adam and the task's logging; validation excluded), median over the epochs of the run.

| seed | ours test rel. L2 | neuralop test rel. L2 | error ratio | ours samples / s | neuralop samples / s | throughput ratio |
|---:|---:|---:|---:|---:|---:|---:|
{rows}

- error ratio (ours / neuralop), mean +- std over {len(pairs)} seeds: **{er[0]:.3f} +- {er[1]:.3f}** (goal <= 1.0: {er_verdict});
  test rel. L2 ours {s['ours_rel_l2'][0]:.4f} +- {s['ours_rel_l2'][1]:.4f}, neuralop {s['peer_rel_l2'][0]:.4f} +- {s['peer_rel_l2'][1]:.4f}
- training throughput ratio (ours / neuralop): **{tr[0]:.2f}x +- {tr[1]:.2f}** (goal >= 1.2x: {tr_verdict});
  ours {s['ours_samples_per_s'][0]:.1f} +- {s['ours_samples_per_s'][1]:.1f} samples/s, neuralop {s['peer_samples_per_s'][0]:.1f} +- {s['peer_samples_per_s'][1]:.1f}

Parameters: ours {ours0['params']:,}, neuralop {peer0['params']:,}.

Models: `surrogates.models.FNO({ours_args})` (linear lifting,
spectral conv + linear skip per layer, projection MLP {width} -> {m['projection_channels']} -> 1) and
`neuralop.models.FNO(n_modes=({2 * modes}, {2 * modes - 2}), hidden_channels={width}, in_channels=1, out_channels=1,
n_layers={m['n_layers']}{''.join(f', {k}={v}' for k, v in (peer0.get('peer_kwargs') or {}).items())})` with its defaults otherwise
(grid positional embedding, 2-layer lifting MLP with {2 * width} hidden channels, a channel MLP with
soft-gating skip after every Fourier layer, linear Fourier skip, projection {width} -> {2 * width} -> 1).
Both keep the same Fourier modes: ours keeps frequencies [-{modes}, {modes - 1}] x [0, {modes - 1}];
neuralop's SpectralConv keeps the {2 * modes} `fftshift`-centred bins of the first dimension (frequencies
[-{modes}, {modes - 1}]) and ({2 * modes - 2}) // 2 + 1 = {modes} rfft bins of the last (frequencies [0, {modes - 1}]).

Machine: {cpu_model()}, {ours0['threads']} torch thread(s), one training process at a time, torch {torch.__version__},
neuraloperator {neuralop.__version__}, Python {platform.python_version()}. Date: {ours0['date']}.

Data: `{PROBLEMS[args.problem]['generate']}`

Command: `{ours0['command'].replace(' --no-docs', '')}`

![validation error per epoch]({figure_link})
{ablations}"""


def plot(pairs: list[tuple[dict, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (o, p) in enumerate(pairs):
        for r, name, color in ((o, "surrogates", "C0"), (p, "neuralop", "C1")):
            ax.plot(range(1, len(r["val_rel_l2"]) + 1), r["val_rel_l2"], color=color, alpha=0.8,
                    label=name if i == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation relative L2")
    ax.set_yscale("log")
    ax.set_title(f"FNO on {title} ({len(pairs)} seeds)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = PROBLEMS[args.problem]
    data_dir = args.data_dir or Path(spec["data_dir"])
    if not all((data_dir / f"{split}.h5").exists() for split in ("train", "val", "test")):
        print(f"no {args.problem} data in {data_dir} (train.h5, val.h5, test.h5); generate it with:\n  {spec['generate']}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results_path = args.results or Path(f"outputs/bench/fno_{args.problem}.json")
    results = run(args, results_path)
    pairs = paired(args, results)
    if not pairs:
        print(f"results in {results_path}")
        return 0
    s = summary(pairs)
    print(f"{len(pairs)} seeds: error ratio {s['error_ratio'][0]:.3f} +- {s['error_ratio'][1]:.3f}, "
          f"throughput ratio {s['throughput_ratio'][0]:.2f} +- {s['throughput_ratio'][1]:.2f}; results in {results_path}")
    if not args.no_docs:
        figure = args.figure or args.out.parent / "figures" / "fno_darcy_error.png"
        plot(pairs, figure, spec["title"])
        paths = args.ablations if args.ablations is not None else [Path("outputs/bench/fno_darcy.json"),
                                                                    Path("outputs/bench/fno_burgers.json")]
        table = ablation_table([p for p in paths if p.exists()])
        ablations = f"\n### All runs, variants included\n\n{ABLATION_TEXT}\n\n{table}\n" if table else ""
        update_section(args.out, "fno_darcy", render(args, pairs, figure, args.out, ablations))
        print(f"wrote {args.out} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
