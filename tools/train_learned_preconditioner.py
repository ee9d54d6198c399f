"""Train the learned PCG preconditioner on Darcy matrices and compare CG iterations with classical ones.

Matrices: 5-point ``-div(a grad u)`` (``diffusion_operator``) for Darcy coefficients ``a in {3, 12}``
drawn from ``Darcy(resolution=s).sample_inputs``; training and held-out matrices come from different
seeds. The network is saved to ``--model`` (default ``datasets/preconditioners/darcy_<s>.pt``) and
evaluated on the held-out matrices at ``s`` and at every ``--eval-resolutions`` (the network is
local, so one trained at ``s`` can be applied to any grid). Mean CG iterations to ``rtol`` with no
preconditioner, Jacobi, IC(0) (when ``surrogates.solvers.preconditioners.ic0`` is importable) and the
learned one are written to ``docs/benchmarks.md`` (section ``learned_preconditioner``).

Usage::

    python tools/train_learned_preconditioner.py --resolution 32 --n-train 32 --epochs 40 --threads 1 \
        --eval-resolutions 64

``--load`` re-evaluates a saved network (e.g. once more baselines exist) without retraining; the
training record saved with it (size, time, loss) goes into the section.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from benchmarks_md import update_section  # noqa: E402

from surrogates.pdes.darcy import Darcy  # noqa: E402
from surrogates.solvers.finite_differences import diffusion_operator  # noqa: E402
from surrogates.solvers.preconditioners.base import IdentityPreconditioner, Preconditioner  # noqa: E402
from surrogates.solvers.preconditioners.learned import (  # noqa: E402
    LOSSES,
    LearnedPreconditioner,
    PreconditionerGNN,
    load,
    load_metadata,
    train_preconditioner,
)

SECTION = "learned_preconditioner"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=32, help="grid nodes per side incl. boundary (s)")
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--n-test", type=int, default=10)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--samples", type=int, default=8, help="(x, b) pairs per matrix per step")
    p.add_argument("--loss", choices=LOSSES, default="solution")
    p.add_argument("--scale-invariant", action="store_true")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--eval-resolutions", type=int, nargs="*", default=[], help="also evaluate at these s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--model", type=Path, default=None, help="default: datasets/preconditioners/darcy_<s>.pt")
    p.add_argument("--load", action="store_true", help="skip training: evaluate the network at --model")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    return p.parse_args(argv)


# -- data -----------------------------------------------------------------------------------------------

def darcy_matrices(resolution: int, n: int, seed: int) -> list[sp.csr_matrix]:
    """``n`` Darcy operators on ``resolution^2`` nodes (``(resolution - 2)^2`` unknowns)."""
    a = Darcy(resolution=resolution).sample_inputs(n, np.random.default_rng(seed))["a"]
    return [diffusion_operator(a_i) for a_i in a]


# -- preconditioners ------------------------------------------------------------------------------------

class _Jacobi(Preconditioner):
    """``M = diag(A)``; local to this benchmark."""

    name = "jacobi"

    def __init__(self, A: sp.spmatrix):
        self.inverse_diagonal = torch.from_numpy(1.0 / A.diagonal())

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return r * self.inverse_diagonal.to(r)


def _ic0_class():
    """The project's IC(0) preconditioner class, or None while it does not exist."""
    try:
        from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner
    except ImportError:
        return None
    return IC0Preconditioner


def preconditioners(A: sp.csr_matrix, model: PreconditionerGNN) -> dict[str, Preconditioner]:
    """The compared preconditioners for one matrix, by display name."""
    out: dict[str, Preconditioner] = {"none": IdentityPreconditioner(), "Jacobi": _Jacobi(A)}
    ic0 = _ic0_class()
    if ic0 is not None:
        out["IC(0)"] = ic0(A)
    out["learned"] = LearnedPreconditioner(model, A)
    return out


# -- iteration counts -----------------------------------------------------------------------------------

def cg_iterations(A: sp.csr_matrix, b: np.ndarray, preconditioner: Preconditioner, rtol: float) -> int:
    """CG iterations until ``||b - A x|| <= rtol ||b||`` (``b`` shape ``(n,)``)."""
    try:
        from surrogates.solvers.pcg import pcg
    except ImportError:
        pcg = None
    if pcg is not None:
        result = pcg(A, torch.from_numpy(b)[None], preconditioner=preconditioner, rtol=rtol, atol=0.0,
                     maxiter=20 * A.shape[0])
        if not bool(result.converged.all()):
            raise RuntimeError(f"PCG with {preconditioner.name} did not converge")
        return int(result.iterations[0])
    # scipy reference until the project's batched PCG exists: same rule, counted by the callback
    apply = lambda r: preconditioner.apply(torch.from_numpy(np.ravel(r))[None])[0].numpy()  # noqa: E731
    M = spla.LinearOperator(A.shape, matvec=apply, dtype=np.float64)
    count = [0]
    _, info = spla.cg(A, b, rtol=rtol, atol=0.0, M=M, maxiter=20 * A.shape[0],
                      callback=lambda _: count.__setitem__(0, count[0] + 1))
    if info != 0:
        raise RuntimeError(f"CG with {preconditioner.name} did not converge (info={info})")
    return count[0]


def evaluate(model: PreconditionerGNN, matrices: list[sp.csr_matrix], rtol: float, seed: int) -> dict[str, dict[str, float]]:
    """Mean iterations per preconditioner for two right-hand sides: Darcy's ``f = 1`` and ``N(0, I)``.

    Returns ``{rhs name: {preconditioner name: mean iterations}}``.
    """
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, list[int]]] = {"f = 1": {}, "b ~ N(0, I)": {}}
    for A in matrices:
        rhs = {"f = 1": np.ones(A.shape[0]), "b ~ N(0, I)": rng.standard_normal(A.shape[0])}
        for name, prec in preconditioners(A, model).items():
            for label, b in rhs.items():
                counts[label].setdefault(name, []).append(cg_iterations(A, b, prec, rtol))
    return {label: {name: float(np.mean(v)) for name, v in by.items()} for label, by in counts.items()}


# -- report ---------------------------------------------------------------------------------------------

def markdown(args: argparse.Namespace, results: dict[int, dict], meta: dict, model: PreconditionerGNN) -> str:
    """The benchmark section; ``meta`` is the training record saved with the network."""
    names = list(next(iter(next(iter(results.values())).values())))
    kwargs = ", ".join(f"{k}={v}" for k, v in model.init_kwargs.items())
    s_train = meta.get("resolution")
    lines = [
        "## Learned PCG preconditioner on Darcy matrices",
        "",
        f"GNN `PreconditionerGNN({kwargs})` predicts `L` with the pattern of `tril(A)`, `P = L L^T` "
        f"(Li et al., ICML 2023), loss `{meta.get('loss')}`" + (" (scale-invariant)" if meta.get("scale_invariant") else "")
        + f". Trained at s = {s_train} ({(s_train - 2) ** 2 if s_train else '?'} unknowns) on {meta.get('n_train')} Darcy "
        f"matrices (coefficients in {{3, 12}}), {meta.get('epochs')} epochs, {meta.get('seconds', float('nan')):.0f} s "
        f"on {meta.get('threads')} CPU thread(s); training loss {meta.get('loss_first', float('nan')):.3g} -> "
        f"{meta.get('loss_last', float('nan')):.3g}.",
        f"Held-out: {args.n_test} matrices per resolution (seed never used for training); CG to "
        f"`||b - A x|| <= {args.rtol:g} ||b||`, mean iterations.",
        "",
        "| s | unknowns | rhs | " + " | ".join(names) + " | learned / IC(0) |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for s, by_rhs in results.items():
        for label, means in by_rhs.items():
            ratio = f"{means['learned'] / means['IC(0)']:.2f}" if "IC(0)" in means else "n/a (no IC(0))"
            lines.append(f"| {s} | {(s - 2) ** 2} | {label} | " + " | ".join(f"{means[n]:.1f}" for n in names)
                         + f" | {ratio} |")
    lines += [
        "",
        f"Iterations counted with {'`surrogates.solvers.pcg.pcg`' if _has_pcg() else '`scipy.sparse.linalg.cg`'}. "
        f"Generated {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({platform.processor() or 'unknown CPU'}), torch {torch.__version__}.",
        "",
        "```",
        *([meta["command"]] if args.load and "command" in meta else []),  # how the loaded network was trained
        "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "```",
    ]
    return "\n".join(lines)


def _has_pcg() -> bool:
    try:
        from surrogates.solvers.pcg import pcg  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.model or Path(f"datasets/preconditioners/darcy_{args.resolution}.pt")
    history: list[float] = []
    if args.load:
        model, meta = load(path), load_metadata(path)
    else:
        train = darcy_matrices(args.resolution, args.n_train, args.seed)
        start = time.perf_counter()
        model = train_preconditioner(
            train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, samples=args.samples,
            loss=args.loss, scale_invariant=args.scale_invariant, hidden=args.hidden, rounds=args.rounds,
            seed=args.seed, history=history,
        )
        meta = {
            "resolution": args.resolution, "n_train": args.n_train, "epochs": args.epochs, "loss": args.loss,
            "scale_invariant": args.scale_invariant, "seed": args.seed, "threads": args.threads,
            "seconds": time.perf_counter() - start, "loss_first": history[0], "loss_last": history[-1],
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        }
        model.save(path, meta)
        print(f"trained in {meta['seconds']:.0f} s, loss {history[0]:.4g} -> {history[-1]:.4g}; saved {path}")
    results = {}
    for s in [args.resolution, *args.eval_resolutions]:
        test = darcy_matrices(s, args.n_test, args.seed + 1000)  # held out: a seed never used for training
        results[s] = evaluate(model, test, args.rtol, args.seed)
        print(s, results[s])
    text = markdown(args, results, meta, model)
    if args.no_write:
        print(text)
    else:
        print(f"wrote {update_section(args.out, SECTION, text)}")


if __name__ == "__main__":
    main()
