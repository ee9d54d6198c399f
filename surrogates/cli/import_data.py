"""`surrogates-import`: turn a foreign dataset (xarray-readable, PDEBench, The Well) into a dataset folder."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.data.generation import GenerationInterrupted
from surrogates.data.importers import ImportSettings, import_dataset


def default_name(source: str) -> str:
    """A folder name from a source: ``data/2D_DarcyFlow_beta1.0_Train.hdf5`` -> ``2D_DarcyFlow_beta1.0_Train``."""
    text = str(source).rstrip("/")
    if any(ch in text for ch in "*?["):
        text = re.split(r"[*?\[]", text)[0].rstrip("/") or "imported"
    path = Path(text)
    name = path.name if path.is_dir() and path.suffix != ".zarr" else path.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "imported"


def import_data(cfg: DictConfig) -> list[Path]:
    """Import ``cfg.source`` into ``paths.data_dir/name``; returns the written (or complete) files."""
    container = OmegaConf.to_container(cfg, resolve=True)
    name = cfg.name or default_name(cfg.source)
    settings = ImportSettings(
        source=str(cfg.source),
        data_dir=Path(cfg.paths.data_dir) / str(name),
        layout=str(cfg.layout),
        pde=cfg.pde,
        inputs=list(cfg.inputs) if cfg.inputs else None,
        targets=list(cfg.targets) if cfg.targets else None,
        dims=container.get("dims") or {},
        component_dims=list(cfg.component_dims) if cfg.component_dims else None,
        periodic=list(cfg.periodic or []),
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
        chunk_size=cfg.chunk_size,
        chunk_bytes=cfg.chunk_bytes,
        overwrite=cfg.overwrite,
        progress=bool(cfg.progress),
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
    )
    files = import_dataset(settings)
    print(f"dataset ready in {settings.data_dir}: " + ", ".join(f.name for f in files))
    return files


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="import")
def main(cfg: DictConfig) -> None:
    try:
        report_user_errors("surrogates-import", import_data, cfg)
    except GenerationInterrupted as error:  # SIGTERM / SIGINT: temporary files removed, 128 + signal number
        print(f"surrogates-import: {error}", file=sys.stderr)
        sys.exit(128 + error.signum)


if __name__ == "__main__":
    main()
