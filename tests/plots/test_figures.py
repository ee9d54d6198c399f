"""What the figures show: colour limits, where a pixel lands, axis labels, and that figures are closed."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.plots import fields, rollouts


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions would save, as ``{panel title: AxesImage}`` per figure (closed after)."""
    figures = []

    def keep(fig, path, dpi=110):
        figures.append({ax.get_title(): ax for ax in fig.axes})
        fields.pyplot().close(fig)
        return path

    monkeypatch.setattr(fields, "save_figure", keep)
    monkeypatch.setattr(rollouts, "save_figure", keep)
    return figures


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_comparison_limits_ignore_a_non_finite_prediction(drawn, tmp_path, bad):
    rng = np.random.default_rng(0)
    target = rng.random((1, 1, 8, 4))
    prediction = target + 0.3
    prediction[0, 0, 0, 0] = bad
    fields.plot_comparison(target, target, prediction, tmp_path / "c.png")
    axes = drawn[-1]
    finite = prediction[np.isfinite(prediction)]
    expected = (target.min(), max(target.max(), finite.max()))
    for name in ("sample 0: target", "sample 0: prediction"):
        assert axes[name].get_images()[0].get_clim() == pytest.approx(expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_spacetime_error_scale_ignores_a_diverged_value(drawn, tmp_path, bad):
    rng = np.random.default_rng(0)
    reference = rng.random((5, 16)) - 0.5
    prediction = reference + 0.3
    prediction[3, 2] = bad
    rollouts.plot_spacetime(reference, {"m": prediction}, tmp_path / "s.png")
    axes = drawn[-1]
    assert axes["m - reference"].get_images()[0].get_clim() == pytest.approx((-0.3, 0.3))
    limit = np.abs(reference).max()
    assert axes["m"].get_images()[0].get_clim() == pytest.approx((-limit, limit))


def test_a_3d_field_is_drawn_as_its_named_middle_slice(drawn, tmp_path):
    from surrogates.cli.evaluate import plotted_examples

    field = np.random.default_rng(0).random((2, 1, 4, 6, 8))  # (n, C, x, y, z)
    examples, when = plotted_examples({"x": field, "y": field, "pred": field}, ("x", "y", "z"))
    np.testing.assert_array_equal(examples["y"], field[:, :, :, :, 4])
    assert when == " at z index 4"
    fields.plot_comparison(examples["x"], examples["y"], examples["pred"], tmp_path / "c.png")
    assert drawn[-1]["sample 1: target"].get_images()[0].get_array().shape == (6, 4)  # y rows, x columns

    space_time = np.zeros((2, 1, 3, 4, 6, 8))  # (n, C, time, x, y, z)
    examples, when = plotted_examples({"y": space_time}, ("time", "x", "y", "z"))
    assert examples["y"].shape == (2, 1, 4, 6) and when == " at the last time, z index 4"


def test_a_non_square_domain_is_drawn_to_scale_with_its_hot_cell_where_its_coordinates_say(drawn, tmp_path):
    from surrogates.cli.evaluate import plotted_domain
    from surrogates.schema import Coordinate, DataSchema

    nx, ny = 8, 4  # x in [0, 2], y in [0, 1] (bounded, points at both ends)
    schema = DataSchema(
        coords={"x": Coordinate("x", nx, units="m", min=0.0, max=2.0), "y": Coordinate("y", ny, units="m", min=0.0, max=1.0)},
        spatial_dims=("x", "y"), spatial_shape=(nx, ny),
    )
    domain = plotted_domain(schema, ("x", "y"), (nx, ny))
    hx, hy = 2.0 / (nx - 1), 1.0 / (ny - 1)
    assert domain["extent"] == pytest.approx((-hx / 2, 2 + hx / 2, -hy / 2, 1 + hy / 2))
    assert domain["names"] == ("x [m]", "y [m]")

    target = np.zeros((1, 1, nx, ny))
    target[0, 0, nx - 1, 0] = 1.0  # the cell at x = 2, y = 0
    fields.plot_comparison(target, target, target, tmp_path / "c.png", **domain)
    ax = drawn[-1]["sample 0: target"]
    image = ax.get_images()[0]
    ax.figure.canvas.draw()
    assert ax.get_xlabel() == "x [m]" and ax.get_ylabel() == "y [m]"
    ax.apply_aspect()
    box = ax.get_position(original=False)
    fig_width, fig_height = ax.figure.get_size_inches()
    assert (box.width * fig_width) / (box.height * fig_height) == pytest.approx((2 + hx) / (1 + hy), rel=0.02)  # to scale, not squeezed into a square

    from matplotlib.backend_bases import MouseEvent

    def value_at(x, y):
        px, py = ax.transData.transform((x, y))
        return image.get_cursor_data(MouseEvent("motion_notify_event", ax.figure.canvas, px, py))

    assert value_at(2.0, 0.0) == 1.0
    assert value_at(0.0, 1.0) == 0.0 and value_at(2.0, 1.0) == 0.0 and value_at(0.0, 0.0) == 0.0


def test_a_physics_informed_solution_centres_each_pixel_on_its_grid_point(monkeypatch, tmp_path):
    import torch

    from surrogates.pdes.physics.base import Reference
    from surrogates.plots import physics_informed

    kept = []

    def keep(fig, path, dpi=110):
        kept.append(fig.axes[0])
        return path

    monkeypatch.setattr(physics_informed, "save_figure", keep)
    x, y = np.linspace(0.0, 2.0, 5), np.linspace(-1.0, 1.0, 3)
    values = np.zeros((5, 3))
    values[4, 0] = 1.0  # the grid point (2, -1)
    physics_informed.plot_solution(torch.nn.Identity(), Reference([x, y], values), values, tmp_path / "s.png")
    ax = kept[0]
    image = ax.get_images()[0]
    assert image.get_extent() == pytest.approx([-0.25, 2.25, -1.5, 1.5])  # half a spacing beyond the end points
    ax.figure.canvas.draw()
    from matplotlib.backend_bases import MouseEvent

    def value_at(px, py):
        sx, sy = ax.transData.transform((px, py))
        return image.get_cursor_data(MouseEvent("motion_notify_event", ax.figure.canvas, sx, sy))

    assert value_at(2.0, -1.0) == 1.0 and value_at(1.5, -1.0) == 0.0 and value_at(2.0, -0.4) == 0.0
    physics_informed.pyplot().close(ax.figure)
