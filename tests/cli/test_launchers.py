"""Launchers (conf/hydra/launcher): every config composes and instantiates; sharded generation runs its shards
in parallel processes through submitit's local executor (and through Ray where it is installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from surrogates.data.xarray_view import open_split
from tests.cli.conftest import CONF_DIR

LAUNCHERS = sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
PLUGIN = {"local": "hydra_plugins.hydra_submitit_launcher", "slurm": "hydra_plugins.hydra_submitit_launcher",
          "ray_local": "hydra_plugins.hydra_ray_launcher"}
EXTRA = {"local": "slurm", "slurm": "slurm", "ray_local": "ray"}


def _plugin(launcher: str) -> None:
    pytest.importorskip(PLUGIN[launcher], reason=f"pip install -e .[{EXTRA[launcher]}]")


@pytest.mark.parametrize("entry_point", ["train", "generate"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_composes_and_instantiates(tmp_path, launcher, entry_point):
    _plugin(launcher)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=entry_point, overrides=[f"hydra/launcher={launcher}",
                                                          f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.job.name = entry_point
    node = cfg.hydra.launcher
    OmegaConf.resolve(node)
    assert node._target_.startswith(PLUGIN[launcher])
    built = instantiate(node)
    assert type(built).__module__.startswith(PLUGIN[launcher])
    if launcher == "slurm":
        assert node.array_parallelism > 0 and node.timeout_min > 0 and "partition" in node and node.gpus_per_node == 1
    if launcher == "local":
        assert node.submitit_folder == f"{tmp_path}/.submitit/%j"


def _generate_shards(tmp_path: Path, launcher: str) -> Path:
    command = [
        str(Path(sys.executable).parent / "surrogates-generate"), "-m", f"hydra/launcher={launcher}", "pde=burgers",
        "resolution=32", "n_train=12", "n_val=0", "n_test=4", "chunk_size=4", "shard=0,1", "num_shards=2",
        "name=b_sharded", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "SURROGATES_ROOT"}
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    subprocess.run(command, check=True, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    return tmp_path / "datasets" / "b_sharded"


def _check_combined(data_dir: Path) -> None:
    names = sorted(p.name for p in data_dir.glob("*.h5"))
    assert names == ["test-00000-of-00002.h5", "test-00001-of-00002.h5",
                     "train-00000-of-00002.h5", "train-00001-of-00002.h5"]
    ds = open_split(data_dir, "train")  # both shards, checked to belong to one dataset, combined
    assert ds.sizes["sample"] == 12 and ds["u"].dims == ("sample", "time", "x")
    assert open_split(data_dir, "test").sizes["sample"] == 4


def test_sharded_generation_through_the_local_launcher(tmp_path):
    _plugin("local")
    data_dir = _generate_shards(tmp_path, "local")
    _check_combined(data_dir)
    # each shard ran as its own submitit job (a process of its own), both submitted before either was awaited
    jobs = sorted(p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit())  # named by pid
    assert len(jobs) == 2 and all(list(j.glob("*_result.pkl")) for j in jobs)
    submitted = [next(j.glob("*_submitted.pkl")).stat().st_mtime for j in jobs]
    finished = [next(j.glob("*_result.pkl")).stat().st_mtime for j in jobs]
    assert max(submitted) < min(finished)  # the second shard started before the first one ended
    assert len(list((tmp_path / "sweep").glob("*/.hydra"))) == 2


@pytest.mark.slow
def test_sharded_generation_through_ray(tmp_path):
    _plugin("ray_local")
    _check_combined(_generate_shards(tmp_path, "ray_local"))
