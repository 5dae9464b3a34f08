"""Train one experiment (early stopping, LR schedule, best checkpoint on validation) and write its artifacts.

`run_experiment(config, output_dir)` leaves in `output_dir`: `model.keras` (best validation epoch),
`params.yaml`, `metrics.json`, `history.csv`, `data_report.json`, `curves.png`, `confusion_matrix.png`,
`roc_pr.png`. metrics.json is written last and atomically: its presence means the experiment finished.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from fakelib.config import ExperimentConfig

ARTIFACTS = ("model.keras", "params.yaml", "metrics.json", "history.csv", "data_report.json", "curves.png",
             "confusion_matrix.png", "roc_pr.png")


def configure_threads(threads: int) -> None:
    """Limit TensorFlow to `threads` CPU threads (0 = its default). Call before TensorFlow runs any op.

    Concurrent experiments on one machine should share the cores instead of each spawning one thread per core.
    """
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        pass  # TensorFlow is already initialized in this process; its existing pools stay in use


def write_json(path: str | Path, payload: dict) -> None:
    """`fakelib.atomic.write_json`, refusing NaN and inf: a metric that is not a number must fail loudly here."""
    from fakelib.atomic import write_json as write_atomically

    write_atomically(path, payload, allow_nan=False)


def _schedule(config: ExperimentConfig, steps_per_epoch: int):
    import keras

    train = config.train
    if train.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=train.epochs * steps_per_epoch,
                                                      alpha=0.05)
    return train.learning_rate


def _validation_callback(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """A callback that scores the validation split once per epoch with exact metrics.

    Keras' streaming AUC buckets probabilities into fixed thresholds and reads 0.5 when an early model's
    scores sit in one bucket; checkpointing and early stopping on it would pick arbitrary epochs. One
    prediction pass gives the exact ROC-AUC, loss and accuracy, written into the epoch logs as
    `val_auc`, `val_loss` and `val_accuracy` before the checkpoint, early-stopping and CSV callbacks read them.
    """
    import keras
    from sklearn.metrics import log_loss, roc_auc_score

    from fakelib.models import predict_probabilities

    class ValidationScores(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probabilities = np.clip(predict_probabilities(self.model, images, batch_size), 1e-7, 1 - 1e-7)
            logs = logs if logs is not None else {}
            logs["val_auc"] = float(roc_auc_score(labels, probabilities))
            logs["val_loss"] = float(log_loss(labels, probabilities, labels=[0, 1]))
            logs["val_accuracy"] = float(((probabilities >= 0.5) == labels).mean())

    return ValidationScores()


def training_forward(model):
    """A compiled training-mode forward pass of `model`, for `recompute_batchnorm` (trace it once, reuse it)."""
    import tensorflow as tf

    return tf.function(lambda pixels: model(pixels, training=True), reduce_retracing=True)


def recompute_batchnorm(model, batches, forward=None) -> int:
    """Replace every batch-norm layer's moving statistics by their exact average over `batches` (precise BN).

    The moving averages lag behind weights that change every step, so the inference statistics, and with them
    the offset of every probability, drift from epoch to epoch while the ranking holds (the swinging
    validation loss). One compiled training-mode forward pass per batch with momentum 0 leaves each layer's
    batch statistics in its moving mean and variance; their plain average over the batches, under the current
    weights, is what the layers keep. No weight changes. Returns the number of batches used (0 when the model
    has no batch norm). Compiled (`forward`, from `training_forward`, traced while momentum is 0), the passes
    cost about half of what eager ones did (0.5 s against 1.0 s for 10 batches of the demo sweep's CNN).
    """
    import keras

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    totals = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in norms]
    used = 0
    try:
        for layer in norms:
            layer.momentum = 0.0  # read when the pass is traced: moving statistics = this batch's statistics
        forward = forward or training_forward(model)
        for used, (pixels, _) in enumerate(batches, start=1):
            forward(pixels)
            for total, layer in zip(totals, norms):
                total[0] += np.asarray(layer.moving_mean, dtype=np.float64)
                total[1] += np.asarray(layer.moving_variance, dtype=np.float64)
        if used:
            for (mean, variance), layer in zip(totals, norms):
                layer.moving_mean.assign((mean / used).astype(np.float32))
                layer.moving_variance.assign((variance / used).astype(np.float32))
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return used


def _batchnorm_callback(train_data, batches: int):
    """Precise batch norm before each epoch's validation (see `recompute_batchnorm`)."""
    import keras

    class PreciseBatchNorm(keras.callbacks.Callback):
        forward = None

        def on_epoch_end(self, epoch, logs=None):
            self.forward = self.forward or training_forward(self.model)
            recompute_batchnorm(self.model, train_data.take(batches), self.forward)

    return PreciseBatchNorm()


def epoch_timer():
    """A callback that writes each epoch's wall seconds (its steps, precise batch norm, validation and checkpoint)
    into the epoch logs as `epoch_seconds`, so history.csv shows an epoch that stalled."""
    import keras

    class EpochSeconds(keras.callbacks.Callback):
        started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["epoch_seconds"] = round(time.perf_counter() - self.started, 3)

    return EpochSeconds()


def _callbacks(config: ExperimentConfig, output_dir: Path, validation, train_data=None) -> list:
    import keras

    # Order matters: the EMA weights go in first, then their batch-norm statistics, then validation reads them.
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.train.ema else []
    if config.train.bn_recompute_batches and train_data is not None:
        callbacks.append(_batchnorm_callback(train_data, config.train.bn_recompute_batches))
    callbacks += [
        validation,
        keras.callbacks.ModelCheckpoint(output_dir / "model.keras", monitor="val_auc", mode="max",
                                        save_best_only=True),
        epoch_timer(),
        keras.callbacks.CSVLogger(str(output_dir / "history.csv")),
    ]
    if config.train.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.train.patience,
                                                       restore_best_weights=False))
    if config.train.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                           patience=max(1, config.train.patience // 2)))
    return callbacks


def build_and_compile(config: ExperimentConfig, steps_per_epoch: int):
    """The experiment's model, compiled with Adam, binary cross-entropy and accuracy."""
    import keras

    from fakelib.models import create_model

    model = create_model(config.model.model, config.data.image_size, **config.model.builder_params())
    ema = {"use_ema": True, "ema_momentum": config.train.ema} if config.train.ema else {}
    model.compile(optimizer=keras.optimizers.Adam(_schedule(config, steps_per_epoch), **ema),
                  loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def run_experiment(config: ExperimentConfig, output_dir: str | Path, verbose: int = 2,
                   cache_root: str | Path | None = None) -> dict:
    """Train `config`, evaluate the best checkpoint on validation and test, and write every artifact.

    Args:
        config: the experiment.
        output_dir: folder for the artifacts (created).
        verbose: Keras progress (0 silent, 1 bar, 2 one line per epoch).
        cache_root: prepared-data cache folder (default data/cache).

    Returns:
        The metrics dict also written to metrics.json.

    Raises:
        ValueError: a dataset without usable images of both classes, or an empty split.
    """
    import keras

    from fakelib.data import load_dataset, make_dataset
    from fakelib.models import fully_convolutional

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output folder {output_dir} is an existing file; give a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").unlink(missing_ok=True)
    config.save(output_dir / "params.yaml")
    if config.train.members > 1:
        return _run_members(config, output_dir, verbose, cache_root)
    keras.utils.set_random_seed(config.train.seed)
    prepared = load_dataset(config.data, cache_root)
    write_json(output_dir / "data_report.json", prepared.report)
    splits, sides, calibration = _splits(prepared, config)
    groups = _groups(prepared)
    for split, (_, labels) in splits.items():
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {split} split needs both real and fake images; it has {len(labels)} image(s) "
                             f"of {len(np.unique(labels))} class(es)")
    batch = config.train.batch_size
    model = build_and_compile(config, math.ceil(len(splits["train"][1]) / batch))
    crop = config.data.train_crop if fully_convolutional(model) else 0  # a fixed-size model trains on whole inputs
    train_data = make_dataset(*splits["train"], batch, config.augment, shuffle=True, seed=config.train.seed,
                              sides=sides["train"], crop=crop)
    validation = _validation_callback(*splits["val"], batch)
    started = time.perf_counter()
    history = model.fit(train_data, epochs=config.train.epochs, verbose=verbose, shuffle=False,
                        callbacks=_callbacks(config, output_dir, validation, train_data))
    train_seconds = time.perf_counter() - started
    return _finish(output_dir, config, splits, calibration, history.history, train_seconds, groups)


def _run_members(config: ExperimentConfig, output_dir: Path, verbose: int, cache_root: str | Path | None) -> dict:
    """A deep ensemble: `train.members` draws of `config` (seeds seed, seed + 1, ...), each a full experiment in
    `output_dir/members/m<k>/` trained one after the other, merged by `models.average_members` (the mean of their
    logits) into one `model.keras`, calibrated once on validation and scored like any run.

    history.csv (and curves.png) is the members' per-epoch mean over the epochs all of them ran; the convergence
    figures are the worst member's; `members` in metrics.json holds each draw's own figures, `train_seconds` their
    sum (the draws run one after the other)."""
    import pandas as pd

    from fakelib.data import load_dataset
    from fakelib.models import average_members, load_model

    folders = [output_dir / "members" / f"m{index}" for index in range(1, config.train.members + 1)]
    draws = [run_experiment(config.replace(members=1, seed=config.train.seed + index), folder, verbose, cache_root)
             for index, folder in enumerate(folders)]
    merged = average_members([load_model(folder / "model.keras") for folder in folders],
                             name=f"{config.model.model}_x{config.train.members}")
    merged.save(output_dir / "model.keras")
    histories = [pd.read_csv(folder / "history.csv") for folder in folders]
    epochs = min(len(history) for history in histories)
    mean = sum(history.iloc[:epochs].reset_index(drop=True) for history in histories) / len(histories)
    mean.to_csv(output_dir / "history.csv", index=False)
    prepared = load_dataset(config.data, cache_root)
    write_json(output_dir / "data_report.json", prepared.report)
    splits, _, calibration = _splits(prepared, config)
    keys = ("val_roc_auc", "test_roc_auc", "epochs_run", "best_epoch", "train_seconds", "val_loss_max_jump",
            "val_auc_spread_last")
    members = [{"seed": config.train.seed + index, **{key: draw.get(key) for key in keys}}
               for index, draw in enumerate(draws)]
    worst = {key: max((draw[key] for draw in draws if draw.get(key) is not None), default=None)
             for key in ("val_loss_max_jump", "val_auc_spread_last")}
    return _finish(output_dir, config, splits, calibration, mean.to_dict("list"),
                   sum(draw["train_seconds"] for draw in draws), _groups(prepared),
                   extra={**worst, "members": members})


def _splits(prepared, config: ExperimentConfig) -> tuple[dict, dict, tuple[np.ndarray, np.ndarray]]:
    """{split: (images, labels)}, {split: sides}, and the (images, labels) the calibration is fitted on.

    Validation is size-matched like training (`augment.match_sizes`): it chooses the checkpoint, the calibration
    and the threshold, so it must not reward a model for telling the classes apart by file size either. Test
    stays as the files are. The calibration uses the validation images of the folders that hold both classes
    (all of validation where none does): an extra folder of one class only is easy to tell apart by its source,
    and its easy images would pull every probability toward that class on the faces that matter (on faces-dev's
    test split, test ECE 0.071 fitted on all validation against 0.055 on faces-dev's own validation). The
    threshold is chosen on all of validation, against its worst group of reals (`metrics.choose_threshold`).
    """
    from fakelib.augment import match_split

    splits = {split: prepared.subset(split) for split in ("train", "val", "test")}
    sides = {split: prepared.split_sides(split) for split in splits}
    if config.augment.match_sizes:
        images, labels = splits["val"]
        images, sides["val"] = match_split(images, labels, sides["val"], config.augment.match_sizes,
                                           config.train.seed, config.augment.jpeg_quality)
        splits["val"] = (images, labels)
    images, labels = splits["val"]
    paired = prepared.paired_mask("val")
    calibration = (images[paired], labels[paired]) if len(np.unique(labels[paired])) == 2 else (images, labels)
    return splits, sides, calibration


def _groups(prepared) -> dict[str, np.ndarray]:
    """{split: each image's source group} of validation and test (`data.PreparedData.split_groups`)."""
    return {split: prepared.split_groups(split) for split in ("val", "test")}


def _finish(output_dir: Path, config: ExperimentConfig, splits: dict, calibration: tuple, history: dict,
            train_seconds: float, groups: dict | None = None, extra: dict | None = None) -> dict:
    """Calibrate the best checkpoint on validation, score it, and write model, figures and metrics.json (last);
    `extra` replaces or adds figures (an ensemble's members)."""
    from fakelib.models import load_model

    batch = config.train.batch_size
    best = load_model(output_dir / "model.keras")
    calibrate(best, *calibration, batch)
    best.save(output_dir / "model.keras")
    metrics, predictions = _evaluate(best, splits, batch, config, history, train_seconds, groups)
    metrics["n_calibration"] = int(len(calibration[1]))
    metrics.update(extra or {})
    _figures(output_dir, metrics, predictions)
    write_json(output_dir / "metrics.json", metrics)
    return metrics


def recalibrate(output_dir: str | Path, cache_root: str | Path | None = None) -> dict:
    """Fit the calibration of a finished experiment again (same data, same checkpoint) and rewrite its metrics.

    For a run trained before a change to calibration or threshold choice: no weight of the network changes.

    Raises:
        FileNotFoundError: the folder is not a finished experiment (no metrics.json, params.yaml or history.csv).
    """
    import pandas as pd

    from fakelib.config import load_experiment
    from fakelib.data import load_dataset

    output_dir = Path(output_dir)
    missing = [name for name in ("metrics.json", "params.yaml", "history.csv", "model.keras")
               if not (output_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{output_dir} is not a finished experiment: missing {', '.join(missing)}")
    config = load_experiment(output_dir / "params.yaml")
    before = json.loads((output_dir / "metrics.json").read_text())
    prepared = load_dataset(config.data, cache_root)
    splits, _, calibration = _splits(prepared, config)
    history = pd.read_csv(output_dir / "history.csv").to_dict("list")
    kept = ("members", "val_loss_max_jump", "val_auc_spread_last") if "members" in before else ()  # an ensemble's
    return _finish(output_dir, config, splits, calibration, history, before["train_seconds"],
                   _groups(prepared), extra={key: before[key] for key in kept})


def calibrate(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> tuple[float, float]:
    """Fit the model's Platt scaling on held-out (validation) images and set it in place; returns (scale, bias).

    The fit weighs both classes equally, so p_fake is the probability under even odds, whatever the share of
    fakes in the validation split (extra real folders make it mostly real).
    """
    from fakelib.metrics import fit_platt
    from fakelib.models import logit_model, predict_probabilities, set_calibration

    logits = predict_probabilities(logit_model(model), images, batch_size)
    scale, bias = fit_platt(labels, logits)
    set_calibration(model, scale, bias)
    return scale, bias


def _evaluate(model, splits: dict, batch_size: int, config: ExperimentConfig, history: dict,
              train_seconds: float, groups: dict | None = None) -> tuple[dict, dict]:
    """Flat metrics (validation scores, test at 0.5 and at the validation-chosen threshold, run facts),
    and the (labels, probabilities) of validation and test for the figures; `groups` ({"val", "test"}) are the
    images' sources: validation's set the threshold (`metrics.choose_threshold`), and each split's figures are
    given per source too (`val_groups`, `test_groups`: `metrics.group_rates` at the threshold; validation's are
    in-sample, as it chose the threshold)."""
    from fakelib import metrics as metriclib
    from fakelib.models import calibration, predict_probabilities
    from fakelib.pretrained import trained_on_demo

    val_images, val_labels = splits["val"]
    test_images, test_labels = splits["test"]
    val_probabilities = predict_probabilities(model, val_images, batch_size)
    test_probabilities = predict_probabilities(model, test_images, batch_size)
    groups = groups or {}
    threshold = metriclib.choose_threshold(val_labels, val_probabilities, groups.get("val"))
    val = metriclib.binary_metrics(val_labels, val_probabilities)
    test = metriclib.binary_metrics(test_labels, test_probabilities)
    test_at = metriclib.binary_metrics(test_labels, test_probabilities, threshold)
    val_auc = history.get("val_auc", [])
    best_epoch = int(np.argmax(val_auc)) + 1 if val_auc else 0
    scale, bias = calibration(model) or (1.0, 0.0)
    metrics = {
        "experiment_id": config.experiment_id,
        "model": config.model.model,
        **metriclib.prefixed(val, "val", keys=("roc_auc", "average_precision", "f1", "accuracy")),
        "val_loss": float(history["val_loss"][best_epoch - 1]) if best_epoch else None,
        **metriclib.prefixed(test, "test"),
        **metriclib.prefixed(test_at, "test", "_at_threshold", keys=metriclib.THRESHOLD_KEYS),
        "threshold": threshold,
        "confusion_matrix": test_at["confusion_matrix"],
        "confusion_matrix_at_0_5": test["confusion_matrix"],
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": best_epoch,
        "train_seconds": round(train_seconds, 2),
        "param_count": int(model.count_params()),
        "n_train": int(len(splits["train"][1])), "n_val": int(len(val_labels)), "n_test": int(len(test_labels)),
        "val_probabilities_mean_fake": float(val_probabilities[val_labels == 1].mean()),
        "val_probabilities_mean_real": float(val_probabilities[val_labels == 0].mean()),
        "trained_on_demo": trained_on_demo(config.data.data_dir),
        "calibration_scale": scale, "calibration_bias": bias,
        **metriclib.prefixed(metriclib.calibration_errors(val_labels, val_probabilities), "val", keys=("ece", "brier")),
        **metriclib.prefixed(metriclib.calibration_errors(test_labels, test_probabilities), "test",
                             keys=("ece", "brier")),
        **metriclib.prefixed(metriclib.ece_floor(test_probabilities), "test_ece_floor", keys=("mean", "p95")),
        **convergence(history),
        **{f"{split}_groups": metriclib.group_rates(splits[split][1], probabilities, groups[split], threshold)
           for split, probabilities in (("val", val_probabilities), ("test", test_probabilities))
           if groups.get(split) is not None},
    }
    return metrics, {"validation": (val_labels, val_probabilities), "test": (test_labels, test_probabilities)}


def convergence(history: dict, after_epoch: int = 5, last: int = 10) -> dict:
    """How settled training was: the largest ratio between consecutive epochs' validation losses after
    `after_epoch` (either direction; 1 = flat) and the spread (max - min) of validation ROC-AUC over the last
    `last` epochs. None where the run was too short to say."""
    losses = np.asarray(history.get("val_loss", []), dtype=np.float64)
    aucs = np.asarray(history.get("val_auc", []), dtype=np.float64)
    tail = losses[after_epoch - 1:] if len(losses) > after_epoch else np.zeros(0)
    ratios = np.maximum(tail[1:] / tail[:-1], tail[:-1] / tail[1:]) if len(tail) > 1 else np.zeros(0)
    return {"val_loss_max_jump": float(ratios.max()) if ratios.size else None,
            "val_auc_spread_last": float(np.ptp(aucs[-last:])) if len(aucs) >= 2 else None}


def _figures(output_dir: Path, metrics: dict, predictions: dict) -> None:
    """curves.png, confusion_matrix.png and roc_pr.png; figures are closed so long sweeps don't leak memory."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from fakelib import plots

    history = pd.read_csv(output_dir / "history.csv")
    for figure in (
        plots.plot_history(history, output_dir / "curves.png"),
        plots.plot_confusion(metrics["confusion_matrix"], output_dir / "confusion_matrix.png",
                             f"test, threshold {metrics['threshold']:.2f} (chosen on validation)"),
        plots.plot_roc_pr(predictions, output_dir / "roc_pr.png"),
    ):
        plt.close(figure)


def train_base(params_path: str | Path | None, overrides: dict, output_dir: str | Path | None = None) -> int:
    """`python -m fakelib train`: the base configuration of a params file, with `overrides` ({key: value}),
    trained in-process; prints its metrics as one JSON line."""
    from fakelib import paths
    from fakelib.config import load_params

    params = load_params(params_path)
    config = params.base.replace(**overrides)
    output_dir = Path(output_dir) if output_dir else paths.resolve(params.tracker.experiments_dir) / config.experiment_id
    configure_threads(config.train.threads)
    metrics = run_experiment(config, output_dir, verbose=2)
    print(json.dumps({"output_dir": str(output_dir), **metrics}))
    return 0


def print_recalibration(run_dir: str | Path) -> int:
    """`python -m fakelib calibrate RUN_DIR`: `recalibrate` and print the new metrics as one JSON line."""
    metrics = recalibrate(run_dir)
    print(json.dumps({"output_dir": str(run_dir), **metrics}))
    return 0
