"""Every config composes and every `_target_` in it instantiates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from surrogates.cli.train import instantiate_collection
from surrogates.models.base import OperatorModel
from tests.cli.conftest import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
PDES = sorted(p.stem for p in (CONF_DIR / "pde").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))
LOGGERS = sorted(p.stem for p in (CONF_DIR / "logger").glob("*.yaml"))
CALLBACKS = sorted(p.stem for p in (CONF_DIR / "callbacks").glob("*.yaml"))
# the modules the loggers of the optional `loggers` extra need
LOGGER_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
SOLVERS = sorted(p.stem for p in (CONF_DIR / "solver").glob("*.yaml"))
REDUCIBLE_PDES = ["gaussian_bump", "thermal_block"]
LINEAR_SOLVERS = {"dcdm"}  # solvers of assembled systems (solve(A, b)), not reduced-basis builders


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_instantiates(compose_cfg, experiment):
    cfg = compose_cfg("train", [f"experiment={experiment}"])
    OmegaConf.resolve(cfg)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model)
    task = instantiate(cfg.task, net=net)
    assert isinstance(net, OperatorModel)
    assert net.init_kwargs["in_channels"] == len(cfg.data.inputs)
    assert task.net is net
    assert datamodule is not None
    callbacks = instantiate_collection(cfg.callbacks)
    loggers = instantiate_collection(cfg.logger)
    assert callbacks and loggers
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("trainer_name", TRAINERS)
def test_every_trainer_config_composes(compose_cfg, trainer_name):
    cfg = compose_cfg("train", [f"trainer={trainer_name}"])
    OmegaConf.resolve(cfg)
    assert cfg.trainer._target_.endswith("Trainer")
    if trainer_name in {"default", "cpu"}:
        assert instantiate(cfg.trainer).max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("logger", LOGGERS)
def test_every_logger_config_instantiates(compose_cfg, logger):
    if logger in LOGGER_MODULES:
        pytest.importorskip(LOGGER_MODULES[logger], reason="the `loggers` extra is not installed")
    cfg = compose_cfg("train", [f"logger={logger}"])
    OmegaConf.resolve(cfg)
    loggers = instantiate_collection(cfg.logger)
    assert len(loggers) == (0 if logger == "none" else 1)
    for built in loggers:  # every logger writes under the run's folder
        where = getattr(built, "save_dir", None) or getattr(built, "_tracking_uri", None) or built.experiment.dir
        assert str(cfg.paths.output_dir) in str(where)


@pytest.mark.parametrize("callbacks", CALLBACKS)
def test_every_callbacks_config_instantiates(compose_cfg, callbacks):
    cfg = compose_cfg("train", [f"callbacks={callbacks}"])
    OmegaConf.resolve(cfg)
    names = {type(c).__name__ for c in instantiate_collection(cfg.callbacks)}
    if callbacks == "early_stopping":
        assert {"EarlyStopping", "RunCheckpoint", "LearningRateMonitor"} <= names
    assert ("RunCheckpoint" in names) == (callbacks != "none")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_early_stopping_follows_the_checkpoint_s_direction(compose_cfg, experiment):
    # ks_* keep the checkpoint of the longest high-correlation time (mode max): stopping on "no decrease"
    # would end those runs as soon as they improve
    cfg = compose_cfg("train", [f"experiment={experiment}", "callbacks=early_stopping"])
    OmegaConf.resolve(cfg)
    by_type = {type(c).__name__: c for c in instantiate_collection(cfg.callbacks)}
    stopping, checkpoint = by_type["EarlyStopping"], by_type["RunCheckpoint"]
    assert (stopping.monitor, stopping.mode) == (checkpoint.monitor, checkpoint.mode)


@pytest.mark.parametrize("pde", PDES)
def test_every_pde_instantiates(compose_cfg, pde):
    cfg = compose_cfg("generate", [f"pde={pde}", "resolution=32"])
    OmegaConf.resolve(cfg)
    problem = instantiate(cfg.pde)
    assert problem.name == pde
    assert Path(cfg.paths.data_dir).name == "datasets"
    assert cfg.name == f"{pde}_32"


@pytest.mark.parametrize("resolution", [-4, 0, 1])
@pytest.mark.parametrize("pde", PDES)
def test_a_too_small_resolution_is_named_with_its_least_value(compose_cfg, pde, resolution):
    # Burgers said "solver_resolution (1024) must be a multiple of resolution (-4)"; Navier-Stokes and diffusion-sorption
    # listed every argument's range without the value
    cfg = compose_cfg("generate", [f"pde={pde}", f"resolution={resolution}"])
    OmegaConf.resolve(cfg)
    with pytest.raises(Exception) as info:  # Hydra's instantiate wraps the constructor's ValueError
        instantiate(cfg.pde)
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and re.fullmatch(rf"resolution must be >= \d+.*, got {resolution}", str(cause)), cause


def test_evaluate_config_requires_checkpoint(compose_cfg):
    cfg = compose_cfg("evaluate", [])
    assert OmegaConf.is_missing(cfg, "ckpt")
    cfg = compose_cfg("evaluate", ["ckpt=some.ckpt"])
    assert cfg.split == "test"


@pytest.mark.parametrize("solver", [s for s in SOLVERS if s not in LINEAR_SOLVERS])
@pytest.mark.parametrize("pde", REDUCIBLE_PDES)
def test_every_solver_config_instantiates_with_every_reducible_pde(compose_cfg, solver, pde):
    cfg = compose_cfg("reduce", [f"pde={pde}", f"solver={solver}", "resolution=17"])
    OmegaConf.resolve(cfg)
    assert cfg.mode == "offline" and cfg.name == f"{pde}_17"
    problem = instantiate(cfg.pde)
    built = instantiate(cfg.solver)
    assert problem.name == pde and problem.resolution == 17
    assert hasattr(built, "build")


@pytest.mark.parametrize("solver", sorted(LINEAR_SOLVERS))
def test_linear_solver_configs_instantiate(compose_cfg, solver):
    cfg = compose_cfg("reduce", [f"solver={solver}"])
    built = instantiate(cfg.solver)
    assert callable(built.solve)


def _documented_options() -> dict[str, set[str]]:
    """The options docs/configs.md's group table lists: group -> names (``{a,b}_{c,d}`` expanded)."""
    import itertools
    import re

    table = (CONF_DIR.parent / "docs" / "configs.md").read_text().split("## Groups", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for row in re.findall(r"^\| `([a-z_/]+)/` \| ([^|]*) \|", table, flags=re.M):
        group, cell = row
        names = set()
        for token in re.findall(r"`([^`]+)`", cell):
            parts = [part.split(",") for part in re.split(r"[{}]", token)]
            names |= {"".join(p) for p in itertools.product(*parts)}
        documented[group] = names
    return documented


@pytest.mark.parametrize("group", ["data", "model", "task", "pde", "solver", "trainer", "callbacks", "logger", "experiment", "hparams_search"])
def test_the_configs_page_lists_every_option_of_a_group(group):
    """docs/configs.md is where a user looks up what `<group>=` takes: it lists every file of conf/<group>/."""
    options = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    assert _documented_options()[group] == options


HELP_EXAMPLES = {("train", "ckpt_path"), ("import", "inputs"), ("import", "targets")}
"""Main options a help text shows with a value to give, not their default (ckpt_path=last, inputs=[a])."""


@pytest.mark.parametrize("command", sorted(p.stem for p in (CONF_DIR / "hydra" / "help").glob("*.yaml")))
def test_the_help_lists_options_that_exist_with_their_defaults(compose_cfg, command):
    """`surrogates-<command> --help`'s main options are keys of the command's config, at the config's defaults."""
    import re

    import yaml

    template = yaml.safe_load((CONF_DIR / "hydra" / "help" / f"{command}.yaml").read_text())["template"]
    section = template.split("Main options", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]  # below its heading
    cfg = compose_cfg(command)
    listed = re.findall(r"(?<![\w.<])([a-z_][\w.]*)=(\S+)", section)
    assert listed
    for key, value in listed:
        if key in {"pde", "experiment"} or key.startswith("hydra."):  # config groups; Hydra's own settings
            continue
        default = OmegaConf.to_container(cfg, resolve=False)
        for part in key.split("."):
            assert isinstance(default, dict) and part in default, f"{command} --help lists {key}, which the config lacks"
            default = default[part]
        if value.startswith("<") or "..." in value or "|" in value or (command, key) in HELP_EXAMPLES:
            continue
        assert default == yaml.safe_load(value), f"{command} --help: {key}={value}, config: {default!r}"
