"""Residual statistics: a linear model of an image's pixel noise, a second evidence-only expert.

Steganalysis learnt long ago that a few thousand histogram counts of an image's high-pass residuals, read by a
linear model, tell apart two sources of pixels that no person can (SPAM, Pevny et al. 2010; rich models,
Fridrich and Kodovsky 2012). Here, per colour channel and for the grey average:
- the first-, second- and third-order differences along rows and along columns, rounded and truncated to
  [-2, 2], and the co-occurrence of three neighbouring differences (125 bins, rows and columns pooled);
- the mean size of the second-order (Laplacian) residual at each position of the 2 x 2 pixel grid, and of the
  first-order one at each column of the 8 x 8 grid (an up-sampling trace and a JPEG block trace), each divided
  by its mean;
- the co-occurrences of the red-green and green-blue differences' first-order residual;
- the joint histogram of the three colour channels' residuals at one pixel (a colour rich model), for the vertical
  first-order and second-order differences (the second-order one quantized with step 2);
- for the grey average, the co-occurrences of the two diagonal first-order differences, and of the minimum and
  the maximum of each pixel's right and down first-order differences (SPAM's min/max residuals);
- the same minimum per colour channel and the maximum for blue; for grey, the minimum and maximum of the
  differences to the four neighbours, and the minimum of the horizontal and vertical second-order residuals.
3,298 numbers, logarithm of the frequencies, standardized, then logistic regression (scikit-learn) with its
regularization chosen by ROC-AUC on the validation images of the folders holding both classes, and Platt-scaled
on those images: its evidence is pooled as log-odds with the trace expert's, so their scale must mean the same
(round 15: unscaled, a stronger model could add less).

It reads each image's centre square at its own pixels, down-sampled with an area filter to `SIDE` when larger
(`images.square_view`, the resolution policy of every model) and never padded, so a small image's histograms
are not filled with the padding's flat grey.

What it is for (docs/results.md, round 14): on faces-dev it ranks better than any CNN trained here (validation
ROC-AUC 0.964, in under two minutes on 2 cores), but it reads that collection's processing: it ranks the
generated faces of faces-shift *below* its real photos. So, like the trace expert, it may only add evidence
(`fakelib.expert`): `expert.pooled` adds each expert's log-odds above the cutoff, and a face it is not sure of
keeps the other members' verdict.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESIDUAL_FILE = "residual.npz"
SIDE = 256  # the side the statistics are read at: faces-dev's own, so its pixels are never resampled
TRUNCATE = 2
# per channel and grey: 3 residual orders, 2 x 2 and 8-column grids; 2 cross-channel; grey min and max, 2 colour
# joint, diagonals; per-channel min, blue max, grey min/max of four neighbours, second-order min (round 15)
N_FEATURES = 4 * (3 * 125 + 4 + 8) + 2 * 125 + 5 * 125 + 7 * 125
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
_FLOOR = 1e-5  # added to every frequency before its logarithm: an empty bin is 1e-5, not -inf


def _truncate(residual: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Residual / step rounded and truncated to [-TRUNCATE, TRUNCATE], shifted to a bin index 0..2 * TRUNCATE."""
    return np.clip(np.rint(residual / step), -TRUNCATE, TRUNCATE).astype(np.int16) + TRUNCATE


def _cooccurrence(residual: np.ndarray) -> np.ndarray:
    """(125,) counts of three consecutive truncated residuals along the last axis."""
    k = 2 * TRUNCATE + 1
    r = _truncate(residual)
    if r.shape[-1] < 3:
        return np.zeros(k ** 3)
    index = r[..., :-2] * (k * k) + r[..., 1:-1] * k + r[..., 2:]
    return np.bincount(index.ravel(), minlength=k ** 3).astype(np.float64)


def _joint(residuals: list[np.ndarray], step: float) -> np.ndarray:
    """(125,) counts of the three colour channels' truncated residuals at the same pixel."""
    k = 2 * TRUNCATE + 1
    red, green, blue = (_truncate(r, step).astype(np.int32) for r in residuals)
    return np.bincount(((red * k + green) * k + blue).ravel(), minlength=k ** 3).astype(np.float64)


def _right_down(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's first-order differences to its right and lower neighbours (same shape)."""
    return x[:-1, 1:] - x[:-1, :-1], x[1:, :-1] - x[:-1, :-1]


def _both_ways(residual: np.ndarray) -> np.ndarray:
    """(125,) frequencies of three consecutive truncated residuals along rows and along columns, pooled."""
    return _frequencies(_cooccurrence(residual) + _cooccurrence(residual.T))


def _frequencies(counts: np.ndarray) -> np.ndarray:
    return counts / max(float(counts.sum()), 1.0)


def _differences(x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(along rows, along columns transposed) first-, second- and third-order differences of one channel."""
    return [(x[:, 1:] - x[:, :-1], (x[1:] - x[:-1]).T),
            (x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:], (x[:-2] - 2 * x[1:-1] + x[2:]).T),
            (x[:, 3:] - 3 * x[:, 2:-1] + 3 * x[:, 1:-2] - x[:, :-3], (x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]).T)]


def _grid_profile(magnitude: np.ndarray, positions: list[tuple[slice, slice]]) -> np.ndarray:
    means = np.array([magnitude[rows, columns].mean() if magnitude[rows, columns].size else 0.0
                      for rows, columns in positions])
    return means / means.mean() if means.mean() > 0 else np.ones_like(means)


def features(square: np.ndarray) -> np.ndarray:
    """(N_FEATURES,) float32 log-frequencies of one (h, w, 3) uint8 image (`view` output; any side)."""
    pixels = np.asarray(square, dtype=np.float32)
    channels = [pixels[..., 0], pixels[..., 1], pixels[..., 2], pixels.mean(axis=-1)]
    parts = []
    for x in channels:
        for along_rows, along_columns in _differences(x):
            parts.append(_frequencies(_cooccurrence(along_rows) + _cooccurrence(along_columns)))
        laplacian = np.abs(4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:])
        parts.append(_grid_profile(laplacian, [(slice(i, None, 2), slice(j, None, 2)) for i in range(2)
                                               for j in range(2)]))
        parts.append(_grid_profile(np.abs(x[:, 1:] - x[:, :-1]), [(slice(None), slice(j, None, 8)) for j in range(8)]))
    for a, b in ((0, 1), (1, 2)):
        d = pixels[..., a] - pixels[..., b]
        parts.append(_frequencies(_cooccurrence(d[:, 1:] - d[:, :-1]) + _cooccurrence((d[1:] - d[:-1]).T)))
    colour = channels[:3]
    grey = channels[3]
    steps = [_right_down(x) for x in channels]  # (right, down) first differences of R, G, B and grey
    parts.append(_both_ways(np.minimum(*steps[3])))
    parts.append(_both_ways(np.maximum(*steps[3])))
    parts.append(_frequencies(_joint([x[:-2, 1:-1] - 2 * x[1:-1, 1:-1] + x[2:, 1:-1] for x in colour], step=2.0)))
    parts.append(_frequencies(_joint([down for _, down in steps[:3]], step=1.0)))
    parts.append(_frequencies(_cooccurrence(grey[1:, 1:] - grey[:-1, :-1])
                              + _cooccurrence(grey[1:, :-1] - grey[:-1, 1:])))
    parts.extend(_both_ways(np.minimum(*step)) for step in steps[:3])
    parts.append(_both_ways(np.maximum(*steps[2])))
    centre = grey[1:-1, 1:-1]
    neighbours = np.stack([grey[1:-1, :-2], grey[1:-1, 2:], grey[:-2, 1:-1], grey[2:, 1:-1]]) - centre
    parts.append(_both_ways(neighbours.min(axis=0)))
    parts.append(_both_ways(neighbours.max(axis=0)))
    across = grey[1:-1, :-2] - 2 * centre + grey[1:-1, 2:]
    along = grey[:-2, 1:-1] - 2 * centre + grey[2:, 1:-1]
    parts.append(_both_ways(np.minimum(across, along) / 2))
    return np.log(np.concatenate(parts) + _FLOOR).astype(np.float32)


def view(image, side: int = SIDE) -> np.ndarray:
    """The statistics' input: the centre square of a decoded image (or a file, or its bytes), down-sampled with
    an area filter to `side` when larger, never up-sampled, never padded (`images.square_view`)."""
    from PIL import Image

    from fakelib import images as imagelib

    if not isinstance(image, Image.Image):
        image = imagelib.open_image(image)
    square, _ = imagelib.square_view(image, side)
    return np.asarray(square, dtype=np.uint8)


def file_features(paths: list[Path], side: int = SIDE, threads: int = 2, memo: dict | None = None) -> np.ndarray:
    """(n, N_FEATURES) features of image files (numpy releases the GIL in the heavy parts, so threads help).

    `memo` ({(path, side): row}, filled here) lets two calls over overlapping files compute each file once,
    as `expert.assemble` does when it trains the residual model and then scores validation and test."""
    from fakelib import images as imagelib

    memo = {} if memo is None else memo

    def one(path: Path) -> np.ndarray:
        return features(view(imagelib.open_image(imagelib.read_image_bytes(path)), side))

    if not paths:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    missing = list(dict.fromkeys(Path(path) for path in paths if (Path(path), side) not in memo))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for path, row in zip(missing, pool.map(one, missing)):
            memo[(path, side)] = row
    return np.stack([memo[(Path(path), side)] for path in paths])


@dataclass(frozen=True)
class ResidualModel:
    """Standardization plus logistic regression on `features`, then Platt scaling; `probabilities` is its p_fake."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    side: int = SIDE
    c: float = 0.03
    platt_scale: float = 1.0
    platt_bias: float = 0.0

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """(n,) calibrated log-odds of feature rows."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, N_FEATURES)
        raw = ((rows - self.mean) / self.scale) @ self.coef + self.intercept
        return self.platt_scale * raw + self.platt_bias

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """(n,) p_fake of feature rows (`features`)."""
        return np.exp(-np.logaddexp(0.0, -self.logits(rows)))

    def save(self, path: str | Path) -> None:
        """Write the model as plain arrays (`np.savez`, no pickle), atomically."""
        import io

        from fakelib.atomic import write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, scale=self.scale, coef=self.coef, intercept=np.float64(self.intercept),
                 side=np.int64(self.side), c=np.float64(self.c), platt_scale=np.float64(self.platt_scale),
                 platt_bias=np.float64(self.platt_bias), n_features=np.int64(N_FEATURES))
        write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ResidualModel:
        """Raises ValueError (one line) for a file that is not a residual model of this version."""
        try:
            with np.load(Path(path), allow_pickle=False) as saved:
                if int(saved["n_features"]) != N_FEATURES:
                    raise ValueError(f"it has {int(saved['n_features'])} features, this fakelib reads {N_FEATURES}")
                model = cls(saved["mean"], saved["scale"], saved["coef"], float(saved["intercept"]),
                            int(saved["side"]), float(saved["c"]), float(saved["platt_scale"]),
                            float(saved["platt_bias"]))
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: not a residual-statistics model ({error})") from None
        if not (model.mean.shape == model.scale.shape == model.coef.shape == (N_FEATURES,)):
            raise ValueError(f"{path}: not a residual-statistics model (arrays of the wrong shape)")
        return model


def fit(train_rows: np.ndarray, train_labels: np.ndarray, val_rows: np.ndarray, val_labels: np.ndarray,
        grid=C_GRID, side: int = SIDE) -> tuple[ResidualModel, dict]:
    """Logistic regression on standardized rows, its inverse regularization C chosen from `grid` by validation
    ROC-AUC (`val_*`: the images of the folders holding both classes), then Platt-scaled on the same validation
    rows (`metrics.fit_platt`; the identity when they hold one class). Returns the model and {C: ROC-AUC}."""
    from dataclasses import replace

    from sklearn.linear_model import LogisticRegression

    from fakelib.metrics import fit_platt
    from sklearn.metrics import roc_auc_score

    mean = train_rows.mean(axis=0).astype(np.float64)
    scale = train_rows.std(axis=0).astype(np.float64)
    scale[scale == 0] = 1.0
    standard = (train_rows - mean) / scale
    best, scores = None, {}
    for c in grid:
        regression = LogisticRegression(C=c, max_iter=5000).fit(standard, train_labels)
        model = ResidualModel(mean, scale, regression.coef_[0].astype(np.float64), float(regression.intercept_[0]),
                              side, float(c))
        both = len(np.unique(val_labels)) == 2
        scores[c] = float(roc_auc_score(val_labels, model.logits(val_rows))) if both else float("nan")
        if best is None or scores[c] > scores[best.c]:
            best = model
    platt_scale, platt_bias = fit_platt(val_labels, best.logits(val_rows))
    return replace(best, platt_scale=float(platt_scale), platt_bias=float(platt_bias)), scores


def train(config, out_path: str | Path, cache_root=None, threads: int = 2, memo: dict | None = None) -> dict:
    """Fit a residual model on the training split of `config`'s data folders (all of them: reals of other
    sources teach it what is not a generator's), choose C on the validation images of the folders holding both
    classes, save it to `out_path`; returns its figures (C, validation ROC-AUC per C, seconds). `memo`: as in
    `file_features`."""
    from fakelib.data import load_dataset
    from fakelib.expert import dataset_file

    start = time.perf_counter()
    prepared = load_dataset(config.data, cache_root)  # the splits and labels, as every other member sees them
    rows, labels = {}, {}
    for split in ("train", "val"):
        mask = prepared.splits == split
        if split == "val" and prepared.paired is not None:
            mask &= prepared.paired
        relpaths = prepared.relpaths[mask]
        rows[split] = file_features([dataset_file(config, str(relpath)) for relpath in relpaths], threads=threads,
                                    memo=memo)
        labels[split] = prepared.labels[mask]
    if len(np.unique(labels["train"])) < 2:
        raise ValueError("the training split holds one class only: a residual model needs both")
    model, scores = fit(rows["train"], labels["train"], rows["val"], labels["val"])
    model.save(out_path)
    return {"residual_c": model.c, "residual_platt_scale": model.platt_scale, "residual_platt_bias": model.platt_bias,
            "residual_val_roc_auc_by_c": {str(c): score for c, score in scores.items()},
            "residual_n_train": int(len(labels["train"])),
            "residual_train_seconds": round(time.perf_counter() - start, 2)}
