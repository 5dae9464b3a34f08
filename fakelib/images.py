"""Robust image decoding shared by data, scrape, dedup, audit and predict: every failure becomes a short reason."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# A decoded image larger than this is refused (decompression bombs); 8k x 8k is far beyond any face photo.
MAX_PIXELS = 64_000_000
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


def open_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS, min_size: int = 1) -> Image.Image:
    """Open and fully decode an image from a path or bytes, returning it in RGB.

    The returned image's `format` is that of the source ("JPEG", "PNG", ...), so callers need not open it twice.

    Raises:
        ImageError: reason is one of `empty`, `not_image`, `truncated`, `too_many_pixels`, `too_small`, `unreadable`.
    """
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as error:
        raise ImageError("unreadable", f"cannot read file: {error.strerror or error}") from None
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


def encode_jpeg(image: Image.Image | np.ndarray, quality: int) -> bytes:
    """Encode an RGB image (Pillow or (height, width, 3) uint8) as JPEG bytes at `quality` (4:2:0, no EXIF)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality), subsampling=2)
    return buffer.getvalue()


def load_array(source: str | Path | bytes, size: int | None = None, min_size: int = 1,
               equalize_quality: int = 0) -> np.ndarray:
    """Decode `source` to a (height, width, 3) uint8 array, square-fitted to `size` when given.

    `equalize_quality` > 0 re-encodes the fitted image as JPEG at that quality and decodes it again, the
    equalization that training, evaluation and explanation must all apply the same way.
    """
    image = open_image(source, min_size=min_size)
    if size is not None:
        image = fit_square(image, size)
    if equalize_quality:
        image = Image.open(io.BytesIO(encode_jpeg(image, equalize_quality))).convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def is_image_path(path: Path) -> bool:
    """True when `path` has an image suffix (case-insensitive) and is not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
