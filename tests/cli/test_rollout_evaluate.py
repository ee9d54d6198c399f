"""surrogates-train on KS with the PDE-Refiner and MSE U-Net experiments, then surrogates-evaluate on the rollout checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from surrogates.cli.evaluate import evaluate
from surrogates.cli.train import train

SMALL = ["model.hidden_channels=8", "model.channel_multipliers=[1,2]", "model.norm_groups=4", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false", "data.batch_size=16"]


TEST_METRICS: dict[str, dict[str, float]] = {}
"""Experiment -> the training run's results (its test metrics), filled by the fixture."""


def _train(compose_cfg, experiment: str, ks_dir: Path) -> Path:
    cfg = compose_cfg("train", [f"experiment={experiment}", f"data.data_dir={ks_dir}", *SMALL])
    results = train(cfg)
    assert np.isfinite(results["test/rel_l2"])
    TEST_METRICS[experiment] = results
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    assert best.is_file()
    copy = best.parent.parent.parent / f"{experiment}.ckpt"  # the next run reuses the output folder
    copy.write_bytes(best.read_bytes())
    return copy


@pytest.fixture(scope="module")
def checkpoints(ks_dir, tmp_path_factory):
    from tests.cli.conftest import compose_config

    root = tmp_path_factory.mktemp("rollout_runs")
    out = {}
    for experiment in ("ks_pde_refiner", "ks_unet_mse"):
        out[experiment] = _train(lambda name, overrides: compose_config(name, overrides, root / experiment), experiment, ks_dir)
    return out


def test_evaluate_writes_rollout_metrics_and_figures_for_both_models(compose_cfg, checkpoints, ks_dir):
    cfg = compose_cfg(
        "evaluate",
        [f"ckpt={checkpoints['ks_pde_refiner']}", f"compare_ckpt={checkpoints['ks_unet_mse']}",
         "rollout.seeds=[0,1]", "rollout.steps=8"],
    )
    summary = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["kind"] == "rollout" and written["pde"] == "ks" and written["data_dir"] == str(ks_dir)
    refiner, baseline = written["models"]["PDE-Refiner (K=3)"], written["models"]["MSE U-Net"]
    assert refiner["evaluations_per_step"] == 4 and baseline["evaluations_per_step"] == 1
    assert refiner["seeds"] == [0, 1] and baseline["seeds"] == [0]
    for model in (refiner, baseline):
        assert model["steps"] == 8 and model["n_trajectories"] == 4
        assert 0 <= model["high_corr_time_0.9"] <= model["high_corr_time_0.8"] <= 8 * 0.9
        assert len(model["curves"]["corr"]) == 8 and np.isfinite(model["mse_mean"])
    assert refiner["spread_at_high_corr_time_0.8"] > 0 and baseline["spread_at_high_corr_time_0.8"] == 0
    assert set(written["ratios"]) == {"high_corr_time_0.8", "high_corr_time_0.9"}
    for name in ("correlation.png", "spacetime.png", "spectrum.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the first step's error spectrum sums to its MSE (averaged over seeds)
    for name, model in written["models"].items():
        spectrum = written["one_step_error_spectrum"][name]
        assert len(spectrum) == len(written["reference_spectrum"]) and min(spectrum) >= 0
        assert np.isclose(sum(spectrum), model["curves"]["rmse"][0] ** 2, rtol=1e-4)


def test_evaluate_a_single_rollout_checkpoint(compose_cfg, checkpoints):
    cfg = compose_cfg("evaluate", [f"ckpt={checkpoints['ks_unet_mse']}", "rollout.n_trajectories=2"])
    summary = evaluate(cfg)
    assert list(summary["models"]) == ["MSE U-Net"] and "ratios" not in summary
    assert summary["models"]["MSE U-Net"]["steps"] == 11  # to the end of the stored trajectories


def test_evaluate_reproduces_the_training_test_metrics_of_one_step_models(compose_cfg, checkpoints):
    # the run tested best.ckpt on the test split's pairs in batches of data.batch_size, noise seeded per batch
    for experiment, path in checkpoints.items():
        cfg = compose_cfg("evaluate", [f"ckpt={path}", "batch_size=16", "rollout.steps=2", "rollout.seeds=[0]"])
        summary = evaluate(cfg)
        (model,) = summary["models"].values()
        # float32 errors of the same predictions, summed over different batches: a few n * eps of the mean
        assert model["one_step"]["rel_l2"] == pytest.approx(TEST_METRICS[experiment]["test/rel_l2"], rel=1e-4)
        assert model["one_step"]["mse"] == pytest.approx(TEST_METRICS[experiment]["test/mse"], rel=1e-4)


def test_evaluate_refuses_trajectories_of_another_pde(compose_cfg, checkpoints, ks_dir, tmp_path):
    import shutil

    import h5py

    other = tmp_path / "other"
    shutil.copytree(ks_dir, other)
    for path in other.glob("*.h5"):  # the same variables and grid, written by another PDE
        with h5py.File(path, "r+") as f:
            f.attrs["pde"] = "burgers"
    for overrides in ([f"ckpt={checkpoints['ks_unet_mse']}"],
                      [f"ckpt={checkpoints['ks_pde_refiner']}", f"compare_ckpt={checkpoints['ks_unet_mse']}"]):
        cfg = compose_cfg("evaluate", [*overrides, f"data_dir={other}", "rollout.steps=2"])
        with pytest.raises(ValueError, match="'burgers' data but the model is a 'ks' model"):
            evaluate(cfg)
        assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_one_step_errors_cover_the_trajectories_that_are_rolled_out(compose_cfg, checkpoints, ks_dir):
    import torch

    from surrogates import metrics
    from surrogates.data.autoregressive import AutoregressiveDataset
    from surrogates.data.shards import split_files
    from surrogates.serve.rollout import RolloutSurrogate

    n = 2
    cfg = compose_cfg("evaluate", [f"ckpt={checkpoints['ks_unet_mse']}", f"rollout.n_trajectories={n}", "batch_size=5"])
    one_step = evaluate(cfg)["models"]["MSE U-Net"]["one_step"]
    surrogate = RolloutSurrogate.load(checkpoints["ks_unet_mse"])
    states, params = AutoregressiveDataset(split_files(ks_dir, "test"), ["u"], ["dt", "dx"], pairs=False).trajectories(range(n))
    steps = states.shape[1] - 1
    assert one_step["n_states"] == n * steps
    # the deterministic baseline, every state of those trajectories in one batch
    with torch.no_grad():
        pred = surrogate.predictor.predict(states[:, :-1].flatten(0, 1), params.repeat_interleave(steps, 0))
    direct = metrics.relative_l2(pred, states[:, 1:].flatten(0, 1)).double().mean()
    # float32 sums over other batches: a few n * eps relative
    assert one_step["rel_l2"] == pytest.approx(float(direct), rel=1e-4)


def test_evaluate_a_rollout_model_of_2d_states(compose_cfg, navier_stokes_dir):
    # a one-step U-Net on vorticity trajectories omega (time, x, y): spacetime.png shows a line through the field
    cfg = compose_cfg(
        "train",
        ["experiment=ks_unet_mse", f"data.data_dir={navier_stokes_dir}", "data.inputs=[omega]", "data.conditioning=[]",
         "model.dim=2", "task.rollout_trajectories=2", *SMALL],
    )
    train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    eval_cfg = compose_cfg("evaluate", [f"ckpt={best}"])
    summary = evaluate(eval_cfg)
    assert summary["models"]["MSE U-Net"]["steps"] == 5 and summary["time_units"] == "steps"
    out = Path(eval_cfg.paths.output_dir)
    for name in ("correlation.png", "spacetime.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "spectrum.png").exists()  # 1D states only


def test_spacetime_line_cuts_through_the_middle_of_the_further_axes():
    from surrogates.evaluation.rollouts import spacetime_line

    states = np.random.default_rng(0).normal(size=(4, 2, 6, 5))  # (T, C, X, Y)
    line, cut = spacetime_line(states, ("x", "y"))
    np.testing.assert_array_equal(line, states[:, 0, :, 2])
    assert "y index 2" in cut
    line, cut = spacetime_line(states[..., 0], ("x",))  # 1D: the first channel as it is
    np.testing.assert_array_equal(line, states[:, 0, :, 0])
    assert cut == ""
