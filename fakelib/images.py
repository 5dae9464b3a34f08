"""Robust image decoding shared by data, scrape, dedup, audit and predict: every failure becomes a short reason."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Smallest side a face is trained on or scored at (train, evaluate, predict, explain, explore alike): below it a
# face carries no usable detail, and such files are usually thumbnails or icons.
MIN_SIDE = 32
# A decoded image larger than this is refused (decompression bombs); 8k x 8k is far beyond any face photo.
MAX_PIXELS = 64_000_000
# A file larger than this is refused before it is read (a junk file named .jpg must not fill memory);
# $FAKELIB_MAX_IMAGE_BYTES changes it.
MAX_BYTES = 100_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageError(ValueError):
    """An image that cannot be used; `reason` is a short machine-readable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, PA, RGBA, CMYK, I;16, I, F) to 8-bit RGB.

    Transparent pixels are composited on white, the way a browser shows them; 16-bit and float images
    are scaled from their own range, not clipped.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def max_image_bytes() -> int:
    """The file-size limit: `$FAKELIB_MAX_IMAGE_BYTES` when set to a positive integer, else `MAX_BYTES`."""
    value = os.environ.get("FAKELIB_MAX_IMAGE_BYTES", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_BYTES


def read_image_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, refused by size before reading.

    Raises:
        ImageError: reason `too_large` or `unreadable`.
    """
    limit = max_bytes or max_image_bytes()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise ImageError("too_large", f"{size} bytes exceeds the {limit} byte limit")
            return handle.read(limit + 1)
    except OSError as error:
        raise ImageError("unreadable", f"cannot read file: {error.strerror or error}") from None


def open_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS, min_size: int = 1,
               max_bytes: int | None = None) -> Image.Image:
    """Open and fully decode an image from a path or bytes, returning it in RGB.

    The returned image's `format` is that of the source ("JPEG", "PNG", ...), so callers need not open it twice.

    Raises:
        ImageError: reason is one of `empty`, `not_image`, `truncated`, `too_many_pixels`, `too_small`, `unreadable`,
            `too_large`.
    """
    data = source if isinstance(source, bytes) else read_image_bytes(source, max_bytes)
    if not data:
        raise ImageError("empty", "zero bytes")
    # No process-wide Pillow setting is touched, so this is safe from many threads at once: the pixel
    # limit is checked from the header before decoding, and Pillow's own bomb guard stays as a backstop.
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError("too_many_pixels", f"{width}x{height} exceeds the {max_pixels} pixel limit")
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError("too_many_pixels", f"exceeds Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not_image", "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError("truncated", f"corrupt or truncated image: {error}") from None
    if min(image.size) < min_size:
        raise ImageError("too_small", f"{image.size[0]}x{image.size[1]} is smaller than {min_size} px")
    rgb = to_rgb(image)
    rgb.format = image.format
    return rgb


def square_side(path: str | Path) -> int:
    """The side of an image file's centre square (its shorter side), read from its header without decoding."""
    with Image.open(path) as image:
        return min(image.size)


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to `size` x `size` (area filter when shrinking)."""
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        resample = Image.Resampling.BOX if side > size else Image.Resampling.BICUBIC
        image = image.resize((size, size), resample)
    return image


def encode_jpeg(image: Image.Image | np.ndarray, quality: int, subsampling: int = 2) -> bytes:
    """Encode an RGB image (Pillow or (height, width, 3) uint8) as JPEG bytes at `quality`, no EXIF.

    `subsampling` is Pillow's chroma code: 2 = 4:2:0 (most cameras and sites), 0 = 4:4:4.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
    return buffer.getvalue()


def reencode(image: Image.Image | np.ndarray, quality: int, subsampling: int = 2) -> Image.Image:
    """`image` after one JPEG round trip at `quality` (the equalization and the training degradation alike)."""
    return Image.open(io.BytesIO(encode_jpeg(image, quality, subsampling))).convert("RGB")


# Grey of the padding around an image smaller than the model's input: a constant leaves a zero neighbouring-pixel
# residual, so padding adds no up-sampling trace (up-sampling a small real photo plants exactly that trace).
PAD_VALUE = 128


def square_view(image: Image.Image, size: int) -> tuple[Image.Image, int]:
    """The resolution policy of every model input: centre square, never up-sampled.

    A square larger than `size` is down-sampled with an area (box) filter, which anti-aliases; a smaller one
    keeps its pixels untouched. Returns the square and its side (<= `size`); `pad_square` places it in the
    model's input.
    """
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side > size:
        image, side = image.resize((size, size), Image.Resampling.BOX), size
    return image, side


def pad_offset(side: int, size: int) -> int:
    """Top-left offset of a `side` square centred in `size`, rounded down to an even number of pixels.

    Even offsets keep the image's own 2 x 2 pixel grid aligned with the model's (the NPR residual and the
    unshuffle work on 2 x 2 blocks), so a padded image has the same residual as the image alone.
    """
    return max(0, (size - side) // 2) & ~1


def pad_square(array: np.ndarray, size: int) -> np.ndarray:
    """Place a (side, side, 3) uint8 square centred on a (size, size, 3) canvas of `PAD_VALUE` grey."""
    side = array.shape[0]
    if side == size:
        return array
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    offset = pad_offset(side, size)
    canvas[offset:offset + side, offset:offset + side] = array[:size, :size]
    return canvas


def unpad(view: np.ndarray, side: int) -> np.ndarray:
    """The (side, side, 3) image inside a padded model input (the inverse of `pad_square`)."""
    offset = pad_offset(side, view.shape[0])
    return view[offset:offset + side, offset:offset + side]


def load_view(source: str | Path | bytes, size: int, min_size: int = 1, equalize_quality: int = 0,
              max_bytes: int | None = None) -> tuple[np.ndarray, int]:
    """Decode `source` into the model's (size, size, 3) uint8 input and the side of the image inside it.

    The one preprocessing path of training, evaluation, prediction and explanation: `square_view` (down-sample
    only), the optional JPEG equalization at that side, then `pad_square`.
    """
    return model_view(open_image(source, min_size=min_size, max_bytes=max_bytes), size, equalize_quality)


def model_view(image: Image.Image, size: int, equalize_quality: int = 0) -> tuple[np.ndarray, int]:
    """A decoded image as a model's (size, size, 3) uint8 input and the side of the image inside it:
    `square_view` (down-sample only), the optional JPEG equalization at that side, then `pad_square`."""
    square, side = square_view(image, size)
    if equalize_quality:
        square = reencode(square, equalize_quality)
    return pad_square(np.asarray(square, dtype=np.uint8), size), side


def native_window(image: Image.Image, side: int, equalize_quality: int = 0) -> np.ndarray:
    """A trace reader's view of a decoded image: the centre square's own pixels, never resampled, never padded.

    A square larger than `side` gives its centred `side` x `side` window; a smaller one is kept whole, at its own
    side. Sides and offsets are even, so the image's 2 x 2 pixel grid stays aligned with the model's. This is
    what an expert trained on random native windows (`train_crop`) saw in training; down-sampling a large photo
    leaves the resampling's own periodic pattern, and padding a small one a frame no training window had, and a
    trace reader takes either for a generator's trace (docs/results.md, round 10). Returns (s, s, 3) uint8,
    s <= `side`, re-encoded at `equalize_quality` when set.
    """
    width, height = image.size
    window = min(width, height, side)
    window = window & ~1 or window  # even, except for a 1-pixel image
    left, top = ((width - window) // 2) & ~1, ((height - window) // 2) & ~1
    crop = image.crop((left, top, left + window, top + window))
    if equalize_quality:
        crop = reencode(crop, equalize_quality)
    return np.asarray(crop, dtype=np.uint8)


def load_array(source: str | Path | bytes, size: int | None = None, min_size: int = 1,
               equalize_quality: int = 0) -> np.ndarray:
    """Decode `source` to a (height, width, 3) uint8 array; with `size`, the model input of `load_view`."""
    if size is not None:
        return load_view(source, size, min_size, equalize_quality)[0]
    image = open_image(source, min_size=min_size)
    if equalize_quality:
        image = reencode(image, equalize_quality)
    return np.asarray(image, dtype=np.uint8)


def is_image_path(path: Path) -> bool:
    """True when `path` has an image suffix (case-insensitive) and is not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
