"""fakelib.explain and fakelib.overlay: CAM methods against tf-keras-vis (the oracle), one pass against per-layer
computation, saved/loaded and nested models, overlay figures, and a smoke test of notebooks/03_explain.ipynb.

The tiny trained demo detector comes from the session fixture `explain_demo_dir` in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fakelib import explain, overlay
from fakelib.models import conv_layer_names, create_model, load_model


@pytest.fixture(scope="session")
def tiny_model() -> keras.Model:
    """A just-trained (one epoch on noise) 32 px model with batch norm: the path a fresh model takes."""
    keras.utils.set_random_seed(1)
    model = create_model("cnn", 32, conv_filters=[4, 8, 8], dense_units=[8])
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(images, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    return model


@pytest.fixture(scope="session")
def pixels() -> np.ndarray:
    """(4, 32, 32, 3) uint8 images with some structure (gradients plus noise)."""
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 255, 32)[None, :, None, None]
    return np.clip(ramp + rng.normal(0, 60, (4, 32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def demo_dir(explain_demo_dir: Path) -> Path:
    return explain_demo_dir


# ---------------------------------------------------------------------------------------------- registry, shapes


def test_registry_lists_methods_and_rejects_unknown_names():
    assert explain.list_methods() == ["gradcam", "gradcam++", "layercam", "hirescam"]
    with pytest.raises(ValueError, match="available: gradcam, gradcam\\+\\+, layercam, hirescam"):
        explain.get_method("scorecam")


@pytest.mark.parametrize("method", explain.list_methods())
def test_heatmaps_are_input_sized_float32_in_unit_range(tiny_model, pixels, method):
    result = explain.compute_cams(tiny_model, pixels, method)
    assert result.layers == conv_layer_names(tiny_model) == ["conv1", "conv2", "conv3"]
    for maps in result.heatmaps.values():
        assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
        assert maps.min() >= 0.0 and maps.max() <= 1.0
    expected = np.asarray(tiny_model(pixels.astype("float32"), training=False)).ravel()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    assert result.method == method


def test_single_image_gets_a_batch_axis_and_layers_come_in_forward_order(tiny_model, pixels):
    result = explain.compute_cams(tiny_model, pixels[0], layers=["conv3", "conv1"])
    assert result.layers == ["conv1", "conv3"]
    assert result.heatmaps["conv1"].shape == (1, 32, 32)
    assert set(result.image(0)) == {"conv1", "conv3"}


def test_bad_inputs_raise_clear_errors(tiny_model, pixels):
    with pytest.raises(ValueError, match="unknown conv layer.*available: conv1, conv2, conv3"):
        explain.compute_cams(tiny_model, pixels, layers=["dense1"])
    with pytest.raises(ValueError, match=r"\(batch, 32, 32, 3\).*load_images"):
        explain.compute_cams(tiny_model, np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown target"):
        explain.compute_cams(tiny_model, pixels, target="both")


def test_upsampling_matches_scipy_zoom_order_1():
    from scipy.ndimage import zoom

    maps = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(explain.upsample(maps, 32), zoom(maps, (1, 32 / 5, 32 / 7), order=1), atol=1e-5)


# ---------------------------------------------------------------------------------------------- oracle and reference


def _tf_keras_vis(model, method: str, images: np.ndarray, layer: str) -> np.ndarray:
    """tf-keras-vis's map for `layer`, explaining the logit of p_fake (its recommended ReplaceToLinear)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    visualizer = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam}[method]
    return visualizer(model, model_modifier=ReplaceToLinear(), clone=True)(
        lambda output: output[:, 0], images.astype("float32"), penultimate_layer=layer)


# Grad-CAM++ divides by 2 g^2 + g^3 sum(A), which nears zero for some channels; rounding differences between
# two float32 implementations are amplified there, hence its looser tolerance.
@pytest.mark.parametrize("method,tolerance", [("gradcam", 1e-4), ("layercam", 1e-4), ("gradcam++", 2e-3)])
def test_maps_match_tf_keras_vis_for_every_layer(tiny_model, pixels, method, tolerance):
    result = explain.compute_cams(tiny_model, pixels, method)
    for layer in result.layers:
        reference = _tf_keras_vis(tiny_model, method, pixels, layer)
        np.testing.assert_allclose(result.heatmaps[layer], reference, atol=tolerance, err_msg=f"{method} {layer}")


@pytest.mark.parametrize("method", explain.list_methods())
def test_one_pass_equals_per_layer_computation(tiny_model, pixels, method):
    one_pass = explain.compute_cams(tiny_model, pixels, method)
    per_layer = explain.compute_cams_per_layer(tiny_model, pixels, method)
    for layer in one_pass.layers:
        np.testing.assert_allclose(one_pass.heatmaps[layer], per_layer.heatmaps[layer], atol=1e-5)


def test_a_two_stream_model_is_explained_in_both_streams_in_one_pass(pixels):
    """A branched graph (`two_stream`: content and trace streams side by side) gives a map for every conv layer of
    both streams, each equal to its own per-layer computation and at the input's resolution."""
    keras.utils.set_random_seed(1)
    model = create_model("two_stream", 32, conv_filters=[4, 8], dense_units=[8])
    one_pass = explain.compute_cams(model, pixels, "gradcam")
    assert set(one_pass.layers) == {"content_conv1", "content_conv2", "trace_conv1", "trace_conv2"}
    per_layer = explain.compute_cams_per_layer(model, pixels, "gradcam")
    for layer in one_pass.layers:
        assert one_pass.heatmaps[layer].shape == (4, 32, 32)
        np.testing.assert_allclose(one_pass.heatmaps[layer], per_layer.heatmaps[layer], atol=1e-5)


def test_an_ensemble_explains_each_member_as_the_member_explains_itself(tiny_model, pixels):
    """`models.average_members`: the ensemble's logit is the members' mean, so a member's layer gets the member's
    own map (its gradient halved, the same once normalized), all members' layers in one pass."""
    from fakelib.models import average_members

    keras.utils.set_random_seed(2)
    other = create_model("cnn", 32, conv_filters=[4, 8, 8], dense_units=[8])
    pair = average_members([tiny_model, other])
    together = explain.compute_cams(pair, pixels, "gradcam")
    assert sorted(together.layers) == sorted(f"m{k}_conv{i}" for k in (1, 2) for i in (1, 2, 3))
    for prefix, member in (("m1_", tiny_model), ("m2_", other)):
        alone = explain.compute_cams(member, pixels, "gradcam")
        for layer in alone.layers:
            # atol: float32 sums in another order, over gradients of a barely trained model (ranges ~1e-4)
            np.testing.assert_allclose(together.heatmaps[prefix + layer], alone.heatmaps[layer], atol=5e-3)
    # figures show one tile per depth: the members' maps averaged, renormalized per image
    depth = explain.by_depth(together)
    assert depth.layers == ["conv1", "conv2", "conv3"]
    np.testing.assert_allclose(depth.heatmaps["conv2"], explain.normalize(
        (together.heatmaps["m1_conv2"] + together.heatmaps["m2_conv2"]) / 2), atol=1e-6)
    alone = explain.compute_cams(tiny_model, pixels, "gradcam")
    assert explain.by_depth(alone) is alone


def test_batches_give_the_same_maps_as_one_batch(tiny_model, pixels):
    whole = explain.compute_cams(tiny_model, pixels, "layercam")
    split = explain.compute_cams(tiny_model, pixels, "layercam", batch_size=3)
    for layer in whole.layers:
        np.testing.assert_allclose(whole.heatmaps[layer], split.heatmaps[layer], atol=1e-5)


def test_target_real_explains_the_other_class(tiny_model, pixels):
    fake = explain.compute_cams(tiny_model, pixels, target="fake")
    real = explain.compute_cams(tiny_model, pixels, target="real")
    predicted = explain.compute_cams(tiny_model, pixels, target="predicted")
    assert not np.allclose(fake.heatmaps["conv3"], real.heatmaps["conv3"])
    for index, probability in enumerate(fake.probabilities):
        expected = fake if probability >= 0.5 else real
        np.testing.assert_allclose(predicted.heatmaps["conv3"][index], expected.heatmaps["conv3"][index], atol=1e-6)


# ---------------------------------------------------------------------------------------------- model variants


def test_works_after_save_and_load(tiny_model, pixels, tmp_path):
    tiny_model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    before = explain.compute_cams(tiny_model, pixels, "gradcam")
    after = explain.compute_cams(loaded, pixels, "gradcam")
    np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-6)
    for layer in before.layers:
        np.testing.assert_allclose(after.heatmaps[layer], before.heatmaps[layer], atol=1e-5)


def _wrapped(model: keras.Model, kind: str) -> keras.Model:
    if kind == "sequential":
        return keras.Sequential([keras.Input((32, 32, 3)), model])
    inputs = keras.Input((32, 32, 3), name="outer_image")
    x = keras.layers.Identity(name="outer_identity")(inputs)
    return keras.Model(inputs, model(x), name="outer")


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_works_for_a_model_nested_inside_another(tiny_model, pixels, kind):
    outer = _wrapped(tiny_model, kind)
    assert conv_layer_names(outer) == ["conv1", "conv2", "conv3"]
    inner = explain.compute_cams(tiny_model, pixels, "layercam")
    nested = explain.compute_cams(outer, pixels, "layercam")
    for layer in inner.layers:
        np.testing.assert_allclose(nested.heatmaps[layer], inner.heatmaps[layer], atol=1e-5)


def test_load_images_fits_files_to_the_model_and_reports_bad_ones(tiny_model, tmp_path):
    from PIL import Image

    from fakelib.images import ImageError

    Image.new("RGB", (50, 40), (200, 10, 10)).save(tmp_path / "face.png")
    loaded = explain.load_images(tiny_model, [tmp_path / "face.png", (tmp_path / "face.png").read_bytes()])
    assert loaded.shape == (2, 32, 32, 3) and loaded.dtype == np.uint8
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageError):
        explain.load_images(tiny_model, tmp_path / "notes.txt")


# ---------------------------------------------------------------------------------------------- overlay


def test_overlay_opacity_and_colormap(pixels):
    heatmap = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    np.testing.assert_array_equal(overlay.overlay(pixels[0], heatmap, opacity=0.0), pixels[0])
    full = overlay.overlay(pixels[0], heatmap, "viridis", opacity=1.0)
    assert not np.array_equal(full, overlay.overlay(pixels[0], heatmap, "cividis", opacity=1.0))
    assert overlay.DEFAULT_COLORMAP == "cividis"
    with pytest.raises(ValueError, match="colour-blind-safe"):
        overlay.overlay(pixels[0], heatmap, "no_such_map")
    with pytest.raises(ValueError, match="opacity"):
        overlay.overlay(pixels[0], heatmap, opacity=1.5)


def test_grid_titles_name_layers_and_probabilities_and_png_is_written(tiny_model, pixels, tmp_path):
    result = explain.compute_cams(tiny_model, pixels[:2], "gradcam")
    figure = overlay.plot_cam_grid(pixels[:2], result.heatmaps, result.probabilities, [0, 1], colormap="magma",
                                   opacity=0.3, method="gradcam", path=tmp_path / "reports" / "grid.png")
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 2 * 4
    assert any(title.startswith("conv2 gradcam") for title in titles)
    assert f"p(fake) = {result.probabilities[1]:.2f}" in titles[4]
    assert (tmp_path / "reports" / "grid.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------- notebook


@pytest.mark.slow
@pytest.mark.notebook
def test_explain_notebook_writes_its_figures_and_json(demo_dir, tmp_path):
    from conftest import execute_notebook

    output_dir = tmp_path / "explain"
    executed = execute_notebook("03_explain.ipynb", {
        "model_path": str(demo_dir / "model.keras"), "data_dir": str(demo_dir / "data"),
        "output_dir": str(output_dir), "method": "layercam", "n_images": 4, "quality_limit": 12,
        "colormap": "viridis", "seed": 1})
    for name in ("grid.png", "where_to_look.csv", "where_to_look.png", "quality.png", "explain.json"):
        assert (output_dir / name).is_file(), name
    shown = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert sum("image/png" in output.get("data", {}) for output in shown) == 3  # grid, ranking, quality
    record = json.loads((output_dir / "explain.json").read_text(), parse_constant=pytest.fail)
    assert record["method"] == "layercam" and record["layers"] == ["conv1", "conv2", "conv3"]
    assert len(record["grid_probabilities"]) == 4
    assert all(0.0 <= value <= 1.0 for value in record["grid_probabilities"])
    # the manifest's test split holds only a few of the 30 fakes: the notebook uses those, up to quality_limit
    assert 1 <= record["n_fakes"] <= 12 and 0 <= record["n_caught"] <= record["n_fakes"]
    assert len(record["where_to_look"]) == 9 * 4  # 9 regions x (3 layers + overall)
    assert record["advice"].startswith(("Look first at the", "No caught fake"))
    figures = record["quality"]["methods"]["layercam"]
    assert set(figures) == {"conv1", "conv2", "conv3"}
    assert record["quality"]["n_images"] == record["n_fakes"]
    for layer_figures in figures.values():
        assert 0.0 <= layer_figures["pointing_game"] <= 1.0
        assert layer_figures["pointing_game_random"] == pytest.approx(record["quality"]["mask_fraction"])
        assert layer_figures["mask_auc"] is None or 0.0 <= layer_figures["mask_auc"] <= 1.0

