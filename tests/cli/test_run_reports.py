"""What users look at: --help of every script, the whole-run progress line, curves.png, the sweep summary."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from surrogates.cli.sweeps import SweepSummary
from surrogates.plots.curves import plot_training_curves, read_logged_metrics
from surrogates.tasks.progress import RunProgress, format_seconds

SCRIPTS = ["generate", "train", "evaluate", "serve", "reduce"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_starts_with_what_the_script_does(script):
    command = [str(Path(sys.executable).parent / f"surrogates-{script}"), "--help"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.startswith(f"surrogates-{script}: ")
    assert "Main options" in out and "Example: surrogates-" in out
    if script == "generate":  # its own groups only, not the training ones
        assert "pde:" in out and "model" not in out and "trainer" not in out


def test_train_help_names_every_config_group_of_a_run():
    """the groups `surrogates-train --help` lists are those of conf/train.yaml's defaults (hydra's own aside)"""
    conf = Path(__file__).resolve().parents[2] / "conf"
    help_text = (conf / "hydra" / "help" / "train.yaml").read_text()
    listed = help_text.split("Config groups:", 1)[1].strip().splitlines()[0]
    groups = {name.strip() for name in listed.split("(")[0].split(",")}
    defaults = OmegaConf.to_container(OmegaConf.load(conf / "train.yaml").defaults)
    expected = {key for entry in defaults if isinstance(entry, dict) for key in entry if "/" not in key and "hydra" not in key}
    assert groups == expected


def test_progress_line_estimates_the_time_left_from_the_epochs_so_far():
    assert format_seconds(3725.4) == "1:02:05"
    # 3 epochs of 20 took 30 s here: 17 left at 10 s each
    assert RunProgress.line(3, 20, 30.0, 3) == "epoch 3/20  elapsed 0:00:30  about 0:02:50 left"
    # resumed at epoch 10: the 2 epochs of this process set the pace
    assert RunProgress.line(12, 20, 50.0, 2) == "epoch 12/20  elapsed 0:00:50  about 0:03:20 left"
    assert RunProgress.line(5, -1, 7.0, 5) == "epoch 5  elapsed 0:00:07"


def test_curves_read_resumed_logs_and_plot(tmp_path):
    first = tmp_path / "metrics.0.csv"
    first.write_text("epoch,step,train/loss,val/rel_l2\n0,0,1.0,\n0,1,0.5,\n0,1,,0.4\n")
    second = tmp_path / "metrics.csv"  # the resumed run logs step 1 again, then goes on
    second.write_text("epoch,step,train/loss,val/rel_l2,lr-Adam\n0,1,0.45,,0.001\n1,2,0.25,,0.001\n1,2,,0.2,\n")
    series = read_logged_metrics([first, second])
    assert series["train/loss"] == [(0, 1.0), (1, 0.45), (2, 0.25)]
    assert series["val/rel_l2"] == [(1, 0.4), (2, 0.2)] and "lr-Adam" not in series
    figure = plot_training_curves([first, second], tmp_path / "curves.png")
    assert figure.read_bytes()[:8] == PNG
    assert plot_training_curves([], tmp_path / "none.png") is None


def test_sweep_summary_tables_rank_runs_by_their_best_score(tmp_path):
    for run, (width, value) in enumerate([(8, 0.3), (16, 0.1), (32, 0.2)]):
        folder = tmp_path / str(run)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- model.width={width}\n- seed=0\n")
        (folder / "metrics.json").write_text(f'{{"metrics": {{"val/rel_l2": 9.0, "val/rel_l2_best": {value}}}}}')
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    SweepSummary("val/rel_l2", "min").on_multirun_end(config)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["model.width"] for r in rows] == ["16", "32", "8"] and rows[0]["rank"] == "1"
    markdown = (tmp_path / "summary.md").read_text()
    assert "Best: run 1 with model.width=16, seed=0" in markdown
    assert "seed" not in markdown.split("Best")[0]  # the table shows what varied
    assert (tmp_path / "summary.png").read_bytes()[:8] == PNG
    SweepSummary("val/rel_l2", "max").on_multirun_end(config)
    assert "Best: run 0" in (tmp_path / "summary.md").read_text()


def test_sweep_summary_has_every_hydra_hook_so_single_runs_print_no_warnings():
    import inspect
    import warnings

    from hydra.experimental.callback import Callback
    from omegaconf import OmegaConf

    summary = SweepSummary("val/rel_l2", "min")
    config = OmegaConf.create({})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Hydra turns a missing hook into a UserWarning on every run
        for hook in [name for name in dir(Callback) if name.startswith("on_") and name != "on_multirun_end"]:
            method = getattr(summary, hook)
            required = [name for name, parameter in inspect.signature(method).parameters.items()
                        if parameter.default is parameter.empty and parameter.kind not in (parameter.VAR_KEYWORD,)]
            method(**{name: config if name == "config" else None for name in required})


def test_ctrl_c_during_training_says_where_the_run_stands_and_how_to_resume(darcy_dir, tmp_path):
    """Lightning ended an interrupted run with status 1 and nothing about resuming."""
    import os
    import signal
    import time

    run_dir = tmp_path / "run"
    command = [str(Path(sys.executable).parent / "surrogates-train"), "experiment=darcy_fno_demo",
               f"data.data_dir={darcy_dir}", "trainer.max_epochs=100000", "logger=none", f"hydra.run.dir={run_dir}"]
    # the child takes Ctrl-C as a terminal delivers it, also where the tests run with SIGINT ignored (started in
    # the background), which the child would inherit
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:  # a run that did not stop must not train on after the test (100000 epochs)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"surrogates-train: interrupted; last checkpoint: {last}; resume with: surrogates-train experiment=darcy_fno_demo "
        f"data.data_dir={darcy_dir} trainer.max_epochs=100000 logger=none ckpt_path=auto hydra.run.dir={run_dir}"
    )
