"""Error metrics shared by training, evaluation and benchmarks.

Every function of :data:`METRICS` takes batched fields ``pred`` and ``target`` of shape
``(B, C, *spatial)`` and returns one value per sample, shape ``(B,)``, so callers choose how to
aggregate. Norms are taken over all channels and grid points of a sample, except in :func:`nrmse` and
:func:`vrmse`, which score each channel on its own and average over channels.

Rollout metrics (:data:`ROLLOUT_METRICS`, :func:`high_correlation_time`, :func:`rollout_metrics`)
compare trajectories ``(B, T, *spatial)`` step by step and return ``(B, T)`` curves or one time per
trajectory ``(B,)``.

Norms are taken of fields scaled by a power of two (exact) that brings their largest value near 1, so the
metrics of float32 fields in any units (1e20, 1e-24) are those of the same fields at unit scale.

:func:`error_spectrum` splits an error over the Fourier modes of a periodic axis (which scales a
model gets wrong: PDE-Refiner's argument is about the low-amplitude high frequencies).
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import numpy as np
import torch

_EPS = 1e-12


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.ndim < 2:
        raise ValueError(f"expected (batch, channel, *spatial) tensors, got shape {tuple(pred.shape)}")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _unit_scale(x: torch.Tensor, dims: int | tuple[int, ...]) -> torch.Tensor:
    """The power of two that brings ``max|x|`` over ``dims`` into ``[0.5, 1)`` (1 where ``x`` is 0 or not finite),
    shaped to broadcast against ``x``.

    Norms and ratios are taken of fields scaled by it: exact in binary floating point, and squares can then
    neither overflow (float32 fields of ~1e20 gave NaN) nor sink into subnormals (fields of ~1e-22, such as
    densities in cgs units, scored a relative error of ~1e-9 for a 10% error).
    """
    _, exponent = torch.frexp(x.detach().abs().amax(dim=dims, keepdim=True))
    limit = math.frexp(torch.finfo(x.dtype).max)[1] - 1  # the largest power of two of the dtype: 2**127 in float32
    return torch.ldexp(torch.ones_like(exponent, dtype=x.dtype), -exponent.clamp(-limit, limit))


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative L2 error ``||pred - target||_2 / ||target||_2`` per sample, shape ``(B,)``.

    On a uniform grid the grid-spacing factor of the discrete L2 norm cancels, so this is the
    relative L2 norm of the underlying functions (the FNO paper's metric). For one channel it is
    PDEBench's nRMSE (:func:`nrmse`); with several, channels of large values weigh more.
    """
    _check(pred, target)
    scale = _unit_scale(_flat(target), 1)
    diff = torch.linalg.vector_norm(_flat(pred - target) * scale, dim=1)
    return diff / torch.linalg.vector_norm(_flat(target) * scale, dim=1).clamp_min(_EPS)


def field_relative_l2(prediction: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """``||prediction - reference|| / ||reference||`` over all points of one field, in float64, as a number.

    The error of a physics-informed solution against its reference on a grid (one instance, no batch).
    """
    prediction, reference = np.asarray(prediction, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(prediction - reference) / np.linalg.norm(reference))


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root-mean-square error per sample, shape ``(B,)``."""
    _check(pred, target)
    error = _flat(pred - target)
    scale = _unit_scale(error, 1)
    return torch.linalg.vector_norm(error * scale, dim=1) / scale[:, 0] / math.sqrt(max(error.shape[1], 1))


def nrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalized RMSE per sample: ``RMSE / RMS(target)`` of each channel, averaged over channels, shape ``(B,)``.

    PDEBench's nRMSE (``metric_func`` in ``pdebench/models/metrics.py`` divides each channel's RMSE by that
    channel's RMS, then averages): a channel of small values (a velocity next to a pressure, one state of a
    time window) counts as much as one of large values. With one channel it equals :func:`relative_l2`.
    """
    _check(pred, target)
    # (B, C, points): a field without spatial dims is one point per channel
    scale = _unit_scale(target.flatten(2), 2)
    error = torch.linalg.vector_norm((pred - target).flatten(2) * scale, dim=2)
    norm = torch.linalg.vector_norm(target.flatten(2) * scale, dim=2).clamp_min(_EPS)
    return (error / norm).mean(dim=1)


def vrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Variance-scaled RMSE per sample and channel, averaged over channels, shape ``(B,)``.

    ``sqrt(mean((pred - target)^2) / (var(target) + eps))`` as in The Well: a constant prediction
    equal to the target's mean scores 1.
    """
    _check(pred, target)
    dims = tuple(range(2, pred.ndim))
    mse = (pred - target).pow(2).mean(dim=dims)
    var = target.var(dim=dims, unbiased=False)
    return (mse / (var + 1e-7)).sqrt().mean(dim=1)


def pearson_correlation(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation coefficient per sample over all channels and points, shape ``(B,)``."""
    _check(pred, target)
    p = _flat(pred) - _flat(pred).mean(dim=1, keepdim=True)
    t = _flat(target) - _flat(target).mean(dim=1, keepdim=True)
    p, t = p * _unit_scale(p, 1), t * _unit_scale(t, 1)  # the correlation does not change; the norms stay finite
    denominator = (torch.linalg.vector_norm(p, dim=1) * torch.linalg.vector_norm(t, dim=1)).clamp_min(_EPS)
    return (p * t).sum(dim=1) / denominator


def _squared_h1_seminorm(
    field: torch.Tensor, spacing: Sequence[float], periodic: Sequence[bool]
) -> torch.Tensor:
    """Sum over spatial dims of squared gradient norms per sample, shape ``(B,)``.

    Second-order central differences; on a periodic dim they wrap around (every point is an interior
    point), on a bounded one they are first-order one-sided at the two ends (``torch.gradient``).
    """
    spatial_dims = tuple(range(2, field.ndim))
    if len(spacing) != len(spatial_dims) or len(periodic) != len(spatial_dims):
        raise ValueError(
            f"need one grid spacing and one periodic flag per spatial dim ({len(spatial_dims)}), "
            f"got {len(spacing)} and {len(periodic)}"
        )
    total = torch.zeros(field.shape[0], dtype=field.dtype, device=field.device)
    for dim, h, wraps in zip(spatial_dims, spacing, periodic):
        if wraps and field.shape[dim] >= 3:
            gradient = (field.roll(-1, dim) - field.roll(1, dim)) / (2 * h)
        else:
            (gradient,) = torch.gradient(field, spacing=[h], dim=dim)
        total = total + _flat(gradient).pow(2).sum(dim=1)
    return total


def relative_h1(
    pred: torch.Tensor,
    target: torch.Tensor,
    spacing: Sequence[float] | None = None,
    periodic: Sequence[bool] | None = None,
) -> torch.Tensor:
    """Relative H1 error per sample, shape ``(B,)``.

    ``sqrt(||e||^2 + ||grad e||^2) / sqrt(||u||^2 + ||grad u||^2)`` with ``e = pred - target``;
    the L2 parts are weighted by the cell volume so that both terms approximate integrals.
    Gradients use second-order central differences, wrapping around on periodic dims and one-sided
    at the ends of bounded ones (one-sided differences on a periodic dim would score a field and its
    circular shift differently, and miss the seam's gradient).

    Parameters
    ----------
    spacing
        Grid spacing of each spatial dim; default ``1 / n`` on periodic dims (unit period, right end
        excluded), ``1 / (n - 1)`` on bounded ones (unit domain, both ends included).
    periodic
        Whether each spatial dim wraps around; default: none does.
    """
    _check(pred, target)
    shape = pred.shape[2:]
    periodic = [False] * len(shape) if periodic is None else [bool(p) for p in periodic]
    if len(periodic) != len(shape):
        raise ValueError(f"need one periodic flag per spatial dim ({len(shape)}), got {len(periodic)}")
    if spacing is None:
        spacing = [1.0 / n if wraps else 1.0 / max(n - 1, 1) for n, wraps in zip(shape, periodic)]
    volume = float(torch.tensor(list(spacing), dtype=torch.float64).prod())
    scale = _unit_scale(_flat(target), 1).reshape(-1, *[1] * (target.ndim - 1))
    error, target = (pred - target) * scale, target * scale

    def squared_h1(field: torch.Tensor) -> torch.Tensor:
        return volume * (_flat(field).pow(2).sum(dim=1) + _squared_h1_seminorm(field, spacing, periodic))

    return (squared_h1(error) / squared_h1(target).clamp_min(_EPS)).sqrt()


METRICS = {
    "rel_l2": relative_l2,
    "rel_h1": relative_h1,
    "rmse": rmse,
    "nrmse": nrmse,
    "vrmse": vrmse,
    "pearson": pearson_correlation,
}
"""Per-sample metrics computed by evaluation, by name."""


def compute_metric(
    name: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    spacing: Sequence[float] | None = None,
    periodic: Sequence[bool] | None = None,
) -> torch.Tensor:
    """Per-sample metric ``name`` of :data:`METRICS`, shape ``(B,)``.

    ``spacing`` (grid spacing per spatial dim) and ``periodic`` (whether each spatial dim wraps
    around) reach the metrics that depend on the grid (``rel_h1``); the others ignore them.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    fn = METRICS[name]
    return fn(pred, target, spacing, periodic) if fn is relative_h1 else fn(pred, target)


# -- rollouts -----------------------------------------------------------------------------------------

HIGH_CORRELATION_THRESHOLDS = (0.8, 0.9)
"""Thresholds of the high-correlation time reported for rollouts (PDE-Refiner reports both)."""


def _check_rollout(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.ndim < 3:
        raise ValueError(f"expected (batch, time, *spatial) trajectories, got shape {tuple(pred.shape)}")


def _per_step(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, ...)`` -> ``(B, T, N)``: everything after the time axis (channels, points) as one axis."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def rollout_correlation(pred: torch.Tensor, target: torch.Tensor, undefined: float = float("nan")) -> torch.Tensor:
    """Pearson correlation between predicted and reference states at every step, shape ``(B, T)``.

    Parameters
    ----------
    pred, target
        Trajectories ``(B, T, *spatial)``; every axis after ``T`` (a channel axis too) is pooled,
        so each step's correlation is taken over all points of that state.
    undefined
        Value where the correlation is undefined: the prediction or the reference is constant at
        that step (its fluctuation about its mean is below ``100 eps`` of its norm, ``eps`` the
        machine epsilon of the dtype, so float round-off of a constant field counts as constant).
        Default NaN; ``0.0`` reads "no correlation". A step with non-finite values (a rollout
        that blew up) gives NaN whatever ``undefined`` is; :func:`correlation_time` counts NaN as
        below every threshold.
    """
    _check_rollout(pred, target)
    p, t = _per_step(pred), _per_step(target)
    if not p.is_floating_point():
        p, t = p.double(), t.double()
    p, t = p * _unit_scale(p, -1), t * _unit_scale(t, -1)  # the correlation does not change; norms stay finite
    p_centered = p - p.mean(dim=-1, keepdim=True)
    t_centered = t - t.mean(dim=-1, keepdim=True)
    p_norm = torch.linalg.vector_norm(p_centered, dim=-1)
    t_norm = torch.linalg.vector_norm(t_centered, dim=-1)
    tol = 100 * torch.finfo(p.dtype).eps
    constant = (p_norm <= tol * torch.linalg.vector_norm(p, dim=-1)) | (
        t_norm <= tol * torch.linalg.vector_norm(t, dim=-1)
    )
    corr = (p_centered * t_centered).sum(dim=-1) / (p_norm * t_norm).clamp_min(torch.finfo(p_norm.dtype).tiny)
    corr = corr.clamp(-1.0, 1.0)  # round-off can step just outside
    return torch.where(constant, torch.full_like(corr, undefined), corr)


def rollout_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of every step over all points (and channels), shape ``(B, T)``."""
    _check_rollout(pred, target)
    return _per_step(pred - target).pow(2).mean(dim=-1)


def correlation_time(correlation: torch.Tensor, threshold: float = 0.8, dt: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Time until a correlation curve first falls below ``threshold``, per trajectory, shape ``(B,)``.

    Step ``i`` of a rollout (``correlation[:, i]``) is the state ``(i + 1) dt`` after the initial
    condition. The time is ``n dt``, ``n`` the number of leading steps with correlation
    ``>= threshold``: the first crossing counts, even if the curve recovers later; a rollout whose
    first step is already below scores 0; one that never falls below scores the full horizon
    ``T dt``. An undefined (NaN) correlation counts as below the threshold.

    Parameters
    ----------
    correlation
        ``(B, T)``, e.g. from :func:`rollout_correlation`.
    dt
        Time between steps: a number, or one per trajectory ``(B,)`` (datasets with per-sample ``dt``).
    """
    if correlation.ndim != 2:
        raise ValueError(f"expected a (batch, time) correlation curve, got shape {tuple(correlation.shape)}")
    above = correlation >= threshold  # NaN compares False: an undefined step ends the run
    steps = torch.cumprod(above.to(torch.int64), dim=1).sum(dim=1)
    dtype = correlation.dtype if correlation.is_floating_point() else torch.float32
    dt = torch.as_tensor(dt, dtype=dtype, device=correlation.device)
    if dt.ndim not in (0, 1) or (dt.ndim == 1 and dt.shape[0] not in (1, correlation.shape[0])):
        raise ValueError(
            f"dt must be a number or one per trajectory ({correlation.shape[0]}), got shape {tuple(dt.shape)}"
        )
    return steps.to(dt.dtype) * dt


def high_correlation_time(
    pred: torch.Tensor, target: torch.Tensor, dt: float | torch.Tensor = 1.0, threshold: float = 0.8
) -> torch.Tensor:
    """High-correlation time of rollouts ``(B, T, *spatial)``: :func:`correlation_time` of :func:`rollout_correlation`.

    The time, in the units of ``dt``, until the per-step Pearson correlation with the reference first
    falls below ``threshold`` (PDE-Refiner reports 0.8 and 0.9); ``T dt`` when it never does.
    Shape ``(B,)``.
    """
    return correlation_time(rollout_correlation(pred, target), threshold, dt)


ROLLOUT_METRICS = {
    "corr": rollout_correlation,
    "mse": rollout_mse,
}
"""Per-step rollout metrics by name: ``(B, T, *spatial)`` trajectories -> ``(B, T)`` curves.

Kept apart from :data:`METRICS`, whose functions score single states ``(B, C, *spatial)``."""


def rollout_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    dt: float | torch.Tensor = 1.0,
    thresholds: Sequence[float] = HIGH_CORRELATION_THRESHOLDS,
) -> dict[str, torch.Tensor]:
    """Every rollout metric of trajectories ``(B, T, *spatial)``.

    Returns
    -------
    dict
        ``"corr"`` and ``"mse"``: ``(B, T)`` curves; ``"high_corr_time_<threshold>"`` (e.g.
        ``high_corr_time_0.8``): ``(B,)`` times in the units of ``dt``.
    """
    out = {name: fn(pred, target) for name, fn in ROLLOUT_METRICS.items()}
    for threshold in thresholds:
        out[f"high_corr_time_{threshold:g}"] = correlation_time(out["corr"], threshold, dt)
    return out


def error_spectrum(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per Fourier mode of the last (periodic) axis, shape ``(n // 2 + 1,)``.

    Entry ``m`` is the power of ``pred - target`` in wavenumber ``m`` (modes ``m`` and ``-m``
    together), averaged over every other axis, so the entries sum to the MSE (Parseval); float64. Call
    it with ``target = 0`` for the spectrum of the reference itself.

    Parameters
    ----------
    pred, target
        Same shape ``(..., n)``, the last axis periodic and uniformly sampled.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.ndim < 1 or pred.shape[-1] < 2:
        raise ValueError(f"need a periodic last axis of at least 2 points, got shape {tuple(pred.shape)}")
    error = (pred - target).double()  # float64: the high modes of a good prediction are tiny
    n = error.shape[-1]
    power = torch.fft.rfft(error, dim=-1, norm="forward").abs().pow(2)
    power = power.reshape(-1, power.shape[-1]).mean(dim=0)
    # every mode but the mean (and the Nyquist mode of an even n) stands for +m and -m
    doubled = torch.full_like(power, 2.0)
    doubled[0] = 1.0
    if n % 2 == 0:
        doubled[-1] = 1.0
    return power * doubled
