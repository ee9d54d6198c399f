"""Train the DCDM network (Kaneda et al., ICML 2023) on Darcy matrices and save it as a package checkpoint.

Matrices: 5-point ``-div(a grad u)`` for Darcy coefficients ``a in {3, 12}`` on ``s x s`` nodes
(``darcy_matrices`` of ``tools/train_learned_preconditioner.py``, the GNN's training data). No
solutions are used: the loss is the scale-invariant ``||b - alpha A f(b)||`` on the paper's Ritz-vector
training vectors (``surrogates.solvers.dcdm.training``). With ``--validation-resolutions`` the network
kept is the one (initial weights included) with the fewest DCDM iterations on held-out validation
matrices (seeds ``2000 + s``; the benchmark's test matrices use ``1000 + s``), measured after every
epoch. The network is written to ``--model`` (default ``datasets/preconditioners/dcdm_darcy_<s>.pt``), with the training record, and loads with
``surrogates.solvers.dcdm.load`` or through ``conf/solver/dcdm.yaml`` (``solver.checkpoint=<file>``).

Usage::

    python tools/train_dcdm.py --resolution 64 --n-train 8 --epochs 60 --threads 1
    # the benchmarked network (docs/benchmarks.md, DCDM): additive, started as BPX, validation-selected
    python tools/train_dcdm.py --width 8 --blocks 1 --batch-size 8 --structure additive --init identity \
        --scaling mean --lr 1e-3 --validation-resolutions 64 128 --threads 1
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from train_learned_preconditioner import darcy_matrices  # noqa: E402

from surrogates.solvers.dcdm import DCDMNet, train_dcdm  # noqa: E402
from surrogates.solvers.dcdm.network import SCALINGS  # noqa: E402


VALIDATION_SEED = 2000
"""Validation matrices at size ``s`` are drawn with seed ``VALIDATION_SEED + s`` (training: the seed; test: ``1000 + s``)."""


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The training options, shared with ``tools/bench_dcdm.py``; the defaults are the benchmarked network's (the
    additive structure started as BPX for ``A / mean(diag A)``, the epoch kept by the validation count)."""
    p.add_argument("--resolution", type=int, default=64, help="grid nodes per side incl. boundary (s)")
    p.add_argument("--n-train", type=int, default=8, help="training matrices")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8, help="training vectors per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ritz-steps", type=int, default=300, help="Lanczos steps per training matrix")
    p.add_argument("--weighting", choices=["paper", "inverse_sqrt"], default="paper",
                   help="training vectors' coefficients on the Ritz vectors (training_vectors)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--structure", choices=["v_cycle", "additive"], default="additive",
                   help="N as a recursive U-Net (v_cycle) or the additive multilevel sum (DCDMNet)")
    p.add_argument("--coarsest", type=int, default=4, help="a level at most this wide does not coarsen (DCDMNet)")
    p.add_argument("--coarse-couplings", choices=["average", "galerkin"], default="average",
                   help="how the network coarsens the operator's couplings (DCDMNet)")
    p.add_argument("--coarse-gain", type=float, default=1.0, help="fixed factor on every coarse correction (DCDMNet)")
    p.add_argument("--init", choices=["random", "identity"], default="identity",
                   help="starting weights; identity (additive only): the untrained network is BPX (DCDMNet)")
    p.add_argument("--scaling", choices=list(SCALINGS), default="mean",
                   help="the network's system: D^-1/2 A D^-1/2 or A / mean(diag A) (DCDMNet)")
    p.add_argument("--validation-resolutions", type=int, nargs="*", default=[64, 128],
                   help="keep the epoch with the fewest DCDM iterations on held-out matrices of these sizes")
    p.add_argument("--n-val", type=int, default=2, help="validation matrices per validation resolution")
    p.add_argument("--extra-resolutions", type=int, nargs="*", default=[],
                   help="also train on --n-train matrices at each of these sizes (fewer levels: teaches depth)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())


def train(args: argparse.Namespace, seed: int) -> tuple[DCDMNet, dict]:
    """Train one network on ``args.n_train`` Darcy matrices drawn with ``seed``; returns it and its training record."""
    matrices = darcy_matrices(args.resolution, args.n_train, seed)
    for s in args.extra_resolutions:
        matrices += darcy_matrices(s, args.n_train, seed)
    validation = [A for s in args.validation_resolutions for A in darcy_matrices(s, args.n_val, VALIDATION_SEED + s)]
    history: list[float] = []
    validation_history: list[float] = []
    start = time.perf_counter()
    net = train_dcdm(
        matrices, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
        ritz_steps=args.ritz_steps, width=args.width, blocks=args.blocks, coarsest=args.coarsest,
        coarse_couplings=args.coarse_couplings,
        coarse_gain=args.coarse_gain, structure=args.structure, weighting=args.weighting, seed=seed, history=history,
        init=args.init, scaling=args.scaling, validation=validation, validation_history=validation_history,
    )
    meta = {
        "resolution": args.resolution, "extra_resolutions": list(args.extra_resolutions), "n_train": args.n_train,
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size, "lr": args.lr, "ritz_steps": args.ritz_steps, "weighting": args.weighting,
        "seed": seed, "threads": args.threads, "seconds": time.perf_counter() - start,
        "loss_first": history[0], "loss_last": history[-1], "loss_history": history, "init": args.init,
        "validation_resolutions": list(args.validation_resolutions), "n_val": args.n_val,
        "validation_history": validation_history,
        # epoch 0 is the start; the first of equal counts is kept
        "selected_epoch": int(np.argmin(validation_history)) if validation_history else args.epochs,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    return net, meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="default: datasets/preconditioners/dcdm_darcy_<s>.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    net, meta = train(args, args.seed)
    path = args.model or Path(f"datasets/preconditioners/dcdm_darcy_{args.resolution}.pt")
    net.save(path, meta)
    print(f"trained in {meta['seconds']:.0f} s, loss {meta['loss_first']:.4g} -> {meta['loss_last']:.4g}; saved {path}")
    if meta["validation_history"]:
        print(f"validation iterations per epoch: {meta['validation_history']}; kept epoch {meta['selected_epoch']}")


if __name__ == "__main__":
    main()
