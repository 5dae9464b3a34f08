"""benchmarks/bench_ensemble.py on a tiny faces-dev-like folder with two members of different input sides."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark
from PIL import Image
from sklearn.metrics import roc_auc_score
from test_bench_detect import write_faces_dev_like, write_shift_like

from fakelib.models import create_model, set_calibration
from fakelib.predict import Predictor


def load_bench():
    return load_benchmark("bench_ensemble")


def save_member(folder: Path, name: str, size: int, seed: int) -> Path:
    """An untrained model whose logits still differ from face to face, spread out by a steep calibration."""
    import keras

    keras.utils.set_random_seed(seed)
    model = create_model(name, size, conv_filters=[4, 8], dense_units=[4])
    set_calibration(model, 40.0, 0.0)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    return folder / "model.keras"


def test_bench_ensemble_chooses_on_validation_and_scores_test_and_shift(tmp_path, capsys):
    data = write_faces_dev_like(tmp_path / "faces")
    shift = write_shift_like(tmp_path / "shift")
    model_a = save_member(tmp_path / "a", "cnn", 32, seed=1)
    model_b = save_member(tmp_path / "b", "npr", 48, seed=2)  # a larger input: the 32 px faces are padded for it
    bench = load_bench()
    code = bench.main(["--models", str(model_a), str(model_b), "--data", str(data), "--shift", str(shift),
                       "--weights", "0,0.5,1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 1
    report = json.loads(lines[0])
    assert report["n"] == {"val": 12, "test": 12}
    assert [row["w_b"] for row in report["weights"]] == [0.0, 0.5, 1.0]

    # Weight 0 is member A alone: its validation ROC-AUC equals A's own, scored file by file through Predictor.
    val = [row for row in csv.DictReader((data / "manifest.csv").open()) if row["split"] == "val"]
    member = Predictor.from_path(model_a)
    alone = [member.predict_file(data / row["relpath"])["p_fake"] for row in val]
    expected = roc_auc_score([row["label"] == "fake" for row in val], alone)
    assert report["weights"][0]["val_roc_auc"] == pytest.approx(expected, abs=1e-9)

    chosen = report["chosen"]
    best = max(row["val_roc_auc"] for row in report["weights"])
    assert [row["val_roc_auc"] for row in report["weights"] if row["w_b"] == chosen["w_b"]] == [best]
    assert 0.05 <= chosen["threshold"] <= 0.95 and chosen["calibration_scale"] > 0
    assert sum(map(sum, chosen["test_confusion_matrix"])) == 12
    groups = chosen["shift"]["groups"]
    assert set(groups) == {"real/camera-small", "fake/stylegan-png"}
    assert groups["real/camera-small"]["n"] == 4 and 0 <= groups["fake/stylegan-png"]["as_published_caught"] <= 1
    assert chosen["shift"]["errors"] == ["as_published: real/camera-small/broken.jpg: truncated",
                                         "common_format: real/camera-small/broken.jpg: truncated"]


def test_ensemble_logit_is_the_weighted_mean_of_the_members(tmp_path):
    bench = load_bench()
    members = tuple(Predictor.from_path(save_member(tmp_path / name, "cnn", size, seed))
                    for name, size, seed in (("a", 32, 1), ("b", 48, 2)))
    image = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    views = [bench.Ensemble(members, 0.0).prepare_inputs(image.read_bytes())]
    assert [view.shape for view, _ in views[0]] == [(32, 32, 3), (48, 48, 3)]  # each member's own input side
    a, b = (bench.to_logit(member.predict_inputs([views[0][index]])) for index, member in enumerate(members))
    for weight in (0.0, 0.3, 1.0):
        ensemble = bench.Ensemble(members, weight, scale=2.0, bias=-0.5)
        z = 2.0 * ((1 - weight) * a + weight * b) - 0.5
        np.testing.assert_allclose(ensemble.predict_inputs(views), 1 / (1 + np.exp(-z)), rtol=1e-6)


def test_bad_weights_and_folders_without_a_split_are_one_line_errors(tmp_path, capsys):
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "a", "b", "--data", "x", "--weights", "0,2"])
    assert "every weight must be in [0, 1]" in capsys.readouterr().err
    model = save_member(tmp_path / "a", "cnn", 32, seed=1)
    (tmp_path / "faces" / "real").mkdir(parents=True)
    (tmp_path / "faces" / "fake").mkdir()
    assert bench.main(["--models", str(model), str(model), "--data", str(tmp_path / "faces")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: {tmp_path / 'faces'}: no manifest.csv with a split column"]
