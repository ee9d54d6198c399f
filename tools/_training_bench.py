"""Shared pieces of the training benchmarks under ``tools/``: data, normalization, loop, timing.

Every benchmark trains its models with the same plain loop (no Lightning, so that the loop costs
nothing measurable): per-channel Gaussian normalization with training statistics, relative L2
loss in physical units, Adam with a cosine or step schedule, a seeded batch order per epoch.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import h5py
import torch

from surrogates.metrics import relative_h1, relative_l2

__all__ = [
    "Gaussian",
    "count_parameters",
    "cpu_model",
    "epoch_order",
    "evaluate",
    "grid_spacing",
    "inference_ms_per_sample",
    "load_pair",
    "load_split",
    "make_optimizer",
    "neuralop_fno",
    "neuralop_modes",
    "train_epoch",
]


# -- data --------------------------------------------------------------------------------------


def load_pair(
    path: Path,
    inputs: str = "a",
    targets: str = "u",
    input_time: int | None = None,
    target_time: int | None = None,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``, each ``(N, 1, *grid)`` float32, from one HDF5 split file.

    For time-dependent variables ``(sample, time, *grid)`` pass the time indices, e.g. Burgers
    ``inputs="u", targets="u", input_time=0, target_time=-1``.
    """
    with h5py.File(path, "r") as f:
        x = f[inputs][:limit] if input_time is None else f[inputs][:limit, input_time]
        y = f[targets][:limit] if target_time is None else f[targets][:limit, target_time]
    return torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y).float().unsqueeze(1)


def load_split(path: Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, u)``, each ``(N, 1, n, n)`` float32, from an HDF5 file with datasets ``a`` and ``u``."""
    return load_pair(path, "a", "u", limit=limit)


def grid_spacing(path: Path, dims: tuple[str, ...]) -> list[float]:
    """Spacing of each named coordinate of a split file (uniform grids)."""
    with h5py.File(path, "r") as f:
        return [float(f[d][1] - f[d][0]) for d in dims]


class Gaussian:
    """Per-channel normalization ``(x - mean) / std`` with statistics from the training split."""

    def __init__(self, x: torch.Tensor):
        dims = [0] + list(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self.mean = x.mean(dims).view(shape)
        self.std = x.std(dims).clamp_min(1e-12).view(shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


# -- models ------------------------------------------------------------------------------------


def count_parameters(model: torch.nn.Module) -> int:
    """Real parameters (a complex entry counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def neuralop_modes(modes: int, dim: int) -> tuple[int, ...]:
    """``neuralop``'s ``n_modes`` keeping the frequency set of our ``modes`` (see bench_fno_darcy)."""
    return (2 * modes,) * (dim - 1) + (2 * modes - 2,)


def neuralop_fno(modes: int, width: int, layers: int, dim: int, in_channels: int = 1, out_channels: int = 1):
    """``neuralop.models.FNO`` with its defaults and the same Fourier modes as ``FNO(modes=modes)``."""
    from neuralop.models import FNO as PeerFNO

    return PeerFNO(n_modes=neuralop_modes(modes, dim), hidden_channels=width, in_channels=in_channels,
                   out_channels=out_channels, n_layers=layers)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, epochs: int,
                   scheduler: str = "cosine", step_size: int = 100):
    """Adam and a per-epoch schedule: ``cosine`` over ``epochs`` or ``step`` (halve every ``step_size``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if scheduler == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    else:
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.5)
    return optimizer, schedule


# -- training ----------------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of an epoch: the same for every model trained with the same seed."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


def train_epoch(model, optimizer, a, u, norm_a, norm_u, order, batch_size) -> float:
    """One epoch in the given sample order; returns wall seconds. Loss: relative L2 in physical units."""
    model.train()
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        pred = norm_u.decode(model(norm_a.encode(a[idx])))
        loss = relative_l2(pred, u[idx]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model, a, u, norm_a, norm_u, batch_size, spacing: list[float] | None = None) -> dict[str, float]:
    """Mean per-sample relative L2 and relative H1 errors in physical units."""
    model.eval()
    l2, h1 = [], []
    for i in range(0, len(a), batch_size):
        pred = norm_u.decode(model(norm_a.encode(a[i : i + batch_size])))
        l2.append(relative_l2(pred, u[i : i + batch_size]))
        h1.append(relative_h1(pred, u[i : i + batch_size], spacing))
    return {"rel_l2": torch.cat(l2).mean().item(), "rel_h1": torch.cat(h1).mean().item()}


@torch.no_grad()
def inference_ms_per_sample(model, a, norm_a, batch_size: int, repeats: int = 3) -> float:
    """Milliseconds per sample of ``model(normalized input)`` in eval mode, median over ``repeats`` passes."""
    model.eval()
    model(norm_a.encode(a[:batch_size]))  # warm-up: allocator, FFT plans
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(a), batch_size):
            model(norm_a.encode(a[i : i + batch_size]))
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / len(a)


# -- report ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
