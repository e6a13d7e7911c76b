"""The emulator's request log: what reached each origin, in order, so tests can count round trips.

A test asserting "the provider made one call per user" or "the retry happened" reads this log instead of
patching the client. The log never holds bodies or headers, so no secret or token ends up in it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TypedDict, Unpack


@dataclass(frozen=True)
class LogEntry:
    seq: int  # 1, 2, 3... in arrival order of the responses decided (never reset by clear())
    service: str  # "entra" | "issuer" | "dataverse" | "keyvault"
    env: str | None  # environment / vault name, None for Entra
    method: str
    path: str
    query: str
    status: int  # the status answered, or the one the service decided for a lost response; 0 when dropped
    caller: str | None  # `appid` of the bearer token (decoded without verification), None if none
    operations: list[tuple[str, str, int]] = field(default_factory=list)  # inner requests of a $batch
    fault: str | None = None  # the injected fault kind that shaped this exchange, if any
    at: float = 0.0  # time.monotonic() when the exchange was decided (to check that a client waited)


class Filters(TypedDict, total=False):
    """What ``RequestLog.filter`` and ``count`` match on (each given filter must hold)."""

    service: str | None
    method: str | None
    path_contains: str | None
    env: str | None
    status: int | None
    caller: str | None


class RequestLog:
    """Thread-safe, append-only (until cleared) list of :class:`LogEntry`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LogEntry] = []
        self._seq = 0

    def record(
        self,
        *,
        service: str,
        env: str | None,
        method: str,
        path: str,
        query: str,
        status: int,
        caller: str | None,
        operations: list[tuple[str, str, int]] | None = None,
        fault: str | None = None,
    ) -> LogEntry:
        with self._lock:
            self._seq += 1
            entry = LogEntry(
                self._seq,
                service,
                env,
                method,
                path,
                query,
                status,
                caller,
                list(operations or []),
                fault,
                time.monotonic(),
            )
            self._entries.append(entry)
            return entry

    @property
    def entries(self) -> list[LogEntry]:
        """A snapshot copy; later requests do not change a list already returned."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def count(self, **filters: Unpack[Filters]) -> int:
        """How many logged requests match every given filter (those of ``filter``)."""
        return len(self.filter(**filters))

    def filter(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        env: str | None = None,
        status: int | None = None,
        caller: str | None = None,
    ) -> list[LogEntry]:
        """The logged requests matching every given filter (``method`` compared case-insensitively)."""
        wanted_method = method.upper() if method else None
        return [
            e
            for e in self.entries
            if (service is None or e.service == service)
            and (wanted_method is None or e.method.upper() == wanted_method)
            and (path_contains is None or path_contains in e.path)
            and (env is None or e.env == env)
            and (status is None or e.status == status)
            and (caller is None or e.caller == caller)
        ]
