"""Figures (plotting only): training curves, confusion matrix, ROC and PR curves, sample grids; and the sweep
report's parameters against score, effect of each parameter, and training time against score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd

from fakelib import metrics as metriclib

CLASS_NAMES = ("real", "fake")


def _save(figure: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure


def plot_history(history: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Loss and accuracy per epoch, training against validation, from a Keras history table."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history) + 1)
    for axis, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + key in history:
                axis.plot(epochs, history[prefix + key], style, label=("validation " if prefix else "train ") + key)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion(matrix: Sequence[Sequence[int]], path: str | Path | None = None,
                   title: str = "confusion matrix") -> plt.Figure:
    """A 2x2 confusion matrix with counts and row percentages (rows: truth, columns: prediction)."""
    import seaborn as sns

    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{count}\n{share:.1%}" for count, share in zip(row, share_row)]
                       for row, share_row in zip(matrix, shares)])
    figure, axis = plt.subplots(figsize=(4.2, 3.6))
    sns.heatmap(shares, annot=labels, fmt="", cmap="cividis", vmin=0, vmax=1, cbar=False, ax=axis,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_roc_pr(sets: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path | None = None) -> plt.Figure:
    """ROC and precision-recall curves for each named (labels, probabilities) set, with AUC / AP in the legend."""
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (labels, probabilities) in sets.items():
        points = metriclib.curves(labels, probabilities)
        if points is None:
            continue
        scores = metriclib.binary_metrics(labels, probabilities)
        roc_axis.plot(points["fpr"], points["tpr"], label=f"{name} (AUC {scores['roc_auc']:.3f})")
        pr_axis.plot(points["recall"], points["precision"], label=f"{name} (AP {scores['average_precision']:.3f})")
    roc_axis.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    roc_axis.set(xlabel="false positive rate (reals called fake)", ylabel="true positive rate", title="ROC")
    pr_axis.set(xlabel="recall (fakes caught)", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    for axis in (roc_axis, pr_axis):
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right" if axis is roc_axis else "lower left")
    figure.tight_layout()
    return _save(figure, path)


def sample_grid(images: np.ndarray, labels: np.ndarray, count: int = 8, path: str | Path | None = None,
                probabilities: np.ndarray | None = None, seed: int = 0) -> plt.Figure:
    """Up to `count` images of each class in two rows, titled with the class (and probability if given)."""
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), squeeze=False)
    for row, label in enumerate((0, 1)):
        members = np.flatnonzero(np.asarray(labels) == label)
        chosen = np.sort(rng.choice(members, size=min(count, len(members)), replace=False)) if len(members) else []
        for column in range(count):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(chosen):
                index = chosen[column]
                axis.imshow(np.asarray(images[index]).astype(np.uint8))
                title = CLASS_NAMES[label]
                if probabilities is not None:
                    title += f"\np_fake={float(probabilities[index]):.2f}"
                axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


# ------------------------------------------------------------------------------------------- sweep report figures


def plot_parameters_against_score(board: pd.DataFrame, parameters: Sequence[str], metric: str) -> plt.Figure | None:
    """Parallel coordinates: one line per experiment across every swept parameter (values in order, bottom to top),
    ending at its `metric`, coloured by it. None with fewer than two experiments or no parameter.

    Args:
        board: the leaderboard (`fakelib.report.leaderboard`), one row per finished experiment.
        parameters: the swept parameters to draw, columns of `board`.
        metric: the score column.
    """
    from fakelib.report import ordinal_codes

    if len(board) < 2 or not parameters:
        return None
    codes, labels = ordinal_codes(board, parameters)
    low, high = board[metric].min(), board[metric].max()
    codes[metric] = (board[metric] - low) / ((high - low) or 1)
    axes_names = [*parameters, metric]
    colours = plt.Normalize(low, high)
    figure, axis = plt.subplots(figsize=(2.2 * len(axes_names) + 1.5, 4))
    for index in board.index:
        axis.plot(range(len(axes_names)), codes.loc[index, axes_names], marker="o", alpha=0.8,
                  color=plt.cm.viridis(colours(board.loc[index, metric])))
    for position, name in enumerate(parameters):
        for label in labels[name]:
            axis.annotate(label, (position, codes.loc[board[name].astype(str) == label, name].iloc[0]),
                          xytext=(4, 4), textcoords="offset points", fontsize=8)
    axis.set_xticks(range(len(axes_names)), axes_names)
    for value in {low, high}:  # the score axis carries its own scale; the others their values
        axis.annotate(f"{value:.3f}", (len(parameters), codes[metric][board[metric] == value].iloc[0]),
                      xytext=(6, 0), textcoords="offset points", fontsize=8, va="center")
    axis.set_yticks([])
    axis.grid(axis="x", alpha=0.4)
    figure.colorbar(plt.cm.ScalarMappable(colours, "viridis"), ax=axis, label=metric)
    return figure


def plot_parameter_effects(board: pd.DataFrame, parameters: Sequence[str], metric: str) -> plt.Figure | None:
    """One panel per swept parameter: every experiment's `metric` against the parameter's value, a bar at the mean
    of each value (three panels a row). None with no experiment or no parameter."""
    import seaborn as sns

    from fakelib.report import ordinal_codes

    if len(board) < 1 or not parameters:
        return None
    columns = min(3, len(parameters))
    rows = -(-len(parameters) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, name in zip(axes.flat, parameters):
        frame = board.astype({name: str})
        order = ordinal_codes(frame, [name])[1][name]
        sns.stripplot(data=frame, x=name, y=metric, order=order, hue=name, hue_order=order, palette="deep",
                      legend=False, size=8, ax=axis)
        sns.pointplot(data=frame, x=name, y=metric, order=order, errorbar=None, color="black", marker="_",
                      markersize=20, linestyle="none", ax=axis)
        axis.set_title(name)
    for axis in axes.flat[len(parameters):]:
        axis.remove()
    figure.tight_layout()
    return figure


def plot_time_against_score(board: pd.DataFrame, parameters: Sequence[str], metric: str) -> plt.Figure | None:
    """Training seconds against `metric`, a mark's area proportional to the parameter count (from zero), coloured
    by the first swept parameter. None with no experiment."""
    import seaborn as sns

    if len(board) < 1:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    sns.scatterplot(data=board.astype({name: str for name in parameters[:1]}), x="train_seconds", y=metric,
                    hue=parameters[0] if parameters else None, size="param_count", sizes=(0, 300),
                    size_norm=(0, board["param_count"].max()), ax=axis)
    axis.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    axis.set_xlabel("training seconds")
    return figure
