"""Would two trained detectors do better together? Average their calibrated logits and measure it.

    python benchmarks/bench_ensemble.py --models RUN_A/model.keras RUN_B/model.keras \
        --data FACES_DEV [EXTRA_REAL ...] [--shift FACES_SHIFT] [--weights 0,0.25,0.5,0.75,1]

Each member scores every file through its own `fakelib.predict.Predictor` (its own input side, so a 128 px model
and a 256 px one each see the view they were trained on). The ensemble's logit is (1 - w) * logit_a + w * logit_b
for each weight w of the grid. Everything is chosen on validation, as `fakelib.train` chooses it for one model:
the weight with the best validation ROC-AUC (ties: the one nearest 0.5); Platt scaling on the validation images
of the first `--data` folder (the one holding both classes); the threshold by Youden's J on all validation
images against their worst group of reals (`metrics.choose_threshold`). The split of each file comes from its folder's `manifest.csv` (`split` column); files without one are
left out. Test is every folder's `test` split.

`--shift DIR` (evaluation only: nothing is chosen on it) scores the chosen ensemble on each group of DIR with
`fakelib.predict.evaluate_groups`, exactly as `bench_detect.py --shift` scores one model.

Prints one JSON object: validation and test ROC-AUC per weight, and for the chosen weight the calibration, the
threshold, the test metrics at it (F1, per-class rates, ECE with its noise floor) and the shift groups.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakelib.expert import to_logit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, nargs=2, metavar=("MODEL_A", "MODEL_B"),
                        help="two model.keras files (metrics.json beside each is not needed)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="folders with real/, fake/ and manifest.csv; the first one holds both classes")
    parser.add_argument("--shift", default=None, help="evaluation-only folder of real/<group>/ and fake/<group>/")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="comma-separated weights of MODEL_B in [0, 1]")
    args = parser.parse_args(argv)
    try:
        args.weights = sorted({float(value) for value in args.weights.split(",")})
    except ValueError:
        parser.error(f"--weights {args.weights!r}: expected comma-separated numbers")
    if not all(0.0 <= weight <= 1.0 for weight in args.weights):
        parser.error("--weights: every weight must be in [0, 1]")
    return args


@dataclass
class Ensemble:
    """Two Predictors behind the interface that `fakelib.predict.score_files` and `evaluate_groups` use:
    `prepare_inputs` gives each member its own inputs, `predict_inputs` the calibrated p_fake of the weighted
    logit, `input_thresholds` its threshold."""

    members: tuple
    weight: float
    scale: float = 1.0
    bias: float = 0.0
    threshold: float = 0.5

    def prepare_inputs(self, source) -> tuple:
        return tuple(member.prepare_inputs(source) for member in self.members)

    def mix(self, logits_a: np.ndarray, logits_b: np.ndarray) -> np.ndarray:
        """The ensemble's logit from its members' logits."""
        return (1 - self.weight) * logits_a + self.weight * logits_b

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """p_fake of ensemble logits under the ensemble's Platt scaling."""
        return 1 / (1 + np.exp(-(self.scale * logits + self.bias)))

    def predict_inputs(self, inputs: list[tuple], batch_size: int = 64) -> np.ndarray:
        a, b = (to_logit(member.predict_inputs([item[index] for item in inputs], batch_size))
                for index, member in enumerate(self.members))
        return self.calibrate(self.mix(a, b))

    def input_thresholds(self, inputs: list[tuple]) -> np.ndarray:
        """(n,) the ensemble's one threshold for every input (it has no small-image regime)."""
        return np.full(len(inputs), self.threshold)


def split_files(folders: list[Path]) -> dict[str, list[tuple[Path, str, int, int]]]:
    """split -> [(folder, relpath, label, folder index)] from each folder's manifest."""
    from fakelib.data import read_manifest_splits
    from fakelib.layout import dataset_files

    out: dict[str, list] = {"val": [], "test": []}
    for index, folder in enumerate(folders):
        splits = read_manifest_splits(folder)
        if not splits:
            raise ValueError(f"{folder}: no manifest.csv with a split column")
        for relpath, label in dataset_files(folder, require_both=index == 0):
            if splits.get(relpath) in out:
                out[splits[relpath]].append((folder, relpath, label, index))
    return out


def member_logits(members: tuple, rows: list[tuple[Path, str, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(2, n) logits of both members and an (n,) mask of files both could read."""
    from fakelib.predict import score_files

    logits = np.full((len(members), len(rows)), np.nan)
    for folder in dict.fromkeys(row[0] for row in rows):
        positions = [position for position, row in enumerate(rows) if row[0] == folder]
        for index, member in enumerate(members):
            probabilities, _, _ = score_files(member, folder, [rows[position][1] for position in positions])
            logits[index, positions] = to_logit(probabilities)
    return logits, ~np.isnan(logits).any(axis=0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC, or None when one class is missing."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def main(argv: list[str] | None = None) -> int:
    from fakelib.quiet import tensorflow_environment

    tensorflow_environment()  # before TensorFlow loads: oneDNN on where TensorFlow leaves it off
    args = parse_args(argv)
    from fakelib.data import groups_of
    from fakelib.metrics import binary_metrics, calibration_errors, choose_threshold, ece_floor, fit_platt
    from fakelib.predict import Predictor, evaluate_groups

    try:
        members = tuple(Predictor.from_path(path) for path in args.models)
        rows = split_files([Path(folder) for folder in args.data])
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    scored = {}
    for split, split_rows in rows.items():
        logits, usable = member_logits(members, split_rows)
        labels = np.array([row[2] for row in split_rows])
        first = np.array([row[3] == 0 for row in split_rows], dtype=bool)
        groups = groups_of([f"{row[0].name}/{row[1]}" for row in split_rows], several=True)
        scored[split] = (logits[:, usable], labels[usable], first[usable], groups[usable])

    def combined(split: str, weight: float) -> np.ndarray:
        return Ensemble(members, weight).mix(*scored[split][0])

    grid = [{"w_b": weight, "val_roc_auc": roc_auc(scored["val"][1], combined("val", weight)),
             "test_roc_auc": roc_auc(scored["test"][1], combined("test", weight))} for weight in args.weights]
    weight = max(grid, key=lambda row: (row["val_roc_auc"] or 0.0, -abs(row["w_b"] - 0.5)))["w_b"]
    val_logits, val_labels, val_first = combined("val", weight), scored["val"][1], scored["val"][2]
    scale, bias = fit_platt(val_labels[val_first], val_logits[val_first])
    ensemble = Ensemble(members, weight, scale, bias)
    ensemble.threshold = choose_threshold(val_labels, ensemble.calibrate(val_logits), scored["val"][3])
    test_probabilities, test_labels = ensemble.calibrate(combined("test", weight)), scored["test"][1]
    test = binary_metrics(test_labels, test_probabilities, ensemble.threshold)
    result: dict[str, Any] = {
        "models": [str(path) for path in args.models], "data": args.data, "shift_dir": args.shift,
        "n": {split: int(len(scored[split][1])) for split in scored}, "weights": grid,
        "chosen": {"w_b": weight, "calibration_scale": scale, "calibration_bias": bias,
                   "threshold": ensemble.threshold, "val_roc_auc": roc_auc(val_labels, val_logits),
                   **{f"test_{key}": test[key] for key in ("roc_auc", "average_precision", "f1", "precision",
                                                           "recall", "real_rate", "fake_rate", "confusion_matrix")},
                   "test_ece": calibration_errors(test_labels, test_probabilities)["ece"],
                   "test_ece_floor_mean": ece_floor(test_probabilities)["mean"]}}
    if args.shift:
        result["chosen"]["shift"] = evaluate_groups(ensemble, args.shift)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
