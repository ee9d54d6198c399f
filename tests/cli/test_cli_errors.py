"""User errors end every entry point with one line on stderr and exit status 2 (the traceback on request)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(tmp_path: Path, command: str, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def _error_lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{command}: error:")]


@pytest.mark.parametrize(
    ("command", "overrides", "message"),
    [
        ("surrogates-evaluate", ["ckpt=missing.ckpt"], "missing.ckpt: file does not exist"),
        ("surrogates-evaluate", [], "Missing mandatory value: ckpt"),
        ("surrogates-train", ["experiment=darcy_fno_demo", "data.data_dir=no_such_folder"], "no_such_folder does not exist"),
        # Lightning takes any value and fails later with a bare AssertionError
        (
            "surrogates-train", ["experiment=darcy_fno_demo", "data.data_dir=no_such_folder", "trainer.max_epochs=abc"],
            "trainer.max_epochs must be an integer, got 'abc'",
        ),
        # a constructor's ValueError, which Hydra's instantiate wraps in a multi-line InstantiationException
        (
            "surrogates-train", ["experiment=darcy_fno_demo", "data.data_dir=no_such_folder", "data.batch_size=0"],
            "data (surrogates.data.datamodule.FieldDataModule): batch_size must be positive, got 0",
        ),
        # a constructor's int('abc'): Python's message names the value, not the option
        (
            "surrogates-train", ["experiment=darcy_fno_demo", "data.data_dir=no_such_folder", "data.n_train=abc"],
            "surrogates-train: error: data.n_train must be an integer, got 'abc' (",
        ),
        ("surrogates-serve", ["models_dir=no_such_folder"], "no_such_folder is not a folder"),
        # every model was listed as unavailable and the service started anyway
        ("surrogates-serve", ["device=gpuu"], "device='gpuu' is not a torch device; use auto, cpu, cuda or cuda:<index>"),
        # the PDE compares resolution with a number (a TypeError) or truncates a fraction
        ("surrogates-generate", ["resolution=abc"], "resolution must be an integer, got 'abc'"),
        ("surrogates-generate", ["resolution=1.5"], "resolution must be an integer, got 1.5"),
        ("surrogates-reduce", ["resolution=abc"], "resolution must be an integer, got 'abc'"),
        ("surrogates-reduce", ["solver=dcdm"], "DCDMSolver builds no reduced model: mode=offline takes solver=rb_eim"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, command, overrides, message):
    result = _run(tmp_path, command, *overrides)
    assert result.returncode == 2, result.stderr
    lines = _error_lines(result.stderr, command)
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_the_traceback_is_shown_on_request(tmp_path):
    result = _run(tmp_path, "surrogates-evaluate", "ckpt=missing.ckpt", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_verbose_shows_the_traceback(tmp_path):
    result = _run(tmp_path, "surrogates-evaluate", "ckpt=missing.ckpt", "verbose=true")
    assert result.returncode != 0 and "Traceback" in result.stderr


def _allocate_numpy(cfg):
    import numpy as np

    return np.empty(2**62, dtype=np.uint8)  # refused by the allocator at once: nothing is touched


def _allocate_torch(cfg):
    import torch

    return torch.empty(2**62, dtype=torch.uint8)


def _broken(cfg):
    raise RuntimeError("a bug, not a user's input")


@pytest.mark.parametrize("job", [_allocate_numpy, _allocate_torch])
def test_running_out_of_memory_is_one_line_and_exit_1(capsys, job):
    from omegaconf import OmegaConf

    from surrogates.cli.errors import report_user_errors

    with pytest.raises(SystemExit) as exit_info:
        report_user_errors("surrogates-train", job, OmegaConf.create({}))
    assert exit_info.value.code == 1
    lines = _error_lines(capsys.readouterr().err, "surrogates-train")
    assert len(lines) == 1 and "out of memory" in lines[0] and "batch_size" in lines[0], lines


def test_other_runtime_errors_keep_their_traceback():
    from omegaconf import OmegaConf

    from surrogates.cli.errors import report_user_errors

    with pytest.raises(RuntimeError, match="a bug"):
        report_user_errors("surrogates-train", _broken, OmegaConf.create({}))


def _instantiate_bad_model(cfg):
    from hydra.utils import instantiate

    return instantiate(cfg.model)


def test_a_constructor_error_inside_instantiate_is_one_line(capsys):
    from omegaconf import OmegaConf

    from surrogates.cli.errors import report_user_errors

    cfg = OmegaConf.create({"model": {"_target_": "surrogates.models.fno.FNO", "in_channels": 1, "out_channels": 1, "modes": 0}})
    with pytest.raises(SystemExit) as exit_info:
        report_user_errors("surrogates-train", _instantiate_bad_model, cfg)
    assert exit_info.value.code == 2
    lines = _error_lines(capsys.readouterr().err, "surrogates-train")
    assert len(lines) == 1 and lines[0].startswith("surrogates-train: error: model (surrogates.models.fno.FNO): modes must"), lines


def test_a_failed_conversion_names_the_option_holding_the_value():
    from omegaconf import OmegaConf

    from surrogates.cli.errors import conversion_error_line

    cfg = OmegaConf.create({"data": {"n_train": "abc", "name": "x"}, "model": {"scale": "1e-3x", "name": "abc"}})
    where = "data (surrogates.data.datamodule.FieldDataModule): "
    assert conversion_error_line(ValueError("invalid literal for int() with base 10: 'abc'"), cfg, where) == (
        "data.n_train must be an integer, got 'abc'"
    )
    # anywhere in the config when the node is unknown; nothing when two options hold the value
    assert conversion_error_line(ValueError("could not convert string to float: '1e-3x'"), cfg) == (
        "model.scale must be a number, got '1e-3x'"
    )
    assert conversion_error_line(ValueError("invalid literal for int() with base 10: 'abc'"), cfg) is None
    assert conversion_error_line(ValueError("batch_size must be positive, got 0"), cfg, where) is None


def test_other_errors_inside_instantiate_keep_their_traceback():
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from surrogates.cli.errors import report_user_errors

    cfg = OmegaConf.create({"model": {"_target_": "surrogates.cli.errors.is_out_of_memory"}})  # TypeError: a bug
    with pytest.raises(InstantiationException):
        report_user_errors("surrogates-train", _instantiate_bad_model, cfg)


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"max_epochs": 2.5}, "trainer.max_epochs must be an integer, got 2.5"),
        ({"max_steps": -2}, r"trainer.max_steps must be in \[-1, inf\], got -2"),
        ({"accumulate_grad_batches": 0}, r"trainer.accumulate_grad_batches must be in \[1, inf\], got 0"),
    ],
)
def test_trainer_counts_are_checked_before_anything_runs(trainer, message):
    from omegaconf import OmegaConf

    from surrogates.cli.train import check_trainer_counts

    with pytest.raises(ValueError, match=message):
        check_trainer_counts(OmegaConf.create(trainer))
    check_trainer_counts(OmegaConf.create({"max_epochs": -1, "max_steps": None, "min_epochs": 1}))  # allowed


def test_lightnings_misconfiguration_is_a_user_error(capsys):
    """trainer=gpu on a machine without one: Lightning's MisconfigurationException, wrapped by instantiate"""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from surrogates.cli.errors import report_user_errors

    def no_gpu(cfg):
        raise MisconfigurationException("No supported gpu backend found!")

    with pytest.raises(SystemExit) as exit_info:
        report_user_errors("surrogates-train", no_gpu, OmegaConf.create({}))
    assert exit_info.value.code == 2
    lines = _error_lines(capsys.readouterr().err, "surrogates-train")
    assert len(lines) == 1 and "No supported gpu backend found!" in lines[0], lines


@pytest.mark.parametrize(
    ("command", "overrides", "line"),
    [
        (
            "surrogates-generate", ["pde=darcyy"],
            "surrogates-generate: error: pde=darcyy: no such pde (did you mean darcy?); pde is one of burgers, darcy, "
            "diffusion_sorption, gaussian_bump, ks, navier_stokes, thermal_block",
        ),
        (
            "surrogates-generate", ["n_trian=3"],
            "surrogates-generate: error: n_trian: no such option (did you mean n_train?); --cfg job lists the options, "
            "+n_trian=... adds a new one",
        ),
        (
            "surrogates-train", ["experiment=darcy_fno_demo", "trainer.max_epoch=1"],
            "surrogates-train: error: trainer.max_epoch: no such option (did you mean trainer.max_epochs?); "
            "--cfg job lists the options, +trainer.max_epoch=... adds a new one",
        ),
        ("surrogates-train", ["model=fnoo"], "surrogates-train: error: model=fnoo: no such model (did you mean fno?); "),
        (
            "surrogates-generate", ["n_train=[1"],
            "surrogates-generate: error: cannot read 'n_train=[1': no viable alternative at input '[1'; "
            "overrides are key=value (docs/configs.md)",
        ),
    ],
)
def test_a_command_line_hydra_cannot_compose_is_one_line_and_exit_2(tmp_path, command, overrides, line):
    result = _run(tmp_path, command, *overrides)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_hydra_full_error_keeps_hydras_report_of_a_config_it_cannot_compose(tmp_path):
    result = _run(tmp_path, "surrogates-generate", "pde=darcyy", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "MissingConfigException" in result.stderr
