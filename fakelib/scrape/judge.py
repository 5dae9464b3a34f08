"""Judging one downloaded body and writing it: decode with size checks, re-encode if asked, deduplicate, save
atomically under the SHA-256 of its bytes."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from fakelib.atomic import write_bytes
from fakelib.dedup import phash_hex
from fakelib.fetch import Body
from fakelib.images import ImageError, fit_square, open_image, sha256_bytes
from fakelib.scrape.config import ScrapeConfig
from fakelib.scrape.manifest import Attempt

if TYPE_CHECKING:
    from fakelib.scrape.scheduler import RunContext  # the scheduler calls judge_and_save


EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
              "TIFF": ".tif"}
ENCODERS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp")}


# ------------------------------------------------------------------------------------------- judging and writing


def judge_and_save(body: Body, attempt: Attempt, context: RunContext) -> None:
    """Decode, optionally re-encode, deduplicate and atomically save `body`; the outcome goes into `attempt`."""
    config = context.config
    try:
        image, source_format = decode(body.data, config)
    except ImageError as error:
        attempt.fail(error.reason, str(error))
        return
    data, extension, image = encode(body.data, image, source_format, config)
    attempt.sha256, attempt.phash = sha256_bytes(data), phash_hex(image)
    attempt.width, attempt.height, attempt.bytes = image.width, image.height, len(data)
    match = context.index.claim(attempt.sha256, attempt.phash)
    if match is not None:
        detail = "same bytes" if match.kind == "duplicate" else f"Hamming distance {match.distance}"
        attempt.fail(match.kind, f"{detail} as {match.sha256[:16]}")
        return
    name = attempt.sha256 + extension
    try:
        write_bytes(config.output_dir / name, data)
    except OSError as error:
        context.index.release(attempt.sha256)
        attempt.fail("write_error", f"cannot write {name}: {error.strerror or error}")
        return
    attempt.status, attempt.file = "saved", name


def decode(data: bytes, config: ScrapeConfig) -> tuple[Image.Image, str]:
    """Fully decode `data` with the size checks of `images.open_image`; return the RGB image and the Pillow format.

    Raises:
        ImageError: see `images.open_image`.
    """
    image = open_image(data, max_pixels=config.max_pixels, min_size=config.min_size)
    return image, image.format or ""


def encode(data: bytes, image: Image.Image, source_format: str, config: ScrapeConfig
           ) -> tuple[bytes, str, Image.Image]:
    """Return the bytes to save, their file extension and the image they hold.

    The downloaded bytes are kept unless a resize or a format is asked for, or the format is not a common one
    (then PNG).
    """
    if config.resize is None and config.image_format is None and source_format in EXTENSIONS:
        return data, EXTENSIONS[source_format], image
    if config.resize is not None:
        image = fit_square(image, config.resize)
    name = config.image_format or {"JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}.get(source_format, "png")
    pillow_format, extension = ENCODERS[name]
    buffer = io.BytesIO()
    options = {"quality": config.jpeg_quality} if name in ("jpeg", "webp") else {}
    image.save(buffer, format=pillow_format, **options)
    return buffer.getvalue(), extension, image
