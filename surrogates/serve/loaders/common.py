"""What every checkpoint loader reports about the file it loaded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def training_metrics(path: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What the checkpoint records (epoch, step, best monitored value), plus ``metrics.json`` of its run."""
    metrics: dict[str, Any] = dict(metadata.get("training") or {})
    for candidate in (path.with_name(path.name[: -len(".ckpt")] + ".metrics.json"), path.parent / "metrics.json", path.parent.parent / "metrics.json"):
        if candidate.is_file():
            try:
                summary = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            values = summary.get("metrics", summary) if isinstance(summary, dict) else None
            if isinstance(values, dict):
                metrics["run"] = {k: v for k, v in values.items() if isinstance(v, (int, float, str))}
                metrics["run_file"] = str(candidate)
            break
    if metadata.get("package_version"):
        metrics["package_version"] = metadata["package_version"]
    return metrics
