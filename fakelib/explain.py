"""Multi-layer CAM methods (Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM) in one pass; a registry of methods.

`compute_cams(model, images)` returns, for every requested convolution layer, a heatmap at input resolution
in [0, 1], plus the model's probabilities, from ONE forward and ONE backward pass: the model is rebuilt as
`inputs -> [conv1 output, ..., convN output, head input]` over a fresh `keras.Input` (calling each layer again,
weights shared), which also inlines nested models and avoids the `None` gradients Keras 3 can give for models
loaded from `.keras` or nested in another model. Plotting lives in `fakelib.overlay`.

Conventions, chosen to match tf-keras-vis (the test oracle) so maps can be compared to 1e-4:
- the CAM is taken on each Conv2D layer's own output (before batch norm and ReLU), as tf-keras-vis does;
- the explained score is the logit of `p_fake` (tf-keras-vis's `ReplaceToLinear`); for a sigmoid output this
  gives the same Grad-CAM map as the probability, without the saturation of p(1 - p) when p is near 0 or 1;
- maps are upsampled bilinearly with aligned corners (scipy `zoom(order=1)`) and min-max normalized per image.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fakelib import images as imagelib
from fakelib.models import conv_layer_names, fully_convolutional, input_size
from fakelib.quiet import muted_logger

# fn(activations, gradients) -> cam, all tf tensors: (batch, h, w, channels) x2 -> (batch, h, w), before ReLU.
CamMethod = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
_METHODS: dict[str, CamMethod] = {}
TARGETS = ("fake", "real", "predicted")
# Same epsilon as tf-keras-vis's normalize(): a flat map becomes all zeros instead of dividing by zero.
NORMALIZE_EPSILON = 1e-7


def register_method(name: str) -> Callable[[CamMethod], CamMethod]:
    """Decorator adding a CAM method `fn(activations, gradients) -> cam` to the registry under `name`."""

    def decorator(method: CamMethod) -> CamMethod:
        _METHODS[name] = method
        return method

    return decorator


def list_methods() -> list[str]:
    """Names accepted by `compute_cams(method=...)`, in registration order."""
    return list(_METHODS)


def get_method(name: str) -> CamMethod:
    """The registered CAM method `name`.

    Raises:
        ValueError: unknown `name` (the message lists the valid ones).
    """
    if name not in _METHODS:
        raise ValueError(f"unknown CAM method {name!r}; available: {', '.join(list_methods())}")
    return _METHODS[name]


def _spatial_sum(tensor: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tensor, axis=(1, 2), keepdims=True)


@register_method("gradcam")
def gradcam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): channel weights are the spatial mean of the gradients."""
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # (batch, 1, 1, channels)
    return tf.reduce_sum(activations * weights, axis=-1)


@register_method("gradcam++")
def gradcam_plus_plus(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018), in tf-keras-vis's formulation (alphas normalized per channel).

    The paper's exp(score) factor multiplies every derivative by the same positive number per image; it cancels
    in the alphas and only rescales the map, which the normalization removes, so it is left out (it overflows
    float32 for logits above ~88).
    """
    second = gradients * gradients  # products, not pow: the same rounding eagerly and inside tf.function
    third = second * gradients
    denominator = 2.0 * second + third * _spatial_sum(activations)
    denominator += tf.cast(tf.equal(second, 0.0), second.dtype)  # alpha = 0 where the gradient is 0
    alphas = second / denominator
    alpha_sum = _spatial_sum(alphas)
    alphas /= alpha_sum + tf.cast(tf.equal(alpha_sum, 0.0), alpha_sum.dtype)
    weights = _spatial_sum(tf.nn.relu(gradients) * alphas)  # (batch, 1, 1, channels)
    return tf.reduce_sum(activations * weights, axis=-1)


@register_method("layercam")
def layercam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient; sharper in early layers."""
    return tf.reduce_sum(activations * tf.nn.relu(gradients), axis=-1)


@register_method("hirescam")
def hirescam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, provably faithful for a GAP head."""
    return tf.reduce_sum(activations * gradients, axis=-1)


@dataclass(frozen=True)
class CamResult:
    """What `compute_cams` returns.

    Attributes:
        heatmaps: layer name -> (batch, height, width) float32 in [0, 1] at the model's input resolution,
            in forward order of the layers.
        probabilities: (batch,) float32, the model's `p_fake` for each image.
        method: the CAM method used.
        target: which score was explained ("fake", "real" or "predicted").
    """

    heatmaps: dict[str, np.ndarray]
    probabilities: np.ndarray
    method: str
    target: str

    @property
    def layers(self) -> list[str]:
        return list(self.heatmaps)

    def image(self, index: int) -> dict[str, np.ndarray]:
        """Layer name -> (height, width) heatmap of one image."""
        return {name: maps[index] for name, maps in self.heatmaps.items()}


# --------------------------------------------------------------------------------------------- graph rebuilding


@dataclass(frozen=True)
class _CamGraph:
    """A rebuilt model `image -> [conv outputs..., score source]` and how to turn the score source into a logit."""

    model: keras.Model
    layers: tuple[str, ...]
    score: str  # what the last output is: "head_input" (of `head`), "logit", or "probability"
    head: keras.layers.Dense | None = None  # the sigmoid Dense output layer when score == "head_input"
    steps: dict = field(default_factory=dict)  # (method, target, size) -> compiled step


def _functional_of(operation) -> keras.Model | None:
    """The functional graph behind a nested model (Sequential models keep theirs in `_functional`)."""
    if isinstance(operation, keras.Sequential):
        return getattr(operation, "_functional", None)
    if isinstance(operation, keras.Model) and hasattr(operation, "_run_through_graph"):
        return operation
    return None


def _inline(model: keras.Model, inputs, record: Callable) -> object:
    """Call every layer of `model` (nested models inlined) on `inputs`; `record(layer, args, outputs)` sees each call.

    Keras 3's own `Functional.call` walks the graph with `_run_through_graph`; `clone_model` does the same. There
    is no public API that inlines nested models, hence this one private call (covered by the nested-model test).
    """
    def operation_fn(operation):
        nested = _functional_of(operation)
        if nested is not None:
            return lambda *args, **kwargs: _inline(nested, args[0] if len(args) == 1 else list(args), record)

        def call(*args, **kwargs):
            outputs = operation(*args, **kwargs)
            record(operation, args, outputs)
            return outputs

        return call

    return model._run_through_graph(inputs, operation_fn=operation_fn)


def _is_sigmoid(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.sigmoid or getattr(activation, "__name__", "") == "sigmoid"


def _build_cam_graph(model: keras.Model, layers: Sequence[str]) -> _CamGraph:
    fresh = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="image")
    captured: dict[str, keras.KerasTensor] = {}
    calls: list[tuple] = []

    def record(layer, args, outputs):
        if layer.name in layers and layer.name not in captured:
            captured[layer.name] = outputs
        calls.append((layer, args, outputs))

    functional = _functional_of(model)
    if functional is None:
        raise ValueError(f"{type(model).__name__} is not a functional or Sequential Keras model; cannot explain it")
    output = keras.tree.flatten(_inline(functional, fresh, record))[0]
    missing = [name for name in layers if name not in captured]
    if missing:
        raise ValueError(f"layers not reached from the model input: {', '.join(missing)}")
    last_layer, last_args, last_outputs = calls[-1]
    score, head = "probability", None
    if last_outputs is output and _is_sigmoid(last_layer):
        if isinstance(last_layer, keras.layers.Dense):  # the logit is recomputed from the head's input
            score, head, output = "head_input", last_layer, last_args[0]
        elif isinstance(last_layer, keras.layers.Activation):
            score, output = "logit", last_args[0]
    cam_model = keras.Model(fresh, [captured[name] for name in layers] + [output], name="cam_graph")
    return _CamGraph(cam_model, tuple(layers), score, head)


_GRAPH_CACHE: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _cam_graph(model: keras.Model, layers: Sequence[str]) -> _CamGraph:
    """The rebuilt graph for (model, layers), built once per model (layers share the model's weights)."""
    per_model = _GRAPH_CACHE.setdefault(model, {})
    key = tuple(layers)
    if key not in per_model:
        per_model[key] = _build_cam_graph(model, key)
    return per_model[key]


def _logits(graph: _CamGraph, score_source: tf.Tensor) -> tf.Tensor:
    """(batch,) logit of p_fake from the last output of the rebuilt graph."""
    if graph.score == "head_input":
        score_source = tf.matmul(score_source, graph.head.kernel)
        if graph.head.use_bias:
            score_source += graph.head.bias
    elif graph.score == "probability":  # an unknown head: the probability's logit, clipped away from 0 and 1
        probability = tf.clip_by_value(score_source, 1e-7, 1.0 - 1e-7)
        score_source = tf.math.log(probability) - tf.math.log1p(-probability)
    return tf.reshape(score_source, (-1,))


# ------------------------------------------------------------------------------------------------ upsampling


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) matrix of bilinear weights with aligned corners, as scipy.ndimage.zoom(order=1)."""
    matrix = np.zeros((target, source), dtype=np.float64)
    if source == 1 or target == 1:
        matrix[:, 0] = 1.0
        return matrix.astype(np.float32)
    positions = np.arange(target) * (source - 1) / (target - 1)
    lower = np.minimum(np.floor(positions).astype(int), source - 2)
    fraction = positions - lower
    matrix[np.arange(target), lower] = 1.0 - fraction
    matrix[np.arange(target), lower + 1] += fraction
    return matrix.astype(np.float32)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Resize (batch, h, w) maps to (batch, size, size) bilinearly with aligned corners (two small matmuls)."""
    rows = _interpolation_matrix(maps.shape[1], size)  # (size, h)
    columns = _interpolation_matrix(maps.shape[2], size)  # (size, w)
    return np.einsum("Hh,bhw,Ww->bHW", rows, maps.astype(np.float32), columns, optimize=True)


def normalize(maps: np.ndarray) -> np.ndarray:
    """Min-max normalize each (height, width) map of a batch into [0, 1]; a flat map becomes zeros."""
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return np.clip((maps - low) / (high - low + NORMALIZE_EPSILON), 0.0, 1.0).astype(np.float32)


def _normalize_tf(maps: tf.Tensor) -> tf.Tensor:
    """`normalize` in TensorFlow, for the compiled step."""
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.clip_by_value((maps - low) / (high - low + NORMALIZE_EPSILON), 0.0, 1.0)


def _upsample_tf(maps: tf.Tensor, size: int) -> tf.Tensor:
    """`upsample` in TensorFlow: rows @ map @ columns^T, skipped when the map already has the input size."""
    height, width = int(maps.shape[1]), int(maps.shape[2])
    if (height, width) == (size, size):
        return maps
    rows = tf.constant(_interpolation_matrix(height, size))  # (size, h)
    columns = tf.constant(_interpolation_matrix(width, size).T)  # (w, size)
    return tf.matmul(tf.matmul(rows, maps), columns)  # matmul broadcasts the batch axis




def _compiled_step(graph: _CamGraph, method: str, target: str, size: int) -> Callable:
    """A `tf.function` batch -> (maps per layer, probabilities): pass, CAM, upsampling, normalization in one graph.

    Compiling the whole step makes it ~3x faster than eager on CPU; it is built once per (graph, method, target).
    """
    key = (method, target, size)
    if key not in graph.steps:
        cam_method = get_method(method)

        @tf.function(reduce_retracing=True)
        def step(batch: tf.Tensor):
            activations, gradients, logits = _forward_backward(graph, batch, target)
            maps = [_normalize_tf(_upsample_tf(tf.nn.relu(cam_method(activation, gradient)), size))
                    for activation, gradient in zip(activations, gradients)]
            return maps, tf.sigmoid(logits)

        graph.steps[key] = step
    return graph.steps[key]


# ------------------------------------------------------------------------------------------------ public API


def _as_batch(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Validate raw pixels and return them as (batch, size, size, 3) float32 in [0, 255]."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    size = input_size(model)
    if fully_convolutional(model) and array.ndim == 4 and array.shape[1] == array.shape[2] and array.shape[1] >= 32:
        size = array.shape[1]  # a fully convolutional model explains an image at its own size
    if array.ndim != 4 or array.shape[1:] != (size, size, 3):
        raise ValueError(f"images must be (batch, {size}, {size}, 3) raw pixels for this model, got {array.shape}; "
                         "use fakelib.explain.load_images to fit files to the model's input size")
    return array.astype(np.float32, copy=False)


def _resolve_layers(model: keras.Model, layers: Sequence[str] | str | None) -> list[str]:
    available = conv_layer_names(model)
    if not available:
        raise ValueError("the model has no Conv2D layer to explain")
    if layers is None:
        return available
    requested = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in requested if name not in available]
    if unknown or not requested:
        raise ValueError(f"unknown conv layer(s) {unknown or requested}; available: {', '.join(available)}")
    return [name for name in available if name in requested]  # forward order


def _sign(target: str, logits: tf.Tensor) -> tf.Tensor:
    if target == "fake":
        return tf.ones_like(logits)
    if target == "real":
        return -tf.ones_like(logits)
    return tf.where(logits >= 0.0, 1.0, -1.0)


def _forward_backward(graph: _CamGraph, batch: tf.Tensor, target: str):
    """One forward and one backward pass: (activations per layer, gradients per layer, logits)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(batch)  # record the whole graph from the pixels on, but no gradients for the weights
        outputs = graph.model(batch, training=False)
        activations, score_source = outputs[:-1], outputs[-1]
        logits = _logits(graph, score_source)
        # Images are independent at inference (batch norm uses moving statistics), so the gradient of the
        # summed scores gives every image's own gradient.
        score = tf.reduce_sum(logits * tf.stop_gradient(_sign(target, logits)))
    gradients = tape.gradient(score, activations)
    unconnected = [name for name, gradient in zip(graph.layers, gradients) if gradient is None]
    if unconnected:  # a bug, never a silent all-zero map
        raise RuntimeError(f"no gradient reaches layer(s) {', '.join(unconnected)} from the model's score")
    return activations, gradients, logits


def compute_cams(model: keras.Model, images: np.ndarray, method: str = "gradcam",
                 layers: Sequence[str] | str | None = None, target: str = "fake",
                 batch_size: int = 32) -> CamResult:
    """Heatmaps of every requested conv layer from one forward and one backward pass per batch.

    Args:
        model: a fakelib model (raw pixels in, `p_fake` out): just built or trained, loaded from `.keras`,
            or nested inside another model.
        images: (batch, size, size, 3) or one (size, size, 3) image, uint8 or float in [0, 255], at the model's
            input size (see `load_images`).
        method: one of `list_methods()`.
        layers: conv layer names (any order; returned in forward order); None = all of them.
        target: explain the evidence for "fake" (default), for "real", or for each image's "predicted" class.
        batch_size: images per forward/backward pass (bounds memory).

    Returns:
        A `CamResult`; a single image still gets a batch axis of 1.

    Raises:
        ValueError: unknown method, layer or target, or images of the wrong shape.
    """
    get_method(method)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    pixels = _as_batch(model, images)
    names = _resolve_layers(model, layers)
    step = _compiled_step(_cam_graph(model, names), method, target, int(pixels.shape[1]))
    heatmaps: dict[str, list[np.ndarray]] = {name: [] for name in names}
    probabilities = []
    for start in range(0, len(pixels), batch_size):
        with muted_logger("tensorflow", logging.ERROR):  # each new model's retracing warning is expected
            maps, batch_probabilities = step(tf.convert_to_tensor(pixels[start:start + batch_size]))
        for name, layer_maps in zip(names, maps):
            heatmaps[name].append(layer_maps.numpy())
        probabilities.append(batch_probabilities.numpy())
    return CamResult({name: np.concatenate(maps) for name, maps in heatmaps.items()},
                     np.concatenate(probabilities).astype(np.float32), method, target)


def compute_cams_per_layer(model: keras.Model, images: np.ndarray, method: str = "gradcam",
                           layers: Sequence[str] | str | None = None, target: str = "fake") -> CamResult:
    """Reference implementation: the same maps, one forward/backward pass per layer (tests and benchmark only)."""
    names = _resolve_layers(model, layers)
    results = [compute_cams(model, images, method, [name], target) for name in names]
    return CamResult({name: result.heatmaps[name] for name, result in zip(names, results)},
                     results[0].probabilities, method, target)


def by_depth(result: CamResult) -> CamResult:
    """An ensemble's maps (`models.average_members`: layers `m1_conv1`, `m2_conv1`, ...) as one map per layer of
    the members' shared architecture: the members' maps of `conv1` averaged (each member counts once, as its
    logit does) and renormalized per image, under the name `conv1`. Figures show this, one tile per depth instead
    of one per member and depth. Any other result (a single model) is returned as it is."""
    groups: dict[str, list[str]] = {}
    for name in result.layers:
        match = re.fullmatch(r"m(\d+)_(.+)", name)
        if match is None:
            return result
        groups.setdefault(match.group(2), []).append(name)
    if len(groups) == len(result.layers) or len({len(names) for names in groups.values()}) != 1:
        return result
    merged = {layer: normalize(np.mean([result.heatmaps[name] for name in names], axis=0))
              for layer, names in groups.items()}
    return CamResult(merged, result.probabilities, result.method, result.target)


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(batch,) `p_fake` of raw-pixel images, without gradients."""
    from fakelib.models import predict_probabilities as predict

    return predict(model, _as_batch(model, images), batch_size)


def load_images(model: keras.Model, sources: Sequence[str | Path | bytes] | str | Path | bytes) -> np.ndarray:
    """Decode image files (or bytes) and fit them to the model's input size: (n, size, size, 3) uint8.

    Raises:
        fakelib.images.ImageError: a source is not a usable image (the message says why).
    """
    if isinstance(sources, (str, Path, bytes)):
        sources = [sources]
    size = input_size(model)
    return np.stack([imagelib.load_array(source, size, min_size=imagelib.MIN_SIDE) for source in sources])
