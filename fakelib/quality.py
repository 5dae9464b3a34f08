"""Explanation quality: pointing game, mask ROC-AUC, deletion test, randomization sanity check.

Measured on a dataset whose fakes carry ground-truth artifact masks (`fakelib.demo`: `masks/<stem>.png`,
listed in `manifest.csv`), per CAM method and conv layer:

- localization: the pointing game (the heatmap's maximum falls inside the mask) against the expected score of
  a random heatmap (whose maximum lands anywhere: the mask's area fraction), and the per-image ROC-AUC of
  heatmap values as a detector of mask pixels (0.5 = no better than chance);
- faithfulness: the deletion test, removing the top k% heatmap pixels (blurred or mean-filled) against removing
  the same number of random pixels; the drop of the fake logit for both, their ratio (> 1: the heatmap found
  pixels that matter more than random ones) and the win rate; and region deletion (`region_deletion`), blurring
  each image's top-ranked face region against a random patch of the same area and against its lowest region,
  which needs no ground-truth mask;
- sanity: the Spearman rank correlation between heatmaps of the model and of the same architecture with
  re-initialized weights (Adebayo et al. 2018): a faithful method gives a low correlation.
"""

from __future__ import annotations

import csv
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from scipy import ndimage, stats
from sklearn.metrics import roc_auc_score

from fakelib import explain
from fakelib import images as imagelib
from fakelib.checks import check_integer, check_number
from fakelib.layout import LABELS, dataset_files
from fakelib.models import input_size, logit_model
from fakelib.regions import REGIONS

FILLS = ("blur", "mean")
# Below this mean drop (in logits), random deletion changed nothing measurable and a ratio would be noise over noise.
MIN_RANDOM_DROP = 1e-3


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Sample:
    """Images of a dataset folder fitted to one size, with labels and artifact masks.

    Attributes:
        images: (n, size, size, 3) uint8.
        labels: (n,) int64, 0 = real, 1 = fake.
        masks: (n, size, size) bool artifact masks (all False for reals and fakes without a mask).
        has_mask: (n,) bool, True where a ground-truth mask was read.
        relpaths: paths relative to the dataset folder.
        errors: one {"relpath", "error"} row per file that could not be used.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    relpaths: list[str]
    errors: list[dict] = field(default_factory=list)

    def subset(self, selection: np.ndarray) -> Sample:
        """The images where the boolean or index `selection` picks them (errors kept)."""
        indices = np.arange(len(self.labels))[selection]
        return Sample(self.images[indices], self.labels[indices], self.masks[indices], self.has_mask[indices],
                      [self.relpaths[index] for index in indices], self.errors)


def _manifest_rows(root: Path) -> list[dict]:
    """Rows (relpath, label, split, mask_relpath) from manifest.csv, else from the real/ and fake/ folders."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("label") in LABELS and row.get("relpath")]
        if rows:
            return rows
    rows = []
    for relpath, label in dataset_files(root, require_both=False):
        mask = root / "masks" / f"{Path(relpath).stem}.png"
        rows.append({"relpath": relpath, "label": "fake" if label == LABELS["fake"] else "real", "split": "",
                     "mask_relpath": mask.relative_to(root).as_posix() if mask.is_file() else ""})
    return rows


def _choose(rows: list[dict], split: str | None, per_class: int | None, seed: int) -> list[dict]:
    """Rows of `split` when the dataset has any (else all), at most `per_class` of each label, seeded order."""
    if split and any(row.get("split") == split for row in rows):
        rows = [row for row in rows if row.get("split") == split]
    rng = np.random.default_rng(seed)
    chosen = []
    for label in LABELS:
        of_label = [row for row in rows if row["label"] == label]
        order = rng.permutation(len(of_label))[:per_class] if per_class is not None else range(len(of_label))
        chosen += [of_label[index] for index in sorted(order)]
    return chosen


def read_mask(path: Path, size: int) -> np.ndarray:
    """(size, size) bool mask from a PNG where artifact pixels are bright, square-fitted like the image."""
    array = imagelib.load_array(path, size)
    return array[..., 0] >= 128


def load_sample(data_dir: str | Path, size: int, per_class: int | None = None, split: str | None = "test",
                labels: Sequence[str] = ("real", "fake"), seed: int = 0, require_mask: bool = False,
                equalize_quality: int = 0) -> Sample:
    """Load up to `per_class` images of each label (the `split` rows when the manifest has them) with their masks.

    `require_mask` keeps only images with a ground-truth mask (demo fakes) before choosing; `equalize_quality`
    re-encodes every image as JPEG at that quality, as training did for a model trained with equalization.

    Bad files become rows in `Sample.errors`, never a crash of the whole run.

    Raises:
        FileNotFoundError: `data_dir` does not exist.
        ValueError: no usable image.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    rows = [row for row in _manifest_rows(root)
            if row["label"] in labels and (row.get("mask_relpath") or not require_mask)]
    rows = _choose(rows, split, per_class, seed)
    images, label_ids, masks, has_mask, relpaths, errors = [], [], [], [], [], []
    for row in rows:
        try:
            image = imagelib.load_array(root / row["relpath"], size, equalize_quality=equalize_quality)
            mask_relpath = row.get("mask_relpath") or ""
            mask = read_mask(root / mask_relpath, size) if mask_relpath else np.zeros((size, size), bool)
        except imagelib.ImageError as error:
            errors.append({"relpath": row["relpath"], "error": f"{error.reason}: {error}"})
            continue
        images.append(image), label_ids.append(LABELS[row["label"]]), masks.append(mask)
        has_mask.append(bool(mask_relpath)), relpaths.append(row["relpath"])
    if not images:
        raise ValueError(f"{root}: no usable image ({len(errors)} files failed)")
    return Sample(np.stack(images), np.array(label_ids, dtype=np.int64), np.stack(masks),
                  np.array(has_mask, dtype=bool), relpaths, errors)


# ------------------------------------------------------------------------------------------------ localization


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n,) bool: the maximum of each (size, size) heatmap lies inside its mask (first maximum on ties)."""
    flat = heatmaps.reshape(len(heatmaps), -1)
    peaks = flat.argmax(axis=1)
    return masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks]


def mask_auc(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n,) ROC-AUC of heatmap values for mask pixels against the rest; NaN where the mask is empty or full."""
    scores = np.full(len(heatmaps), np.nan)
    for index, (heatmap, mask) in enumerate(zip(heatmaps, masks)):
        truth = mask.ravel()
        if 0 < truth.sum() < truth.size:
            scores[index] = roc_auc_score(truth, heatmap.ravel())
    return scores


# ------------------------------------------------------------------------------------------------ faithfulness


def fill_image(image: np.ndarray, fill: str) -> np.ndarray:
    """(size, size, 3) float32 replacement pixels: a strong Gaussian blur of `image`, or its mean colour."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; available: {', '.join(FILLS)}")
    pixels = image.astype(np.float32)
    if fill == "mean":
        return np.broadcast_to(pixels.mean(axis=(0, 1)), pixels.shape).copy()
    sigma = max(2.0, image.shape[0] / 32)  # wipes out pixel-scale artifacts, keeps the face's layout
    return ndimage.gaussian_filter(pixels, sigma=(sigma, sigma, 0))


def deletion_masks(heatmaps: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n, size, size) masks of the top `fraction` heatmap pixels and of as many random pixels.

    Ties (typically the zeros after ReLU) are broken at random, so a map with few hot pixels does not
    delete a fixed corner of the image.
    """
    n, height, width = heatmaps.shape
    count = int(round(fraction * height * width))
    flat = heatmaps.reshape(n, -1)
    tie_break = rng.random(flat.shape)
    top = np.zeros_like(flat, dtype=bool)
    random = np.zeros_like(flat, dtype=bool)
    for index in range(n):
        order = np.lexsort((tie_break[index], -flat[index]))  # descending heat, random among equals
        top[index, order[:count]] = True
        random[index, rng.permutation(flat.shape[1])[:count]] = True
    return top.reshape(heatmaps.shape), random.reshape(heatmaps.shape)


def delete_pixels(images: np.ndarray, masks: np.ndarray, fills: np.ndarray) -> np.ndarray:
    """(n, size, size, 3) float32: `images` with the masked pixels replaced by `fills`."""
    return np.where(masks[..., None], fills, images.astype(np.float32))


def deletion_test(model: keras.Model, images: np.ndarray, heatmaps: np.ndarray, probabilities: np.ndarray,
                  fraction: float = 0.1, fill: str = "blur", seed: int = 0) -> dict:
    """Mean drop of the fake logit when the top `fraction` heatmap pixels are removed, against random pixels.

    Drops are measured on the logit (`fake_logits`), not on p_fake: a confident fake's p_fake barely moves
    whatever is removed (0.99999 -> 0.9999), which left the ratio undefined for most trained models.

    Returns:
        {"fraction", "fill", "drop_top", "drop_random", "ratio", "gain", "win_rate"}: mean logit drops, their
        ratio, their difference, and the share of images where the top pixels cost more than the random ones. The
        ratio is None when random deletion lowered the logit by less than `MIN_RANDOM_DROP` on average (a ratio
        over a zero or negative drop says nothing); gain and win rate are always defined, and the report's
        pass/fail reads the win rate. `probabilities` is kept for callers; the logits are recomputed.
    """
    check_number("fraction", fraction, 0.0, 1.0, low_open=True, high_open=True)
    del probabilities  # the logits below are the model's own, not the probability's clipped logit
    fills = np.stack([fill_image(image, fill) for image in images])
    top, random = deletion_masks(heatmaps, fraction, np.random.default_rng(seed))
    base = fake_logits(model, images)
    drop_top = base - fake_logits(model, delete_pixels(images, top, fills))
    drop_random = base - fake_logits(model, delete_pixels(images, random, fills))
    mean_top, mean_random = float(drop_top.mean()), float(drop_random.mean())
    ratio = mean_top / mean_random if mean_random >= MIN_RANDOM_DROP else None
    return {"fraction": fraction, "fill": fill, "drop_top": mean_top, "drop_random": mean_random, "ratio": ratio,
            "gain": mean_top - mean_random, "win_rate": float(np.mean(drop_top > drop_random))}


# ------------------------------------------------------------------------------------------------ region deletion

# A layer's ranking is faithful when blurring each image's top region lowers the fake logit at least this many
# times as much as blurring a random patch of the same shape and area (issue 11's goal for the best layer).
REGION_PASS_RATIO = 3.0
_LOGIT_MODELS: "weakref.WeakKeyDictionary[keras.Model, keras.Model | None]" = weakref.WeakKeyDictionary()


def fake_logits(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(n,) float64 logit of p_fake: the model's own "logit" layer when it has one, else the probability's logit.

    Drops are measured in logits because p_fake saturates: a fake scored 0.99999 moves by less than 1e-3 in
    probability whatever is deleted, which is why the probability-based deletion ratio was often null.
    """
    if model not in _LOGIT_MODELS:
        try:
            _LOGIT_MODELS[model] = logit_model(model)
        except ValueError:  # a model built before calibration existed: its probability's logit
            _LOGIT_MODELS[model] = None
    head = _LOGIT_MODELS[model]
    pixels = np.asarray(images, dtype=np.float32)
    if head is None:
        probability = np.clip(explain.predict_probabilities(model, pixels, batch_size).astype(np.float64), 1e-7,
                              1 - 1e-7)
        return np.log(probability) - np.log1p(-probability)
    return np.concatenate([np.asarray(head(pixels[start:start + batch_size], training=False)).reshape(-1)
                           for start in range(0, len(pixels), batch_size)]).astype(np.float64)


def shifted_masks(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size) bool: each mask moved by a random offset (wrapping round the edges).

    The moved mask keeps the region's exact shape and pixel count, so it is "a random region of the same area".
    """
    size = masks.shape[1]
    offsets = rng.integers(size // 8, size - size // 8, size=(len(masks), 2))  # at least 1/8 of the side away
    return np.stack([np.roll(mask, tuple(offset), axis=(0, 1)) for mask, offset in zip(masks, offsets)])


def region_deletion(model: keras.Model, images: np.ndarray, lifts: np.ndarray, labels: np.ndarray,
                    fill: str = "blur", seed: int = 0) -> dict:
    """Blur each image's top-ranked region and measure the drop of the fake logit, against a random patch of the
    same shape and area and against the lowest-ranked region.

    Args:
        model: the detector.
        images: (n, size, size, 3) raw pixels.
        lifts: (n, n_regions) lift of each region on each image for one layer (`fakelib.contrast.image_lifts`).
        labels: (n, size, size) region maps used for the lifts.
        fill: "blur" or "mean" (see `fill_image`).
        seed: the random patches.

    Returns:
        {"n_images", "drop_top", "drop_random", "drop_lowest" (mean logit drops), "ratio_random",
        "ratio_lowest" (None when the divisor is below `MIN_RANDOM_DROP`), "gain" (top minus random, always
        defined), "win_rate" (share of images where the top region costs more than the random patch),
        "passes" (ratio_random >= REGION_PASS_RATIO, or a positive top drop over a non-positive random drop, and
        win_rate > 0.5), "top_regions" (region name -> count of images where it ranked first)}.
    """
    images = np.asarray(images)
    ranked = np.where(np.isnan(lifts), -np.inf, lifts)
    top, lowest = ranked.argmax(axis=1), np.where(np.isnan(lifts), np.inf, lifts).argmin(axis=1)
    top_masks = labels == top[:, None, None]
    fills = np.stack([fill_image(image, fill) for image in images])
    base = fake_logits(model, images)
    drops = {name: base - fake_logits(model, delete_pixels(images, masks, fills)) for name, masks in (
        ("top", top_masks), ("random", shifted_masks(top_masks, np.random.default_rng(seed))),
        ("lowest", labels == lowest[:, None, None]))}
    means = {name: float(values.mean()) for name, values in drops.items()}
    ratio = means["top"] / means["random"] if means["random"] >= MIN_RANDOM_DROP else None
    win_rate = float(np.mean(drops["top"] > drops["random"]))
    strong = ratio >= REGION_PASS_RATIO if ratio is not None else means["top"] > MIN_RANDOM_DROP
    names, counts = np.unique(top, return_counts=True)
    return {"n_images": int(len(images)), "drop_top": means["top"], "drop_random": means["random"],
            "drop_lowest": means["lowest"], "ratio_random": ratio,
            "ratio_lowest": means["top"] / means["lowest"] if means["lowest"] >= MIN_RANDOM_DROP else None,
            "gain": means["top"] - means["random"], "win_rate": win_rate, "passes": bool(strong and win_rate > 0.5),
            "top_regions": {REGIONS[name]: int(count) for name, count in zip(names, counts)}}


# ------------------------------------------------------------------------------------------------ sanity


def _all_layers(model: keras.Model) -> list:
    layers = []
    for layer in model.layers:
        layers.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


def randomized_copy(model: keras.Model, seed: int = 0) -> keras.Model:
    """The same architecture with every kernel re-drawn from its own initializer (seeded) and fresh batch norm."""
    copy = keras.models.clone_model(model)
    for index, layer in enumerate(_all_layers(copy)):
        initializer = getattr(layer, "kernel_initializer", None)
        kernel = getattr(layer, "kernel", None)
        if initializer is not None and kernel is not None:
            config = {**initializer.get_config(), "seed": seed + index} if "seed" in initializer.get_config() \
                else initializer.get_config()
            kernel.assign(type(initializer).from_config(config)(kernel.shape, dtype=kernel.dtype))
    return copy


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(n,) Spearman correlation between paired (size, size) maps; NaN where either map is constant."""
    a = stats.rankdata(first.reshape(len(first), -1), axis=1)
    b = stats.rankdata(second.reshape(len(second), -1), axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)


# ------------------------------------------------------------------------------------------------ report


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def evaluate(model: keras.Model, images: np.ndarray, masks: np.ndarray, methods: Sequence[str] = ("gradcam",),
             layers: Sequence[str] | None = None, fraction: float = 0.1, fill: str = "blur", seed: int = 0,
             sanity: bool = True) -> dict:
    """Every quality figure for fakes with masks, per method and layer.

    Args:
        model: the detector.
        images: (n, size, size, 3) raw pixels of fakes at the model's input size.
        masks: (n, size, size) bool ground-truth artifact masks.
        methods: CAM methods (`explain.list_methods()`).
        layers: conv layers (None = all).
        fraction: share of pixels removed in the deletion test.
        fill: how removed pixels are filled, "blur" or "mean".
        seed: random pixels, tie breaks and randomized weights.
        sanity: also run the randomization sanity check (one more model and pass per method).

    Returns:
        {"n_images", "mean_probability", "mask_fraction", "methods": {method: {layer: {...figures}}}}.
    """
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=bool)
    randomized = randomized_copy(model, seed) if sanity else None
    report = {"n_images": int(len(images)), "mask_fraction": _mean(masks.reshape(len(masks), -1).mean(axis=1)),
              "deletion_fraction": fraction, "deletion_fill": fill, "methods": {}}
    for method in methods:
        result = explain.compute_cams(model, images, method, layers)
        report["mean_probability"] = _mean(result.probabilities)
        random_result = explain.compute_cams(randomized, images, method, result.layers) if sanity else None
        report["methods"][method] = {
            layer: _layer_figures(model, images, masks, result, layer, random_result, fraction, fill, seed)
            for layer in result.layers}
    return report


def _layer_figures(model, images, masks, result, layer, random_result, fraction, fill, seed) -> dict:
    heatmaps = result.heatmaps[layer]
    deletion = deletion_test(model, images, heatmaps, result.probabilities, fraction, fill, seed)
    figures = {
        "pointing_game": _mean(pointing_game(heatmaps, masks)),
        "pointing_game_random": _mean(masks.reshape(len(masks), -1).mean(axis=1)),
        "mask_auc": _mean(mask_auc(heatmaps, masks)),
        "deletion_drop_top": deletion["drop_top"],
        "deletion_drop_random": deletion["drop_random"],
        "deletion_ratio": deletion["ratio"],
        "deletion_gain": deletion["gain"],
        "deletion_win_rate": deletion["win_rate"],
    }
    if random_result is not None:
        figures["sanity_rank_correlation"] = _mean(rank_correlation(heatmaps, random_result.heatmaps[layer]))
    return figures


def json_ready(value):
    """`value` with numpy scalars turned into plain numbers and NaN/inf into None, recursively."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def evaluate_folder(model: keras.Model, data_dir: str | Path, methods: Sequence[str] = ("gradcam",),
                    layers: Sequence[str] | None = None, limit: int = 64, split: str | None = "test",
                    fraction: float = 0.1, fill: str = "blur", seed: int = 0, sanity: bool = True,
                    equalize_quality: int = 0) -> dict:
    """`evaluate` on up to `limit` masked fakes of a dataset folder; JSON-ready (no NaN), with unusable files listed.

    Raises:
        ValueError: unknown method, or no fake with a ground-truth mask.
    """
    for method in methods:
        explain.get_method(method)
    try:
        sample = load_sample(data_dir, input_size(model), per_class=limit, split=split, labels=("fake",),
                             seed=seed, require_mask=True, equalize_quality=equalize_quality)
    except ValueError as error:
        raise ValueError(f"{error}; explain-quality needs fakes with ground-truth masks (masks/<stem>.png)") from None
    report = evaluate(model, sample.images, sample.masks, methods, layers, fraction, fill, seed, sanity)
    return json_ready({"data_dir": str(data_dir), "split": split, **report, "errors": sample.errors})


def quality_report(data_dir: str | Path, model_path: str | Path | None = None, methods: Sequence[str] = ("gradcam",),
                   limit: int = 64, fraction: float = 0.1, fill: str = "blur", split: str | None = "test",
                   seed: int = 0) -> dict:
    """The quality figures of a saved model (default: `fakelib.pretrained.default_model`) on `data_dir`, JSON-ready."""
    check_integer("limit", limit, 1)
    from fakelib.predict import Predictor

    predictor = Predictor.from_path(model_path)
    report = evaluate_folder(predictor.model, data_dir, list(methods), limit=limit, fraction=fraction, fill=fill,
                             seed=seed, split=split or None, equalize_quality=predictor.equalize_quality)
    return {"model": str(predictor.model_path), **report}
