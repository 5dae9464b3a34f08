"""A loopback HTTP server for the scraper's tests and benchmark: distinct face-like images and every fault we handle.

Routes (all GET):
    /robots.txt               `robots` text (default: disallow /private/)
    /face                     endpoint: a new distinct image per request (`latency` seconds late)
    /face-recycling           endpoint that repeats itself: new, exact repeat, near duplicate, new, ...
    /img/<n>.png|.jpg         distinct image number n (`latency` seconds late)
    /copy/<n>.png             the same bytes as /img/<n>.png under another URL
    /near/<n>.jpg             image n brightened and re-encoded: a near duplicate
    /private/<n>.png          an image that robots.txt disallows
    /missing                  404
    /flaky/<key>              500 on the first request for <key>, then an image
    /limited/<key>            429 with Retry-After: 1 on the first request for <key>, then an image
    /slow                     an image after `slow_seconds` (longer than the client's timeout)
    /drop                     Content-Length promises the whole image, the connection closes halfway
    /drop-once/<key>          /drop on the first request for <key>, then the image
    /truncated.jpg            the first 60% of a JPEG, with a matching Content-Length
    /html                     an HTML page served with status 200
    /empty                    200, image/jpeg, zero bytes
    /wrong-type               a PNG served as text/plain
    /huge                     a 780 kB PNG with its Content-Length
    /huge-stream              the same PNG without Content-Length (read until close)
    /bomb.png                 a PNG whose header claims 50,000 x 50,000 pixels
    /small.png                a 16 x 16 image
    /noai                     an image with `X-Robots-Tag: noai`
    /loop                     302 to itself;  /loop-a -> /loop-b -> /loop-a
    /page/<name>              HTML from the `pages` dict
Every request is counted per path in `requests`, with its time in `times` and User-Agent in `user_agents`.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import socket
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

DEFAULT_ROBOTS = "User-agent: *\nDisallow: /private/\n"


def face_image(seed: int, size: int = 64) -> Image.Image:
    """A distinct face-like RGB image for each seed: gradient background, random shapes, a face, noise.

    Everything that shapes the low frequencies (gradient, shapes, face position and size) is random, so the
    perceptual hashes of two seeds differ by about 32 bits (at least 8 over 3,000 seeds).
    """
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, (2, 2, 3)).astype(np.float64)  # (top/bottom, left/right, rgb)
    ramp = np.linspace(0.0, 1.0, size)
    top = corners[0, 0] + (corners[0, 1] - corners[0, 0]) * ramp[:, None]  # (size, 3)
    bottom = corners[1, 0] + (corners[1, 1] - corners[1, 0]) * ramp[:, None]
    background = top[None] + (bottom - top)[None] * ramp[:, None, None]  # (size, size, 3)
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = (int(v) for v in rng.integers(-size // 2, size, 2))
        width, height = (int(v) for v in rng.integers(size // 6, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + width, y0 + height), fill=colour)
    half_width, half_height = int(rng.integers(size // 6, size // 3)), int(rng.integers(size // 4, size * 2 // 5))
    x, y = (int(v) for v in rng.integers(size // 4, size * 3 // 4, 2))
    draw.ellipse((x - half_width, y - half_height, x + half_width, y + half_height),
                 fill=tuple(int(v) for v in rng.integers(120, 230, 3)))
    for eye_x in (x - half_width // 2, x + half_width // 2):
        draw.ellipse((eye_x - 2, y - half_height // 3 - 2, eye_x + 2, y - half_height // 3 + 2), fill=(20, 20, 20))
    draw.line((x - half_width // 2, y + half_height // 2, x + half_width // 2, y + half_height // 2),
              fill=(150, 40, 40), width=2)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))  # (size, size, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=4096)
def image_bytes(seed: int, image_format: str = "PNG", size: int = 64) -> bytes:
    """Encoded bytes of `face_image(seed, size)` (cached: the same seed always gives the same bytes)."""
    buffer = io.BytesIO()
    face_image(seed, size).save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


@functools.lru_cache(maxsize=1024)
def near_bytes(seed: int) -> bytes:
    """Image `seed` slightly brightened and re-encoded as JPEG: different bytes, nearly the same picture."""
    buffer = io.BytesIO()
    ImageEnhance.Brightness(face_image(seed)).enhance(1.06).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def huge_bytes() -> bytes:
    """A 512 x 512 noise PNG of about 780 kB."""
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def bomb_bytes(width: int = 50_000, height: int = 50_000) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels: a decompression bomb to anyone who decodes it."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after signature(8) + length(4) + type(4)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms each
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        path = self.path.split("?")[0]
        owner = self.server.owner
        number = owner.record(path, self.headers.get("User-Agent", ""))
        try:
            owner.route(self, path, number)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up on purpose (too large, timeout)

    def send(self, code: int, body: bytes = b"", content_type: str = "image/png", headers: dict | None = None,
             length: bool = True) -> None:
        """Send a whole response."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_partial(self, body: bytes) -> None:
        """Promise the whole body, send half, and close the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScrapeServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose are part of the tests


class ScrapeServer:
    """The loopback server; use as a context manager. `url(path)` gives absolute URLs."""

    def __init__(self, latency: float = 0.0, slow_seconds: float = 2.0, robots: str | None = DEFAULT_ROBOTS,
                 endpoint_seed: int = 100_000):
        self.latency, self.slow_seconds, self.robots = latency, slow_seconds, robots
        self.pages: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.user_agents: set[str] = set()
        self._endpoint_seed = endpoint_seed
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return self.base + path

    def __enter__(self) -> ScrapeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, path: str, user_agent: str) -> int:
        """Count a request; return how many requests `path` has had, this one included."""
        with self._lock:
            self.requests[path] += 1
            self.times[path].append(time.monotonic())
            self.user_agents.add(user_agent)
            return self.requests[path]

    def total(self, prefix: str = "/") -> int:
        """Requests whose path starts with `prefix`."""
        with self._lock:
            return sum(count for path, count in self.requests.items() if path.startswith(prefix))

    def route(self, handler: _Handler, path: str, number: int) -> None:
        """Answer one request."""
        head, _, rest = path.lstrip("/").partition("/")
        simple = self._simple_routes()
        if path in simple:
            simple[path](handler, number)
        elif head in ("img", "copy", "private"):
            self._image(handler, rest)
        elif head == "near":
            handler.send(200, near_bytes(int(rest.split(".")[0])), "image/jpeg")
        elif head in ("flaky", "limited", "drop-once"):
            self._first_fails(handler, head, rest, number)
        elif head == "page" and rest in self.pages:
            handler.send(200, self.pages[rest].encode(), "text/html; charset=utf-8")
        else:
            handler.send(404, b"not found", "text/plain")

    def _simple_routes(self) -> dict:
        png = image_bytes(1, "PNG")
        return {
            "/robots.txt": lambda h, n: h.send(200, self.robots.encode(), "text/plain") if self.robots is not None
            else h.send(404, b"", "text/plain"),
            "/face": self._endpoint,
            "/face-recycling": self._recycling,
            "/missing": lambda h, n: h.send(404, b"not found", "text/plain"),
            "/slow": self._slow,
            "/drop": lambda h, n: h.send_partial(image_bytes(2, "PNG")),
            "/truncated.jpg": lambda h, n: h.send(200, image_bytes(3, "JPEG")[: len(image_bytes(3, "JPEG")) * 6 // 10],
                                                  "image/jpeg"),
            "/html": lambda h, n: h.send(200, b"<!doctype html><html><body>Hello</body></html>", "text/html"),
            "/empty": lambda h, n: h.send(200, b"", "image/jpeg"),
            "/wrong-type": lambda h, n: h.send(200, png, "text/plain"),
            "/huge": lambda h, n: h.send(200, huge_bytes()),
            "/huge-stream": lambda h, n: h.send(200, huge_bytes(), length=False),
            "/bomb.png": lambda h, n: h.send(200, bomb_bytes()),
            "/small.png": lambda h, n: h.send(200, image_bytes(4, "PNG", 16)),
            "/noai": lambda h, n: h.send(200, image_bytes(5, "PNG"), headers={"X-Robots-Tag": "noai, noimageai"}),
            "/loop": lambda h, n: h.send(302, b"", "text/plain", {"Location": "/loop"}),
            "/loop-a": lambda h, n: h.send(302, b"", "text/plain", {"Location": "/loop-b"}),
            "/loop-b": lambda h, n: h.send(302, b"", "text/plain", {"Location": "/loop-a"}),
        }

    def _image(self, handler: _Handler, name: str) -> None:
        if self.latency:
            time.sleep(self.latency)
        seed, _, suffix = name.partition(".")
        image_format = "JPEG" if suffix in ("jpg", "jpeg") else "PNG"
        handler.send(200, image_bytes(int(seed), image_format), f"image/{image_format.lower()}")

    def _endpoint(self, handler: _Handler, number: int) -> None:
        if self.latency:
            time.sleep(self.latency)
        handler.send(200, image_bytes(self._endpoint_seed + number, "PNG"))

    def _recycling(self, handler: _Handler, number: int) -> None:
        # Requests 1, 4, 7, ... are new; 2, 5, ... repeat the previous bytes; 3, 6, ... are near duplicates.
        seed = self._endpoint_seed + (number - 1) // 3
        kind = (number - 1) % 3
        handler.send(200, near_bytes(seed) if kind == 2 else image_bytes(seed, "PNG"),
                     "image/jpeg" if kind == 2 else "image/png")

    def _slow(self, handler: _Handler, number: int) -> None:
        time.sleep(self.slow_seconds)
        handler.send(200, image_bytes(6, "PNG"))

    def _first_fails(self, handler: _Handler, head: str, key: str, number: int) -> None:
        seed = 1000 + zlib.crc32(f"{head}/{key}".encode()) % 100_000
        body = image_bytes(seed, "PNG")
        if number > 1:
            handler.send(200, body)
        elif head == "flaky":
            handler.send(500, b"try again", "text/plain")
        elif head == "limited":
            handler.send(429, b"slow down", "text/plain", {"Retry-After": "1"})
        else:
            handler.send_partial(body)


def _serve(connection: multiprocessing.connection.Connection, latency: float, warm: int) -> None:
    server = ScrapeServer(latency=latency)
    for number in range(1, warm + 1):  # encode the images before the clock starts
        image_bytes(server._endpoint_seed + number, "PNG")
        image_bytes(number, "PNG")
    with server:
        connection.send(server.base)
        connection.recv()  # any message, or the parent's exit, stops the server


def serve_in_process(latency: float = 0.0, warm: int = 0) -> tuple[str, multiprocessing.Process,
                                                                     multiprocessing.connection.Connection]:
    """Run a `ScrapeServer` in a child process (so it does not share the client's GIL).

    Returns:
        The base URL, the process, and the connection to send anything on to stop it.
    """
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(child, latency, warm), daemon=True)
    process.start()
    return parent.recv(), process, parent
