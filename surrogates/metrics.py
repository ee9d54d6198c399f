"""Error metrics shared by training, evaluation and benchmarks.

Every function takes batched fields ``pred`` and ``target`` of shape ``(B, C, *spatial)`` and
returns one value per sample, shape ``(B,)``, so callers choose how to aggregate.
Norms are taken over all channels and grid points of a sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_EPS = 1e-12


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.ndim < 2:
        raise ValueError(f"expected (batch, channel, *spatial) tensors, got shape {tuple(pred.shape)}")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative L2 error ``||pred - target||_2 / ||target||_2`` per sample, shape ``(B,)``.

    On a uniform grid the grid-spacing factor of the discrete L2 norm cancels, so this is the
    relative L2 norm of the underlying functions (the FNO paper's metric). PDEBench calls the same
    quantity nRMSE.
    """
    _check(pred, target)
    diff = torch.linalg.vector_norm(_flat(pred - target), dim=1)
    return diff / torch.linalg.vector_norm(_flat(target), dim=1).clamp_min(_EPS)


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root-mean-square error per sample, shape ``(B,)``."""
    _check(pred, target)
    return _flat(pred - target).pow(2).mean(dim=1).sqrt()


def nrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalized RMSE ``RMSE / RMS(target)`` per sample (equals :func:`relative_l2`), shape ``(B,)``."""
    return relative_l2(pred, target)


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
    denominator = (torch.linalg.vector_norm(p, dim=1) * torch.linalg.vector_norm(t, dim=1)).clamp_min(_EPS)
    return (p * t).sum(dim=1) / denominator


def _squared_h1_seminorm(field: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
    """Sum over spatial dims of squared gradient norms per sample (second-order finite differences)."""
    spatial_dims = tuple(range(2, field.ndim))
    if len(spacing) != len(spatial_dims):
        raise ValueError(f"need one grid spacing per spatial dim ({len(spatial_dims)}), got {len(spacing)}")
    gradients = torch.gradient(field, spacing=list(spacing), dim=spatial_dims)
    return sum(_flat(g).pow(2).sum(dim=1) for g in gradients)


def relative_h1(
    pred: torch.Tensor, target: torch.Tensor, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """Relative H1 error per sample, shape ``(B,)``.

    ``sqrt(||e||^2 + ||grad e||^2) / sqrt(||u||^2 + ||grad u||^2)`` with ``e = pred - target``;
    the L2 parts are weighted by the cell volume so that both terms approximate integrals.
    Gradients use second-order central differences (one-sided at the ends).

    Parameters
    ----------
    spacing
        Grid spacing of each spatial dim; default ``1 / (n - 1)`` (unit domain, both ends included).
    """
    _check(pred, target)
    shape = pred.shape[2:]
    if spacing is None:
        spacing = [1.0 / max(n - 1, 1) for n in shape]
    volume = float(torch.tensor(list(spacing), dtype=torch.float64).prod())
    error = pred - target

    def squared_h1(field: torch.Tensor) -> torch.Tensor:
        return volume * (_flat(field).pow(2).sum(dim=1) + _squared_h1_seminorm(field, spacing))

    return (squared_h1(error) / squared_h1(target).clamp_min(_EPS)).sqrt()


METRICS = {
    "rel_l2": relative_l2,
    "rel_h1": relative_h1,
    "rmse": rmse,
    "vrmse": vrmse,
    "pearson": pearson_correlation,
}
"""Per-sample metrics computed by evaluation, by name."""


def compute_metric(
    name: str, pred: torch.Tensor, target: torch.Tensor, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """Per-sample metric ``name`` of :data:`METRICS`, shape ``(B,)``.

    ``spacing`` (grid spacing per spatial dim) reaches the metrics that depend on the grid
    (``rel_h1``); the others ignore it.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    fn = METRICS[name]
    return fn(pred, target, spacing) if fn is relative_h1 else fn(pred, target)
