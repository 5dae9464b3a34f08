"""The per-attempt manifest (`manifest.csv`, one row per attempt) and resume: what a rerun skips, the index of what
the folder already holds, leftover temporaries, and the lock that keeps two scrapers out of one folder."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fakelib.atomic import TEMPORARY_SUFFIX
from fakelib.dedup import HashIndex, free_name, load_manifest_hashes, scan_folder


MANIFEST_NAME = "manifest.csv"
BROKEN_FOLDER = "_broken"
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
MANIFEST_FIELDS = ("time", "url", "status", "http_status", "message", "sha256", "phash", "width", "height",
                   "bytes", "file", "retries")
# A URL with one of these statuses in the manifest is not fetched again by a rerun: its content was judged.
# Network and server failures are retried by a rerun, and so is `truncated`: a transfer cut short without a
# Content-Length to tell looks the same.
FINAL_STATUSES = frozenset({"saved", "duplicate", "near_duplicate", "not_image", "empty", "too_large",
                            "too_many_pixels", "too_small", "noai"})


@dataclass
class Attempt:
    """One manifest row: what happened to one URL."""

    url: str
    status: str = ""
    http_status: int | None = None
    message: str = ""
    sha256: str = ""
    phash: str = ""
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    file: str = ""
    retries: int = 0
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def fail(self, status: str, message: str, http_status: int | None = None) -> Attempt:
        """Set a failure outcome and return self."""
        self.status, self.message = status, message
        if http_status is not None:
            self.http_status = http_status
        return self


# ----------------------------------------------------------------------------------------------- manifest, resume


class Manifest:
    """Append-only `manifest.csv`: one row per attempt, written under a lock and flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            _check_header(path)
        self._handle = path.open("a", newline="", encoding="utf-8")
        if not new and not _ends_with_newline(path):
            self._handle.write("\n")  # a row cut short by a power loss stays on its own line
        self._writer = csv.DictWriter(self._handle, fieldnames=MANIFEST_FIELDS)
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, attempt: Attempt) -> None:
        """Append one row and flush it, so a kill loses nothing already recorded."""
        row = {key: ("" if value is None else value) for key, value in asdict(attempt).items()}
        with self._lock:
            self._writer.writerow(row)
            self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def _check_header(path: Path) -> None:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) != MANIFEST_FIELDS:
        raise ValueError(f"{path} has columns {','.join(header)!r}, expected {','.join(MANIFEST_FIELDS)!r}; "
                         "move it away to start a new manifest")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_manifest(path: Path) -> list[dict[str, str]]:
    """All rows of a manifest (empty when it is missing), skipping rows a power loss may have cut."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return [row for row in csv.DictReader(handle) if row.get("status") and None not in row]


def done_urls(rows: list[dict[str, str]], output_dir: Path) -> set[str]:
    """URLs a rerun must not fetch again: judged content, and saved images whose file is still there."""
    return {row["url"] for row in rows if row["status"] in FINAL_STATUSES
            and (row["status"] != "saved" or (output_dir / row["file"]).is_file())}


def build_index(output_dir: Path, threshold: int, max_pixels: int) -> tuple[HashIndex, int, int]:
    """Index every image in `output_dir`, reusing the manifest's hashes, and count those that decode.

    A file named by a SHA-256 that its bytes no longer have (cut by a power loss) is moved to `_broken/`.

    Returns:
        The index, the number of images that decode, and the number of files moved to `_broken/`.
    """
    index = HashIndex(threshold)
    records = scan_folder(output_dir, load_manifest_hashes(output_dir / MANIFEST_NAME), max_pixels)
    broken = [record for record in records if SHA256_NAME.fullmatch(record.path.stem)
              and record.path.stem != record.sha256]
    for record in broken:
        (output_dir / BROKEN_FOLDER).mkdir(exist_ok=True)
        shutil.move(record.path, free_name(output_dir / BROKEN_FOLDER / record.path.name))
    kept = [record for record in records if record not in broken]
    for record in kept:
        index.add(record.sha256, record.phash)
    return index, sum(not record.error for record in kept), len(broken)


def remove_temporaries(output_dir: Path) -> int:
    """Delete the hidden temporaries a killed run may have left; return how many."""
    leftovers = list(output_dir.glob(f".*{TEMPORARY_SUFFIX}"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


@contextlib.contextmanager
def folder_lock(output_dir: Path) -> Iterator[None]:
    """Refuse a second scrape into the same folder at the same time (it would delete the other's temporaries)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with (output_dir / ".scrape.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another scrape is writing to {output_dir}") from None
        yield
