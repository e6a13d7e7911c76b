"""Counting what reached the emulator: requests since a mark in its log, split as the figures need them.

The log is never cleared here: a :class:`LogMark` remembers the last sequence number, so a window of requests can
be read while earlier windows (a provider host's token request, say) stay countable too.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adp_identity_emulator.log import LogEntry, RequestLog

TOKEN_PATH_SUFFIX = "/oauth2/v2.0/token"


@dataclass(frozen=True)
class RequestCount:
    """Dataverse requests: reads are GETs, writes everything else (POST, PATCH, DELETE, $batch)."""

    reads: int = 0
    writes: int = 0

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def __add__(self, other: RequestCount) -> RequestCount:
        return RequestCount(self.reads + other.reads, self.writes + other.writes)


class LogMark:
    """A position in a :class:`RequestLog`; :meth:`entries` are the requests logged after it."""

    def __init__(self, log: RequestLog) -> None:
        self._log = log
        entries = log.entries
        self._seq = entries[-1].seq if entries else 0

    def entries(self) -> list[LogEntry]:
        return [e for e in self._log.entries if e.seq > self._seq]


def dataverse_requests(entries: Iterable[LogEntry]) -> RequestCount:
    reads = writes = 0
    for entry in entries:
        if entry.service != "dataverse":
            continue
        if entry.method == "GET":
            reads += 1
        else:
            writes += 1
    return RequestCount(reads, writes)


def token_requests(entries: Iterable[LogEntry]) -> int:
    """Requests to Entra ID's token endpoint (one per access token fetched)."""
    return sum(1 for e in entries if e.service == "entra" and e.path.endswith(TOKEN_PATH_SUFFIX))


def other_entra_requests(entries: Iterable[LogEntry]) -> int:
    """Entra ID requests other than tokens (discovery, keys): zero when instance discovery is off."""
    return sum(1 for e in entries if e.service in ("entra", "issuer") and not e.path.endswith(TOKEN_PATH_SUFFIX))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (with 20 samples: the 19th smallest)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))  # ceil(0.95 n)
    return float(ordered[rank - 1])


class WaitLedger:
    """The ``sleep`` a client is given: sleeps, and keeps count of how often and how long (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.seconds = 0.0

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.seconds += seconds
        time.sleep(seconds)
