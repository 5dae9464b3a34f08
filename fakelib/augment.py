"""Photo degradations for training, applied alike to both classes: what cameras and the web do to a face.

A detector trained on one source learns that source's processing unless both classes go through the same
processing in training. Each image of a batch independently, each step with its own probability:

0. size matching (`match_sizes`): when some training images are smaller than the largest (an extra folder of
   small real photos next to 256 px faces, say), every large image, real or fake alike, is brought down to the
   side of a random small one as often as the class richest in small images has them, and every image that ends
   small, the natively small ones too, is then down-scaled by us a little further and saved again as JPEG. So a
   small face of the paired source is as often real as fake, and "shrunk and re-saved by our pipeline" is the
   last processing of every small training image, whatever its class;
1. cropped at native resolution to the training side (when training on crops);
2. down-scaled by a random factor with a random kernel (box, bilinear, Hamming, bicubic, Lanczos);
3. Gaussian blur; 4. unsharp-mask sharpening; 5. Gaussian sensor noise;
6. JPEG at a random quality and chroma subsampling, sometimes twice (a re-shared photo).

Every step works at the image's own side and the result is padded back into the batch's square exactly as
`fakelib.images.load_view` pads a small photo at inference, so training sees what prediction will see.
Pillow does the work (it releases the GIL, so tf.data's parallel calls overlap); the random generator is
seeded per batch, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from fakelib import images as imagelib
from fakelib.config import AugmentConfig

KERNELS = (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.HAMMING, Image.Resampling.BICUBIC,
           Image.Resampling.LANCZOS)
# Size matching's last down-scale of every image that ends small (see SizeMatcher): a factor in this range.
RESAVE_SCALE = (0.8, 0.95)


def degrades(config: AugmentConfig) -> bool:
    """True when any step of the chain can change an image."""
    return any(probability > 0 for probability in (config.rescale_prob, config.blur_prob, config.sharpen_prob,
                                                   config.noise_prob, config.jpeg_prob, config.match_sizes))


def sample(view: np.ndarray, side: int, out_side: int, config: AugmentConfig, rng: np.random.Generator,
           limit: int = 0) -> np.ndarray:
    """One training sample from a (size, size, 3) uint8 model input whose image fills the centred `side` square.

    A random window of the image at its native resolution (even offsets, so the image's 2 x 2 pixel grid
    stays aligned with the model's) becomes an (out_side, out_side, 3) uint8 sample: with probability
    `rescale_prob` the window is larger by 1 / factor and down-scaled by the factor with a random kernel;
    then blur, sharpening, noise and JPEG, each with its probability. A result smaller than `out_side`
    (a small image, or a strong down-scale of one) is padded like `images.pad_square`. A `limit` below `side`
    (size matching) first brings the whole image down to `limit` with a random kernel, and the result is then
    always re-saved as JPEG, as the smaller files of the other class were.
    """
    offset = imagelib.pad_offset(side, view.shape[0])
    square = view[offset:offset + side, offset:offset + side]
    resave = imagelib.MIN_SIDE <= limit < side
    if resave:
        square = np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize(
            (limit, limit), KERNELS[rng.integers(len(KERNELS))]))
        side = limit
    factor = rng.uniform(config.rescale_min, 1.0) if rng.random() < config.rescale_prob else 1.0
    window = min(side, int(np.ceil(out_side / factor)))
    top, left = (2 * int(rng.integers(0, (side - window) // 2 + 1)) for _ in range(2))
    image = Image.fromarray(np.ascontiguousarray(square[top:top + window, left:left + window]))
    target = max(min(imagelib.MIN_SIDE, window), int(round(window * factor)))
    if target < window:
        image = image.resize((target, target), KERNELS[rng.integers(len(KERNELS))])
    pixels = degrade(image, config, rng, resave)
    return imagelib.pad_square(pixels[:out_side, :out_side], out_side)


def degrade(image: Image.Image, config: AugmentConfig, rng: np.random.Generator, resave: bool = False) -> np.ndarray:
    """Blur, sharpening, noise and JPEG (once or twice), each with its probability; (side, side, 3) uint8 out.

    `resave`: JPEG always (a size-matched image is saved again like the smaller file it imitates).
    """
    if rng.random() < config.blur_prob:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*config.blur_sigma)))
    if rng.random() < config.sharpen_prob:
        image = image.filter(ImageFilter.UnsharpMask(radius=rng.uniform(0.5, 2.0), percent=int(rng.integers(40, 160)),
                                                     threshold=0))
    pixels = np.asarray(image)
    if rng.random() < config.noise_prob:
        noise = rng.normal(0.0, rng.uniform(0.5, config.noise_sigma), pixels.shape)
        pixels = np.clip(pixels + noise, 0, 255).round().astype(np.uint8)
    if rng.random() < config.jpeg_prob or resave:
        pixels = _jpeg(pixels, config, rng)
        if rng.random() < config.double_jpeg_prob:
            pixels = _jpeg(pixels, config, rng)
    return np.asarray(pixels, dtype=np.uint8)


def _jpeg(pixels: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    low, high = config.jpeg_quality
    subsampling = 2 if rng.random() < 0.7 else 0  # 4:2:0 as most cameras and sites, else 4:4:4
    return np.asarray(imagelib.reencode(pixels, int(rng.integers(low, high + 1)), subsampling))


def degrade_batch(pixels: np.ndarray, sides: np.ndarray, config: AugmentConfig, seed: np.ndarray | tuple[int, int],
                  out_side: int | None = None, limits: np.ndarray | None = None) -> np.ndarray:
    """`sample` for every image of a (batch, size, size, 3) uint8 batch; (batch, out_side, out_side, 3) uint8 out.

    `sides[i]` is the side of image i inside its input; `out_side` defaults to the input side (no crop);
    `limits[i]` is image i's size-matching side (0: none), from `SizeMatcher.limits`.
    """
    rng = rng_from(seed)
    size = pixels.shape[1]
    out_side = out_side or size
    limits = np.zeros(len(pixels), np.int64) if limits is None else np.asarray(limits)
    out = np.empty((len(pixels), out_side, out_side, 3), dtype=np.uint8)
    for index, (view, side) in enumerate(zip(pixels, np.asarray(sides).astype(int))):
        out[index] = sample(view, min(int(side), size) or size, out_side, config, rng, int(limits[index]))
    return out


def rng_from(seed) -> np.random.Generator:
    """A generator seeded from any int or sequence of ints (a tf.data seed pair may be negative)."""
    return np.random.default_rng([int(value) & 0xFFFFFFFFFFFFFFFF for value in np.ravel(seed)])


class SizeMatcher:
    """Draws each image's size-matching side (step 0 of the chain).

    With `probability` 1: an image as large as the largest training image is brought down, with probability
    `shrink` (the share of small images in the class that has most of them), to the side of a random smaller
    training image, whatever its own class; every image that is, or ends, smaller than the largest goes on down
    by a factor drawn from `RESAVE_SCALE` and is saved again as JPEG. Large faces of both classes are thereby
    shrunk equally often and to the same sides as the small ones, and every small image ends with our
    processing. Two weaker rules taught a native-resolution model a shortcut (docs/results.md, rounds 5 and 6):
    shrinking only the fakes to the small reals' sides ("shrunk and re-saved by fakelib = fake"), and shrinking
    the fakes while re-processing the small reals too (every small face that looked like faces-dev's was a
    shrunk fake, so a shrunk faces-dev real read as fake). `probability` below 1 leaves that share of images
    untouched. A set whose images all have one side is left as it is.
    """

    def __init__(self, labels: np.ndarray, sides: np.ndarray, probability: float):
        labels, sides = np.asarray(labels).astype(int), np.asarray(sides).astype(np.int64)
        self.largest = int(sides.max()) if len(sides) else 0
        self.small = sides[sides < self.largest]
        self.shrink = max([float((sides[labels == label] < self.largest).mean())
                           for label in (0, 1) if (labels == label).any()] or [0.0])
        self.probability = probability

    def limits(self, sides: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) int64 sides to bring images down to, 0 where nothing changes (the same rule for either class)."""
        sides = np.asarray(sides).astype(np.int64)
        limits = np.zeros(len(sides), np.int64)
        for index, side in enumerate(sides):
            if rng.random() >= self.probability:
                continue
            if side >= self.largest:
                if not len(self.small) or rng.random() >= self.shrink:
                    continue
                target = int(self.small[rng.integers(len(self.small))])
            else:
                target = int(side)
            target = max(imagelib.MIN_SIDE, int(target * rng.uniform(*RESAVE_SCALE)))
            limits[index] = target if target < side else 0
        return limits


def match_split(images: np.ndarray, labels: np.ndarray, sides: np.ndarray, probability: float,
                seed: int = 0, quality: tuple[int, int] = (70, 100)) -> tuple[np.ndarray, np.ndarray]:
    """Size matching alone, once and reproducibly, for a held-out split; (images, sides) out, others untouched.

    Validation picks the checkpoint, the calibration and the threshold: matched like training, it cannot reward
    a model for reading file sizes either. Only the matched images are copied.
    """
    rng = rng_from((seed, 1))
    limits = SizeMatcher(labels, sides, probability).limits(sides, rng)
    changed = np.flatnonzero(limits)
    if not len(changed):
        return images, np.asarray(sides)
    config = AugmentConfig.off(jpeg_quality=tuple(quality))
    images, sides = np.array(images), np.array(sides)
    size = images.shape[1]
    for index in changed:
        images[index] = sample(images[index], min(int(sides[index]), size), size, config, rng, int(limits[index]))
        sides[index] = limits[index]
    return images, sides
