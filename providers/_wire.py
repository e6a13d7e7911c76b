"""The wire guards both providers' HTTP clients share: a deadline watchdog for sockets, and a bounded body reader.

requests' read timeout applies to each socket read, so a server trickling one byte at a time (headers or body)
never trips it, and a gzip body can inflate to many times its size. Each client (``providers/dataverse/_transport``,
``providers/keyvault/_transport``) wraps one attempt in ``watching(deadline)`` and reads the answer with
``read_bounded``; what an expiry or a refusal means to its caller (an error type, a message, a retry) stays there.

- ``watching`` / ``WatchedAdapter``: the HTTPS connections an attempt uses report themselves to the attempt's
  ``Watch`` (connect, send, read of the status line); when the deadline passes a timer shuts their sockets, so
  every blocked read returns at once. A connection reporting after that is refused with ``TimeoutError``. Outside
  ``watching`` the adapter behaves exactly as requests' stock one.
- ``read_bounded``: the raw body in pieces (the clock checked between them), at most ``limit`` bytes on the wire
  (a larger ``Content-Length`` refused before reading), decompressed here with the same cap on the output
  (zlib's ``max_length``): a gzip bomb is refused having inflated at most ``limit + 1`` bytes.

No Pulumi import; no knowledge of Dataverse or Key Vault.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool

CHUNK = 64 * 1024  # raw bytes per read
PIECE = 1024 * 1024  # decompressed bytes per zlib call
ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")  # what read_bounded decodes (ask for no other)

_current = threading.local()


# -- the deadline watchdog ------------------------------------------------------------------------------------------


class Watch:
    """The connections one attempt uses; when its deadline passes, a timer shuts their sockets.

    The timer is armed by the first connection that reports (an attempt through an adapter without sockets, a
    test's fake, is bounded by its caller's clock checks alone). urllib3 hands a connection back to its pool when
    the last byte of a body is read, a moment before the attempt closes its watch: a deadline passing in exactly
    that moment can cut the connection another thread has just taken, which then fails as any dropped connection
    does (each client decides whether that may be sent again).
    """

    def __init__(self, deadline_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._deadline_at = deadline_at
        self._clock = clock
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer: threading.Timer | None = None
        self._done = False
        self.fired = False

    def attach(self, connection: Any) -> None:
        """Watch ``connection`` (anything with a ``sock``) until the attempt ends; refused once the deadline passed."""
        with self._lock:
            if self.fired:
                raise TimeoutError("the attempt's deadline passed")
            if self._done or any(c is connection for c in self._connections):
                return
            self._connections.append(connection)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self._deadline_at - self._clock()), self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            shutdown(getattr(connection, "sock", None))

    def close(self) -> None:
        with self._lock:
            self._done = True
            self._connections.clear()
            timer = self._timer
        if timer is not None:
            timer.cancel()


def shutdown(sock: Any) -> None:
    """End every blocked read on ``sock`` now (from another thread): the read sees the connection close."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also for an SSLSocket
        else:
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def watching(deadline_at: float, clock: Callable[[], float] = time.monotonic) -> Iterator[Watch]:
    """The watch of one attempt on this thread, closed (its timer cancelled) when the block ends."""
    watch = Watch(deadline_at, clock)
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    try:
        yield watch
    finally:
        _current.watch = previous
        watch.close()


def _report(connection: Any) -> None:
    watch = getattr(_current, "watch", None)
    if isinstance(watch, Watch):
        watch.attach(connection)


class WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """urllib3's HTTPS connection, reporting itself to the attempt's watch (if any) before each use."""

    def connect(self) -> None:
        _report(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        _report(self)
        return super().getresponse()


class WatchedHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


def watch_pools(manager: Any) -> None:
    """Make ``manager`` (a urllib3 pool or proxy manager) open watched HTTPS pools."""
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if isinstance(classes, Mapping):
        manager.pool_classes_by_scheme = {**classes, "https": WatchedHTTPSConnectionPool}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' HTTPAdapter whose HTTPS connections report to the attempt's watch; stock behaviour otherwise."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        watch_pools(manager)
        return manager


# -- reading a body within its bounds -------------------------------------------------------------------------------


class TooLarge(Exception):
    """The body passed the cap. ``stage``: ``announced`` (its Content-Length; ``read`` is that length), ``wire``,
    ``inflated`` (after decompression) or ``buffered`` (an adapter that read it all itself)."""

    def __init__(self, read: int, stage: str) -> None:
        super().__init__(f"{read} bytes {stage}")
        self.read = read
        self.stage = stage


class Expired(Exception):
    """The attempt's deadline passed between two reads of the body."""


class Undecodable(Exception):
    """The body does not decode as its Content-Encoding says, or is in a coding nobody asked for."""

    def __init__(self, encoding: str, *, unsupported: bool) -> None:
        super().__init__(encoding)
        self.encoding = encoding
        self.unsupported = unsupported


class Inflater:
    """Incremental decoding of one Content-Encoding into ``into``, at most ``limit + 1`` bytes ever produced (in
    pieces of at most ``PIECE``). "deflate" is zlib-wrapped (RFC 9110) or raw, as urllib3 accepts both; a gzip body
    of several members is read to its end."""

    def __init__(self, encoding: str, limit: int, into: bytearray) -> None:
        self.encoding = encoding
        self._limit = limit
        self._into = into
        self._first = True
        self._inflater = self._new()

    def _new(self, wbits: int | None = None) -> Any:
        if self.encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.encoding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS if wbits is None else wbits)
        return None

    def feed(self, data: bytes) -> None:
        if self._inflater is None:
            self._put(data)
            return
        if self._first and self.encoding == "deflate":
            self._first = False
            produced = len(self._into)
            try:
                self._inflate(data)
                return
            except zlib.error:
                del self._into[produced:]
                self._inflater = self._new(-zlib.MAX_WBITS)
        self._inflate(data)

    def _inflate(self, data: bytes) -> None:
        while data:
            room = self._limit - len(self._into) + 1
            self._put(self._inflater.decompress(data, min(room, PIECE)))
            data = self._inflater.unconsumed_tail
            if not data and self._inflater.eof and self._inflater.unused_data and self.encoding != "deflate":
                data = self._inflater.unused_data  # the next member of a multi-member gzip body
                self._inflater = self._new()

    def finish(self) -> None:
        if self._inflater is not None:
            self._put(self._inflater.flush())

    def _put(self, piece: bytes) -> None:
        self._into += piece
        if len(self._into) > self._limit:
            raise TooLarge(len(self._into), "inflated" if self._inflater is not None else "wire")


def read_bounded(response: requests.Response, limit: int, *, expired: Callable[[], bool] = lambda: False) -> bytes:
    """The decoded body of a streamed ``response`` (``stream=True``), read within ``limit`` bytes and the deadline.

    Raises ``TooLarge``, ``Expired`` (``expired()`` turned true between reads), ``Undecodable``; the caller closes
    the response on any of them (the connection is never reused with the rest of an answer in it). The caller
    also stores the result (``response._content``) and, where a later layer would decode again, drops the
    Content-Encoding header.
    """
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(int(declared), "announced")
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if raw is None or read1 is None:  # an adapter that buffered the body itself (no stream to bound)
        content = response.content or b""
        if len(content) > limit:
            raise TooLarge(len(content), "buffered")
        return content
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise Undecodable(encoding, unsupported=True)
    body = bytearray()
    inflater = Inflater(encoding, limit, body)
    wire = 0
    try:
        while True:
            if expired():
                raise Expired
            piece = read1(CHUNK, decode_content=False)
            if not piece:
                break
            wire += len(piece)
            if wire > limit:
                raise TooLarge(wire, "wire")
            inflater.feed(piece)
        inflater.finish()
    except zlib.error:
        raise Undecodable(encoding, unsupported=False) from None
    return bytes(body)
