"""KeyVaultCertificatesClient over real sockets: the emulator's TLS server, its Entra tokens and its misbehaving
vault, and a trickling server of our own. Request counts come from the emulator's request log.

Every loop ends and every call has a deadline (issue 9 §2): one test per case. The limits are the production
ones except where a test shrinks a wait to keep the suite fast (the bound is the same code either way).
"""

from __future__ import annotations

import resource
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import WorkloadIdentityCredential

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from adp_identity_emulator.pki import CertificateAuthority
from providers.keyvault.client import KeyVaultCertificatesClient, Limits
from providers.keyvault.errors import (
    ConnectionFailed,
    EndlessPaging,
    KeyVaultError,
    MalformedResponse,
    OperationTimedOut,
    Redirected,
    ResponseTooLarge,
    ServerError,
    TenantMismatch,
    Throttled,
    UntrustedOrigin,
)
from providers.keyvault.models import CertificatePolicy
from tests.loopback_tls import LoopbackTLSServer

from .keyvault_support import EMULATOR_SEED as SEED
from .keyvault_support import EMULATOR_VAULT as VAULT
from .keyvault_support import fresh_process_state

pytestmark = pytest.mark.emulator
POLICY = CertificatePolicy("CN=ADP-FFC-PayBatch", 12, renew_before_days=30)
FAST = {"backoff_factor": 0.05}  # retry waits of 0.05, 0.1, 0.2, 0.4 s instead of 1, 2, 4, 8 s


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(SEED, state_dir=tmp_path_factory.mktemp("kv-https")) as emu:
        yield emu


def _credential(emulator: Emulator, tenant: str = "DefraDev") -> WorkloadIdentityCredential:
    env = emulator.credential_env(tenant)
    return WorkloadIdentityCredential(
        tenant_id=env["AZURE_TENANT_ID"],
        client_id=env["AZURE_CLIENT_ID"],
        token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
        authority=env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )


@pytest.fixture
def env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = emulator.credential_env("DefraDev")
    for name in ("REQUESTS_CA_BUNDLE", "ADP_IDENTITY_LOOPBACK_VAULTS"):  # what the emulator's exports set
        monkeypatch.setenv(name, env[name])
    fresh_process_state()
    emulator.faults.clear()
    emulator.log.clear()
    emulator.key_vault(VAULT).behave()
    yield env
    emulator.key_vault(VAULT).behave()
    emulator.faults.clear()
    fresh_process_state()


class Client:
    """A client of the emulated vault with its recorded sleeps."""

    def __init__(self, emulator: Emulator, **limits: Any) -> None:
        self.sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            time.sleep(seconds)

        self.kv = KeyVaultCertificatesClient(
            emulator.key_vault_url(VAULT), _credential(emulator), sleep=sleep, limits=Limits(**limits)
        )


def _vault_requests(emulator: Emulator, path_contains: str = "") -> int:
    return emulator.log.count(service="keyvault", env=VAULT, path_contains=path_contains)


def test_create_over_https(emulator: Emulator, env: dict[str, str]) -> None:
    version = Client(emulator).kv.create_version("https-cert", POLICY)
    assert version.issued and version.cer
    assert emulator.log.count(service="keyvault", caller=emulator.identity("DefraDev")["client_id"]) >= 4
    challenge = emulator.log.filter(service="keyvault")[0]
    assert challenge.status == 401 and challenge.caller is None  # the SDK's first request carries no token


def test_lost_create_answer_over_https_makes_one_version(emulator: Emulator, env: dict[str, str]) -> None:
    emulator.faults.script("lost_response", service="keyvault", method="POST")
    version = Client(emulator).kv.create_version("lost-cert", POLICY)
    stored = emulator.key_vault(VAULT).certificate("lost-cert")
    assert stored is not None and [v.version for v in stored.versions] == [version.version]
    assert emulator.log.count(service="keyvault", method="POST") == 1


def test_throttled_over_https_honours_retry_after(emulator: Emulator, env: dict[str, str]) -> None:
    client = Client(emulator)
    emulator.faults.script("throttle", count=2, service="keyvault", method="GET", retry_after=4)
    assert client.kv.list_versions("nothing-here") == []
    assert client.sleeps == [4.0, 4.0]
    assert emulator.log.count(service="keyvault", status=429) == 2


# -- a vault that throttles or fails for ever ---------------------------------------------------------------------

PAST = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("status", "retry_after", "kind"),
    [
        (429, "0", Throttled),
        (429, "-5", Throttled),
        (429, PAST, Throttled),
        (502, "0", ServerError),
        (503, "0", ServerError),
        (504, "0", ServerError),
    ],
)
def test_a_vault_that_never_recovers_ends_in_one_line_within_bounds(
    emulator: Emulator, env: dict[str, str], status: int, retry_after: str, kind: type[KeyVaultError]
) -> None:
    client = Client(emulator, **FAST)
    emulator.key_vault(VAULT).misbehave(
        status=status, headers={"Retry-After": retry_after, "Content-Type": "application/json"}, body="{}"
    )
    started = time.monotonic()
    with pytest.raises(kind) as info:
        client.kv.get_certificate("throttled")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message and f"answered {status}" in message
    # one challenge (401, answered before any misbehaviour), then five requests: the first and four resends
    assert "gave up after 6 requests" in message
    assert _vault_requests(emulator) == 1 + 5
    assert client.sleeps == [0.05, 0.1, 0.2, 0.4]  # a zero, negative or past Retry-After falls back to backoff
    assert elapsed < 5


def test_a_create_under_throttling_for_ever_is_resent_only_as_often_as_allowed(
    emulator: Emulator, env: dict[str, str]
) -> None:
    client = Client(emulator, **FAST)
    emulator.key_vault(VAULT).misbehave(status=429, headers={"Retry-After": "0"}, method="POST")
    with pytest.raises(Throttled, match="gave up after 5 requests"):  # the challenge was met by the first GET
        client.kv.create_version("throttled-create", POLICY)
    assert emulator.log.count(service="keyvault", method="POST") == 5  # 429: not processed, so resent
    assert emulator.key_vault(VAULT).certificate("throttled-create") is None


def test_a_create_answered_502_for_ever_is_never_blindly_resent(emulator: Emulator, env: dict[str, str]) -> None:
    client = Client(emulator, **FAST)
    emulator.key_vault(VAULT).misbehave(status=502, body="<html>Bad Gateway</html>", method="POST")
    with pytest.raises(ServerError, match="answered 502: Bad Gateway"):
        client.kv.create_version("gateway-create", POLICY)
    # the 502 may hide a create that happened: look (nothing pending, no new version), then one more POST
    assert emulator.log.count(service="keyvault", method="POST") == 2


# -- paging, polling -----------------------------------------------------------------------------------------------


def test_a_next_link_that_keeps_pointing_onward_stops_at_the_page_limit(
    emulator: Emulator, env: dict[str, str]
) -> None:
    client = Client(emulator, max_pages=6)
    emulator.key_vault(VAULT).misbehave("endless_next_link", path_contains="/versions")
    with pytest.raises(EndlessPaging, match="more than 6 pages of versions; refused") as info:
        client.kv.list_versions("endless")
    assert "\n" not in str(info.value)
    assert _vault_requests(emulator, "/versions") == 1 + 6  # the challenge, then six pages


def test_a_next_link_that_repeats_is_refused(emulator: Emulator, env: dict[str, str]) -> None:
    client = Client(emulator)
    emulator.key_vault(VAULT).misbehave("endless_next_link", repeat=True, path_contains="/versions")
    with pytest.raises(EndlessPaging, match="the nextLink repeats an earlier page"):
        client.kv.list_versions("looping")
    assert _vault_requests(emulator, "/versions") == 1 + 2


def test_the_pending_poll_under_retry_after_zero_ends(emulator: Emulator, env: dict[str, str]) -> None:
    state = emulator.key_vault(VAULT)
    state.polls_before_completion, state.retry_after_seconds = 10**6, 0
    client = Client(emulator, max_polls=5, min_poll_interval=0.05)
    try:
        with pytest.raises(OperationTimedOut, match=r"still being created after 0s of waiting \(5 polls\)"):
            client.kv.create_version("never-done", POLICY)
    finally:
        state.polls_before_completion, state.retry_after_seconds = 0, 1
    assert _vault_requests(emulator, "/pending") == 1 + 1 + 5  # challenge, one before creating, five polls
    assert client.sleeps == [0.05] * 4


# -- deadlines, size, redirects, malformed answers ---------------------------------------------------------------


class TricklingServer(LoopbackTLSServer):
    """A TLS server on loopback that answers one header byte every ``interval`` seconds, for ever."""

    def __init__(self, directory: Path, interval: float = 0.2) -> None:
        ca = CertificateAuthority.generate()
        issued = ca.issue_server_certificate()
        (directory / "ca.pem").write_bytes(ca.pem())
        (directory / "server.pem").write_bytes(issued.cert_pem)
        (directory / "server-key.pem").write_bytes(issued.key_pem)
        self.ca_bundle = str(directory / "ca.pem")
        self.interval = interval
        super().__init__(str(directory / "server.pem"), str(directory / "server-key.pem"))

    def handle(self, conn: ssl.SSLSocket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not self.stop.wait(self.interval):
            conn.sendall(b"a")  # every recv gets a byte in time: a read timeout never fires


def test_a_server_trickling_its_headers_cannot_hold_a_call_beyond_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = TricklingServer(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
    monkeypatch.setenv("ADP_IDENTITY_LOOPBACK_VAULTS", server.origin)
    fresh_process_state()

    class Token:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken("not-a-real-token", int(time.time()) + 3600)

    limits = Limits(call_timeout=3.0, exchange_timeout=1.0, backoff_factor=0.05)
    client = KeyVaultCertificatesClient(server.origin, Token(), limits=limits)
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionFailed) as info:
            client.get_certificate("slow")
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert "\n" not in str(info.value)
    assert elapsed < 3.0 + 1.0, elapsed  # the call deadline, plus at most one exchange share of slack
    assert 1 <= server.connections <= 4  # each exchange was cut at its deadline, then resent while time was left


def test_a_gzip_bomb_is_refused_without_inflating_it(emulator: Emulator, env: dict[str, str]) -> None:
    client = Client(emulator)
    emulator.key_vault(VAULT).misbehave("gzip_bomb", inflated_size=1 << 30, path_contains="/certificates/bomb")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ResponseTooLarge, match="inflates to more than the 4194304 bytes allowed") as info:
        client.kv.get_certificate("bomb")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "\n" not in str(info.value)
    assert grown_mib < 128, grown_mib  # inflating 1 GiB would have grown the process by 1 GiB
    assert _vault_requests(emulator, "/certificates/bomb") == 1 + 1  # challenge, then one: never resent


def test_a_body_larger_than_the_cap_is_refused(emulator: Emulator, env: dict[str, str]) -> None:
    client = Client(emulator)
    emulator.key_vault(VAULT).misbehave(status=200, body=b"{" + b" " * (5 << 20) + b"}")
    with pytest.raises(ResponseTooLarge, match=r"declares \d+ bytes, more than the 4194304 bytes allowed"):
        client.kv.get_certificate("large")


def test_a_redirect_on_create_is_never_followed(
    emulator: Emulator, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    client = Client(emulator)
    elsewhere = f"{emulator.authority_host}/collect/certificates/redirected/create"
    emulator.key_vault(VAULT).misbehave(status=307, headers={"Location": elsewhere}, method="POST")
    with pytest.raises(
        Redirected, match=r"redirect to https://127\.0\.0\.1:\d+/collect/\S+ refused: redirects are never followed"
    ) as info:
        client.kv.create_version("redirected", POLICY)
    assert info.value.status == 307 and "\n" not in str(info.value)
    assert not [e for e in emulator.log.entries if "/collect/" in e.path]  # the POST went nowhere else
    assert emulator.log.count(service="keyvault", method="POST") == 1
    # the SDK logs a traceback when an error answer has no JSON body; the client quiets it (one line is enough)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.parametrize("body", ["not json", "[]", "{}", '{"id": 5}'])
def test_a_malformed_200_over_https_is_typed(emulator: Emulator, env: dict[str, str], body: str) -> None:
    client = Client(emulator)
    emulator.key_vault(VAULT).misbehave(status=200, headers={"Content-Type": "application/json"}, body=body)
    with pytest.raises(MalformedResponse):
        client.kv.get_certificate("malformed")


def test_a_non_vault_host_never_receives_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = TricklingServer(tmp_path)  # any listener: it must see no connection at all
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
    monkeypatch.delenv("ADP_IDENTITY_LOOPBACK_VAULTS", raising=False)
    asked: list[str] = []

    class Token:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            asked.extend(scopes)
            raise AssertionError("no token should be asked for")

    try:
        for url in (server.origin, server.origin.replace("127.0.0.1", "localhost")):
            with pytest.raises(UntrustedOrigin, match="the vault token is sent to Key Vault only"):
                KeyVaultCertificatesClient(url, Token()).get_certificate("x")
        time.sleep(0.3)
    finally:
        server.close()
    assert server.connections == 0 and asked == []


# -- tenant isolation (contract tenant_id), against the default seed's two tenants ---------------------------------


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(load_seed(DEFAULT_SEED), state_dir=tmp_path_factory.mktemp("kv-tenants")) as emu:
        yield emu


def test_a_defradev_credential_is_refused_at_the_defra_vault_before_any_request(
    two_tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = two_tenants.credential_env("DefraDev")
    for name in ("REQUESTS_CA_BUNDLE", "ADP_IDENTITY_LOOPBACK_VAULTS"):
        monkeypatch.setenv(name, env[name])
    fresh_process_state()
    two_tenants.log.clear()
    defra = two_tenants.tenant("Defra").id
    dev = two_tenants.tenant("DefraDev").id
    wrong = KeyVaultCertificatesClient(two_tenants.key_vault_url("prdadpinfkv1401"), _credential(two_tenants))
    with pytest.raises(TenantMismatch) as info:
        wrong.check_tenant(defra)
    assert str(info.value).startswith(f"Key Vault {wrong.vault} belongs to tenant {defra}, but the credential")
    assert f"signs in to tenant {dev}" in str(info.value)
    assert two_tenants.log.count(service="keyvault") == 0

    own = KeyVaultCertificatesClient(two_tenants.key_vault_url("sndadpinfkv1401"), _credential(two_tenants))
    own.check_tenant(dev)
    assert own.create_version("tenant-cert", POLICY).issued
    assert two_tenants.log.count(service="keyvault", env="prdadpinfkv1401") == 0
    fresh_process_state()
