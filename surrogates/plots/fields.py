"""Fields of a dataset split: prediction vs target vs error, one row per sample (``surrogates-evaluate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surrogates.plots.base import finite_range, pyplot, save_figure


def plot_comparison(
    inputs: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    path: str | Path,
    errors: np.ndarray | None = None,
    title: str = "",
    extent: tuple[float, float, float, float] | None = None,
    names: tuple[str, str] | None = None,
) -> Path:
    """Save a figure comparing predictions with targets, one row per sample.

    Parameters
    ----------
    inputs, targets, predictions
        Arrays of shape ``(n, C, *spatial)`` with one or two spatial dims; the first channel is shown.
    errors
        Optional per-sample relative L2 errors, shape ``(n,)``, written in the row titles.
    extent
        The domain's edges (outer edges of the first and last cells): ``(x0, x1)`` for 1D fields,
        ``(first min, first max, second min, second max)`` for 2D fields, the first spatial dim
        horizontal, drawn to scale with ticks. Default: a unit interval / square (2D: without ticks).
    names
        Axis labels of the spatial dims (with units), in the order of the array's dims.

    Returns
    -------
    Path
        The PNG written.
    """
    plt = pyplot()
    n, ndim = targets.shape[0], targets.ndim - 2
    if ndim not in (1, 2):
        raise ValueError(f"plot_comparison draws 1D or 2D fields, got {ndim} spatial dims")
    label = "" if errors is None else " (rel. L2 {:.2%})"
    if ndim == 2:
        fig, axes = plt.subplots(n, 4, figsize=(13, 3.0 * n), squeeze=False)
        for i in range(n):
            u, p = targets[i, 0], predictions[i, 0]
            lo, hi = finite_range(u, p)  # a NaN or inf in the prediction must not blank the target
            panels = [
                (inputs[i, 0], "input", "viridis", None, None),
                (u, "target", "magma", lo, hi),
                (p, "prediction" + (label.format(errors[i]) if errors is not None else ""), "magma", lo, hi),
                (np.abs(p - u), "|prediction - target|", "inferno", None, None),
            ]
            for ax, (field, name, cmap, vmin, vmax) in zip(axes[i], panels):
                image = ax.imshow(field.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent or (0, 1, 0, 1))
                ax.set_title(f"sample {i}: {name}", fontsize=9)
                if extent is None:
                    ax.set_xticks([])
                    ax.set_yticks([])
                if names:
                    ax.set_xlabel(names[0], fontsize=8)
                    ax.set_ylabel(names[1], fontsize=8)
                fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    else:
        fig, axes = plt.subplots(n, 2, figsize=(11, 2.6 * n), squeeze=False)
        for i in range(n):
            if extent is None:
                x = np.linspace(0, 1, targets.shape[-1])
            else:  # the cells' centers between the domain's edges
                edges = np.linspace(*extent[:2], targets.shape[-1] + 1)
                x = 0.5 * (edges[1:] + edges[:-1])
            ax = axes[i, 0]
            ax.plot(x, inputs[i, 0], color="0.6", lw=1, label="input")
            ax.plot(x, targets[i, 0], color="k", lw=1.5, label="target")
            ax.plot(x, predictions[i, 0], "--", color="tab:red", lw=1.5, label="prediction")
            ax.set_title(f"sample {i}" + (label.format(errors[i]) if errors is not None else ""), fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
            axes[i, 1].plot(x, predictions[i, 0] - targets[i, 0], color="tab:red", lw=1)
            axes[i, 1].set_title("prediction - target", fontsize=9)
            if names:
                axes[i, 0].set_xlabel(names[0], fontsize=8)
                axes[i, 1].set_xlabel(names[0], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
