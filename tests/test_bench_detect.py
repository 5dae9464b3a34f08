"""benchmarks/bench_detect.py end to end on a tiny dataset laid out like faces-dev (manifest split), 1 epoch."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import load_benchmark, write_tiny_params
from PIL import Image

from fakelib.models import load_model

SPLIT_COUNTS = {"train": 12, "val": 6, "test": 6}


def load_bench():
    return load_benchmark("bench_detect")


def write_faces_dev_like(root: Path, size: int = 32) -> Path:
    """real/ and fake/ JPEGs plus manifest.csv with faces-dev's columns; fakes carry a 2-pixel checkerboard."""
    rng = np.random.default_rng(0)
    rows = []
    checker = (np.indices((size, size)).sum(axis=0) % 2 * 24 - 12)[..., None]
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        index = 0
        for split, count in SPLIT_COUNTS.items():
            for _ in range(count):
                pixels = rng.normal(128, 30, (size, size, 3)) + (checker if label == "fake" else 0)
                path = root / label / f"{label}{index:03d}.jpg"
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)
                data = path.read_bytes()
                rows.append({"relpath": f"{label}/{path.name}", "label": label, "source_path": f"src/{path.name}",
                             "sha256": hashlib.sha256(data).hexdigest(), "width": size, "height": size,
                             "bytes": len(data), "split": split})
                index += 1
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.slow
def test_bench_detect_trains_both_models_and_prints_one_json(tmp_path, capsys):
    data = write_faces_dev_like(tmp_path / "faces")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"image_size": 32}, "model": {"model": "npr", "conv_filters": [4, 8], "dense_units": [4]},
        "train": {"epochs": 1, "batch_size": 8, "patience": 0, "threads": 2}}))
    shift = write_shift_like(tmp_path / "shift")
    bench = load_bench()
    code = bench.main(["--data", str(data), "--out", str(tmp_path / "out"), "--params", str(params),
                       "--cache", str(tmp_path / "cache"), "--set", "jpeg_prob=0.5", "--shift", str(shift)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 1, lines[-1][:3000]
    report = json.loads(lines[0])
    assert report["dataset"]["split_source"] == "manifest"
    assert report["dataset"]["per_split"] == {split: {"real": n, "fake": n} for split, n in SPLIT_COUNTS.items()}
    default, spectrum = report["models"]["default"], report["models"]["spectrum"]
    assert default["model"] == "npr" and spectrum["model"] == "spectrum"
    for result in (default, spectrum):
        assert result["status"] == "ok" and result["n_test"] == 12 and result["epochs_run"] == 1
        for key in ("test_roc_auc", "test_average_precision", "test_f1", "test_f1_at_threshold", "threshold",
                    "val_roc_auc", "train_seconds", "param_count"):
            assert result[key] is not None, key
        assert result["config"]["jpeg_prob"] == 0.5  # --set reaches both models
        assert load_model(result["model_path"]).output_shape == (None, 1)
    assert (tmp_path / "out" / "default" / "model.keras").is_file()
    assert (tmp_path / "out" / "spectrum" / "model.keras").is_file()
    assert set(report["comparison"]["goal_met"]) >= {"test_roc_auc", "test_f1", "ahead_of_spectrum", "all",
                                                      "test_ece", "shift_real_kept", "shift_stylegan_caught"}
    for result in (default, spectrum):
        assert 0.05 <= result["threshold"] <= 0.95
        assert result["test_ece"] is not None and result["test_brier"] is not None
        groups = result["shift"]["groups"]
        assert set(groups) == {"real/camera-small", "fake/stylegan-png"}
        assert groups["real/camera-small"]["n"] == 4 and groups["fake/stylegan-png"]["n"] == 3
        assert 0 <= groups["real/camera-small"]["as_published_kept_real"] <= 1
        low, high = groups["real/camera-small"]["as_published_kept_real_ci95"]  # 4 faces: a wide interval
        assert low <= groups["real/camera-small"]["as_published_kept_real"] <= high and high - low > 0.3
        assert 0 <= groups["fake/stylegan-png"]["common_format_caught"] <= 1
        assert groups["fake/stylegan-png"]["as_published_roc_auc_vs_all_reals"] is not None
        assert result["shift"]["errors"] == ["as_published: real/camera-small/broken.jpg: truncated",
                                             "common_format: real/camera-small/broken.jpg: truncated"]
        # the test split again, as the files are (the same figures as the run's own) and as web copies
        web = result["web_test"]
        assert web["as_files"]["n"] == web["web"]["n"] == 12 and not web["errors"]
        assert web["as_files"]["roc_auc"] == pytest.approx(result["test_roc_auc"], abs=1e-6)
        assert web["threshold"] == pytest.approx(result["threshold"])
        assert web["web"]["real_rate"] is not None and web["web"]["ece"] is not None
        assert result["web_val"]["split"] == "val" and result["web_val"]["web"]["n"] == 12  # 6 real + 6 fake
    # --reuse reports the finished run instead of training it again; a changed configuration is trained anew.
    bench.main(["--data", str(data), "--out", str(tmp_path / "out"), "--params", str(params), "--models", "default",
                "--cache", str(tmp_path / "cache"), "--set", "jpeg_prob=0.5", "--reuse"])
    reused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"]["default"]
    assert reused["train_seconds"] == default["train_seconds"] and reused["test_roc_auc"] == default["test_roc_auc"]
    bench.main(["--data", str(data), "--out", str(tmp_path / "out"), "--params", str(params), "--models", "default",
                "--cache", str(tmp_path / "cache"), "--set", "jpeg_prob=0.4", "--reuse"])
    retrained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"]["default"]
    assert retrained["config"]["jpeg_prob"] == 0.4


def write_shift_like(root: Path) -> Path:
    """Two groups in other formats and sizes than training: small JPEG reals, larger PNG fakes, one broken file."""
    rng = np.random.default_rng(1)
    for group, count, size, suffix in (("real/camera-small", 4, 36, ".jpg"), ("fake/stylegan-png", 3, 48, ".png")):
        (root / group).mkdir(parents=True)
        for index in range(count):
            pixels = rng.normal(128, 30, (size + 6, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / group / f"{index}{suffix}")
    (root / "real/camera-small/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_a_web_copy_is_drawn_once_per_file_shrinks_and_never_up_samples():
    import io

    from fakelib.predict import WEB_SIDES, web_copy

    rng = np.random.default_rng(2)
    sides = set()
    for index in range(12):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (300, 256, 3), dtype=np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        copy = web_copy(data)
        assert copy == web_copy(data)  # the same file gets the same copy on every run
        image = Image.open(io.BytesIO(copy))
        assert image.format == "JPEG" and image.size[0] == image.size[1]
        assert WEB_SIDES[0] <= image.size[0] <= WEB_SIDES[1]
        sides.add(image.size[0])
    assert len(sides) > 6  # drawn, not fixed
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(web_copy(buffer.getvalue()))).size == (90, 90)  # smaller: its own side


def test_unknown_model_name_is_rejected(tmp_path):
    bench = load_bench()
    (tmp_path / "params.yaml").write_text("{}\n")
    args = bench.parse_args(["--data", str(tmp_path), "--out", str(tmp_path), "--params", str(tmp_path / "params.yaml"),
                             "--models", "default,resnet"])
    with pytest.raises(ValueError, match="resnet"):
        bench.configurations(args)


@pytest.mark.slow
def test_bench_detect_trains_the_trace_expert_and_reports_the_combined_detector(tmp_path, capsys):
    data = write_faces_dev_like(tmp_path / "faces")
    extra = tmp_path / "extra" / "real"
    extra.mkdir(parents=True)
    for index in range(4):  # an extra folder of reals: it joins the detector's data, never the expert's
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            extra / f"{index}.jpg")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"image_size": 32}, "model": {"model": "cnn", "conv_filters": [4, 8], "dense_units": [4]},
        "train": {"epochs": 1, "batch_size": 8, "patience": 0, "threads": 2}}))
    shift = write_shift_like(tmp_path / "shift")
    code = load_bench().main([
        "--data", str(data), str(extra.parent), "--out", str(tmp_path / "out"), "--params", str(params),
        "--cache", str(tmp_path / "cache"), "--models", "default,expert", "--shift", str(shift),
        "--expert-set", "image_size=48", "--expert-set", "conv_filters=[4, 8]", "--expert-set", "epochs=1",
        "--expert-set", "train_crop=32"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    models = report["models"]
    assert models["expert"]["model"] == "npr" and models["expert"]["config"]["image_size"] == 48
    assert models["expert"]["config"]["data_dir"] == str(data.resolve())  # the folder holding both classes only
    combined = models["combined"]
    assert combined["status"] == "ok" and combined["expert_image_size"] == 48
    assert combined["expert_view"] == "native" and combined["expert_data"] == [data.name]
    assert combined["train_seconds"] == pytest.approx(
        models["default"]["train_seconds"] + models["expert"]["train_seconds"] + combined["residual_train_seconds"],
        abs=0.02)  # the residual-statistics model is fitted while the members are combined
    assert combined["residual_file"] == "residual.npz" and (tmp_path / "out" / "combined" / "residual.npz").is_file()
    assert combined["n_test"] == models["default"]["n_test"] and combined["test_roc_auc"] is not None
    assert combined["shift"]["threshold"] == pytest.approx(combined["threshold"])
    assert set(combined["shift"]["groups"]) == {"real/camera-small", "fake/stylegan-png"}
    assert (tmp_path / "out" / "combined" / "expert.keras").is_file()
    assert report["comparison"]["goal_met"]["train_seconds"] == (combined["train_seconds"] <= 1800)


@pytest.mark.slow
def test_bench_detect_cuts_eye_squares_trains_the_eye_model_and_joins_it(tmp_path, capsys, fixed_landmarks):
    data = write_faces_dev_like(tmp_path / "faces")
    params = write_tiny_params(tmp_path / "params.yaml", model="cnn", batch_size=8)
    shift = write_shift_like(tmp_path / "shift")
    bench = load_bench()
    with pytest.raises(ValueError, match="add default,expert"):
        bench.configurations(bench.parse_args(["--data", str(data), "--out", str(tmp_path / "x"), "--models", "eye"]))
    code = bench.main([
        "--data", str(data), "--out", str(tmp_path / "out"), "--params", str(params),
        "--cache", str(tmp_path / "cache"), "--models", "default,expert,eye", "--shift", str(shift),
        "--expert-set", "image_size=48", "--expert-set", "conv_filters=[4, 8]", "--expert-set", "epochs=1",
        "--eye-set", "image_size=32", "--eye-set", "conv_filters=[4, 8]", "--eye-set", "epochs=1"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    models = report["models"]
    eye, combined = models["eye"], models["combined"]
    assert eye["config"]["data_dir"] == str(tmp_path / "out" / "eyes" / "0-faces") and "shift" not in eye
    assert eye["eye_skipped"] == {"faces": 0} and eye["eye_crop_seconds"] >= 0
    assert combined["eye_file"] == "eye.keras" and combined["model"].endswith("+ eye-region model")
    assert combined["train_seconds"] == pytest.approx(
        models["default"]["train_seconds"] + models["expert"]["train_seconds"] + eye["train_seconds"]
        + combined["residual_train_seconds"], abs=0.02)
    assert combined["shift"]["threshold"] == pytest.approx(combined["threshold"])
