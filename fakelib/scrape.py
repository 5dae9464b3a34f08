"""Polite, concurrent, resumable scraper of face images with atomic writes, deduplication and a per-attempt manifest.

One run: index what the output folder already holds, then N worker threads (one `requests.Session` each) take
tasks until the folder holds `count` images. Every attempt becomes one `manifest.csv` row with a status, never an
exception; a file appears only complete, named by the SHA-256 of its bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import requests
import yaml
from bs4 import BeautifulSoup
from PIL import Image
from tqdm.auto import tqdm

from fakelib import __version__
from fakelib.dedup import HashIndex, free_name, list_images, load_manifest_hashes, phash_hex, scan_folder
from fakelib.fetch import NOAI_DIRECTIVES, Body, FetchContext, FetchSettings, fetch, is_http, new_session, short_error
from fakelib.images import MAX_PIXELS, ImageError, fit_square, open_image, sha256_bytes

if TYPE_CHECKING:
    import pandas

MODES = ("endpoint", "list", "page")
FORMATS = ("jpeg", "png", "webp")
DEFAULT_USER_AGENT = f"fakelib/{__version__} (+research; contact in README)"
MANIFEST_NAME = "manifest.csv"
PARAMS_NAME = "scrape_params.yaml"
TEMPORARY_SUFFIX = ".part"
BROKEN_FOLDER = "_broken"
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
MANIFEST_FIELDS = ("time", "url", "status", "http_status", "message", "sha256", "phash", "width", "height",
                   "bytes", "file", "retries")
# Outcomes that are a judgement on the source, not a failure: they never count towards the failure streak
# in list and page mode (in endpoint mode anything but `saved` does: an endpoint that only repeats is exhausted).
NOT_FAILURES = frozenset({"saved", "duplicate", "near_duplicate", "robots_disallowed", "noai", "page"})
# A URL with one of these statuses in the manifest is not fetched again by a rerun: its content was judged.
# Network and server failures are retried by a rerun, and so is `truncated`: a transfer cut short without a
# Content-Length to tell looks the same.
FINAL_STATUSES = frozenset({"saved", "duplicate", "near_duplicate", "not_image", "empty", "too_large",
                            "too_many_pixels", "too_small", "noai"})
EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
              "TIFF": ".tif"}
ENCODERS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp")}


@dataclass(frozen=True)
class ScrapeConfig:
    """Everything one scrape run needs; validated on construction.

    Attributes:
        source: the endpoint URL (endpoint mode), a .txt/.csv file of image URLs (list mode), or a page URL or
            a file of page URLs (page mode).
        output_dir: folder of images, `manifest.csv` and `scrape_params.yaml`; a rerun resumes there.
        mode: `endpoint`, `list` or `page`.
        count: target number of images in `output_dir`, counting those already there.
        workers: concurrent workers, 1..64, each with its own `requests.Session`.
        rate: requests per second shared by all workers (robots.txt, retries and redirects count); 0 = no limit.
        selector, attribute: page mode: CSS selector of the elements and the attribute holding the image URL.
        resize: re-encode saved images to this square side (centre crop), or keep them as they are.
        image_format: re-encode saved images as `jpeg`, `png` or `webp`, or keep the source format.
        timeout: seconds allowed for one request in total: connecting, headers and body (robots.txt too).
        max_bytes: a larger body is refused (`too_large`), reading stops as soon as it is exceeded.
        min_size: a smaller side is refused (`too_small`).
        max_pixels: a larger width x height is refused without decoding (`too_many_pixels`, decompression bombs).
        phash_threshold: perceptual-hash Hamming distance (0..64) at or under which an image is a near duplicate.
        max_consecutive_failures: stop after this many failed attempts in a row.
        retries: retries of one attempt after a connection error, a 5xx or a 429.
        backoff: first retry delay in seconds, doubled for each further retry (plus jitter).
        max_retry_after: longest `Retry-After` honoured (seconds); a longer one fails the attempt.
        user_agent: sent with every request and matched against robots.txt.
        respect_robots: read each host's robots.txt and obey it (Disallow and Crawl-delay).
        allow_private: fetch from private, loopback and link-local addresses even when no starting URL (the
            endpoint, a listed URL, a page URL) is on one; off, a page or redirect cannot reach internal services.
        max_attempts: stop after this many attempts (manifest rows) in this run; None = no limit.
        jpeg_quality: quality of JPEG and WebP re-encoding.
        progress: show a tqdm progress bar.
    """

    source: str
    output_dir: Path
    mode: str = "endpoint"
    count: int = 100
    workers: int = 8
    rate: float = 2.0
    selector: str = "img"
    attribute: str = "src"
    resize: int | None = None
    image_format: str | None = None
    timeout: float = 20.0
    max_bytes: int = 20_000_000
    min_size: int = 64
    max_pixels: int = MAX_PIXELS
    phash_threshold: int = 6
    max_consecutive_failures: int = 50
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 120.0
    user_agent: str = DEFAULT_USER_AGENT
    respect_robots: bool = True
    allow_private: bool = False
    max_attempts: int | None = None
    jpeg_quality: int = 95
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        _check_choice("mode", self.mode, MODES)
        _check_choice("image_format", self.image_format, (*FORMATS, None))
        for key, low, high in (("count", 1, None), ("workers", 1, 64), ("max_bytes", 1, None), ("min_size", 1, None),
                               ("max_pixels", 1, None), ("phash_threshold", 0, 64), ("retries", 0, 20),
                               ("max_consecutive_failures", 1, None), ("jpeg_quality", 1, 100)):
            _check_integer(key, getattr(self, key), low, high)
        for key in ("resize", "max_attempts"):
            if getattr(self, key) is not None:
                _check_integer(key, getattr(self, key), 1, None)
        for key, positive in (("rate", False), ("timeout", True), ("backoff", False), ("max_retry_after", False)):
            _check_number(key, getattr(self, key), positive)
        if not self.source.strip():
            raise ValueError("source must be a URL or a file of URLs, got ''")
        if self.mode == "endpoint" and not is_http(self.source):
            raise ValueError(f"source must be an http(s) URL in endpoint mode, got {self.source!r}")
        if not self.user_agent.strip() or not self.selector.strip() or not self.attribute.strip():
            raise ValueError("user_agent, selector and attribute must not be empty")


def _check_choice(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        names = ", ".join("None" if choice is None else str(choice) for choice in allowed)
        raise ValueError(f"{key} must be one of {names}; got {value!r}")


def _check_integer(key: str, value: object, low: int, high: int | None) -> None:
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    if not is_integer or value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{key} must be an integer {allowed}; got {value!r}")


def _check_number(key: str, value: object, positive: bool) -> None:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not valid or (value <= 0 if positive else value < 0):
        raise ValueError(f"{key} must be a number {'> 0' if positive else '>= 0'}; got {value!r}")


def fetch_settings(config: ScrapeConfig) -> FetchSettings:
    """The part of `config` the fetch layer needs: identity, politeness, retries and limits of one download."""
    return FetchSettings(
        user_agent=config.user_agent, rate=config.rate, timeout=config.timeout, max_bytes=config.max_bytes,
        retries=config.retries, backoff=config.backoff, max_retry_after=config.max_retry_after,
        respect_robots=config.respect_robots, allow_private=config.allow_private,
    )


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


# ------------------------------------------------------------------------------------------- judging and writing


def judge_and_save(body: Body, attempt: Attempt, context: _Context) -> None:
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
        write_atomic(config.output_dir / name, data)
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


def write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to a hidden temporary file beside `path`, then rename it to `path`.

    A reader, or a rerun after the process is killed, sees either no file or the whole file; leftover
    temporaries are hidden and removed by the next run. `durable` also survives a power loss by an fsync before
    the rename; the scraper does without (6 ms per file here, more than the rest of its work on an image) and
    instead quarantines at start-up any file whose bytes no longer match the SHA-256 in its name.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        with temporary.open("xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
def _folder_lock(output_dir: Path) -> Iterator[None]:
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


# ------------------------------------------------------------------------------------------------------ sources


def read_url_list(path: Path) -> list[str]:
    """Image URLs from a text file (one per line, # comments) or a CSV (the `url` column, else the first URL cell).

    Duplicated URLs are kept once, in their first position.
    """
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        urls = _urls_from_rows(rows)
    else:
        urls = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(urls))


def _urls_from_rows(rows: list[list[str]]) -> list[str]:
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    for name in ("url", "image_url", "image", "src", "link"):
        if name in header:
            column = header.index(name)
            return [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    found = (next((cell.strip() for cell in row if is_http(cell.strip())), "") for row in rows)
    return [url for url in found if url]


def extract_image_urls(html: bytes | str | BeautifulSoup, page_url: str, selector: str, attribute: str) -> list[str]:
    """Absolute image URLs of the elements matching the CSS `selector`, read from `attribute` (srcset: largest).

    A `<base href>` is honoured; a page whose robots meta tag says `noai`/`noimageai` yields nothing.
    """
    soup = html if isinstance(html, BeautifulSoup) else BeautifulSoup(html, "html.parser")
    if page_noai(soup):
        return []
    base = soup.find("base", href=True)
    base_url = urljoin(page_url, base["href"]) if base else page_url
    urls = []
    for element in soup.select(selector):
        value = element.get(attribute)
        value = " ".join(value) if isinstance(value, list) else (value or "").strip()
        if attribute.lower().endswith("srcset"):
            candidates = [candidate.split()[0] for candidate in value.split(",") if candidate.split()]
            value = candidates[-1] if candidates else ""  # listed smallest first by convention
        if value:
            urls.append(urljoin(base_url, value))
    return list(dict.fromkeys(urls))


def page_noai(soup: BeautifulSoup) -> bool:
    """True when a `<meta name="robots">` (or `name="fakelib"`) asks that its images not be used for AI."""
    for meta in soup.find_all("meta", attrs={"name": True, "content": True}):
        if meta["name"].strip().lower() in ("robots", "fakelib"):
            if {part.strip().lower() for part in meta["content"].split(",")} & NOAI_DIRECTIVES:
                return True
    return False


def _tasks(config: ScrapeConfig, skip: set[str]) -> Iterator[tuple[str, str]]:
    """The run's work as (kind, url) pairs: `image` tasks, or `page` tasks that yield image tasks."""
    if config.mode == "endpoint":
        while True:
            yield "image", config.source
    elif config.mode == "list":
        yield from (("image", url) for url in read_url_list(Path(config.source)) if url not in skip)
    else:
        source = Path(config.source)
        pages = read_url_list(source) if not is_http(config.source) else [config.source]
        yield from (("page", url) for url in pages)


def _trusted(tasks: Iterator[tuple[str, str]], fetching: FetchContext) -> Iterator[tuple[str, str]]:
    """The user's own URLs, each trusted as a starting URL: a private address it resolves to may be fetched."""
    for task in tasks:
        if fetching.guard is not None:
            fetching.guard.trust_start(task[1])
        yield task


# -------------------------------------------------------------------------------------------------- scheduling


class _Scheduler:
    """Hands tasks to workers so that saved + in flight never exceeds the target, and decides when to stop."""

    def __init__(self, config: ScrapeConfig, tasks: Iterator[tuple[str, str]], saved: int, skip: set[str],
                 stop: threading.Event, bar: tqdm):
        self.config, self.stop, self.bar = config, stop, bar
        self.saved_before = self.saved = saved
        self.statuses: Counter[str] = Counter()
        self.attempts = self.streak = 0
        self.stop_reason, self.message = "", ""
        self._tasks, self._pending, self._seen = tasks, deque(), set(skip)
        self._images_in_flight = self._pages_in_flight = 0
        self._exhausted = False
        self._condition = threading.Condition()

    def next_task(self) -> tuple[str, str] | None:
        """Block until there is a task for this worker; None when the run is over."""
        with self._condition:
            while True:
                if self._finished():
                    self._condition.notify_all()
                    return None
                task = self._take()
                if task is not None:
                    self.attempts += 1
                    return task
                self._condition.wait(timeout=0.5)

    def _finished(self) -> bool:
        if self.stop_reason:
            return True
        reason = ("target_reached" if self.saved >= self.config.count else
                  "stopped" if self.stop.is_set() else
                  "max_attempts" if self.config.max_attempts and self.attempts >= self.config.max_attempts else
                  "source_exhausted" if self._exhausted and not self._pending and not self._in_flight() else "")
        if reason:
            self.stop_reason = reason
        return bool(reason)

    def _in_flight(self) -> int:
        return self._images_in_flight + self._pages_in_flight

    def _take(self) -> tuple[str, str] | None:
        if self.saved + self._images_in_flight >= self.config.count:
            return None  # enough downloads under way; wait to see whether they are kept
        if self._pending:
            self._images_in_flight += 1
            return self._pending.popleft()
        if self._exhausted or self._pages_in_flight:
            return None  # one page at a time: its images may be all we need
        task = next(self._tasks, None)
        if task is None:
            self._exhausted = True
            return None
        if task[0] == "page":
            self._pages_in_flight += 1
        else:
            self._images_in_flight += 1
        return task

    def finish(self, task: tuple[str, str], attempt: Attempt, found: list[str]) -> None:
        """Record a finished task, queue the image URLs a page gave, and stop after too many failures in a row."""
        with self._condition:
            if task[0] == "page":
                self._pages_in_flight -= 1
            else:
                self._images_in_flight -= 1
            new = [url for url in found if url not in self._seen]
            self._seen.update(new)
            self._pending.extend(("image", url) for url in new)
            self._count(attempt)
            self._condition.notify_all()

    def _count(self, attempt: Attempt) -> None:
        if attempt.status == "stopped":
            return
        self.statuses[attempt.status] += 1
        if attempt.status == "saved":
            self.saved += 1
            self.bar.update(1)
        failed = attempt.status not in NOT_FAILURES or (self.config.mode == "endpoint" and attempt.status != "saved")
        self.streak = self.streak + 1 if failed else 0
        duplicates = self.statuses["duplicate"] + self.statuses["near_duplicate"]
        errors = sum(count for status, count in self.statuses.items() if status not in NOT_FAILURES)
        self.bar.set_postfix(duplicates=duplicates, errors=errors, refresh=False)
        if self.streak >= self.config.max_consecutive_failures and not self.stop_reason:
            self.stop_reason = "consecutive_failures"
            self.message = (f"stopped after {self.streak} consecutive failed attempts; last: {attempt.status} "
                            f"{attempt.message} ({attempt.url[:200]})")


@dataclass
class _Context:
    """What every worker shares during one run."""

    config: ScrapeConfig
    fetching: FetchContext
    index: HashIndex
    manifest: Manifest
    scheduler: _Scheduler
    stop: threading.Event


def _worker(context: _Context) -> None:
    session = new_session(context.config.user_agent, context.fetching.guard)
    try:
        while (task := context.scheduler.next_task()) is not None:
            attempt, found = _run_task(task, context, session)
            if attempt.status != "stopped":  # stopped before its request: not an attempt
                context.manifest.write(attempt)
            context.scheduler.finish(task, attempt, found)
    finally:
        session.close()


def _run_task(task: tuple[str, str], context: _Context, session: requests.Session) -> tuple[Attempt, list[str]]:
    kind, url = task
    attempt = Attempt(url)
    try:
        body = fetch(url, attempt, "html" if kind == "page" else "image", context.fetching, session)
        if body is None:
            return attempt, []
        if kind == "image":
            judge_and_save(body, attempt, context)
            return attempt, []
        soup = BeautifulSoup(body.data, "html.parser")
        found = extract_image_urls(soup, body.url, context.config.selector, context.config.attribute)
        attempt.bytes = len(body.data)
        if page_noai(soup):
            attempt.fail("noai", "the page's robots meta tag says noai/noimageai")
        else:
            attempt.status, attempt.message = "page", f"{len(found)} image URLs"
        return attempt, found
    except Exception as error:  # errors as values: one bad response never ends the run; the row says what broke
        attempt.fail("error", f"{type(error).__name__}: {short_error(error)}")
        return attempt, []


# ------------------------------------------------------------------------------------------------------- the run


def scrape(config: ScrapeConfig, stop: threading.Event | None = None) -> dict:
    """Fill `config.output_dir` with `config.count` distinct images from the source, resuming what is there.

    Args:
        config: the run's settings.
        stop: set it (from another thread) to stop the run after the requests in flight.

    Returns:
        A JSON-ready summary: target, images before and after, attempts, counts per status, elapsed seconds,
        images per second, and why the run stopped (`stop_reason`: target_reached, source_exhausted,
        consecutive_failures, max_attempts, stopped, interrupted) with a message.

    Raises:
        FileNotFoundError: the URL list or page list does not exist.
        ValueError: another scrape is writing to the folder, or its manifest has foreign columns.
    """
    stop = stop or threading.Event()
    if config.mode != "endpoint" and not is_http(config.source) and not Path(config.source).is_file():
        raise FileNotFoundError(f"no such URL list: {config.source}")
    config.output_dir.mkdir(parents=True, exist_ok=True)
    with _folder_lock(config.output_dir):
        remove_temporaries(config.output_dir)
        manifest_path = config.output_dir / MANIFEST_NAME
        skip = done_urls(read_manifest(manifest_path), config.output_dir)
        index, saved, broken = build_index(config.output_dir, config.phash_threshold, config.max_pixels)
        write_params(config)
        return {**_run(config, index, saved, skip, manifest_path, stop), "quarantined": broken}


def _run(config: ScrapeConfig, index: HashIndex, saved: int, skip: set[str], manifest_path: Path,
         stop: threading.Event) -> dict:
    bar = tqdm(total=config.count, initial=min(saved, config.count), unit="img", disable=not config.progress,
               desc="saved", dynamic_ncols=True)
    manifest = Manifest(manifest_path)
    fetching = FetchContext.create(fetch_settings(config), stop)
    scheduler = _Scheduler(config, _trusted(_tasks(config, skip), fetching), saved, skip, stop, bar)
    context = _Context(config, fetching, index, manifest, scheduler, stop)
    started = time.perf_counter()
    try:
        interrupted = _run_workers(context)
    finally:
        manifest.close()
        bar.close()
    elapsed = time.perf_counter() - started
    if interrupted:
        scheduler.stop_reason = "interrupted"
    return _summary(config, scheduler, elapsed, manifest_path)


def _run_workers(context: _Context) -> bool:
    """Run the workers to the end; on Ctrl-C let the requests in flight finish, and return True."""
    threads = [threading.Thread(target=_worker, args=(context,), name=f"scrape-{number}", daemon=True)
               for number in range(context.config.workers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short joins keep Ctrl-C responsive
    except KeyboardInterrupt:
        context.stop.set()
        for thread in threads:
            thread.join()
        return True
    return False


def _summary(config: ScrapeConfig, scheduler: _Scheduler, elapsed: float, manifest_path: Path) -> dict:
    saved_now = scheduler.saved - scheduler.saved_before
    messages = {
        "target_reached": f"{scheduler.saved} images in {config.output_dir} (target {config.count})",
        "source_exhausted": f"the source ran out with {scheduler.saved} of {config.count} images",
        "max_attempts": f"stopped after max_attempts={config.max_attempts} with {scheduler.saved} images",
        "stopped": f"stopped on request with {scheduler.saved} images",
        "interrupted": f"interrupted with {scheduler.saved} images",
    }
    return {
        "target": config.count, "images_before": scheduler.saved_before, "images": scheduler.saved,
        "saved": saved_now, "attempts": sum(scheduler.statuses.values()),
        "statuses": dict(sorted(scheduler.statuses.items())),
        "elapsed_s": round(elapsed, 4), "images_per_s": round(saved_now / elapsed, 3) if elapsed > 0 else 0.0,
        "stop_reason": scheduler.stop_reason,
        "message": scheduler.message or messages.get(scheduler.stop_reason, ""),
        "output_dir": str(config.output_dir), "manifest": str(manifest_path),
    }


def write_params(config: ScrapeConfig) -> Path:
    """Write the run's settings as `scrape_params.yaml` beside the images."""
    values = {item.name: getattr(config, item.name) for item in fields(config)}
    values["output_dir"] = str(config.output_dir)
    path = config.output_dir / PARAMS_NAME
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


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


def config_from_args(args: argparse.Namespace) -> ScrapeConfig:
    """Build the configuration from the `scrape` command's arguments."""
    return ScrapeConfig(
        source=args.source, output_dir=Path(args.out), mode=args.mode, count=args.count, workers=args.workers,
        rate=args.rate, selector=args.selector, attribute=args.attribute, resize=args.resize,
        image_format=args.format, timeout=args.timeout, max_bytes=args.max_bytes, min_size=args.min_size,
        phash_threshold=args.phash_threshold, max_consecutive_failures=args.max_consecutive_failures,
        user_agent=args.user_agent or DEFAULT_USER_AGENT, respect_robots=not args.ignore_robots,
        allow_private=getattr(args, "allow_private", False),
        max_attempts=args.max_attempts, progress=not args.no_progress,
    )


def run_cli(args: argparse.Namespace) -> int:
    """`python -m fakelib scrape`: run, print the JSON summary; 0 when done, 1 after a failure streak, 130 on Ctrl-C."""
    summary = scrape(config_from_args(args))
    print(json.dumps(summary, indent=2))
    if summary["stop_reason"] == "consecutive_failures":
        print(f"fakelib scrape: {summary['message']}", file=sys.stderr)
        return 1
    return 130 if summary["stop_reason"] == "interrupted" else 0
