"""Every loop ends, every call has a deadline (issue 9 section 2, Dataverse side).

One test per bound, against the strict in-memory fake (an unexpected request fails the test) with a fake clock
and no real sleeping; then two against the emulator over real TLS sockets: a server trickling its response
headers one byte per TLS record, and one answering 429 with ``Retry-After: 0`` for ever.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import socket
import ssl
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3.util.connection

from adp_identity_emulator import Emulator
from providers._identity import TOKENS, bearer_token, forget_default_credential
from providers._wire import CHUNK as _CHUNK
from providers.dataverse._pacing import Pacer
from providers.dataverse._transport import (
    MAX_PAGES,
    MAX_RESPONSE_BYTES,
    MAX_THROTTLED_RETRIES,
    READ_TIMEOUT,
    Call,
    DeadlineAdapter,
    Transport,
    fit_deadline_adapter,
)
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    EndlessPaging,
    Redirected,
    ResponseTooLarge,
    ServerError,
    Throttled,
    UnexpectedResponse,
)
from tests.loopback_tls import LoopbackTLSServer

from .fake_dataverse import API, APP, BU_SELECT, FakeCredential, FakeDataverse, Recorded, Reply, standard_environment
from .fake_dataverse import FakeClock as Clock

MiB = 1 << 20


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


@pytest.fixture
def clock() -> Clock:
    return Clock(start=5_000.0)


def make_transport(fake: FakeDataverse, clock: Clock, *, max_retry_wait: float = 60.0, **kwargs: Any) -> Transport:
    credential = FakeCredential()
    fake.token = credential.token
    return Transport(
        fake.origin,
        fake.session(),
        lambda: credential.token,
        lambda _token: None,
        max_retry_wait=max_retry_wait,
        sleep=clock.sleep,
        rng=random.Random(7),
        monotonic=clock,
        pacer=Pacer(clock=clock),  # a budget of its own: nothing shared with other tests
        **kwargs,
    )


def get(transport: Transport, path: str = "businessunits", query: str = f"$select={BU_SELECT}") -> Call:
    prefer = {"Prefer": "odata.maxpagesize=5000"}  # the strict fake insists on it for collections
    return Call("GET", transport.url(path, query), accept=(200,), idempotent=True, headers=prefer)


def read_units(transport: Transport) -> list[Any]:
    return [row for page in transport.pages("businessunits", f"$select={BU_SELECT}") for row in page]


# -- paging ---------------------------------------------------------------------------------------------------------


def test_a_next_link_that_keeps_pointing_onward_ends_at_the_page_limit(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    pages = iter(range(1, 10**6))

    def onward(r: Recorded) -> Reply:
        link = f"{fake.origin}{API}businessunits?$select={BU_SELECT}&$skiptoken=page{next(pages)}"
        return Reply(200, {"value": [{"businessunitid": "x"}], "@odata.nextLink": link})

    fake.inject("respond", path_contains="businessunits", count=10**6, respond=onward)
    with pytest.raises(EndlessPaging) as raised:
        read_units(transport)
    assert fake.count("GET") == MAX_PAGES == 200
    assert raised.value.pages == 200
    assert "past 200 pages" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("cycle", [1, 2, 3])
def test_a_next_link_back_to_a_page_already_read_ends_paging(fake: FakeDataverse, clock: Clock, cycle: int) -> None:
    transport = make_transport(fake, clock)
    first = transport.url("businessunits", f"$select={BU_SELECT}")
    links = [first] + [f"{first}&$skiptoken={i}" for i in range(1, cycle)]

    def around(r: Recorded) -> Reply:  # page i links to page i + 1, the last one back to the first
        index = links.index(r.url)
        return Reply(200, {"value": [], "@odata.nextLink": links[(index + 1) % cycle]})

    fake.inject("respond", path_contains="businessunits", count=100, respond=around)
    with pytest.raises(EndlessPaging, match="links back to a page already read"):
        read_units(transport)
    assert fake.count("GET") == cycle


def test_the_page_limit_can_be_lowered(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock, max_pages=1)
    fake.page_size = 1  # two business units: two pages
    with pytest.raises(EndlessPaging):
        read_units(transport)
    assert fake.count("GET") == 1
    assert len(read_units(make_transport(fake, clock, max_pages=2))) == 2


def test_a_next_link_to_another_origin_is_never_followed(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    away = Reply(200, {"value": [], "@odata.nextLink": f"https://elsewhere.example{API}businessunits?$skiptoken=1"})
    fake.inject("reply", path_contains="businessunits", reply=away)
    with pytest.raises(UnexpectedResponse, match="outside the environment"):
        read_units(transport)
    assert fake.count() == 1  # (the strict fake fails the test on a request to another origin)


# -- the wait budget counts attempts as well as seconds -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["throttle", "unavailable"])
@pytest.mark.parametrize("value", ["0", "-5", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_zero_negative_or_past_retry_after_still_ends(
    fake: FakeDataverse, clock: Clock, kind: str, value: str
) -> None:
    transport = make_transport(fake, clock, max_retry_wait=60.0)
    fake.inject(kind, count=10**6, retry_after=value)
    with pytest.raises(Throttled) as raised:
        transport.json(get(transport))
    # never a resend without a pause: each wait is the backoff, as azure-core does for a falsy Retry-After
    assert clock.sleeps and all(wait >= 0.25 for wait in clock.sleeps)
    assert sum(clock.sleeps) <= 60.0
    assert fake.count() == len(clock.sleeps) + 1 <= MAX_THROTTLED_RETRIES + 1
    assert raised.value.retry_after == 0.0


def test_a_tiny_retry_after_forever_ends_after_the_attempt_cap(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    fake.inject("throttle", count=10**6, retry_after="0.001")
    with pytest.raises(Throttled) as raised:
        transport.json(get(transport))
    assert fake.count() == MAX_THROTTLED_RETRIES + 1 == 31
    assert raised.value.waited == pytest.approx(0.03)


# -- an overall deadline per operation ------------------------------------------------------------------------------


def test_a_server_slow_to_answer_cannot_hold_a_call_past_its_deadline(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    assert transport.deadline == 60.0 + READ_TIMEOUT  # the default: the retry budget plus one read timeout
    fake.hooks.append(lambda r: clock.advance(190.0))  # the answer (headers) took 190 s to arrive
    with pytest.raises(DeadlineExceeded) as raised:
        transport.json(get(transport))
    assert fake.count() == 1
    assert raised.value.deadline == 180.0
    assert isinstance(raised.value, ConnectionFailed) and raised.value.maybe_committed is True
    assert "180 s deadline" in str(raised.value)


class Trickle(io.RawIOBase):
    """A body that arrives one byte per read, each read taking ``step`` seconds of the fake clock."""

    def __init__(self, data: bytes, clock: Clock, step: float) -> None:
        self.data, self.clock, self.step, self.sent = data, clock, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.sent >= len(self.data) or len(buffer) == 0:
            return 0
        buffer[0] = self.data[self.sent]
        self.sent += 1
        self.clock.advance(self.step)
        return 1

    def read1(self, size: int = -1) -> bytes:
        return self.read(1)


def test_a_trickling_body_is_cut_at_the_deadline(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock, deadline=30.0)
    body = json.dumps({"value": [{"businessunitid": str(i)} for i in range(100)]}).encode()
    trickle = Trickle(body, clock, step=1.0)
    fake.inject("reply", reply=Reply(200, headers={"Content-Type": "application/json"}, stream=trickle))
    with pytest.raises(DeadlineExceeded):
        transport.json(get(transport))
    assert trickle.sent == 30 < len(body)  # one byte per second for the 30 s of the deadline, then the call ends
    assert fake.count() == 1


def test_a_post_past_its_deadline_is_never_replayed(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock, deadline=10.0)
    fake.hooks.append(lambda r: clock.advance(11.0))
    call = Call(
        "POST",
        transport.url("systemusers", "$select=systemuserid"),
        accept=(201,),
        idempotent=False,
        body=json.dumps(
            {"applicationid": APP, "businessunitid@odata.bind": f"/businessunits({fake.root_id})"}
        ).encode(),
        headers={"Content-Type": "application/json", "Prefer": "return=representation"},
    )
    with pytest.raises(DeadlineExceeded) as raised:
        transport.send(call)
    assert raised.value.maybe_committed is True and "may have been processed" in str(raised.value)
    assert fake.count("POST") == 1


def test_no_retry_starts_that_the_deadline_could_not_wait_for(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock, deadline=1.0)
    fake.inject("bad_gateway", count=50)
    with pytest.raises(ServerError) as raised:
        transport.json(get(transport))
    # backoffs of 0.25-0.5, 0.5-1, 1-2 s...: no wait is started that would end past the 1 s deadline
    assert sum(clock.sleeps) < 1.0
    assert fake.count() == len(clock.sleeps) + 1 <= 3
    assert raised.value.status == 502


def test_a_retry_after_longer_than_the_time_left_ends_the_call_at_once(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock, max_retry_wait=600.0, deadline=20.0)
    fake.inject("throttle", count=5, retry_after=30)
    with pytest.raises(Throttled):
        transport.json(get(transport))
    assert clock.sleeps == [] and fake.count() == 1


# -- a cap on response size, checked before decompression -----------------------------------------------------------


class Counting(io.BytesIO):
    """A raw body that counts the bytes the client took from it."""

    taken = 0

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self.taken += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def gzip_bomb(total: int) -> bytes:
    """A valid gzip member of ``total`` zero bytes (1 GiB in about 1 MB), built without holding ``total`` bytes.

    After a full flush deflate keeps no history, so the compressed form of each MiB of zeros is the same bytes.
    """
    zeros = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // MiB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (total // MiB) + compressor.flush() + struct.pack("<II", crc, total & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(1 << 30)


def test_the_bomb_is_a_real_1_gib_gzip_body(bomb: bytes) -> None:
    inflater, size, data = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, bomb
    while data:
        size += len(inflater.decompress(data, 64 * MiB))
        data = inflater.unconsumed_tail
    assert size + len(inflater.flush()) == 1 << 30 and inflater.eof  # the CRC and length in the trailer hold
    assert len(bomb) < 1.1 * MiB


@pytest.mark.parametrize("cap", [MAX_RESPONSE_BYTES, 2 * MiB])
def test_a_1_gib_gzip_bomb_is_refused_without_inflating_it(
    fake: FakeDataverse, clock: Clock, bomb: bytes, cap: int
) -> None:
    transport = make_transport(fake, clock, max_response_bytes=cap)
    stream = Counting(bomb)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
    fake.inject("reply", reply=Reply(200, headers=headers, stream=stream))
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as raised:
            transport.json(get(transport))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = raised.value
    assert error.status == 200
    assert error.read == cap + 1 and "after decompression" in str(error)  # inflated one byte past the cap, no more
    assert stream.taken <= cap // 1000 + _CHUNK  # ~1/1000 of the cap of compressed bytes (deflate's best ratio)
    assert peak < 1.25 * cap + 4 * MiB  # the body so far and one decompressed piece of 1 MiB; never the 1 GiB
    assert fake.count() == 1


def test_a_body_announced_over_the_cap_is_refused_before_reading(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    stream = Counting(b"{}")
    headers = {"Content-Type": "application/json", "Content-Length": str(100 * 10**6)}
    fake.inject("reply", reply=Reply(200, headers=headers, stream=stream))
    with pytest.raises(ResponseTooLarge, match="Content-Length 100,000,000") as raised:
        transport.json(get(transport))
    assert stream.taken == 0 and raised.value.read == 0


class Zeros(io.RawIOBase):
    """``size`` bytes of spaces (valid JSON whitespace), made up as they are read."""

    def __init__(self, size: int) -> None:
        self.left, self.taken = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b" " * n
        self.left -= n
        self.taken += n
        return n

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)


def test_a_100_mb_body_without_a_length_is_cut_at_the_cap(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    stream = Zeros(100 * 10**6)
    fake.inject("reply", reply=Reply(200, headers={"Content-Type": "application/json"}, stream=stream))
    with pytest.raises(ResponseTooLarge, match="on the wire"):
        transport.json(get(transport))
    assert MAX_RESPONSE_BYTES < stream.taken <= MAX_RESPONSE_BYTES + _CHUNK


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110's deflate: zlib-wrapped
        ("deflate", _deflate_raw),  # what some servers send instead
        ("gzip", lambda data: gzip.compress(data[:10]) + gzip.compress(data[10:])),  # two gzip members
    ],
)
def test_compressed_answers_are_decoded(
    fake: FakeDataverse, clock: Clock, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    transport = make_transport(fake, clock)
    body = json.dumps({"value": [{"businessunitid": "a"}, {"businessunitid": "b"}]}).encode()
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    fake.inject("reply", reply=Reply(200, encode(body), headers))
    assert transport.json(get(transport)) == json.loads(body)
    assert fake.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(("encoding", "body"), [("br", b"\x0b\x02\x80{}\x03"), ("gzip", b"not gzip at all")])
def test_an_undecodable_body_is_unexpected(fake: FakeDataverse, clock: Clock, encoding: str, body: bytes) -> None:
    transport = make_transport(fake, clock)
    fake.inject("reply", reply=Reply(200, body, {"Content-Type": "application/json", "Content-Encoding": encoding}))
    with pytest.raises(UnexpectedResponse) as raised:
        transport.json(get(transport))
    assert type(raised.value) is UnexpectedResponse and encoding in str(raised.value)
    assert fake.count() == 1


# -- no redirect followed -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "location", "origin"),
    [
        (307, "https://elsewhere.example/api/data/v9.2/businessunits?token=x", "https://elsewhere.example"),
        (302, "https://ELSEWHERE.example:8443/login", "https://elsewhere.example:8443"),
        (301, None, None),
    ],
)
def test_a_redirect_is_a_typed_error_never_followed(
    fake: FakeDataverse, clock: Clock, status: int, location: str | None, origin: str | None
) -> None:
    transport = make_transport(fake, clock)
    same_origin = f"{fake.origin}{API}businessunits"
    fake.inject("reply", count=5, reply=Reply(status, "", {"Location": location or same_origin}))
    with pytest.raises(Redirected) as raised:
        transport.json(get(transport))
    error = raised.value
    assert error.status == status and f"({status})" in str(error)
    assert error.location == (origin or fake.origin)
    assert "token=x" not in str(error) and "/login" not in str(error)
    assert fake.count() == 1  # the strict fake also fails any request sent to elsewhere.example


def test_a_redirected_post_is_not_sent_again(fake: FakeDataverse, clock: Clock) -> None:
    transport = make_transport(fake, clock)
    fake.inject("reply", reply=Reply(307, "", {"Location": "https://elsewhere.example/api/data/v9.2/systemusers"}))
    call = Call(
        "POST",
        transport.url("systemusers", "$select=systemuserid"),
        accept=(201,),
        idempotent=False,
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(Redirected):
        transport.send(call)
    assert fake.count("POST") == 1


# -- typed errors for malformed answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, "<html>a proxy's login page</html>"),
        Reply(200, b"\xff\xfe not utf-8", {"Content-Type": "application/json"}),
        Reply(200, [{"businessunitid": "x"}]),
        Reply(200, {"value": "x"}),
        Reply(200, {"value": [1, 2]}),
        Reply(200, {"value": [], "@odata.nextLink": 7}),
    ],
)
def test_a_malformed_collection_is_unexpected_response(fake: FakeDataverse, clock: Clock, reply: Reply) -> None:
    transport = make_transport(fake, clock)
    fake.inject("reply", reply=reply)
    with pytest.raises(UnexpectedResponse) as raised:
        read_units(transport)
    assert raised.value.environment == fake.origin and raised.value.url
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, "not json"),
        Reply(200, {"value": [{"systemuserid": "x"}]}),  # a row without the columns asked for
        Reply(200, {"value": [{"isdisabled": False, "systemuserroles_association": "x"}]}),
    ],
)
def test_a_malformed_user_is_unexpected_response(fake: FakeDataverse, reply: Reply) -> None:
    credential = FakeCredential()
    fake.token = credential.token
    client = DataverseClient(fake.origin, credential, session=fake.session(), sleep=lambda _: None)
    fake.inject("reply", reply=reply)
    with pytest.raises(UnexpectedResponse):
        client.get_application_user(APP)


# -- the watchdog is fitted onto requests' stock adapter ------------------------------------------------------------


def test_the_stock_adapter_gets_the_deadline_watchdog_and_a_fake_keeps_its_own(fake: FakeDataverse) -> None:
    session = requests.Session()
    session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=32, max_retries=0))
    fit_deadline_adapter(session)
    fitted = session.adapters["https://"]
    assert isinstance(fitted, DeadlineAdapter)
    assert fitted._pool_maxsize == 32  # the caller's pool settings kept
    faked = fake.session()
    assert fit_deadline_adapter(faked).adapters["https://"] is fake


# -- against the emulator, over real sockets ------------------------------------------------------------------------


class TrickleProxy(LoopbackTLSServer):
    """A TLS relay in front of one emulator origin: the request goes on at once, the answer comes back one byte per
    TLS record every ``interval`` seconds (each socket read gets a byte long before any read timeout)."""

    def __init__(self, emulator: Emulator, upstream_port: int, interval: float) -> None:
        assert emulator.state_dir is not None
        state = Path(emulator.state_dir)
        self._client_tls = ssl.create_default_context(cafile=emulator.ca_bundle)
        self._upstream = ("127.0.0.1", upstream_port)
        self._interval = interval
        self.answer_bytes = 0
        self.trickled = 0
        super().__init__(str(state / "server.pem"), str(state / "server-key.pem"))

    @staticmethod
    def _read_message(sock: Any) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def handle(self, client: ssl.SSLSocket) -> None:
        request = self._read_message(client)
        with (
            socket.create_connection(self._upstream, timeout=10) as raw,
            self._client_tls.wrap_socket(raw, server_hostname="127.0.0.1") as upstream,
        ):
            upstream.sendall(request)
            answer = self._read_message(upstream)
        self.answer_bytes = len(answer)
        for byte in answer:
            if self.stop.wait(self._interval):
                return
            client.sendall(bytes([byte]))  # one TLS record per byte
            self.trickled += 1


@pytest.fixture
def pipeline_identity(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    for name, value in emulator.credential_env("DefraDev").items():
        monkeypatch.setenv(name, value)
    forget_default_credential()
    TOKENS.clear()
    yield emulator
    forget_default_credential()
    TOKENS.clear()


@pytest.mark.emulator
def test_a_server_trickling_its_headers_is_cut_at_the_deadline_over_tls(
    pipeline_identity: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = pipeline_identity
    url = emulator.environment_url("defradev-dev")
    token = bearer_token(None, f"{url}/.default")  # a real token from the emulated Entra ID, before the detour
    port = urlsplit(url).port
    assert port is not None
    proxy = TrickleProxy(emulator, port, interval=0.05)
    real_create_connection = urllib3.util.connection.create_connection

    def detour(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address[1] == port:  # the environment's own origin, so the token's audience still matches
            address = ("127.0.0.1", proxy.port)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", detour)
    transport = Transport(
        url,
        None,  # the transport's own session: the deadline watchdog on real sockets
        lambda: token,
        lambda _token: None,
        max_retry_wait=1.0,
        sleep=time.sleep,
        rng=random.Random(1),
        deadline=2.0,
        pacer=Pacer(),
    )
    pipeline = emulator.identity("DefraDev")["client_id"]
    call = get(transport, "systemusers", f"$filter=applicationid%20eq%20{pipeline}&$select=systemuserid")
    emulator.log.clear()
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded) as raised:
            transport.json(call)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert "2 s deadline" in str(raised.value)
    # the trickle would take answer_bytes * 50 ms (> 20 s) and every read gets a byte within 50 ms, far inside the
    # 2 s read timeout the attempt had: only the deadline can have ended it, and soon after it passed
    assert proxy.answer_bytes * 0.05 > 20
    assert proxy.trickled < proxy.answer_bytes
    assert 2.0 <= elapsed < 4.0
    assert [e.status for e in emulator.log.entries if e.service == "dataverse"] == [200]  # sent once, not again


@pytest.mark.emulator
def test_a_429_with_retry_after_0_forever_ends_within_bounded_requests_and_seconds(
    pipeline_identity: Emulator,
) -> None:
    emulator = pipeline_identity
    url = emulator.environment_url("defradev-dev")
    client = DataverseClient(url, max_retry_wait=3.0)
    emulator.faults.script("throttle", count=10_000, service="dataverse", retry_after=0)
    emulator.log.clear()
    started = time.monotonic()
    with pytest.raises(Throttled) as raised:
        client.get_application_user(APP)
    elapsed = time.monotonic() - started
    throttled = [e for e in emulator.log.entries if e.service == "dataverse"]
    assert all(e.status == 429 for e in throttled)
    assert 2 <= len(throttled) <= 8  # backoff waits (0.25-0.5, 0.5-1, 1-2 s, ...) within the 3 s budget
    assert elapsed < 3.0 + 2.0
    assert url in str(raised.value) and "\n" not in str(raised.value)
