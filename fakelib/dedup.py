"""Exact (SHA-256) and near (perceptual hash) duplicate detection, for a folder and for the scraper as it runs."""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import scipy.fftpack  # noqa: F401  imagehash.phash imports it on first use: 0.7 s that would stall a running scrape
from PIL import Image

from fakelib.atomic import write_text
from fakelib.checks import check_integer
from fakelib.images import MAX_PIXELS, ImageError, is_image_path, open_image, sha256_bytes
from fakelib.layout import DUPLICATES_FOLDER  # noqa: F401  where --apply moves duplicates; datasets skip it
CSV_NAME = "duplicates.csv"
CSV_FIELDS = ("group", "role", "kind", "distance", "file", "sha256", "phash", "width", "height", "bytes", "action",
              "destination", "note")
# Headers of CSVs written by dedup (this one and the one before `destination` and `note`): any other file at the CSV
# path is the user's and is never overwritten.
OUR_HEADERS = (",".join(CSV_FIELDS), ",".join(CSV_FIELDS[:11]))
PHASH_BITS = 64
# A copy keeps "full detail" when its half-scale detail is at least this share of the sharpest copy's. Measured on
# demo faces: an x2 bicubic up-scale keeps about 40% (x4: 20%), a genuine 2x larger original 67-100% of its
# down-scaled copy's; an x1.5 up-scale (about 63%) is not caught, the price of never moving a genuine original.
SHARP_SHARE = 0.5


@dataclass(frozen=True)
class ImageRecord:
    """What deduplication knows about one file; `error` is empty when the file decodes."""

    path: Path
    sha256: str
    phash: str  # 16 hex digits of imagehash.phash; empty when the file does not decode
    width: int
    height: int
    bytes: int
    error: str = ""
    verified: bool = True  # False when the hashes come from a scrape manifest, not from reading the file


@dataclass(frozen=True)
class Match:
    """An image already kept that a candidate duplicates: `kind` is `duplicate` (same bytes) or `near_duplicate`."""

    kind: str
    sha256: str
    distance: int


def phash_hex(image: Image.Image) -> str:
    """Return the 64-bit perceptual hash of `image` as 16 hex digits."""
    return str(imagehash.phash(image))


def hamming(first: str, second: str) -> int:
    """Return the number of differing bits between two hex perceptual hashes."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


class HashIndex:
    """Thread-safe index of kept images: exact matches by SHA-256, near matches by perceptual-hash Hamming distance.

    Near-duplicate search is a vectorized XOR + popcount over every kept hash: about 0.1 ms per 30,000 images.
    """

    def __init__(self, threshold: int):
        check_integer("threshold", threshold, 0, PHASH_BITS)
        self.threshold = threshold
        self._lock = threading.Lock()
        self._exact: set[str] = set()
        self._hashes = np.zeros(1024, dtype=np.uint64)  # (capacity,) kept perceptual hashes
        self._owners: list[str] = []  # SHA-256 of the image behind each kept perceptual hash

    def __len__(self) -> int:
        return len(self._exact)

    def match(self, sha256: str, phash: str = "") -> Match | None:
        """Return what `(sha256, phash)` duplicates among the kept images, or None when it is new."""
        with self._lock:
            return self._match(sha256, phash)

    def add(self, sha256: str, phash: str = "") -> None:
        """Record a kept image; an empty `phash` (undecodable file) only takes part in exact matching."""
        with self._lock:
            self._add(sha256, phash)

    def claim(self, sha256: str, phash: str) -> Match | None:
        """Atomically add the image unless it duplicates a kept one; return the match when it does.

        Two workers holding near-duplicate images cannot both claim them, so both cannot be saved.
        """
        with self._lock:
            found = self._match(sha256, phash)
            if found is None:
                self._add(sha256, phash)
            return found

    def release(self, sha256: str) -> None:
        """Forget a claimed image (its write failed), so a later copy can be kept."""
        with self._lock:
            self._exact.discard(sha256)
            if sha256 in self._owners:
                position, last = self._owners.index(sha256), len(self._owners) - 1
                self._hashes[position] = self._hashes[last]
                self._owners[position] = self._owners[last]
                self._owners.pop()

    def _match(self, sha256: str, phash: str) -> Match | None:
        if sha256 in self._exact:
            return Match("duplicate", sha256, 0)
        if not phash or not self._owners:
            return None
        distances = np.bitwise_count(self._hashes[: len(self._owners)] ^ np.uint64(int(phash, 16)))
        nearest = int(np.argmin(distances))
        if int(distances[nearest]) <= self.threshold:
            return Match("near_duplicate", self._owners[nearest], int(distances[nearest]))
        return None

    def _add(self, sha256: str, phash: str) -> None:
        self._exact.add(sha256)
        if not phash:
            return
        if len(self._owners) == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[len(self._owners)] = np.uint64(int(phash, 16))
        self._owners.append(sha256)


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside `directory` (not in sub-folders such as `_duplicates/`), sorted by name."""
    return sorted(path for path in directory.iterdir() if path.is_file() and is_image_path(path))


Known = dict[str, tuple[str, str, int, int, int]]  # file name -> (sha256, phash, width, height, bytes)


def load_manifest_hashes(manifest: Path) -> Known:
    """What a scrape manifest says about the files it saved; {} when it is missing.

    Returns:
        File name -> (sha256, phash, width, height, bytes) for every `saved` row.
    """
    if not manifest.is_file():
        return {}
    known: Known = {}
    with manifest.open(newline="", encoding="utf-8", errors="replace") as handle:
        for row in csv.DictReader(handle):
            try:
                if row.get("status") == "saved" and len(row["phash"]) == PHASH_BITS // 4:
                    known[row["file"]] = (row["sha256"], row["phash"], int(row["width"]), int(row["height"]),
                                          int(row["bytes"]))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed row (e.g. cut by a power loss) only costs reading that file
    return known


def hash_file(path: Path, known: Known | None = None, max_pixels: int = MAX_PIXELS) -> ImageRecord:
    """Hash one file; a file that does not decode gets an `error` and no perceptual hash, never an exception.

    A file the manifest knows (`known`, see `load_manifest_hashes`) with the size it recorded is not read at all:
    resuming a folder of 30,000 one-megabyte faces costs 30,000 `stat` calls, not 30 GB of reading.
    """
    row = known.get(path.name) if known else None
    try:
        if row is not None and path.stat().st_size == row[4]:
            return ImageRecord(path, *row, verified=False)
        data = path.read_bytes()
    except OSError as error:
        return ImageRecord(path, "", "", 0, 0, 0, f"unreadable: {error.strerror or error}")
    sha256 = sha256_bytes(data)
    try:
        image = open_image(data, max_pixels=max_pixels)
    except ImageError as error:
        return ImageRecord(path, sha256, "", 0, 0, len(data), f"{error.reason}: {error}")
    return ImageRecord(path, sha256, phash_hex(image), image.width, image.height, len(data))


def scan_folder(directory: Path, known: Known | None = None, max_pixels: int = MAX_PIXELS) -> list[ImageRecord]:
    """Hash every image directly inside `directory` (see `list_images`)."""
    return [hash_file(path, known, max_pixels) for path in list_images(directory)]


def _keep_priority(record: ImageRecord) -> tuple:
    # Keep the decodable, largest, heaviest copy; the name breaks ties so the choice is stable.
    return (record.error != "", -(record.width * record.height), -record.bytes, record.path.name)


def find_duplicates(records: Sequence[ImageRecord], threshold: int) -> list[dict]:
    """Group duplicates: each group is one kept image and the images that duplicate it.

    Images are visited best first (see `_keep_priority`) and each joins the first kept image it matches, the way
    the scraper decides as it downloads; so after moving the duplicates no two kept images are within `threshold`.

    Returns:
        One row per image in a group (fields `CSV_FIELDS`, `action` left empty), groups numbered from 1.
    """
    index = HashIndex(threshold)
    kept: dict[str, ImageRecord] = {}
    members: dict[str, list[tuple[ImageRecord, Match]]] = {}
    for record in sorted(records, key=_keep_priority):
        if not record.sha256:
            continue
        found = index.match(record.sha256, record.phash)
        if found is None:
            index.add(record.sha256, record.phash)
            kept[record.sha256] = record
        else:
            members.setdefault(found.sha256, []).append((record, found))
    rows: list[dict] = []
    for group, (owner, duplicates) in enumerate(members.items(), start=1):
        rows.append(_row(group, "keep", "", 0, kept[owner]))
        rows.extend(_row(group, "duplicate", match.kind, match.distance, record) for record, match in duplicates)
    return rows


def _row(group: int | str, role: str, kind: str, distance: int | str, record: ImageRecord) -> dict:
    return {"group": group, "role": role, "kind": kind, "distance": distance, "file": record.path.name,
            "sha256": record.sha256, "phash": record.phash, "width": record.width, "height": record.height,
            "bytes": record.bytes, "action": "", "destination": "", "note": ""}


def free_name(path: Path) -> Path:
    """`path`, or the first of `stem-1.ext`, `stem-2.ext`, ... that does not exist yet."""
    number = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


def write_csv(rows: Iterable[dict], path: Path) -> None:
    """Write duplicate-group rows to `path` (columns `CSV_FIELDS`) atomically: a temporary file, then a rename.

    File names that are not UTF-8 are written with `\\x..` escapes (`display_name`).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows({**row, "file": display_name(row["file"])} for row in rows)
    write_text(path, buffer.getvalue(), durable=True)


def display_name(name: str) -> str:
    """A file name as text: a byte that is not UTF-8 shows as `\\xff` (the name itself stays as it is on disk)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_name(record: ImageRecord) -> ImageRecord:
    """A file whose name is not valid UTF-8 takes no part: the CSV that records moves could not name it."""
    if display_name(record.path.name) == record.path.name:
        return record
    return ImageRecord(record.path, "", "", 0, 0, record.bytes, "file name is not valid UTF-8; rename it")


def detail(path: Path) -> float:
    """Half-scale detail: how much of the image a half-size copy cannot give back, relative to its contrast.

    Up-scaling adds pixels but no detail, so an up-scaled copy scores far below its source.
    """
    with Image.open(path) as image:
        gray = image.convert("L")
    width, height = gray.size
    restored = gray.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.BILINEAR).resize(
        (width, height), Image.Resampling.BICUBIC)
    pixels, back = np.asarray(gray, dtype=np.float32), np.asarray(restored, dtype=np.float32)
    return float(np.abs(pixels - back).mean() / (pixels.std() + 1e-6))


def _verified(directory: Path, records: list[ImageRecord], threshold: int) -> tuple[list[ImageRecord], list[dict]]:
    """Group, then read again every grouped file whose hashes came from the manifest, until the groups hold.

    A manifest row with a wrong sha256 would otherwise move a different image as an "exact duplicate".
    """
    while True:
        rows = find_duplicates(records, threshold)
        grouped = {row["file"] for row in rows}
        stale = {record.path.name for record in records if not record.verified and record.path.name in grouped}
        if not stale:
            return records, rows
        records = [hash_file(record.path) if record.path.name in stale else record for record in records]


def choose_keepers(rows: list[dict], records: Sequence[ImageRecord], threshold: int) -> list[dict]:
    """Re-decide each group's kept file: the largest copy with full detail (not up-scaled), and say why."""
    by_name = {record.path.name: record for record in records}
    groups: dict[int, list[ImageRecord]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(by_name[row["file"]])
    result: list[dict] = []
    for group, members in groups.items():
        keeper, note = _keeper(members)
        result.append({**_row(group, "keep", "", 0, keeper), "note": note})
        for record in members:
            if record is not keeper:
                same = record.sha256 == keeper.sha256
                distance = 0 if same or not record.phash else hamming(record.phash, keeper.phash)
                result.append(_row(group, "duplicate", "duplicate" if same else "near_duplicate", distance, record))
    return result


def _keeper(members: list[ImageRecord]) -> tuple[ImageRecord, str]:
    by_size = sorted(members, key=_keep_priority)
    if len({record.sha256 for record in members}) == 1:
        return by_size[0], "identical bytes: the first name is kept"
    details = {record.path.name: _safe_detail(record) for record in members}
    sharpest = max(details.values())
    sharp = [record for record in by_size if details[record.path.name] >= SHARP_SHARE * sharpest]
    keeper = sharp[0]
    if keeper is by_size[0]:
        return keeper, "largest copy (pixels, then bytes), with full detail"
    return keeper, (f"largest copy with full detail; {by_size.index(keeper)} larger copy(ies) have under "
                    f"{SHARP_SHARE:.0%} of its detail (up-scaled or blurred)")


def _safe_detail(record: ImageRecord) -> float:
    try:
        return detail(record.path) if not record.error else 0.0
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0.0


def _skipped_rows(records: Iterable[ImageRecord]) -> list[dict]:
    """A row per file that takes no part (unreadable, or a name that is not UTF-8), with the reason."""
    return [{**_row("", "skipped", "", "", record), "action": "skipped", "note": record.error}
            for record in records if not record.sha256]


def _check_csv_target(path: Path) -> None:
    """Refuse to overwrite a file at the CSV path that dedup did not write."""
    if path.is_dir():
        raise IsADirectoryError(f"csv_path is a folder: {path}")
    if path.exists():
        with path.open("rb") as handle:
            header = handle.readline(4096).decode("utf-8", "replace").strip()
        if header not in OUR_HEADERS:
            raise ValueError(f"{path} was not written by dedup; choose another csv_path")


def _apply_moves(directory: Path, rows: list[dict], csv_file: Path) -> int:
    """Move the duplicates, after the CSV records each one's destination; the CSV is rewritten with the outcome."""
    planned = plan_moves(directory, rows)
    for row in rows:
        if row["role"] == "duplicate":
            row["action"], row["destination"] = "moving", planned.get(row["file"], "")
    write_csv(rows, csv_file)  # what is about to move, and where to: survives a crash half-way
    moved = 0
    try:
        for row in rows:
            if row["action"] == "moving" and row["destination"]:
                source = directory / row["file"]
                destination = directory / row["destination"]
                destination.parent.mkdir(exist_ok=True)
                if not source.is_file() or destination.exists():
                    row["action"] = "not_moved"
                    continue
                os.replace(source, destination)  # same folder tree: a rename, atomic
                row["action"] = "moved"
                moved += 1
    finally:
        for row in rows:
            if row["action"] == "moving":
                row["action"] = "not_moved"
        write_csv(rows, csv_file)
    return moved


def plan_moves(directory: Path, rows: Iterable[dict]) -> dict[str, str]:
    """Each duplicate's destination in `_duplicates/` (relative to `directory`), never an existing name."""
    taken: set[str] = set()
    planned: dict[str, str] = {}
    for row in rows:
        if row["role"] != "duplicate":
            continue
        candidate = directory / DUPLICATES_FOLDER / row["file"]
        number = 1
        while candidate.exists() or candidate.name in taken:
            candidate = candidate.with_name(f"{Path(row['file']).stem}-{number}{Path(row['file']).suffix}")
            number += 1
        taken.add(candidate.name)
        planned[row["file"]] = f"{DUPLICATES_FOLDER}/{candidate.name}"
    return planned


def dedup_folder(directory: str | Path, threshold: int = 6, apply: bool = False,
                 csv_path: str | Path | None = None) -> dict:
    """Find exact and near-duplicate groups in `directory`, write them as CSV and optionally move the duplicates.

    Args:
        directory: folder of images (only its top level is read).
        threshold: largest perceptual-hash Hamming distance (0..64) that counts as a near duplicate.
        apply: move duplicates to `directory/_duplicates/`; otherwise a dry run that only writes the CSV.
        csv_path: where to write the groups; default `directory/duplicates.csv`.

    Returns:
        A JSON-ready summary: file counts, groups, duplicates per kind, files moved, unreadable files, CSV path.

    Raises:
        NotADirectoryError: `directory` is not a folder.
        ValueError: `threshold` is outside 0..64, or a file at the CSV path that dedup did not write.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"not a folder: {directory}")
    csv_file = Path(csv_path) if csv_path else directory / CSV_NAME
    _check_csv_target(csv_file)  # before any work: a refusal must come before anything moves
    records = [_check_name(record) for record in
               scan_folder(directory, load_manifest_hashes(directory / "manifest.csv"))]
    records, rows = _verified(directory, records, threshold)
    rows = choose_keepers(rows, records, threshold)
    for row in rows:
        row["action"] = "keep" if row["role"] == "keep" else "would_move"
    rows += _skipped_rows(records)
    if apply:
        moved = _apply_moves(directory, rows, csv_file)
    else:
        moved = 0
        write_csv(rows, csv_file)
    unreadable = [display_name(record.path.name) for record in records if record.error]
    return {
        "directory": str(directory), "files": len(records), "threshold": threshold,
        "groups": len({row["group"] for row in rows if row["role"] != "skipped"}),
        "exact_duplicates": sum(row["kind"] == "duplicate" for row in rows),
        "near_duplicates": sum(row["kind"] == "near_duplicate" for row in rows),
        "moved": moved, "applied": apply, "unreadable": len(unreadable),
        "unreadable_files": unreadable[:20], "csv": str(csv_file),
    }
