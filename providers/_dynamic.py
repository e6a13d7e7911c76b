"""What the dynamic providers share inside Pulumi's provider host.

- ``is_unknown``: a value not known during ``pulumi preview`` (the engine's sentinel string on the wire, or the
  SDK's ``Unknown`` in-process); ``check`` and ``diff`` must never send such a value to an API.
- ``ProcessClients``: one API client per URL per provider-host process. The provider instance is pickled into
  state by reference and must hold no client or credential, so clients live here, built on first use and shared
  by the host's worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import pulumi

T = TypeVar("T")


def is_unknown(value: Any) -> bool:
    return value == pulumi.runtime.rpc.UNKNOWN or type(value).__name__ == "Unknown"


class ProcessClients(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[Hashable, T] = {}

    @property
    def clients(self) -> dict[Hashable, T]:
        """The live map (tests put an in-process client here, e.g. with ``monkeypatch.setitem``)."""
        return self._clients

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = build()
                self._clients[key] = client
            return client
