"""The spectrum and NPR layers: NumPy references, any-size inputs, `.keras` round trips, one training step."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fakelib import layers as custom_layers
from fakelib import models

TINY = {"conv_filters": [4, 8], "kernel_sizes": [3, 3], "dense_units": [4], "dropout": 0.0}


def durall_reference(image: np.ndarray) -> np.ndarray:
    """Durall et al.'s recipe written the textbook way: fftshift, distances from the centre, ring means."""
    gray = image.astype(np.float64) @ np.array(custom_layers.LUMA_WEIGHTS) / 255.0
    spectrum = np.fft.fftshift(np.fft.fft2(gray))
    log_power = np.log(np.abs(spectrum) ** 2 / gray.size + 1e-8)
    y, x = np.indices(gray.shape)
    radius = np.floor(np.hypot(y - gray.shape[0] // 2, x - gray.shape[1] // 2)).astype(int)
    return np.bincount(radius.ravel(), log_power.ravel()) / np.bincount(radius.ravel())


def pixels(size: int, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("size", [16, 33])
def test_spectrum_matches_numpy_reference(size):
    images = pixels(size)
    images[1] = np.linspace(0, 255, size)[None, :, None]  # a smooth ramp: power falls with frequency
    features = np.asarray(custom_layers.AzimuthalSpectrum()(images))
    for image, feature in zip(images, features):
        np.testing.assert_allclose(feature, durall_reference(image), rtol=1e-3, atol=1e-3)


def test_spectrum_bins_cover_every_frequency_once():
    index, counts = custom_layers.radial_bins(32, 32)
    assert counts.sum() == 32 * 32 and (counts > 0).all()
    assert len(counts) == int(np.floor(np.hypot(16, 16))) + 1


def test_residual_cancels_block_constant_content_and_keeps_the_rest():
    layer = custom_layers.NearestResidual(2)
    blocky = np.repeat(np.repeat(pixels(4, count=1), 2, axis=1), 2, axis=2)  # 8 x 8, constant per 2 x 2 block
    np.testing.assert_allclose(np.asarray(layer(blocky)), 0.0, atol=1e-6)
    odd = pixels(5, count=1)
    residual = np.asarray(layer(odd))
    expected = odd - np.repeat(np.repeat(odd[:, ::2, ::2], 2, axis=1), 2, axis=2)[:, :5, :5]
    np.testing.assert_allclose(residual, expected, atol=1e-5)
    with pytest.raises(ValueError, match="factor"):
        custom_layers.NearestResidual(1)


def test_models_are_registered():
    assert {"spectrum", "npr"} <= set(models.list_models())


@pytest.mark.parametrize("name", ["spectrum", "npr"])
def test_save_load_round_trip_with_safe_mode(tmp_path, name):
    model = models.create_model(name, image_size=32, **TINY)
    images = pixels(32, count=3)
    before = model.predict(images, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), before, atol=1e-6)
    assert models.input_size(loaded) == 32 and before.shape == (3, 1)


@pytest.mark.parametrize("name", ["spectrum", "npr"])
def test_model_trains_a_step(name):
    import keras

    model = models.create_model(name, image_size=32, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    images, labels = pixels(32, count=8, seed=1), np.array([0, 1] * 4, dtype=np.float32)
    weights_before = [np.array(weight) for weight in model.trainable_weights]
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(before, np.array(after))
               for before, after in zip(weights_before, model.trainable_weights))


def test_npr_has_named_conv_layers_for_explanations():
    model = models.create_model("npr", image_size=32, **TINY)
    assert models.conv_layer_names(model) == ["conv1", "conv2"]


@pytest.mark.parametrize("size", [8, 9])
def test_unshuffle_matches_tensorflow_space_to_depth(size):
    import tensorflow as tf

    images = pixels(size, count=2)
    even = images[:, : size - size % 2, : size - size % 2]
    np.testing.assert_array_equal(np.asarray(custom_layers.PixelUnshuffle(2)(images)),
                                  tf.nn.space_to_depth(even, 2).numpy())
    with pytest.raises(ValueError, match="factor"):
        custom_layers.PixelUnshuffle(1)


def test_npr_feeds_the_residual_phases_to_the_first_convolution():
    model = models.create_model("npr", image_size=32, **TINY)
    assert model.get_layer("unshuffle").output.shape[-1] == 12  # the 4 phases of 3 channels
    probe = keras.Model(model.inputs[0], [model.get_layer("unshuffle").output, model.get_layer("conv1").output])
    unshuffled, conv1 = probe(np.zeros((1, 32, 32, 3), np.float32))
    assert unshuffled.shape[1:] == (16, 16, 12) and conv1.shape[1:3] == (16, 16)
