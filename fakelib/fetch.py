"""Polite HTTP fetching: shared rate limit, robots.txt and noai rules, retries with backoff, bounded downloads.

The network layer of the scraper, with no knowledge of what is done with a body. Every request, robots.txt and
each redirect hop included, waits for the shared rate limit and any Crawl-delay; a failure is recorded on the
caller's attempt as a status and a message, never raised.

Two guards live in the connections themselves (`new_session`), where the socket is: every request has one total
deadline covering connect, headers and body (a server dripping one byte at a time cannot hold a worker), and the
address actually connected to must be public unless the run allows it (a hostile page or redirect cannot make
the scraper fetch internal services).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol
from urllib import robotparser
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

IMAGE_TYPES = ("application/octet-stream", "binary/octet-stream", "")  # besides image/*: what CDNs send
HTML_TYPES = ("text/html", "application/xhtml+xml")
NOAI_DIRECTIVES = frozenset({"noai", "noimageai"})
MAX_REDIRECTS = 10
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


class Outcome(Protocol):
    """What `fetch` records about one attempt; the scraper's manifest row (`scrape.Attempt`) is one."""

    status: str
    message: str
    http_status: int | None
    retries: int

    def fail(self, status: str, message: str, http_status: int | None = None) -> Outcome:
        """Set a failure outcome and return self."""


@dataclass
class Body:
    """A fetched response body with the facts the checks need."""

    data: bytes
    url: str  # after redirects: the base of a page's relative links


def is_http(url: str) -> bool:
    """True for an absolute http(s) URL."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def short_error(error: BaseException) -> str:
    """The error's text (or its type's name when it has none), cut to 300 characters for a manifest cell."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------------------------ deadlines and address guard

_deadline = threading.local()  # `.at`: monotonic time by which this thread's current request must be complete


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of this thread's requests inside the block must end within `seconds` in total."""
    previous = getattr(_deadline, "at", None)
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = previous


class _DeadlineSocket:
    """A connected socket whose every wait is cut to what is left of the calling thread's request deadline.

    The per-operation timeout of `requests` restarts on every byte received, so it cannot bound a response
    dripped one byte at a time; this wrapper can, for the headers and the body alike.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()
        self._io_refs = 0
        self._closed = False

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self) -> None:
        at = getattr(_deadline, "at", None)
        if at is None:
            self._sock.settimeout(self._timeout)
            return
        left = at - time.monotonic()
        if left <= 0:
            raise socket.timeout("Read timed out (request deadline passed)")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def recv(self, *args):
        self._arm()
        return self._sock.recv(*args)

    def recv_into(self, *args):
        self._arm()
        return self._sock.recv_into(*args)

    def sendall(self, *args):
        self._arm()
        return self._sock.sendall(*args)

    def makefile(self, *args, **kwargs):
        return socket.socket.makefile(self, *args, **kwargs)  # reads then come back through recv_into above

    # As in `socket.socket`: a close waits until the last file made by `makefile` is closed (http.client closes
    # the connection of a `Connection: close` response while the body is still being read from that file).
    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()


class AddressRefused(Exception):
    """The connected address is private, loopback or link-local and the run does not allow it."""


def is_public(address: str) -> bool:
    """False for private, loopback, link-local, reserved and other non-global addresses (IPv4 and IPv6)."""
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 scope (fe80::1%eth0) is not part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class AddressGuard:
    """Which non-public addresses one run may connect to: all (`allow_private`), else those of its starting URLs."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._trusted: set[str] = set()
        self._hosts: set[str] = set()
        self._lock = threading.Lock()

    def trust_start(self, url: str) -> None:
        """A URL the user gave: when its host resolves to non-public addresses, the run may use those."""
        host = urlsplit(url).hostname
        if self.allow_private or not host or host in self._hosts:
            return
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            addresses = set()  # the request itself will fail and say why
        with self._lock:
            self._hosts.add(host)
            self._trusted.update(address for address in addresses if not is_public(address))

    def check(self, host: str, address: str) -> None:
        """Raise `AddressRefused` unless `address` (what `host` resolved to) may be connected to."""
        if self.allow_private or is_public(address):
            return
        with self._lock:
            if address in self._trusted:
                return
        raise AddressRefused(f"{host} resolves to {address}, a private, loopback or link-local address "
                             "(allowed only for the starting URLs' own addresses, or with allow_private)")


def _connection_classes(guard: AddressGuard | None) -> dict[str, type]:
    """urllib3 pool classes whose connections check the address connected to and wrap the socket for deadlines."""

    class Guarded:
        def _new_conn(self):
            sock = super()._new_conn()
            if guard is not None:
                try:
                    guard.check(self.host, sock.getpeername()[0])
                except AddressRefused:
                    sock.close()
                    raise
            return sock

        def connect(self) -> None:
            super().connect()
            self.sock = _DeadlineSocket(self.sock)

    class Connection(Guarded, urllib3.connection.HTTPConnection):
        pass

    class TLSConnection(Guarded, urllib3.connection.HTTPSConnection):
        pass

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, guard: AddressGuard | None, **kwargs) -> None:
        self._pool_classes = _connection_classes(guard)  # before super(): it builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


# ----------------------------------------------------------------------------------------------- pacing and robots


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


# -------------------------------------------------------------------------------------------------------- fetching


class _Retry(Exception):
    """Raised inside one try when the request may succeed if tried again later."""

    def __init__(self, status: str, message: str, http_status: int | None = None, delay: float | None = None):
        super().__init__(message)
        self.status, self.message, self.http_status, self.delay = status, message, http_status, delay


class _Refused(Exception):
    """Raised inside one try when the response is judged and refused; trying again would not help."""

    def __init__(self, status: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.status, self.message, self.http_status = status, message, http_status


class _Session(requests.Session):
    """A `requests.Session` that reads proxy and CA-bundle settings from the environment once per origin.

    `requests` re-reads the whole environment (proxies, no_proxy, REQUESTS_CA_BUNDLE) on every request: 2-3 ms
    of pure Python per image in our profile of 16 workers, the largest single cost of a download and all of it
    under the GIL. The environment does not change during a run, so the merged settings are cached per origin
    and per-request arguments; the semantics (no_proxy per host, CA bundles) stay those of requests.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        with self._environment_lock:
            cached = self._environment.get(key)
        if cached is None:
            cached = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._environment_lock:
                self._environment[key] = cached
        return {**cached, "proxies": dict(cached["proxies"])}  # requests may modify what it gets


def new_session(user_agent: str, guard: AddressGuard | None = None) -> requests.Session:
    """A session with the identifying User-Agent, no automatic retries (ours are paced) and a small pool.

    Its connections honour `request_deadline` and, with a `guard`, refuse addresses the guard does not allow.
    """
    session = _Session()
    session.headers["User-Agent"] = user_agent
    adapter = _GuardedAdapter(guard, pool_connections=4, pool_maxsize=4, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(url: str, attempt: Outcome, expect: str, context: FetchContext, session: requests.Session) -> Body | None:
    """Download `url`, retrying connection errors, 5xx and 429 with backoff; None when `attempt` records a failure.

    Args:
        url: http(s) URL.
        attempt: receives the HTTP code, the retry count and, on failure, the status and message.
        expect: `image` or `html`: which content types are accepted.
        context: the run's shared fetching state (settings, pacer, robots, stop event).
        session: this worker's session.
    """
    settings = context.settings
    for number in range(settings.retries + 1):
        attempt.retries = number
        try:
            body = _fetch_once(url, attempt, expect, context, session)
            attempt.status = ""
            attempt.message = f"succeeded on retry {number}; before: {attempt.message}" if number else ""
            return body
        except _Refused as refused:
            attempt.fail(refused.status, refused.message, refused.http_status)
            return None
        except _Retry as retry:
            attempt.fail(retry.status, retry.message, retry.http_status)
            if number == settings.retries:
                break
            delay = retry.delay if retry.delay is not None else settings.backoff * 2**number * (1 + random.random())
            if retry.delay is not None:
                context.pacer.limiter.pause(delay)  # the server asked everyone to slow down, not just this worker
            if context.stop.wait(delay):
                break
    if attempt.retries:
        attempt.message += f" (after {attempt.retries} retries)"
    return None


def _fetch_once(url: str, attempt: Outcome, expect: str, context: FetchContext, session: requests.Session) -> Body:
    with request_deadline(context.settings.timeout):  # each hop sets its own; this one clears the last
        response = _follow_redirects(url, context, session)
        with response:
            attempt.http_status = response.status_code
            _check_status(response, context.settings)
            _check_headers(response, expect, context.settings)
            data = _read_body(response, context.settings)
            return Body(data, response.url)


def _follow_redirects(url: str, context: FetchContext, session: requests.Session) -> requests.Response:
    """GET `url`, following redirects by hand so each hop is paced, checked against robots.txt and loop-checked."""
    seen = {url}
    for _ in range(MAX_REDIRECTS + 1):
        if not is_http(url):
            raise _Refused("invalid_url", f"not an http(s) URL: {url[:200]}")
        try:
            reason = context.robots.check(url, session, context.stop)
        except AddressRefused as error:  # robots.txt lives on the same host
            raise _Refused("private_address", str(error)) from None
        if reason:
            raise _Refused("robots_disallowed", reason)
        if not context.pacer.wait(url, context.stop):
            raise _Refused("stopped", "run stopped before the request")
        _deadline.at = time.monotonic() + context.settings.timeout  # connect, headers and body of this hop
        response = _get(url, context.settings, session)
        if not response.is_redirect:
            return response
        response.close()
        url = urljoin(url, response.headers["Location"])
        if url in seen:
            raise _Refused("redirect_loop", f"redirect loop back to {url[:200]}", response.status_code)
        seen.add(url)
    raise _Refused("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def _get(url: str, settings: FetchSettings, session: requests.Session) -> requests.Response:
    try:
        return session.get(url, timeout=settings.timeout, stream=True, allow_redirects=False)
    except AddressRefused as error:
        raise _Refused("private_address", str(error)) from None
    except requests.ConnectionError as error:  # includes connect timeouts: the server never got the request
        if "deadline passed" in str(error):
            raise _Refused("timeout", f"no response within {settings.timeout:g} s") from None
        raise _Retry("connection_error", short_error(error)) from None
    except requests.Timeout as error:
        raise _Refused("timeout", f"no response within {settings.timeout:g} s: {short_error(error)}") from None
    except requests.RequestException as error:
        raise _Refused("invalid_url", short_error(error)) from None


def _check_status(response: requests.Response, settings: FetchSettings) -> None:
    code = response.status_code
    if code in (429, 503) and "Retry-After" in response.headers:
        delay = _retry_after(response.headers["Retry-After"])
        if delay is None or delay > settings.max_retry_after:
            raise _Refused("http_error", f"HTTP {code}, Retry-After {response.headers['Retry-After']!r} "
                                         f"beyond the {settings.max_retry_after:g} s cap", code)
        raise _Retry("http_error", f"HTTP {code}, Retry-After {delay:g} s", code, delay)
    if code >= 500 or code == 429:
        raise _Retry("http_error", f"HTTP {code} {response.reason}", code)
    if code >= 300 or code < 200:
        raise _Refused("http_error", f"HTTP {code} {response.reason}", code)


def _retry_after(value: str) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _check_headers(response: requests.Response, expect: str, settings: FetchSettings) -> None:
    if noai_directives(response.headers.get("X-Robots-Tag", ""), settings.user_agent):
        raise _Refused("noai", f"X-Robots-Tag: {response.headers['X-Robots-Tag']}")
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if expect == "image":
        accepted = content_type.startswith("image/") or content_type in IMAGE_TYPES
    else:
        accepted = content_type in HTML_TYPES or content_type == ""
    if not accepted:
        wanted = "an image" if expect == "image" else "an HTML page"
        status = "not_image" if expect == "image" else "not_html"
        raise _Refused(status, f"content type {content_type!r} is not {wanted}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.max_bytes:
        raise _Refused("too_large", f"Content-Length {length} exceeds {settings.max_bytes} bytes")


def noai_directives(header: str, user_agent: str) -> set[str]:
    """The `noai` / `noimageai` directives of an X-Robots-Tag value that apply to us (all bots, or our product)."""
    product = user_agent.split("/")[0].strip().lower()
    found = set()
    for part in header.split(","):
        bot, _, directive = part.rpartition(":")
        if (not bot.strip() or bot.strip().lower() == product) and directive.strip().lower() in NOAI_DIRECTIVES:
            found.add(directive.strip().lower())
    return found


def _read_body(response: requests.Response, settings: FetchSettings) -> bytes:
    """Stream the body, stopping as soon as it exceeds `max_bytes` or the request's deadline passes."""
    deadline = time.monotonic() + settings.timeout
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            total += len(chunk)
            if total > settings.max_bytes:
                raise _Refused("too_large", f"body exceeds {settings.max_bytes} bytes (stopped reading)")
            if time.monotonic() > deadline:
                raise _Refused("timeout", f"body took longer than {settings.timeout:g} s")
            chunks.append(chunk)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
        if "Read timed out" in str(error):
            raise _Refused("timeout", f"no complete response within {settings.timeout:g} s") from None
        raise _Retry("connection_error",
                     f"connection dropped before the body was complete: {short_error(error)}") from None
    except requests.RequestException as error:
        raise _Refused("connection_error", short_error(error)) from None
    return b"".join(chunks)
