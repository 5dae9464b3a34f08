"""The scraper's configuration: `ScrapeConfig`, validated on construction, and the part of it the fetch layer needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fakelib import __version__
from fakelib.checks import check_choice, check_integer, check_number, not_allowed
from fakelib.fetch import is_http
from fakelib.images import MAX_PIXELS
from fakelib.politeness import FetchSettings


MODES = ("endpoint", "list", "page")
FORMATS = ("jpeg", "png", "webp")
DEFAULT_USER_AGENT = f"fakelib/{__version__} (+research; contact in README)"


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
        check_choice("mode", self.mode, MODES)
        check_choice("image_format", self.image_format, (*FORMATS, None))
        for key, low, high in (("count", 1, None), ("workers", 1, 64), ("max_bytes", 1, None), ("min_size", 1, None),
                               ("max_pixels", 1, None), ("phash_threshold", 0, 64), ("retries", 0, 20),
                               ("max_consecutive_failures", 1, None), ("jpeg_quality", 1, 100)):
            check_integer(key, getattr(self, key), low, high)
        for key in ("resize", "max_attempts"):
            if getattr(self, key) is not None:
                check_integer(key, getattr(self, key), 1)
        for key, positive in (("rate", False), ("timeout", True), ("backoff", False), ("max_retry_after", False)):
            check_number(key, getattr(self, key), 0, low_open=positive)
        if not self.source.strip():
            raise not_allowed("source", self.source, "a URL or a file of URLs")
        if self.mode == "endpoint" and not is_http(self.source):
            raise not_allowed("source", self.source, "an http(s) URL in endpoint mode")
        for key in ("user_agent", "selector", "attribute"):
            if not getattr(self, key).strip():
                raise not_allowed(key, getattr(self, key), "a non-empty text")


def fetch_settings(config: ScrapeConfig) -> FetchSettings:
    """The part of `config` the fetch layer needs: identity, politeness, retries and limits of one download."""
    return FetchSettings(
        user_agent=config.user_agent, rate=config.rate, timeout=config.timeout, max_bytes=config.max_bytes,
        retries=config.retries, backoff=config.backoff, max_retry_after=config.max_retry_after,
        respect_robots=config.respect_robots, allow_private=config.allow_private,
    )
