"""`surrogates-generate`: write a PDE dataset (train/val/test HDF5 files) with a classical solver."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.cli import CONFIG_PATH
from surrogates.data.generation import generate_dataset


def generate(cfg: DictConfig) -> list[Path]:
    """Instantiate ``cfg.pde`` and write this job's shard of each split under ``paths.data_dir/name``."""
    pde = instantiate(cfg.pde)
    data_dir = Path(cfg.paths.data_dir) / cfg.name
    files = generate_dataset(
        pde,
        data_dir,
        sizes={"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test},
        seed=cfg.seed,
        shard=cfg.shard,
        num_shards=cfg.num_shards,
        chunk_size=cfg.chunk_size,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        overwrite=cfg.overwrite,
    )
    print(f"dataset written to {data_dir}: " + ", ".join(f.name for f in files))
    return files


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="generate")
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
