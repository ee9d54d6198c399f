"""A run checks every split it will use before training: a bad test split fails in seconds, not after the epochs."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogates.cli.train import train
from surrogates.data.schema import DatasetFileError


def _copy(darcy_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "darcy"
    shutil.copytree(darcy_dir, folder)
    return folder


def _run(compose_cfg, folder: Path):
    cfg = compose_cfg("train", ["experiment=darcy_fno_demo", f"data.data_dir={folder}", "trainer.max_epochs=1",
                                "trainer.enable_progress_bar=false"])
    return cfg, lambda: train(cfg)


def test_nan_in_the_test_split_fails_before_training(compose_cfg, darcy_dir, tmp_path):
    folder = _copy(darcy_dir, tmp_path)
    with h5py.File(folder / "test.h5", "r+") as f:
        f["u"][3, 2, 2] = np.nan
    cfg, run = _run(compose_cfg, folder)
    with pytest.raises(DatasetFileError, match="NaN"):
        run()
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # nothing was trained


def test_a_missing_test_split_fails_before_training(compose_cfg, darcy_dir, tmp_path):
    folder = _copy(darcy_dir, tmp_path)
    (folder / "test.h5").unlink()
    cfg, run = _run(compose_cfg, folder)
    with pytest.raises((FileNotFoundError, ValueError), match="test"):
        run()
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
