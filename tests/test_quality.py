"""fakelib.quality: pointing game, mask ROC-AUC, deletion test, randomization check, data loading, and the CLI."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import keras
import numpy as np
import pytest

from fakelib import quality
from fakelib.__main__ import main
from fakelib.models import create_model, load_model


@pytest.fixture(scope="module")
def demo_dir(explain_demo_dir: Path) -> Path:
    return explain_demo_dir


@pytest.fixture(scope="module")
def demo_model(demo_dir: Path) -> keras.Model:
    return load_model(demo_dir / "model.keras")


# ---------------------------------------------------------------------------------------------- metrics


def test_pointing_game_checks_the_maximum_against_the_mask():
    heatmaps = np.zeros((2, 8, 8))
    heatmaps[0, 2, 3] = heatmaps[1, 6, 6] = 1.0
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 1:4, 1:4] = True
    np.testing.assert_array_equal(quality.pointing_game(heatmaps, masks), [True, False])


def test_mask_auc_is_one_for_the_mask_itself_zero_inverted_and_nan_without_mask():
    masks = np.zeros((3, 8, 8), bool)
    masks[:2, :3] = True
    heatmaps = np.stack([masks[0].astype(float), 1.0 - masks[1], np.ones((8, 8))])
    scores = quality.mask_auc(heatmaps, masks)
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(0.0) and np.isnan(scores[2])


def test_deletion_masks_take_the_hottest_pixels_and_as_many_random_ones():
    heatmaps = np.zeros((2, 10, 10))
    heatmaps[:, :2, :5] = 1.0  # exactly 10 hot pixels
    top, random = quality.deletion_masks(heatmaps, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(top, heatmaps > 0)
    assert random.sum(axis=(1, 2)).tolist() == [10, 10]
    ties_a, _ = quality.deletion_masks(np.zeros((1, 10, 10)), 0.2, np.random.default_rng(1))
    assert ties_a.sum() == 20 and not ties_a[0, :2].all(), "ties are broken at random, not by position"


def test_fills_and_pixel_deletion():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    mean = quality.fill_image(image, "mean")
    np.testing.assert_allclose(mean[3, 4], image.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    blurred = quality.fill_image(image, "blur")
    assert blurred.shape == image.shape and blurred.std() < image.std()
    mask = np.zeros((1, 16, 16), bool)
    mask[0, 0, 0] = True
    deleted = quality.delete_pixels(image[None], mask, mean[None])
    np.testing.assert_allclose(deleted[0, 0, 0], mean[0, 0])
    np.testing.assert_array_equal(deleted[0, 1:], image[1:])
    with pytest.raises(ValueError, match="blur, mean"):
        quality.fill_image(image, "noise")


def test_rank_correlation():
    rng = np.random.default_rng(0)
    first = rng.random((2, 6, 6))
    second = np.stack([first[0] * 3 + 1, -first[1]])
    np.testing.assert_allclose(quality.rank_correlation(first, second), [1.0, -1.0])
    assert np.isnan(quality.rank_correlation(first[:1], np.ones((1, 6, 6))))[0]


def test_randomized_copy_keeps_the_architecture_and_redraws_the_weights():
    model = create_model("cnn", 32, conv_filters=[4, 8], dense_units=[4])
    first, second = quality.randomized_copy(model, seed=3), quality.randomized_copy(model, seed=3)
    assert [layer.name for layer in first.layers] == [layer.name for layer in model.layers]
    original, redrawn = model.get_layer("conv2").kernel.numpy(), first.get_layer("conv2").kernel.numpy()
    assert original.shape == redrawn.shape and not np.allclose(original, redrawn)
    np.testing.assert_array_equal(redrawn, second.get_layer("conv2").kernel.numpy())


def test_json_ready_turns_nan_into_null_and_numpy_into_plain_numbers():
    value = quality.json_ready({"a": np.float32(0.5), "b": float("nan"), "c": [np.int64(3), np.inf], "d": None})
    assert value == {"a": 0.5, "b": None, "c": [3, None], "d": None}
    assert type(value["a"]) is float and type(value["c"][0]) is int


# ---------------------------------------------------------------------------------------------- data


def test_load_sample_reads_masks_prefers_the_test_split_and_reports_bad_files(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir / "data", data)
    sample = quality.load_sample(data, 32, split="test")
    assert sample.images.shape[1:] == (32, 32, 3) and sample.masks.shape[1:] == (32, 32)
    np.testing.assert_array_equal(sample.has_mask, sample.labels == 1)
    assert sample.masks[sample.has_mask].any(axis=(1, 2)).all()
    assert all(relpath in {row.split(",")[0] for row in (data / "manifest.csv").read_text().splitlines()
                           if ",test," in row} for relpath in sample.relpaths)
    broken = sample.relpaths[0]
    (data / broken).write_bytes(b"definitely not a jpeg")
    again = quality.load_sample(data, 32, split="test")
    assert again.errors == [{"relpath": broken, "error": again.errors[0]["error"]}]
    assert again.errors[0]["error"].startswith("not_image")
    assert len(again.labels) == len(sample.labels) - 1


def test_load_sample_without_manifest_finds_masks_by_stem(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir / "data", data)
    (data / "manifest.csv").unlink()
    sample = quality.load_sample(data, 48, per_class=3, labels=("fake",), require_mask=True)
    assert len(sample.labels) == 3 and sample.has_mask.all() and (sample.labels == 1).all()


# ---------------------------------------------------------------------------------------------- trained model


@pytest.mark.slow
def test_pointing_game_on_demo_fakes_beats_a_random_heatmap_for_the_trained_model(demo_model, demo_dir):
    report = quality.evaluate_folder(demo_model, demo_dir / "data", ["gradcam", "layercam"], limit=30, split=None,
                                     seed=0)
    assert report["n_images"] == 30
    for method, per_layer in report["methods"].items():
        baseline = per_layer["conv1"]["pointing_game_random"]
        assert baseline == pytest.approx(report["mask_fraction"]) and baseline < 0.1
        pointing = [figures["pointing_game"] for figures in per_layer.values()]
        assert np.mean(pointing) > 3 * baseline, (method, pointing, baseline)
        assert max(figures["mask_auc"] for figures in per_layer.values()) > 0.6, method
        for figures in per_layer.values():
            assert -1.0 <= figures["sanity_rank_correlation"] < 0.9
            assert 0.0 <= figures["deletion_win_rate"] <= 1.0
            # the report's pass/fail reads the win rate: it exists whenever there is an image, while the ratio is
            # null when scattered random deletion raises the fake logit, as it does for this model
            assert figures["deletion_win_rate"] is not None
            assert figures["deletion_gain"] == pytest.approx(
                figures["deletion_drop_top"] - figures["deletion_drop_random"])


@pytest.mark.slow
def test_cli_prints_the_quality_figures_as_json(demo_dir):
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = main(["explain-quality", "--model", str(demo_dir / "model.keras"), "--methods", "gradcam,hirescam",
                       "--limit", "4", "--split", "", str(demo_dir / "data")])
    assert status == 0
    report = json.loads(stdout.getvalue(), parse_constant=pytest.fail)  # NaN would be a parse constant
    assert report["model"] == str(demo_dir / "model.keras")
    assert set(report["methods"]) == {"gradcam", "hirescam"}
    assert set(report["methods"]["gradcam"]) == {"conv1", "conv2", "conv3"}
    assert report["n_images"] == 4 and report["errors"] == []
    expected = {"pointing_game", "pointing_game_random", "mask_auc", "deletion_drop_top", "deletion_drop_random",
                "deletion_ratio", "deletion_gain", "deletion_win_rate", "sanity_rank_correlation"}
    assert set(report["methods"]["hirescam"]["conv2"]) == expected


def test_cli_errors_are_one_line(demo_dir, tmp_path, capsys):
    assert main(["explain-quality", "--model", str(tmp_path / "missing.keras"), str(demo_dir / "data")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["explain-quality", "--model", str(demo_dir / "model.keras"), "--methods", "magic",
                 str(demo_dir / "data")]) == 2
    assert "unknown CAM method 'magic'" in capsys.readouterr().err
    (tmp_path / "real").mkdir()
    assert main(["explain-quality", "--model", str(demo_dir / "model.keras"), str(tmp_path)]) == 2
    assert "ground-truth masks" in capsys.readouterr().err
