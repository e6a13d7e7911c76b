"""The Key Vault certificate provider inside Pulumi's own dynamic-provider host, over gRPC and real HTTPS.

``python -m pulumi.dynamic`` unpickles the provider (by reference), builds ``DefaultAzureCredential`` from the
emulator's variables (pinned to ``WorkloadIdentityCredential`` with a federated token, as the pipeline runs),
fetches a token over TLS from the emulated Entra ID and talks to the emulated vault - the path ``pulumi up``
takes, with no mock in between.

The vault's clock is set back for the first create so both versions are already inside their renewal window:
the provider host keeps the real clock, and the renewal is seen by Diff and done by Update as in a real run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from adp_identity_emulator.keyvault import KeyVaultState
from adp_identity_sandbox.provider_host import UNKNOWN, ProviderCallError, ProviderHost
from providers.keyvault.provider import TYPE_TOKEN, KeyVaultCertificateProvider

from .keyvault_support import EMULATOR_PIPELINE as PIPELINE
from .keyvault_support import EMULATOR_SEED as SEED
from .keyvault_support import EMULATOR_VAULT as VAULT
from .keyvault_support import EMULATOR_WORKLOAD as WORKLOAD

pytestmark = [pytest.mark.grpc, pytest.mark.emulator]

NAME = "ffc-pay-batch-app-cert"


@dataclass
class Harness:
    emulator: Emulator
    vault: KeyVaultState
    vault_url: str
    env: dict[str, str]

    @property
    def federated_token(self) -> str:
        return Path(self.env["AZURE_FEDERATED_TOKEN_FILE"]).read_text()

    def workload_secret(self) -> requests.Response:
        """What the workload itself reads, with its own token (Key Vault Secrets User)."""
        tenant = self.emulator.tenant("DefraDev").id
        token = self.emulator.entra.issue_access_token(tenant, WORKLOAD, "https://vault.azure.net")
        return requests.get(
            f"{self.vault_url}/secrets/{NAME}",
            params={"api-version": "7.5"},
            headers={"Authorization": f"Bearer {token}"},
            verify=self.emulator.ca_bundle,
            timeout=10,
        )


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Emulator(SEED, state_dir=tmp_path_factory.mktemp("kv-emulator")) as emulator:
        env = emulator.credential_env("DefraDev")
        assert env["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
        yield Harness(emulator, emulator.key_vault(VAULT), emulator.key_vault_url(VAULT), env)


@pytest.fixture
def host(harness: Harness) -> Iterator[ProviderHost]:
    with ProviderHost(KeyVaultCertificateProvider(), env=harness.env, type_token=TYPE_TOKEN) as host:
        host.configure({})
        yield host


def _inputs(harness: Harness, **changes: Any) -> dict[str, Any]:
    return {
        "vault_url": harness.vault_url,
        "certificate_name": NAME,
        "subject": "CN=ADP-FFC-PayBatch",
        "validity_months": 12,
        "renew_before_days": 30,
        **changes,
    }


def _no_private_material(harness: Harness, *documents: Any) -> None:
    text = json.dumps(documents)
    assert "PRIVATE KEY" not in text
    assert harness.federated_token not in text
    stored = harness.vault.certificate(NAME)
    if stored is not None:
        for version in stored.versions:
            if version.issued:
                assert version.secret_value() not in text


def test_check_over_grpc(harness: Harness, host: ProviderHost) -> None:
    checked = host.check(_inputs(harness, vault_url=f"{harness.vault_url}/", validity_months=6.0))
    assert checked.failures == []
    assert checked.inputs["vault_url"] == harness.vault_url
    assert checked.inputs["validity_months"] == 6
    bad = host.check(_inputs(harness, certificate_name="ffc_pay", renew_before_days=400))
    assert sorted(p for p, _ in bad.failures) == ["certificate_name", "renew_before_days"]
    assert all("\n" not in reason for _, reason in bad.failures)
    preview = host.check(_inputs(harness, subject=UNKNOWN))
    assert preview.failures == []


def test_lifecycle_over_grpc(harness: Harness, host: ProviderHost) -> None:
    real_now = dt.datetime.now(dt.UTC)
    harness.vault.clock = lambda: real_now - dt.timedelta(days=340)  # expires in ~25 days: inside a 30-day window
    inputs = host.check(_inputs(harness)).inputs

    # Create: two versions, slot a then slot b; the newest is current.
    id_, outs = host.create(inputs)
    assert id_ == f"{harness.vault_url}/certificates/{NAME}"
    stored = harness.vault.certificate(NAME)
    assert stored is not None
    created = [v.version for v in stored.versions]
    assert len(created) == 2
    assert (outs["slot_a"]["version"], outs["slot_b"]["version"]) == tuple(created)
    assert outs["current_version"] == created[1]
    for key in ("slot_a", "slot_b"):
        version = stored.version(outs[key]["version"])
        assert version is not None and base64.b64decode(outs[key]["cer"]) == version.der
        assert outs[key]["thumbprint"] == hashlib.sha1(version.der).hexdigest().upper()
    _no_private_material(harness, outs, host.provider_blob)

    # Refresh: nothing changed.
    read_id, read_outs, read_inputs = host.read(id_, outs, inputs)
    assert read_id == id_ and read_outs == outs
    assert read_inputs is not None and read_inputs["subject"] == "CN=ADP-FFC-PayBatch"

    # Renewal: the older slot is inside its window -> update -> one new version into slot a.
    harness.vault.clock = lambda: dt.datetime.now(dt.UTC)
    diff = host.diff(id_, outs, inputs)
    assert diff.has_changes and diff.replaces == []
    renewed = host.update(id_, outs, inputs)
    assert len(stored.versions) == 3
    assert renewed["slot_a"]["version"] == stored.versions[2].version == renewed["current_version"]
    assert renewed["slot_b"] == outs["slot_b"]  # the newest stayed registered throughout

    # Next run: slot b is now the older one and still in its window -> renewed in turn.
    assert host.diff(id_, renewed, inputs).has_changes
    again = host.update(id_, renewed, inputs)
    assert again["slot_a"] == renewed["slot_a"]
    assert again["slot_b"]["version"] == stored.versions[3].version == again["current_version"]
    assert not host.diff(id_, again, inputs).has_changes
    _no_private_material(harness, renewed, again)

    # Replacement when the name changes; a subject change is an update.
    assert host.diff(id_, again, {**inputs, "certificate_name": "other"}).replaces == ["certificate_name"]
    assert host.diff(id_, again, {**inputs, "subject": "CN=Other"}).has_changes

    # The workload reads the newest version's secret (private key stays in the vault, never in Pulumi).
    secret = harness.workload_secret()
    assert secret.status_code == 200 and secret.json()["id"].endswith(again["current_version"])
    assert not [e for e in harness.emulator.log.entries if "/secrets/" in e.path and e.caller == PIPELINE]
    assert harness.emulator.log.count(service="keyvault", method="POST", path_contains=f"/{NAME}/create") == 4

    # Delete disables every version: the workload can no longer fetch the private key.
    host.delete(id_, again)
    assert all(not v.enabled for v in stored.versions)
    assert harness.workload_secret().status_code == 403

    # Refresh after delete: the certificate still exists, but no slot is usable any more.
    _, gone_outs, _ = host.read(id_, again, inputs)
    assert gone_outs.get("slot_a") is None and gone_outs.get("slot_b") is None  # None is dropped on the wire
    assert gone_outs["current_version"] == again["current_version"]
    assert "PRIVATE KEY" not in host.stderr


def test_errors_reach_the_engine_as_one_line(harness: Harness, host: ProviderHost) -> None:
    harness.vault.remove_role(PIPELINE, "Key Vault Certificates Officer")
    harness.vault.assign_role(PIPELINE, "Key Vault Reader")
    try:
        with pytest.raises(ProviderCallError) as info:
            host.create(host.check(_inputs(harness, certificate_name="forbidden-cert")).inputs)
    finally:
        harness.vault.remove_role(PIPELINE, "Key Vault Reader")
        harness.vault.assign_role(PIPELINE, "Key Vault Certificates Officer")
    last = info.value.last_line
    assert last.startswith("providers.keyvault.errors.Forbidden: Key Vault 127.0.0.1:")
    assert "Microsoft.KeyVault/vaults/certificates/create/action" in last
    assert "Forbidden/ForbiddenByRbac" in last
    assert harness.federated_token not in info.value.details
    assert "eyJ" not in info.value.details  # no JWT anywhere in what the engine shows


def test_a_vault_that_throttles_for_ever_fails_the_create_in_one_line_within_bounds(
    harness: Harness, host: ProviderHost
) -> None:
    """THE key test (issue 9): 429 with Retry-After: 0 for ever, the provider in Pulumi's own host, production
    limits. The hand-written client sent 238,165 requests in 150 s and was still retrying."""
    inputs = host.check(_inputs(harness, certificate_name="throttled-cert")).inputs
    harness.emulator.log.clear()
    harness.vault.misbehave(status=429, headers={"Retry-After": "0"}, body='{"error": {"code": "Throttled"}}')
    started = time.monotonic()
    try:
        with pytest.raises(ProviderCallError) as info:
            host.create(inputs)
    finally:
        harness.vault.behave()
    elapsed = time.monotonic() - started
    requests_sent = harness.emulator.log.count(service="keyvault")
    last = info.value.last_line
    assert last.startswith("providers.keyvault.errors.Throttled: Key Vault 127.0.0.1:")
    assert "/certificates/throttled-cert/pending answered 429 Throttled" in last
    assert "(gave up after 6 requests and 15s of waiting)" in last
    assert requests_sent == 1 + 5  # the challenge, then the first request and four resends (1, 2, 4, 8 s apart)
    assert elapsed < 30, elapsed
    assert harness.vault.certificate("throttled-cert") is None
    assert "eyJ" not in info.value.details


def test_a_serialized_provider_from_todays_state_loads_and_works_in_the_host(harness: Harness) -> None:
    blob = (Path(__file__).parent / "fixtures" / "keyvault_provider.serialized").read_text().strip()
    with ProviderHost(KeyVaultCertificateProvider(), env=harness.env, type_token=TYPE_TOKEN) as host:
        host.provider_blob = blob  # what Pulumi state written by the hand-written client's code holds
        host.configure({})
        inputs = host.check(_inputs(harness, certificate_name="state-cert")).inputs
        id_, outs = host.create(inputs)
        assert id_.endswith("/certificates/state-cert") and outs["slot_b"]["version"] == outs["current_version"]
        assert host.read(id_, outs, inputs)[1] == outs


def test_read_of_a_missing_certificate_reports_it_gone(harness: Harness, host: ProviderHost) -> None:
    id_, outs, _ = host.read(
        f"{harness.vault_url}/certificates/never-made", _inputs(harness, certificate_name="never-made")
    )
    assert id_ == "" and outs == {}


def test_tenant_isolation_over_grpc(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A DefraDev credential at the Defra vault is refused with no Key Vault request; its own vault works."""
    with Emulator(load_seed(DEFAULT_SEED), state_dir=tmp_path_factory.mktemp("kv-tenants-grpc")) as emulator:
        env = emulator.credential_env("DefraDev")
        defra, dev = emulator.tenant("Defra").id, emulator.tenant("DefraDev").id
        with ProviderHost(KeyVaultCertificateProvider(), env=env, type_token=TYPE_TOKEN) as host:
            host.configure({})
            base = {"certificate_name": NAME, "subject": "CN=ADP-FFC-PayBatch"}
            wrong = host.check({**base, "vault_url": emulator.key_vault_url("prdadpinfkv1401"), "tenant_id": defra})
            assert wrong.failures == []
            emulator.log.clear()
            with pytest.raises(ProviderCallError) as info:
                host.create(wrong.inputs)
            last = info.value.last_line
            assert last.startswith("providers.keyvault.errors.TenantMismatch: Key Vault 127.0.0.1:")
            assert f"belongs to tenant {defra}, but the credential signs in to tenant {dev}" in last
            assert emulator.log.count(service="keyvault") == 0

            own = host.check({**base, "vault_url": emulator.key_vault_url("sndadpinfkv1401"), "tenant_id": dev})
            _, outs = host.create(own.inputs)
            assert outs["tenant_id"] == dev and outs["slot_a"] and outs["slot_b"]
            assert emulator.log.count(service="keyvault", env="prdadpinfkv1401") == 0
