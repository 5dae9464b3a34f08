"""Model registry: `create_model(name, **params)`, `list_models()`; functional Keras models that carry their preprocessing.

Every model takes raw pixel values, float32 in [0, 255] with shape (batch, size, size, 3), and returns one
sigmoid probability that the face is generated. Scaling happens inside the model, and the input size is
the model's own input shape, so training, explanation and prediction never copy constants.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
from keras import layers

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

    Parameters the builder does not take are ignored, so one flat model section of params.yaml can
    feed every architecture (the spectrum baseline has no conv filters, for example).

    Raises:
        ValueError: unknown `name` (the message lists the valid ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    builder = _REGISTRY[name]
    accepted = inspect.signature(builder).parameters
    used = {key: value for key, value in params.items() if key in accepted}
    return builder(image_size=image_size, **used)


def image_input(image_size: int) -> keras.KerasTensor:
    """The shared input: raw RGB pixel values in [0, 255], float32."""
    return keras.Input(shape=(image_size, image_size, 3), name="image")


def classifier_head(features: keras.KerasTensor, dense_units: Sequence[int], dropout: float,
                    l2: float) -> keras.KerasTensor:
    """Dense layers with L2 and dropout, then the single sigmoid output `p_fake`."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    x = layers.Dropout(dropout, name="head_dropout")(features) if dropout > 0 else features
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"dense{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dense{index}_dropout")(x)
    return layers.Dense(1, activation="sigmoid", name="p_fake")(x)


def conv_blocks(x: keras.KerasTensor, conv_filters: Sequence[int], kernel_sizes: Sequence[int], pooling: str,
                batch_norm: bool, l2: float) -> keras.KerasTensor:
    """Conv -> (batch norm) -> ReLU -> down-sampling, once per entry of `conv_filters`.

    Conv layers are named `conv1`, `conv2`, ... so explanations and reports can name them.
    `pooling="stride"` down-samples with a stride-2 convolution instead of a pooling layer.
    """
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    for index, (filters, kernel) in enumerate(zip(conv_filters, kernel_sizes), start=1):
        strides = 2 if pooling == "stride" else 1
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=not batch_norm,
                          kernel_regularizer=regularizer, name=f"conv{index}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        if pooling == "max":
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
        elif pooling == "avg":
            x = layers.AveragePooling2D(2, name=f"pool{index}")(x)
    return x


@register_model("cnn")
def build_cnn(image_size: int, conv_filters: Sequence[int] = (16, 32, 64, 128),
              kernel_sizes: Sequence[int] | int = 3, pooling: str = "max", batch_norm: bool = True,
              dropout: float = 0.3, dense_units: Sequence[int] = (64,), l2: float = 1e-4) -> keras.Model:
    """The plain detector: conv blocks, global average pooling, a dense head, one sigmoid output."""
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(conv_filters)
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = conv_blocks(x, conv_filters, kernel_sizes, pooling, batch_norm, l2)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier_head(x, dense_units, dropout, l2), name="cnn")


def input_size(model: keras.Model) -> int:
    """The square input side a model expects, read from its own input shape."""
    shape = model.inputs[0].shape
    return int(shape[1])


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's Conv2D layers in forward order (nested models flattened)."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(conv_layer_names(layer))
        elif isinstance(layer, layers.Conv2D):
            names.append(layer.name)
    return names


def predict_probabilities(model: keras.Model, images, batch_size: int = 64):
    """(n,) float32 `p_fake` for (n, size, size, 3) raw pixels, one batch at a time.

    Slicing per batch keeps memory at one batch even for a memory-mapped uint8 cache.
    """
    import numpy as np

    outputs = [np.asarray(model(np.asarray(images[start:start + batch_size], dtype=np.float32), training=False))
               .reshape(-1) for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros(0, np.float32)


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model with `safe_mode=True` (no arbitrary code), with a one-line error for a bad path.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a loadable Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive; the user needs one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load model {path}: {first_line}") from None
from fakelib import frequency  # noqa: E402,F401  registers spectrum and npr models
