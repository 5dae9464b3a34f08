"""Hardening of the data and model side (issue 13, cases 6, 7, 8 and 10-11 for prepare, evaluate, train, predict)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelib import data as datalib
from fakelib import images as imagelib


def _jpeg(seed: int, size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for index in range(3):
            (root / label / f"{label}{index}.jpg").write_bytes(_jpeg(index + (10 if label == "fake" else 0)))
    return root


def test_a_file_name_that_is_not_utf8_is_a_row_not_a_crash(folder, tmp_path):
    bad = os.fsdecode(os.fsencode(str(folder / "fake")) + b"/bad\xff.jpg")
    Path(bad).write_bytes(_jpeg(99))
    prepared = datalib.load_folder_images(folder, 32, cache_root=tmp_path / "cache")
    assert len(prepared.labels) == 7  # the image itself is fine and is used
    assert prepared.report["escaped_names"] == ["fake/bad\\xff.jpg"]
    assert "fake/bad\\xff.jpg" in prepared.relpaths.tolist()


def test_a_file_above_the_size_limit_is_skipped_before_it_is_read(folder, tmp_path, monkeypatch):
    (folder / "fake" / "huge.jpg").write_bytes(_jpeg(7, size=200))
    monkeypatch.setenv("FAKELIB_MAX_IMAGE_BYTES", "5000")
    prepared = datalib.load_folder_images(folder, 32, cache_root=tmp_path / "cache")
    reasons = {item["path"]: item["reason"] for item in prepared.report["skipped"]}
    assert reasons["fake/huge.jpg"].startswith("too_large")
    with pytest.raises(imagelib.ImageError, match="byte limit"):
        imagelib.read_image_bytes(folder / "fake" / "huge.jpg")


def test_a_skipped_file_that_is_repaired_with_the_same_size_and_mtime_is_decoded_again(folder, tmp_path):
    path = folder / "real" / "real0.jpg"
    good = path.read_bytes()
    stat = path.stat()
    path.write_bytes(b"\0" * len(good))  # same size, unreadable as an image
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    first = datalib.load_folder_images(folder, 32, cache_root=tmp_path / "cache")
    assert first.report["n_skipped"] == 1
    path.write_bytes(good)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as when it was skipped
    second = datalib.load_folder_images(folder, 32, cache_root=tmp_path / "cache")
    assert second.report["n_skipped"] == 0 and len(second.labels) == 6


def test_train_into_an_existing_file_is_one_line(tmp_path, tiny_config):
    from fakelib.train import run_experiment

    target = tmp_path / "taken"
    target.write_text("mine")
    with pytest.raises(ValueError, match="is an existing file"):
        run_experiment(tiny_config, target, verbose=0)
    assert target.read_text() == "mine"


def test_a_model_path_that_is_a_folder_or_not_an_archive_says_so(tmp_path):
    from fakelib.models import load_model

    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a Keras .keras archive") as error:
        load_model(text)
    assert len(str(error.value)) < 200


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -0.1, 1.5])
def test_a_threshold_that_is_not_a_probability_is_refused(trained_experiment, threshold):
    from fakelib.predict import Predictor

    with pytest.raises(ValueError, match="threshold"):
        Predictor.from_path(trained_experiment / "model.keras", threshold)
