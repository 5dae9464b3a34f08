"""The custom Keras layers of every fakelib model; the builders that use them live with the registry in `models`.

* `InputScale`: pixels in [0, 255] -> [0, 1], carrying the side the model's inputs are prepared at.
* `PlattScaling`: the calibration at the end of every head (identity until `fakelib.train` fits it).
* `AzimuthalSpectrum`: the 1-D log power spectrum of the "Unmasking DeepFakes with simple features" baseline
  (Durall et al.): grayscale, 2-D Fourier transform, azimuthal average.
* `NearestResidual`: the neighbouring-pixel residual of the NPR work (Tan et al., CVPR 2024): the image minus its
  nearest-neighbour down-then-up-sampled copy, which cancels image content and keeps the local correlations that
  a generator's up-sampling layers leave behind.
* `GramMatrix`: the channels' Gram matrix averaged over all positions (Gram-Net, Liu et al., CVPR 2020): a
  feature map's global texture statistics, which do not depend on where in the image a texture is.
* `PixelUnshuffle`: space-to-depth; each 2 x 2 block becomes one position with the block's four phases as
  channels, so the first convolution sees the up-sampling grid's phases as separate inputs.

Every layer is a registered Keras serializable (package "fakelib", so saved models find it by name wherever it
lives) with `get_config`, so models save and load as `.keras` files with `safe_mode=True`. This module imports
nothing from fakelib.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

# ITU-R BT.601 luma weights, the grayscale conversion of Pillow and OpenCV.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="fakelib")
class InputScale(layers.Layer):
    """Pixels in [0, 255] -> [0, 1], carrying the model's input side (`view_side`) in its saved config.

    A fully convolutional model accepts any side, so the side its inputs are prepared at (down-sampled to when
    larger, see `fakelib.images.load_view`) has to travel with the model instead of with its input shape.
    """

    def __init__(self, view_side: int, **kwargs):
        super().__init__(**kwargs)
        self.view_side = int(view_side)

    def call(self, inputs):
        return inputs / 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "view_side": self.view_side}


@keras.saving.register_keras_serializable(package="fakelib")
class PlattScaling(layers.Layer):
    """logit -> scale * logit + bias, with non-trainable weights set after training (identity until then)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", trainable=False, name="scale")
        self.bias = self.add_weight(shape=(), initializer="zeros", trainable=False, name="bias")

    def call(self, inputs):
        return inputs * self.scale + self.bias

    def compute_output_shape(self, input_shape):
        return input_shape


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


@keras.saving.register_keras_serializable(package="fakelib")
class GramMatrix(layers.Layer):
    """(batch, h, w, c) -> (batch, c (c + 1) / 2): the upper triangle of the channels' Gram matrix, averaged over the
    h x w positions, through a signed square root (as in bilinear pooling, so a few large products do not
    dominate). Any h and w: the statistics of an image at its own size."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        rows, cols = np.triu_indices(channels)
        self.channels, self.upper = channels, (rows * channels + cols).astype("int32")

    def call(self, inputs):
        shape = ops.shape(inputs)
        flat = ops.reshape(inputs, (shape[0], -1, self.channels))
        gram = ops.einsum("bnc,bnd->bcd", flat, flat) / ops.cast(shape[1] * shape[2], inputs.dtype)
        upper = ops.take(ops.reshape(gram, (shape[0], self.channels * self.channels)), self.upper, axis=1)
        return ops.sign(upper) * ops.sqrt(ops.abs(upper) + 1e-6)

    def compute_output_shape(self, input_shape):
        channels = int(input_shape[-1])
        return (input_shape[0], channels * (channels + 1) // 2)
