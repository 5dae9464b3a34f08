"""The two guards that live in the scraper's connections, where the socket is: one total deadline per request
(connect, headers and body: a server dripping one byte at a time cannot hold a worker), and a refusal of private,
loopback and link-local addresses unless the run allows them (a hostile page or redirect cannot make the scraper
fetch internal services)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
import urllib3


current_deadline = threading.local()  # `.at`: monotonic time by which this thread's current request must be complete


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of this thread's requests inside the block must end within `seconds` in total."""
    previous = getattr(current_deadline, "at", None)
    current_deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        current_deadline.at = previous


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
        at = getattr(current_deadline, "at", None)
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


class GuardedAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, guard: AddressGuard | None, **kwargs) -> None:
        self._pool_classes = _connection_classes(guard)  # before super(): it builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes
