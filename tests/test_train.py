"""fakelib.train: one tiny experiment end to end, its artifacts, reproducibility and error paths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fakelib.config import ExperimentConfig, load_experiment
from fakelib.train import ARTIFACTS, run_experiment

pytestmark = pytest.mark.slow


def test_experiment_leaves_every_artifact(trained_experiment, tiny_config):
    for name in ARTIFACTS:
        assert (trained_experiment / name).is_file(), name
    metrics = json.loads((trained_experiment / "metrics.json").read_text())
    assert metrics["experiment_id"] == tiny_config.experiment_id
    for key in ("val_roc_auc", "test_accuracy", "test_f1", "test_roc_auc", "test_average_precision",
                "test_f1_at_threshold", "threshold", "train_seconds", "param_count"):
        assert key in metrics
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 < metrics["threshold"] <= 1
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["n_test"]
    history = pd.read_csv(trained_experiment / "history.csv")
    assert len(history) == metrics["epochs_run"] == 2
    assert {"loss", "accuracy", "val_loss", "val_auc", "epoch_seconds"} <= set(history.columns)
    # each epoch's wall seconds: positive, and together no more than the whole training took
    assert (history["epoch_seconds"] > 0).all()
    assert history["epoch_seconds"].sum() <= metrics["train_seconds"] + 0.01
    assert load_experiment(trained_experiment / "params.yaml") == tiny_config


def test_saved_model_is_the_best_validation_epoch(tiny_config, trained_experiment):
    """model.keras, reloaded and scored here on the validation split, is the epoch history.csv scores best."""
    from sklearn.metrics import roc_auc_score

    from fakelib.data import load_dataset
    from fakelib.models import load_model, predict_probabilities

    prepared = load_dataset(tiny_config.data)
    images, labels = prepared.subset("val")
    model = load_model(trained_experiment / "model.keras")
    saved = roc_auc_score(labels, predict_probabilities(model, images))
    aucs = pd.read_csv(trained_experiment / "history.csv")["val_auc"].to_numpy()
    matching = [epoch for epoch, auc in enumerate(aucs, start=1) if auc == pytest.approx(saved, abs=1e-6)]
    assert matching and aucs[matching[0] - 1] == aucs.max()  # the file holds a best epoch, not merely the last
    metrics = json.loads((trained_experiment / "metrics.json").read_text())
    assert metrics["best_epoch"] in matching and metrics["val_roc_auc"] == pytest.approx(saved, abs=1e-6)


def test_same_seed_same_result(tiny_config, trained_experiment, tmp_path):
    again = run_experiment(tiny_config, tmp_path / "again", verbose=0)
    first = json.loads((trained_experiment / "metrics.json").read_text())
    for key in ("val_roc_auc", "test_roc_auc", "test_accuracy", "threshold"):
        assert again[key] == pytest.approx(first[key], abs=1e-4), key


def test_training_learns_an_obvious_signal(tmp_path):
    """Fakes carry a bright square at a random place: a working trainer must find it within a few epochs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (tmp_path / "obvious" / label).mkdir(parents=True)
        for index in range(80):
            pixels = rng.integers(60, 190, (32, 32, 3), dtype=np.uint8)
            if label == "fake":
                row, column = rng.integers(0, 24, 2)
                pixels[row:row + 8, column:column + 8] = 255
            Image.fromarray(pixels).save(tmp_path / "obvious" / label / f"{index}.png")
    config = ExperimentConfig.from_flat(dict(
        data_dir=str(tmp_path / "obvious"), image_size=32, conv_filters=[8, 16], dense_units=[8], epochs=8,
        batch_size=16, patience=0, learning_rate=3e-3, dropout=0.0, crop=0.0, color_jitter=0.0, blur_prob=0.0,
        jpeg_prob=0.0))
    metrics = run_experiment(config, tmp_path / "learn", verbose=0)
    assert metrics["val_roc_auc"] > 0.9, metrics
    assert metrics["test_roc_auc"] > 0.9, metrics


def test_single_class_split_is_one_line(tmp_path, demo_dataset):
    import shutil

    root = tmp_path / "lopsided"
    shutil.copytree(demo_dataset, root)
    manifest = pd.read_csv(root / "manifest.csv")
    manifest.loc[manifest["label"] == "fake", "split"] = "train"
    manifest.to_csv(root / "manifest.csv", index=False)
    config = ExperimentConfig.from_flat(dict(data_dir=str(root), image_size=32, conv_filters=[4], epochs=1))
    with pytest.raises(ValueError, match="the val split needs both real and fake") as error:
        run_experiment(config, tmp_path / "out", verbose=0)
    assert "\n" not in str(error.value)


def test_recompute_batchnorm_sets_the_exact_average_of_batch_statistics():
    import keras

    from fakelib.train import recompute_batchnorm

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(scale, 1.0, (16, 4)).astype("float32"), None) for scale in (1.0, 5.0, 9.0)]
    assert recompute_batchnorm(model, batches) == 3
    layer = model.get_layer("bn")
    np.testing.assert_allclose(np.asarray(layer.moving_mean), np.mean([b.mean(axis=0) for b, _ in batches], axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), np.mean([b.var(axis=0) for b, _ in batches], axis=0),
                               rtol=1e-4)
    assert layer.momentum == pytest.approx(0.99)  # restored for training


def test_metrics_carry_calibration_and_a_usable_threshold(trained_experiment):
    metrics = json.loads((trained_experiment / "metrics.json").read_text())
    assert 0.05 <= metrics["threshold"] <= 0.95
    assert metrics["calibration_scale"] > 0
    for key in ("test_ece", "test_brier", "val_ece", "val_brier"):
        assert 0 <= metrics[key] <= 1, key
    from fakelib.models import calibration, load_model

    assert calibration(load_model(trained_experiment / "model.keras")) == pytest.approx(
        (metrics["calibration_scale"], metrics["calibration_bias"]))


def test_recalibrate_rewrites_a_finished_run_without_touching_its_weights(trained_experiment, tmp_path):
    import shutil

    from fakelib.models import load_model
    from fakelib.train import recalibrate

    run = tmp_path / "run"
    shutil.copytree(trained_experiment, run)
    before = json.loads((run / "metrics.json").read_text())
    weights = [np.asarray(w) for w in load_model(run / "model.keras").get_layer("conv1").get_weights()]
    (run / "metrics.json").write_text(json.dumps({**before, "threshold": 0.999}))
    after = recalibrate(run)
    assert after["threshold"] == pytest.approx(before["threshold"])  # same data, same fit
    assert after["train_seconds"] == before["train_seconds"]
    assert json.loads((run / "metrics.json").read_text())["threshold"] == pytest.approx(before["threshold"])
    again = load_model(run / "model.keras").get_layer("conv1").get_weights()
    for old, new in zip(weights, again):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(FileNotFoundError, match="not a finished experiment"):
        recalibrate(tmp_path)


def test_ema_weights_are_validated_and_training_goes_on_from_the_raw_ones(tmp_path):
    """With train.ema, each epoch's validation (and so the checkpoint) sees the exponential moving average of the
    weights after every step, with batch-norm statistics recomputed for it, and the next epoch trains on from
    the raw weights, not from the average."""
    import keras

    from fakelib.config import ExperimentConfig
    from fakelib.data import make_dataset
    from fakelib.train import _callbacks, _validation_callback, build_and_compile

    momentum = 0.8
    config = ExperimentConfig.from_flat(dict(image_size=32, conv_filters=[4], dense_units=[], epochs=2, batch_size=8,
                                             patience=0, ema=momentum, bn_recompute_batches=2, lr_schedule="constant",
                                             learning_rate=0.01, threads=2))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    labels = np.tile([0.0, 1.0], 12).astype("float32")
    train_data = make_dataset(images, labels, 8)
    model = build_and_compile(config, steps_per_epoch=3)

    def weights():
        return [np.asarray(variable, dtype=np.float64) for variable in model.trainable_variables]

    seen = {"steps": [], "validated": [], "epoch_start": []}

    class Recorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen["epoch_start"].append(weights())

        def on_train_batch_end(self, batch, logs=None):
            seen["steps"].append(weights())

    class Validated(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["validated"].append(weights())

    callbacks = _callbacks(config, tmp_path, _validation_callback(images, labels, 8), train_data)
    assert [type(callback).__name__ for callback in callbacks[:3]] == ["SwapEMAWeights", "PreciseBatchNorm",
                                                                       "ValidationScores"]
    model.fit(train_data, epochs=2, verbose=0, shuffle=False,
              callbacks=[callbacks[0], Recorder(), callbacks[1], Validated(), *callbacks[2:]])
    assert len(seen["steps"]) == 6
    average = seen["steps"][0]
    for step, raw in enumerate(seen["steps"][1:], start=2):
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, raw)]
        if step == 3:
            for got, want in zip(seen["validated"][0], average):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(seen["validated"][1], average):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(a, w) for a, w in zip(seen["validated"][0], seen["steps"][2]))  # not the raw weights
    for got, want in zip(seen["epoch_start"][1], seen["steps"][2]):  # epoch 2 starts from epoch 1's raw weights
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert (tmp_path / "model.keras").is_file()



def test_members_train_draws_and_save_one_model_whose_logit_is_their_mean(tiny_config, trained_experiment, tmp_path):
    from fakelib.data import load_dataset
    from fakelib.metrics import fit_platt
    from fakelib.models import calibration, load_model, logit_model, predict_probabilities
    from fakelib.train import recalibrate

    config = tiny_config.replace(members=2)
    metrics = run_experiment(config, tmp_path / "pair", verbose=0)
    folders = [tmp_path / "pair" / "members" / name for name in ("m1", "m2")]
    for name in ARTIFACTS:
        assert (tmp_path / "pair" / name).is_file(), name
        assert all((folder / name).is_file() for folder in folders), name
    draws = [json.loads((folder / "metrics.json").read_text()) for folder in folders]
    first = json.loads((trained_experiment / "metrics.json").read_text())
    assert draws[0]["val_roc_auc"] == pytest.approx(first["val_roc_auc"], abs=1e-4)  # draw 1 is the seed-0 run
    assert load_experiment(folders[1] / "params.yaml") == tiny_config.replace(seed=1)
    assert [member["seed"] for member in metrics["members"]] == [0, 1]
    assert [member["val_roc_auc"] for member in metrics["members"]] == [draw["val_roc_auc"] for draw in draws]
    assert metrics["train_seconds"] == pytest.approx(sum(draw["train_seconds"] for draw in draws), abs=0.02)
    # every weight of both draws, and one calibration (scale, bias) in place of their two
    assert metrics["param_count"] == sum(draw["param_count"] for draw in draws) - 2

    images, labels = load_dataset(config.data).subset("val")
    logits = [predict_probabilities(logit_model(load_model(folder / "model.keras")), images) for folder in folders]
    pair = load_model(tmp_path / "pair" / "model.keras")
    mean = predict_probabilities(logit_model(pair), images)
    np.testing.assert_allclose(mean, (logits[0] + logits[1]) / 2, atol=1e-4)
    assert calibration(pair) == pytest.approx(fit_platt(labels, mean), abs=1e-3)  # calibrated once, as a whole

    histories = [pd.read_csv(folder / "history.csv") for folder in folders]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "pair" / "history.csv")["val_auc"],
                               (histories[0]["val_auc"] + histories[1]["val_auc"]) / 2)
    again = recalibrate(tmp_path / "pair")
    assert again["members"] == metrics["members"] and again["train_seconds"] == metrics["train_seconds"]
