"""Tests for fakelib.demo: the render contract, locality of artifacts, class statistics, files on disk, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from scipy import ndimage

from fakelib import demo
from fakelib.__main__ import main
from fakelib.regions import LANDMARKS


def _render_pair(index: int, size: int, strength: float = 1.0, seed: int = 1):
    """The same generator state rendered as real and as fake: same face, camera and noise."""
    real, _, _ = demo.render_face(demo.image_rng(seed, "fake", index), size, False, strength)
    fake, mask, kinds = demo.render_face(demo.image_rng(seed, "fake", index), size, True, strength)
    return real, fake, mask, kinds


def _read_manifest(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tree_bytes(out_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out_dir)): path.read_bytes() for path in sorted(out_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("demo") / "data"
    return out_dir, demo.generate(out_dir, count=40, size=48, seed=3, workers=1)


# ---------------------------------------------------------------------------------------------------------------
# render_face


def test_ellipse_bounding_box_loses_no_coverage():
    grid = demo.geometry.pixel_grid(96)
    rng = np.random.default_rng(0)
    for _ in range(300):
        centre, radii = rng.uniform(-0.1, 1.1, 2), rng.uniform(0.003, 0.3, 2)
        angle, bend, soft = rng.uniform(-3, 3), rng.uniform(-0.05, 0.05), rng.uniform(0.5, 8)
        radius = demo.geometry.ellipse_radius(grid, centre, radii, angle, bend)
        full = np.clip((1 - radius) / np.float32(soft / (96 * min(radii))) + 0.5, 0, 1)
        assert np.array_equal(full, demo.geometry.soft_ellipse(grid, centre, radii, angle, bend, soft))


@pytest.mark.parametrize("size", [32, 96])
def test_render_face_contract(size):
    for index in range(6):
        image, mask, kinds = demo.render_face(demo.image_rng(0, "real", index), size, False, 1.0)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert mask is None and kinds == []
        image, mask, kinds = demo.render_face(demo.image_rng(0, "fake", index), size, True, 1.0)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert mask.shape == (size, size) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        assert 1 <= len(kinds) <= 3 and set(kinds) <= set(demo.ARTIFACTS)


def test_faces_sit_on_the_ffhq_landmarks():
    for index in range(20):
        face = demo.sample_face(demo.image_rng(0, "real", index), 128)
        for centre, name in zip(face.eyes.centres, ("left_eye", "right_eye")):
            assert np.allclose(centre, LANDMARKS[name], atol=0.012)
        assert np.allclose(face.mouth.centre, LANDMARKS["mouth"], atol=0.012)


def test_artifacts_change_only_pixels_near_their_mask():
    # Same generator state: outside the mask (grown by the camera blur's reach) real and fake are identical.
    for index in range(40):
        real, fake, mask, _ = _render_pair(index, 64)
        outside = ~ndimage.binary_dilation(mask > 0, iterations=4)
        assert np.array_equal(real[outside], fake[outside]), index
        difference = np.abs(real.astype(int) - fake.astype(int)).max(axis=-1)
        assert difference[mask > 0].mean() > 5, index


@pytest.mark.parametrize("kind, landmark, tolerance", [
    ("iris_mismatch", ("left_eye", "right_eye"), 0.03), ("teeth_smear", ("mouth",), 0.05),
])
def test_feature_artifacts_sit_on_their_landmark(monkeypatch, kind, landmark, tolerance):
    monkeypatch.setattr(demo.artifacts, "choose_artifacts", lambda rng, face: [kind])
    checked = 0
    for index in range(30):
        face = demo.sample_face(demo.image_rng(2, "fake", index).spawn(2)[0], 64)
        if kind == "teeth_smear" and not face.mouth.open:
            continue
        _, mask, _ = demo.render_face(demo.image_rng(2, "fake", index), 64, True, 1.0)
        rows, cols = np.nonzero(mask)
        centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5]) / 64
        assert min(np.hypot(*(centroid - LANDMARKS[name])) for name in landmark) < tolerance
        checked += 1
    assert checked >= 5


def test_strength_scales_the_artifacts():
    for index in range(12):
        real, faint, mask, _ = _render_pair(index, 64, strength=0.0)
        assert np.array_equal(real, faint), "strength 0 leaves the fake identical to its real twin"
        inside = mask > 0
        changes = []
        for strength in (0.3, 1.0):
            real, fake, _, _ = _render_pair(index, 64, strength=strength)
            changes.append(np.abs(real.astype(int) - fake.astype(int))[inside].mean())
        assert changes[0] < changes[1], index


def test_artifacts_keep_global_colour_statistics():
    # ~200 images: twin pairs isolate what the artifacts alone do to per-channel means and spreads.
    reals, fakes, fractions = [], [], []
    for index in range(100):
        real, fake, mask, _ = _render_pair(index, 64)
        reals.append(real)
        fakes.append(fake)
        fractions.append(np.count_nonzero(mask) / mask.size)
    reals, fakes = np.stack(reals).astype(float), np.stack(fakes).astype(float)
    assert np.abs(reals.mean(axis=(0, 1, 2)) - fakes.mean(axis=(0, 1, 2))).max() < 1.0
    assert np.abs(reals.std(axis=(0, 1, 2)) - fakes.std(axis=(0, 1, 2))).max() < 1.0
    assert 0.01 <= np.mean(fractions) <= 0.2
    assert 0 < min(fractions) and max(fractions) <= 0.2


def test_both_classes_share_encoding_size_and_colour_statistics(tmp_path):
    out_dir = tmp_path / "data"
    demo.generate(out_dir, count=300, size=32, seed=6, workers=1)
    pixels, encodings = {"real": [], "fake": []}, {"real": set(), "fake": set()}
    for row in _read_manifest(out_dir):
        with Image.open(out_dir / row["relpath"]) as image:
            assert image.format == "JPEG" and image.size == (32, 32)
            tables = tuple(tuple(table) for table in image.quantization.values())
            encodings[row["label"]].add((tables, JpegImagePlugin.get_sampling(image)))
            pixels[row["label"]].append(np.asarray(image, dtype=float))
    assert encodings["real"] == encodings["fake"] and len(encodings["real"]) == 1
    means = {label: np.stack(images).mean(axis=(0, 1, 2)) for label, images in pixels.items()}
    spreads = {label: np.stack(images).std(axis=(0, 1, 2)) for label, images in pixels.items()}
    # Independent faces per class, so sampling noise remains (standard error ~3 levels at 150 images per class).
    assert np.abs(means["real"] - means["fake"]).max() < 8
    assert np.abs(spreads["real"] - spreads["fake"]).max() < 8


# ---------------------------------------------------------------------------------------------------------------
# generate: files, manifest, determinism, atomicity


def test_generate_writes_dataset_and_manifest(small_dataset):
    out_dir, summary = small_dataset
    rows = _read_manifest(out_dir)
    assert list(rows[0])[:6] == ["relpath", "label", "split", "artifacts", "mask_relpath", "seed"]
    assert summary["real"] == summary["fake"] == 20 and summary["count"] == len(rows) == 40
    for label in demo.LABELS:
        splits = [row["split"] for row in rows if row["label"] == label]
        assert (splits.count("train"), splits.count("val"), splits.count("test")) == (14, 3, 3)
    for row in rows:
        assert (out_dir / row["relpath"]).is_file() and row["seed"] == "3"
        if row["label"] == "real":
            assert row["artifacts"] == row["mask_relpath"] == ""
            continue
        assert set(row["artifacts"].split(";")) <= set(demo.ARTIFACTS)
        assert Path(row["mask_relpath"]).stem == Path(row["relpath"]).stem
        with Image.open(out_dir / row["mask_relpath"]) as mask:
            assert mask.mode == "L" and mask.size == (48, 48)
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert sorted(path.name for path in out_dir.iterdir()) == [".fakelib-demo.json", "fake", "manifest.csv", "masks", "real"]


def test_same_seed_same_bytes_for_any_worker_count(small_dataset, tmp_path):
    out_dir, _ = small_dataset
    demo.generate(tmp_path / "again", count=40, size=48, seed=3, workers=2)
    assert _tree_bytes(tmp_path / "again") == _tree_bytes(out_dir)
    demo.generate(tmp_path / "other", count=40, size=48, seed=4, workers=1)
    assert _tree_bytes(tmp_path / "other")["real/real_000000.jpg"] != _tree_bytes(out_dir)["real/real_000000.jpg"]


def test_rerun_replaces_earlier_files(tmp_path):
    demo.generate(tmp_path, count=10, size=32, workers=1)
    demo.generate(tmp_path, count=4, size=32, workers=1)
    (tmp_path / "real" / "mine.jpg").write_bytes(b"not ours")  # files the generator did not write are kept
    demo.generate(tmp_path, count=4, size=32, workers=1)
    assert len(_read_manifest(tmp_path)) == 4
    assert sorted(path.name for path in (tmp_path / "real").iterdir()) == ["mine.jpg", "real_000000.jpg",
                                                                         "real_000001.jpg"]
    assert len(list((tmp_path / "masks").iterdir())) == 2


def test_a_failed_run_leaves_no_manifest(tmp_path, monkeypatch):
    demo.generate(tmp_path, count=4, size=32, workers=1)

    def broken(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(demo.dataset, "render_face", broken)
    with pytest.raises(RuntimeError):
        demo.generate(tmp_path, count=4, size=32, workers=1)
    assert not (tmp_path / "manifest.csv").exists()


# ---------------------------------------------------------------------------------------------------------------
# arguments and command line


@pytest.mark.parametrize("arguments, name, allowed", [
    ({"count": 1}, "count", ">= 2"), ({"size": 31}, "size", "32..1024"), ({"size": 1025}, "size", "32..1024"),
    ({"strength": -0.1}, "strength", "[0.0, 1.0]"), ({"strength": 1.5}, "strength", "[0.0, 1.0]"),
    ({"strength": math.nan}, "strength", "[0.0, 1.0]"), ({"seed": -1}, "seed", ">= 0"),
    ({"workers": -2}, "workers", ">= 0"), ({"jpeg_quality": 0}, "jpeg_quality", "1..95"),
])
def test_invalid_arguments_name_the_argument_and_range(tmp_path, arguments, name, allowed):
    with pytest.raises(ValueError) as error:
        demo.generate(tmp_path / "never", **arguments)
    message = str(error.value)
    assert message.startswith(name) and allowed in message and "\n" not in message
    assert not (tmp_path / "never").exists()


def test_cli_prints_one_json_line(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "--count", "4", "--size", "32", "--seed", "5",
                   "--strength", "0.5", "--workers", "1", "--jpeg-quality", "85"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and len(lines) == 1
    summary = json.loads(lines[0])
    assert (summary["count"], summary["size"], summary["seed"], summary["strength"]) == (4, 32, 5, 0.5)
    assert summary["jpeg_quality"] == 85


def test_cli_rejects_bad_size_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "8"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("fakelib demo: error: size = 8 is not allowed; expected an integer 32..1024") and "\n" not in error
