"""`surrogates-generate`: write a PDE dataset (train/val/test HDF5 files) with a classical solver."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.arguments import check_integer
from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.data.generation import GenerationError, GenerationInterrupted, check_settings, generate_dataset


def generate(cfg: DictConfig) -> list[Path]:
    """Instantiate ``cfg.pde`` and write this job's shard of each split under ``paths.data_dir/name``.

    The settings are checked before anything else (:func:`~surrogates.data.generation.check_settings`);
    the resolved ``cfg.pde`` node enters the files' fingerprint.
    """
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    check_settings(sizes, cfg.seed, cfg.shard, cfg.num_shards, cfg.chunk_size, cfg.overwrite)
    # the PDE checks resolution's range; a word would reach it as a TypeError, a fraction be truncated or misreported
    check_integer("resolution", cfg.resolution)
    pde_config = OmegaConf.to_container(cfg.pde, resolve=True)
    pde = instantiate(cfg.pde)
    data_dir = Path(cfg.paths.data_dir) / cfg.name
    files = generate_dataset(
        pde,
        data_dir,
        sizes=sizes,
        pde_config=pde_config,
        seed=cfg.seed,
        shard=cfg.shard,
        num_shards=cfg.num_shards,
        chunk_size=cfg.chunk_size,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        overwrite=cfg.overwrite,
    )
    print(f"dataset ready in {data_dir}: " + ", ".join(f.name for f in files))
    return files


def run(cfg: DictConfig) -> list[Path]:
    """:func:`generate`, ending a refused run or a signal with one line and its exit status."""
    try:
        return generate(cfg)
    except GenerationError as error:  # refused before any work: one line, exit status 2
        print(f"surrogates-generate: error: {error}", file=sys.stderr)
        sys.exit(2)
    except GenerationInterrupted as error:  # SIGTERM / SIGINT: temporary files removed, 128 + signal number
        print(f"surrogates-generate: {error}", file=sys.stderr)
        sys.exit(128 + error.signum)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="generate")
def main(cfg: DictConfig) -> None:
    # the PDE's own checks (resolution=2, a mesh_path that does not exist) are user errors too: one line, status 2
    report_user_errors("surrogates-generate", run, cfg)


if __name__ == "__main__":
    main()
