"""What every figure function shares: matplotlib without a display, and writing a figure to a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def finite_range(*arrays: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """Smallest and largest finite value over ``arrays``, ``(None, None)`` when none is finite.

    Colour limits come from here: one NaN or inf (a diverged prediction) would otherwise turn the limits
    into NaN or inf, and matplotlib then draws every panel sharing them on a default ``(-0.1, 0.1)`` scale.
    """
    finite = [values[np.isfinite(values)] for values in map(np.asarray, arrays)]
    finite = [values for values in finite if values.size]
    if not finite:
        return None, None
    return float(min(v.min() for v in finite)), float(max(v.max() for v in finite))


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (folders created), close it, and return the path."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
