"""TFNO and MG-TFNO against the dense FNO and neuraloperator's TFNO, on Darcy and 2D Navier-Stokes.

Part 1 (accuracy and size): for each problem and seed, four networks train through the package's
training path (``tools/_training_bench.train_run``: the experiment's DataModule, OperatorRegression
task, normalization, loss, Adam + cosine schedule, Lightning Trainer) on the same data, budget and batch
order: the dense FNO (``experiment=darcy_fno``), our TFNO (``darcy_tfno``), our MG-TFNO
(``darcy_mg_tfno``) and ``neuralop.models.TFNO`` (neuraloperator's FNO with ``factorization="tucker"``
and the same rank fraction, same modes, width and layers, its other defaults) in the same task.

* Darcy: coefficient ``a`` -> pressure ``u`` (``surrogates-generate pde=darcy resolution=64``).
* Navier-Stokes: vorticity ``w(t=0) -> w(T)``, ``T`` the last stored time (``surrogates-generate
  pde=navier_stokes resolution=64 pde.n_snapshots=5 pde.final_time=1.0 pde.dt=0.02``: ``T = 1``,
  ``nu = 1e-3``), read by the
  package's FieldDataModule with ``input_time=0, target_time=-1``; periodic embedding and patches.

Part 2 (memory at 256x256, Darcy): each of the dense FNO and MG-TFNO (levels=2: 4x4 patches of 64
points with 8 points of padding, one patch position per chunk) trains a few steps in a child process;
the peak training memory is the child's peak resident set (``ru_maxrss``) minus its resident set just
before the first step (data, model, optimizer state and one-time allocations of a warm-up step on
64x64 sub-sampled fields already in memory), same batch. Then both train a
short small-data run at 256x256 through the package's training path for the error ratio.

Usage::

    python tools/bench_tfno.py --data-root /tmp/tfno-data --seeds 0 1 2 --epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_bench import compose, cpu_model, mean_std, train_run  # noqa: E402
from benchmarks_md import update_section  # noqa: E402

from surrogates.nn.factorized_weights import RECOMMENDED_ROUND_UP_MODES  # noqa: E402  (the configs' rule)

ROOT = Path(__file__).resolve().parents[1]
RANK = 0.09
NEURALOP_TFNO = {"factorization": "tucker", "rank": RANK}
# neuraloperator's ranks move in steps (its 0.09 holds fewer parameters than ours, the next step, from 0.095,
# more): the peer at both brackets our parameter count
RANK_UP = 0.095
NEURALOP_TFNO_UP = {"factorization": "tucker", "rank": RANK_UP}
PEER_UP = f"TFNO (neuralop, rank {RANK_UP})"

MODELS = {  # name -> (experiment, the neuraloperator peer's TFNO options, or None for the package's own network)
    "FNO (dense)": ("darcy_fno", None),
    "TFNO (ours)": ("darcy_tfno", None),
    "MG-TFNO (ours)": ("darcy_mg_tfno", None),
    "TFNO (neuralop)": ("darcy_fno", NEURALOP_TFNO),
    PEER_UP: ("darcy_fno", NEURALOP_TFNO_UP),
}


def problem_overrides(problem: str, data_root: Path, n_train: int, batch_size: int) -> list[str]:
    """Hydra overrides that point the Darcy experiments at a problem's data."""
    common = [f"data.n_train={n_train}", f"data.batch_size={batch_size}"]
    if problem == "darcy":
        return [f"data.data_dir={data_root / 'darcy_64'}", *common, f"model.rank={RANK}"]
    return [
        f"data.data_dir={data_root / 'ns_64'}", *common, "data.inputs=[omega]",
        "data.targets=[omega]", "+data.input_time=0", "+data.target_time=-1", "model.grid=periodic",
        f"model.rank={RANK}",
    ]


def model_overrides(name: str, problem: str) -> list[str]:
    """Per-model overrides: MG-TFNO runs all patches at once here (the same function as chunked, faster;
    chunks matter for memory, part 2) and wraps around on the periodic problem."""
    if not name.startswith("MG"):
        return []
    return ["model.patches_per_chunk=0"] + (["model.boundary=periodic"] if problem == "ns" else [])


def accuracy(args: argparse.Namespace, results: dict) -> dict:
    """Every model on every problem, one run per seed. With several ``--lrs``, each model's learning rate is the
    one of the lowest final validation error on the first seed (the same grid for every model), then the other
    seeds run at it; ``results["<problem>/<model>/lr"]`` records the choice."""
    for problem in args.problems:
        for name, (experiment, peer_kwargs) in MODELS.items():
            if name not in args.models:
                continue
            overrides = (problem_overrides(problem, args.data_root, args.n_train, args.batch_size)
                         + model_overrides(name, problem))
            if experiment == "darcy_fno":
                overrides = [o for o in overrides if not o.startswith("model.rank")]
            if args.weight_decay is not None:
                overrides.append(f"task.optimizer.weight_decay={args.weight_decay}")

            def run(seed: int, lr: float | None) -> dict:
                out = train_run(experiment, seed, args.epochs, peer=peer_kwargs is not None, peer_kwargs=peer_kwargs,
                                overrides=overrides + ([f"task.optimizer.lr={lr}"] if lr is not None else []))
                record = {k: out[k] for k in ("params", "test_rel_l2", "samples_per_s", "n_train", "n_test", "resolution")}
                record["val_rel_l2"] = out["val_rel_l2"][-1] if out["val_rel_l2"] else None
                return record

            lr = None
            if len(args.lrs) > 1:  # pick on the validation split of the first seed
                for candidate in args.lrs:
                    key = f"{problem}/{name}/lr={candidate:g}/{args.seeds[0]}"
                    if key not in results:
                        results[key] = run(args.seeds[0], candidate)
                        print(f"{key}: val rel. L2 {results[key]['val_rel_l2']:.4f}", flush=True)
                        save(args, results)
                lr = min(args.lrs, key=lambda c: results[f"{problem}/{name}/lr={c:g}/{args.seeds[0]}"]["val_rel_l2"])
                results[f"{problem}/{name}/lr"] = lr
            elif args.lrs:
                lr = args.lrs[0]
            for seed in args.seeds:
                key = f"{problem}/{name}/{seed}"
                if key in results:
                    continue
                chosen = f"{problem}/{name}/lr={lr:g}/{seed}" if lr is not None else None
                results[key] = results[chosen] if chosen in results else run(seed, lr)
                print(f"{key}: rel. L2 {results[key]['test_rel_l2']:.4f}, {results[key]['params']:,} parameters", flush=True)
                save(args, results)
    return results


# -- memory at 256x256 ---------------------------------------------------------------------------
MEMORY_MODELS = {
    "FNO (dense)": ("darcy_fno", []),
    "MG-TFNO (ours)": ("darcy_mg_tfno", ["model.levels=2", "model.patches_per_chunk=1", f"model.rank={RANK}"]),
}


ALLOCATORS = {  # name -> (environment of the child, MG-TFNO releases freed memory between chunks)
    # glibc's default: its mmap threshold grows up to 32 MiB as large blocks are freed, and freed blocks
    # below it stay in the heap (resident) for reuse; MG-TFNO trims the heap between its patch chunks.
    "glibc default": ({}, True),
    # the same without the trimming (MG-TFNO before it did so): the freed per-chunk activations stay resident.
    "glibc default, no release between chunks": ({}, False),
    # a fixed 128 KiB threshold: every tensor above it is its own mapping, returned on free, so the
    # resident set follows the live tensors.
    "mmap threshold 128 KiB": ({"MALLOC_MMAP_THRESHOLD_": "131072"}, True),
}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(name: str, data_dir: Path, batch_size: int, steps: int, release: bool = True) -> None:
    """Train ``steps`` steps of ``name`` on 256x256 Darcy; print peak and baseline memory (KiB) as JSON.

    ``release=False`` turns MG-TFNO's heap trimming between patch chunks off (for the comparison).
    """
    from hydra.utils import instantiate

    import surrogates.models.mg_tfno as mg_tfno
    from surrogates import metrics

    if not release:
        mg_tfno.release_free_memory = lambda: None

    experiment, extra = MEMORY_MODELS[name]
    cfg = compose(experiment, [f"data.data_dir={data_dir}", f"data.batch_size={batch_size}", *extra])
    torch.manual_seed(0)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    task = instantiate(cfg.task, net=instantiate(cfg.model))
    task.model.input_normalizer.load_state_dict(datamodule.input_normalizer.state_dict())
    task.model.target_normalizer.load_state_dict(datamodule.target_normalizer.state_dict())
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-3)
    batch = next(iter(datamodule.train_dataloader()))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:  # the task's training loss, as its training_step has it
        optimizer.zero_grad()
        metrics.compute_metric("rel_l2", task(x), y).mean().backward()
        optimizer.step()

    # A warm-up step on the fields sub-sampled to 64x64: one-time allocations (thread pools, FFT plans,
    # Adam's state) go into the baseline, not into the training memory.
    step(batch["x"][..., ::4, ::4], batch["y"][..., ::4, ::4])
    baseline = rss_kib()
    start = time.perf_counter()
    for _ in range(steps):
        step(batch["x"], batch["y"])
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # After the resident-set peak is read: one more step under the profiler, for the peak of the live
    # tensors' bytes above those alive before it (what torch.cuda.max_memory_allocated reports on a GPU).
    live = peak_live_bytes(lambda: step(batch["x"], batch["y"]))
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "live_peak_kib": live / 1024,
                      "s_per_step": seconds, "batch": int(batch["x"].shape[0])}))


def peak_live_bytes(fn) -> int:
    """Peak, over the run of ``fn()``, of the bytes of tensors allocated minus freed since it started.

    From the CPU allocation events of ``torch.profiler`` (``profile_memory``), in time order; tensors
    alive before the call count only when freed (negative), as on a GPU, where the peak above the
    memory allocated at the start is ``max_memory_allocated - memory_allocated``.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def memory(args: argparse.Namespace, results: dict) -> dict:
    for allocator, (env, release) in ALLOCATORS.items():
        for name in MEMORY_MODELS:
            key = f"memory/{allocator}/{name}"
            if key in results:
                continue
            command = [sys.executable, __file__, "--memory-child", name, "--data-root", str(args.data_root),
                       "--threads", str(args.threads), "--memory-steps", str(args.memory_steps)]
            command += [] if release else ["--memory-no-release"]
            out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **env})
            results[key] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{key}: {results[key]}", flush=True)
            save(args, results)
    for seed in args.seeds_256:
        for name, (experiment, extra) in MEMORY_MODELS.items():
            key = f"256/{name}/{seed}"
            if key in results:
                continue
            # all patch positions at once: the function (loss, gradients) of the chunked model, faster
            extra = [o.replace("patches_per_chunk=1", "patches_per_chunk=0") for o in extra]
            overrides = [f"data.data_dir={args.data_root / 'darcy_256'}", "data.batch_size=4", *extra]
            out = train_run(experiment, seed, args.epochs_256, overrides=overrides)
            results[key] = {k: out[k] for k in ("params", "test_rel_l2", "samples_per_s", "n_train", "n_test")}
            print(f"{key}: rel. L2 {out['test_rel_l2']:.4f}", flush=True)
            save(args, results)
    return results


def trim_cost(args: argparse.Namespace, results: dict) -> dict:
    """CPU time of an MG-TFNO training step (256x256, batch 4, levels=2, one position per chunk) with and
    without the heap trimming between chunks, interleaved in one process so both see the same load."""
    from surrogates.models.mg_tfno import MGTFNO

    if "trim_cost" in results:
        return results
    torch.manual_seed(0)
    model = MGTFNO(1, 1, modes=12, width=32, n_layers=4, rank=RANK, levels=2, boundary="reflect",
                   patches_per_chunk=1, round_up_modes=RECOMMENDED_ROUND_UP_MODES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 1, 256, 256), torch.randn(4, 1, 256, 256)

    def step() -> float:
        start = time.process_time()  # user + system: the page faults after a trim count
        optimizer.zero_grad()
        (model(x) - y).square().mean().backward()
        optimizer.step()
        return time.process_time() - start

    step()
    cpu = {"release": [], "none": []}
    for _ in range(args.trim_repeats):
        for mode in cpu:
            model.release_memory = mode == "release"
            cpu[mode].append(step())
            print(f"trim cost: {mode} {cpu[mode][-1]:.2f} s", flush=True)
    results["trim_cost"] = cpu
    save(args, results)
    return results


# -- report ----------------------------------------------------------------------------------------
def save(args: argparse.Namespace, results: dict) -> None:
    args.results.write_text(json.dumps(results, indent=1))


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def spectral_note() -> str:
    """How the same rank fraction splits into spectral and other parameters in the two TFNOs."""
    from neuralop.models import TFNO as NeuralopTFNO

    from surrogates.models.tfno import TFNO

    count = lambda ps: sum(p.numel() * (2 if p.is_complex() else 1) for p in ps)  # noqa: E731
    ours = TFNO(1, 1, modes=12, width=32, n_layers=4, rank=RANK, round_up_modes=RECOMMENDED_ROUND_UP_MODES)
    peer = NeuralopTFNO(n_modes=(24, 22), in_channels=1, out_channels=1, hidden_channels=32, n_layers=4,
                        factorization="tucker", rank=RANK)
    ours_spectral = count(ours.factorized.parameters())
    peer_spectral = count(p for n, p in peer.named_parameters() if n.startswith("fno_blocks.convs.") and "weight" in n)
    peer_ranks = tuple(peer.fno_blocks.convs[0].weight.rank)
    return (f"At the same fraction the two hold different spectral parameter counts: ours {ours_spectral:,} (Tucker "
            f"ranks {', '.join(map(str, ours.factorized.ranks))} of layers, modes, modes, channels, channels, "
            f"real/imaginary), neuraloperator's {peer_spectral:,} (complex entries counted twice; per layer ranks "
            f"{', '.join(map(str, peer_ranks))} of channels, channels, modes, modes), the rest (lifting, channel "
            f"MLPs, skips, projection) {count(ours.parameters()) - ours_spectral:,} vs "
            f"{count(peer.parameters()) - peer_spectral:,}.")


def layer_rank() -> int:
    """Our TFNO's Tucker rank over the layer mode at the benchmark's fraction (the models' default rule)."""
    from surrogates.models.tfno import TFNO

    return TFNO(1, 1, modes=12, width=32, n_layers=4, rank=RANK, round_up_modes=RECOMMENDED_ROUND_UP_MODES).factorized.ranks[0]


def render(args: argparse.Namespace, results: dict) -> str:
    lines = [
        "## TFNO and MG-TFNO (`tools/bench_tfno.py`)",
        "",
        f"Machine: {cpu_model()}, 2 cores shared with other jobs, torch {torch.__version__}, "
        f"{args.threads} thread(s). One run per seed, seeds {', '.join(map(str, args.seeds))}; the same data, "
        f"normalization, loss (relative L2), Adam + cosine schedule, batch size {args.batch_size} and {args.epochs} epochs "
        "for every network (the darcy_* experiments' settings: modes 12, width 32, 4 layers)"
        + (f", Adam weight decay {args.weight_decay:g}" if args.weight_decay is not None else "")
        + (f"; each network's learning rate is the one of {', '.join(f'{lr:g}' for lr in args.lrs)} with the lowest "
           f"validation error on seed {args.seeds[0]} (column `lr`), the same grid for all. " if len(args.lrs) > 1 else ". ")
        + "" 
        f"Tucker rank fraction {RANK} for our TFNO (one tensor for all layers) and for neuraloperator's TFNO "
        "(`neuralop.models.TFNO`, one Tucker tensor per layer, its default lifting and channel MLPs). "
        f"{spectral_note()} "
        "MG-TFNO: levels=1 (2x2 patches, padding 1/8 of a patch, the whole field at half resolution as "
        "context). Test relative L2 error on the test split, mean +- std over seeds.",
        "",
        "- Darcy: `a -> u`, 64x64 (`surrogates-generate pde=darcy resolution=64 n_train=120 n_val=20 n_test=50 "
        "name=darcy_64`); 256x256 for the memory part (`... resolution=256 n_train=24 n_val=4 n_test=8 "
        "name=darcy_256`).",
        "- Navier-Stokes: vorticity `w(0) -> w(T)`, T = 1, nu = 1e-3, 64x64 (`surrogates-generate "
        "pde=navier_stokes resolution=64 pde.n_snapshots=5 pde.final_time=1.0 pde.dt=0.02 n_train=100 n_val=10 "
        "n_test=40 name=ns_64`), periodic embedding and patches.",
        "",
        "| problem | train / test samples | model | parameters | lr | test rel. L2 | vs dense FNO |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    goals = []
    for problem in args.problems:
        runs = {name: [results[f"{problem}/{name}/{s}"] for s in args.seeds if f"{problem}/{name}/{s}" in results]
                for name in MODELS}
        if not runs["FNO (dense)"]:
            continue
        dense_error = mean_std([r["test_rel_l2"] for r in runs["FNO (dense)"]])[0]
        for name, rs in runs.items():
            if not rs:
                continue
            m, s = mean_std([r["test_rel_l2"] for r in rs])
            lr = results.get(f"{problem}/{name}/lr", args.lrs[0] if len(args.lrs) == 1 else 1e-3)
            lines.append(f"| {problem} | {rs[0]['n_train']} / {rs[0]['n_test']} | {name} | {rs[0]['params']:,} | {lr:g} | "
                         f"{m:.4f} +- {s:.4f} | {m / dense_error:.2f}x |")
        dense_params = runs["FNO (dense)"][0]["params"]
        if runs["TFNO (ours)"]:
            ours = mean_std([r["test_rel_l2"] for r in runs["TFNO (ours)"]])[0]
            p_ratio = runs["TFNO (ours)"][0]["params"] / dense_params
            goals.append(f"- {problem}: TFNO with <= 1/10 of the dense parameters at <= 1.1x its error: parameters "
                         f"{p_ratio:.3f}x, error {ours / dense_error:.2f}x: "
                         f"{verdict(p_ratio <= 0.1 and ours <= 1.1 * dense_error)}.")
            if runs["TFNO (neuralop)"]:
                peer = mean_std([r["test_rel_l2"] for r in runs["TFNO (neuralop)"]])[0]
                goals.append(f"- {problem}: our TFNO's error <= neuraloperator's TFNO at the same rank: "
                             f"{ours:.4f} vs {peer:.4f} ({ours / peer:.2f}x): {verdict(ours <= peer)}.")
            if runs[PEER_UP]:
                up = mean_std([r["test_rel_l2"] for r in runs[PEER_UP]])[0]
                goals.append(f"- {problem} (check, not a goal): our TFNO against neuraloperator's one rank step up "
                             f"({runs[PEER_UP][0]['params']:,} parameters against our {runs['TFNO (ours)'][0]['params']:,}): "
                             f"{ours:.4f} vs {up:.4f} ({ours / up:.2f}x).")
    memory_ratios, live_ratio = {}, None
    for allocator in ALLOCATORS:
        runs = {name: results.get(f"memory/{allocator}/{name}") for name in MEMORY_MODELS}
        if None in runs.values():
            continue
        if not memory_ratios:
            lines += [
                "",
                f"Memory at 256x256 (Darcy, batch {runs['FNO (dense)']['batch']}, {args.memory_steps} training steps "
                "in a child process; training memory = peak resident set minus the resident set before the first "
                "step, with data, model, optimizer state and the one-time allocations of a warm-up step on 64x64 "
                "sub-sampled fields loaded). MG-TFNO: levels=2 (4x4 patches of 64 points, 8 points of padding, "
                "context at 1/2 and 1/4 resolution), one patch position per chunk with activation checkpointing, "
                "the heap's free pages returned to the OS (`malloc_trim`) after every chunk's forward and before "
                "every chunk's backward. Allocator settings (both models alike): glibc's default keeps freed blocks "
                "below its adaptive mmap threshold (up to 32 MiB) resident, so without the trimming MG-TFNO's "
                "freed per-chunk activations (a few MiB each) stay in its resident set; with a fixed 128 KiB "
                "threshold the resident set follows the live tensors. Live tensors: the peak of the bytes of "
                "tensors allocated minus freed during one more training step (torch.profiler's CPU memory "
                "events), what `torch.cuda.max_memory_allocated` measures on a GPU (the resident set's growth can "
                "fall below it: the baseline already holds free heap pages that the step reuses); s / step: mean "
                "wall time over the measured steps, each row in its own process at another moment of the loaded "
                "shared machine: not comparable between rows (the trimming's cost is measured below).",
                "",
                "| allocator | model | baseline RSS (MiB) | peak RSS (MiB) | training memory (MiB) | MG-TFNO / FNO "
                "| live tensors peak (MiB) | s / step |",
                "|---|---|---:|---:|---:|---:|---:|---:|",
            ]
        used = {name: (r["peak_kib"] - r["baseline_kib"]) / 1024 for name, r in runs.items()}
        memory_ratios[allocator] = used["MG-TFNO (ours)"] / used["FNO (dense)"]
        if all("live_peak_kib" in r for r in runs.values()) and live_ratio is None:
            live_ratio = runs["MG-TFNO (ours)"]["live_peak_kib"] / runs["FNO (dense)"]["live_peak_kib"]
        for name, r in runs.items():
            live = f"{r['live_peak_kib'] / 1024:.0f}" if "live_peak_kib" in r else "-"
            sec = f"{r['s_per_step']:.2f}" if "s_per_step" in r else "-"
            lines.append(f"| {allocator} | {name} | {r['baseline_kib'] / 1024:.0f} | {r['peak_kib'] / 1024:.0f} | "
                         f"{used[name]:.0f} | {memory_ratios[allocator]:.2f} | {live} | {sec} |")
    if memory_ratios:
        err = {name: [results[f"256/{name}/{s}"]["test_rel_l2"] for s in args.seeds_256 if f"256/{name}/{s}" in results]
               for name in MEMORY_MODELS}
        if all(err.values()):
            d, m = mean_std(err["FNO (dense)"])[0], mean_std(err["MG-TFNO (ours)"])[0]
            sample = results[f"256/FNO (dense)/{args.seeds_256[0]}"]
            lines += ["", f"Small-data error at 256x256 ({sample['n_train']} training / {sample['n_test']} test "
                      f"samples, batch 4, {args.epochs_256} epochs, seeds {', '.join(map(str, args.seeds_256))}; "
                      "MG-TFNO with all patch positions at once, the same loss and gradients as chunked): "
                      f"dense FNO {d:.4f}, MG-TFNO {m:.4f} ({m / d:.2f}x)."]
            for allocator, ratio in memory_ratios.items():
                goals.append(f"- MG-TFNO at 256x256 with peak training memory <= 1/3 of the whole-domain FNO's at "
                             f"<= 1.2x its error (resident set, {allocator}): memory {ratio:.2f}x, error "
                             f"{m / d:.2f}x: {verdict(ratio <= 1 / 3 and m <= 1.2 * d)}.")
            if live_ratio is not None:
                goals.append(f"- MG-TFNO at 256x256 with peak training memory <= 1/3 of the whole-domain FNO's at "
                             f"<= 1.2x its error (live tensors): memory {live_ratio:.2f}x, error {m / d:.2f}x: "
                             f"{verdict(live_ratio <= 1 / 3 and m <= 1.2 * d)}.")
    if "trim_cost" in results:
        cpu = results["trim_cost"]
        with_trim, without = statistics.median(cpu["release"]), statistics.median(cpu["none"])
        lines += ["", f"Cost of the trimming (`--parts trim`: CPU time, user + system, of an MG-TFNO training step at "
                  f"256x256, batch 4, one position per chunk, with and without trimming interleaved in one process, "
                  f"median of {len(cpu['none'])}): {with_trim:.2f} s vs {without:.2f} s ({with_trim / without:.2f}x); "
                  "presumably the page faults of the next chunk, which touches the returned pages again. "
                  "`model.release_memory=false` turns it off."]
    command = (f"python tools/bench_tfno.py --problems {' '.join(args.problems)} --seeds {' '.join(map(str, args.seeds))} "
               f"--epochs {args.epochs} --n-train {args.n_train} --batch-size {args.batch_size} --seeds-256 "
               f"{' '.join(map(str, args.seeds_256))} --epochs-256 {args.epochs_256} --memory-steps {args.memory_steps} "
               f"--threads {args.threads}"
               + (f" --lrs {' '.join(f'{lr:g}' for lr in args.lrs)}" if args.lrs else "")
               + (f" --weight-decay {args.weight_decay:g}" if args.weight_decay is not None else ""))
    steps = -(-args.n_train // args.batch_size) * args.epochs
    mg_ratios = []
    for problem in args.problems:
        errors = {name: [results[f"{problem}/{name}/{s}"]["test_rel_l2"] for s in args.seeds
                         if f"{problem}/{name}/{s}" in results] for name in ("TFNO (ours)", "MG-TFNO (ours)")}
        if all(errors.values()):
            ratio = mean_std(errors["MG-TFNO (ours)"])[0] / mean_std(errors["TFNO (ours)"])[0]
            mg_ratios.append(f"{ratio:.2f}x on {problem}")
    mg_note = ", ".join(mg_ratios)
    lines += [
        "", f"Reading: the budget is CPU-sized ({args.n_train} training samples, {args.epochs} epochs of batch "
        f"{args.batch_size}: {steps} optimizer steps), so every network is far from converged (the errors above "
        "are early-training errors, and the ratios speak of how fast each learns at this budget, not of converged "
        "accuracy). Parameter counts include lifting and projection. MG-TFNO trains the loss of the stitched "
        "field; its patches see the whole field only through the coarse context"
        + (f" (its error against our whole-domain TFNO's: {mg_note})" if mg_note else "")
        + ". Our TFNO against "
        f"neuraloperator's: besides the factorization (one tensor for all layers, with rank {layer_rank()} over the "
        "4 layers, against one per layer), neuraloperator's network has a lifting MLP and a channel MLP in every "
        "layer, and the same rank fraction gives the two different spectral parameter counts (above); the comparison is of the two "
        "implementations as configured by the same fraction, not of the factorizations alone."
        + (" Learning rates: the factorized networks learn more slowly per step at the dense network's rate; at the "
           "experiments' own settings (lr 1e-3, weight decay 1e-4) our TFNO on Darcy, with the earlier Tucker ranks "
           "2, 15, 7, 20, 20, 2, reached 1.30x the dense error after 6 epochs (3 seeds) and 1.61x after 20 (seed 0); "
           "chosen on validation from the same grid, the rate of each network is in column `lr`." if len(args.lrs) > 1 else ""),
    ]
    lines += ["", "Goals:", "", *goals, "", f"Command (the parts may run separately, see `--parts`): `{command}`"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=ROOT / "datasets")
    p.add_argument("--problems", nargs="+", default=["darcy", "ns"], choices=["darcy", "ns"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lrs", type=float, nargs="+", default=[],
                   help="learning rates; several: each model takes the one of the lowest validation error on the "
                   "first seed (default: the experiments' own, 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay for every model "
                   "(default: the experiments' own, 1e-4)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                   help="networks to train in the accuracy part (results already in --results are rendered too)")
    p.add_argument("--seeds-256", type=int, nargs="+", default=[0])
    p.add_argument("--epochs-256", type=int, default=4)
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--trim-repeats", type=int, default=3)
    p.add_argument("--parts", nargs="+", default=["accuracy", "memory", "trim"], choices=["accuracy", "memory", "trim"],
                   help="what to run (the report renders every result in --results)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=ROOT / "outputs" / "bench_tfno.json")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-no-release", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.data_root / "darcy_256", batch_size=4, steps=args.memory_steps,
                     release=not args.memory_no_release)
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if "accuracy" in args.parts:
        accuracy(args, results)
    if "memory" in args.parts:
        memory(args, results)
    if "trim" in args.parts:
        trim_cost(args, results)
    update_section(ROOT / "docs" / "benchmarks.md", "tfno", render(args, results))
    print(render(args, results))


if __name__ == "__main__":
    main()
