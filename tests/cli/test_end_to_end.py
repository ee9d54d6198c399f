"""generate -> train -> evaluate through the entry points, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from surrogates.cli.evaluate import evaluate, plotted_examples
from surrogates.cli.generate import generate
from surrogates.cli.train import train
from surrogates.data.xarray_view import open_split

REPO = Path(__file__).resolve().parents[2]


def _generate(compose_cfg, data_root: Path, *overrides: str) -> list[Path]:
    cfg = compose_cfg(
        "generate",
        ["pde=darcy", "resolution=12", "n_train=20", "n_val=6", "n_test=6", "chunk_size=4",
         f"paths.data_dir={data_root}", *overrides],
    )
    return generate(cfg)


def test_generate_writes_readable_splits_with_provenance(compose_cfg, tmp_path):
    files = _generate(compose_cfg, tmp_path)
    assert [f.name for f in files] == ["train.h5", "val.h5", "test.h5"]
    ds = xr.open_dataset(files[0], engine="h5netcdf")
    assert ds["a"].dims == ("sample", "x", "y") and ds["u"].shape == (20, 12, 12)
    assert ds["x"].attrs["units"]
    config = yaml.safe_load(ds.attrs["config"])
    assert config["resolution"] == 12 and config["pde"]["_target_"].endswith("Darcy")
    report = json.loads(ds.attrs["solver_report"])
    assert report["solves"] == 20 and report["residual_max"] <= 1e-10
    ds.close()


def test_generate_resumes_and_shards_reproduce_the_unsharded_data(compose_cfg, tmp_path):
    whole = _generate(compose_cfg, tmp_path / "whole", "name=d")
    mtime = whole[0].stat().st_mtime_ns
    _generate(compose_cfg, tmp_path / "whole", "name=d")  # complete files are skipped
    assert whole[0].stat().st_mtime_ns == mtime
    for shard in range(3):
        _generate(compose_cfg, tmp_path / "sharded", "name=d", f"shard={shard}", "num_shards=3")
    sharded = open_split(tmp_path / "sharded" / "d", "train")
    reference = xr.open_dataset(whole[0], engine="h5netcdf")
    np.testing.assert_array_equal(sharded["a"].values, reference["a"].values)
    np.testing.assert_array_equal(sharded["u"].values, reference["u"].values)
    reference.close()


def test_train_then_evaluate_agree(compose_cfg, darcy_dir, tmp_path):
    cfg = compose_cfg(
        "train",
        ["experiment=darcy_fno_demo", f"data.data_dir={darcy_dir}", "trainer.max_epochs=3",
         "model.width=8", "model.modes=4", "trainer.enable_progress_bar=false"],
    )
    results = train(cfg)
    output_dir = Path(cfg.paths.output_dir)
    best = output_dir / "checkpoints" / "best.ckpt"
    assert best.is_file() and (output_dir / "metrics.json").is_file()

    eval_cfg = compose_cfg("evaluate", [f"ckpt={best}"])
    summary = evaluate(eval_cfg)
    # Same checkpoint, same test split, the grid spacing from the data schema: the evaluation CLI reproduces
    # the trainer's test metrics. Per-sample errors agree to float32 round-off of sums over the grid (a few
    # n * eps with n = 16 x 16 points); batching differs, so means agree to that relative size.
    assert summary["rel_l2_mean"] == pytest.approx(results["test/rel_l2"], rel=1e-4)
    assert summary["rel_h1_mean"] == pytest.approx(results["test/rel_h1"], rel=1e-4)
    written = json.loads((Path(eval_cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["metrics"]["n_samples"] == 16
    png = Path(eval_cfg.paths.output_dir) / "comparison.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    png.unlink()
    quiet = evaluate(compose_cfg("evaluate", [f"ckpt={best}", "n_plot=0"]))  # metrics only, no figure
    same = lambda metrics: {k: v for k, v in metrics.items() if k != "seconds_per_sample"}  # noqa: E731
    assert same(quiet) == same(summary) and not png.exists()


def test_train_then_evaluate_agree_on_burgers_with_its_periodic_grid(compose_cfg, burgers_dir):
    cfg = compose_cfg(
        "train",
        ["experiment=burgers_fno", f"data.data_dir={burgers_dir}", "trainer.max_epochs=2", "model.width=8",
         "model.modes=4", "trainer.enable_progress_bar=false", "data.batch_size=8"],
    )
    results = train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    summary = evaluate(compose_cfg("evaluate", [f"ckpt={best}"]))
    # rel_h1 weighs derivatives by the grid step 1 / n of the periodic unit interval: with a unit step
    # instead it would differ from training's by far more than round-off
    for name in ("rel_l2", "rel_h1"):
        assert summary[f"{name}_mean"] == pytest.approx(results[f"test/{name}"], rel=1e-4)


def test_evaluate_draws_a_2d_space_time_operator_at_its_last_time(compose_cfg, navier_stokes_dir):
    # navier_stokes_*: omega (time, x, y); the figure draws 1D or 2D fields, so it shows the last stored time
    cfg = compose_cfg(
        "train",
        ["experiment=navier_stokes_soft", f"data.data_dir={navier_stokes_dir}", "trainer.max_epochs=1",
         "+trainer.limit_train_batches=1", "+trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false"],
    )
    train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    eval_cfg = compose_cfg("evaluate", [f"ckpt={best}", "n_plot=2"])
    evaluate(eval_cfg)
    out = Path(eval_cfg.paths.output_dir)
    assert json.loads((out / "metrics.json").read_text())["metrics"]["n_samples"] == 4
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fields = np.arange(2 * 1 * 3 * 4 * 5.0).reshape(2, 1, 3, 4, 5)  # (n, C, time, x, y)
    drawn, when = plotted_examples({"y": fields}, ("time", "x", "y"))
    np.testing.assert_array_equal(drawn["y"], fields[:, :, 2])
    assert when
    flat = {"y": fields[:, :, 0]}  # (n, C, x, y): drawn as it is
    assert plotted_examples(flat, ("x", "y")) == (flat, "")


def test_multirun_sweep_over_width(darcy_dir, tmp_path):
    command = [
        str(Path(sys.executable).parent / "surrogates-train"), "-m", "experiment=darcy_fno_demo",
        "model.width=8,12", "model.modes=4", "trainer.max_epochs=1", f"data.data_dir={darcy_dir}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "trainer.enable_progress_bar=false",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert "LeafSpec" not in result.stderr  # torch's deprecation inside Lightning: nothing a user can act on
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 2
    # the multirun ends with a ranking of its runs (surrogates/cli/sweep_summary.py) and each run's curves
    summary = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[0].startswith("rank,run,val/rel_l2")
    assert all((r.parent / "curves.png").is_file() for r in runs)
    widths = [yaml.safe_load((r.parent / ".hydra" / "overrides.yaml").read_text()) for r in runs]
    assert {"model.width=8", "model.width=12"} <= {o for ov in widths for o in ov}


def test_generate_multirun_over_shards_from_the_command_line(tmp_path):
    # Run as a user would, in a fresh working directory: paths (and the sweep dir) follow it.
    command = [
        str(Path(sys.executable).parent / "surrogates-generate"), "-m", "pde=burgers", "resolution=32",
        "n_train=12", "n_val=0", "n_test=4", "chunk_size=4", "shard=0,1", "num_shards=2", "name=b",
    ]
    env = {k: v for k, v in os.environ.items() if k != "SURROGATES_ROOT"}
    subprocess.run(command, check=True, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    ds = open_split(tmp_path / "datasets" / "b", "train")
    assert ds.sizes["sample"] == 12 and ds["u"].dims == ("sample", "time", "x")
    assert len(list((tmp_path / "outputs" / "generate" / "multiruns").glob("*/*/.hydra"))) == 2


def test_a_run_shorter_than_one_epoch_says_why_it_has_no_best_checkpoint(compose_cfg, darcy_dir, capsys):
    # 2 steps of an epoch of 48 / 16 = 3 batches: the epoch never ends, so no validation, no best.ckpt; the run must say
    # so instead of printing metrics as if they came from the best checkpoint
    cfg = compose_cfg(
        "train",
        ["experiment=darcy_fno_demo", f"data.data_dir={darcy_dir}", "+trainer.max_steps=2", "model.width=8",
         "model.modes=4", "trainer.enable_progress_bar=false"],
    )
    train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert summary["best_checkpoint"] == "" and not (Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt").exists()
    out = capsys.readouterr().out
    assert "no best checkpoint: val/rel_l2 was never logged (no validation ran in 2 steps)" in out
    assert "trainer.val_check_interval" in out
