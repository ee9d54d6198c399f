"""Time windows: n_steps_input states in -> the next n_steps_output states out, from every run of stored times."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogates import Surrogate
from surrogates.cli.evaluate import evaluate
from surrogates.cli.train import train
from surrogates.data.datamodule import FieldDataModule
from surrogates.data.dataset import FieldDataset


def test_windows_enumerate_every_start_of_every_sample(burgers_dir):
    files = [burgers_dir / "train.h5"]
    with h5py.File(files[0]) as f:
        u = f["u"][:]  # (N, T, X)
    n, steps = u.shape[:2]
    dataset = FieldDataset(files, ["u"], ["u"], n_steps_input=2, n_steps_output=1)
    starts = steps - 3 + 1
    assert len(dataset) == n * starts and dataset.input_names == ["u_t0", "u_t1"] and dataset.target_names == ["u_t2"]
    for index in (0, starts - 1, len(dataset) - 1, 5):
        sample, start = divmod(index, starts)
        item = dataset[index]
        np.testing.assert_array_equal(item["x"].numpy(), u[sample, start : start + 2])
        np.testing.assert_array_equal(item["y"].numpy(), u[sample, start + 2 : start + 3])
    with pytest.raises(ValueError, match="not both"):
        FieldDataset(files, ["u"], ["u"], input_time=0, n_steps_input=2)
    with pytest.raises(ValueError, match="exceeds the 3 stored times"):
        FieldDataset(files, ["u"], ["u"], n_steps_input=3, n_steps_output=1)
    with pytest.raises(ValueError, match="need every input and target with a time dim"):
        FieldDataset(files, ["u", "nu"], ["u"], n_steps_input=1)
    dm = FieldDataModule(burgers_dir, ["u"], ["u"], n_steps_input=2, n_steps_output=1)
    assert (dm.in_channels, dm.out_channels) == (2, 1)
    schema = dm.data_schema()
    assert schema.inputs == ("u_t0", "u_t1") and schema.window["inputs"] == ["u"]
    assert schema.variables["u_t1"].dims == ("x",)


def test_train_evaluate_and_serve_a_windowed_operator(compose_cfg, burgers_dir):
    cfg = compose_cfg(
        "train",
        ["experiment=burgers_fno", f"data.data_dir={burgers_dir}", "data.input_time=null", "data.target_time=null",
         "data.n_steps_input=2", "data.n_steps_output=1", "trainer.max_epochs=2", "model.width=8", "model.modes=4",
         "trainer.enable_progress_bar=false", "data.batch_size=8"],
    )
    assert cfg.model.in_channels == 2 and cfg.model.out_channels == 1
    results = train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    summary = evaluate(compose_cfg("evaluate", [f"ckpt={best}"]))
    for name in ("rel_l2", "rel_h1"):
        assert summary[f"{name}_mean"] == pytest.approx(results[f"test/{name}"], rel=1e-4)
    surrogate = Surrogate.load(best)
    assert surrogate.inputs == ["u_t0", "u_t1"] and surrogate.targets == ["u_t2"]
    with h5py.File(burgers_dir / "test.h5") as f:
        u, n_test = f["u"][:4], f["u"].shape[0]
    out = surrogate.predict(u[:, :2])  # channels u_t0, u_t1: (n, 2, x) -> (n, 1, x)
    assert out.shape == (4, 1, u.shape[-1])
    # the checkpoint's split is read again as windows: one prediction per window start
    assert summary["n_samples"] == n_test * (u.shape[1] - 2)
