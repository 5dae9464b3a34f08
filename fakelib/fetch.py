"""Polite HTTP fetching: shared rate limit, robots.txt and noai rules, retries with backoff, bounded downloads.

The network layer of the scraper, with no knowledge of what is done with a body. Every request, robots.txt and
each redirect hop included, waits for the shared rate limit and any Crawl-delay; a failure is recorded on the
caller's attempt as a status and a message, never raised.

Two guards live in the connections themselves (`new_session`), where the socket is: every request has one total
deadline covering connect, headers and body (a server dripping one byte at a time cannot hold a worker), and the
address actually connected to must be public unless the run allows it (a hostile page or redirect cannot make
the scraper fetch internal services). The guards are `fakelib.netguard`; the rate limit, pacing and robots.txt are
`fakelib.politeness`.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import requests

from fakelib.netguard import AddressGuard, AddressRefused, GuardedAdapter, current_deadline, request_deadline
from fakelib.politeness import FetchContext, FetchSettings


IMAGE_TYPES = ("application/octet-stream", "binary/octet-stream", "")  # besides image/*: what CDNs send
HTML_TYPES = ("text/html", "application/xhtml+xml")
NOAI_DIRECTIVES = frozenset({"noai", "noimageai"})
MAX_REDIRECTS = 10


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
    adapter = GuardedAdapter(guard, pool_connections=4, pool_maxsize=4, max_retries=0)
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
        current_deadline.at = time.monotonic() + context.settings.timeout  # connect, headers and body of this hop
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
