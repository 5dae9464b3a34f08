"""Spectrum (Durall et al.) and NPR-style residual layers and the models built on them, registered in `models`.

Both models look at how pixels relate to their neighbours rather than at what the face shows:

* `spectrum` is the "Unmasking DeepFakes with simple features" baseline: grayscale, 2-D Fourier transform,
  azimuthal average of the log power spectrum, then logistic regression (standardization + one sigmoid unit).
* `npr` feeds a small CNN with the neighbouring-pixel residual of the NPR work (Tan et al., CVPR 2024):
  the image minus its nearest-neighbour down-then-up-sampled copy, which cancels image content and keeps the
  local correlations that a generator's up-sampling layers leave behind. The residual is then unshuffled
  (space-to-depth): each 2 x 2 block becomes one position with the block's four phases as channels, so the
  first convolution sees the up-sampling grid's phases as separate inputs, at a quarter of the positions.

Both layers are registered Keras serializables with `get_config`, so the models save and load as `.keras` files
with `safe_mode=True`, and both take the shared raw-pixel input of `fakelib.models`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from fakelib.models import InputScale, calibrated_output, classifier_head, conv_blocks, image_input, register_model

# ITU-R BT.601 luma weights, the grayscale conversion of Pillow and OpenCV.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def radial_bins(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer radius of every frequency of an unshifted `height` x `width` DFT, and the count per radius.

    Frequency index k stands for min(k, n - k) cycles (the same distances as after `np.fft.fftshift` with the
    centre at n // 2), and the radius is floored as in Durall et al.'s `azimuthalAverage`.

    Returns:
        (bin index of each frequency, (height * width,) int32; pixels per bin, (n_bins,) int64).
    """
    frequency_y = np.minimum(np.arange(height), height - np.arange(height))
    frequency_x = np.minimum(np.arange(width), width - np.arange(width))
    radius = np.hypot(frequency_y[:, None], frequency_x[None, :])  # (height, width)
    index = np.floor(radius).astype(np.int32).reshape(-1)
    return index, np.bincount(index)


def block_factor(factor: int) -> int:
    """`factor` as an int, the side of the square blocks the residual and unshuffle layers work on (>= 2)."""
    if int(factor) < 2:
        raise ValueError(f"factor = {factor!r} is not allowed; expected an integer >= 2")
    return int(factor)


@keras.saving.register_keras_serializable(package="fakelib")
class AzimuthalSpectrum(layers.Layer):
    """(batch, size, size, 3) pixels in [0, 255] -> (batch, n_bins) azimuthally averaged log power spectrum.

    The image is converted to grayscale in [0, 1], Fourier transformed, and the log of its power
    |F|^2 / (height * width) is averaged over rings of integer radius (0 = the mean brightness, the last bin
    the corners of the spectrum). The ring average is a fixed segment mean, not a weight: it follows from
    the input size, so nothing is trained or saved for it.

    Args:
        epsilon: added to the power before the log (keeps flat images finite).
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        height, width = int(input_shape[1]), int(input_shape[2])
        self._shape = (height, width)  # static: tf.data batches can arrive with unknown spatial dims
        index, counts = radial_bins(height, width)
        self.n_bins = int(len(counts))
        self._bin_index = index
        self._inverse_counts = (1.0 / counts).astype(np.float32)

    def call(self, inputs):
        gray = ops.tensordot(ops.cast(inputs, "float32") / 255.0, np.asarray(LUMA_WEIGHTS, np.float32),
                             axes=[[3], [0]])  # (batch, height, width)
        gray = ops.reshape(gray, (-1, *self._shape))
        real, imaginary = ops.fft2((gray, ops.zeros_like(gray)))
        pixels = float(self._shape[0] * self._shape[1])
        log_power = ops.log((ops.square(real) + ops.square(imaginary)) / pixels + self.epsilon)
        flat = ops.transpose(ops.reshape(log_power, (-1, int(pixels))))  # (height * width, batch)
        sums = ops.segment_sum(flat, self._bin_index, num_segments=self.n_bins)  # (n_bins, batch)
        return ops.transpose(sums) * self._inverse_counts

    def compute_output_shape(self, input_shape):
        _, counts = radial_bins(int(input_shape[1]), int(input_shape[2]))
        return (input_shape[0], len(counts))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="fakelib")
class NearestResidual(layers.Layer):
    """x minus its nearest-neighbour down-then-up-sampled copy: (batch, h, w, c) -> same shape.

    With `factor` 2 every pixel loses the top-left pixel of its 2 x 2 block, so smooth image content cancels
    and what is left is the correlation between neighbours that up-sampling layers impose. Any size works;
    a partial last block is compared with its own top-left pixel.
    """

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = block_factor(factor)

    def call(self, inputs):
        factor = self.factor
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        down = inputs[:, ::factor, ::factor, :]
        up = ops.repeat(ops.repeat(down, factor, axis=1), factor, axis=2)
        return inputs - up[:, :height, :width, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="fakelib")
class PixelUnshuffle(layers.Layer):
    """Space-to-depth: (batch, h, w, c) -> (batch, h // f, w // f, c * f * f), lossless for even sides.

    Channel `(dy * f + dx) * c + k` of output position (i, j) is input channel k at pixel (f*i + dy, f*j + dx),
    the layout of `tf.nn.space_to_depth`. A trailing row or column that does not fill a block is dropped.
    Written with reshape and transpose so it runs on every Keras backend.
    """

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = block_factor(factor)

    def build(self, input_shape):
        self._channels = int(input_shape[-1])

    def call(self, inputs):
        factor, channels = self.factor, self._channels
        rows, columns = ops.shape(inputs)[1] // factor, ops.shape(inputs)[2] // factor  # any side (fully conv)
        x = inputs[:, :rows * factor, :columns * factor, :]
        x = ops.reshape(x, (-1, rows, factor, columns, factor, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (batch, rows, columns, dy, dx, channels)
        return ops.reshape(x, (-1, rows, columns, factor * factor * channels))

    def compute_output_shape(self, input_shape):
        factor = self.factor
        spatial = [None if dim is None else dim // factor for dim in input_shape[1:3]]
        return (input_shape[0], *spatial, input_shape[3] * factor**2)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@register_model("spectrum")
def build_spectrum(image_size: int, l2: float = 1e-4) -> keras.Model:
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


@register_model("npr")
def build_npr(image_size: int, conv_filters: Sequence[int] = (16, 32, 64, 128),
              kernel_sizes: Sequence[int] | int = 3, pooling: str = "max", batch_norm: bool = True,
              dropout: float = 0.3, dense_units: Sequence[int] = (64,), l2: float = 1e-4) -> keras.Model:
    """The NPR-style detector: neighbouring-pixel residual -> unshuffle -> the shared conv blocks -> pooling -> head.

    Works best when images reach the model at their native resolution: any resampling before it (resize,
    crop-and-resize augmentation) blurs the up-sampling traces the residual isolates. The unshuffle halves the
    side before the first convolution, so a 256 px input costs the conv blocks what a 128 px one costs `cnn`.
    """
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(conv_filters)
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    x = NearestResidual(2, name="npr")(x)
    x = PixelUnshuffle(2, name="unshuffle")(x)
    x = conv_blocks(x, conv_filters, kernel_sizes, pooling, batch_norm, l2)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier_head(x, dense_units, dropout, l2), name="npr")


@register_model("npr_patch")
def build_npr_patch(image_size: int, conv_filters: Sequence[int] = (32, 64, 128),
                    kernel_sizes: Sequence[int] | int = 3, batch_norm: bool = True, dropout: float = 0.0,
                    l2: float = 1e-4) -> keras.Model:
    """Patch scores pooled into one (after LaDeDa, Cavia et al. 2024): the NPR residual, unshuffled, through a few
    convolutions without down-sampling, a 1 x 1 convolution giving every position its own logit, and the mean of
    those logits as the image's logit.

    The receptive field stays small (a 3 x 3 kernel per block on the unshuffled grid: about 2 * (2 * blocks + 1)
    pixels), so the model can only read local traces, never the face itself, and every position of any input
    size votes. `conv_filters` are the widths of the blocks, `kernel_sizes` their kernels.
    """
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(conv_filters)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = image_input(None)
    x = InputScale(image_size, name="scale")(inputs)
    x = NearestResidual(2, name="npr")(x)
    x = PixelUnshuffle(2, name="unshuffle")(x)
    x = conv_blocks(x, conv_filters, kernel_sizes, "none", batch_norm, l2)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name="patch_dropout")(x)
    x = layers.Conv2D(1, 1, kernel_regularizer=regularizer, name="patch_logit")(x)  # (batch, h, w, 1) per patch
    logit = layers.GlobalAveragePooling2D(name="logit")(x)  # (batch, 1): the mean patch logit
    return keras.Model(inputs, calibrated_output(logit), name="npr_patch")
