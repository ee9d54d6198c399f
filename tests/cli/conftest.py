"""Compose the project's Hydra configs the way the entry points do."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import surrogates.cli  # noqa: F401  (registers resolvers)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DOCS = [CONF_DIR.parent / "README.md", *sorted((CONF_DIR.parent / "docs").glob("*.md"))]


def documented_commands(scripts: Iterable[str]) -> list[tuple[str, str, list[str]]]:
    """``(where, script, arguments)`` of each command line of the README and docs/ that runs
    ``surrogates-<script>`` for one of ``scripts``: after an optional prompt and environment assignments
    (``OMP_NUM_THREADS=1``), a trailing backslash continuing it, ``<placeholders>`` filled in (the reader
    replaces them; the shell would read ``<`` as a redirection), comments dropped."""
    command = re.compile(
        r"^\s*(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?surrogates-(" + "|".join(scripts) + r")\s+(.*)$"
    )
    found = []
    for path in DOCS:
        lines = iter(path.read_text().splitlines())
        for line in lines:
            match = command.match(line)
            if not match:
                continue
            text = match.group(2)
            while text.rstrip().endswith("\\"):
                text = text.rstrip()[:-1] + " " + next(lines, "").strip()
            text = re.sub(r"<[^<>]*>", "placeholder", text.split(" #")[0])
            found.append((f"{path.name}: {line.strip()}", match.group(1), shlex.split(text)))
    return found


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with overrides, resolving ``${hydra:...}`` like a real run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    # Like a real run, the job sees its config without the `hydra` node (read through HydraConfig).
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(name: str, overrides: list[str] | None = None) -> DictConfig:
        return compose_config(name, list(overrides or []), tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()
