"""FFHQ-aligned face-region template; heatmap mass per region; "where to look first" rankings.

How the template is placed. FFHQ alignment (shared by StyleGAN and thispersondoesnotexist faces, and by
`fakelib.demo`) puts the eyes, nose tip and mouth at fixed fractions of the image side (`LANDMARKS`), whatever
the resolution. The template is therefore a set of shapes in those fractions (x right, y down, measured at
pixel centres), rasterized for any side length by `region_map(size)`:

- eyes, brows, nose, mouth_teeth: ellipses around the landmarks, sized from the FFHQ/demo feature sizes with a
  margin for the ~1% alignment error of a landmark-aligned crop;
- ears: ellipses at the sides of the head ellipse (centre (0.5, 0.53), radii (0.26, 0.35), narrowing to the chin);
- face_outline_jaw: a band around the head outline below the hairline, plus the chin and jaw below the mouth;
- skin: the rest of the face (forehead, cheeks), below the hairline;
- hair: the crown above the hairline and the hair beside the face down to the ears;
- background: everything else (including neck and clothes).

Each pixel belongs to exactly one region (the first that claims it in `REGIONS` order), so region shares
of a heatmap always sum to 1. The template is a prior for aligned faces: on an unaligned photo it is wrong.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

# Landmarks of an FFHQ-aligned face as fractions of the image side (x right, y down).
# Derived from the FFHQ alignment recipe (crop side = 3.6 x eye-to-mouth distance, centre 0.1 x eye-to-mouth
# below the eye midpoint): eyes sit at y ~ 0.47, the mouth at y ~ 0.75, eyes ~0.26 of the side apart.
# StyleGAN / thispersondoesnotexist faces share this alignment; fakelib.demo draws its faces on it.
LANDMARKS: dict[str, tuple[float, float]] = {
    "left_eye": (0.37, 0.47),   # the eye on the image's left
    "right_eye": (0.63, 0.47),
    "nose_tip": (0.50, 0.62),
    "mouth": (0.50, 0.75),
}

# Regions in priority order: a pixel claimed by an earlier region is not counted again by a later one.
REGIONS: tuple[str, ...] = (
    "eyes", "brows", "nose", "mouth_teeth", "ears", "face_outline_jaw", "skin", "hair", "background",
)
REGION_LABELS: dict[str, str] = {
    "eyes": "eyes", "brows": "eyebrows", "nose": "nose", "mouth_teeth": "mouth and teeth", "ears": "ears",
    "face_outline_jaw": "face outline and jaw", "skin": "forehead and cheeks", "hair": "hair",
    "background": "background",
}

HEAD_CENTRE, HEAD_RADII, JAW_TAPER = (0.50, 0.53), (0.26, 0.35), 0.2
HAIRLINE = 0.30  # y of the hairline at the face's centre; demo faces draw it at 0.23 .. 0.33
OUTLINE_BAND = (0.82, 1.08)  # the face outline: head-ellipse radius between these values
JAW_TOP = 0.81  # below the mouth, the face is chin and jaw
HAIR_CAP = ((0.50, 0.50), (0.32, 0.41))  # centre, radii: the hair's reach around the head
HAIR_BOTTOM = 0.62  # hair beside the face is counted down to about the ear lobes


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    line = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(line, line)  # x, y: (size, size)


def _ellipse(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1.0


def _head_radius(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Normalized radius of the head ellipse, narrowing below its centre like the demo's jaw."""
    dy = (y - HEAD_CENTRE[1]) / HEAD_RADII[1]
    half_width = HEAD_RADII[0] * (1 - JAW_TAPER * np.clip(dy, 0, 1) ** 2)
    return np.sqrt(((x - HEAD_CENTRE[0]) / half_width) ** 2 + dy ** 2)


def _region_shapes(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (size, size) shape of every region before priorities resolve overlaps."""
    left, right, nose, mouth = (LANDMARKS[name] for name in ("left_eye", "right_eye", "nose_tip", "mouth"))
    head = _head_radius(x, y)
    below_hairline = y >= HAIRLINE
    return {
        "eyes": _ellipse(x, y, left, (0.075, 0.042)) | _ellipse(x, y, right, (0.075, 0.042)),
        "brows": _ellipse(x, y, (left[0], left[1] - 0.055), (0.072, 0.026))
        | _ellipse(x, y, (right[0], right[1] - 0.055), (0.072, 0.026)),
        "nose": _ellipse(x, y, (nose[0], nose[1] - 0.04), (0.05, 0.075)),
        "mouth_teeth": _ellipse(x, y, (mouth[0], mouth[1] + 0.003), (0.11, 0.048)),
        "ears": _ellipse(x, y, (HEAD_CENTRE[0] - HEAD_RADII[0], 0.54), (0.042, 0.082))
        | _ellipse(x, y, (HEAD_CENTRE[0] + HEAD_RADII[0], 0.54), (0.042, 0.082)),
        "face_outline_jaw": below_hairline & (((head >= OUTLINE_BAND[0]) & (head <= OUTLINE_BAND[1]) & (y >= 0.36))
                                              | ((head < OUTLINE_BAND[1]) & (y >= JAW_TOP))),
        "skin": below_hairline & (head < 1.0),
        "hair": _ellipse(x, y, *HAIR_CAP) & ((y < HAIR_BOTTOM) | (head < 1.0)),
        "background": np.ones_like(x, dtype=bool),
    }


@functools.lru_cache(maxsize=16)
def region_map(size: int) -> np.ndarray:
    """(size, size) int8 map of region indices into `REGIONS` for an aligned face of side `size` (read-only)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x, y = _pixel_grid(size)
    labels = np.full((size, size), -1, dtype=np.int8)
    for index, shape in enumerate(_region_shapes(x, y).values()):
        labels[(labels < 0) & shape] = index
    labels.flags.writeable = False
    return labels


def region_masks(size: int) -> dict[str, np.ndarray]:
    """Region name -> (size, size) boolean mask; the masks partition the image."""
    labels = region_map(size)
    return {name: labels == index for index, name in enumerate(REGIONS)}


def area_shares(size: int) -> np.ndarray:
    """(n_regions,) fraction of the image each region covers, in `REGIONS` order."""
    return np.bincount(region_map(size).ravel(), minlength=len(REGIONS)) / float(size * size)


def region_shares(heatmaps: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Share of heatmap mass in each region.

    Args:
        heatmaps: (batch, size, size) or one (size, size) non-negative map at the image's resolution.
        labels: each image's own (batch, size, size) region map (e.g. `fakelib.landmarks.region_maps`); None =
            the aligned template for every image.

    Returns:
        (batch, n_regions) float64 in `REGIONS` order, each row summing to 1; a row is NaN for an all-zero map
        (it points nowhere). One map gives shape (n_regions,).
    """
    maps = np.asarray(heatmaps, dtype=np.float64)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise ValueError(f"heatmaps must be (batch, size, size) or (size, size), got {np.shape(heatmaps)}")
    if np.any(maps < 0):
        raise ValueError("heatmaps must be non-negative")
    per_image = _per_image_labels(labels, maps.shape)
    flat = maps.reshape(len(maps), -1)
    mass = np.stack([np.bincount(per_image[index], weights=row, minlength=len(REGIONS))
                     for index, row in enumerate(flat)]) if len(flat) else np.zeros((0, len(REGIONS)))
    totals = mass.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, mass / totals, np.nan)
    return shares[0] if single else shares


def _per_image_labels(labels: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """(batch, size * size) region indices: the template repeated, or the given per-image maps flattened."""
    if labels is None:
        return np.broadcast_to(region_map(shape[1]).ravel(), (shape[0], shape[1] * shape[2]))
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"labels must have the heatmaps' shape {tuple(shape)}, got {labels.shape}")
    return labels.reshape(shape[0], -1).astype(np.intp)


def image_area_shares(labels: np.ndarray) -> np.ndarray:
    """(batch, n_regions) fraction of each image that each region covers, from (batch, size, size) region maps."""
    flat = np.asarray(labels).reshape(len(labels), -1).astype(np.intp)
    return np.stack([np.bincount(row, minlength=len(REGIONS)) for row in flat]) / float(flat.shape[1])


def shares_frame(heatmaps: dict[str, np.ndarray], image_ids: Sequence | None = None) -> pd.DataFrame:
    """Long table of region shares: one row per (image, layer, region), columns image, layer, region, share.

    Args:
        heatmaps: layer -> (batch, size, size), e.g. `CamResult.heatmaps`.
        image_ids: one id per image (default 0..batch-1).
    """
    frames = []
    for layer, maps in heatmaps.items():
        shares = region_shares(maps)
        ids = list(range(len(maps))) if image_ids is None else list(image_ids)
        frame = pd.DataFrame(shares, columns=list(REGIONS))
        frame.insert(0, "image", ids)
        frames.append(frame.melt(id_vars="image", var_name="region", value_name="share").assign(layer=layer))
    return pd.concat(frames, ignore_index=True)[["image", "layer", "region", "share"]]


def caught_fakes(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean (n,) selection of fakes the model caught: label 1 and p_fake >= threshold."""
    return (np.asarray(labels) == 1) & (np.asarray(probabilities) >= threshold)


def where_to_look(heatmaps: dict[str, np.ndarray], selection: np.ndarray | None = None,
                  rank_by: str = "lift") -> pd.DataFrame:
    """The "where to look first" ranking of regions, per layer and overall.

    Args:
        heatmaps: layer -> (batch, size, size) maps, e.g. `CamResult.heatmaps`.
        selection: boolean (batch,) images to use, normally `caught_fakes(...)`; None = all.
        rank_by: "lift" (default: share of heatmap mass divided by share of image area, so a small region that
            concentrates the evidence, such as the eyes, outranks the large background) or "share" (raw mass).

    Returns:
        Columns layer ("overall" = images' shares averaged over layers), rank (1 = look first), region,
        label, share (mean over images), area (fraction of the image), lift, n_images. Images whose map is
        all zero are left out of the means.

    Raises:
        ValueError: unknown `rank_by`.
    """
    if rank_by not in ("lift", "share"):
        raise ValueError(f"unknown rank_by {rank_by!r}; available: lift, share")
    per_layer = {}
    for layer, maps in heatmaps.items():
        maps = maps if selection is None else maps[np.asarray(selection, dtype=bool)]
        per_layer[layer] = region_shares(maps) if len(maps) else np.full((0, len(REGIONS)), np.nan)
    size = next(iter(heatmaps.values())).shape[1]
    area = area_shares(size)
    stacked = np.stack(list(per_layer.values()))  # (layers, images, regions)
    with warnings.catch_warnings():  # an image whose maps are all zero in every layer stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_layer["overall"] = np.nanmean(stacked, axis=0) if stacked.shape[1] else stacked[0]
    rows = []
    for layer, shares in per_layer.items():
        valid = shares[~np.isnan(shares).any(axis=1)]
        mean = valid.mean(axis=0) if len(valid) else np.full(len(REGIONS), np.nan)
        table = pd.DataFrame({"layer": layer, "region": list(REGIONS),
                              "label": [REGION_LABELS[name] for name in REGIONS],
                              "share": mean, "area": area, "lift": mean / area, "n_images": len(valid)})
        table = table.sort_values(rank_by, ascending=False, kind="stable", na_position="last")
        table.insert(1, "rank", np.arange(1, len(table) + 1))
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def advice(ranking: pd.DataFrame, layer: str = "overall", top: int = 3) -> str:
    """One sentence of advice from a `where_to_look` table, e.g. "Look first at the eyes, then ..."."""
    table = ranking[(ranking["layer"] == layer) & ranking["share"].notna()].sort_values("rank").head(top)
    if table.empty:
        return "No caught fake to learn from: the model found no fake with a usable heatmap."
    labels = list(table["label"])
    tail = f", then {', '.join(labels[1:])}" if len(labels) > 1 else ""
    return f"Look first at the {labels[0]}{tail}."
