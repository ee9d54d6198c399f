"""Shared pieces of the training benchmarks under ``tools/``: the package's own training path, timing.

A benchmark trains through what ``surrogates-train experiment=<name>`` runs: the Hydra configs of
``conf/`` are composed with the experiment, and the DataModule (``cfg.data``), the task
(``cfg.task``: :class:`~surrogates.tasks.operator_regression.OperatorRegression`, with its
:class:`~surrogates.models.normalized.NormalizedOperator`, training-split normalizers, loss, Adam and
schedule) and a Lightning ``Trainer`` (``cfg.trainer``) are instantiated from them. The only
differences from the command: no logger, no checkpoint files, no progress bar, and the test split is
evaluated with the weights of the last epoch (the command tests ``best.ckpt``, the epoch with the
lowest validation error).

A peer network (neuraloperator's FNO) is plugged into the same task as ``net``
(:class:`NeuralopFNO`), so that it sees the same data, normalization, loss, optimizer, schedule and
batch order as ours.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EpochTimer",
    "NeuralopFNO",
    "compose",
    "count_parameters",
    "cpu_model",
    "inference_ms_per_sample",
    "neuralop_modes",
    "train_run",
]

ROOT = Path(__file__).resolve().parents[1]


# -- configs -----------------------------------------------------------------------------------


def compose(experiment: str, overrides: list[str] | None = None):
    """The resolved config of ``surrogates-train experiment=<experiment> <overrides>`` (no Hydra run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import surrogates.cli  # noqa: F401  (registers the config resolvers)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=[f"experiment={experiment}", *(overrides or [])])
    GlobalHydra.instance().clear()
    return cfg


# -- the peer ----------------------------------------------------------------------------------


def neuralop_modes(modes: int, dim: int) -> tuple[int, ...]:
    """``neuralop``'s ``n_modes`` keeping the frequency set of our ``modes`` (see bench_fno_darcy)."""
    return (2 * modes,) * (dim - 1) + (2 * modes - 2,)


try:
    from surrogates.models.base import OperatorModel
except ImportError:  # pragma: no cover - run from a checkout without the package installed
    OperatorModel = torch.nn.Module  # type: ignore[misc,assignment]


class NeuralopFNO(OperatorModel):
    """``neuralop.models.FNO`` (its defaults unless ``peer_kwargs`` say otherwise) with the same Fourier
    modes as ``surrogates.models.FNO(modes=modes)``, as a network the package's tasks accept.

    Benchmark-only: it is not registered for checkpoints (the benchmarks write none).
    """

    registered_name = "neuralop_fno"

    def __init__(self, in_channels: int, out_channels: int, modes: int = 12, width: int = 32, n_layers: int = 4,
                 dim: int = 2, peer_kwargs: dict | None = None):
        super().__init__()
        from neuralop.models import FNO as PeerFNO

        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.peer = PeerFNO(n_modes=neuralop_modes(modes, dim), hidden_channels=width, in_channels=in_channels,
                            out_channels=out_channels, n_layers=n_layers, **(peer_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.peer(x)


def build_net(cfg, peer: bool, peer_kwargs: dict | None = None) -> torch.nn.Module:
    """The experiment's network (``cfg.model``), or neuraloperator's FNO with the same modes, width, layers."""
    from hydra.utils import instantiate

    if not peer:
        return instantiate(cfg.model)
    m = cfg.model
    return NeuralopFNO(m.in_channels, m.out_channels, int(m.modes), int(m.width), int(m.n_layers), int(m.dim),
                       peer_kwargs)


def count_parameters(model: torch.nn.Module) -> int:
    """Real parameters (a complex entry counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


# -- training ----------------------------------------------------------------------------------


try:
    import lightning as L

    _Callback = L.Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[misc,assignment]


class EpochTimer(_Callback):
    """Wall seconds of each training epoch: from its start to the end of its last optimizer step.

    Data loading, forward, backward, optimizer and logging count; validation does not. The
    validation error of each epoch is recorded too.
    """

    def __init__(self):
        self.epoch_s: list[float] = []
        self.samples: list[int] = []
        self.val_rel_l2: list[float] = []
        self._start = 0.0
        self._seen = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self._seen = 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._seen += int(batch["x"].shape[0])
        if batch_idx == trainer.num_training_batches - 1:
            self.epoch_s.append(time.perf_counter() - self._start)
            self.samples.append(self._seen)

    def on_validation_end(self, trainer, pl_module):
        # not on_validation_epoch_end: Lightning calls that hook on callbacks before the module's, and the
        # tasks log val/rel_l2 in theirs, so a callback would read the previous epoch's value
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/rel_l2")
        if value is not None:
            self.val_rel_l2.append(float(value))
        if self.epoch_s:
            print(f"  epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {self.epoch_s[-1]:.1f} s, "
                  f"val rel. L2 {self.val_rel_l2[-1] if self.val_rel_l2 else float('nan'):.4f}", flush=True)


def train_run(experiment: str, seed: int, epochs: int, peer: bool = False, overrides: list[str] | None = None,
              peer_kwargs: dict | None = None, keep_model: bool = False) -> dict[str, Any]:
    """Train one network as ``surrogates-train experiment=<experiment> seed=<seed> trainer.max_epochs=<epochs>``.

    ``overrides`` are Hydra overrides (``data.data_dir=...``, ``data.n_train=...``, ``model.width=...``);
    ``peer`` puts :class:`NeuralopFNO` (same modes, width, layers as ``cfg.model``) into the task
    instead of the configured model. Returns test errors (last epoch's weights), the training
    throughput (samples per second of training epochs, median over epochs) and the histories.
    """
    import lightning as L
    from hydra.utils import instantiate

    cfg = compose(experiment, [f"seed={seed}", f"trainer.max_epochs={epochs}", *(overrides or [])])
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # as surrogates-train: data, then net, then task
    datamodule = instantiate(cfg.data)
    net = build_net(cfg, peer, peer_kwargs)
    task = instantiate(cfg.task, net=net)
    timer = EpochTimer()
    trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, default_root_dir=None)
    trainer.fit(task, datamodule=datamodule)
    test = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    rates = [n / s for n, s in zip(timer.samples, timer.epoch_s)]
    out = {
        "seed": seed,
        "params": count_parameters(net),
        "test_rel_l2": float(test["test/rel_l2"]),
        "test_rel_h1": float(test["test/rel_h1"]),
        "samples_per_s": statistics.median(rates),
        "epoch_s": timer.epoch_s,
        "val_rel_l2": timer.val_rel_l2,
        "n_train": len(datamodule.train_set),
        "n_test": len(datamodule.datasets["test"]),
        "resolution": list(datamodule.datasets["test"].spatial_shape),
        "model": {k: v for k, v in net.init_kwargs.items()},
    }
    if keep_model:
        out["task"], out["datamodule"] = task, datamodule
    return out


@torch.no_grad()
def inference_ms_per_sample(model: torch.nn.Module, loader, repeats: int = 3) -> float:
    """Milliseconds per sample of ``model(x)`` (the saved model: normalize, network, decode) in eval mode
    over the batches of ``loader``, median over ``repeats`` passes."""
    model.eval()
    batches = [batch["x"] for batch in loader]
    model(batches[0])  # warm-up: allocator, FFT plans
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in batches:
            model(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / sum(len(x) for x in batches)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# -- report ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
