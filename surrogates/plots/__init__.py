"""Figures people would rather look at than read; every figure function of the package lives here.

- :mod:`~surrogates.plots.base`: matplotlib on the Agg backend (:func:`pyplot`) and :func:`save_figure`;
- :mod:`~surrogates.plots.fields`: prediction vs target vs error of a dataset split (:func:`plot_comparison`);
- :mod:`~surrogates.plots.rollouts`: rollout correlation over time, space-time images, error spectra
  (:func:`plot_correlation`, :func:`plot_spacetime`, :func:`plot_error_spectrum`);
- :mod:`~surrogates.plots.curves`: training curves of a run from its CSV logs (:func:`plot_training_curves`);
- :mod:`~surrogates.plots.physics_informed`: a physics-informed solution against its reference, with a
  PIG's Gaussians (:func:`plot_solution`).

matplotlib is imported on the first figure drawn.
"""

from surrogates.plots.base import pyplot, save_figure
from surrogates.plots.curves import plot_training_curves
from surrogates.plots.fields import plot_comparison
from surrogates.plots.physics_informed import plot_solution
from surrogates.plots.rollouts import plot_correlation, plot_error_spectrum, plot_spacetime

__all__ = [
    "plot_comparison",
    "plot_correlation",
    "plot_error_spectrum",
    "plot_solution",
    "plot_spacetime",
    "plot_training_curves",
    "pyplot",
    "save_figure",
]
