"""A trained model with its preprocessing facts (input size, equalization, threshold): score arrays, files, folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakelib import images as imagelib


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

    @classmethod
    def from_path(cls, model_path: str | Path, threshold: float | None = None) -> Predictor:
        """Load `model.keras` (safe mode) and read `metrics.json` / `params.yaml` beside it if present."""
        from fakelib.models import load_model

        model_path = Path(model_path)
        model = load_model(model_path)
        folder = model_path.parent
        saved_threshold, quality = 0.5, 0
        if (folder / "metrics.json").is_file():
            saved_threshold = float(json.loads((folder / "metrics.json").read_text()).get("threshold", 0.5))
        if (folder / "params.yaml").is_file():
            from fakelib.config import load_experiment

            quality = load_experiment(folder / "params.yaml").data.equalize_quality
        return cls(model, saved_threshold if threshold is None else float(threshold), quality)

    @property
    def image_size(self) -> int:
        from fakelib.models import input_size

        return input_size(self.model)

    def prepare(self, source: str | Path | bytes) -> np.ndarray:
        """Decode one image to the model's (size, size, 3) uint8 input, equalized like training."""
        return imagelib.load_array(source, size=self.image_size, equalize_quality=self.equalize_quality)

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n,) probability of fake for (n, size, size, 3) pixel arrays, predicted in batches."""
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
                "label": "fake" if probability >= self.threshold else "real"}


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


def run_evaluate_cli(args) -> int:
    """`python -m fakelib evaluate`: one JSON line per folder; a bad folder is a line with `error`, exit 1."""
    predictor = Predictor.from_path(args.model, args.threshold)
    failed = False
    for data_dir in args.data_dirs:
        try:
            row = evaluate_folder(predictor, data_dir, args.batch_size)
        except (ValueError, OSError) as error:
            row, failed = {"data": str(data_dir), "error": str(error)}, True
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


def run_predict_cli(args) -> int:
    """`python -m fakelib predict`: one JSON line per image; unreadable files get an `error` field, exit 1."""
    predictor = Predictor.from_path(args.model, args.threshold)
    failed = False
    for path in args.images:
        row = predictor.predict_file(path)
        failed |= "error" in row
        print(json.dumps(row), flush=True)
    return 1 if failed else 0
