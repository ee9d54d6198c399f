"""Reduced basis with EIM against pyMOR: thermal block 2x2 (affine) and the Gaussian bump (non-affine).

Thermal block: pyMOR's own demo discretization (``thermal_block_problem((2, 2))``,
``discretize_stationary_cg`` with ``diameter = 1 / --pymor-grid``, ``CoerciveRBReductor`` with the
``H^1_0`` semi-product and the ``min(diffusion)`` coercivity estimator, ``rb_greedy`` with the error
estimator, as ``pymordemos/thermalblock.py``) against ours on the equivalent problem (P1 elements on
a structured mesh with about the same number of unknowns, EIM of the assembled matrices, weak
greedy, stable estimator). Same training set (``--tb-snapshots`` values per block, tensor grid).

Gaussian bump: ours is run end to end (EIM + greedy, FD on ``--bump-resolution``^2 nodes). pyMOR
gets the same EIM-approximated operator, ``A_M(mu) = sum_m theta_m(mu) Q_m`` (our collateral matrices
wrapped as ``NumpyMatrixOperator`` s with our EIM coefficients as parameter functionals), the same
product, coercivity bound and training set, and builds its reduced basis with ``CoerciveRBReductor``
and ``rb_greedy``: the comparison is of the reduced-basis stage on the same affine approximation
(pyMOR's own ``ei_greedy`` interpolates operator *applications* of its own discretizations, not
assembled matrices).

Errors are in the ``H^1_0`` semi-norm (``X``), relative to the full solution, maximum over
``--test`` random parameters, measured against a direct sparse solve of the full system (the EIM
system for the bump; for the thermal block the EIM is exact). Timing: one process, one BLAS thread.
Results go to ``docs/benchmarks.md`` (section ``reduced_basis``) and
``docs/figures/reduced_basis_error.png``.

Usage::

    python tools/bench_reduced_basis.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_md import update_section  # noqa: E402

from surrogates.pdes.gaussian_bump import GaussianBump  # noqa: E402
from surrogates.pdes.thermal_block import ThermalBlock  # noqa: E402
from surrogates.solvers.reduced_basis import RBEIM, RBReductor, weak_greedy  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pymor-grid", type=int, default=100, help="pyMOR thermal block: diameter 1/grid")
    p.add_argument("--tb-snapshots", type=int, default=4, help="training values per block (grid of snapshots^4)")
    p.add_argument("--tb-max-basis", type=int, default=30)
    p.add_argument("--bump-resolution", type=int, default=65)
    p.add_argument("--bump-training", type=int, default=200)
    p.add_argument("--bump-eim-rtol", type=float, default=1e-7)
    p.add_argument("--bump-max-basis", type=int, default=45)
    p.add_argument("--bump-pymor-max-basis", type=int, default=25, help="pyMOR's greedy on the bump stops here (its offline is slow)")
    p.add_argument("--compression-rtol", type=float, default=1e-9, help="rtol of our compressed estimator")
    p.add_argument("--test", type=int, default=50, help="random test parameters")
    p.add_argument("--repeats", type=int, default=20, help="online timing repeats")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "reduced_basis_error.png"))
    return p.parse_args(argv)


def _timed(fn, repeats):
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return float(np.median(best))


RESOLVABLE = 1e-10
"""Effectivities use samples whose relative error exceeds this: below it, the error of the direct
reference solve itself (~ cond(A) eps ~ 1e-12) is of the size of what is measured."""


def _effectivity(errors, bounds, norms):
    keep = errors > RESOLVABLE * norms
    if not keep.any():
        return float("nan"), float("nan")
    ratio = errors[keep] / bounds[keep]
    return float(ratio.min()), float(ratio.max())


def _x_norm(X, e):
    return float(np.sqrt(max(e @ (X @ e), 0.0)))


# -- ours ---------------------------------------------------------------------------------------------
def run_ours(problem, solver, test_mus, truth, repeats, sizes, exact=None):
    """Offline, then error / bounds per basis size and online / full timings.

    Per size: the stable, classic and compressed bounds; online times of the solve alone
    (``reduced_solve``), solve + compressed bound and solve + stable bound; the compressed data of
    each truncated model is computed anew (``compress_seconds``, its rank). ``exact``: solutions of
    the exact (not EIM-approximated) system, for the error against them (``error_exact``).
    """
    start = time.perf_counter()
    model = solver.build(problem)
    offline = time.perf_counter() - start
    X = problem.product
    rows = []
    norms = np.array([_x_norm(X, u) for u in truth])
    for n in [n for n in sizes if n <= model.size]:  # the greedy may stop early (new vector in the span)
        sub = model.truncated(n)
        stable = sub.solve(test_mus)
        classic = sub.solve(test_mus, estimator="classic")
        started = time.perf_counter()
        compressed = sub.compress(rtol=solver.compression_rtol)
        compress_seconds = time.perf_counter() - started
        bound_c = sub.solve(test_mus, estimator="compressed").bound
        recon = sub.reconstruct(stable.coefficients)
        errors = np.array([_x_norm(X, u - r) for u, r in zip(truth, recon)])
        if exact is not None:
            exact_errors = np.array([_x_norm(X, u - r) / _x_norm(X, u) for u, r in zip(exact, recon)])
        mu = test_mus[0]
        rows.append(
            {
                "N": n,
                "error": float(np.max(errors / norms)),
                "bound": float(np.max(stable.bound / norms)),
                "bound_classic": float(np.max(classic.bound / norms)),
                "bound_compressed": float(np.max(bound_c / norms)),
                "excess": float(np.max(bound_c / stable.bound - 1.0)),
                **dict(zip(("eff_min", "eff_max"), _effectivity(errors, stable.bound, norms))),
                **dict(zip(("effc_min", "effc_max"), _effectivity(errors, bound_c, norms))),
                "rank": compressed.rank,
                "stable_rank": int(sub.residual_R.shape[0]),
                "components": int(sub.residual_R.shape[1]),
                "compress_seconds": compress_seconds,
                "online_solve": _timed(lambda sub=sub: sub.reduced_solve(mu), repeats),
                "online": _timed(lambda sub=sub: sub.solve(mu, estimator="compressed"), repeats),
                "online_stable": _timed(lambda sub=sub: sub.solve(mu), repeats),
                "error_exact": float(np.max(exact_errors)) if exact is not None else float("nan"),
            }
        )
    full = _timed(lambda: problem.solve_full(test_mus[0]), 3)
    return model, offline, rows, full


# -- pyMOR --------------------------------------------------------------------------------------------
def _pymor_rows(fom, reductor, test_mus, truth_norm_fn, repeats, sizes, parse):
    rows = []
    truths = [fom.solve(parse(mu)) for mu in test_mus]
    for n in [n for n in sizes if n <= len(reductor.bases["RB"])]:
        rom = reductor.reduce(n)
        errors, bounds, norms = [], [], []
        for mu, u in zip(test_mus, truths):
            pmu = parse(mu)
            ur = reductor.reconstruct(rom.solve(pmu))
            errors.append(truth_norm_fn(u - ur))
            bounds.append(float(np.ravel(rom.estimate_error(pmu))[0]))
            norms.append(truth_norm_fn(u))
        errors, bounds, norms = map(np.array, (errors, bounds, norms))
        pmu = parse(test_mus[0])
        rows.append(
            {
                "N": n,
                "error": float(np.max(errors / norms)),
                "bound": float(np.max(bounds / norms)),
                **dict(zip(("eff_min", "eff_max"), _effectivity(errors, bounds, norms))),
                "online": _timed(lambda rom=rom, pmu=pmu: (rom.solve(pmu), rom.estimate_error(pmu)), repeats),
            }
        )
    full = _timed(lambda: fom.solve(parse(test_mus[1])), 3)
    return rows, full


def pymor_thermal_block(grid, snapshots, max_basis, test_mus, repeats, sizes):
    from pymor.algorithms.greedy import rb_greedy
    from pymor.analyticalproblems.thermalblock import thermal_block_problem
    from pymor.discretizers.builtin import discretize_stationary_cg
    from pymor.parameters.functionals import ExpressionParameterFunctional
    from pymor.reductors.coercive import CoerciveRBReductor

    fom, _ = discretize_stationary_cg(thermal_block_problem((2, 2)), diameter=1.0 / grid)
    space = fom.parameters.space(0.1, 1.0)
    start = time.perf_counter()
    reductor = CoerciveRBReductor(
        fom,
        product=fom.h1_0_semi_product,
        coercivity_estimator=ExpressionParameterFunctional("min(diffusion)", fom.parameters),
        check_orthonormality=False,
    )
    rb_greedy(
        fom, reductor, space.sample_uniformly(snapshots), use_error_estimator=True, error_norm=fom.h1_0_semi_norm,
        extension_params={"method": "gram_schmidt"}, max_extensions=max_basis, rtol=None,
    )
    offline = time.perf_counter() - start
    norm = lambda v: float(fom.h1_0_semi_norm(v)[0])  # noqa: E731
    rows, full = _pymor_rows(fom, reductor, test_mus, norm, repeats, sizes, fom.parameters.parse)
    return fom.solution_space.dim, offline, rows, full


def pymor_on_our_eim(problem, system, training, max_basis, test_mus, repeats, sizes):
    from pymor.algorithms.greedy import rb_greedy
    from pymor.models.basic import StationaryModel
    from pymor.operators.constructions import LincombOperator, VectorOperator
    from pymor.operators.numpy import NumpyMatrixOperator
    from pymor.parameters.base import Parameters
    from pymor.parameters.functionals import GenericParameterFunctional
    from pymor.reductors.coercive import CoerciveRBReductor

    names = problem.parameter_space.names
    parameters = Parameters({"mu": len(names)})

    cache: dict = {}

    def coefficients(mu):
        """Both EIM coefficient vectors of one parameter, computed once (pyMOR asks per functional)."""
        key = tuple(np.asarray(mu["mu"], dtype=float))
        if key not in cache:
            cache.clear()
            values = np.asarray(key)[None]
            cache[key] = (
                system.operator.coefficients(system.operator_entries(values))[0],
                system.rhs.coefficients(system.rhs_entries(values))[0],
            )
        return cache[key]

    def theta(m):
        return GenericParameterFunctional(lambda mu, m=m: float(coefficients(mu)[0][m]), parameters)

    assembly = problem.operator_assembly
    operators = [NumpyMatrixOperator(assembly.matrix(q)) for q in system.operator.collateral]
    rhs_vectors = system.rhs_vectors(system.rhs.collateral)
    rhs_ops = [VectorOperator(operators[0].range.make_array(rhs_vectors[:, f])) for f in range(rhs_vectors.shape[1])]
    rhs_theta = [GenericParameterFunctional(lambda mu, f=f: float(coefficients(mu)[1][f]), parameters) for f in range(len(rhs_ops))]
    product = NumpyMatrixOperator(problem.product)
    fom = StationaryModel(
        LincombOperator(operators, [theta(m) for m in range(len(operators))]),
        LincombOperator(rhs_ops, rhs_theta),
        products={"h1_0_semi": product},
    )
    alpha = GenericParameterFunctional(
        lambda mu: float(problem.coefficient_lower_bound(mu["mu"][None])[0] - system.eim_error), parameters
    )
    parse = lambda mu: parameters.parse(list(mu))  # noqa: E731
    start = time.perf_counter()
    reductor = CoerciveRBReductor(fom, product=product, coercivity_estimator=alpha, check_orthonormality=False)
    rb_greedy(
        fom, reductor, [parse(mu) for mu in training], use_error_estimator=True, error_norm=fom.h1_0_semi_norm,
        extension_params={"method": "gram_schmidt"}, max_extensions=max_basis, rtol=None,
    )
    offline = time.perf_counter() - start
    norm = lambda v: float(fom.h1_0_semi_norm(v)[0])  # noqa: E731
    rows, full = _pymor_rows(fom, reductor, test_mus, norm, repeats, sizes, parse)
    return offline, rows, full


# -- report -------------------------------------------------------------------------------------------
def first_size_below(rows, level):
    for row in rows:
        if row["error"] <= level:
            return row
    return None


def _eff(row):
    return "-" if np.isnan(row["eff_min"]) else f"{row['eff_min']:.2f}-{row['eff_max']:.2f}"


def table(ours, theirs):
    """Errors and bounds per basis size; "-" where pyMOR's greedy stopped earlier."""
    lines = [
        "| N | error ours | error pyMOR | ratio | bound ours (stable) | bound ours (compressed) | bound ours (classic) "
        "| bound pyMOR | effectivity ours, stable (min-max) | effectivity ours, compressed | effectivity pyMOR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_size = {row["N"]: row for row in theirs}
    for a in ours:
        b = by_size.get(a["N"])
        their = (
            (f"{b['error']:.2e}", f"{a['error'] / max(b['error'], 1e-300):.2f}", f"{b['bound']:.2e}", _eff(b))
            if b
            else ("-", "-", "-", "-")
        )
        effc = "-" if np.isnan(a["effc_min"]) else f"{a['effc_min']:.2f}-{a['effc_max']:.2f}"
        lines.append(
            f"| {a['N']} | {a['error']:.2e} | {their[0]} | {their[1]} | {a['bound']:.2e} | {a['bound_compressed']:.2e} | "
            f"{a['bound_classic']:.2e} | {their[2]} | {_eff(a)} | {effc} | {their[3]} |"
        )
    return "\n".join(lines)


def online_table(ours, theirs, full_ours, full_pymor):
    """Online cost per basis size: one query, median of the repeats."""
    lines = [
        "| N | components M_f + M N | stable rank K | compressed rank r | compressed / stable bound - 1 (max) "
        "| ours: solve only (us) | ours: solve + compressed bound (us) | speedup | ours: solve + stable bound (us) "
        "| speedup | pyMOR: solve + bound (us) | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_size = {row["N"]: row for row in theirs}
    for a in ours:
        b = by_size.get(a["N"])
        pymor = f"{1e6 * b['online']:.0f} | {full_pymor / b['online']:.0f}x" if b else "- | -"
        lines.append(
            f"| {a['N']} | {a['components']} | {a['stable_rank']} | {a['rank']} | {a['excess']:.1e} | "
            f"{1e6 * a['online_solve']:.0f} | {1e6 * a['online']:.0f} | {full_ours / a['online']:.0f}x | "
            f"{1e6 * a['online_stable']:.0f} | {full_ours / a['online_stable']:.0f}x | {pymor} |"
        )
    return "\n".join(lines)


def cost_lines(offline_ours, offline_pymor, ours, theirs, full_ours, full_pymor, level=1e-4, offline_ours_at=None):
    """Offline, full solve and the online cost at relative error ``level``.

    ``offline_ours_at``: ``(N, seconds)``, our offline time up to pyMOR's largest basis when its greedy stopped earlier.
    """
    a, b = first_size_below(ours, level), first_size_below(theirs, level)
    n_ours, n_pymor = ours[-1]["N"], theirs[-1]["N"]
    offline = f"- offline: ours {offline_ours:.2f} s (to N = {n_ours}), pyMOR {offline_pymor:.2f} s (to N = {n_pymor})"
    if offline_ours_at is not None and offline_ours_at[0] != n_ours:
        n, seconds = offline_ours_at
        offline += f"; ours to N = {n}: {seconds:.2f} s (ours/pyMOR at equal N {seconds / offline_pymor:.2f})."
    else:
        offline += f" (ours/pyMOR {offline_ours / offline_pymor:.2f})."
    lines = [
        offline,
        f"- full solve: ours (PCG + AMG, rtol 1e-12) {1e3 * full_ours:.1f} ms, pyMOR (its default sparse direct solver) {1e3 * full_pymor:.1f} ms.",
    ]
    if a:
        exact = "" if np.isnan(a["error_exact"]) else f", {a['error_exact']:.1e} against the exact operator"
        lines.append(
            f"- ours at relative error <= {level:g}: N = {a['N']} (error {a['error']:.1e}{exact}); online per query: solve "
            f"{1e6 * a['online_solve']:.0f} us, solve + compressed bound {1e6 * a['online']:.0f} us (speedup "
            f"{full_ours / a['online']:.0f}x over our full solve), solve + stable bound {1e6 * a['online_stable']:.0f} us "
            f"({full_ours / a['online_stable']:.0f}x)."
        )
    else:
        a = ours[-1]
        lines.append(
            f"- ours: relative error {level:g} is not reached; at the largest basis, N = {a['N']}: error {a['error']:.1e}, "
            f"solve + compressed bound {1e6 * a['online']:.0f} us ({full_ours / a['online']:.0f}x), "
            f"solve + stable bound {1e6 * a['online_stable']:.0f} us ({full_ours / a['online_stable']:.0f}x)."
        )
    if b:
        lines.append(
            f"- pyMOR at relative error <= {level:g}: N = {b['N']} (error {b['error']:.1e}), solve + bound {1e6 * b['online']:.0f} us, "
            f"speedup {full_pymor / b['online']:.0f}x over its full solve."
        )
    else:
        b = theirs[-1]
        lines.append(
            f"- pyMOR: relative error {level:g} is not reached before its greedy stopped; at N = {b['N']}: error "
            f"{b['error']:.1e} (ours at the same N: {next((r['error'] for r in ours if r['N'] == b['N']), float('nan')):.1e}), "
            f"solve + bound {1e6 * b['online']:.0f} us, speedup {full_pymor / b['online']:.0f}x."
        )
    return "\n".join(lines)


def plot(path, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2))
    for ax, (title, ours, theirs) in zip(np.atleast_1d(axes), panels):
        n = [r["N"] for r in ours]
        ax.semilogy(n, [r["error"] for r in ours], "o-", label="error, ours")
        ax.semilogy(n, [r["bound"] for r in ours], "s--", label="bound, ours (stable)")
        ax.semilogy(n, [r["bound_compressed"] for r in ours], "d-.", ms=3, label="bound, ours (compressed)")
        ax.semilogy(n, [r["bound_classic"] for r in ours], "x:", label="bound, ours (classic formula)")
        ax.semilogy([r["N"] for r in theirs], [r["error"] for r in theirs], "^-", alpha=0.7, label="error, pyMOR")
        ax.semilogy([r["N"] for r in theirs], [r["bound"] for r in theirs], "v--", alpha=0.7, label="bound, pyMOR")
        ax.axhline(1e-8, color="gray", lw=0.5)
        ax.set_xlabel("reduced basis size N")
        ax.set_ylabel("max relative error / bound (H1_0 semi-norm)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def main(argv=None):
    args = parse_args(argv)
    from pymor.core.logger import set_log_levels

    set_log_levels({"pymor": "ERROR"})
    import pymor

    rng = np.random.default_rng(2026)

    # thermal block ----------------------------------------------------------------------------
    tb_sizes = list(range(1, args.tb_max_basis + 1, 2)) + [args.tb_max_basis]
    tb_sizes = sorted(set(tb_sizes))
    tb_test = 0.1 + 0.9 * rng.random((args.test, 4))
    print("thermal block: pyMOR ...", flush=True)
    dim_pymor, off_p, rows_p, full_p = pymor_thermal_block(
        args.pymor_grid, args.tb_snapshots, args.tb_max_basis, tb_test, args.repeats, tb_sizes
    )
    resolution = int(round(np.sqrt(dim_pymor - 4 * args.pymor_grid))) + 2
    tb = ThermalBlock(resolution=resolution, discretization="p1")
    print(f"thermal block: ours ({tb.dim} unknowns, pyMOR {dim_pymor} incl. boundary) ...", flush=True)
    truth = np.stack([spla.spsolve(tb.operator(mu).tocsc(), tb.rhs(mu)) for mu in tb_test])
    tb_solver = RBEIM(
        eim_training_size=20, eim_check_size=20, training_set="grid", training_size=args.tb_snapshots,
        max_basis_size=args.tb_max_basis, greedy_rtol=None, compression_rtol=args.compression_rtol,
    )
    tb_model, off_o, rows_o, full_o = run_ours(tb, tb_solver, tb_test, truth, args.repeats, tb_sizes)

    # Gaussian bump ----------------------------------------------------------------------------
    bump = GaussianBump(resolution=args.bump_resolution)
    bump_sizes = sorted(set(list(range(1, args.bump_max_basis + 1, 2)) + [args.bump_max_basis]))
    bump_test = bump.parameter_space.sample_uniform(args.test, rng)
    bump_solver = RBEIM(
        eim_training_size=200, eim_rtol=args.bump_eim_rtol, eim_check_size=100, training_set="random",
        training_size=args.bump_training, max_basis_size=args.bump_max_basis, greedy_rtol=None,
        compression_rtol=args.compression_rtol,
    )
    print("gaussian bump: ours ...", flush=True)
    start = time.perf_counter()
    system = bump_solver.build_system(bump)
    eim_seconds = time.perf_counter() - start
    eim_truth = np.stack([spla.spsolve(system.matrix(mu).tocsc(), system.vector(mu)) for mu in bump_test])
    exact_truth = np.stack([spla.spsolve(bump.operator(mu).tocsc(), bump.rhs(mu)) for mu in bump_test])
    X = bump.product
    eim_floor = max(
        _x_norm(X, a - b) / _x_norm(X, a) for a, b in zip(exact_truth, eim_truth)
    )
    bump_model, off_bo, rows_bo, full_bo = run_ours(
        bump, bump_solver, bump_test, eim_truth, args.repeats, bump_sizes, exact=exact_truth
    )
    print(f"gaussian bump: ours done ({off_bo:.1f} s, N = {bump_model.size}); pyMOR on our EIM ...", flush=True)
    pymor_max = min(args.bump_pymor_max_basis, args.bump_max_basis)
    off_bp, rows_bp, full_bp = pymor_on_our_eim(
        bump, system, bump_solver.greedy_training_set(bump), pymor_max, bump_test, args.repeats,
        [n for n in bump_sizes if n <= pymor_max],
    )
    # our offline time up to pyMOR's largest basis: EIM + greedy until that size + compression of that model
    meta = bump_model.metadata
    n_at = min(pymor_max, bump_model.size)
    offline_at = (
        n_at,
        meta["eim"]["seconds"] + meta["greedy"]["elapsed"][n_at]
        + next((r["compress_seconds"] for r in rows_bo if r["N"] == n_at), 0.0),
    )

    figure = plot(
        args.figure,
        [
            (f"thermal block 2x2 ({tb.dim} unknowns)", rows_o, rows_p),
            (f"Gaussian bump, EIM M={system.operator.size} ({bump.dim} unknowns)", rows_bo, rows_bp),
        ],
    )
    M = system.operator.size
    md = f"""## Reduced basis with EIM vs pyMOR

`tools/bench_reduced_basis.py`, {datetime.date.today().isoformat()}, pyMOR {pymor.__version__}, one BLAS
thread, {platform.processor() or platform.machine()}; command: `python tools/bench_reduced_basis.py {shlex.join(sys.argv[1:])}`.
Errors: maximum over {args.test} random parameters of the relative error in the `H^1_0` semi-norm against a
direct solve of the full system; bound: maximum of the a posteriori bound relative to the same norm;
effectivity: true error / bound (must lie in (0, 1]), over the samples whose relative error exceeds
{RESOLVABLE:g} (below, the reference solve's own error, ~1e-12, is what would be measured; "-": none). Online time: one query,
median of {args.repeats}, for ours the solve alone (`reduced_solve`: EIM coefficients, reduced assembly and
solve), the solve + the compressed bound (`estimator="compressed"`, rtol {args.compression_rtol:g}; the default
query of the speedup figures) and the solve + the stable bound; for pyMOR `solve` + `estimate_error`.
Speedups are over the full solve of the same code. Figure: [reduced_basis_error.png](figures/reduced_basis_error.png).

### Thermal block 2x2 (affine, mu in [0.1, 1]^4)

pyMOR: its demo discretization (P1, diameter 1/{args.pymor_grid}, {dim_pymor} unknowns with the boundary),
`CoerciveRBReductor` + `rb_greedy` on {args.tb_snapshots}^4 = {args.tb_snapshots ** 4} training parameters.
Ours: P1 on a {resolution - 1}x{resolution - 1} structured mesh ({tb.dim} unknowns), EIM recovers the
affine operator with {tb_model.eim_sizes[0]} terms (EIM error {tb_model.eim_error:.1e}), weak greedy on the same training grid.

{cost_lines(off_o, off_p, rows_o, rows_p, full_o, full_p)}

{table(rows_o, rows_p)}

{online_table(rows_o, rows_p, full_o, full_p)}

### Gaussian bump (non-affine: center and width, {bump.dim} unknowns, FD)

Ours: EIM of the assembled matrices with M = {M} terms (rtol {args.bump_eim_rtol:g}, {eim_seconds:.1f} s;
measured EIM operator error eps_EIM = {system.eim_error:.1e} in the coercivity bound); the EIM system
differs from the exact one by at most {eim_floor:.1e} (relative solution error on the test set): that is
the floor of the error against the *exact* operator. Errors below are against the EIM system.
pyMOR: `CoerciveRBReductor` + `rb_greedy` on the same EIM-approximated operator (our collateral matrices as
`NumpyMatrixOperator`s with our EIM coefficients), the same product, coercivity bound and {args.bump_training}
training parameters. pyMOR's greedy stops at N = {pymor_max} (its offline time grows fast with `M N`),
ours goes on to N = {bump_model.size}.

{cost_lines(off_bo, off_bp, rows_bo, rows_bp, full_bo, full_bp, offline_ours_at=offline_at)}

{table(rows_bo, rows_bp)}

{online_table(rows_bo, rows_bp, full_bo, full_bp)}
"""
    update_section(args.out, "reduced_basis", md)
    print(md)
    print(f"written: {args.out}, {figure}")


if __name__ == "__main__":
    main()
