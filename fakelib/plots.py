"""Training figures: loss/accuracy curves, confusion matrix, ROC and PR curves, sample grids (plotting only)."""

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
