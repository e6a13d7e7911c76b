"""KeyVaultCertificatesClient (the Azure SDK underneath) against the emulated vault: in-process wire, real tokens,
the SDK's own challenge flow, retry policy and create poller, scripted faults."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from typing import Any

import pytest
from cryptography import x509

from providers import _identity
from providers._identity import TOKENS
from providers.keyvault import client as client_module
from providers.keyvault.client import SCOPE, KeyVaultCertificatesClient, vault_origin
from providers.keyvault.errors import (
    CertificateNotFound,
    ConnectionFailed,
    Forbidden,
    InvalidName,
    MalformedResponse,
    OperationTimedOut,
    ServerError,
    Throttled,
    Unauthorized,
    UntrustedOrigin,
)
from providers.keyvault.models import CertificatePolicy

from .keyvault_support import (
    READER,
    REPO_ROOT,
    VAULT_URL,
    InProcessVault,
    TestCredential,
    fresh_process_state,
    loopback_vaults,  # noqa: F401 - the fixture
)

POLICY = CertificatePolicy("CN=ADP-FFC-PayBatch", 12, renew_before_days=30)
NAME = "ffc-pay-batch-app-cert"


pytestmark = pytest.mark.usefixtures("loopback_vaults")  # the in-process vault's origin, as the emulator lists it


@pytest.fixture(autouse=True)
def _fresh_process() -> None:
    fresh_process_state()


@pytest.fixture
def vault() -> InProcessVault:
    return InProcessVault()


def _exchanges(vault: InProcessVault) -> list[tuple[str, str, int]]:
    return [(e.method, e.path, e.status) for e in vault.adapter.exchanges]


def _no_secret_requests(vault: InProcessVault) -> None:
    assert vault.adapter.count(path_contains="/secrets") == 0


def test_create_version_returns_the_issued_public_certificate(vault: InProcessVault) -> None:
    client = vault.client()
    version = client.create_version(NAME, POLICY)
    assert version.issued and version.enabled
    assert version.cer is not None
    der = base64.b64decode(version.cer)
    assert version.thumbprint == hashlib.sha1(der).hexdigest().upper()
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == "CN=ADP-FFC-PayBatch"
    stored = vault.state.certificate(NAME)
    assert stored is not None and [v.version for v in stored.versions] == [version.version]
    assert version.policy_subject == "CN=ADP-FFC-PayBatch"
    assert version.policy_renew_before_days == 30
    # The policy the client sends: self-signed RSA made in the vault, EmailContacts (never AutoRenew).
    assert stored.policy.lifetime_actions == (
        {"trigger": {"days_before_expiry": 30}, "action": {"action_type": "EmailContacts"}},
    )
    assert stored.policy.reuse_key is False and stored.policy.key_size == 2048
    assert vault.adapter.count("POST", "/create") == 1
    assert vault.sleeps == []
    _no_secret_requests(vault)


def test_the_sdk_meets_key_vaults_challenge_first(vault: InProcessVault) -> None:
    credential = TestCredential()
    vault.client(credential).create_version(NAME, POLICY)
    first, second = vault.adapter.exchanges[:2]
    assert (first.method, first.path, first.status) == ("GET", f"/certificates/{NAME}/pending", 401)  # no token
    assert (second.method, second.path, second.status) == ("GET", f"/certificates/{NAME}/pending", 404)
    assert first.query == second.query == "api-version=7.5"
    assert [e.status for e in vault.adapter.exchanges].count(401) == 1  # the challenge is cached afterwards
    assert len(credential.calls) == 1


def test_polls_pending_honouring_retry_after(vault: InProcessVault) -> None:
    vault.state.polls_before_completion = 3
    vault.state.retry_after_seconds = 7
    version = vault.client().create_version(NAME, POLICY)
    assert version.issued
    assert vault.sleeps == [7, 7, 7]
    path = f"/certificates/{NAME}"
    assert _exchanges(vault) == [
        ("GET", f"{path}/pending", 401),  # Key Vault's challenge (the SDK's first request carries no token)
        ("GET", f"{path}/pending", 404),  # one before creating: nothing in progress
        ("GET", f"{path}/versions", 200),
        ("POST", f"{path}/create", 202),
        *[("GET", f"{path}/pending", 200)] * 4,  # four polls, three of them in progress
        ("GET", f"{path}/", 200),  # the SDK poller's final read of the new version
    ]


def test_poll_interval_is_capped(vault: InProcessVault) -> None:
    vault.state.polls_before_completion = 1
    vault.state.retry_after_seconds = 120
    vault.client().create_version(NAME, POLICY)
    assert vault.sleeps == [10.0]


def test_pending_wait_is_bounded_with_a_clear_error(vault: InProcessVault) -> None:
    vault.state.polls_before_completion = 1000
    vault.state.retry_after_seconds = 5
    client = vault.client(max_operation_wait=20)
    with pytest.raises(OperationTimedOut) as info:
        client.create_version(NAME, POLICY)
    assert sum(vault.sleeps) == 20
    message = str(info.value)
    assert "\n" not in message
    assert f"certificate {NAME} is still being created after 20s" in message
    assert message.startswith("Key Vault 127.0.0.1:51443:")
    assert vault.adapter.count("GET", "/pending") == 1 + 1 + 5  # challenge, one before creating, five polls


@pytest.mark.parametrize("retry_after", [0, -5])
def test_pending_wait_under_retry_after_zero_or_less_still_ends(vault: InProcessVault, retry_after: int) -> None:
    vault.state.polls_before_completion = 10**6
    vault.state.retry_after_seconds = retry_after
    with pytest.raises(OperationTimedOut, match="still being created") as info:
        vault.client(max_polls=7).create_version(NAME, POLICY)
    assert "\n" not in str(info.value)
    assert vault.sleeps == [1.0] * 6  # a zero or negative Retry-After waits the floor, and the polls are counted
    assert vault.adapter.count("GET", "/pending") == 1 + 1 + 7  # challenge, one before creating, seven polls


def test_waits_for_an_earlier_create_before_creating(vault: InProcessVault) -> None:
    vault.state.polls_before_completion = 1000
    client = vault.client()
    vault.start_create(NAME)  # a create left in progress by an earlier, interrupted run
    vault.state.polls_before_completion = 0
    stored = vault.state.certificate(NAME)
    assert stored is not None and stored.operation is not None
    stored.operation.polls_left = 2
    version = client.create_version(NAME, POLICY)
    assert len(stored.versions) == 2
    assert version.version == stored.versions[-1].version


def test_throttling_honours_retry_after(vault: InProcessVault) -> None:
    vault.adapter.script("throttle", count=2, method="POST", retry_after=3)
    vault.client().create_version(NAME, POLICY)
    assert vault.sleeps[:2] == [3, 3]
    stored = vault.state.certificate(NAME)
    assert stored is not None and len(stored.versions) == 1


def test_throttling_beyond_the_budget_is_a_typed_error(vault: InProcessVault) -> None:
    vault.adapter.script("throttle", count=100, method="GET", retry_after=20)
    client = vault.client()
    with pytest.raises(Throttled) as info:
        client.get_certificate(NAME)
    assert vault.sleeps == [20, 20, 20, 20]  # Retry-After honoured, four resends at most
    assert vault.adapter.count() == 5
    assert "gave up after 5 requests and 80s of waiting" in str(info.value)
    assert info.value.status == 429 and "\n" not in str(info.value)


def test_a_long_retry_after_is_capped(vault: InProcessVault) -> None:
    vault.adapter.script("throttle", count=1, method="GET", retry_after=3600)
    with pytest.raises(CertificateNotFound):
        vault.client().get_certificate(NAME)
    assert vault.sleeps == [60.0]


def test_unavailable_is_retried_with_backoff_when_no_retry_after(vault: InProcessVault) -> None:
    vault.adapter.script("unavailable", count=3, method="GET", retry_after=None)
    vault.client().create_version(NAME, POLICY)
    assert vault.sleeps[:3] == [1.0, 2.0, 4.0]


def test_bad_gateway_on_create_is_not_blindly_repeated(vault: InProcessVault) -> None:
    vault.adapter.script("bad_gateway", method="POST", retry_after=None)
    version = vault.client().create_version(NAME, POLICY)
    stored = vault.state.certificate(NAME)
    assert stored is not None and [v.version for v in stored.versions] == [version.version]
    assert vault.adapter.count("POST", "/create") == 2  # the 502 was not processed: created once more


def test_lost_create_answer_makes_exactly_one_version(vault: InProcessVault) -> None:
    vault.adapter.script("lost_response", method="POST")
    version = vault.client().create_version(NAME, POLICY)
    stored = vault.state.certificate(NAME)
    assert stored is not None and [v.version for v in stored.versions] == [version.version]
    assert vault.adapter.count("POST", "/create") == 1


def test_lost_create_answer_of_a_completed_operation_is_found_by_its_version(vault: InProcessVault) -> None:
    client = vault.client()
    client.create_version(NAME, POLICY)
    vault.adapter.script("lost_response", method="POST")
    vault.adapter.script("drop", method="GET", path_contains="/pending")  # the check after the loss: retried
    second = client.create_version(NAME, POLICY)
    stored = vault.state.certificate(NAME)
    assert stored is not None and len(stored.versions) == 2
    assert second.version == stored.versions[-1].version


def test_dropped_reads_are_retried(vault: InProcessVault) -> None:
    client = vault.client()
    client.create_version(NAME, POLICY)
    vault.adapter.script("drop", count=2, method="GET")
    assert client.get_certificate(NAME).issued
    assert vault.sleeps == [1.0, 2.0]


def test_tls_failure_is_immediate_and_explained(vault: InProcessVault) -> None:
    vault.adapter.script("tls")
    with pytest.raises(ConnectionFailed) as info:
        vault.client().get_certificate(NAME)
    assert "REQUESTS_CA_BUNDLE" in str(info.value)
    assert vault.sleeps == []


def test_not_found_is_typed(vault: InProcessVault) -> None:
    with pytest.raises(CertificateNotFound) as info:
        vault.client().get_certificate("absent")
    assert info.value.code == "CertificateNotFound"
    assert "GET https://127.0.0.1:51443/certificates/absent answered 404" in str(info.value)


def test_forbidden_is_one_line_and_names_the_action(vault: InProcessVault) -> None:
    credential = TestCredential(READER)
    with pytest.raises(Forbidden) as info:
        vault.client(credential).create_version(NAME, POLICY)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert "Microsoft.KeyVault/vaults/certificates/create/action" in message
    assert info.value.code == "Forbidden/ForbiddenByRbac"
    assert all(token not in message for token in credential.issued)


def test_a_refused_token_is_replaced_once(vault: InProcessVault) -> None:
    credential = TestCredential(bad_first=1)
    client = vault.client(credential)
    assert client.list_versions(NAME) == []
    assert len(credential.calls) == 2


def test_a_persistently_refused_token_is_unauthorized_without_the_token(vault: InProcessVault) -> None:
    credential = TestCredential(bad_first=10)
    with pytest.raises(Unauthorized) as info:
        vault.client(credential).list_versions(NAME)
    message = str(info.value)
    assert "the vault expects tokens from https://login.windows.net/6f504113" in message
    assert all(token not in message for token in credential.issued)
    assert len(credential.calls) == 2


def test_token_is_cached_per_process_across_clients(vault: InProcessVault) -> None:
    credential = TestCredential()
    first, second = vault.client(credential), vault.client(credential)
    first.create_version(NAME, POLICY)
    second.list_versions(NAME)
    second.get_certificate(NAME)
    assert len(credential.calls) == 1


def test_token_near_expiry_is_refreshed(vault: InProcessVault) -> None:
    credential = TestCredential(lifetime=200)  # inside the 5-minute refresh margin from the start
    client = vault.client(credential)
    for _ in range(3):
        client.list_versions(NAME)
    # never reused: each call's check before its first request, and its request, fetch one each
    assert len(credential.calls) == 6


def test_vault_tokens_live_in_the_process_wide_cache_shared_with_dataverse(vault: InProcessVault) -> None:
    credential = TestCredential()
    vault.client(credential).list_versions(NAME)
    assert TOKENS.token(_identity.token_key(credential, SCOPE), _no_fetch) == credential.issued[-1]
    assert len(credential.calls) == 1


def _no_fetch() -> Any:
    raise AssertionError("the vault token should already be in the process-wide cache")


def test_credential_failure_is_one_line_unauthorized_naming_the_vault(vault: InProcessVault) -> None:
    class Failing:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            raise RuntimeError("AADSTS7000215: Invalid client secret provided.\nTrace ID: 1234")

    with pytest.raises(Unauthorized) as info:
        vault.client(Failing()).list_versions(NAME)
    assert str(info.value) == (
        "Key Vault 127.0.0.1:51443: could not get a token for https://vault.azure.net/.default: "
        "AADSTS7000215: Invalid client secret provided."
    )
    assert vault.adapter.exchanges == []


def test_versions_follow_next_link(vault: InProcessVault) -> None:
    client = vault.client()
    made = [client.create_version(NAME, POLICY).version for _ in range(5)]
    vault.adapter.exchanges.clear()
    listed = client.list_versions(NAME, page_size=2)
    assert [v.version for v in listed] == made
    assert all(v.cer is None and v.thumbprint for v in listed)
    assert vault.adapter.count("GET", "/versions") == 3


REAL_VAULT = "https://kvtest01.vault.azure.net"  # a Key Vault host: the SDK verifies the challenge for it


def test_next_link_to_another_host_is_refused() -> None:
    vault = InProcessVault(REAL_VAULT)
    vault.state.misbehave("endless_next_link", next_origin="https://attacker.example", path_contains="/versions")
    with pytest.raises(UntrustedOrigin, match=r"refusing a nextLink to another host: attacker\.example"):
        vault.client().list_versions("c")
    assert {e.path for e in vault.adapter.exchanges} == {"/certificates/c/versions"}  # the strict wire saw no other


def test_a_real_vaults_challenge_must_name_key_vault_or_no_token_is_sent() -> None:
    """For *.vault.azure.net the SDK's verify_challenge_resource stays on: a challenge naming another resource
    (a spoofed vault asking for a token of another audience) is refused, and no request carries a token."""
    vault = InProcessVault(REAL_VAULT)
    challenge = 'Bearer authorization="https://login.windows.net/x", resource="https://attacker.example"'
    vault.adapter.script("answer", status=401, headers={"WWW-Authenticate": challenge})
    credential = TestCredential()
    with pytest.raises(UntrustedOrigin, match="challenge names another resource") as info:
        vault.client(credential).get_certificate(NAME)
    assert "\n" not in str(info.value)
    assert [(e.status, e.authorized) for e in vault.adapter.exchanges] == [(401, False)]


def test_a_real_vault_works_with_the_challenge_verified() -> None:
    vault = InProcessVault(REAL_VAULT)
    client = vault.client()
    assert client.create_version(NAME, POLICY).issued
    assert [e.authorized for e in vault.adapter.exchanges] == [False] + [True] * (len(vault.adapter.exchanges) - 1)


@pytest.mark.parametrize(
    "name",
    ["x/../../secrets/some-secret", "../secrets/s", "a%2Fb", "a b", "", "x" * 128, "naïve"],
)
def test_names_are_validated_on_every_call_before_any_request(vault: InProcessVault, name: str) -> None:
    client = vault.client()
    calls = [
        lambda: client.get_certificate(name),
        lambda: client.get_certificate(NAME, name),
        lambda: client.list_versions(name),
        lambda: client.set_enabled(name, "0" * 32, False),
        lambda: client.set_enabled(NAME, name, False),
        lambda: client.get_operation(name),
        lambda: client.create_version(name, POLICY),
    ]
    for call in calls:
        with pytest.raises(InvalidName, match="refusing to send it") as info:
            call()
        assert "\n" not in str(info.value)
    assert vault.adapter.exchanges == []


def test_path_segments_are_quoted_with_no_safe_characters(
    vault: InProcessVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind the name check, the SDK quotes every path segment with ``safe=""``: '/' cannot make a new segment."""
    monkeypatch.setattr(client_module, "check_name", lambda name, **_: name)  # the first guard removed
    with pytest.raises(Exception):  # noqa: B017 - the emulated vault refuses the name (400)
        vault.client().get_certificate("x/../../secrets/some-secret")
    assert {e.path for e in vault.adapter.exchanges} == {"/certificates/x%2F..%2F..%2Fsecrets%2Fsome-secret/"}


def test_disable_a_version(vault: InProcessVault) -> None:
    client = vault.client()
    version = client.create_version(NAME, POLICY)
    assert client.set_enabled(NAME, version.version, False).enabled is False
    assert client.get_certificate(NAME, version.version).enabled is False
    assert vault.workload_secret(NAME, version.version).status == 403


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://SndAdpInfKv1401.vault.azure.net/", "https://sndadpinfkv1401.vault.azure.net"),
        ("https://kv.vault.azure.net:443/certificates/x?y=1", "https://kv.vault.azure.net"),
        ("https://127.0.0.1:51443", "https://127.0.0.1:51443"),
    ],
)
def test_vault_origin(url: str, origin: str) -> None:
    assert vault_origin(url) == origin


def test_vault_origin_requires_https() -> None:
    with pytest.raises(ValueError, match="https"):
        vault_origin("http://kv.vault.azure.net")


def test_vault_name_in_messages() -> None:
    client = KeyVaultCertificatesClient("https://sndadpinfkv1401.vault.azure.net", TestCredential())
    assert client.vault == "sndadpinfkv1401"


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example",
        "https://vault.azure.net.attacker.example",
        "https://kv.vault.azure.net.attacker.example",
        "https://a.b.vault.azure.net",
        "https://kv.vault.azure.net:8443",
        "https://127.0.0.1:51444",  # loopback, but not the origin the emulator listed
        "https://localhost:51443",
    ],
)
def test_the_vault_token_is_bound_to_key_vault(url: str) -> None:
    credential = TestCredential()
    with pytest.raises(UntrustedOrigin, match="the vault token is sent to Key Vault only") as info:
        KeyVaultCertificatesClient(url, credential)
    assert "\n" not in str(info.value)
    assert credential.calls == []  # no token was even asked for


def test_a_loopback_vault_needs_the_emulators_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADP_IDENTITY_LOOPBACK_VAULTS")
    with pytest.raises(UntrustedOrigin, match="ADP_IDENTITY_LOOPBACK_VAULTS"):
        KeyVaultCertificatesClient(VAULT_URL, TestCredential())
    monkeypatch.setenv("ADP_IDENTITY_LOOPBACK_VAULTS", f"https://attacker.example {VAULT_URL}/")
    assert KeyVaultCertificatesClient(VAULT_URL, TestCredential()).vault_url == VAULT_URL
    monkeypatch.setenv("ADP_IDENTITY_LOOPBACK_VAULTS", "https://attacker.example")  # never widens to a real host
    with pytest.raises(UntrustedOrigin):
        KeyVaultCertificatesClient("https://attacker.example", TestCredential())


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("https://127.0.0.1:50400", {"disable_instance_discovery": True}),
        ("https://login.microsoftonline.com", {}),
        ("", {}),
    ],
)
def test_default_credential_is_lazy_and_private_authorities_skip_instance_discovery(
    monkeypatch: pytest.MonkeyPatch, vault: InProcessVault, authority: str, expected: dict[str, Any]
) -> None:
    built: list[dict[str, Any]] = []

    class Recorder(TestCredential):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            built.append(kwargs)

    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Recorder)
    monkeypatch.setattr(_identity, "_default_credentials", {})  # nothing built yet in this process
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "WorkloadIdentityCredential")
    if authority:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
    else:
        monkeypatch.delenv("AZURE_AUTHORITY_HOST", raising=False)
    client = KeyVaultCertificatesClient(vault.origin, session=vault.session(), sleep=vault.sleeps.append)
    assert built == []  # nothing built until a token is needed
    client.list_versions(NAME)
    KeyVaultCertificatesClient(vault.origin, session=vault.session(), sleep=vault.sleeps.append).list_versions(NAME)
    assert built == [expected]  # one credential (and one token) for both clients
    assert _identity.default_credential() is _identity.default_credential()


def test_client_module_does_not_import_pulumi() -> None:
    code = (
        "import sys, providers.keyvault, providers.keyvault.client, providers.keyvault.slots, "
        "providers.keyvault.rotation, providers.keyvault._transport; "
        "assert not [m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi.')], 'pulumi imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


def test_server_error_after_budget_is_typed(vault: InProcessVault) -> None:
    vault.adapter.script("unavailable", count=100, method="GET", retry_after=30)
    with pytest.raises(ServerError) as info:
        vault.client().get_certificate(NAME)
    assert info.value.status == 503
    assert vault.sleeps == [30, 30, 30, 30]
    assert "gave up after 5 requests and 120s of waiting" in str(info.value)


# -- malformed answers are typed (issue 9 §2) ---------------------------------------------------------------------

MALFORMED_BODIES = [
    "not json",
    '{"id": "https://127.0.0.1:51443/certificates/c/0',  # cut short
    "[]",
    '"a string"',
    "{}",
    '{"id": 5}',
    '{"id": "not a url"}',
    '{"id": "https://127.0.0.1:51443/certificates/c/0", "attributes": [], "x5t": 7, "cer": {}}',
    '{"value": 3, "nextLink": 7}',
    '{"value": [{"id": null}]}',
    '{"status": null}',
    '{"status": 5, "error": "x"}',
]


@pytest.mark.parametrize("body", MALFORMED_BODIES)
@pytest.mark.parametrize("call", ["get_certificate", "get_version", "list_versions", "get_operation", "set_enabled"])
def test_a_malformed_200_is_a_typed_one_line_error(vault: InProcessVault, call: str, body: str) -> None:
    client = vault.client()
    version = client.create_version("c", POLICY).version
    vault.state.misbehave(status=200, headers={"Content-Type": "application/json"}, body=body)
    calls = {
        "get_certificate": lambda: client.get_certificate("c"),
        "get_version": lambda: client.get_certificate("c", version),
        "list_versions": lambda: client.list_versions("c"),
        "get_operation": lambda: client.get_operation("c"),
        "set_enabled": lambda: client.set_enabled("c", version, False),
    }
    with pytest.raises(MalformedResponse) as info:
        calls[call]()
    message = str(info.value)
    assert message.startswith("Key Vault 127.0.0.1:51443: ") and "\n" not in message
    assert body not in message  # the body is not echoed


@pytest.mark.parametrize("body", ["not json", "{}", '{"status": null}', "[]"])
def test_a_malformed_pending_answer_during_create_is_typed(vault: InProcessVault, body: str) -> None:
    vault.state.polls_before_completion = 1
    vault.state.misbehave(status=200, body=body, method="GET", path_contains="/pending", count=None)
    client = vault.client()
    with pytest.raises(MalformedResponse):
        client.create_version("c", POLICY)
