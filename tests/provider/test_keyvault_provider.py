"""KeyVaultCertificateProvider's calls, in-process, against the emulated vault (clock controlled on both sides)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

import providers.keyvault.provider as provider_module
from providers.keyvault.errors import InvalidName, TenantMismatch
from providers.keyvault.models import CertificatePolicy
from providers.keyvault.provider import KeyVaultCertificateProvider
from providers.keyvault.slots import shortest_days

from .keyvault_support import (
    TENANT,
    VAULT_URL,
    InProcessVault,
    body_of,
    fresh_process_state,
    loopback_vaults,  # noqa: F401 - the fixture
)

T0 = dt.datetime(2026, 3, 1, 8, 0, 0, tzinfo=dt.UTC)
NAME = "ffc-pay-batch-app-cert"
ID = f"{VAULT_URL}/certificates/{NAME}"
INPUTS: dict[str, Any] = {
    "vault_url": VAULT_URL,
    "certificate_name": NAME,
    "subject": "CN=ADP-FFC-PayBatch",
    "validity_months": 12,
    "renew_before_days": 30,
}


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(provider_module, "now", clock)
    return clock


pytestmark = pytest.mark.usefixtures("loopback_vaults")  # the in-process vault's origin, as the emulator lists it


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> InProcessVault:
    fresh_process_state()
    vault = InProcessVault()
    vault.state.clock = clock  # the vault issues certificates at the same "now" the provider sees
    monkeypatch.setitem(provider_module._CLIENTS.clients, VAULT_URL, vault.client())
    return vault


@pytest.fixture
def provider() -> KeyVaultCertificateProvider:
    return KeyVaultCertificateProvider()


def _versions(vault: InProcessVault) -> list[str]:
    stored = vault.state.certificate(NAME)
    return [v.version for v in stored.versions] if stored else []


def _assert_public_only(outs: Any) -> None:
    text = json.dumps(outs)
    assert "PRIVATE KEY" not in text
    assert "BEGIN" not in text


# -- check -------------------------------------------------------------------------------------------------------


OTHER_TENANT = "770a2450-0227-4c62-90c7-4e38537f1102"
FIXTURES = Path(__file__).parent / "fixtures"


def test_check_normalises(provider: KeyVaultCertificateProvider) -> None:
    news = {
        "vault_url": "https://SndAdpInfKv1401.vault.azure.net/",
        "certificate_name": NAME,
        "subject": "  CN=ADP-FFC-PayBatch ",
        "validity_months": 6.0,
        "renew_before_days": 14.0,
    }
    result = provider.check({}, news)
    assert result.failures == []
    assert result.inputs == {
        "vault_url": "https://sndadpinfkv1401.vault.azure.net",
        "certificate_name": NAME,
        "subject": "CN=ADP-FFC-PayBatch",
        "validity_months": 6,
        "renew_before_days": 14,
    }
    assert type(result.inputs["validity_months"]) is int


def test_check_fills_defaults(provider: KeyVaultCertificateProvider) -> None:
    result = provider.check({}, {k: INPUTS[k] for k in ("vault_url", "certificate_name", "subject")})
    assert result.failures == []
    assert result.inputs["validity_months"] == 12 and result.inputs["renew_before_days"] == 30


def test_check_refuses_unknown_properties_as_the_dataverse_provider_does(provider: KeyVaultCertificateProvider) -> None:
    result = provider.check({}, {**INPUTS, "key_type": "EC", "__provider": "kept"})
    assert [f.property for f in result.failures] == ["key_type"]
    assert result.failures[0].reason.startswith("unknown property 'key_type'; allowed: vault_url, certificate_name")
    assert result.inputs["__provider"] == "kept" and "key_type" not in result.inputs


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("vault_url", "http://kv.vault.azure.net", "must be an https URL"),
        ("vault_url", "https://user:pw@kv.vault.azure.net", "must not carry credentials"),
        ("vault_url", None, "must be the vault's https URL"),
        ("vault_url", "https://attacker.example", "the vault token is sent to Key Vault only"),
        ("vault_url", "https://127.0.0.1:51444", "must be listed in ADP_IDENTITY_LOOPBACK_VAULTS"),
        ("certificate_name", "ffc_pay", "1-127 letters, digits or '-'"),
        ("certificate_name", "x" * 128, "1-127"),
        ("certificate_name", "", "1-127"),
        ("subject", "not a dn", "is not a distinguished name"),
        ("subject", "O=Defra", "must contain a common name"),
        ("validity_months", 13, "between 1 and 12"),
        ("validity_months", 0, "between 1 and 12"),
        ("validity_months", 1.5, "whole number"),
        ("validity_months", True, "whole number"),
        ("renew_before_days", 0, "at least 1"),
        ("renew_before_days", "30", "whole number"),
    ],
)
def test_check_failures_are_returned_one_line(
    provider: KeyVaultCertificateProvider, key: str, value: Any, fragment: str
) -> None:
    result = provider.check({}, {**INPUTS, key: value})
    assert [f.property for f in result.failures] == [key]
    reason = result.failures[0].reason
    assert fragment in reason and reason.startswith(key) and "\n" not in reason


def test_renewal_window_must_fit_in_the_validity(provider: KeyVaultCertificateProvider) -> None:
    assert shortest_days(1) == 28 and shortest_days(12) == 365
    ok = provider.check({}, {**INPUTS, "validity_months": 1, "renew_before_days": 27})
    assert ok.failures == []
    bad = provider.check({}, {**INPUTS, "validity_months": 1, "renew_before_days": 28})
    assert [(f.property, f.reason) for f in bad.failures] == [
        (
            "renew_before_days",
            "renew_before_days must be less than 28 (a 1-month certificate can last 28 days; got 28)",
        )
    ]


def test_check_tolerates_unknowns(provider: KeyVaultCertificateProvider) -> None:
    news = {**INPUTS, "vault_url": rpc.UNKNOWN, "validity_months": rpc.UNKNOWN}
    result = provider.check({}, news)
    assert result.failures == []
    assert result.inputs["vault_url"] == rpc.UNKNOWN and result.inputs["validity_months"] == rpc.UNKNOWN


# -- create ------------------------------------------------------------------------------------------------------


def test_create_makes_two_versions_slot_a_then_b(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    result = provider.create(dict(INPUTS))
    assert result.id == ID
    outs = result.outs
    assert outs is not None
    versions = _versions(vault)
    assert len(versions) == 2
    assert outs["slot_a"]["version"] == versions[0]
    assert outs["slot_b"]["version"] == versions[1]
    assert outs["current_version"] == versions[1]
    assert {k: outs[k] for k in INPUTS} == INPUTS
    for key in ("slot_a", "slot_b"):
        slot = outs[key]
        assert set(slot) == {"version", "thumbprint", "cer", "not_before", "not_after"}
        stored = vault.state.certificate(NAME)
        assert stored is not None
        version = stored.version(slot["version"])
        assert version is not None
        assert base64.b64decode(slot["cer"]) == version.der
        assert slot["thumbprint"] == hashlib.sha1(version.der).hexdigest().upper()
        assert slot["not_before"] == "2026-03-01T07:50:00Z"
        assert slot["not_after"] == "2027-03-01T08:00:00Z"
    _assert_public_only(outs)
    assert vault.adapter.count(path_contains="/secrets") == 0


def test_create_adopts_what_a_failed_attempt_left(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    client = provider_module._CLIENTS.clients[VAULT_URL]
    left = client.create_version(NAME, CertificatePolicy("CN=ADP-FFC-PayBatch", 12)).version
    outs = provider.create(dict(INPUTS)).outs
    assert outs is not None
    versions = _versions(vault)
    assert versions[0] == left and len(versions) == 2
    assert outs["slot_a"]["version"] == left
    assert outs["slot_b"]["version"] == versions[1] == outs["current_version"]


def test_create_retried_after_both_versions_exist_creates_nothing(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    first = provider.create(dict(INPUTS)).outs
    vault.adapter.exchanges.clear()
    again = provider.create(dict(INPUTS)).outs
    assert again == first
    assert vault.adapter.count("POST") == 0
    assert len(_versions(vault)) == 2


def test_create_waits_for_a_create_left_in_progress(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    vault.state.polls_before_completion = 2
    vault.start_create(NAME)  # left in progress by an interrupted run
    outs = provider.create(dict(INPUTS)).outs
    assert outs is not None
    versions = _versions(vault)
    assert len(versions) == 2 and outs["slot_a"]["version"] == versions[0]


@pytest.mark.parametrize("reason", ["other-subject", "disabled", "in-window"])
def test_create_does_not_adopt_unusable_versions(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, clock: Clock, reason: str
) -> None:
    client = provider_module._CLIENTS.clients[VAULT_URL]
    subject = "CN=Someone-Else" if reason == "other-subject" else "CN=ADP-FFC-PayBatch"
    months = 1 if reason == "in-window" else 12
    old = client.create_version(NAME, CertificatePolicy(subject, months)).version
    if reason == "disabled":
        client.set_enabled(NAME, old, False)
    if reason == "in-window":
        clock.at = T0 + dt.timedelta(days=10)  # 1-month certificate: ~21 days left, inside a 30-day window
    outs = provider.create(dict(INPUTS)).outs
    assert outs is not None
    assert old not in (outs["slot_a"]["version"], outs["slot_b"]["version"])
    assert len(_versions(vault)) == 3


def test_create_surfaces_rbac_errors_in_one_line(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    vault.state.remove_role("11111111-1111-1111-1111-111111111111", "Key Vault Certificates Officer")
    vault.state.assign_role("11111111-1111-1111-1111-111111111111", "Key Vault Reader")
    with pytest.raises(Exception, match=r"certificates/create/action") as info:
        provider.create(dict(INPUTS))
    assert "\n" not in str(info.value)


# -- diff --------------------------------------------------------------------------------------------------------


def _created(provider: KeyVaultCertificateProvider) -> dict[str, Any]:
    outs = provider.create(dict(INPUTS)).outs
    assert outs is not None
    return outs


def test_diff_no_change(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = _created(provider)
    result = provider.diff(ID, {**olds, "__provider": "old-blob"}, {**INPUTS, "__provider": "new-blob"})
    assert result.changes is False and result.replaces == []


def test_diff_numbers_from_the_wire_compare_as_ints(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = {**_created(provider), "validity_months": 12.0, "renew_before_days": 30.0}
    assert provider.diff(ID, olds, dict(INPUTS)).changes is False


@pytest.mark.parametrize("key", ["vault_url", "certificate_name"])
def test_diff_replaces_on_identity_change(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, key: str
) -> None:
    olds = _created(provider)
    value = "https://other.vault.azure.net" if key == "vault_url" else "another-name"
    result = provider.diff(ID, olds, {**INPUTS, key: value})
    assert result.changes is True and result.replaces == [key] and result.delete_before_replace is False


@pytest.mark.parametrize(
    ("key", "value"), [("subject", "CN=Renamed"), ("validity_months", 6), ("renew_before_days", 20)]
)
def test_diff_updates_on_settings_change(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, key: str, value: Any
) -> None:
    olds = _created(provider)
    result = provider.diff(ID, olds, {**INPUTS, key: value})
    assert result.changes is True and result.replaces == []


def test_diff_unknown_counts_as_a_change(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = _created(provider)
    assert provider.diff(ID, olds, {**INPUTS, "subject": rpc.UNKNOWN}).changes is True
    assert provider.diff(ID, olds, {**INPUTS, "vault_url": rpc.UNKNOWN}).replaces == ["vault_url"]


def test_diff_reports_renewal_when_the_older_slot_enters_its_window(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, clock: Clock
) -> None:
    olds = _created(provider)  # both expire 2027-03-01T08:00Z
    clock.at = dt.datetime(2027, 1, 30, 7, 59, tzinfo=dt.UTC)  # 30 days + 1 minute left
    assert provider.diff(ID, olds, dict(INPUTS)).changes is False
    clock.at = dt.datetime(2027, 1, 30, 8, 0, tzinfo=dt.UTC)  # exactly 30 days left
    assert provider.diff(ID, olds, dict(INPUTS)).changes is True


def test_diff_looks_at_the_older_slot_only(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = _created(provider)
    # slot_b renewed long ago would be older: only the slot expiring first decides.
    olds["slot_a"] = {**olds["slot_a"], "not_after": "2030-01-01T00:00:00Z"}
    olds["slot_b"] = {**olds["slot_b"], "not_after": "2026-03-20T00:00:00Z"}
    assert provider.diff(ID, olds, dict(INPUTS)).changes is True
    olds["slot_b"] = {**olds["slot_b"], "not_after": "2028-01-01T00:00:00Z"}
    assert provider.diff(ID, olds, dict(INPUTS)).changes is False


def test_diff_reports_an_empty_slot(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = {**_created(provider), "slot_b": None}
    assert provider.diff(ID, olds, dict(INPUTS)).changes is True


# -- update ------------------------------------------------------------------------------------------------------


def test_update_renews_the_older_slot_and_keeps_the_newest(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, clock: Clock
) -> None:
    olds = _created(provider)
    clock.at = dt.datetime(2027, 2, 10, tzinfo=dt.UTC)
    assert provider.diff(ID, olds, dict(INPUTS)).changes is True
    outs = provider.update(ID, olds, dict(INPUTS)).outs
    assert outs is not None
    versions = _versions(vault)
    assert len(versions) == 3
    assert outs["slot_a"]["version"] == versions[2]  # older slot (tie: a) renewed
    assert outs["slot_b"] == olds["slot_b"]  # the newest stays registered
    assert outs["current_version"] == versions[2]
    assert outs["slot_a"]["not_after"] == "2028-02-10T00:00:00Z"
    # Next run: the other slot (now the older) is still in its window: renewed in turn, keeping the new one.
    assert provider.diff(ID, outs, dict(INPUTS)).changes is True
    again = provider.update(ID, outs, dict(INPUTS)).outs
    assert again is not None
    assert again["slot_a"] == outs["slot_a"]
    assert again["slot_b"]["version"] == _versions(vault)[3] == again["current_version"]
    assert provider.diff(ID, again, dict(INPUTS)).changes is False
    _assert_public_only(again)
    assert vault.adapter.count(path_contains="/secrets") == 0


def test_update_with_a_new_subject_makes_one_version(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = _created(provider)
    news = {**INPUTS, "subject": "CN=Renamed"}
    outs = provider.update(ID, olds, news).outs
    assert outs is not None
    assert len(_versions(vault)) == 3
    assert outs["subject"] == "CN=Renamed"
    stored = vault.state.certificate(NAME)
    assert stored is not None and stored.versions[-1].certificate.subject.rfc4514_string() == "CN=Renamed"
    assert outs["slot_b"] == olds["slot_b"]


def test_update_of_renew_before_days_alone_makes_no_version(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = _created(provider)
    outs = provider.update(ID, olds, {**INPUTS, "renew_before_days": 20}).outs
    assert outs is not None
    assert len(_versions(vault)) == 2
    assert outs["renew_before_days"] == 20
    assert (outs["slot_a"], outs["slot_b"]) == (olds["slot_a"], olds["slot_b"])


def test_update_fills_a_slot_disabled_behind_our_back(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = _created(provider)
    provider_module._CLIENTS.clients[VAULT_URL].set_enabled(NAME, olds["slot_a"]["version"], False)
    outs = provider.update(ID, olds, dict(INPUTS)).outs
    assert outs is not None
    assert outs["slot_a"]["version"] == _versions(vault)[2]
    assert outs["slot_b"] == olds["slot_b"]


# -- read --------------------------------------------------------------------------------------------------------


def test_read_unchanged(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = _created(provider)
    result = provider.read(ID, dict(olds))
    assert result.id == ID
    assert result.outs == olds
    assert result.inputs == INPUTS


def test_read_gone(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    result = provider.read(ID, dict(INPUTS))
    assert result.id is None
    assert result.outs == {}


def test_read_empties_a_disabled_slot(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    olds = _created(provider)
    provider_module._CLIENTS.clients[VAULT_URL].set_enabled(NAME, olds["slot_a"]["version"], False)
    outs = provider.read(ID, dict(olds)).outs
    assert outs is not None
    assert outs["slot_a"] is None and outs["slot_b"] == olds["slot_b"]
    assert provider.diff(ID, outs, dict(INPUTS)).changes is True


def test_read_puts_a_version_made_behind_our_back_into_the_older_slot(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, clock: Clock
) -> None:
    olds = _created(provider)
    clock.at = T0 + dt.timedelta(days=1)
    manual = provider_module._CLIENTS.clients[VAULT_URL].create_version(
        NAME, CertificatePolicy("CN=ADP-FFC-PayBatch", 12)
    )
    outs = provider.read(ID, dict(olds)).outs
    assert outs is not None
    assert outs["current_version"] == manual.version
    assert outs["slot_a"]["version"] == manual.version
    assert outs["slot_b"] == olds["slot_b"]


def test_read_of_an_imported_certificate(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    client = provider_module._CLIENTS.clients[VAULT_URL]
    made = [client.create_version(NAME, CertificatePolicy("CN=Imported", 6, 14)).version for _ in range(3)]
    result = provider.read(ID, {})
    assert result.id == ID
    assert result.inputs == {
        "vault_url": VAULT_URL,
        "certificate_name": NAME,
        "subject": "CN=Imported",
        "validity_months": 6,
        "renew_before_days": 14,
    }
    assert result.outs is not None
    assert (result.outs["slot_a"]["version"], result.outs["slot_b"]["version"]) == (made[1], made[2])


# -- delete ------------------------------------------------------------------------------------------------------


def test_delete_disables_every_version_and_keeps_the_certificate(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = _created(provider)
    assert vault.workload_secret(NAME).status == 200
    provider.delete(ID, dict(olds))
    stored = vault.state.certificate(NAME)
    assert stored is not None and len(stored.versions) == 2
    assert all(not v.enabled for v in stored.versions)
    refused = vault.workload_secret(NAME)
    assert refused.status == 403
    assert body_of(refused)["error"]["message"] == "Operation get is not allowed on a disabled secret."
    # A resource created again with the same name does not adopt the disabled versions.
    outs = provider.create(dict(INPUTS)).outs
    assert outs is not None and len(_versions(vault)) == 4
    assert outs["slot_a"]["version"] not in (olds["slot_a"]["version"], olds["slot_b"]["version"])


def test_delete_of_a_missing_certificate_succeeds(provider: KeyVaultCertificateProvider, vault: InProcessVault) -> None:
    provider.delete(ID, dict(INPUTS))
    provider.delete(ID, {})  # only the id: the vault and name come from it


# -- what state holds is validated on every call (issue 10: path traversal from state) ----------------------------


TRAVERSAL = "x/../../secrets/some-secret"


@pytest.mark.parametrize("where", ["props", "id"])
@pytest.mark.parametrize("call", ["read", "delete"])
def test_a_traversing_name_from_state_is_refused_with_no_request(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, where: str, call: str
) -> None:
    props = {**INPUTS, "certificate_name": TRAVERSAL} if where == "props" else {}
    id_ = f"{VAULT_URL}/certificates/{TRAVERSAL}"
    with pytest.raises(ValueError, match="1-127 letters, digits or '-'"):
        getattr(provider, call)(id_, props)
    assert vault.adapter.exchanges == []


def test_a_traversing_version_from_state_is_refused_with_no_request(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    olds = _created(provider)
    vault.adapter.exchanges.clear()
    olds["slot_a"] = {**olds["slot_a"], "version": "../../secrets/some-secret"}
    with pytest.raises(InvalidName, match="refusing to send it"):
        provider.read(ID, olds)
    assert all("/secrets" not in e.path for e in vault.adapter.exchanges)
    assert [e.path for e in vault.adapter.exchanges] == [f"/certificates/{NAME}/"]  # only the latest was read


# -- tenant isolation (contract tenant_id) -----------------------------------------------------------------------


@pytest.mark.parametrize("call", ["create", "read", "update", "delete"])
def test_a_credential_of_another_tenant_is_refused_before_any_request(
    provider: KeyVaultCertificateProvider, vault: InProcessVault, call: str
) -> None:
    inputs = {**INPUTS, "tenant_id": OTHER_TENANT}
    with pytest.raises(TenantMismatch) as info:
        if call == "create":
            provider.create(inputs)
        elif call == "update":
            provider.update(ID, inputs, inputs)
        else:
            getattr(provider, call)(ID, inputs)
    assert str(info.value) == (
        f"Key Vault 127.0.0.1:51443 belongs to tenant {OTHER_TENANT}, but the credential signs in to tenant "
        f"{TENANT}; use the identity of that tenant (AZURE_TENANT_ID / the pipeline's service connection)"
    )
    assert vault.adapter.exchanges == []


def test_the_vaults_own_tenant_works_and_is_kept_in_state(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    outs = provider.create({**INPUTS, "tenant_id": TENANT.upper()}).outs
    assert outs is not None and outs["tenant_id"] == TENANT
    assert provider.read(ID, dict(outs)).outs == outs
    assert provider.diff(ID, outs, {**INPUTS, "tenant_id": OTHER_TENANT}).changes is False  # guards, never a diff


# -- serialization ---------------------------------------------------------------------------------------------


def test_a_provider_serialized_by_todays_state_still_loads_and_works(
    provider: KeyVaultCertificateProvider, vault: InProcessVault
) -> None:
    """``fixtures/keyvault_provider.serialized`` is ``serialize_provider(KeyVaultCertificateProvider())`` as the
    hand-written client's code wrote it into Pulumi state (captured at 9f5c605, pulumi 3.272.0, dill 0.4.1)."""
    blob = (FIXTURES / "keyvault_provider.serialized").read_text().strip()
    raw = base64.b64decode(blob)
    assert b"providers.keyvault.provider" in raw and b"KeyVaultCertificateProvider" in raw
    loaded = dill.loads(raw)
    assert type(loaded) is KeyVaultCertificateProvider
    assert loaded.check({}, dict(INPUTS)).failures == []
    outs = loaded.create(dict(INPUTS)).outs
    assert outs is not None and outs["slot_a"]["version"] == _versions(vault)[0]
    assert loaded.read(ID, dict(outs)).outs == outs
    assert serialize_provider(provider) == blob  # and today's code writes the same bytes


def test_provider_is_serialized_by_reference_with_nothing_on_it() -> None:
    provider = KeyVaultCertificateProvider()
    assert vars(provider) == {}
    raw = base64.b64decode(serialize_provider(provider))
    assert b"providers.keyvault.provider" in raw and b"KeyVaultCertificateProvider" in raw
    assert len(raw) < 200  # a reference, not pickled bytecode
    assert isinstance(dill.loads(raw), KeyVaultCertificateProvider)
    assert pickle.loads(raw).__class__ is KeyVaultCertificateProvider
