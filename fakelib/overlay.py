"""Heatmap overlay grids, region bar charts and quality charts (plotting only).

Figures are built on `matplotlib.figure.Figure` (no pyplot state, so nothing leaks in long sessions or widget
callbacks) and written as PNG when a path is given, normally under `reports/`. The default colormap is
`cividis`, readable with every common colour-vision deficiency (the original project used red/green).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fakelib.checks import check_number

DEFAULT_COLORMAP = "cividis"
# Perceptually uniform maps that stay readable with colour-vision deficiencies; any matplotlib name is accepted.
COLOR_BLIND_SAFE = ("cividis", "viridis", "magma", "inferno", "plasma", "gray")
CLASS_NAMES = ("real", "fake")


def check_colormap(name: str) -> matplotlib.colors.Colormap:
    """The matplotlib colormap `name`.

    Raises:
        ValueError: unknown name (the message suggests the colour-blind-safe ones).
    """
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; colour-blind-safe choices: {', '.join(COLOR_BLIND_SAFE)}") \
            from None


def check_opacity(opacity: float) -> float:
    """`opacity` as a float in [0, 1].

    Raises:
        ValueError: outside [0, 1].
    """
    check_number("opacity", opacity, 0.0, 1.0)
    return float(opacity)


def overlay(image: np.ndarray, heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP,
            opacity: float = 0.5) -> np.ndarray:
    """Blend a colour-mapped (size, size) heatmap in [0, 1] over a (size, size, 3) image: (size, size, 3) uint8.

    `opacity` 0 shows only the image, 1 only the heatmap.
    """
    colours = check_colormap(colormap)(np.clip(heatmap, 0.0, 1.0))[..., :3]  # (size, size, 3) in [0, 1]
    opacity = check_opacity(opacity)
    blended = (1.0 - opacity) * np.asarray(image, dtype=np.float64) / 255.0 + opacity * colours
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def save(figure: Figure, path: str | Path | None, dpi: int = 110) -> Figure:
    """Write `figure` as PNG to `path` (folders created) when a path is given; return it for display."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi, bbox_inches="tight", format="png")
    return figure


def to_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for widgets: shown with `IPython.display.Image` whatever the backend).

    Made for a page that waits on it: zlib level 1 instead of 6 (measured on a 7-tile grid at 256 px: 0.05 s
    instead of 0.3 s, for a file 10% larger), and no tight bounding box, which would draw the figure twice (its
    constrained layout already fits the margins).
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _verdict_title(probability: float, label: int | None, threshold: float) -> str:
    verdict = "fake" if probability >= threshold else "real"
    truth = f" (true: {CLASS_NAMES[int(label)]})" if label is not None and label >= 0 else ""
    return f"p(fake) = {probability:.2f}: {verdict}{truth}"


def plot_cam_grid(images: np.ndarray, heatmaps: Mapping[str, np.ndarray], probabilities: Sequence[float],
                  labels: Sequence[int] | None = None, colormap: str = DEFAULT_COLORMAP, opacity: float = 0.5,
                  threshold: float = 0.5, method: str = "", path: str | Path | None = None,
                  tile_inches: float = 2.0) -> Figure:
    """One row per image: the face, then its heatmap overlaid for every layer (the original four-layer figure).

    Args:
        images: (n, size, size, 3) raw pixels.
        heatmaps: layer -> (n, size, size) in [0, 1] (`CamResult.heatmaps`).
        probabilities: (n,) p_fake, shown in every row's titles.
        labels: (n,) true classes (0 real, 1 fake) when known.
        colormap: a matplotlib colormap; the default is colour-blind safe.
        opacity: heatmap opacity over the face, 0..1.
        threshold: decision threshold for the verdict in the title.
        method: CAM method name for the titles.
        path: where to write the PNG (None: do not write).

    Returns:
        The figure.
    """
    images = np.asarray(images)
    layers = list(heatmaps)
    check_colormap(colormap)
    rows, columns = len(images), len(layers) + 1
    figure = Figure(figsize=(tile_inches * columns, tile_inches * rows + 0.3), layout="constrained")
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for row in range(rows):
        probability = float(probabilities[row])
        label = None if labels is None else int(labels[row])
        axes[row, 0].imshow(images[row].astype(np.uint8))
        axes[row, 0].set_title(_verdict_title(probability, label, threshold), fontsize=8)
        for column, layer in enumerate(layers, start=1):
            axes[row, column].imshow(overlay(images[row], heatmaps[layer][row], colormap, opacity))
            name = f"{layer} {method}" if method else layer
            axes[row, column].set_title(f"{name}\np(fake) = {probability:.2f}", fontsize=8)
    for axis in axes.ravel():
        axis.set_axis_off()
    mappable = matplotlib.cm.ScalarMappable(cmap=check_colormap(colormap), norm=matplotlib.colors.Normalize(0, 1))
    figure.colorbar(mappable, ax=axes[:, -1].tolist(), shrink=0.6, label="heatmap (1 = most evidence)")
    return save(figure, path)


def plot_where_to_look(ranking: pd.DataFrame, value: str = "lift", path: str | Path | None = None) -> Figure:
    """Horizontal bars of a `regions.where_to_look` table: one panel per layer plus "overall", best region on top.

    `value` is "lift" (mass share / area share; 1 = as much as its size predicts) or "share" (mass share).
    """
    if value not in ("lift", "share"):
        raise ValueError(f"unknown value {value!r}; available: lift, share")
    layers = list(dict.fromkeys(ranking["layer"]))
    figure = Figure(figsize=(3.2 * len(layers), 3.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(layers), sharex=True))
    colour = check_colormap(DEFAULT_COLORMAP)(0.25)
    for axis, layer in zip(axes, layers):
        table = ranking[ranking["layer"] == layer].sort_values("rank", ascending=False)
        axis.barh(table["label"], table[value].fillna(0.0), color=colour)
        if value == "lift":
            axis.axvline(1.0, color="0.4", linestyle="--", linewidth=0.8)
        count = int(table["n_images"].max()) if len(table) else 0
        axis.set_title(f"{layer} ({count} caught fakes)", fontsize=9)
        axis.set_xlabel("heatmap share / area share" if value == "lift" else "share of heatmap mass", fontsize=8)
        axis.tick_params(labelsize=8)
    figure.suptitle("Where to look first", fontsize=11)
    return save(figure, path)


def plot_region_template(labels: np.ndarray, names: Sequence[str], image: np.ndarray | None = None,
                         path: str | Path | None = None) -> Figure:
    """The face-region template (a `regions.region_map`), alone or outlined over an aligned face."""
    figure = Figure(figsize=(4.2, 4.2), layout="constrained")
    axis = figure.subplots()
    if image is not None:
        axis.imshow(np.asarray(image).astype(np.uint8))
        axis.contour(labels, levels=np.arange(len(names) - 1) + 0.5, colors="white", linewidths=0.8)
    else:
        axis.imshow(labels, cmap=check_colormap("cividis"), interpolation="nearest")
    for index, name in enumerate(names):
        rows, columns = np.nonzero(labels == index)
        if rows.size and name != "background":
            axis.text(columns.mean(), rows.mean(), name, fontsize=7, ha="center", va="center", color="white",
                      bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
    axis.set_axis_off()
    return save(figure, path)


def plot_quality(report: Mapping, path: str | Path | None = None) -> Figure:
    """Bars per method and layer from a `quality.evaluate` report: pointing game (against its random baseline),
    mask ROC-AUC (against 0.5), deletion win rate (share of images where removing the top pixels costs more
    than removing random ones, against 0.5; the ratio of mean logit drops is in the JSON) and the rank
    correlation with the randomized model (lower is better).
    """
    panels = (("pointing_game", "pointing game", "pointing_game_random"), ("mask_auc", "mask ROC-AUC", 0.5),
              ("deletion_win_rate", "deletion: top beats random", 0.5),
              ("sanity_rank_correlation", "rank corr. with random weights", 0.0))
    methods = report["methods"]
    figure = Figure(figsize=(13, 3.2), layout="constrained")
    axes = figure.subplots(1, len(panels))
    cmap = check_colormap(DEFAULT_COLORMAP)
    for axis, (key, title, reference) in zip(axes, panels):
        layers = list(dict.fromkeys(layer for per_layer in methods.values() for layer in per_layer))
        width = 0.8 / max(1, len(methods))
        for index, (method, per_layer) in enumerate(methods.items()):
            values = [per_layer.get(layer, {}).get(key) for layer in layers]
            positions = np.arange(len(layers)) + index * width
            axis.bar(positions, [np.nan if v is None else v for v in values], width, label=method,
                     color=cmap(index / max(1, len(methods) - 1) * 0.8))
        if isinstance(reference, str):
            baseline = next((layer_figures.get(reference) for per_layer in methods.values()
                             for layer_figures in per_layer.values()), None)
            if baseline is not None:
                axis.axhline(baseline, color="0.3", linestyle="--", linewidth=0.8, label="random heatmap")
        else:
            axis.axhline(reference, color="0.3", linestyle="--", linewidth=0.8)
        axis.set_xticks(np.arange(len(layers)) + width * (len(methods) - 1) / 2, layers, fontsize=8)
        axis.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    return save(figure, path)


# ------------------------------------------------------------------------------------------------ field guide

VERDICT_COLOURS = {"fakes": 0.15, "every face": 0.55, "reals": 0.85}  # positions on the default colormap
VERDICT_LEGEND = {"fakes": "more on caught fakes", "every face": "on every face", "reals": "more on real faces"}


def plot_contrast(ranking: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Lift difference (caught fakes minus correct reals) per region with its bootstrap interval, best on top;
    bars coloured by verdict (`fakes`, `every face`, `reals`, grey for the rest)."""
    table = ranking.dropna(subset=["difference"]).iloc[::-1]
    figure = Figure(figsize=(6.4, 0.35 * len(table) + 1.4), layout="constrained")
    axis = figure.subplots()
    cmap = check_colormap(DEFAULT_COLORMAP)
    colours = [cmap(VERDICT_COLOURS[verdict]) if verdict in VERDICT_COLOURS else "0.75" for verdict in table["verdict"]]
    errors = np.abs(np.vstack([table["difference"] - table["ci_low"], table["ci_high"] - table["difference"]]))
    axis.barh(table["label"], table["difference"], xerr=np.nan_to_num(errors), color=colours, capsize=3)
    axis.axvline(0.0, color="0.3", linewidth=0.8)
    legend = [matplotlib.patches.Patch(color=cmap(position), label=VERDICT_LEGEND[verdict])
              for verdict, position in VERDICT_COLOURS.items()]
    axis.legend(handles=[*legend, matplotlib.patches.Patch(color="0.75", label="no difference / too few")],
                fontsize=7, loc="lower right")
    axis.set_xlabel("lift on caught fakes minus lift on real faces (bars: 95% bootstrap interval)", fontsize=8)
    axis.tick_params(labelsize=8)
    return save(figure, path)


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = box
    return array[top:bottom, left:right]


def plot_region_gallery(images: np.ndarray, heatmaps: np.ndarray, region_masks: np.ndarray,
                        examples: Mapping[str, Sequence[int]], boxes: Sequence, title: str,
                        colormap: str = DEFAULT_COLORMAP, path: str | Path | None = None) -> Figure:
    """Zoomed crops of one region: caught fakes beside real faces, each plain and with its heatmap.

    Args:
        images: (n, size, size, 3) raw pixels; heatmaps: (n, size, size) in [0, 1].
        region_masks: (n, size, size) bool, the region on each image (outlined on the heatmap row).
        examples: {"fake": indices, "real": indices} (`fieldguide.gallery_examples`).
        boxes: per index in `images`, the crop box (`fieldguide.crop_box`) or None.
        title: the figure title.
    """
    columns = max(1, max(len(indices) for indices in examples.values()))
    figure = Figure(figsize=(1.7 * columns, 7.2), layout="constrained")
    axes = np.asarray(figure.subplots(4, columns, squeeze=False))
    rows = (("fake", False, "caught fakes"), ("fake", True, "caught fakes, heatmap"),
            ("real", False, "real faces"), ("real", True, "real faces, heatmap"))
    for row, (name, heat, label) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.set_axis_off()
            indices = list(examples.get(name, []))
            if column >= len(indices) or boxes[indices[column]] is None:
                continue
            index = indices[column]
            picture = overlay(images[index], heatmaps[index], colormap, 0.5) if heat else images[index].astype(np.uint8)
            axis.imshow(_crop(picture, boxes[index]), interpolation="nearest")
            if heat:
                axis.contour(_crop(region_masks[index], boxes[index]).astype(float), levels=[0.5], colors="white",
                             linewidths=0.6)
            if column == 0:
                axis.set_title(label, fontsize=8, loc="left")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)


def plot_masks_beside_heatmaps(images: np.ndarray, heatmaps: np.ndarray, masks: np.ndarray,
                               colormap: str = DEFAULT_COLORMAP, path: str | Path | None = None) -> Figure:
    """Demo fakes: the face, its heatmap, and its ground-truth artifact mask side by side (one row per face)."""
    rows = max(1, len(images))
    figure = Figure(figsize=(6.0, 2.0 * rows), layout="constrained")
    axes = np.asarray(figure.subplots(rows, 3, squeeze=False))
    for row in range(len(images)):
        axes[row, 0].imshow(images[row].astype(np.uint8))
        axes[row, 1].imshow(overlay(images[row], heatmaps[row], colormap, 0.5))
        axes[row, 2].imshow(images[row].astype(np.uint8))
        axes[row, 2].imshow(np.ma.masked_where(~masks[row], masks[row]), cmap="autumn", alpha=0.6)
    for column, title in enumerate(("face", "heatmap", "ground-truth artifact")):
        axes[0, column].set_title(title, fontsize=8)
    for axis in axes.ravel():
        axis.set_axis_off()
    return save(figure, path)


def plot_reveal(image: np.ndarray, heatmap: np.ndarray, region_mask: np.ndarray | None,
                look: tuple[float, float] | None = None, title: str = "", colormap: str = DEFAULT_COLORMAP) -> Figure:
    """Practice mode's answer: the face (with a cross where the person looked) beside the heatmap, the region the
    model points to outlined in white."""
    figure = Figure(figsize=(5.6, 3.0), layout="constrained")
    axes = figure.subplots(1, 2)
    size = image.shape[0]
    axes[0].imshow(np.asarray(image).astype(np.uint8))
    axes[0].set_title("where you looked" if look is not None else "the face", fontsize=8)
    if look is not None:
        axes[0].plot([look[0] * size - 0.5], [look[1] * size - 0.5], marker="x", markersize=12, color="white",
                     markeredgewidth=2.5)
    axes[1].imshow(overlay(image, heatmap, colormap, 0.5))
    if region_mask is not None and region_mask.any():
        axes[1].contour(region_mask.astype(float), levels=[0.5], colors="white", linewidths=1.0)
    axes[1].set_title("the model's evidence (outline: its region)", fontsize=8)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    return figure
