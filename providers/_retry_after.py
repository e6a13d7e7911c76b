"""The ``Retry-After`` header both API clients honour when Dataverse or Key Vault throttle them (no Pulumi import).

RFC 9110 section 10.2.3 allows a number of seconds or an HTTP-date; Dataverse sends seconds on a 429, Key Vault
sends seconds on a 202 and on in-progress ``/pending`` polls. A value that is neither (or not a finite number)
counts as absent, so the caller falls back to its own backoff rather than waiting on a malformed answer.
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
