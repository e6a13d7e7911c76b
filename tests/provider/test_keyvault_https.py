"""KeyVaultCertificatesClient over real sockets: the emulator's TLS server, its fault knobs and Entra tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from azure.identity import WorkloadIdentityCredential

from adp_identity_emulator import Emulator
from providers._identity import TOKENS
from providers.keyvault.client import KeyVaultCertificatesClient
from providers.keyvault.models import CertificatePolicy

from .keyvault_support import EMULATOR_SEED as SEED
from .keyvault_support import EMULATOR_VAULT as VAULT

pytestmark = pytest.mark.emulator
POLICY = CertificatePolicy("CN=ADP-FFC-PayBatch", 12, renew_before_days=30)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(SEED, state_dir=tmp_path_factory.mktemp("kv-https")) as emu:
        yield emu


@pytest.fixture
def client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[KeyVaultCertificatesClient, list[float]]]:
    env = emulator.credential_env("DefraDev")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])  # azure-identity's own transport
    credential = WorkloadIdentityCredential(
        tenant_id=env["AZURE_TENANT_ID"],
        client_id=env["AZURE_CLIENT_ID"],
        token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
        authority=env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    session = requests.Session()
    session.verify = emulator.ca_bundle
    sleeps: list[float] = []
    emulator.faults.clear()
    emulator.log.clear()
    yield (
        KeyVaultCertificatesClient(emulator.key_vault_url(VAULT), credential, session=session, sleep=sleeps.append),
        sleeps,
    )
    emulator.faults.clear()
    TOKENS.clear()


def test_create_over_https(emulator: Emulator, client: tuple[KeyVaultCertificatesClient, list[float]]) -> None:
    kv, _ = client
    version = kv.create_version("https-cert", POLICY)
    assert version.issued and version.cer
    assert emulator.log.count(service="keyvault", caller=emulator.identity("DefraDev")["client_id"]) >= 4


def test_lost_create_answer_over_https_makes_one_version(
    emulator: Emulator, client: tuple[KeyVaultCertificatesClient, list[float]]
) -> None:
    kv, _ = client
    emulator.faults.script("lost_response", service="keyvault", method="POST")
    version = kv.create_version("lost-cert", POLICY)
    stored = emulator.key_vault(VAULT).certificate("lost-cert")
    assert stored is not None and [v.version for v in stored.versions] == [version.version]
    assert emulator.log.count(service="keyvault", method="POST") == 1


def test_throttled_over_https_honours_retry_after(
    emulator: Emulator, client: tuple[KeyVaultCertificatesClient, list[float]]
) -> None:
    kv, sleeps = client
    emulator.faults.script("throttle", count=2, service="keyvault", method="GET", retry_after=4)
    assert kv.list_versions("nothing-here") == []
    assert sleeps == [4.0, 4.0]
    assert emulator.log.count(service="keyvault", status=429) == 2
