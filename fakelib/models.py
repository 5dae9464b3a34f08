"""Model registry: `create_model(name, **params)`, `list_models()`, and the builders it holds (`cnn`, `cnn_gram`,
`spectrum`, `npr`, `cnn_unshuffle`, `npr_patch`, `two_stream`); functional Keras models that carry their
preprocessing; `average_members` joins trained draws into one ensemble model. The custom layers live in `layers`.

Every model takes raw pixel values, float32 in [0, 255] with shape (batch, size, size, 3), and returns one
sigmoid probability that the face is generated. Scaling happens inside the model, and the input size is
the model's own input shape, so training, explanation and prediction never copy constants.

Every head ends `Dense(1) "logit" -> PlattScaling "calibration" -> sigmoid "p_fake"`. The calibration layer is
the identity while training; afterwards `fakelib.train` fits its scale and bias on validation (Platt scaling),
so the saved model's `p_fake` is a calibrated probability wherever it is read: predict, evaluate, explain,
explore and the report all call the model, never a side file.
"""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
from keras import layers

from fakelib.layers import AzimuthalSpectrum, GramMatrix, InputScale, NearestResidual, PixelUnshuffle, PlattScaling

ModelBuilder = Callable[..., keras.Model]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder `fn(image_size, **params) -> keras.Model` to the registry under `name`."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names accepted by `create_model`, in registration order."""
    return list(_REGISTRY)


def create_model(name: str, image_size: int, **params: object) -> keras.Model:
    """Build the registered model `name` for square RGB inputs of side `image_size`.

    `params` are keys of the model section of params.yaml; a key not given takes its default from
    `fakelib.config.ModelConfig`, the one source of defaults (builders have none of their own). Keys a builder
    does not take are left out, so one model section can feed every architecture (the spectrum baseline has no
    conv filters, for example); a key no section knows is an error, so a misspelt one cannot pass unnoticed.

    Raises:
        ValueError: unknown `name` or parameter (one line, listing the valid ones).
    """
    from fakelib.config import ConfigError, model_defaults

    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    defaults = model_defaults()
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown model parameter(s) {', '.join(map(repr, unknown))}; known: {', '.join(defaults)}")
    builder = _REGISTRY[name]
    accepted = inspect.signature(builder).parameters
    used = {key: value for key, value in {**defaults, **params}.items() if key in accepted}
    return builder(image_size=image_size, **used)


def image_input(image_size: int | None) -> keras.KerasTensor:
    """The shared input: raw RGB pixel values in [0, 255], float32; `None` for a fully convolutional model."""
    return keras.Input(shape=(image_size, image_size, 3), name="image")


def fully_convolutional(model: keras.Model) -> bool:
    """True when the model accepts any input side (an explanation can then run on an image at its own size)."""
    return model.inputs[0].shape[1] is None


def classifier_head(features: keras.KerasTensor, dense_units: Sequence[int], dropout: float,
                    l2: float) -> keras.KerasTensor:
    """Dense layers with L2 and dropout, then the single sigmoid output `p_fake`."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    x = layers.Dropout(dropout, name="head_dropout")(features) if dropout > 0 else features
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"dense{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dense{index}_dropout")(x)
    return calibrated_output(layers.Dense(1, name="logit")(x))


def calibrated_output(logit: keras.KerasTensor) -> keras.KerasTensor:
    """The shared end of every head: logit -> `PlattScaling` "calibration" -> sigmoid "p_fake"."""
    return layers.Activation("sigmoid", name="p_fake")(PlattScaling(name="calibration")(logit))


def logit_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s weights that returns the uncalibrated logit, (batch, 1).

    Raises:
        ValueError: the model has no "logit" layer (built before calibration existed).
    """
    try:
        layer = model.get_layer("logit")
    except ValueError:
        raise ValueError("this model has no 'logit' layer, so it cannot be calibrated; retrain it") from None
    return keras.Model(model.inputs[0], layer.output)  # one input, not a list: calls take a tensor


def calibration(model: keras.Model) -> tuple[float, float] | None:
    """(scale, bias) of the model's Platt scaling, or None for a model without it."""
    try:
        layer = model.get_layer("calibration")
    except ValueError:
        return None
    return float(keras.ops.convert_to_numpy(layer.scale)), float(keras.ops.convert_to_numpy(layer.bias))


def set_calibration(model: keras.Model, scale: float, bias: float) -> None:
    """Set the Platt scaling of `model` in place (p_fake = sigmoid(scale * logit + bias))."""
    layer = model.get_layer("calibration")
    layer.scale.assign(float(scale))
    layer.bias.assign(float(bias))


def conv_blocks(x: keras.KerasTensor, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int, pooling: str,
                batch_norm: bool, l2: float, prefix: str = "", first: int = 1) -> keras.KerasTensor:
    """Conv -> (batch norm) -> ReLU -> down-sampling, once per entry of `conv_filters`.

    Conv layers are named `conv1`, `conv2`, ... (after `prefix`, for a model with several streams) so
    explanations and reports can name them (numbered from `first`). An int `kernel_sizes` is the kernel of every
    block.
    `pooling="stride"` down-samples with a stride-2 convolution instead of a pooling layer; "none" keeps the side.
    """
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(conv_filters)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    for index, (filters, kernel) in enumerate(zip(conv_filters, kernel_sizes), start=first):
        strides = 2 if pooling == "stride" else 1
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=not batch_norm,
                          kernel_regularizer=regularizer, name=f"{prefix}conv{index}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{prefix}bn{index}")(x)
        x = layers.Activation("relu", name=f"{prefix}relu{index}")(x)
        # "same" padding: an input of any side (down to 1 x 1 at the last block) gives a feature map.
        if pooling == "max":
            x = layers.MaxPooling2D(2, padding="same", name=f"{prefix}pool{index}")(x)
        elif pooling == "avg":
            x = layers.AveragePooling2D(2, padding="same", name=f"{prefix}pool{index}")(x)
    return x


def _conv_detector(name: str, image_size: int, front: Sequence[keras.layers.Layer], conv_filters: Sequence[int],
                   kernel_sizes: Sequence[int] | int, pooling: str, batch_norm: bool, dropout: float,
                   dense_units: Sequence[int], l2: float) -> keras.Model:
    """Scale -> `front` layers -> the shared conv blocks -> global average pooling -> head (any input side)."""
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    for layer in front:
        x = layer(x)
    x = conv_blocks(x, conv_filters, kernel_sizes, pooling, batch_norm, l2)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier_head(x, dense_units, dropout, l2), name=name)


@register_model("cnn")
def build_cnn(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int, pooling: str,
              batch_norm: bool, dropout: float, dense_units: Sequence[int], l2: float) -> keras.Model:
    """The plain detector: conv blocks, global average pooling, a dense head, one sigmoid output."""
    return _conv_detector("cnn", image_size, [], conv_filters, kernel_sizes, pooling, batch_norm, dropout,
                          dense_units, l2)


# Gram-Net's taps (`cnn_gram`): after which conv blocks, and the channels each is reduced to first.
GRAM_TAPS = (2, 3, 4)
GRAM_CHANNELS = 16


@register_model("cnn_gram")
def build_cnn_gram(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int, pooling: str,
                   batch_norm: bool, dropout: float, dense_units: Sequence[int], l2: float) -> keras.Model:
    """`cnn` plus global texture statistics (Gram-Net, Liu et al., CVPR 2020): after each block in `GRAM_TAPS`, a
    1 x 1 convolution to `GRAM_CHANNELS` channels and their Gram matrix over all positions (`GramMatrix`), joined
    to the global average pool before the head. Gram-Net found such statistics of StyleGAN faces to survive
    down-sampling and JPEG better than pooled features (docs/results.md, round 17)."""
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(conv_filters)
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    taps = []
    for index, (filters, kernel) in enumerate(zip(conv_filters, kernel_sizes), start=1):
        x = conv_blocks(x, [filters], kernel, pooling, batch_norm, l2, first=index)
        if index in GRAM_TAPS:
            tap = layers.Conv2D(GRAM_CHANNELS, 1, use_bias=not batch_norm, kernel_regularizer=regularizer,
                                name=f"gram{index}_reduce")(x)
            if batch_norm:
                tap = layers.BatchNormalization(name=f"gram{index}_bn")(tap)
            taps.append(GramMatrix(name=f"gram{index}")(tap))
    features = layers.GlobalAveragePooling2D(name="gap")(x)
    if taps:
        features = layers.Concatenate(name="texture")([features, *taps])
    return keras.Model(inputs, classifier_head(features, dense_units, dropout, l2), name="cnn_gram")


@register_model("spectrum")
def build_spectrum(image_size: int, *, l2: float) -> keras.Model:
    """Durall et al.'s baseline: 1-D log power spectrum, standardized, then logistic regression.

    Standardization is a `BatchNormalization` without scale or offset (the logistic unit has both), with a
    fast-moving average so its inference statistics settle within the first epoch.
    """
    inputs = image_input(image_size)
    x = AzimuthalSpectrum(name="spectrum")(inputs)
    x = layers.BatchNormalization(momentum=0.9, center=False, scale=False, name="standardize")(x)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    logit = layers.Dense(1, kernel_regularizer=regularizer, name="logit")(x)
    return keras.Model(inputs, calibrated_output(logit), name="spectrum")


def _residual_front() -> list[keras.layers.Layer]:
    """The NPR front of `npr`, `npr_patch` and `two_stream`'s trace stream: the neighbouring-pixel residual of
    2 x 2 blocks, unshuffled so each block's four phases become channels at half the side."""
    return [NearestResidual(2, name="npr"), PixelUnshuffle(2, name="unshuffle")]


@register_model("npr")
def build_npr(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int, pooling: str,
              batch_norm: bool, dropout: float, dense_units: Sequence[int], l2: float) -> keras.Model:
    """The NPR-style detector: neighbouring-pixel residual -> unshuffle -> the shared conv blocks -> pooling -> head.

    Works best when images reach the model at their native resolution: any resampling before it (resize,
    crop-and-resize augmentation) blurs the up-sampling traces the residual isolates. The unshuffle halves the
    side before the first convolution, so a 256 px input costs the conv blocks what a 128 px one costs `cnn`.
    """
    return _conv_detector("npr", image_size, _residual_front(), conv_filters, kernel_sizes, pooling, batch_norm,
                          dropout, dense_units, l2)


@register_model("cnn_unshuffle")
def build_cnn_unshuffle(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int,
                        pooling: str, batch_norm: bool, dropout: float, dense_units: Sequence[int],
                        l2: float) -> keras.Model:
    """`cnn` on unshuffled pixels: every 2 x 2 block of the input becomes one position with 12 channels before the
    first convolution, so a native 256 px face costs the conv blocks what a 128 px one costs `cnn`, while every
    pixel, and the up-sampling grid's phases, still reach the network (nothing is averaged away, as by an area
    down-sampling to 128 px).
    """
    return _conv_detector("cnn_unshuffle", image_size, [PixelUnshuffle(2, name="unshuffle")], conv_filters,
                          kernel_sizes, pooling, batch_norm, dropout, dense_units, l2)


@register_model("npr_patch")
def build_npr_patch(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int,
                    batch_norm: bool, dropout: float, l2: float) -> keras.Model:
    """Patch scores pooled into one (after LaDeDa, Cavia et al. 2024): the NPR residual, unshuffled, through a few
    convolutions without down-sampling, a 1 x 1 convolution giving every position its own logit, and the mean of
    those logits as the image's logit.

    The receptive field stays small (a 3 x 3 kernel per block on the unshuffled grid: about 2 * (2 * blocks + 1)
    pixels), so the model can only read local traces, never the face itself, and every position of any input
    size votes. `conv_filters` are the widths of the blocks, `kernel_sizes` their kernels.
    """
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    for layer in _residual_front():
        x = layer(x)
    x = conv_blocks(x, conv_filters, kernel_sizes, "none", batch_norm, l2)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name="patch_dropout")(x)
    x = layers.Conv2D(1, 1, kernel_regularizer=regularizer, name="patch_logit")(x)  # (batch, h, w, 1) per patch
    logit = layers.GlobalAveragePooling2D(name="logit")(x)  # (batch, 1): the mean patch logit
    return keras.Model(inputs, calibrated_output(logit), name="npr_patch")


@register_model("two_stream")
def build_two_stream(image_size: int, *, conv_filters: Sequence[int], kernel_sizes: Sequence[int] | int,
                     pooling: str, batch_norm: bool, dropout: float, dense_units: Sequence[int],
                     l2: float) -> keras.Model:
    """`cnn` and `npr` in one graph, trained together on one native-resolution input.

    The content stream sees the input area-averaged 2 x 2 (a 256 px face as the 128 px view `cnn` reads), the
    trace stream the neighbouring-pixel residual unshuffled to the same half side (what `npr` reads); each runs
    its own conv blocks (`content_conv1`..., `trace_conv1`...), and the two pooled features meet in one head.
    Averaging two separately trained models' logits (`benchmarks/bench_ensemble.py`) let the trace model vote
    "real" on a generated face whose trace a publisher's down-sampling had removed; trained jointly, on fakes
    that size matching and the degradations shrink, blur and re-compress, the head can learn that a missing
    trace says nothing and leave such a face to the content stream.
    """
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    content = layers.AveragePooling2D(2, name="area")(x)
    content = conv_blocks(content, conv_filters, kernel_sizes, pooling, batch_norm, l2, prefix="content_")
    trace = x
    for layer in _residual_front():
        trace = layer(trace)
    trace = conv_blocks(trace, conv_filters, kernel_sizes, pooling, batch_norm, l2, prefix="trace_")
    features = layers.Concatenate(name="streams")([layers.GlobalAveragePooling2D(name="content_gap")(content),
                                                   layers.GlobalAveragePooling2D(name="trace_gap")(trace)])
    return keras.Model(inputs, classifier_head(features, dense_units, dropout, l2), name="two_stream")


def average_members(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One flat model whose logit is the mean of the members' logits (a deep ensemble of independently trained
    draws), then the usual uncalibrated `calibration` and `p_fake`: fit it with `fakelib.train.calibrate`.

    Each member's layers are copied with the prefix `m1_`, `m2_`, ... and its weights, all on one shared input, so
    every later use (calibration, the combination, the per-layer explanations) sees one model with every member's
    convolutions (`m1_conv1`, `m2_conv1`, ...). Members must take the same input and each have a "logit" layer.

    Raises:
        ValueError: fewer than two members, inputs of different shapes, or a member without a "logit" layer.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members take different inputs: {sorted(shapes, key=str)}")
    inputs = keras.Input(shape=shapes.pop(), name="image")
    logits = []
    for index, member in enumerate(members, start=1):
        prefix = f"m{index}_"
        logit_model(member)  # a one-line error for a member without a "logit" layer

        def renamed(layer: keras.layers.Layer, prefix: str = prefix) -> keras.layers.Layer:
            return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

        copy = keras.models.clone_model(member, input_tensors=inputs, clone_function=renamed)
        for layer in member.layers:
            if layer.weights:
                copy.get_layer(prefix + layer.name).set_weights(layer.get_weights())
        logits.append(copy.get_layer(prefix + "logit").output)
    return keras.Model(inputs, calibrated_output(layers.Average(name="logit")(logits)), name=name)


def input_size(model: keras.Model) -> int:
    """The square input side a model's inputs are prepared at: its input shape, or for a fully convolutional
    model the `view_side` its `InputScale` layer carries."""
    shape = model.inputs[0].shape
    if shape[1] is not None:
        return int(shape[1])
    scales = [layer for layer in model._flatten_layers() if isinstance(layer, InputScale)]
    if not scales:
        raise ValueError("a fully convolutional model needs an InputScale layer to say its input side")
    return scales[0].view_side


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's Conv2D layers in forward order (nested models flattened)."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(conv_layer_names(layer))
        elif isinstance(layer, layers.Conv2D):
            names.append(layer.name)
    return names


def predict_probabilities(model: keras.Model, images, batch_size: int = 64, pad: bool = True):
    """(n,) float32 `p_fake` for (n, size, size, 3) raw pixels, one batch at a time.

    An image smaller than the input side is scored padded (`fakelib.images.load_view` pads it), exactly as
    training saw it: measured on faces-dev test faces shrunk to 80-112 px, the padded input kept a ROC-AUC of
    0.80-0.85 where the same faces scored at their own size fell to 0.61-0.74 and were all called real. A list
    of (side, side, 3) arrays of different sides is padded to the model's input side first, or, with `pad`
    False (a fully convolutional trace expert that trained on native windows, `images.native_window`), scored
    at their own sides, one group of equal sides at a time. Slicing per batch keeps memory at one batch even
    for a memory-mapped uint8 cache.
    """
    import numpy as np

    from fakelib.images import pad_square

    if isinstance(images, list) and not pad:
        probabilities = np.zeros(len(images), np.float32)
        by_shape: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            probabilities[indices] = predict_probabilities(model, np.stack([images[i] for i in indices]), batch_size)
        return probabilities
    if isinstance(images, list):
        full = max([input_size(model), *(image.shape[0] for image in images)])
        images = np.stack([pad_square(image, full) for image in images]) if images else np.zeros((0, full, full, 3))
    probabilities = np.zeros(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        pixels = np.asarray(images[start:start + batch_size], dtype=np.float32)
        probabilities[start:start + len(pixels)] = np.asarray(model(pixels, training=False)).reshape(-1)
    return probabilities


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model with `safe_mode=True` (no arbitrary code), with a one-line error for a bad path.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a loadable Keras model.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file; give the path of its model.keras")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load model {path}: not a Keras .keras archive")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive; the user needs one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load model {path}: {first_line}") from None
