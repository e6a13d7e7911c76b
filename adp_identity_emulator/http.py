"""The small HTTP vocabulary every emulated service speaks.

The TLS server (``server.py``) turns a socket request into an :class:`EmuRequest`, finds the service that owns
the origin, and writes back the :class:`EmuResponse` it returns. Services never touch sockets, so each one can be
tested in-process as well as over real HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Headers(dict[str, str]):
    """Case-insensitive header map (keys stored lower-cased)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        super().__init__()
        for key, value in (items or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class EmuRequest:
    method: str
    path: str  # path only, percent-decoding NOT applied (services decode what they parse)
    query: str  # raw query string without the leading "?"
    headers: Headers
    body: bytes
    origin: str  # e.g. "https://127.0.0.1:51234"

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class EmuResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # For the request log: the inner requests of a $batch as (method, path, status), in order.
    operations: list[tuple[str, str, int]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> EmuResponse:
        merged = {"Content-Type": "application/json; odata.metadata=minimal; charset=utf-8"}
        merged.update(headers or {})
        return cls(status, merged, json.dumps(obj).encode("utf-8"))

    @classmethod
    def empty(cls, status: int, headers: Mapping[str, str] | None = None) -> EmuResponse:
        return cls(status, dict(headers or {}), b"")


class Service(Protocol):
    def handle(self, req: EmuRequest) -> EmuResponse: ...


Claims = dict[str, Any]


class InvalidToken(Exception):
    """A bearer token the resource refuses (missing, expired, badly signed, wrong audience or tenant)."""

    def __init__(self, reason: str, *, wrong_tenant: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wrong_tenant = wrong_tenant


TokenVerifier = Callable[[str, str], Claims]
"""(raw bearer token, expected audience) -> claims; raises InvalidToken."""


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    app_id: str
    object_id: str
    display_name: str


class Directory(Protocol):
    """What a resource service may ask of Entra ID: the service principals of a tenant."""

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None: ...
