"""One Web API call: headers, token, the statuses it accepts, retries, and the typed error otherwise.

Retry rules (powerapps-docs ``api-limits`` and ``compose-http-requests-handle-errors``):

* 429 and 503 mean "not processed": wait ``Retry-After`` seconds (or a backoff delay when absent) and send
  again, for every method, POST included, while the waits stay within ``max_retry_wait`` in total; then raise
  ``Throttled`` naming the environment.
* Other 5xx and connection failures: an *idempotent* call (GET, PATCH of absolute values, DELETE of a
  reference) is sent again after an exponential backoff with jitter, a few times within the same budget.
* A POST is never replayed blindly. A failure after it may have reached Dataverse (connection dropped after
  sending, a lost response, a 502/504 from a gateway) raises ``ConnectionFailed(maybe_committed=True)``: the
  caller re-reads and decides. Only a connection that was never opened is retried.
* 401 drops the cached token and tries once more with a fresh one (a token revoked or expired early).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from providers._retry_after import retry_after
from providers.dataverse.errors import (
    ConnectionFailed,
    DataverseError,
    ServerError,
    Throttled,
    UnexpectedResponse,
    error_for_status,
)
from providers.dataverse.models import collection_from_wire

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000  # Dataverse's default and maximum page size
BACKOFF_BASE = 0.5  # seconds; doubled per attempt
BACKOFF_CAP = 8.0
MAX_BACKOFF_RETRIES = 4  # resends after a 5xx / connection failure
MAX_THROTTLED_RETRIES = 30  # resends after 429/503, within the wait budget (guards against "Retry-After: 0" forever)
TIMEOUT = (10.0, 120.0)  # connect, read (seconds)

# Headers every Web API request carries (powerapps-docs compose-http-requests-handle-errors).
BASE_HEADERS: Mapping[str, str] = {
    "Accept": "application/json",
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


class Transport:
    """Sends calls for one environment; knows nothing about tables, only about HTTP, tokens and retries."""

    def __init__(
        self,
        origin: str,
        session: requests.Session,
        token: Callable[[], str],
        invalidate_token: Callable[[str], None],
        *,
        max_retry_wait: float,
        sleep: Callable[[float], None],
        rng: random.Random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.origin = origin
        self._session = session
        self._token = token
        self._invalidate_token = invalidate_token
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._rng = rng
        self._clock = clock

    def url(self, path: str, query: str = "") -> str:
        return f"{self.origin}{API_PATH}{path}" + (f"?{query}" if query else "")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2.0**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def send(self, call: Call) -> requests.Response:
        waited = 0.0
        failures = 0  # 5xx / connection failures so far (drives the backoff)
        maybe_processed = False  # an earlier attempt may have reached Dataverse
        token_refreshed = False
        throttled = 0
        while True:
            token = self._token()
            headers = {**BASE_HEADERS, **(call.headers or {}), "Authorization": f"Bearer {token}"}
            try:
                response = self._session.request(
                    call.method, call.url, headers=headers, data=call.body, timeout=TIMEOUT, allow_redirects=False
                )
            except requests.RequestException as exc:
                never_sent = _never_sent(exc)
                reason = "could not connect" if never_sent else "the connection failed before a response arrived"
                committed = maybe_processed or not never_sent
                if not (never_sent or call.idempotent):
                    raise self._connection_failed(call, reason, maybe_committed=True) from None
                delay = self._backoff(failures)
                if failures >= MAX_BACKOFF_RETRIES or waited + delay > self._max_retry_wait:
                    raise self._connection_failed(call, reason, maybe_committed=committed) from None
                self._sleep(delay)
                waited += delay
                failures += 1
                maybe_processed = committed
                continue

            status = response.status_code
            if status in call.accept or (maybe_processed and status in call.accept_after_resend):
                return response
            if call.accept_multipart and response.headers.get("Content-Type", "").lower().startswith("multipart/"):
                return response
            code, message = error_body(response)
            message = message.replace(token, "***")
            if status == 401 and not token_refreshed:
                self._invalidate_token(token)
                token_refreshed = True
                continue
            if status in (429, 503):
                asked = retry_after(response.headers, self._clock)
                delay = asked if asked is not None else self._backoff(failures)
                if waited + delay > self._max_retry_wait or throttled >= MAX_THROTTLED_RETRIES:
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
                if asked is None:
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
                if failures >= MAX_BACKOFF_RETRIES or waited + delay > self._max_retry_wait:
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

    def json(self, call: Call) -> Any:
        response = self.send(call)
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"Dataverse answered {response.status_code} without a JSON body",
                status=response.status_code,
                method=call.method,
                url=call.url,
                environment=self.origin,
            ) from None

    def pages(self, path: str, query: str, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[list[Mapping[str, Any]]]:
        """Every page of a collection, following ``@odata.nextLink`` untouched (it carries the ``$skiptoken``)."""
        url: str | None = self.url(path, query)
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        while url is not None:
            body = self.json(Call("GET", url, accept=(200,), idempotent=True, headers=headers))
            yield collection_from_wire(body)
            next_link = body.get("@odata.nextLink")
            if next_link is not None and (not isinstance(next_link, str) or not self._same_origin(next_link)):
                # never send the token anywhere but the environment
                raise UnexpectedResponse(
                    "Dataverse's @odata.nextLink points outside the environment",
                    method="GET",
                    url=url,
                    environment=self.origin,
                )
            url = next_link

    def _same_origin(self, url: str) -> bool:
        return url == self.origin or url.startswith(self.origin + "/")


def json_body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
