"""Golden model files: every committed file in ``tests/golden/`` loads through the public reader of its kind
and reproduces its stored output (``tests/golden/README.md``; written by ``tools/make_golden_checkpoints.py``).

A format change that breaks old files fails here. ``v1/`` holds files of format 1 (before the checkpoint
module) and ``v2/`` files of format 2 (statistics as metadata lists), which must load through migration;
``v3/`` files of format 3 (statistics only in the ``state_dict``, as buffers of the saved model).

Tolerances come from a round-off analysis, not from what passed. The stored outputs were computed on
another machine (another BLAS, FFT, vector unit, thread count), so bit equality is not expected:

- networks (float32): the standard bound for a reduction of length ``n`` (a dot product, a convolution's
  fan-in, a normalization's mean and variance, a DFT along one axis) is ``gamma_n ~ n u`` relative to the
  magnitudes summed (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, Sec. 3.1 and 4.2),
  ``u = 2^-24``; relative to the result, times the cancellation ratio ``max(|W||x| + |b|) / max|W x + b|``
  (computed for linear layers and convolutions). Errors of successive operations add to first order:
  :func:`round_off_units` sums these ``n`` over every reduction the forward pass evaluates (forward hooks),
  plus the conditioning of the few operations whose error is not relative to their output: the sinusoidal
  embeddings' ``sin(c w)`` (absolute error ``|c w| u``), the Gaussians' expanded quadratic form
  (cancellation), the refinement noise. Two evaluations (the stored one and this one) are each within
  ``n u`` of the exact value, so ``max|y - y_stored| <= 2 n u max|y_stored|``. The analysis assumes that no
  layer amplifies errors (unit Lipschitz constants); the file's ``fp32_error`` (float32 against a float64
  evaluation of the same weights, measured when it was written) checks that assumption for the stored
  output: it must stay below the bound of one evaluation (it does by factors 9 to 2000).
- the hard-constraint models add a float64 Levenberg-Marquardt solve (:func:`hard_constraint_tolerance`):
  the float32 basis error amplified by the solve (estimated here by perturbing the basis) plus the two
  runs' stopping errors (``ftol = xtol = gtol = 1e-10`` leave the optimum by about ``4e-6`` relative,
  measured against the same solve with tolerances ``1e-15``).
- the reduced model (float64): backward-stable solves, relative error ``kappa(A_N) * n * u64``
  (:func:`reduced_tolerances`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
ENTRIES = {f"{entry['version']}/{entry['name']}": entry for entry in MANIFEST["files"]}

U32 = 2.0**-24  # unit round-off of float32 (eps32 / 2)
U64 = 2.0**-53
RANDN_UNITS = 64.0
"""Box-Muller draws ``z = sqrt(-2 log u1) cos(2 pi u2)``: one (log, sqrt, cos) evaluation whose last bits
depend on the CPU kernel (AVX2 and default kernels differ by up to about 15 u for |z| <= 3.4, measured);
``|dz| <= |r| (2 pi + 3) u`` with ``|r| <= sqrt(2 * 24 log 2) = 5.8``: 54 u, rounded up to 64."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models are tiny: one intra-op thread is the fastest and does not slow down next to other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def entry_ids(kind: str | None = None) -> list[str]:
    return [key for key, entry in ENTRIES.items() if kind is None or entry["kind"] == kind]


def golden(key: str) -> tuple[dict[str, Any], Path, dict[str, np.ndarray]]:
    entry = ENTRIES[key]
    with np.load(GOLDEN / entry["data"]) as data:
        arrays = {name: data[name] for name in data.files}
    return entry, GOLDEN / entry["file"], arrays


# -- round-off analysis of a network's forward pass --------------------------------------------------------
def _reduction_hooks() -> list[tuple[type, Callable[[Any, tuple, Any], float]]]:
    """(module type, units of ``u`` one call costs) for every module that reduces or is ill-conditioned."""
    import torch.nn.functional as F
    from torch import nn

    from surrogates.nn.factorized_weights import FactorizedSpectralWeights
    from surrogates.nn.gaussian_features import GaussianFeatures
    from surrogates.nn.pointwise import PointwiseLinear
    from surrogates.nn.spectral_conv import SpectralConv
    from surrogates.nn.unet_blocks import SinusoidalEmbedding

    def cancellation(output, magnitudes):
        # the bound gamma_n is relative to the sum of the terms' magnitudes |W||x| + |b|; relative to the
        # result (the scale the comparison uses) it is gamma_n times max(|W||x| + |b|) / max|W x + b| (Higham, 4.3)
        return max(1.0, float(magnitudes.max()) / max(float(output.abs().max()), 1e-30))

    def linear(module, inputs, output):
        magnitudes = F.linear(inputs[0].abs(), module.weight.abs(), None if module.bias is None else module.bias.abs())
        return module.in_features * cancellation(output, magnitudes)

    def pointwise(module, inputs, output):
        bias = module.bias.abs().view(-1, *([1] * (inputs[0].ndim - 2)))
        magnitudes = torch.einsum("oi,bi...->bo...", module.weight.abs(), inputs[0].abs()) + bias
        return module.weight.shape[1] * cancellation(output, magnitudes)

    def conv(module, inputs, output):
        # fan-in: weight (out, in / groups, *kernel); transposed (in, out / groups, *kernel): at most in x kernel taps
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            return module.weight.shape[0] * math.prod(module.kernel_size)
        bias = None if module.bias is None else module.bias.abs()
        magnitudes = module._conv_forward(inputs[0].abs(), module.weight.abs(), bias)
        return module.weight.shape[1] * math.prod(module.kernel_size) * cancellation(output, magnitudes)

    def spectral(module, inputs, output):
        # forward and inverse DFT, one 1D transform per axis (each a reduction of that axis' length,
        # whatever the FFT algorithm), and the mixing of the modes' channels (real form: 2 C_in terms)
        x = inputs[0]
        return 2 * sum(x.shape[2:]) + 2 * x.shape[1]

    def group_norm(module, inputs, output):  # mean and variance over a group: channels per group x points
        x = inputs[0]
        return 2 * (x.shape[1] // module.num_groups) * math.prod(x.shape[2:])

    def layer_norm(module, inputs, output):
        return 2 * math.prod(module.normalized_shape)

    def sinusoidal(module, inputs, output):  # sin/cos of c w: absolute error |c w| u
        return float(inputs[0].abs().max()) * float(module.frequencies.abs().max())

    def gaussians(module, inputs, output):
        # q = x^T A x - 2 b^T x + c is computed expanded, with cancellation: its absolute error is
        # m u sum_j |coef_j mono_j| (m monomials); G = exp(-q / 2) then errs by G |dq| / 2 (relative to the
        # features' scale), then the sum over the N Gaussians
        x = inputs[0] - module.center
        mu = module.means - module.center
        a = module.precision()
        b = (a @ mu.unsqueeze(-1)).squeeze(-1)
        rows, cols = module._pair_rows, module._pair_cols
        factor = torch.where(rows == cols, 1.0, 2.0).to(a.dtype)
        coefficients = torch.cat([a[:, rows, cols] * factor, -2.0 * b, (mu * b).sum(-1, keepdim=True)], dim=-1)
        monomials = torch.cat([x[..., rows] * x[..., cols], x, torch.ones_like(x[..., :1])], dim=-1)
        magnitude = monomials.abs() @ coefficients.abs().T  # (P, N)
        weighted = (module.weights(inputs[0]) * magnitude / 2).max()
        return monomials.shape[-1] * float(weighted) + module.n_gaussians

    def factorized(module, inputs, output):
        # the dense weights rebuilt from a Tucker core and factors (successive mode products: reductions of
        # length R_1, ..., R_N) or from CP factors (a sum of R products of N factors), relative to the same
        # reconstruction from the magnitudes of core and factors (Higham, 3.1), over the largest weight
        import tensorly as tl

        factors = [factor.abs() for factor in module.factors]
        with tl.backend_context("pytorch", local_threadsafe=True):
            if module.factorization == "tucker":
                magnitudes = tl.tucker_to_tensor((module.core.abs(), factors))
            else:
                magnitudes = tl.cp_to_tensor((torch.ones(module.ranks[0], dtype=factors[0].dtype), factors))
        length = sum(module.ranks) if module.factorization == "tucker" else module.ranks[0] + len(module.shape)
        largest = max(float(weight.abs().max()) for weight in output)
        return length * max(1.0, float(magnitudes.max()) / max(largest, 1e-30))

    hooks = [
        (FactorizedSpectralWeights, factorized),
        (nn.Linear, linear),
        (nn.modules.conv._ConvNd, conv),
        (PointwiseLinear, pointwise),
        (SpectralConv, spectral),
        (nn.GroupNorm, group_norm),
        (nn.LayerNorm, layer_norm),
        (SinusoidalEmbedding, sinusoidal),
        (GaussianFeatures, gaussians),
    ]
    try:
        from torch_geometric.nn import MessagePassing

        def aggregation(module, inputs, output):  # the sum over a node's incoming edges: its in-degree
            edge_index = inputs[2]
            return float(torch.bincount(edge_index[1]).max()) if edge_index.numel() else 0.0

        hooks.append((MessagePassing, aggregation))
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        pass
    return hooks


def round_off_units(model: torch.nn.Module, run: Callable[[], Any]) -> tuple[float, Any]:
    """``run()``'s result and the units of ``u`` of its first-order round-off bound (module docstring): the
    reduction lengths of every reducing module call, plus one per call (its elementwise work)."""
    hooks, total = _reduction_hooks(), [0.0]
    handles = []

    def make(cost):
        def hook(module, inputs, output):
            total[0] += float(cost(module, inputs, output)) + 1.0
        return hook

    for module in model.modules():
        for kind, cost in hooks:
            if isinstance(module, kind):
                handles.append(module.register_forward_hook(make(cost)))
                break
    try:
        with torch.no_grad():
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    return total[0], result


def assert_reproduces(actual: np.ndarray, expected: np.ndarray, tolerance: float, what: str) -> None:
    """``max|actual - expected| <= tolerance max|expected|`` (same shape)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, stored {expected.shape}"
    scale = np.max(np.abs(expected))
    error = np.max(np.abs(actual - expected)) / scale
    assert error <= tolerance, f"{what}: max|y - y_stored| / max|y_stored| = {error:.2e} > tolerance {tolerance:.2e}"


def check_analysis(entry: dict[str, Any], tolerance: float) -> None:
    """The float32 round-off measured when the file was written must be within the a-priori bound of one evaluation."""
    measured = entry.get("fp32_error")
    if measured is not None:
        assert measured <= tolerance / 2, (
            f"{entry['file']}: the stored output's float32 error {measured:.2e} exceeds the round-off bound "
            f"{tolerance / 2:.2e} of one evaluation: the analysis underestimates this model"
        )


# -- metadata ---------------------------------------------------------------------------------------------
def check_checkpoint_metadata(entry: dict[str, Any], path: Path) -> None:
    """The raw file is of the stated format; after reading (and migrating) its metadata says what the manifest says."""
    from surrogates.checkpoint import FORMAT_VERSION, METADATA_KEY, model_class, read_checkpoint

    raw = torch.load(path, map_location="cpu", weights_only=True)
    if entry["kind"] == "preconditioner" and entry["format_version"] == 1:
        assert set(raw) == {"init_kwargs", "state_dict", "metadata"}, "format-1 preconditioner layout"
    elif entry["format_version"] == 1:
        meta = raw[METADATA_KEY]
        assert "format_version" not in meta and "package_version" not in meta
        cls = model_class(entry["model"])
        assert meta["model"]["class"] == f"{cls.__module__}.{cls.__qualname__}", "format 1 names the class by import path"
        assert meta["version"] == "0.1.0"
        if entry["kind"] == "pointwise":
            assert meta["problem"]["class"] == "surrogates.pdes.physics.helmholtz.Helmholtz2D"
    else:
        assert raw[METADATA_KEY]["format_version"] == entry["format_version"]
        assert raw[METADATA_KEY]["kind"] == entry["kind"]
        assert raw[METADATA_KEY]["model"]["name"] == entry["model"]
    raw_meta = raw.get(METADATA_KEY, {})
    wrapped = entry["kind"] in ("operator", "rollout")
    if entry["format_version"] >= 3:  # the statistics are stored once: buffers of the saved model
        assert "normalization" not in raw_meta and "scale" not in (raw_meta.get("conditioning") or {})
        if wrapped:
            assert any(key.startswith("model.") and "normalizer." in key for key in raw["state_dict"])
            assert not any(key.startswith(("net.", "input_normalizer.", "state_normalizer.")) for key in raw["state_dict"])
    checkpoint = read_checkpoint(path)  # migrates older formats
    if wrapped and entry["format_version"] < 3:  # the statistics the old readers took from the metadata lists
        names = {"operator": {"input": "input_normalizer", "target": "target_normalizer"},
                 "rollout": {"input": "state_normalizer"}}[entry["kind"]]
        for stats, buffer in names.items():
            for stat in ("mean", "std"):
                expected = torch.tensor(raw_meta["normalization"][stats][stat], dtype=torch.float64).float()
                assert torch.equal(checkpoint.state_dict[f"model.{buffer}.{stat}"], expected), (buffer, stat)
        if entry["kind"] == "rollout":
            expected = torch.tensor(raw_meta["conditioning"]["scale"], dtype=torch.float64).float()
            assert torch.equal(checkpoint.state_dict["model.param_scale"], expected)
    meta = checkpoint.metadata
    assert meta.format_version == FORMAT_VERSION
    assert meta.kind == entry["kind"]
    assert meta.model.name == entry["model"]
    if entry["format_version"] == 1 and entry["kind"] != "preconditioner":
        assert meta.package_version == "0.1.0"
        assert meta.task == {"operator": "operator_regression", "rollout": "autoregressive",
                             "pointwise": "physics_informed"}[entry["kind"]]
    if entry["kind"] == "pointwise":
        assert meta.problem is not None and meta.problem.name == "helmholtz"
    if entry["kind"] == "rollout":
        assert meta.conditioning["names"] == ["dt", "dx"]


def test_manifest_lists_every_golden_file_and_they_are_small():
    from surrogates.checkpoint import FORMAT_VERSION, KINDS

    listed = {entry["file"] for entry in MANIFEST["files"]} | {entry["data"] for entry in MANIFEST["files"]}
    on_disk = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.glob("v*/*") if p.is_file()}
    assert listed == on_disk
    # files of every kind written by this version, and the format-1 files
    current = [entry for entry in MANIFEST["files"] if entry["version"] == f"v{FORMAT_VERSION}"]
    assert {entry["kind"] for entry in current} == set(KINDS)
    assert {entry["model"] for entry in current} >= {"fno", "mgno", "unet", "tfno", "mg_tfno", "pde_refiner", "pig", "mlp",
                                                      "hc_moe", "gnn", "dcdm"}
    legacy = [entry for entry in MANIFEST["files"] if entry["version"] == "v1"]
    assert {entry["kind"] for entry in legacy} == set(KINDS)
    for entry in MANIFEST["files"]:  # unchanged since written, and small
        content = (GOLDEN / entry["file"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], f"{entry['file']} was modified"
        assert len(content) == entry["bytes"] and len(content) < 400_000, entry["file"]
    for folder in {entry["version"] for entry in MANIFEST["files"]}:  # each format's folder stays small
        assert sum((GOLDEN / name).stat().st_size for name in on_disk if name.startswith(f"{folder}/")) < 1_200_000, folder


# -- operator kind ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [k for k in entry_ids("operator") if ENTRIES[k]["model"] != "hc_moe"])
def test_operator(key):
    from surrogates import Surrogate

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    surrogate = Surrogate.load(path)
    units, y = round_off_units(surrogate.model, lambda: surrogate.predict(data["x"]))
    tolerance = 2 * (units + 4) * U32  # + normalize, denormalize
    check_analysis(entry, tolerance)
    assert_reproduces(y, data["y"], tolerance, key)


# -- hard-constraint models ------------------------------------------------------------------------------
def hard_constraint_tolerance(surrogate, x: torch.Tensor, y: np.ndarray, y_stored: np.ndarray, y_converged: np.ndarray
                              ) -> tuple[float, np.ndarray]:
    """Tolerance of a hard-constraint prediction, and the output of the solve converged to round-off here.

    ``y = B w*(B)``: the float32 basis ``B`` (the FNO backbone, bound ``n_B u`` relative to ``max|B|`` from
    :func:`round_off_units`) enters a float64 least-squares solve that amplifies its error by ``A``. ``A`` is
    estimated by solving with ``B`` perturbed by ``delta max|B|`` times uniform noise in ``[-1, 1]`` on every
    entry (a perturbation of the bound's size everywhere, in random directions, as rounding errors are;
    the largest of three trials; ``delta = 1e-6`` keeps the response linear and far above the solver's
    stopping noise). Levenberg-Marquardt stops at ``ftol = xtol = gtol = 1e-10``, not at the optimum
    (``phi`` is flat along the ridge-dominated directions: ``w`` is only determined to about
    ``sqrt(ftol phi / lambda_min)``), and another machine may stop at another iterate. So each output is
    compared with the same model solved to round-off (tolerances 1e-15): the stopping errors
    ``e_stored = |y_stored - y*_stored|`` (both stored when the file was written) and ``e_here = |y - y*_here|``
    are measured, and

        |y - y_stored| <= e_here + |y*_here - y*_stored| + e_stored <= e_here + 2 A n_B u + e_stored,

    plus the rounding of the outputs to float32.
    """
    model = surrogate.model
    converged = converged_model(model)
    with torch.no_grad():
        y_star = converged.solve(x).solution.numpy()  # float64
    units, _ = round_off_units(model.backbone, lambda: model.backbone(model.input_normalizer.encode(x)))
    scale = np.max(np.abs(y_star))
    delta, amplification = 1e-6, 0.0
    for trial in range(3):
        generator = torch.Generator().manual_seed(trial)

        def perturb(module, inputs, output):
            output = output.double()
            noise = 2 * torch.rand(output.shape, generator=generator, dtype=torch.float64) - 1
            return output + delta * output.abs().max() * noise

        handle = converged.backbone.register_forward_hook(perturb)
        try:
            with torch.no_grad():
                y_perturbed = converged.solve(x).solution.numpy()
        finally:
            handle.remove()
        amplification = max(amplification, np.max(np.abs(y_perturbed - y_star)) / scale / delta)
    e_here = np.max(np.abs(y - y_star)) / scale
    e_stored = np.max(np.abs(y_stored - y_converged)) / np.max(np.abs(y_converged))
    # + the outputs' rounding to float32
    return e_here + amplification * 2 * units * U32 + e_stored + 2 * U32, y_star


def converged_model(model):
    """The same hard-constraint model (weights, settings) with its solver run to round-off (tolerances 1e-15)."""
    from surrogates.checkpoint import build_model

    kwargs = {**model.init_kwargs, "ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "max_iter": 500}
    return build_model({"name": "hc_moe", "kwargs": kwargs}, model.state_dict()).eval()


@pytest.mark.parametrize("key", [k for k in entry_ids("operator") if ENTRIES[k]["model"] == "hc_moe"])
def test_hard_constraint(key):
    from surrogates import Surrogate

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    surrogate = Surrogate.load(path)
    x = torch.from_numpy(data["x"])
    if surrogate.model.constraint == "soft":  # no solver: a network like the others
        units, y = round_off_units(surrogate.model, lambda: surrogate.predict(data["x"]))
        tolerance = 2 * (units + 4) * U32
        check_analysis(entry, tolerance)
        assert_reproduces(y, data["y"], tolerance, key)
        return
    y = surrogate.predict(data["x"])
    tolerance, y_star = hard_constraint_tolerance(surrogate, x, y, data["y"], data["y_converged"])
    assert_reproduces(y, data["y"], tolerance, key)
    # the converged solutions differ by the amplified basis round-off only
    assert_reproduces(y_star, data["y_converged"], tolerance, f"{key} (converged solve)")


# -- rollout kind -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", entry_ids("rollout"))
def test_rollout(key):
    """PDE-Refiner draws its refinement noise from ``torch.Generator().manual_seed(seed)`` on the CPU: the
    same Mersenne-Twister stream on every machine, but not bit-identical normal numbers: the Box-Muller
    transform's last bits differ between CPU kernels (:data:`RANDN_UNITS`). A torch release that changes
    its CPU normal sampler fails the first check (then seeded rollouts are not reproducible across it)."""
    from surrogates.checkpoint import read_checkpoint
    from surrogates.serve.rollout import RolloutSurrogate

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    if "noise" in data:  # the seeded stream: the same Mersenne-Twister draws, Box-Muller to a few units of u
        noise = torch.randn(data["noise"].shape, generator=torch.Generator().manual_seed(int(data["seed"])))
        error = np.max(np.abs(noise.numpy() - data["noise"]))
        assert error <= RANDN_UNITS * U32, f"torch's seeded CPU normal draws changed (by {error:.1e}): seeded rollouts differ"
    surrogate = RolloutSurrogate.load(path)
    average = read_checkpoint(path).network_state("ema.module.")
    if average:  # trained with a weight average (ema_decay > 0): the reader predicts with it
        for name, value in surrogate.model.state_dict().items():
            assert torch.equal(value, average[name]), name
    steps, seed = int(data["steps"]), int(data["seed"])
    units, y = round_off_units(
        surrogate.model, lambda: surrogate.rollout(data["u0"], steps, seed=seed, dt=data["dt"], dx=data["dx"])
    )
    sigmas = surrogate.model.sigmas[1:].double()
    units += steps * (RANDN_UNITS * float(sigmas.sum()) + 4)  # noise draws; normalize, denormalize
    tolerance = 2 * units * U32
    check_analysis(entry, tolerance)
    assert_reproduces(y, data["y"], tolerance, key)
    if surrogate.stochastic:  # the seed matters: another seed gives another rollout
        other = surrogate.rollout(data["u0"], steps, seed=seed + 1, dt=data["dt"], dx=data["dx"])
        assert np.max(np.abs(other - data["y"])) / np.max(np.abs(data["y"])) > 10 * tolerance


# -- pointwise kind -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", entry_ids("pointwise"))
def test_pointwise(key):
    from surrogates.pdes.physics import Helmholtz2D
    from surrogates.serve.pointwise import PointwiseSurrogate
    from surrogates.tasks.physics_informed import load_solution, predict_on_points

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    net, problem = load_solution(path)
    assert problem == Helmholtz2D()
    points = torch.from_numpy(data["points"])
    units, y = round_off_units(net, lambda: predict_on_points(net, points).numpy())
    tolerance = 2 * units * U32
    check_analysis(entry, tolerance)
    assert_reproduces(y, data["y"], tolerance, key)
    served = PointwiseSurrogate.load(path)  # the service's reader of the same file
    assert served.coordinates == ["x", "y"]
    assert_reproduces(served.predict(data["points"]), data["y"], tolerance, f"{key} (PointwiseSurrogate)")


# -- reduced kind ---------------------------------------------------------------------------------------------
def reduced_tolerances(model, mus: np.ndarray) -> dict[str, float]:
    """Relative tolerances of the reduced solution's coefficients, fields and error bound (float64).

    ``theta`` from two unit lower-triangular solves (forward error ``kappa(Q) M u``), ``A_N = sum theta_m A_m``
    (``M`` terms) and ``b_N`` (``M_f``), then a backward-stable dense solve: the coefficients err by
    ``kappa(A_N) (kappa(Q_A) M + kappa(Q_f) M_f + 3 N) u`` (Higham, Thm. 7.2 and 9.4). Fields ``V c``:
    ``kappa(V)`` times that plus ``N u``. The bound ``||R gamma|| / alpha``: ``gamma`` errs like ``c``, and the
    product ``R gamma`` (columns ``K``) is a residual, small by cancellation, so its relative error is
    ``||R|| ||gamma|| / ||R gamma||`` times ``(rel(c) + K u)``. Two evaluations: twice each.
    """
    from surrogates.solvers.reduced_basis.estimators import residual_coefficients

    theta_a, theta_f = model.eim_coefficients(mus)
    M, N = model.reduced_operator.shape[:2]
    Mf = model.reduced_rhs.shape[0]
    A = (theta_a @ model.reduced_operator.reshape(M, N * N)).reshape(-1, N, N)
    kappa_a = float(np.max(np.linalg.cond(A)))
    kappa_qa = float(np.linalg.cond(model.operator_interpolation))
    kappa_qf = float(np.linalg.cond(model.rhs_interpolation))
    coefficients = kappa_a * (kappa_qa * M + kappa_qf * Mf + 3 * N) * U64
    fields = float(np.linalg.cond(model.basis)) * coefficients + N * U64
    c, _, _ = model.reduced_solve(mus)
    gamma = residual_coefficients(theta_f, c, theta_a)
    R = model.residual_R
    cancellation = float(np.max(np.linalg.norm(R, 2) * np.linalg.norm(gamma, axis=1) / np.linalg.norm(gamma @ R.T, axis=1)))
    bound = cancellation * (coefficients + R.shape[1] * U64) + 8 * U64  # + the division by alpha_LB and the sqrt
    return {"coefficients": 2 * coefficients, "fields": 2 * fields, "bound": 2 * bound}


@pytest.mark.parametrize("key", entry_ids("reduced"))
def test_reduced_model(key):
    import h5py

    from surrogates.pdes.thermal_block import ThermalBlock
    from surrogates.solvers.reduced_basis.model import ReducedModel

    entry, path, data = golden(key)
    with h5py.File(path, "r") as f:
        attrs = {name: (v.decode() if isinstance(v, bytes) else v) for name, v in f.attrs.items()}
    assert attrs["format"] == "surrogates.reduced_basis"
    assert attrs["format_version"] == entry["format_version"]
    if entry["format_version"] == "1.1":  # before the registry: the problem by import path, no kind
        assert attrs["problem_target"] == "surrogates.pdes.thermal_block.ThermalBlock" and "kind" not in attrs
    else:
        assert attrs["problem_target"] == entry["model"] and attrs["kind"] == "reduced"
    model = ReducedModel.load(path)
    assert isinstance(model.problem, ThermalBlock)
    solution = model.solve(data["mus"])
    tolerances = reduced_tolerances(model, data["mus"])
    assert_reproduces(solution.coefficients, data["coefficients"], tolerances["coefficients"], f"{key} coefficients")
    assert_reproduces(model.fields(solution.coefficients), data["fields"], tolerances["fields"], f"{key} fields")
    assert_reproduces(solution.bound, data["bound"], tolerances["bound"], f"{key} bound")


# -- preconditioner kind -------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [k for k in entry_ids("preconditioner") if ENTRIES[k]["model"] == "dcdm"])
def test_dcdm_network(key):
    """The DCDM network's directions ``d = D^-1/2 (N^T N + s I) D^-1/2 r`` from the loaded file.

    ``N^T`` is applied by autograd, a backward pass the forward hooks of :func:`round_off_units` do not see, so
    the check is a posteriori: the file stores the directions computed in float32 and in float64 from the same
    weights. The float64 evaluation here must reproduce the stored one to float64 round-off, which is estimated
    from the float32 errors measured here and when the file was written (``e = |d32 - d64| / max|d64|``): to first
    order the same operations err in proportion to the unit round-off, so each float64 evaluation errs by about
    ``e u64 / u32``; two evaluations, and a factor 2 between one realization and its bound. Then the float32
    directions are within both float32 errors (triangle inequality through the float64 ones).
    """
    import copy

    import scipy.sparse as sp

    from surrogates.solvers.dcdm.grid import DirectionOperator
    from surrogates.solvers.dcdm.network import load as load_dcdm
    from surrogates.solvers.dcdm.network import load_metadata

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    model = load_dcdm(path)
    assert load_metadata(path)["epochs"] == 1
    A = sp.csr_matrix((data["A_data"], data["A_indices"], data["A_indptr"]), shape=tuple(data["A_shape"]))
    r = torch.from_numpy(data["r"])
    d = DirectionOperator(model, A)(r).numpy()
    d64 = DirectionOperator(copy.deepcopy(model).double(), A)(r).numpy()
    e_here = float(np.max(np.abs(d - d64)) / np.max(np.abs(d64)))
    e_stored = entry["fp32_error"]
    tolerance64 = 4 * (e_here + e_stored) * U64 / U32 + 8 * U64
    assert_reproduces(d64, data["d_float64"], tolerance64, f"{key} (float64)")
    assert_reproduces(d, data["d"], e_here + e_stored + tolerance64 + 2 * U32, key)


@pytest.mark.parametrize("key", [k for k in entry_ids("preconditioner") if ENTRIES[k]["model"] == "gnn"])
def test_learned_preconditioner(key):
    import scipy.sparse as sp

    from surrogates.solvers.preconditioners import learned

    entry, path, data = golden(key)
    check_checkpoint_metadata(entry, path)
    model = learned.load(path)
    if entry["format_version"] == 1:
        assert learned.load_metadata(path)["epochs"] == 1  # the old 'metadata' became the training record
    A = sp.csr_matrix((data["A_data"], data["A_indices"], data["A_indptr"]), shape=tuple(data["A_shape"]))
    units, L = round_off_units(model, lambda: learned.factor_values(model, A))
    np.testing.assert_array_equal(L.indices, data["L_indices"])
    np.testing.assert_array_equal(L.indptr, data["L_indptr"])
    tolerance = 2 * (units + 4) * U32  # + a_hat's cast, softplus, the D^1/2 scaling
    check_analysis(entry, tolerance)
    assert_reproduces(L.data, data["L_data"], tolerance, key)
