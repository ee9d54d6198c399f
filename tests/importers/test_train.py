"""Imported data trains with `surrogates-train` as it is, no hand-written conversion: one tiny run per layout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from surrogates.cli.train import train
from tests.importers.conftest import write_darcy, write_tensor_1d, write_the_well, write_xarray

TINY = ["trainer.max_epochs=1", "model.width=4", "model.modes=2", "model.n_layers=1", "model.projection_channels=8",
        "trainer.enable_progress_bar=false", "data.batch_size=8"]


def _train(compose_cfg, data_dir: Path, *overrides: str) -> dict:
    cfg = compose_cfg("train", [f"data.data_dir={data_dir}", *TINY, *overrides])
    results = train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt").is_file()
    assert math.isfinite(results["test/rel_l2"])  # the run reached the test step on the imported test split
    return results


def test_xarray_file_trains(run_import, compose_cfg, tmp_path):
    write_xarray(tmp_path / "plain.nc", n=20)
    files = run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]")
    _train(compose_cfg, files[0].parent, "experiment=darcy_fno_demo")


def test_pdebench_darcy_trains(run_import, compose_cfg, tmp_path):
    write_darcy(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", n=20)
    files = run_import(f"source={tmp_path / '2D_DarcyFlow_beta1.0_Train.hdf5'}")
    _train(compose_cfg, files[0].parent, "experiment=darcy_fno_demo", "data.inputs=[nu]", "data.targets=[u]")


def test_pdebench_burgers_trains(run_import, compose_cfg, tmp_path):
    write_tensor_1d(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5", n=20, steps=5, nx=16)
    files = run_import(f"source={tmp_path / '1D_Burgers_Sols_Nu0.001.hdf5'}")
    # experiment=burgers_fno: u(time=0) -> u(time=-1), FNO with the periodic grid
    _train(compose_cfg, files[0].parent, "experiment=burgers_fno")


@pytest.mark.parametrize("time", [(0, 1), (0, -1)])
def test_the_well_2d_with_a_vector_field_trains(run_import, compose_cfg, tmp_path, time):
    write_the_well(tmp_path / "toy_flow.hdf5", n=20, steps=3)
    files = run_import(f"source={tmp_path / 'toy_flow.hdf5'}")
    fields = "[buoyancy,velocity_x,velocity_y]"
    _train(compose_cfg, files[0].parent, "experiment=darcy_fno_demo", f"data.inputs={fields}", f"data.targets={fields}",
           f"+data.input_time={time[0]}", f"+data.target_time={time[1]}", "model.grid=periodic")


def test_pdebench_burgers_trains_one_step_at_a_time(run_import, compose_cfg, tmp_path):
    write_tensor_1d(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5", n=20, steps=4, nx=16)
    files = run_import(f"source={tmp_path / '1D_Burgers_Sols_Nu0.001.hdf5'}")
    cfg = compose_cfg("train", [
        "experiment=ks_unet_mse", f"data.data_dir={files[0].parent}", "data.inputs=[u]", "data.conditioning=[Nu]",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.batch_size=8", "model.hidden_channels=8",
        "model.channel_multipliers=[1,2]", "model.norm_groups=4", "task.rollout_trajectories=2",
    ])
    results = train(cfg)
    assert any(name.startswith("test/") for name in results)


def test_the_well_trains_on_time_windows(run_import, compose_cfg, tmp_path):
    write_the_well(tmp_path / "toy_flow.hdf5", n=12, steps=4)
    files = run_import(f"source={tmp_path / 'toy_flow.hdf5'}")
    fields = "[buoyancy,velocity_x,velocity_y]"
    # two states in -> the next one out, from every window of the 4 stored times
    _train(compose_cfg, files[0].parent, "experiment=burgers_fno", "model.dim=2", f"data.inputs={fields}",
           f"data.targets={fields}", "data.input_time=null", "data.target_time=null", "data.n_steps_input=2",
           "data.n_steps_output=1")


@pytest.mark.parametrize("layout", ["diffusion_reaction", "cfd"])
def test_pdebench_2d_trajectories_train(run_import, compose_cfg, tmp_path, layout):
    from tests.importers.conftest import write_cfd, write_groups

    if layout == "cfd":
        name, fields = "2D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5", "[density,pressure,velocity_x,velocity_y]"
        write_cfd(tmp_path / name, n=12, steps=3, space=(8, 8))
    else:
        name, fields = "2D_diff-react_NA_NA.h5", "[u,v]"
        write_groups(tmp_path / name, n=12, steps=3, space=(8, 8), channels=2)
    files = run_import(f"source={tmp_path / name}")
    _train(compose_cfg, files[0].parent, "experiment=darcy_fno_demo", f"data.inputs={fields}", f"data.targets={fields}",
           "+data.input_time=0", "+data.target_time=-1")
