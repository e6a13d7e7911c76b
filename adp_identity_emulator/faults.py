"""Fault injection: the failures a real Dataverse / Entra ID round trip can meet, on demand.

Two ways to ask for them (see docs/architecture.md, "Fault knobs"):

* :meth:`FaultInjector.script` - deterministic: the next ``count`` matching requests get the fault. Tests use
  this to prove one specific retry path.
* :meth:`FaultInjector.set_rates` - statistical: every matching request draws from an RNG seeded by the
  caller, so a "flaky network" run is reproducible.

The server asks :meth:`FaultInjector.draw` once per request and applies what it gets: ``latency`` sleeps, the
status faults answer without reaching the service, ``drop`` closes the connection before the service sees the
request, ``lost_response`` lets the service commit and then closes the connection without answering.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal, get_args

from adp_identity_emulator.http import EmuResponse

FaultKind = Literal["latency", "throttle", "unavailable", "bad_gateway", "drop", "lost_response"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_RATE_KINDS = ("throttle", "unavailable", "bad_gateway", "drop", "lost_response")

# Dataverse's service-protection answer (requests-per-window limit), as documented in api-limits.md.
THROTTLE_CODE = "0x80072322"
THROTTLE_MESSAGE = "Number of requests exceeded the limit of 6000 over time window of 300 seconds."


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    retry_after: int | None = None  # seconds, for throttle / unavailable
    latency_ms: int = 0  # added before anything else happens


@dataclass
class _Script:
    fault: Fault
    remaining: int
    service: str | None
    method: str | None
    path_contains: str | None

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.method is None or self.method == method.upper())
            and (self.path_contains is None or self.path_contains in path)
        )


@dataclass
class _Rates:
    rng: random.Random
    thresholds: list[tuple[float, FaultKind]]  # cumulative upper bounds
    latency_ms: int
    retry_after: int


class FaultInjector:
    """Thread-safe fault knobs shared by every origin of one emulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[_Script] = []
        self._rates: dict[str, _Rates] = {}

    def script(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        service: str | None = "dataverse",
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | None = 1,
        latency_ms: int = 0,
    ) -> None:
        """The next ``count`` requests matching (service, method, path substring) get ``kind``.

        ``service=None`` matches every service. Scripts are consumed in the order they were added and take
        precedence over rates.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; allowed: {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if latency_ms < 0 or (kind == "latency" and latency_ms == 0):
            raise ValueError("latency_ms must be positive for a latency fault (and never negative)")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        fault = Fault(kind, retry_after if kind in ("throttle", "unavailable") else None, latency_ms)
        with self._lock:
            self._scripts.append(_Script(fault, count, service, method.upper() if method else None, path_contains))

    def set_rates(
        self,
        *,
        seed: int = 0,
        throttle: float = 0.0,
        unavailable: float = 0.0,
        bad_gateway: float = 0.0,
        drop: float = 0.0,
        lost_response: float = 0.0,
        latency_ms: int = 0,
        retry_after: int = 1,
        service: str = "dataverse",
    ) -> None:
        """Every request to ``service`` draws one fault with these probabilities (replacing earlier rates)."""
        rates = {
            "throttle": throttle,
            "unavailable": unavailable,
            "bad_gateway": bad_gateway,
            "drop": drop,
            "lost_response": lost_response,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} rate must be between 0 and 1, got {value}")
        if sum(rates.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")
        if latency_ms < 0 or retry_after < 0:
            raise ValueError("latency_ms and retry_after must not be negative")
        thresholds: list[tuple[float, FaultKind]] = []
        total = 0.0
        for kind in _RATE_KINDS:
            if rates[kind] > 0:
                total += rates[kind]
                thresholds.append((total, kind))  # type: ignore[arg-type]
        with self._lock:
            self._rates[service] = _Rates(random.Random(seed), thresholds, latency_ms, retry_after)

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._rates.clear()

    @property
    def pending(self) -> int:
        """Scripted faults not yet consumed."""
        with self._lock:
            return sum(s.remaining for s in self._scripts)

    def draw(self, service: str, method: str, path: str) -> Fault | None:
        """The fault for this request, if any (consumes a scripted one / one RNG draw)."""
        with self._lock:
            for script in self._scripts:
                if script.matches(service, method, path):
                    script.remaining -= 1
                    if script.remaining == 0:
                        self._scripts.remove(script)
                    return script.fault
            rates = self._rates.get(service)
            if rates is None:
                return None
            roll = rates.rng.random()
            for bound, kind in rates.thresholds:
                if roll < bound:
                    retry = rates.retry_after if kind in ("throttle", "unavailable") else None
                    return Fault(kind, retry, rates.latency_ms)
            return Fault("latency", None, rates.latency_ms) if rates.latency_ms else None


def fault_response(fault: Fault) -> EmuResponse | None:
    """The answer a status fault gives instead of the service's; None for kinds that do not answer."""
    retry = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.kind == "throttle":
        body = {"error": {"code": THROTTLE_CODE, "message": THROTTLE_MESSAGE}}
        return EmuResponse.json(429, body, {"Content-Type": "application/json; charset=utf-8", **retry})
    if fault.kind == "unavailable":
        body = {"error": {"code": "ServiceUnavailable", "message": "The service is temporarily unavailable."}}
        return EmuResponse.json(503, body, {"Content-Type": "application/json; charset=utf-8", **retry})
    if fault.kind == "bad_gateway":
        # What a gateway in front of the service answers: HTML, not the service's JSON error shape.
        html = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
        return EmuResponse(502, {"Content-Type": "text/html"}, html)
    return None
