"""fakelib.contrast (regions ranked by fakes against reals, bootstrap intervals, advice, tips) and
fakelib.quality.region_deletion (blur the top region against a random patch of the same area)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fakelib import contrast, quality, regions

SIZE = 32


def _maps(count: int, hot: dict[str, tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """(count, SIZE, SIZE) maps: faint noise everywhere, heat drawn from each `hot` region's range on it."""
    masks = regions.region_masks(SIZE)
    maps = rng.uniform(0.0, 0.05, (count, SIZE, SIZE))
    for name, (low, high) in hot.items():
        maps[:, masks[name]] += rng.uniform(low, high, (count, 1))
    return maps


@pytest.fixture(scope="module")
def ranking() -> tuple:
    """Caught fakes hot on the eyes (and warm on the nose), correct reals hot on the nose only."""
    rng = np.random.default_rng(0)
    fakes, reals = _maps(30, {"eyes": (0.6, 1.0), "nose": (0.2, 0.3)}, rng), _maps(30, {"nose": (0.6, 1.0)}, rng)
    lifts_fake, lifts_real = contrast.image_lifts(fakes), contrast.image_lifts(reals)
    return contrast.contrast_ranking(lifts_fake, lifts_real, seed=1), lifts_fake, lifts_real


def test_the_region_that_differs_ranks_first_with_an_interval_above_zero(ranking):
    table, _, _ = ranking
    first = table.iloc[0]
    assert first["region"] == "eyes" and first["verdict"] == "fakes" and first["rank"] == 1
    assert 0 < first["ci_low"] < first["difference"] < first["ci_high"]
    assert first["lift_fake"] > 3 and first["lift_real"] < 1
    assert list(table["difference"]) == sorted(table["difference"], reverse=True)


def test_a_region_hot_on_every_face_is_reported_as_such(ranking):
    table, _, _ = ranking
    nose = table.set_index("region").loc["nose"]
    # both classes put heat on the nose; the fakes' share of it is diluted by the eyes, so the interval can sit
    # below zero: what matters is that it is never advice
    assert nose["verdict"] in ("every face", "reals") and nose["lift_real"] > 1
    lines = contrast.advice(table)
    assert lines[0].startswith("Look at the eyes:") and f"{table.iloc[0]['lift_fake']:.2f}" in lines[0]
    assert not any(line.startswith("Look at the nose") for line in lines)


def test_equal_classes_give_no_advice_and_few_images_no_interval():
    rng = np.random.default_rng(3)
    same = contrast.image_lifts(_maps(40, {"nose": (0.6, 1.0)}, rng))
    table = contrast.contrast_ranking(same[:20], same[20:], seed=0)
    assert "fakes" not in set(table["verdict"])
    assert table.set_index("region").loc["nose", "verdict"] == "every face"
    assert contrast.advice(table)[0].startswith("No region carries reliably more evidence")
    few = contrast.contrast_ranking(same[:2], same[2:4])
    assert set(few["verdict"]) == {"too few"} and few["ci_low"].isna().all()


def test_tips_carry_the_measured_shares(ranking):
    table, lifts_fake, lifts_real = ranking
    peaks = contrast.peak_shares(contrast.top_regions(lifts_fake), contrast.top_regions(lifts_real))
    eyes = peaks.set_index("region").loc["eyes"]
    assert eyes["n_peak_fake"] == 30 and eyes["n_peak_real"] == 0  # every fake's top region is its eyes
    tips = contrast.tips(table, peaks)
    assert tips == ["In 100% of caught fakes (30 of 30) the strongest evidence sat in the eyes, against 0% of real "
                    "faces (0 of 30)."]


def test_per_image_region_maps_change_the_lifts():
    maps = np.zeros((1, SIZE, SIZE))
    maps[0, :4, :4] = 1.0  # heat in the top-left corner: background on the template
    labels = np.full((1, SIZE, SIZE), regions.REGIONS.index("background"), dtype=np.int8)
    labels[0, :8, :8] = regions.REGIONS.index("eyes")  # this face's eyes sit there
    template, own = contrast.image_lifts(maps), contrast.image_lifts(maps, labels)
    eyes = regions.REGIONS.index("eyes")
    assert contrast.top_regions(template)[0] == regions.REGIONS.index("background")
    assert contrast.top_regions(own)[0] == eyes and own[0, eyes] == pytest.approx(SIZE * SIZE / 64)
    assert np.isnan(own[0, regions.REGIONS.index("nose")])  # a region absent from the face has no lift


# ---------------------------------------------------------------------------------------------- region deletion


@pytest.fixture(scope="module")
def eye_detector() -> keras.Model:
    """A model whose fake logit is the fine texture (Laplacian energy) inside the template's eyes, nothing else."""
    inputs = keras.Input((SIZE, SIZE, 3))
    gray = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, trainable=False, name="laplacian")(inputs)
    energy = keras.layers.Multiply()([keras.layers.Activation("relu")(gray),
                                      keras.ops.convert_to_tensor(
                                          regions.region_masks(SIZE)["eyes"][None, :, :, None].astype("float32"))])
    pooled = keras.layers.GlobalAveragePooling2D()(energy)
    logit = keras.layers.Dense(1, name="logit")(pooled)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="p_fake")(logit))
    kernel = np.zeros((3, 3, 3, 1), dtype="float32")
    kernel[1, 1] = 4.0 / 3
    kernel[[0, 1, 1, 2], [1, 0, 2, 1]] = -1.0 / 3
    model.get_layer("laplacian").set_weights([kernel])
    model.get_layer("logit").set_weights([np.array([[1.0]], "float32"), np.array([-2.0], "float32")])
    return model


def test_blurring_the_region_the_model_reads_beats_a_random_patch(eye_detector):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, SIZE, SIZE, 3)).astype(np.uint8)  # texture everywhere
    labels = np.broadcast_to(regions.region_map(SIZE), (12, SIZE, SIZE))
    right = np.ones((12, len(regions.REGIONS)))
    right[:, regions.REGIONS.index("eyes")] = 5.0  # a ranking that names the eyes
    figures = quality.region_deletion(eye_detector, images, right, labels, seed=0)
    assert figures["passes"] and figures["top_regions"] == {"eyes": 12}
    assert figures["drop_top"] > quality.REGION_PASS_RATIO * max(figures["drop_random"], 0.0)
    assert figures["gain"] == pytest.approx(figures["drop_top"] - figures["drop_random"])
    wrong = np.ones((12, len(regions.REGIONS)))
    wrong[:, regions.REGIONS.index("hair")] = 5.0  # a ranking that names a region the model ignores
    assert not quality.region_deletion(eye_detector, images, wrong, labels, seed=0)["passes"]


def test_fake_logits_read_the_models_own_logit(eye_detector):
    images = np.full((2, SIZE, SIZE, 3), 100, dtype=np.uint8)  # flat: no texture, logit = bias
    np.testing.assert_allclose(quality.fake_logits(eye_detector, images), [-2.0, -2.0], atol=1e-5)


def test_no_tip_for_a_region_that_is_never_a_fakes_strongest(ranking):
    table, lifts_fake, lifts_real = ranking
    peaks = contrast.peak_shares(contrast.top_regions(lifts_fake), contrast.top_regions(lifts_real))
    peaks.loc[peaks["region"] == "eyes", ["peak_fake", "n_peak_fake"]] = 0.0, 0
    assert contrast.tips(table, peaks) == []
