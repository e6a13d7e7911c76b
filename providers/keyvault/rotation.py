"""Which certificate versions a KeyVaultCertificate holds, adopts and renews (ADR 5): pure, no Pulumi, no I/O.

Inputs are lists of :class:`CertificateVersion` (as the vault listed or returned them) and ``now``; outputs are
the two slots, or which versions the provider should fetch in full (a listing carries no ``cer``). The provider
only translates: it asks the vault for what these functions name and stores what they return.

- **Order**: the vault's latest version first, then the others by creation time, newest first
  (:func:`newest_first`; ``created`` has one-second resolution, so on a tie the later listing position wins).
- **Adoption** (create): walking from the newest version down, versions that are enabled, issued, of the same
  subject and not yet in their renewal window are taken over, at most two, and the walk stops at the first that
  is not, so whatever is adopted includes the version the workload reads (:func:`adoption_candidates`,
  :func:`adopt`). A create that failed half-way, or a certificate made before this resource, is taken over
  instead of duplicated.
- **Import** (read with no stored slots): the two newest enabled, issued, unexpired versions
  (:func:`import_candidates`).
- **Refresh** (read, update): a stored slot whose version was disabled or deleted becomes empty; a newer
  version made behind our back (portal, CLI) takes the older slot, because the workload reads the newest
  version and it must be registered (:func:`live_slots`).
- **Renewal** (update): empty slots are filled; otherwise ONE new version goes into the older slot when the
  subject/validity changed or the older slot is inside its renewal window (:func:`slots_to_fill`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from cryptography import x509

from providers.keyvault.models import CertificateVersion
from providers.keyvault.slots import SLOT_KEYS, Slot, Slots, newest, renewal_due, slot_to_rotate

ADOPT_LOOKBACK = 10  # versions inspected (newest first) when adopting or importing existing ones
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def empty_slots() -> Slots:
    return {key: None for key in SLOT_KEYS}


def empty_keys(slots: Mapping[str, Slot | None]) -> list[str]:
    """The slots holding no version, in fill order (a, then b)."""
    return [key for key in SLOT_KEYS if slots.get(key) is None]


def newest_first(latest: CertificateVersion, listed: Sequence[CertificateVersion]) -> list[CertificateVersion]:
    """The vault's latest version, then the other listed versions by creation time, newest first."""
    others = [v for v in reversed(listed) if v.version != latest.version]
    others.sort(key=lambda v: v.created or _EPOCH, reverse=True)  # stable: a later listing position wins a tie
    return [latest, *others]


def same_subject(version: CertificateVersion, subject: str) -> bool:
    """True when the version's certificate (its ``cer``) has ``subject`` (compared as X.500 names)."""
    found = version.subject()
    return found is not None and found == x509.Name.from_rfc4514_string(subject)


def _expires_within(version: CertificateVersion, days: int, now: dt.datetime) -> bool:
    return version.not_after is None or version.not_after - now <= dt.timedelta(days=days)


def _adoptable(version: CertificateVersion, subject: str, renew_before_days: int, now: dt.datetime) -> bool:
    if not (version.enabled and version.issued) or _expires_within(version, renew_before_days, now):
        return False
    return version.cer is None or same_subject(version, subject)  # no cer yet: decided once fetched in full


def adoption_candidates(
    ordered: Sequence[CertificateVersion], subject: str, renew_before_days: int, now: dt.datetime
) -> list[CertificateVersion]:
    """The versions :func:`adopt` may take (at most two, newest first): fetch those without ``cer`` in full."""
    found: list[CertificateVersion] = []
    for version in ordered[:ADOPT_LOOKBACK]:
        if not _adoptable(version, subject, renew_before_days, now):
            break
        found.append(version)
        if len(found) == 2:
            break
    return found


def adopt(candidates: Sequence[CertificateVersion], subject: str, renew_before_days: int, now: dt.datetime) -> Slots:
    """Slots from the candidates fetched in full (newest first): the walk stops at the first one not usable."""
    adopted: list[CertificateVersion] = []
    for version in candidates[:2]:
        if version.cer is None or not _adoptable(version, subject, renew_before_days, now):
            break
        adopted.append(version)
    return fill(adopted)


def import_candidates(ordered: Sequence[CertificateVersion], now: dt.datetime) -> list[CertificateVersion]:
    """On import (no stored slots): the two newest enabled, issued, unexpired versions, newest first."""
    found = [
        v
        for v in ordered[:ADOPT_LOOKBACK]
        if v.enabled and v.issued and not (v.not_after is not None and v.not_after <= now)
    ]
    return found[:2]


def fill(versions_newest_first: Sequence[CertificateVersion]) -> Slots:
    """Slots holding these versions (fetched in full), oldest in slot a, as create fills them."""
    slots = empty_slots()
    for key, version in zip(SLOT_KEYS, reversed(versions_newest_first[:2]), strict=False):
        slots[key] = Slot.of(version)
    return slots


def to_refresh(stored: Mapping[str, Slot | None], latest: CertificateVersion) -> list[str]:
    """The stored versions to fetch for :func:`live_slots` (the latest is already at hand)."""
    return [slot.version for slot in stored.values() if slot is not None and slot.version != latest.version]


def live_slots(
    stored: Mapping[str, Slot | None],
    latest: CertificateVersion,
    fetched: Mapping[str, CertificateVersion | None],
) -> Slots:
    """The stored slots as the vault has them now (``fetched``: version -> as fetched, None when deleted),
    with a newer out-of-band version taking the older slot."""
    slots = empty_slots()
    for key in SLOT_KEYS:
        slot = stored.get(key)
        if slot is None:
            continue
        version = latest if latest.version == slot.version else fetched.get(slot.version)
        if version is not None and version.enabled and version.issued:
            slots[key] = Slot.of(version)
    held = {s.version for s in slots.values() if s is not None}
    if latest.enabled and latest.issued and latest.version not in held:
        slots[slot_to_rotate(slots)] = Slot.of(latest)
    return slots


def slots_to_fill(
    slots: Mapping[str, Slot | None], *, policy_changed: bool, renew_before_days: int, now: dt.datetime
) -> list[str]:
    """Which slots update puts a new version into: the empty ones; else the older one when the policy changed or
    its renewal window is reached; else none (a changed ``renew_before_days`` alone makes no version)."""
    empty = empty_keys(slots)
    if empty:
        return empty
    if policy_changed or renewal_due(slots, renew_before_days, now):
        return [slot_to_rotate(slots)]
    return []


def current_version(latest: CertificateVersion, slots: Mapping[str, Slot | None]) -> str | None:
    """What the workload reads: the vault's latest issued version (the newest slot while one is pending)."""
    if latest.issued:
        return latest.version
    slot = newest(slots)
    return slot.version if slot else None
