"""The dataset bias audit on generated folders: a format shortcut is caught and named, an equalized set is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelib import audit
from fakelib.__main__ import main


def face_like(rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A smooth random colour image (both classes drawn the same way, so only the encoding can differ)."""
    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def write_dataset(root: Path, real_format: str, fake_format: str, count: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, file_format in (("real", real_format), ("fake", fake_format)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            suffix = ".jpg" if file_format == "JPEG" else ".png"
            face_like(rng).save(root / name / f"{index:03d}{suffix}", format=file_format, quality=90)
    return root


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_recovered_from_the_quantization_tables(tmp_path, quality):
    path = tmp_path / "image.jpg"
    face_like(np.random.default_rng(0)).save(path, quality=quality)
    with Image.open(path) as image:
        assert audit.estimate_jpeg_quality(image.quantization) == (quality, True)


def test_non_standard_tables_get_the_nearest_quality():
    tables = {0: list(audit.ijg_table(audit.STANDARD_LUMA, 80) + 1), 1: list(audit.ijg_table(audit.STANDARD_CHROMA, 80))}
    quality, exact = audit.estimate_jpeg_quality(tables)
    assert not exact and 76 <= quality <= 80


def test_metadata_of_gray_and_broken_files(tmp_path):
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / "gray.png")
    gray_rgb = np.repeat(np.random.default_rng(0).uniform(0, 255, (24, 24, 1)), 3, axis=2).astype(np.uint8)
    Image.fromarray(gray_rgb).save(tmp_path / "gray_rgb.jpg", quality=95)
    face_like(np.random.default_rng(1)).save(tmp_path / "colour.jpg", quality=95)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    gray = audit.file_metadata(tmp_path / "gray.png")
    assert (gray["format"], gray["width"], gray["height"], gray["grayscale"], gray["jpeg_quality"]) == ("PNG", 30, 20, 1, -1)
    assert audit.file_metadata(tmp_path / "gray_rgb.jpg")["grayscale"] == 1
    colour = audit.file_metadata(tmp_path / "colour.jpg")
    assert (colour["grayscale"], colour["jpeg_quality"], colour["subsampling"]) == (0, 95, "4:2:0")
    assert audit.file_metadata(tmp_path / "broken.jpg")["error"]


def test_format_shortcut_fires_the_warning_and_names_the_feature(tmp_path):
    root = write_dataset(tmp_path / "biased", real_format="JPEG", fake_format="PNG")
    (root / "fake" / "broken.png").write_bytes(b"\x89PNG truncated")
    report = audit.audit_dataset(root, out_dir=tmp_path / "out")
    assert report["roc_auc"] > 0.95
    assert report["top_feature"] in {"format", "jpeg_quality", "subsampling", "ijg_tables"}
    assert report["warning"] and report["top_feature"] in report["warning"]
    assert report["per_class"]["real"]["formats"] == {"JPEG": 1.0}
    assert report["per_class"]["fake"]["formats"] == {"PNG": 1.0}
    assert report["n_unreadable"] == 1 and report["unreadable"][0]["relpath"] == "fake/broken.png"
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert written["roc_auc"] == report["roc_auc"] and (tmp_path / "out" / "audit.png").stat().st_size > 0


def test_equalized_dataset_gives_no_warning(tmp_path, capsys):
    root = write_dataset(tmp_path / "equal", real_format="JPEG", fake_format="JPEG")
    assert main(["audit", str(root), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert report["warning"] is None and report["roc_auc"] < 0.7
    assert report["per_class"]["fake"]["jpeg_quality"]["values"] == {"90": 1.0}
    assert "no warning" in capsys.readouterr().out


def test_missing_class_folder_is_a_one_line_cli_error(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "fake/" in capsys.readouterr().err
