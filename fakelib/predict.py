"""A trained model with its preprocessing facts (input size, equalization, threshold): score arrays, files, folders."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakelib import images as imagelib

# The one common format of `common_format`: small enough that every group is down-sampled or nearly so.
COMMON_SIDE = 128
COMMON_QUALITY = 85


@dataclass
class Predictor:
    """A loaded model plus what its experiment folder says about using it.

    Attributes:
        model: the Keras model (raw pixels in, p_fake out).
        threshold: decision threshold (from metrics.json beside the model when present, else 0.5).
        equalize_quality: JPEG quality used to re-encode inputs in training (0 = none), from params.yaml.
    """

    model: object
    threshold: float = 0.5
    equalize_quality: int = 0

    model_path: Path | None = None

    @classmethod
    def from_path(cls, model_path: str | Path | None, threshold: float | None = None) -> Predictor:
        """Load `model.keras` (safe mode) and read `metrics.json` / `params.yaml` beside it if present.

        `model_path` None takes `fakelib.pretrained.default_model()`: the last sweep's best, else the pretrained one.

        Raises:
            ValueError: a threshold that is not a finite number in [0, 1].
        """
        from fakelib.models import load_model
        from fakelib.pretrained import default_model

        if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold = {threshold!r} is not allowed; expected a number in [0, 1]")
        model_path = Path(model_path) if model_path is not None else default_model()
        model = load_model(model_path)
        folder = model_path.parent
        saved_threshold, quality = 0.5, 0
        if (folder / "metrics.json").is_file():
            saved_threshold = float(json.loads((folder / "metrics.json").read_text()).get("threshold", 0.5))
        if (folder / "params.yaml").is_file():
            from fakelib.config import load_experiment

            quality = load_experiment(folder / "params.yaml").data.equalize_quality
        return cls(model, saved_threshold if threshold is None else float(threshold), quality, model_path)

    @property
    def image_size(self) -> int:
        from fakelib.models import input_size

        return input_size(self.model)

    def prepare(self, source: str | Path | bytes) -> np.ndarray:
        """Decode one image to the model's (size, size, 3) uint8 input, equalized like training, never up-sampled:
        larger images are down-sampled, smaller ones padded as training padded them (`images.load_view`)."""
        view, _ = imagelib.load_view(source, self.image_size, equalize_quality=self.equalize_quality)
        return view

    def predict_arrays(self, images: np.ndarray | list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(n,) probability of fake for (n, size, size, 3) inputs, or a list of `prepare` outputs, in batches."""
        from fakelib.models import predict_probabilities

        return predict_probabilities(self.model, images, batch_size)

    def predict_file(self, path: str | Path) -> dict:
        """One JSON-ready row: `path`, `p_fake`, `label`, or `path`, `error` for an unusable file."""
        try:
            probability = float(self.predict_arrays(self.prepare(Path(path).read_bytes())[None])[0])
        except imagelib.ImageError as error:
            return {"path": str(path), "error": f"{error.reason}: {error}"}
        except OSError as error:
            return {"path": str(path), "error": f"unreadable: {error.strerror or error}"}
        return {"path": str(path), "p_fake": round(probability, 6),
                "label": "fake" if probability >= self.threshold else "real", "threshold": round(self.threshold, 6)}


def evaluate_folder(predictor: Predictor, data_dir: str | Path, batch_size: int = 64) -> dict:
    """Metrics of `predictor` on every image of a folder (`real/` and/or `fake/`); one JSON-ready row."""
    from fakelib.data import load_folder_images
    from fakelib.metrics import binary_metrics

    prepared = load_folder_images(data_dir, predictor.image_size, predictor.equalize_quality)
    probabilities = predictor.predict_arrays(prepared.images, batch_size)
    scores = binary_metrics(prepared.labels, probabilities, predictor.threshold)
    keys = ("n", "n_real", "n_fake", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
            "threshold", "real_rate", "fake_rate")
    return {"data": str(data_dir), **{key: scores[key] for key in keys}, "n_skipped": prepared.report["n_skipped"]}


def announce(predictor: Predictor) -> None:
    """One line on stderr (stdout stays JSON): which model and threshold the verdicts come from."""
    import sys

    print(f"model {predictor.model_path}, threshold {predictor.threshold:.3f}", file=sys.stderr, flush=True)


def print_evaluations(data_dirs: Sequence[str | Path], model_path: str | Path | None = None,
                      threshold: float | None = None, batch_size: int = 64) -> int:
    """One JSON line of metrics per folder; a bad folder is a line with `error`. Returns the exit status (1: any
    failed)."""
    predictor = Predictor.from_path(model_path, threshold)
    announce(predictor)
    failed = False
    for data_dir in data_dirs:
        try:
            row = evaluate_folder(predictor, data_dir, batch_size)
        except (ValueError, OSError) as error:
            row, failed = {"data": str(data_dir), "error": str(error)}, True
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


def print_predictions(images: Sequence[str | Path], model_path: str | Path | None = None,
                      threshold: float | None = None) -> int:
    """One JSON line per image; an unreadable file gets an `error` field. Returns the exit status (1: one failed)."""
    predictor = Predictor.from_path(model_path, threshold)
    announce(predictor)
    failed = False
    for path in images:
        row = predictor.predict_file(path)
        failed |= "error" in row
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------- per-group (shift) scoring


def group_of(relpath: str) -> str:
    """The group of a file: its class folder and the first folder below it (`fake/stylegan2/x.jpg` -> `fake/stylegan2`)."""
    parts = Path(relpath).parts
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def common_format(data: bytes, side: int = COMMON_SIDE, quality: int = COMMON_QUALITY) -> bytes:
    """One common resize and re-encode for every file: centre square resized to `side` px, JPEG at `quality`.

    Scoring every group after this removes what file properties (size, format, compression) could tell a
    model, so a score that holds afterwards is read from the faces, not from the files.
    """
    image = imagelib.open_image(data)
    return imagelib.encode_jpeg(imagelib.fit_square(image, side), quality)


def score_files(predictor: Predictor, root: Path, relpaths: list[str], transform=None,
                batch_size: int = 32) -> tuple[np.ndarray, list[str]]:
    """(n,) p_fake of `root/relpath` files (NaN where unusable), optionally after `transform(bytes) -> bytes`."""
    probabilities = np.full(len(relpaths), np.nan, dtype=np.float64)
    errors = []
    for start in range(0, len(relpaths), batch_size):
        arrays, positions = [], []
        for position in range(start, min(start + batch_size, len(relpaths))):
            try:
                data = imagelib.read_image_bytes(root / relpaths[position])
                arrays.append(predictor.prepare(transform(data) if transform else data))
                positions.append(position)
            except imagelib.ImageError as error:
                errors.append(f"{relpaths[position]}: {error.reason}")
        if arrays:
            probabilities[positions] = predictor.predict_arrays(arrays, batch_size)
    return probabilities, errors


def evaluate_groups(predictor: Predictor, data_dir: str | Path, common: bool = True) -> dict:
    """Per-group figures on a folder of `real/<group>/` and `fake/<group>/` images, at the saved threshold.

    A real group's figure is the share kept as real, a fake group's the share caught. Each fake group also gets
    its ROC-AUC against all the folder's reals; with `common`, the same after `common_format` of every file.
    """
    from fakelib.layout import LABELS, dataset_files
    from fakelib.metrics import binary_metrics

    root = Path(data_dir)
    files = dataset_files(root, require_both=False)
    relpaths = [relpath for relpath, _ in files]
    labels = np.array([label for _, label in files])
    groups = np.array([group_of(relpath) for relpath in relpaths])
    views = {"as_published": None, **({"common_format": common_format} if common else {})}
    result: dict = {"data": str(root), "threshold": predictor.threshold, "common_format": {
        "side": COMMON_SIDE, "jpeg_quality": COMMON_QUALITY}, "groups": {}, "errors": []}
    for view, transform in views.items():
        probabilities, errors = score_files(predictor, root, relpaths, transform)
        result["errors"] += [f"{view}: {error}" for error in errors]
        usable = ~np.isnan(probabilities)
        reals = usable & (labels == LABELS["real"])
        for group in sorted(set(groups)):
            members = usable & (groups == group)
            is_fake = labels[members][0] == LABELS["fake"] if members.any() else False
            called_fake = probabilities[members] >= predictor.threshold
            row = result["groups"].setdefault(group, {"label": "fake" if is_fake else "real", "n": int(members.sum())})
            row[f"{view}_{'caught' if is_fake else 'kept_real'}"] = (
                float(called_fake.mean() if is_fake else 1 - called_fake.mean()) if members.any() else None)
            row[f"{view}_mean_p_fake"] = float(probabilities[members].mean()) if members.any() else None
            if is_fake and reals.any():
                pair = members | reals
                row[f"{view}_roc_auc_vs_all_reals"] = binary_metrics(labels[pair], probabilities[pair])["roc_auc"]
    return result
