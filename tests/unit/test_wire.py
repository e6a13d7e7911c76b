"""providers._wire on its own: the deadline watch over real sockets, and the bounded body reader's every stage.

Both clients' own tests (test_dataverse_transport_bounds.py, tests/provider/test_keyvault_https.py) drive these
through their transports; these pin the shared behaviour each of them relies on.
"""

from __future__ import annotations

import gzip
import io
import socket
import threading
import time
import zlib

import pytest
import requests
import urllib3

from providers._wire import CHUNK, Expired, TooLarge, Undecodable, Watch, read_bounded, watching


def _response(body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers.update(headers or {})
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers or {}, status=200, preload_content=False, decode_content=False
    )
    return response


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def test_the_watch_shuts_a_blocked_read_when_the_deadline_passes() -> None:
    ours, theirs = socket.socketpair()
    try:
        outcome: list[bytes] = []
        with watching(time.monotonic() + 0.2) as watch:
            watch.attach(_Connection(ours))
            reader = threading.Thread(target=lambda: outcome.append(ours.recv(1)), daemon=True)  # the peer never writes
            reader.start()
            reader.join(timeout=10)
            assert not reader.is_alive(), "the blocked read outlived the deadline"
            assert watch.fired
            assert outcome == [b""]  # the read saw the connection end
            with pytest.raises(TimeoutError):  # a connection reporting after the deadline is refused
                watch.attach(_Connection(theirs))
    finally:
        ours.close()
        theirs.close()


def test_a_watch_closed_in_time_never_fires() -> None:
    ours, theirs = socket.socketpair()
    try:
        with watching(time.monotonic() + 0.1) as watch:
            watch.attach(_Connection(ours))
        time.sleep(0.3)
        assert not watch.fired
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # the socket is whole
    finally:
        ours.close()
        theirs.close()


def test_a_watch_without_connections_arms_no_timer() -> None:
    watch = Watch(time.monotonic() - 1)  # already past: still nothing happens until a connection reports
    time.sleep(0.05)
    assert not watch.fired
    watch.close()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110: zlib-wrapped
        ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),  # raw deflate, as some servers send
    ],
)
def test_every_accepted_coding_reads_back(encoding: str, encode: object) -> None:
    body = b'{"value": []}' * 10_000
    wire = encode(body)  # type: ignore[operator]
    headers = {} if encoding == "identity" else {"Content-Encoding": encoding}
    assert read_bounded(_response(wire, headers), limit=len(body)) == body


def test_a_gzip_body_of_several_members_is_read_to_its_end() -> None:
    wire = gzip.compress(b"first,") + gzip.compress(b"second")
    assert read_bounded(_response(wire, {"Content-Encoding": "gzip"}), limit=100) == b"first,second"


def test_a_gzip_bomb_is_refused_having_inflated_one_byte_past_the_cap() -> None:
    limit = 1 << 20
    wire = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(TooLarge) as refused:
        read_bounded(_response(wire, {"Content-Encoding": "gzip"}), limit=limit)
    assert refused.value.stage == "inflated" and refused.value.read == limit + 1


def test_the_cap_holds_on_the_wire_and_for_an_announced_length() -> None:
    with pytest.raises(TooLarge) as wire:
        read_bounded(_response(b"x" * (3 * CHUNK)), limit=CHUNK)
    assert wire.value.stage in ("wire", "inflated") and wire.value.read <= 2 * CHUNK
    with pytest.raises(TooLarge) as announced:
        read_bounded(_response(b"", {"Content-Length": str(10 * CHUNK)}), limit=CHUNK)
    assert announced.value.stage == "announced" and announced.value.read == 10 * CHUNK


def test_a_coding_not_asked_for_and_a_broken_body_are_undecodable() -> None:
    with pytest.raises(Undecodable) as br:
        read_bounded(_response(b"...", {"Content-Encoding": "br"}), limit=100)
    assert br.value.unsupported and br.value.encoding == "br"
    with pytest.raises(Undecodable) as broken:
        read_bounded(_response(b"not gzip at all", {"Content-Encoding": "gzip"}), limit=100)
    assert not broken.value.unsupported


def test_the_clock_is_checked_between_reads() -> None:
    reads = iter([False, True])  # the first piece arrives in time, the deadline passes before the next
    with pytest.raises(Expired):
        read_bounded(_response(b"x" * (2 * CHUNK)), limit=4 * CHUNK, expired=lambda: next(reads))
