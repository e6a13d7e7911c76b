"""Pacing at Dataverse's service-protection limits: one budget per (caller, environment) per process.

Dataverse meters every user, per web server, over a 5-minute sliding window (powerapps-docs
``developer/data-platform/api-limits.md``, "How service protection API limits are enforced"; learn.microsoft.com
/power-apps/developer/data-platform/api-limits):

* 6,000 requests per 300 s (a ``$batch`` is one HTTP request, so it counts once here);
* 1,200 s of combined execution time per 300 s;
* 52 concurrent requests.

The deploying pipeline is one user for the whole fleet, and one process serves many clients and threads (the
Pulumi provider host runs four operations at a time; the CLI builds a client per environment). So the budget is
kept per ``(caller, environment origin)`` in the process-wide ``PACING``, and every ``Transport`` of that pair
draws from it. Before a request is sent, ``Budget.acquire`` waits until:

* fewer requests are in flight than the cap: 52, or the server's ``x-ms-dop-hint`` when it sent one (powerapps-docs
  ``send-parallel-requests.md``: "use the integer value returned from the x-ms-dop-hint response header");
* the window holds fewer than 6,000 request starts and less than 1,200 s of execution time. Execution time is the
  server's time per answer, approximated client-side by the elapsed time from admission to the last byte;
* the ``x-ms-ratelimit-burst-remaining-xrm-requests`` (requests left) and
  ``x-ms-ratelimit-time-remaining-xrm-requests`` (execution seconds left) headers, when Dataverse sent them, do not
  say the budget is spent (api-limits.md, "HTTP Response headers"). Microsoft calls these values debugging aids
  that reset when requests land on another server, so they only ever lower what this process allows itself: a
  spent value holds requests back until one of this process's own requests counted in it ages out of the window,
  never longer (when none is left to age out, the server's own 429 and its Retry-After decide);
* no 429 of this environment is still asking to wait: ``Budget.pause`` (called with the Retry-After of any 429)
  holds back every worker of the environment, not only the one that received it.

Every wait is bounded: the caller hands ``acquire`` the seconds it has left (its operation's deadline), and a wait
longer than that raises ``WaitTooLong`` at once instead of sleeping. A pause is capped at one window. No Pulumi
import; nothing here sends a request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

DOP_HINT = "x-ms-dop-hint"
BURST_REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"

_MAX_WAKEUPS = 100_000  # safety net on the admission loop (each pass either sleeps or waits for a release)
_MAX_CONDITION_WAIT = 5.0  # seconds a worker waits for a free slot before it looks at the clock again


@dataclass(frozen=True)
class Limits:
    """Dataverse's documented default limits per user (api-limits.md); tests make them small."""

    concurrency: int = 52
    requests: int = 6000
    execution_seconds: float = 1200.0
    window: float = 300.0
    max_pause: float = 300.0  # a Retry-After longer than one window pauses the others for one window


DEFAULT_LIMITS = Limits()


class WaitTooLong(Exception):
    """Admission would need ``seconds`` more than the caller has left; ``reason`` names the limit. Nothing was sent."""

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds = seconds
        self.reason = reason
        super().__init__(f"waiting {seconds:g} s for {reason}")


@dataclass(frozen=True)
class Slot:
    """One admitted request: when it started, by the budget's clock."""

    started: float


@dataclass
class _Hint:
    """What Dataverse last said was left, and this process's own counts at that moment."""

    at: float
    requests_left: float | None
    seconds_left: float | None
    admitted_before: int  # own admissions (by index) that the server had counted
    expired_admissions_at: int  # own admissions already aged out of the window then
    time_before: float  # cumulative execution time of own requests finished before the hint
    expired_time_at: float  # ... of which had already aged out then
    finished_before: int
    started_since: int = 0
    elapsed_since: float = 0.0


def _number(value: str | None) -> float | None:
    """A header value such as ``5999`` or ``1,187.25``; None for anything else (or negative, or not finite)."""
    if value is None:
        return None
    try:
        number = float(value.strip().replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class Budget:
    """The client-side budget of one caller in one environment; thread-safe, shared by every client of the pair."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._dop_hint: int | None = None
        self._starts: deque[float] = deque()  # admission times still inside the window, oldest first
        self._admitted = 0  # admissions ever (the index of the next one)
        self._expired = 0  # admissions aged out of the window (the index of _starts[0])
        self._finished: deque[tuple[float, float]] = deque()  # (finished at, execution seconds), oldest first
        self._finished_total = 0
        self._expired_finished = 0
        self._time_total = 0.0  # execution seconds of every finished request
        self._expired_time = 0.0  # ... of those aged out of the window
        self._paused_until = -math.inf
        self._hint: _Hint | None = None
        self._waiting = 0
        self.max_in_flight = 0  # the most requests ever in flight at once (what tests assert on)
        self.pauses = 0

    # -- what tests and diagnostics read -------------------------------------------------------------------------

    @property
    def cap(self) -> int:
        """How many requests may be in flight: the documented limit, or the server's lower ``x-ms-dop-hint``."""
        return min(self.limits.concurrency, self._dop_hint or self.limits.concurrency)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def waiting(self) -> int:
        """Workers inside ``acquire`` that have not been admitted yet."""
        with self._cond:
            return self._waiting

    @property
    def in_window(self) -> int:
        """Requests started within the sliding window (a ``$batch`` is one)."""
        with self._cond:
            self._age(self._clock())
            return len(self._starts)

    @property
    def paused_until(self) -> float:
        with self._cond:
            return self._paused_until

    # -- admission -----------------------------------------------------------------------------------------------

    def acquire(
        self,
        *,
        remaining: Callable[[], float],
        sleep: Callable[[float], None],
        honoured: float = -math.inf,
    ) -> Slot:
        """Wait (within ``remaining()`` seconds) until a request may start, and count it as started.

        ``honoured``: a pause end the caller already slept out itself (the worker that received the 429), so it is
        not waited for twice. Raises ``WaitTooLong`` when the wait would outlast ``remaining()``.
        """
        with self._cond:
            self._waiting += 1
        try:
            for _ in range(_MAX_WAKEUPS):
                with self._cond:
                    now = self._clock()
                    self._age(now)
                    wait, reason = self._wait(now, honoured)
                    if wait <= 0:
                        if self._in_flight < self.cap:
                            return self._admit(now)
                        left = remaining()
                        if left <= 0:
                            raise WaitTooLong(
                                0.0, f"a free slot ({self._in_flight} requests in flight, cap {self.cap})"
                            )
                        self._cond.wait(timeout=min(left, _MAX_CONDITION_WAIT))
                        continue
                left = remaining()
                if wait > left:
                    raise WaitTooLong(wait, reason)
                sleep(wait)
            raise WaitTooLong(math.inf, "admission (woken too often)")  # pragma: no cover - a safety net
        finally:
            with self._cond:
                self._waiting -= 1

    def release(self, slot: Slot, headers: Mapping[str, str] | None = None) -> None:
        """The request of ``slot`` ended (answered or failed); ``headers`` are its answer's, when there was one."""
        with self._cond:
            now = self._clock()
            elapsed = max(0.0, now - slot.started)
            self._in_flight -= 1
            self._finished.append((now, elapsed))
            self._finished_total += 1
            self._time_total += elapsed
            if self._hint is not None:
                self._hint.elapsed_since += elapsed
            if headers is not None:
                self._observe(headers, now)
            self._cond.notify_all()

    def pause(self, seconds: float) -> float:
        """A 429 asked to wait ``seconds``: every worker of this budget waits until then. Returns the pause's end."""
        with self._cond:
            until = self._clock() + min(max(0.0, seconds), self.limits.max_pause)
            self._paused_until = max(self._paused_until, until)
            self.pauses += 1
            self._cond.notify_all()
            return self._paused_until

    # -- internals (called with the lock held) -------------------------------------------------------------------

    def _admit(self, now: float) -> Slot:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        self._starts.append(now)
        self._admitted += 1
        if self._hint is not None:
            self._hint.started_since += 1
        return Slot(now)

    def _age(self, now: float) -> None:
        """Forget what left the sliding window."""
        cutoff = now - self.limits.window
        while self._starts and self._starts[0] <= cutoff:
            self._starts.popleft()
            self._expired += 1
        while self._finished and self._finished[0][0] <= cutoff:
            _, elapsed = self._finished.popleft()
            self._expired_finished += 1
            self._expired_time += elapsed
        if self._hint is not None and self._hint.at <= cutoff:
            self._hint = None  # everything it counted has aged out

    def _wait(self, now: float, honoured: float) -> tuple[float, str]:
        """The longest wait any limit still asks for (0 when none does), and which limit."""
        limits = self.limits
        waits: list[tuple[float, str]] = [(0.0, "")]
        if self._paused_until > now and self._paused_until > honoured:
            waits.append((self._paused_until - now, "the Retry-After of a 429 in this environment"))
        if len(self._starts) >= limits.requests:
            oldest = self._starts[len(self._starts) - limits.requests]
            waits.append(
                (oldest + limits.window - now, f"the {limits.requests:,}-requests-per-{limits.window:g}-s window")
            )
        in_window = self._time_total - self._expired_time
        if in_window >= limits.execution_seconds:
            excess, freed, finished_at = in_window - limits.execution_seconds, 0.0, now
            for finished_at, elapsed in self._finished:  # noqa: B007 - the entry whose ageing frees enough
                freed += elapsed
                if freed > excess:
                    break
            waits.append(
                (
                    finished_at + limits.window - now,
                    f"the {limits.execution_seconds:,g}-s-execution-time-per-{limits.window:g}-s window",
                )
            )
        hint = self._hint
        if hint is not None:
            if hint.requests_left is not None and self._expired < hint.admitted_before:
                aged = self._expired - hint.expired_admissions_at
                if hint.requests_left - hint.started_since + aged <= 0:
                    waits.append((self._starts[0] + limits.window - now, f"Dataverse's {BURST_REMAINING}"))
            if hint.seconds_left is not None and self._expired_finished < hint.finished_before:
                aged_time = min(self._expired_time, hint.time_before) - hint.expired_time_at
                if hint.seconds_left - hint.elapsed_since + aged_time <= 0:
                    waits.append((self._finished[0][0] + limits.window - now, f"Dataverse's {TIME_REMAINING}"))
        return max(waits)

    def _observe(self, headers: Mapping[str, str], now: float) -> None:
        """Follow the service-protection headers of an answer."""
        dop = _number(headers.get(DOP_HINT))
        if dop is not None and dop >= 1:
            self._dop_hint = int(dop)
        requests_left = _number(headers.get(BURST_REMAINING))
        seconds_left = _number(headers.get(TIME_REMAINING))
        if requests_left is None and seconds_left is None:
            return
        self._hint = _Hint(
            at=now,
            requests_left=requests_left,
            seconds_left=seconds_left,
            admitted_before=self._admitted,
            expired_admissions_at=self._expired,
            time_before=self._time_total,
            expired_time_at=self._expired_time,
            finished_before=self._finished_total,
        )


class Pacer:
    """The budgets of one process, by (caller, environment origin); ``PACING`` is the one every client uses."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[tuple[Hashable, str], Budget] = {}

    def budget(self, caller: Hashable, origin: str) -> Budget:
        """The budget of ``caller`` (``None``: a token that does not say who it is) in the environment ``origin``."""
        with self._lock:
            budget = self._budgets.get((caller, origin))
            if budget is None:
                budget = self._budgets[(caller, origin)] = Budget(self.limits, self._clock)
            return budget

    def clear(self) -> None:
        with self._lock:
            self._budgets.clear()


PACING = Pacer()  # the process-wide budgets
