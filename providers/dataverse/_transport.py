"""One Web API call: headers, token, the statuses it accepts, retries, bounds, pacing, and the typed error otherwise.

Retry rules (powerapps-docs ``api-limits`` and ``compose-http-requests-handle-errors``):

* 429 and 503 mean "not processed": wait ``Retry-After`` seconds (or a backoff delay when it is absent, zero,
  negative or an HTTP-date already past: ``providers/_retry_after.throttle_wait``) and send again, for every
  method, POST included, while the waits stay within ``max_retry_wait`` in total and the resends within
  ``MAX_THROTTLED_RETRIES``; then raise ``Throttled`` naming the environment. A 429 also pauses every other worker
  of the same caller and environment for its Retry-After (``_pacing.py``).
* Other 5xx and connection failures: an *idempotent* call (GET, PATCH of absolute values, DELETE of a
  reference) is sent again after an exponential backoff with jitter, a few times within the same budget.
* A POST is never replayed blindly. A failure after it may have reached Dataverse (connection dropped after
  sending, a lost response, a 502/504 from a gateway) raises ``ConnectionFailed(maybe_committed=True)``: the
  caller re-reads and decides. Only a connection that was never opened is retried.
* 401 drops the cached token and tries once more with a fresh one (a token revoked or expired early).

Bounds (issue 9, "every loop ends, every call has a deadline"):

* **Deadline.** One operation (every attempt, retry wait and byte of ``send``) ends within ``deadline`` seconds
  (default ``max_retry_wait + READ_TIMEOUT``) with ``DeadlineExceeded``. Time held back by pacing is counted apart,
  up to ``max_pacing_wait`` (one 5-minute window frees any request limit), so the worst case is the sum of the two.
  requests' read timeout is per socket read, so a server trickling one byte at a time would never trip it: each
  attempt's socket read timeout is cut to the time left, the body is read in pieces with the clock checked between
  them, and the sockets of the attempt are shut down by a timer when the deadline passes (``DeadlineAdapter``,
  fitted onto the session's stock adapter), so even a trickle of response headers ends there.
* **Size.** A body is streamed raw (``stream=True``, ``decode_content=False``): at most ``max_response_bytes`` on
  the wire (a larger ``Content-Length`` is refused before reading), then decompressed here piece by piece with the
  same cap on the output, so a gzip bomb is refused after inflating at most the cap, never the whole of it.
* **No redirects.** ``allow_redirects=False``; a 3xx is ``Redirected`` naming the status and where it pointed.
  No request, and so no token, ever goes to another origin.
* **Paging.** ``pages`` stops at ``max_pages`` pages and at a ``@odata.nextLink`` already followed, with
  ``EndlessPaging``; a nextLink to another origin is ``UnexpectedResponse``.
* **Shapes.** A body that is not JSON, or not the shape the call reads, is ``UnexpectedResponse``.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.exceptions

from providers._identity import token_caller
from providers._retry_after import throttle_wait
from providers._wire import Expired, TooLarge, Undecodable, WatchedAdapter, read_bounded, watching
from providers.dataverse._pacing import PACING, Pacer, WaitTooLong
from providers.dataverse.errors import (
    ConnectionFailed,
    DataverseError,
    DeadlineExceeded,
    EndlessPaging,
    Redirected,
    ResponseTooLarge,
    ServerError,
    Throttled,
    UnexpectedResponse,
    error_for_status,
)
from providers.dataverse.models import collection_from_wire

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000  # Dataverse's default and maximum page size
MAX_PAGES = 200  # 1,000,000 rows at the maximum page size; no environment this project serves comes near
BACKOFF_BASE = 0.5  # seconds; doubled per attempt
BACKOFF_CAP = 8.0
MAX_BACKOFF_RETRIES = 4  # resends after a 5xx / connection failure
MAX_THROTTLED_RETRIES = 30  # resends after 429/503, within the wait budget (guards against "Retry-After: 0" forever)
CONNECT_TIMEOUT = 10.0  # seconds, per attempt
READ_TIMEOUT = 120.0  # seconds, per socket read (and never more than the operation has left)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # per answer, compressed and decompressed alike
MAX_PACING_WAIT = 300.0  # seconds one operation may be held back by pacing: one window frees any request limit

# Headers every Web API request carries (powerapps-docs compose-http-requests-handle-errors). Accept-Encoding is
# pinned to the two codings this module decompresses itself (requests would also offer br / zstd when installed).
BASE_HEADERS: Mapping[str, str] = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}


@dataclass(frozen=True)
class Call:
    """What one call sends and which statuses it accepts.

    ``idempotent`` allows resending after a 5xx or a connection failure. ``accept_after_resend`` lists statuses
    that mean success only when an earlier attempt may have been processed (a DELETE of a reference answered
    404 after a lost response: the first attempt did it).
    """

    method: str
    url: str
    accept: Collection[int]
    idempotent: bool
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    accept_after_resend: Collection[int] = ()
    accept_multipart: bool = False  # $batch: any status with a multipart body is the caller's to read


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never opened, so the request cannot have reached Dataverse."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(
            item,
            requests.exceptions.ConnectTimeout
            | urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError,
        ):
            return True
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return False


def error_body(response: requests.Response) -> tuple[str | None, str]:
    """(code, message) from Dataverse's ``{"error": {"code", "message"}}`` body, or the status reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        code = error.get("code")
        message = error.get("message")
        return (str(code) if code else None, str(message) if message else response.reason or "error")
    return None, response.reason or f"HTTP {response.status_code}"


# -- the session and one attempt's wire errors ---------------------------------------------------------------------


class DeadlineAdapter(WatchedAdapter):
    """requests' HTTPAdapter whose HTTPS connections report to the attempt's deadline watch (``providers._wire``).

    Outside a ``Transport`` attempt it behaves exactly as the stock adapter does.
    """


def fit_deadline_adapter(session: requests.Session) -> requests.Session:
    """Put a ``DeadlineAdapter`` where ``session`` has requests' stock HTTPS adapter (same pool settings).

    A session with another adapter mounted (a test's fake, a caller's own) is left as it is.
    """
    adapter = session.adapters.get("https://")
    if type(adapter) is requests.adapters.HTTPAdapter:
        fitted = DeadlineAdapter(
            pool_connections=getattr(adapter, "_pool_connections", requests.adapters.DEFAULT_POOLSIZE),
            pool_maxsize=getattr(adapter, "_pool_maxsize", requests.adapters.DEFAULT_POOLSIZE),
            max_retries=adapter.max_retries,
            pool_block=getattr(adapter, "_pool_block", requests.adapters.DEFAULT_POOLBLOCK),
        )
        adapter.close()
        session.mount("https://", fitted)
    return session


def new_session() -> requests.Session:
    """A requests session whose HTTPS adapter carries the deadline watchdog."""
    return fit_deadline_adapter(requests.Session())


class _Expired(Exception):
    """The operation's deadline passed during an attempt; ``sent``: the request may have reached Dataverse."""

    def __init__(self, *, sent: bool) -> None:
        self.sent = sent


class _TooLarge(Exception):
    def __init__(self, read: int, what: str, status: int = 0) -> None:
        self.read = read
        self.what = what
        self.status = status


# what a ResponseTooLarge says of each stage at which read_bounded stopped
_TOO_LARGE_AT = {"wire": "on the wire", "inflated": "after decompression", "buffered": "as buffered by the adapter"}


def _location_origin(value: str | None) -> str | None:
    """The origin a Location header points to (nothing of its path or query), or None."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    if not parts.scheme or not parts.hostname:
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{port}"


# -- the transport --------------------------------------------------------------------------------------------------


class Transport:
    """Sends calls for one environment; knows nothing about tables, only about HTTP, tokens, bounds and retries."""

    def __init__(
        self,
        origin: str,
        session: requests.Session | None,
        token: Callable[[], str],
        invalidate_token: Callable[[str], None],
        *,
        max_retry_wait: float,
        sleep: Callable[[float], None],
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        deadline: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_pages: int = MAX_PAGES,
        pacer: Pacer | None = None,
        max_pacing_wait: float = MAX_PACING_WAIT,
    ) -> None:
        """``clock`` is wall time (for HTTP-date ``Retry-After``s); ``monotonic`` measures the ``deadline`` of one
        operation (default ``max_retry_wait + READ_TIMEOUT``). ``pacer`` holds the per-(caller, environment)
        budgets (default: the process-wide ``PACING``); the time an operation is held back by it counts against
        ``max_pacing_wait``, not the deadline (a full 5-minute window must be waited out, not failed). A session
        with requests' stock HTTPS adapter gets the deadline watchdog fitted (``fit_deadline_adapter``)."""
        self.origin = origin
        self._session = fit_deadline_adapter(session if session is not None else requests.Session())
        self._token = token
        self._invalidate_token = invalidate_token
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._monotonic = monotonic
        self.deadline = max_retry_wait + READ_TIMEOUT if deadline is None else deadline
        self.max_response_bytes = max_response_bytes
        self.max_pages = max_pages
        self._pacer = PACING if pacer is None else pacer
        self.max_pacing_wait = max_pacing_wait

    def url(self, path: str, query: str = "") -> str:
        return f"{self.origin}{API_PATH}{path}" + (f"?{query}" if query else "")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2.0**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def send(self, call: Call) -> requests.Response:
        """Send ``call`` until it gets an accepted status (the response, its body read) or a typed error."""
        deadline_at = self._monotonic() + self.deadline
        paced = 0.0  # seconds held back by pacing so far (they move the deadline, within max_pacing_wait)

        def remaining() -> float:
            return deadline_at - self._monotonic()

        waited = 0.0
        failures = 0  # 5xx / connection failures so far (drives the backoff)
        maybe_processed = False  # an earlier attempt may have reached Dataverse
        token_refreshed = False
        throttled = 0
        honoured = -math.inf  # the end of a pause this worker already slept out itself
        while True:
            if remaining() <= 0:
                raise self._deadline_exceeded(
                    call, self._past_deadline("no accepted answer"), maybe_committed=maybe_processed
                )
            token = self._token()
            headers = {**BASE_HEADERS, **(call.headers or {}), "Authorization": f"Bearer {token}"}
            budget = self._pacer.budget(token_caller(token), self.origin)
            held_from = self._monotonic()

            def pacing_left(ends: float = held_from + self.max_pacing_wait - paced) -> float:
                return ends - self._monotonic()

            try:
                slot = budget.acquire(remaining=pacing_left, sleep=self._sleep, honoured=honoured)
            except WaitTooLong as wait:
                why = (
                    f"waiting {wait.seconds:g} s more for {wait.reason} would pass the {self.max_pacing_wait:g} s "
                    "one operation may be held back by pacing"
                )
                raise self._deadline_exceeded(call, why, maybe_committed=maybe_processed) from None
            held = self._monotonic() - held_from
            paced += held
            deadline_at += held
            answer: requests.Response | None = None
            try:
                answer = self._exchange(call, headers, deadline_at)
            except _Expired as expired:
                committed = maybe_processed or expired.sent
                why = self._past_deadline("no complete answer")
                raise self._deadline_exceeded(call, why, maybe_committed=committed) from None
            except _TooLarge as too_large:
                raise ResponseTooLarge(
                    limit=self.max_response_bytes,
                    read=too_large.read,
                    what=too_large.what,
                    status=too_large.status,
                    method=call.method,
                    url=call.url,
                    environment=self.origin,
                ) from None
            except requests.RequestException as exc:
                never_sent = _never_sent(exc)
                reason = "could not connect" if never_sent else "the connection failed before a response arrived"
                committed = maybe_processed or not never_sent
                if not (never_sent or call.idempotent):
                    raise self._connection_failed(call, reason, maybe_committed=True) from None
                delay = self._backoff(failures)
                if failures >= MAX_BACKOFF_RETRIES or waited + delay > self._max_retry_wait or delay >= remaining():
                    raise self._connection_failed(call, reason, maybe_committed=committed) from None
                self._sleep(delay)
                waited += delay
                failures += 1
                maybe_processed = committed
                continue
            finally:
                budget.release(slot, answer.headers if answer is not None else None)

            response = answer
            status = response.status_code
            if status in call.accept or (maybe_processed and status in call.accept_after_resend):
                return response
            if call.accept_multipart and response.headers.get("Content-Type", "").lower().startswith("multipart/"):
                return response
            code, message = error_body(response)
            message = message.replace(token, "***")
            if 300 <= status < 400:
                raise Redirected(
                    status=status,
                    method=call.method,
                    url=call.url,
                    environment=self.origin,
                    location=_location_origin(response.headers.get("Location")),
                    code=code,
                )
            if status == 401 and not token_refreshed:
                self._invalidate_token(token)
                token_refreshed = True
                continue
            if status in (429, 503):
                delay, asked = throttle_wait(response.headers, functools.partial(self._backoff, failures), self._clock)
                paused = budget.pause(delay) if status == 429 else -math.inf  # every worker of the environment
                if waited + delay > self._max_retry_wait or throttled >= MAX_THROTTLED_RETRIES or delay >= remaining():
                    raise Throttled(
                        environment=self.origin,
                        status=status,
                        method=call.method,
                        url=call.url,
                        waited=waited,
                        budget=self._max_retry_wait,
                        retry_after=asked,
                        code=code,
                    )
                self._sleep(delay)
                waited += delay
                throttled += 1
                honoured = max(honoured, paused)
                if asked is None or asked <= 0:
                    failures += 1
                continue
            if status >= 500:
                if not call.idempotent:
                    if status in (502, 504):
                        raise self._connection_failed(
                            call, f"a gateway answered {status}", maybe_committed=True, status=status
                        )
                    raise self._error(call, status, code, message)
                delay = self._backoff(failures)
                if failures >= MAX_BACKOFF_RETRIES or waited + delay > self._max_retry_wait or delay >= remaining():
                    raise ServerError(
                        f"{message} (after {failures + 1} attempts)",
                        status=status,
                        method=call.method,
                        url=call.url,
                        code=code,
                        environment=self.origin,
                    )
                self._sleep(delay)
                waited += delay
                failures += 1
                maybe_processed = True
                continue
            raise self._error(call, status, code, message)

    def _exchange(self, call: Call, headers: Mapping[str, str], deadline_at: float) -> requests.Response:
        """One attempt: send, then read the whole body within the deadline and the size cap (``read_bounded``)."""
        left = deadline_at - self._monotonic()
        timeout = (max(0.001, min(CONNECT_TIMEOUT, left)), max(0.001, min(READ_TIMEOUT, left)))
        with watching(deadline_at, self._monotonic) as watch:
            try:
                response = self._session.request(
                    call.method,
                    call.url,
                    headers=dict(headers),
                    data=call.body,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                if watch.fired or self._monotonic() >= deadline_at:
                    raise _Expired(sent=not _never_sent(exc)) from None
                raise
            try:
                body = read_bounded(response, self.max_response_bytes, expired=lambda: self._monotonic() >= deadline_at)
            except TooLarge as too_large:
                response.close()
                if too_large.stage == "announced":
                    raise _TooLarge(
                        0, f"it announced Content-Length {too_large.read:,}", response.status_code
                    ) from None
                raise _TooLarge(too_large.read, _TOO_LARGE_AT[too_large.stage], response.status_code) from None
            except Undecodable as bad:
                response.close()
                if bad.unsupported:
                    what = (
                        f"Dataverse sent a body with Content-Encoding {bad.encoding!r}; only gzip and deflate were "
                        "accepted"
                    )
                else:
                    what = f"Dataverse sent a {response.headers.get('Content-Encoding')} body that does not decode"
                raise self._unexpected(call, what, response) from None
            except Expired:
                response.close()
                raise _Expired(sent=True) from None
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                response.close()
                if watch.fired or self._monotonic() >= deadline_at:
                    raise _Expired(sent=True) from None
                raise requests.ConnectionError("the connection failed while the answer was read") from exc
        response._content = body
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    def _deadline_exceeded(self, call: Call, why: str, *, maybe_committed: bool) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"Dataverse environment {self.origin}: {why}",
            deadline=self.deadline,
            maybe_committed=maybe_committed,
            method=call.method,
            url=call.url,
            environment=self.origin,
        )

    def _past_deadline(self, what: str) -> str:
        return f"{what} within the operation's {self.deadline:g} s deadline"

    def _error(self, call: Call, status: int, code: str | None, message: str) -> DataverseError:
        return error_for_status(
            status, code=code, message=message, method=call.method, url=call.url, environment=self.origin
        )

    def _connection_failed(
        self, call: Call, reason: str, *, maybe_committed: bool, status: int | None = None
    ) -> ConnectionFailed:
        return ConnectionFailed(
            f"Dataverse environment {self.origin}: {reason}",
            maybe_committed=maybe_committed,
            status=status,
            method=call.method,
            url=call.url,
            environment=self.origin,
        )

    # -- conveniences ------------------------------------------------------------------------------------------

    def _unexpected(self, call: Call, message: str, response: requests.Response) -> UnexpectedResponse:
        return UnexpectedResponse(
            message, status=response.status_code, method=call.method, url=call.url, environment=self.origin
        )

    def json(self, call: Call) -> Any:
        response = self.send(call)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(
                call, f"Dataverse answered {response.status_code} without a JSON body", response
            ) from None

    def pages(self, path: str, query: str, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[list[Mapping[str, Any]]]:
        """Every page of a collection, following ``@odata.nextLink`` untouched (it carries the ``$skiptoken``).

        At most ``max_pages`` pages, and never a link already followed: either ends with ``EndlessPaging``.
        """
        url: str | None = self.url(path, query)
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        followed: set[str] = set()
        while url is not None:
            if len(followed) >= self.max_pages:
                raise EndlessPaging(
                    f"Dataverse's {path} collection went on past {self.max_pages} pages; stopped reading it",
                    pages=len(followed),
                    method="GET",
                    url=url,
                    environment=self.origin,
                )
            followed.add(url)
            body = self.json(Call("GET", url, accept=(200,), idempotent=True, headers=headers))
            try:
                rows = collection_from_wire(body)
            except UnexpectedResponse as bad:
                raise UnexpectedResponse(
                    bad.message, status=200, method="GET", url=url, environment=self.origin
                ) from None
            yield rows
            next_link = body.get("@odata.nextLink")
            if next_link is not None and (not isinstance(next_link, str) or not self._same_origin(next_link)):
                # never send the token anywhere but the environment
                raise UnexpectedResponse(
                    "Dataverse's @odata.nextLink points outside the environment",
                    method="GET",
                    url=url,
                    environment=self.origin,
                )
            if next_link is not None and next_link in followed:
                raise EndlessPaging(
                    f"Dataverse's {path} collection links back to a page already read (page {len(followed)}); "
                    "stopped reading it",
                    pages=len(followed),
                    method="GET",
                    url=url,
                    environment=self.origin,
                )
            url = next_link

    def _same_origin(self, url: str) -> bool:
        return url == self.origin or url.startswith(self.origin + "/")


def json_body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
