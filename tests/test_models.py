"""fakelib.models: registry, functional graphs, preprocessing inside the model, safe save/load."""

from __future__ import annotations

import numpy as np
import pytest

from fakelib import models


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        models.create_model("resnet9000", 32)
    for name in models.list_models():
        assert name in str(error.value)


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_is_functional_and_round_trips(name, tmp_path):
    model = models.create_model(name, 32, conv_filters=[4, 8], kernel_sizes=[3, 3], dense_units=[4])
    assert models.input_size(model) == 32
    assert model.outputs[0].shape[-1] == 1
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    before = np.asarray(model(pixels, training=False))
    assert before.shape == (3, 1) and np.all((before >= 0) & (before <= 1))
    model.save(tmp_path / "model.keras")
    loaded = models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(pixels, training=False)), before, atol=1e-6)


def test_cnn_follows_its_parameters():
    model = models.create_model("cnn", 48, conv_filters=[4, 8, 16], kernel_sizes=[3, 5, 7], pooling="avg",
                                batch_norm=False, dropout=0.0, dense_units=[], l2=0.0)
    assert models.conv_layer_names(model) == ["conv1", "conv2", "conv3"]
    kernels = [model.get_layer(name).kernel_size for name in ("conv1", "conv2", "conv3")]
    assert kernels == [(3, 3), (5, 5), (7, 7)]
    assert not any(layer.name.startswith("bn") for layer in model.layers)
    assert any(layer.name == "pool1" and "Average" in type(layer).__name__ for layer in model.layers)


def test_scaling_lives_in_the_model():
    model = models.create_model("cnn", 32, conv_filters=[4], dense_units=[])
    assert model.get_layer("scale").scale == pytest.approx(1 / 255)


def test_load_model_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        models.load_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot load model") as error:
        models.load_model(bad)
    assert "\n" not in str(error.value)
