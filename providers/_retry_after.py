"""The ``Retry-After`` header both API clients honour when Dataverse or Key Vault throttle them (no Pulumi import).

RFC 9110 section 10.2.3 allows a number of seconds or an HTTP-date; Dataverse sends seconds on a 429, Key Vault
sends seconds on a 202 and on in-progress ``/pending`` polls. A value that is neither (or not a finite number)
counts as absent, so the caller falls back to its own backoff rather than waiting on a malformed answer.

``throttle_wait`` is the one rule for how long to wait: the server's value when it is a positive number of seconds,
else the caller's backoff. A ``Retry-After`` of zero, a negative one or an HTTP-date already past would otherwise
be a resend with no pause at all; azure-core's ``RetryPolicy._sleep_for_retry`` treats them the same way (it
sleeps the Retry-After only when it is truthy, else it backs off). The caller still counts attempts, so even a
server that asks for a few milliseconds forever meets an end.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping


def retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked to wait (never negative), or None when it did not say (or said nonsense)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def throttle_wait(
    headers: Mapping[str, str], backoff: Callable[[], float], now: Callable[[], float] = time.time
) -> tuple[float, float | None]:
    """(seconds to wait, what the server asked): ``Retry-After`` when positive, else ``backoff()``."""
    asked = retry_after(headers, now)
    return (asked if asked is not None and asked > 0 else backoff()), asked
