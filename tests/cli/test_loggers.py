"""Every logger config trains a tiny run and leaves its files; `logger=none` with the default callbacks;
early stopping and last.ckpt at every epoch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from surrogates.cli.train import train

TINY = ["experiment=darcy_fno_demo", "model.width=4", "model.modes=2", "model.n_layers=1",
        "model.projection_channels=8", "trainer.enable_progress_bar=false", "test=false"]

# what each logger leaves in the run folder (the optional ones need `pip install -e ".[loggers]"`)
LOGGER_FILES = {
    "csv": ("csv", "csv/metrics.csv"),
    "tensorboard": ("tensorboard", "tensorboard/events.out.tfevents.*"),
    "mlflow": ("mlflow", "mlruns/*/*/metrics/val/rel_l2"),
    "wandb": ("wandb", "wandb/offline-run-*/run-*.wandb"),
}


@pytest.mark.parametrize("logger", sorted(LOGGER_FILES))
def test_each_logger_writes_its_files(compose_cfg, darcy_dir, logger, monkeypatch):
    module, pattern = LOGGER_FILES[logger]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (the `loggers` extra)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg("train", [*TINY, f"data.data_dir={darcy_dir}", "trainer.max_epochs=1", f"logger={logger}"])
    try:
        results = train(cfg)
    finally:
        if logger == "wandb":
            import wandb

            wandb.finish()
    run = Path(cfg.paths.output_dir)
    assert list(run.glob(pattern)), sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert "val/rel_l2" in results and (run / "metrics.json").is_file()


def test_no_logger_with_the_default_callbacks_and_early_stopping(compose_cfg, darcy_dir):
    # logger=none leaves out the learning-rate monitor (it needs a logger) and keeps the other callbacks;
    # patience 0 with an improvement of 10 required stops after the second epoch (the first always improves)
    cfg = compose_cfg("train", [*TINY, f"data.data_dir={darcy_dir}", "trainer.max_epochs=5", "logger=none",
                                "callbacks=early_stopping", "callbacks.early_stopping.patience=0",
                                "callbacks.early_stopping.min_delta=10"])
    results = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert not (run / "csv").exists() and (run / "metrics.json").is_file()
    assert results["val/rel_l2"] > 0
    # last.ckpt is written at every epoch's end: it holds the second (last) epoch
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["epoch"] == 1
    assert (run / "checkpoints" / "best.ckpt").is_file()
