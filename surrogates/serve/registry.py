"""The model registry: every checkpoint in a folder, and classical solvers, behind one interface.

Rules (see ``docs/serving.md``):

- :meth:`Registry.from_folder` scans ``models_dir`` recursively for files whose name ends with a
  suffix of :data:`LOADERS` (``.ckpt``: neural surrogates, ``.rb.h5``: reduced-basis models); hidden
  files and folders are skipped. One entry per file, named by its path relative to ``models_dir``
  without the suffix (``runs/darcy/best.ckpt`` -> ``runs/darcy/best``).
- A file that cannot be loaded (corrupt, truncated, foreign) becomes an *unavailable* entry that
  carries the error; it is logged at start-up and listed by ``GET /health`` and ``GET /v1/models``,
  and the other models are served.
- Classical solvers are PDE objects (``_target_`` nodes, the same as ``conf/pde/*.yaml``) registered
  under a name; their ``solve`` answers the same requests as the surrogates of that PDE.

Where things are: the entry types (:class:`Variable`, :class:`ResolutionRule`, :class:`Prepared`,
:class:`ModelEntry`, :class:`PointwiseEntry`) in :mod:`surrogates.serve.entries`; one loader per kind of
model file in :mod:`surrogates.serve.loaders`; the :class:`Registry` (:func:`scan`, :data:`LOADERS`) here.
Those names are re-exported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from surrogates.serve.entries import (
    ModelEntry,
    PointwiseEntry,
    Prepared,
    ResolutionRule,
    RolloutRunner,
    Runner,
    Variable,
)
from surrogates.errors import CheckpointError
from surrogates.serve.errors import ServiceError
from surrogates.serve.loaders import (
    load_checkpoint,
    load_operator_checkpoint,
    load_pointwise_checkpoint,
    load_reduced_model,
    load_rollout_checkpoint,
    solver_entry,
)
from surrogates.serve.loaders.solver import _target_of

__all__ = [
    "LOADERS",
    "ModelEntry",
    "PointwiseEntry",
    "Prepared",
    "Registry",
    "ResolutionRule",
    "RolloutRunner",
    "Runner",
    "Variable",
    "load_checkpoint",
    "load_failure_reason",
    "load_operator_checkpoint",
    "load_pointwise_checkpoint",
    "load_reduced_model",
    "load_rollout_checkpoint",
    "scan",
    "solver_entry",
]

log = logging.getLogger("surrogates.serve")


LOADERS: dict[str, Callable[[Path, str, str], ModelEntry]] = {
    ".rb.h5": load_reduced_model,
    ".ckpt": load_checkpoint,
}
"""File suffix -> loader ``(path, name, device) -> ModelEntry``; longer suffixes are matched first.
Register another kind of model file by adding its suffix here."""

_KINDS = {".rb.h5": "reduced_basis", ".ckpt": "surrogate"}


class Registry:
    """Models by name. Build with :meth:`from_folder`; lookups with :meth:`get`."""

    def __init__(self, entries: list[ModelEntry] | None = None):
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries or []:
            self.add(entry)

    def add(self, entry: ModelEntry) -> ModelEntry:
        if entry.name in self.entries:  # the first one keeps the name; the other is listed as unavailable
            other = self.entries[entry.name]
            entry = ModelEntry.unavailable(
                f"{entry.name} (duplicate)", entry.kind, entry.source,
                f"model name {entry.name!r} is already used by {other.source}; rename the file or the solver",
                f"duplicate model name (also used by {other.source})",
            )
            log.error("model %s: %s", entry.name, entry.error)
        self.entries[entry.name] = entry
        return entry

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name`` (404 when there is none)."""
        entry = self.entries.get(name)
        if entry is None:
            known = sorted(self.entries)
            raise ServiceError(404, "unknown_model", f"unknown model {name!r}; known models: {known}")
        return entry

    @property
    def ready(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if e.ready]

    @property
    def unavailable(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if not e.ready]

    @classmethod
    def from_folder(
        cls,
        models_dir: str | Path | None,
        device: str = "cpu",
        solvers: Mapping[str, Any] | None = None,
    ) -> "Registry":
        """Load every model file under ``models_dir`` and the configured solvers.

        Parameters
        ----------
        models_dir
            Folder scanned recursively (``None``: solvers only). A missing folder raises ``FileNotFoundError``.
        device
            ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... or ``"auto"`` (CUDA when available).
        solvers
            Name -> ``{"pde": <_target_ node>, "description": str}`` (or the node itself).
        """
        registry = cls()
        device = _resolve_device(device)
        if models_dir is not None:
            root = Path(models_dir)
            if not root.is_dir():
                raise FileNotFoundError(f"models_dir {root} is not a folder")
            files = scan(root)
            if not files:
                log.warning("no model files (%s) under %s", ", ".join(LOADERS), root)
            for path, suffix in files:
                relative = path.relative_to(root).as_posix()
                name = relative[: -len(suffix)]
                try:
                    entry = LOADERS[suffix](path, name, device)
                    log.info("model %s: loaded %s", name, path)
                except Exception as error:  # one bad file must not stop the others
                    # the answers say why in a few words; the path and the exception stay in the log
                    entry = ModelEntry.unavailable(
                        name, _KINDS.get(suffix, "surrogate"), relative, f"{type(error).__name__}: {error}", load_failure_reason(error)
                    )
                    log.error("model %s: cannot load %s: %s", name, path, entry.error)
                _relative_paths(entry, root, relative)
                registry.add(entry)
        for name, node in (solvers or {}).items():
            if node is None:
                continue
            config = node.get("pde", node) if isinstance(node, Mapping) else node
            description = node.get("description", "") if isinstance(node, Mapping) and "pde" in node else ""
            try:
                entry = solver_entry(str(name), config, description or "")
                log.info("solver %s: %s", name, entry.source)
            except Exception as error:
                entry = ModelEntry.unavailable(
                    str(name), "solver", str(_target_of(config)), f"{type(error).__name__}: {error}", "cannot build solver"
                )
                log.error("solver %s: cannot build it: %s", name, entry.error)
            registry.add(entry)
        return registry


def load_failure_reason(error: BaseException) -> str:
    """Why a model file failed to load, in a few words for ``GET /health`` and 503 answers: no path, no
    exception text (those go to the log)."""
    if isinstance(error, CheckpointError):
        problem = error.problem
        if problem.startswith("cannot read checkpoint") or problem == "file does not exist":
            return "cannot read checkpoint"
        if problem.startswith("not a surrogates checkpoint"):
            return "not a surrogates checkpoint"
        if problem.startswith("unknown "):
            return "unknown model name"
        if "newer than this package" in problem:
            return "written by a newer package version"
        return "invalid checkpoint"
    if isinstance(error, OSError):
        return "cannot read model file"
    if isinstance(error, (ValueError, KeyError, TypeError)):
        return "unsupported model layout"
    return "cannot load model"


def _relative_paths(entry: ModelEntry, root: Path, relative: str) -> None:
    """Name files relative to ``models_dir`` in what the service answers (never absolute server paths)."""
    entry.source = relative
    run_file = entry.metrics.get("run_file") if isinstance(entry.metrics, dict) else None
    if isinstance(run_file, str):
        entry.metrics["run_file"] = os.path.relpath(run_file, root)


def scan(root: Path) -> list[tuple[Path, str]]:
    """Model files under ``root`` (sorted), each with the suffix that selects its loader."""
    found = []
    suffixes = sorted(LOADERS, key=len, reverse=True)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        suffix = next((s for s in suffixes if path.name.endswith(s) and len(path.name) > len(s)), None)
        if suffix is not None:
            found.append((path, suffix))
    return found


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
