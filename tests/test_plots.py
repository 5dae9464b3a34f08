"""fakelib.plots' sweep report figures: what each draws, from a small hand-made leaderboard."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fakelib import plots  # noqa: E402

METRIC = "val_roc_auc"


@pytest.fixture
def board() -> pd.DataFrame:
    """Four finished experiments crossing dropout (0.0, 0.3) with pooling (avg, max)."""
    return pd.DataFrame({
        "experiment_id": ["a", "b", "c", "d"], "dropout": [0.3, 0.0, 0.3, 0.0],
        "pooling": ["max", "max", "avg", "avg"], METRIC: [0.9, 0.8, 0.7, 0.6],
        "train_seconds": [10.0, 20.0, 30.0, 40.0], "param_count": [1000, 1000, 4000, 4000],
    }, index=range(1, 5))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_parameters_against_score_draws_one_line_per_experiment_ending_at_its_score(board):
    figure = plots.plot_parameters_against_score(board, ["dropout", "pooling"], METRIC)
    axis = figure.axes[0]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["dropout", "pooling", METRIC]
    ends = sorted(line.get_ydata()[-1] for line in axis.lines)
    assert ends == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # the score axis spans the lowest to the highest score
    texts = {text.get_text() for text in axis.texts}
    assert {"0.0", "0.3", "avg", "max", "0.600", "0.900"} <= texts
    assert figure.axes[1].get_ylabel() == METRIC  # the colour bar names the metric


def test_parameters_against_score_needs_two_experiments_and_a_parameter(board):
    assert plots.plot_parameters_against_score(board.iloc[:1], ["dropout"], METRIC) is None
    assert plots.plot_parameters_against_score(board, [], METRIC) is None


def test_parameter_effects_gives_each_parameter_a_panel_with_the_mean_of_each_value(board):
    figure = plots.plot_parameter_effects(board, ["dropout", "pooling"], METRIC)
    assert [axis.get_title() for axis in figure.axes] == ["dropout", "pooling"]
    means = figure.axes[1].lines[0].get_ydata()  # the point plot's marks, in the panel's order: avg, max
    np.testing.assert_allclose(means, [0.65, 0.85])
    assert [tick.get_text() for tick in figure.axes[1].get_xticklabels()] == ["avg", "max"]
    assert plots.plot_parameter_effects(board, [], METRIC) is None


def test_parameter_effects_wraps_after_three_panels(board):
    board = board.assign(a=1, b=2, c=3)
    figure = plots.plot_parameter_effects(board, ["dropout", "pooling", "a", "b"], METRIC)
    assert len(figure.axes) == 4  # a 2 x 3 grid with its two unused panels removed
    assert figure.axes[3].get_subplotspec().rowspan.start == 1


def test_time_against_score_places_each_experiment_with_an_area_from_zero(board):
    figure = plots.plot_time_against_score(board, ["pooling"], METRIC)
    axis = figure.axes[0]
    points = axis.collections[0]
    np.testing.assert_allclose(points.get_offsets(), board[["train_seconds", METRIC]].to_numpy())
    sizes = points.get_sizes()
    assert sizes[2] == pytest.approx(4 * sizes[0])  # four times the parameters, four times the area
    assert axis.get_xlabel() == "training seconds"
    assert plots.plot_time_against_score(board.iloc[:0], ["pooling"], METRIC) is None
