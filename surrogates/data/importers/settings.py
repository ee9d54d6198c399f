"""What ``surrogates-import`` is asked to do (``conf/import.yaml``), checked before any work."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surrogates.data.importers.plan import ImportDataError, Plan

LAYOUTS = ("auto", "xarray", "pdebench", "the_well")


@dataclass
class ImportSettings:
    """What ``surrogates-import`` is asked to do (``conf/import.yaml``)."""

    source: str
    data_dir: Path
    layout: str = "auto"
    pde: str | None = None
    inputs: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    dims: Mapping[str, Any] = field(default_factory=dict)
    component_dims: Sequence[str] | None = None
    periodic: Sequence[str] = ()
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    chunk_size: int | None = None
    chunk_bytes: int = 64 * 2**20
    overwrite: bool = False
    progress: bool = True
    config_yaml: str = ""

    def check(self) -> None:
        if self.layout not in LAYOUTS:
            raise ImportDataError(f"layout={self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ImportDataError(f"{name} must be a number in [0, 1), got {value!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ImportDataError(f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + {self.test_fraction}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ImportDataError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ImportDataError(f"chunk_size must be a positive integer or null, got {self.chunk_size!r}")
        if isinstance(self.chunk_bytes, bool) or not isinstance(self.chunk_bytes, int) or self.chunk_bytes < 1:
            raise ImportDataError(f"chunk_bytes must be a positive integer, got {self.chunk_bytes!r}")
        if not isinstance(self.overwrite, bool):
            raise ImportDataError(f"overwrite must be true or false, got {self.overwrite!r}")

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings that change the written data (not the paths, chunking or progress bar)."""
        return {
            "layout": self.layout, "pde": self.pde,
            "inputs": list(self.inputs) if self.inputs else None, "targets": list(self.targets) if self.targets else None,
            "dims": json.loads(json.dumps(dict(self.dims or {}), default=str)),
            "component_dims": list(self.component_dims) if self.component_dims else None,
            "periodic": sorted(str(p) for p in self.periodic or ()),
            "val_fraction": float(self.val_fraction), "test_fraction": float(self.test_fraction),
        }


def samples_per_block(plan: Plan, settings: ImportSettings) -> int:
    """Samples read and written per block: ``chunk_size``, or as many of the largest part's samples as fit in
    ``chunk_bytes`` (at least one)."""
    if settings.chunk_size:
        return int(settings.chunk_size)
    per_sample = max(max(part.sample_bytes for part in plan.parts), 1)
    return max(1, settings.chunk_bytes // per_sample)
