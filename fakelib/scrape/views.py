"""Notebook views of a scraped folder: the manifest's status counts and a contact sheet of saved images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from fakelib.dedup import list_images
from fakelib.images import fit_square, open_image
from fakelib.scrape.manifest import MANIFEST_FIELDS, MANIFEST_NAME, read_manifest

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas


def status_table(output_dir: Path) -> pandas.DataFrame:
    """Attempts per status over the folder's whole manifest, with their share and the latest message.

    Returns:
        One row per status (most frequent first), columns `attempts`, `share`, `latest_message`.
    """
    import pandas  # deferred: the command line does not need it

    rows = read_manifest(Path(output_dir) / MANIFEST_NAME)
    frame = pandas.DataFrame(rows, columns=list(MANIFEST_FIELDS))
    table = frame.groupby("status").agg(attempts=("url", "size"), latest_message=("message", "last"))
    table["share"] = (table["attempts"] / max(len(frame), 1)).round(3)
    return table.sort_values("attempts", ascending=False, kind="stable")[["attempts", "share", "latest_message"]]


def contact_sheet(output_dir: Path, limit: int = 16, side: int = 96, columns: int = 8) -> Image.Image | None:
    """A grid of the most recently saved faces (from the manifest, else any images in the folder); None if none.

    Args:
        output_dir: a scrape output folder.
        limit: most faces shown.
        side: side of each square thumbnail in pixels.
        columns: thumbnails per row.
    """
    output_dir = Path(output_dir)
    names = [row["file"] for row in reversed(read_manifest(output_dir / MANIFEST_NAME)) if row["status"] == "saved"]
    files = [output_dir / name for name in names if (output_dir / name).is_file()] or list_images(output_dir)[::-1]
    files = files[:limit]
    if not files:
        return None
    rows = -(-len(files) // columns)
    sheet = Image.new("RGB", (side * min(columns, len(files)), side * rows), "white")
    for number, path in enumerate(files):
        sheet.paste(fit_square(open_image(path), side), (side * (number % columns), side * (number // columns)))
    return sheet
