"""Physics-informed solutions (PIG, PINN): network | reference | error, and the Gaussians of a PIG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from surrogates.metrics import field_relative_l2
from surrogates.plots.base import pyplot, save_figure

if TYPE_CHECKING:
    from surrogates.pdes.physics.base import Reference


def _gaussian_ellipses(net: torch.nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """Centers ``(N, 2)`` and covariances ``(N, 2, 2)`` of a 2D Gaussian embedding, if the network has one."""
    gaussians = getattr(net, "gaussians", None)
    if gaussians is None or getattr(gaussians, "dim", None) != 2:
        return None
    with torch.no_grad():
        return gaussians.means.detach().cpu().double().numpy(), gaussians.covariance().detach().cpu().double().numpy()


def plot_solution(
    net: torch.nn.Module, reference: Reference, prediction: np.ndarray, path: str | Path, title: str = "",
    names: tuple[str, ...] | None = None,
) -> Path | None:
    """Save ``solution | reference | |error| | Gaussians`` for a problem with one or two coordinates.

    Parameters
    ----------
    net
        The trained network; if it has 2D Gaussian features (``net.gaussians``) a fourth panel shows
        their centers and one-standard-deviation ellipses.
    reference
        The reference on its grid.
    prediction
        Network values on the reference grid, flattened (``(M,)``) or of the grid's shape.
    path
        PNG to write.
    names
        Axis labels (the problem's coordinates); ``("x", "y")`` by default.

    Returns
    -------
    Path or None
        The file written, or None for problems of more than two coordinates.
    """
    from matplotlib.collections import EllipseCollection

    d = len(reference.coords)
    if d > 2:
        return None
    plt = pyplot()
    prediction = np.asarray(prediction).reshape(reference.shape)
    error = np.abs(prediction - reference.values)
    rel = field_relative_l2(prediction, reference.values)
    ellipses = _gaussian_ellipses(net) if d == 2 else None
    panels = 3 + (ellipses is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), constrained_layout=True)
    labels = names or (("x", "y") if d == 2 else ("x",))
    if d == 1:
        x = reference.coords[0]
        axes[0].plot(x, prediction, label="network")
        axes[1].plot(x, reference.values, color="k", label="reference")
        axes[2].semilogy(x, np.maximum(error, 1e-16))
        for ax, name in zip(axes, ("solution", "reference", "|error|")):
            ax.set_title(name)
            ax.set_xlabel(labels[0])
    else:
        c0, c1 = reference.coords
        # first coordinate horizontal, second vertical; the outer cells' edges, so that each pixel is centred
        # on its grid point
        extent = [*_cell_edges(c0), *_cell_edges(c1)]
        vmin, vmax = float(reference.values.min()), float(reference.values.max())
        for ax, field, name, kwargs in (
            (axes[0], prediction, "solution", {"vmin": vmin, "vmax": vmax, "cmap": "RdBu_r"}),
            (axes[1], reference.values, "reference", {"vmin": vmin, "vmax": vmax, "cmap": "RdBu_r"}),
            (axes[2], error, f"|error| (rel. L2 {rel:.2e})", {"cmap": "magma"}),
        ):
            image = ax.imshow(field.T, origin="lower", extent=extent, aspect="auto", **kwargs)
            fig.colorbar(image, ax=ax, shrink=0.85)
            ax.set_title(name)
        if ellipses is not None:
            centers, covariances = ellipses
            values, vectors = np.linalg.eigh(covariances)  # ascending eigenvalues
            major = vectors[:, :, 1]
            angles = np.degrees(np.arctan2(major[:, 1], major[:, 0]))
            widths, heights = 2 * np.sqrt(values[:, 1]), 2 * np.sqrt(values[:, 0])
            ax = axes[3]
            ax.add_collection(EllipseCollection(
                widths, heights, angles, units="xy", offsets=centers, offset_transform=ax.transData,
                facecolors="none", edgecolors="tab:blue", linewidths=0.5, alpha=0.7,
            ))
            ax.plot(centers[:, 0], centers[:, 1], ".", color="tab:red", markersize=1.5)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_title(f"{len(centers)} Gaussians (1-sigma ellipses)")
        for ax in axes:
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    if title:
        fig.suptitle(f"{title}   rel. L2 {rel:.2e}")
    return save_figure(fig, path, dpi=110)


def _cell_edges(coord: np.ndarray) -> tuple[float, float]:
    """Outer edges of the first and last cells of a grid line ``(n,)``: half a spacing beyond its end points."""
    coord = np.asarray(coord, dtype=float)
    if coord.size < 2:
        return float(coord[0]) - 0.5, float(coord[0]) + 0.5
    return float(coord[0] - (coord[1] - coord[0]) / 2), float(coord[-1] + (coord[-1] - coord[-2]) / 2)
