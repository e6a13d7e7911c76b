"""Dataverse's service protection API limits, as real counters per caller and environment.

Microsoft Learn, "Service protection API limits" (powerapps-docs ``developer/data-platform/api-limits.md``):

- three limits, evaluated **per user** and per web server (the emulator is one web server per environment):
  the number of requests and the combined execution time within a 5-minute (300 s) sliding window, and the
  number of concurrent requests;
- defaults "per web server": 6000 requests, 20 minutes (1,200 s) of execution time, 52 concurrent requests;
- a breach answers ``429 Too Many Requests`` with ``Retry-After`` "with number of seconds", the "duration before
  any new requests from the user can be processed", and one of three codes (Web API hex code / message):

  ===================  ==============  ==========================================================================
  limit                code            message
  ===================  ==============  ==========================================================================
  number of requests   ``0x80072322``  Number of requests exceeded the limit of 6000 over time window of 300
                                       seconds.
  execution time       ``0x80072321``  Combined execution time of incoming requests exceeded limit of 1,200,000
                                       milliseconds over time window of 300 seconds. Decrease number of
                                       concurrent requests or reduce the duration of requests and try again
                                       later.
  concurrent requests  ``0x80072326``  Number of concurrent requests exceeded the limit of 52.
  ===================  ==============  ==========================================================================

  (the current page prints two spaces before "milliseconds"; earlier revisions of the same page, and the
  Organization service table, have one - the emulator writes one);
- "you can expect to exceed the number of requests and execution time limits ... before the limits take effect.
  However, exceeding the number of concurrent requests will immediately return an error";
- "A batch can contain up to 1000 operations and will avoid the number of requests limit. However, you will need
  to be prepared for the execution time limit": a ``$batch`` is ONE request, its whole handling time counts;
- response headers ``x-ms-ratelimit-burst-remaining-xrm-requests`` ("the remaining number of requests") and
  ``x-ms-ratelimit-time-remaining-xrm-requests`` ("the remaining combined duration"); a real response recorded in
  powerapps-docs ``webapi/use-ps-and-vscode-web-api.md`` carries ``x-ms-dop-hint: 48``,
  ``x-ms-ratelimit-time-remaining-xrm-requests: 1,200.00`` (seconds, grouped, two decimals) and
  ``x-ms-ratelimit-burst-remaining-xrm-requests: 5999``;
- ``x-ms-dop-hint`` is the environment's "recommended degree of parallelism" (``send-parallel-requests.md``).

What the documents leave open, the emulator chooses (and docs/reference/dataverse-web-api.md records):

- ``Retry-After`` is the time until the sliding window admits the caller again, in whole seconds rounded up
  (at least 1); for the concurrency limit, 1 s. Dataverse lengthens it for a client that keeps pushing; the
  emulator does not, so a test can compute it.
- A refused request is not counted; a request answered 401 is not counted either (it has no user yet).
- Execution time is the time the service took to handle the request, plus the injected ``latency`` fault when
  :attr:`ServiceProtectionLimits.count_latency` is set (the default: the latency stands in for a real
  server's work). A request's time enters the window when it completes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..http import EmuResponse

WINDOW_SECONDS = 300.0
REQUESTS_CODE = "0x80072322"  # -2147015902, number of requests
EXECUTION_TIME_CODE = "0x80072321"  # -2147015903, combined execution time
CONCURRENCY_CODE = "0x80072326"  # -2147015898, concurrent requests

DOP_HINT_HEADER = "x-ms-dop-hint"
BURST_REMAINING_HEADER = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING_HEADER = "x-ms-ratelimit-time-remaining-xrm-requests"
_CONCURRENCY_RETRY_AFTER = 1  # (chosen) the documents give no figure for this limit


@dataclass(frozen=True)
class ServiceProtectionLimits:
    """The limits one environment enforces per caller; the defaults are Microsoft's documented ones."""

    requests: int = 6000
    execution_seconds: float = 1200.0
    concurrent: int = 52
    window_seconds: float = WINDOW_SECONDS
    dop_hint: int = 48  # what the recorded real response in powerapps-docs carries
    count_latency: bool = True

    def __post_init__(self) -> None:
        for name in ("requests", "concurrent", "dop_hint"):
            if getattr(self, name) < 1:
                raise ValueError(f"service protection: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("execution_seconds", "window_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"service protection: {name} must be positive, got {getattr(self, name)}")

    def message(self, code: str) -> str:
        window = _number(self.window_seconds)
        if code == REQUESTS_CODE:
            return f"Number of requests exceeded the limit of {self.requests} over time window of {window} seconds."
        if code == EXECUTION_TIME_CODE:
            milliseconds = f"{round(self.execution_seconds * 1000):,}"
            return (
                f"Combined execution time of incoming requests exceeded limit of {milliseconds} milliseconds over "
                f"time window of {window} seconds. Decrease number of concurrent requests or reduce the duration of "
                "requests and try again later."
            )
        return f"Number of concurrent requests exceeded the limit of {self.concurrent}."


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Refusal:
    """A breached limit: the 429 to answer instead of serving the request."""

    code: str
    message: str
    retry_after: int  # whole seconds

    def response(self, headers: dict[str, str]) -> EmuResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return EmuResponse.json(429, body, {"Retry-After": str(self.retry_after), **headers})


@dataclass
class Ticket:
    """An admitted request, in flight until :meth:`ServiceProtection.finish`."""

    caller: str
    arrived: float


@dataclass
class _Caller:
    arrivals: deque[float] = field(default_factory=deque)  # counted requests, oldest first
    executions: deque[tuple[float, float]] = field(default_factory=deque)  # (completed at, seconds)
    execution_total: float = 0.0
    in_flight: int = 0


class ServiceProtection:
    """The counters of one environment (one "web server"), per caller; thread-safe."""

    def __init__(self, limits: ServiceProtectionLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._callers: dict[str, _Caller] = {}

    def _state(self, caller: str, now: float) -> _Caller:
        state = self._callers.setdefault(caller.lower(), _Caller())
        horizon = now - self.limits.window_seconds
        while state.arrivals and state.arrivals[0] <= horizon:
            state.arrivals.popleft()
        while state.executions and state.executions[0][0] <= horizon:
            state.execution_total -= state.executions.popleft()[1]
        if not state.executions:
            state.execution_total = 0.0  # no float residue once the window is empty
        return state

    def admit(self, caller: str) -> Ticket | Refusal:
        """Count a request arriving now, or refuse it with the limit it breaches."""
        limits = self.limits
        with self._lock:
            now = self._clock()
            state = self._state(caller, now)
            if len(state.arrivals) >= limits.requests:
                frees_at = state.arrivals[len(state.arrivals) - limits.requests] + limits.window_seconds
                return Refusal(REQUESTS_CODE, limits.message(REQUESTS_CODE), _seconds(frees_at - now))
            if state.execution_total >= limits.execution_seconds:
                return Refusal(
                    EXECUTION_TIME_CODE, limits.message(EXECUTION_TIME_CODE), _seconds(self._time_frees(state) - now)
                )
            if state.in_flight >= limits.concurrent:
                return Refusal(CONCURRENCY_CODE, limits.message(CONCURRENCY_CODE), _CONCURRENCY_RETRY_AFTER)
            state.arrivals.append(now)
            state.in_flight += 1
            return Ticket(caller, now)

    def _time_frees(self, state: _Caller) -> float:
        """When enough executions leave the window for the total to drop below the limit."""
        total = state.execution_total
        for completed, seconds in state.executions:
            total -= seconds
            if total < self.limits.execution_seconds:
                return completed + self.limits.window_seconds
        return self._clock()  # pragma: no cover - admit() only asks while the total is at the limit

    def finish(self, ticket: Ticket, seconds: float, *, counted: bool = True) -> None:
        """The request is answered: it took ``seconds``; ``counted=False`` takes it back out of the window."""
        with self._lock:
            now = self._clock()
            state = self._state(ticket.caller, now)
            state.in_flight -= 1
            if not counted:
                if ticket.arrived in state.arrivals:
                    state.arrivals.remove(ticket.arrived)
                return
            state.executions.append((now, max(0.0, seconds)))
            state.execution_total += max(0.0, seconds)

    def headers(self, caller: str | None) -> dict[str, str]:
        """The headers every answer carries: the DOP hint, and the caller's remaining budget."""
        headers = {DOP_HINT_HEADER: str(self.limits.dop_hint)}
        if caller is None:
            return headers
        with self._lock:
            state = self._state(caller, self._clock())
            remaining_requests = max(0, self.limits.requests - len(state.arrivals))
            remaining_time = max(0.0, self.limits.execution_seconds - state.execution_total)
        headers[BURST_REMAINING_HEADER] = str(remaining_requests)
        headers[TIME_REMAINING_HEADER] = f"{remaining_time:,.2f}"
        return headers

    def in_flight(self, caller: str) -> int:
        """Requests of ``caller`` being handled right now (for tests that line up concurrent requests)."""
        with self._lock:
            state = self._callers.get(caller.lower())
            return state.in_flight if state is not None else 0


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))
