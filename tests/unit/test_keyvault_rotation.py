"""The pure adoption and rotation policy of a KeyVaultCertificate: lists of versions and now in, slots out.

Table-driven, like test_dataverse_reconcile.py: each case is a vault's versions (as listed, newest last) and what
``providers.keyvault.rotation`` decides for them. No I/O, no Pulumi, no vault.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from providers.keyvault import rotation
from providers.keyvault.models import CertificateVersion
from providers.keyvault.slots import Slot

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SUBJECT = "CN=ADP-FFC-PayBatch"
NAME = "ffc-pay-batch-app-cert"
DAYS = 30  # renew_before_days


@functools.cache
def _cer(subject: str, serial: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())  # the key is irrelevant here: only the public certificate counts
    name = x509.Name.from_rfc4514_string(subject)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial + 1)
        .not_valid_before(NOW - dt.timedelta(days=400))
        .not_valid_after(NOW + dt.timedelta(days=400))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def v(
    n: int,
    *,
    age_days: float = 0.0,
    left_days: float = 300.0,
    enabled: bool = True,
    issued: bool = True,
    subject: str = SUBJECT,
    full: bool = True,
) -> CertificateVersion:
    """Version ``v<n>``: created ``age_days`` ago, expiring in ``left_days``; ``full`` carries its ``cer``."""
    created = NOW - dt.timedelta(days=age_days)
    return CertificateVersion(
        name=NAME,
        version=f"v{n}",
        enabled=enabled and issued,
        created=created.replace(microsecond=0),
        not_before=created.replace(microsecond=0) - dt.timedelta(minutes=10),
        not_after=(NOW + dt.timedelta(days=left_days)).replace(microsecond=0),
        thumbprint=f"{n:040X}" if issued else None,
        cer=_cer(subject, n) if (full and issued) else None,
    )


def listed(version: CertificateVersion) -> CertificateVersion:
    """As a version listing shows it: no ``cer``."""
    return replace(version, cer=None)


def held(slots: dict[str, Slot | None]) -> tuple[str | None, str | None]:
    a, b = slots["slot_a"], slots["slot_b"]
    return (a.version if a else None, b.version if b else None)


# -- order ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderCase:
    id: str
    latest: CertificateVersion
    listing: tuple[CertificateVersion, ...]  # as the vault lists them (oldest first)
    expected: tuple[str, ...]


ORDER_CASES = [
    OrderCase("latest only", v(1), (listed(v(1)),), ("v1",)),
    OrderCase(
        "latest first, then by creation, newest first",
        v(3, age_days=1),
        (listed(v(1, age_days=30)), listed(v(2, age_days=10)), listed(v(3, age_days=1)), listed(v(4, age_days=5))),
        ("v3", "v4", "v2", "v1"),
    ),
    OrderCase(
        "created in the same second: the later listing position is newer",
        v(9),
        (listed(v(5, age_days=2)), listed(v(6, age_days=2)), listed(v(9))),
        ("v9", "v6", "v5"),
    ),
]


@pytest.mark.parametrize("case", ORDER_CASES, ids=lambda c: c.id)
def test_newest_first(case: OrderCase) -> None:
    assert tuple(x.version for x in rotation.newest_first(case.latest, case.listing)) == case.expected


# -- adoption (create) -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptCase:
    id: str
    ordered: tuple[CertificateVersion, ...]  # newest first, as newest_first gives them (latest in full)
    fetch: tuple[str, ...]  # what the provider must fetch in full: candidates without cer
    full: dict[str, CertificateVersion]  # what fetching them returns
    slots: tuple[str | None, str | None]


ADOPT_CASES = [
    AdoptCase("nothing usable: a new certificate", (v(1, enabled=False),), (), {}, (None, None)),
    AdoptCase("the latest alone", (v(1),), (), {}, ("v1", None)),
    AdoptCase(
        "the two newest, oldest in slot a",
        (v(2), listed(v(1, age_days=3))),
        ("v1",),
        {"v1": v(1, age_days=3)},
        ("v1", "v2"),
    ),
    AdoptCase(
        "never more than two",
        (v(3), listed(v(2, age_days=2)), listed(v(1, age_days=4))),
        ("v2",),
        {"v2": v(2, age_days=2)},
        ("v2", "v3"),
    ),
    AdoptCase(
        "the newest disabled: the walk stops there, nothing older is adopted",
        (v(3, enabled=False), listed(v(2, age_days=2))),
        (),
        {},
        (None, None),
    ),
    AdoptCase(
        "the newest still pending (not issued)",
        (v(3, issued=False), listed(v(2, age_days=2))),
        (),
        {},
        (None, None),
    ),
    AdoptCase("the newest inside its renewal window", (v(2, left_days=DAYS), listed(v(1))), (), {}, (None, None)),
    AdoptCase(
        "the newest of another subject",
        (v(2, subject="CN=Someone-Else"), listed(v(1))),
        (),
        {},
        (None, None),
    ),
    AdoptCase(
        "the second disabled: only the latest",
        (v(2), listed(v(1, age_days=2, enabled=False))),
        (),
        {},
        ("v2", None),
    ),
    AdoptCase(
        "the second in its window (known from the listing): only the latest",
        (v(2), listed(v(1, age_days=2, left_days=10))),
        (),
        {},
        ("v2", None),
    ),
    AdoptCase(
        "the second of another subject (known once fetched): only the latest",
        (v(2), listed(v(1, age_days=2, subject="CN=Someone-Else"))),
        ("v1",),
        {"v1": v(1, age_days=2, subject="CN=Someone-Else")},
        ("v2", None),
    ),
]


@pytest.mark.parametrize("case", ADOPT_CASES, ids=lambda c: c.id)
def test_adoption(case: AdoptCase) -> None:
    candidates = rotation.adoption_candidates(case.ordered, SUBJECT, DAYS, NOW)
    assert tuple(c.version for c in candidates if c.cer is None) == case.fetch
    fetched = [c if c.cer is not None else case.full[c.version] for c in candidates]
    assert held(rotation.adopt(fetched, SUBJECT, DAYS, NOW)) == case.slots


def test_adoption_takes_two_at_most_and_nothing_past_the_first_unusable() -> None:
    usable = [v(n, age_days=n) for n in range(20)]
    assert [c.version for c in rotation.adoption_candidates(usable, SUBJECT, DAYS, NOW)] == ["v0", "v1"]
    behind = [v(0, enabled=False), *usable[1:]]
    assert rotation.adoption_candidates(behind, SUBJECT, DAYS, NOW) == []


# -- import (read of a certificate made before this resource) -------------------------------------------------------


@dataclass(frozen=True)
class ImportCase:
    id: str
    ordered: tuple[CertificateVersion, ...]
    chosen: tuple[str, ...]  # newest first


IMPORT_CASES = [
    ImportCase("the two newest", (v(3), listed(v(2)), listed(v(1))), ("v3", "v2")),
    ImportCase(
        "disabled, pending and expired ones are skipped, not a stop",
        (v(5, enabled=False), listed(v(4, issued=False)), listed(v(3, left_days=-1)), listed(v(2)), listed(v(1))),
        ("v2", "v1"),
    ),
    ImportCase(
        "inside the renewal window still counts: it is registered", (v(2, left_days=5), listed(v(1))), ("v2", "v1")
    ),
    ImportCase("one usable", (v(2), listed(v(1, enabled=False))), ("v2",)),
    ImportCase("none usable", (v(1, enabled=False),), ()),
    ImportCase("only ten looked at", (*(v(n, enabled=False) for n in range(10, 20)), v(1)), ()),
]


@pytest.mark.parametrize("case", IMPORT_CASES, ids=lambda c: c.id)
def test_import(case: ImportCase) -> None:
    chosen = rotation.import_candidates(case.ordered, NOW)
    assert tuple(c.version for c in chosen) == case.chosen
    full = [c if c.cer is not None else replace(c, cer=_cer(SUBJECT, int(c.version[1:]))) for c in chosen]
    slots = rotation.fill(full)
    assert held(slots) == tuple(reversed(case.chosen)) + (None,) * (2 - len(case.chosen))


# -- refresh (read, update) -----------------------------------------------------------------------------------------


def slot(version: CertificateVersion) -> Slot:
    return Slot.of(version)


@dataclass(frozen=True)
class LiveCase:
    id: str
    stored: tuple[CertificateVersion | None, CertificateVersion | None]
    latest: CertificateVersion
    fetched: dict[str, CertificateVersion | None]  # the stored versions as the vault has them now
    slots: tuple[str | None, str | None]


OLD_A, OLD_B = v(1, age_days=200, left_days=165), v(2, age_days=100, left_days=265)
LIVE_CASES = [
    LiveCase("unchanged", (OLD_A, OLD_B), OLD_B, {"v1": OLD_A}, ("v1", "v2")),
    LiveCase(
        "slot a disabled behind our back", (OLD_A, OLD_B), OLD_B, {"v1": replace(OLD_A, enabled=False)}, (None, "v2")
    ),
    LiveCase("slot a deleted", (OLD_A, OLD_B), OLD_B, {"v1": None}, (None, "v2")),
    LiveCase(
        "a newer version made behind our back takes the older slot",
        (OLD_A, OLD_B),
        v(3, age_days=1),
        {"v1": OLD_A, "v2": OLD_B},
        ("v3", "v2"),
    ),
    LiveCase(
        "...the older slot being b when b expires first",
        (OLD_B, OLD_A),
        v(3, age_days=1),
        {"v1": OLD_A, "v2": OLD_B},
        ("v2", "v3"),
    ),
    LiveCase(
        "a newer version still pending stays out of the slots",
        (OLD_A, OLD_B),
        v(3, issued=False),
        {"v1": OLD_A, "v2": OLD_B},
        ("v1", "v2"),
    ),
    LiveCase(
        "both slots gone: the latest fills slot a",
        (OLD_A, OLD_B),
        v(3),
        {"v1": None, "v2": replace(OLD_B, enabled=False)},
        ("v3", None),
    ),
    LiveCase("an empty stored slot stays empty", (None, OLD_B), OLD_B, {}, (None, "v2")),
]


@pytest.mark.parametrize("case", LIVE_CASES, ids=lambda c: c.id)
def test_live_slots(case: LiveCase) -> None:
    stored = {k: (slot(x) if x is not None else None) for k, x in zip(("slot_a", "slot_b"), case.stored, strict=True)}
    to_fetch = rotation.to_refresh(stored, case.latest)
    assert set(to_fetch) == {x.version for x in case.stored if x is not None} - {case.latest.version}
    fetched = {version: case.fetched.get(version) for version in to_fetch}
    assert held(rotation.live_slots(stored, case.latest, fetched)) == case.slots


# -- renewal (update) ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillCase:
    id: str
    slots: tuple[CertificateVersion | None, CertificateVersion | None]
    policy_changed: bool
    fill: tuple[str, ...]


FILL_CASES = [
    FillCase("both empty: a then b", (None, None), False, ("slot_a", "slot_b")),
    FillCase("one empty: only it, even when the policy changed", (None, OLD_B), True, ("slot_a",)),
    FillCase("both held, far from expiry: nothing", (OLD_A, OLD_B), False, ()),
    FillCase("the subject or validity changed: the older slot", (OLD_A, OLD_B), True, ("slot_a",)),
    FillCase("the older slot is b", (OLD_B, OLD_A), True, ("slot_b",)),
    FillCase("the older slot inside its window", (v(1, left_days=DAYS), OLD_B), False, ("slot_a",)),
    FillCase("only the newer inside its window: nothing", (OLD_B, v(3, left_days=400)), False, ()),
    FillCase("a tie: slot a", (OLD_A, OLD_A), True, ("slot_a",)),
]


@pytest.mark.parametrize("case", FILL_CASES, ids=lambda c: c.id)
def test_slots_to_fill(case: FillCase) -> None:
    slots = {k: (slot(x) if x is not None else None) for k, x in zip(("slot_a", "slot_b"), case.slots, strict=True)}
    got = rotation.slots_to_fill(slots, policy_changed=case.policy_changed, renew_before_days=DAYS, now=NOW)
    assert tuple(got) == case.fill
    assert rotation.empty_keys(slots) == [k for k, x in slots.items() if x is None]


@pytest.mark.parametrize(
    ("latest", "slots", "current"),
    [
        (OLD_B, (OLD_A, OLD_B), "v2"),
        (v(3, issued=False), (OLD_A, OLD_B), "v2"),  # a version still pending: the newest held one
        (v(3, issued=False), (None, None), None),
    ],
)
def test_current_version(
    latest: CertificateVersion, slots: tuple[CertificateVersion | None, ...], current: str | None
) -> None:
    held_slots = {k: (slot(x) if x is not None else None) for k, x in zip(("slot_a", "slot_b"), slots, strict=True)}
    assert rotation.current_version(latest, held_slots) == current


def test_same_subject_compares_x500_names() -> None:
    version = v(1, subject="CN=ADP-FFC-PayBatch,O=Defra")
    assert rotation.same_subject(version, "CN=ADP-FFC-PayBatch,O=Defra")
    assert not rotation.same_subject(version, "CN=ADP-FFC-PayBatch")  # a prefix is another name
    assert not rotation.same_subject(version, "CN=ADP-FFC-PayBatch+O=Defra")  # one multi-valued RDN is another
    assert not rotation.same_subject(listed(version), "CN=ADP-FFC-PayBatch,O=Defra")  # no cer: not known


def test_rotation_imports_no_pulumi_and_no_client() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(rotation))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m.startswith(("pulumi", "azure", "requests", "providers.keyvault.client"))]
