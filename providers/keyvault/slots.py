"""The two-slot rotation rules (ADR 5), pure: no network, no Pulumi, time passed in.

A resource holds two certificate versions, ``slot_a`` and ``slot_b``, both registered on the app registration.
The workload reads the newest version from Key Vault; renewal replaces the OLDER slot only, so the newest stays
registered while the new one is being registered. An empty slot (a version disabled or deleted behind our back)
is filled before any other rotation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.keyvault.models import CertificateVersion

SLOT_KEYS = ("slot_a", "slot_b")
Slots = dict[str, "Slot | None"]


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


@dataclass(frozen=True)
class Slot:
    """One registered version: what the app registration needs (public ``cer``) and when it expires."""

    version: str
    thumbprint: str  # SHA-1, upper-case hex
    cer: str  # base64 DER of the public certificate
    not_before: str  # ISO 8601 UTC
    not_after: str

    @property
    def expires(self) -> dt.datetime:
        return parse_iso(self.not_after)

    @property
    def starts(self) -> dt.datetime:
        return parse_iso(self.not_before)

    def output(self) -> dict[str, str]:
        return {
            "version": self.version,
            "thumbprint": self.thumbprint,
            "cer": self.cer,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def of(cls, version: CertificateVersion) -> Slot:
        if version.cer is None or version.thumbprint is None or version.not_before is None or version.not_after is None:
            raise ValueError(f"certificate version {version.version} is not issued yet")
        return cls(version.version, version.thumbprint, version.cer, iso(version.not_before), iso(version.not_after))

    @classmethod
    def from_output(cls, value: Any) -> Slot | None:
        """A slot from stored outputs; None when absent or not the expected shape."""
        if not isinstance(value, Mapping):
            return None
        try:
            slot = cls(*(str(value[k]) for k in ("version", "thumbprint", "cer", "not_before", "not_after")))
            slot.expires  # noqa: B018 - validates the timestamp
            slot.starts  # noqa: B018
        except (KeyError, ValueError):
            return None
        return slot


def slots_from_outputs(outputs: Mapping[str, Any]) -> Slots:
    return {key: Slot.from_output(outputs.get(key)) for key in SLOT_KEYS}


def slot_to_rotate(slots: Mapping[str, Slot | None]) -> str:
    """The slot a new version goes into: the first empty one, else the one expiring first (a on a tie)."""
    for key in SLOT_KEYS:
        if slots.get(key) is None:
            return key
    a, b = slots["slot_a"], slots["slot_b"]
    assert a is not None and b is not None
    return "slot_b" if (b.expires, b.starts) < (a.expires, a.starts) else "slot_a"


def in_renewal_window(slot: Slot, renew_before_days: int, now: dt.datetime) -> bool:
    return slot.expires - now <= dt.timedelta(days=renew_before_days)


def renewal_due(slots: Mapping[str, Slot | None], renew_before_days: int, now: dt.datetime) -> bool:
    """True when a slot is empty or the slot holding the older version is inside its renewal window."""
    key = slot_to_rotate(slots)
    slot = slots.get(key)
    return slot is None or in_renewal_window(slot, renew_before_days, now)


def newest(slots: Mapping[str, Slot | None]) -> Slot | None:
    """The most recent version held (the later start; b on a tie, as create fills b last)."""
    held = [s for s in (slots.get("slot_a"), slots.get("slot_b")) if s is not None]
    if not held:
        return None
    return max(reversed(held), key=lambda s: (s.starts, s.expires))


def shortest_days(months: int) -> int:
    """The fewest days ``months`` calendar months can last (1 -> 28, 12 -> 365): the renewal window must fit."""
    best: int | None = None
    for year in range(2024, 2028):  # a whole leap cycle covers every case
        for month in range(1, 13):
            start = dt.date(year, month, 1)
            index = month - 1 + months
            end = dt.date(year + index // 12, index % 12 + 1, 1)
            days = (end - start).days
            best = days if best is None else min(best, days)
    assert best is not None
    return best
