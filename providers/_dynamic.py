"""What the dynamic providers share inside Pulumi's provider host.

- ``is_unknown``: a value not known during ``pulumi preview`` (the engine's sentinel string on the wire, or the
  SDK's ``Unknown`` in-process); ``check`` and ``diff`` must never send such a value to an API.
- ``check_properties``: the one ``check`` loop both providers run: required keys, defaults, unknown values kept
  as they are, each normaliser's ``ValueError`` turned into a one-line failure, and unknown properties refused.
- ``ProcessClients``: one API client per URL per provider-host process. The provider instance is pickled into
  state by reference and must hold no client or credential, so clients live here, built on first use and shared
  by the host's worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pulumi
from pulumi.dynamic import CheckFailure

T = TypeVar("T")


def is_unknown(value: Any) -> bool:
    return value == pulumi.runtime.rpc.UNKNOWN or type(value).__name__ == "Unknown"


_NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Property:
    """One input property of a dynamic resource, as ``check`` sees it.

    ``normalise`` returns the canonical value or raises ``ValueError`` with the reason (worded to follow the
    property's name: "must be ..."). A ``None`` value fails when ``required``; otherwise it becomes ``default``
    when one is given, else whatever ``normalise(None)`` returns (a ``None`` result leaves the key out).
    """

    normalise: Callable[[Any], Any]
    required: bool = False
    default: Any = _NO_DEFAULT


def check_properties(
    news: Mapping[str, Any], properties: Mapping[str, Property]
) -> tuple[dict[str, Any], list[CheckFailure]]:
    """Normalise ``news`` against ``properties``; every problem is one ``CheckFailure``, nothing raises.

    Values unknown during preview are kept as they are (never normalised, never sent anywhere). Keys the engine
    adds (``__provider`` and the like, starting ``__``) pass through untouched; any other key not declared is
    refused, naming what is allowed.
    """
    inputs: dict[str, Any] = {k: v for k, v in news.items() if k.startswith("__")}
    failures: list[CheckFailure] = []
    for key, prop in properties.items():
        value = news.get(key)
        if is_unknown(value):
            inputs[key] = value
            continue
        if value is None:
            if prop.required:
                failures.append(CheckFailure(key, f"{key} is required"))
                continue
            if prop.default is not _NO_DEFAULT:
                inputs[key] = prop.default
                continue
        try:
            normalised = prop.normalise(value)
        except ValueError as exc:
            failures.append(CheckFailure(key, f"{key} {exc}"))
            continue
        if normalised is not None:
            inputs[key] = normalised
    allowed = ", ".join(properties)
    for key in sorted(k for k in news if k not in properties and not k.startswith("__")):
        failures.append(CheckFailure(key, f"unknown property {key!r}; allowed: {allowed}"))
    return inputs, failures


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
