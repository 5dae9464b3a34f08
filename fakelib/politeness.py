"""Politeness shared by every worker of a run: one rate limit, per-origin Crawl-delay pacing, robots.txt read
once per origin; the run's `FetchSettings`, and the `FetchContext` that bundles them all with the stop event."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib import robotparser
from urllib.parse import urlsplit

import requests
import urllib3

from fakelib.netguard import AddressGuard, request_deadline


ROBOTS_MAX_BYTES = 512_000  # RFC 9309 lets crawlers stop reading robots.txt at 500 KiB


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    """The network settings of one run, taken from the caller's already validated configuration.

    Attributes:
        user_agent: sent with every request and matched against robots.txt and X-Robots-Tag.
        rate: requests per second shared by all workers (robots.txt, retries and redirects count); 0 = no limit.
        timeout: seconds allowed for one request in total: connecting, headers and body (robots.txt too).
        max_bytes: a larger body is refused (`too_large`), reading stops as soon as it is exceeded.
        retries: retries of one attempt after a connection error, a 5xx or a 429.
        backoff: first retry delay in seconds, doubled for each further retry (plus jitter).
        max_retry_after: longest `Retry-After` honoured (seconds); a longer one fails the attempt.
        respect_robots: read each host's robots.txt and obey it (Disallow and Crawl-delay).
        allow_private: connect to private, loopback and link-local addresses even when no starting URL is there.
    """

    user_agent: str
    rate: float
    timeout: float
    max_bytes: int
    retries: int
    backoff: float
    max_retry_after: float
    respect_robots: bool
    allow_private: bool = False


class RateLimiter:
    """Spaces requests `1 / rate` seconds apart across all threads; `pause` holds back every later request."""

    def __init__(self, rate: float):
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until this caller's slot; False when `stop` was set meanwhile."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        return not stop.wait(slot - now) if slot > now else not stop.is_set()

    def pause(self, seconds: float) -> None:
        """Let no request start in the next `seconds` (a server asked us to back off)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


class Pacer:
    """The global rate limit plus one limiter per host that asked for a Crawl-delay in its robots.txt."""

    def __init__(self, rate: float):
        self.limiter = RateLimiter(rate)
        self._hosts: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def set_crawl_delay(self, origin: str, seconds: float) -> None:
        """Space requests to `origin` at least `seconds` apart."""
        with self._lock:
            self._hosts.setdefault(origin, RateLimiter(1.0 / seconds))

    def wait(self, url: str, stop: threading.Event) -> bool:
        """Block until a request to `url` may start; False when `stop` was set meanwhile."""
        with self._lock:
            host = self._hosts.get(_origin(url))
        return self.limiter.wait(stop) and (host is None or host.wait(stop))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class RobotsCache:
    """Fetches each host's robots.txt once (through the rate limit) and answers whether a URL may be fetched."""

    def __init__(self, settings: FetchSettings, pacer: Pacer):
        self._settings = settings
        self._pacer = pacer
        self._parsers: dict[str, tuple[robotparser.RobotFileParser, str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def check(self, url: str, session: requests.Session, stop: threading.Event) -> str:
        """Return '' when `url` may be fetched, else why not."""
        if not self._settings.respect_robots:
            return ""
        origin = _origin(url)
        with self._lock:
            origin_lock = self._locks.setdefault(origin, threading.Lock())
        with origin_lock:  # one fetch per host, other hosts are not held up
            if origin not in self._parsers:
                self._parsers[origin] = self._fetch(origin, session, stop)
        parser, note = self._parsers[origin]
        if parser.can_fetch(self._settings.user_agent, url):
            return ""
        return f"robots.txt of {origin} disallows it" + (f" ({note})" if note else "")

    def _fetch(self, origin: str, session: requests.Session, stop: threading.Event
               ) -> tuple[robotparser.RobotFileParser, str]:
        parser = robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            if not self._pacer.wait(origin, stop):
                raise requests.ConnectionError("stopped")
            with request_deadline(self._settings.timeout), \
                    session.get(parser.url, timeout=self._settings.timeout, stream=True) as response:
                code = response.status_code
                text = response.raw.read(ROBOTS_MAX_BYTES, decode_content=True) if code < 400 else b""
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            parser.disallow_all = True  # unreachable: assume the worst until a later run can read it
            return parser, f"robots.txt unreachable: {type(error).__name__}"
        if code in (401, 403) or code >= 500:
            parser.disallow_all = True
            return parser, f"robots.txt answered HTTP {code}"
        if code >= 400:
            parser.allow_all = True
            return parser, ""
        parser.parse(text.decode("utf-8", errors="replace").splitlines())
        delay = parser.crawl_delay(self._settings.user_agent)
        if delay:
            self._pacer.set_crawl_delay(origin, float(delay))
        return parser, ""


@dataclass
class FetchContext:
    """What every worker shares for fetching during one run: settings, pacing, robots.txt answers, the stop event."""

    settings: FetchSettings
    pacer: Pacer
    robots: RobotsCache
    stop: threading.Event
    guard: AddressGuard | None = None

    @classmethod
    def create(cls, settings: FetchSettings, stop: threading.Event) -> FetchContext:
        """A fresh context: one pacer at `settings.rate`, an empty robots.txt cache that uses it, an address guard."""
        pacer = Pacer(settings.rate)
        return cls(settings, pacer, RobotsCache(settings, pacer), stop, AddressGuard(settings.allow_private))
