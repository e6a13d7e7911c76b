"""The emulator as a whole over real HTTPS: the info document, identities and credential files, ports and
shutdown, every fault kind as a plain requests client meets it, and the request log."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adp_identity_emulator import Emulator, KeyMaterial, UnsafeStateDir
from adp_identity_emulator.faults import THROTTLE_CODE
from tests.emulator.sessions import dataverse_session, secret_credential

pytestmark = pytest.mark.emulator

API = "/api/data/v9.2/"
PAY_WEB = "sndadpinfmi1401-ffc-pay-web"  # disabled, hand-made application user in defradev-dev


def _session(emu: Emulator, application: str = "adp-platform-admin", tenant: str = "DefraDev") -> requests.Session:
    return dataverse_session(emu, application, tenant, None if tenant == "DefraDev" else "defra-pre")


def _users_url(emu: Emulator) -> str:
    return f"{emu.environment_url('defradev-dev')}{API}systemusers"


def _user_url(emu: Emulator, application: str) -> str:
    client_id = emu.identity("DefraDev", application)["client_id"]
    user = emu.dataverse("defradev-dev").user_by_application_id(client_id)
    return f"{emu.environment_url('defradev-dev')}{API}systemusers({user.id})"


def _is_disabled(emu: Emulator, application: str) -> bool:
    client_id = emu.identity("DefraDev", application)["client_id"]
    disabled: bool = emu.dataverse("defradev-dev").user_by_application_id(client_id).disabled
    return disabled


# -- the info document and credential files -------------------------------------------------------------------------


def test_info_document_lists_tenants_environments_and_identities(emulator: Emulator) -> None:
    info = emulator.info
    assert info["authority_host"].startswith("https://127.0.0.1:")
    assert Path(info["ca_bundle"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert [(t["name"], t["id"]) for t in info["tenants"]] == [(t.name, t.id) for t in emulator.seed.tenants]
    assert [(e["name"], e["tenant"]) for e in info["environments"]] == [
        ("defradev-dev", "DefraDev"),
        ("defradev-tst", "DefraDev"),
        ("defra-pre", "Defra"),
        ("defra-prd", "Defra"),
    ]
    assert [(k["name"], k["tenant"]) for k in info["key_vaults"]] == [
        ("sndadpinfkv1401", "DefraDev"),
        ("prdadpinfkv1401", "Defra"),
    ]
    urls = [e["url"] for e in info["environments"] + info["key_vaults"]]
    assert len({*urls, info["authority_host"]}) == 7
    assert all(url.startswith("https://127.0.0.1:") and not url.endswith("/") for url in urls)
    credential_keys = {"federated": "federated_token_file", "secret": "secret", "certificate": "certificate_path"}
    for tenant in ("DefraDev", "Defra"):
        mine = [i for i in info["identities"] if i["tenant"] == tenant]
        apps = [a for a in emulator.tenant(tenant).applications if a.credentials]
        assert [i["name"] for i in mine] == [a.name for a in apps]  # each application once, in seed order
        assert mine[0]["name"] == "adp-identity-pipeline"
        assert [k for k in mine[0] if k in credential_keys.values()] == [
            "federated_token_file",
            "secret",
            "certificate_path",
        ]
        assert emulator.identity(tenant) == mine[0]
        assert emulator.identity(tenant, kind="secret") == emulator.identity(tenant, kind="certificate") == mine[0]
        for identity, app in zip(mine, apps, strict=True):
            assert identity["client_id"] == app.client_id
            assert {k for k in identity if k in credential_keys.values()} == {
                credential_keys[c] for c in app.credentials
            }
    assert {i["name"] for i in info["identities"]}.isdisjoint({"ADP-FFC-PayReports-snd1", "ADP-FFC-PayReports-prd1"})


def test_credential_files_are_usable_and_private(emulator: Emulator) -> None:
    cert_identity = emulator.identity("DefraDev", kind="certificate")
    pem = Path(cert_identity["certificate_path"]).read_bytes()
    assert serialization.load_pem_private_key(pem, password=None).key_size == 2048  # type: ignore[union-attr]
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
    assert "adp-identity-pipeline" in cert.subject.rfc4514_string()
    token_file = Path(emulator.identity("DefraDev")["federated_token_file"])
    for path in (Path(cert_identity["certificate_path"]), token_file):
        assert path.stat().st_mode & 0o077 == 0
        assert path.is_relative_to(emulator.state_dir)  # type: ignore[arg-type]


def test_credential_env_is_workload_identity_with_the_emulator_ca(emulator: Emulator) -> None:
    env = emulator.credential_env("DefraDev")
    identity = emulator.identity("DefraDev")
    assert env == {
        "AZURE_AUTHORITY_HOST": emulator.authority_host,
        "AZURE_TENANT_ID": emulator.tenant("DefraDev").id,
        "AZURE_CLIENT_ID": identity["client_id"],
        "AZURE_FEDERATED_TOKEN_FILE": identity["federated_token_file"],
        "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential",
        "REQUESTS_CA_BUNDLE": emulator.ca_bundle,
        "SSL_CERT_FILE": emulator.ca_bundle,
        # the emulator's loopback vaults, the only non-Azure origins the Key Vault client sends its token to
        "ADP_IDENTITY_LOOPBACK_VAULTS": " ".join(v["url"] for v in emulator.info["key_vaults"]),
    }
    with pytest.raises(KeyError, match="no identity"):
        emulator.credential_env("DefraDev", "adp-platform-admin")  # a secret only: no workload identity


def test_federated_tokens_are_reminted(emulator: Emulator) -> None:
    path = Path(emulator.identity("DefraDev")["federated_token_file"])
    before = jwt.decode(path.read_text(), options={"verify_signature": False})
    emulator.remint_federated_tokens()
    after = jwt.decode(path.read_text(), options={"verify_signature": False})
    assert after["jti"] != before["jti"]
    assert (after["sub"], after["iss"], after["aud"]) == (before["sub"], before["iss"], before["aud"])
    assert after["exp"] >= before["exp"]


def _public_keys(emu: Emulator) -> tuple[bytes, str, str, str]:
    """(CA certificate, Entra's token-signing modulus, the federated issuer's modulus, a client certificate)."""

    def modulus(url: str) -> str:
        keys: list[dict[str, str]] = requests.get(url, verify=emu.ca_bundle, timeout=10).json()["keys"]
        return keys[0]["n"]

    tenant = emu.tenant("DefraDev").id
    return (
        Path(emu.ca_bundle).read_bytes(),
        modulus(f"{emu.authority_host}/{tenant}/discovery/v2.0/keys"),
        modulus(f"{emu.authority_host}/issuers/github-actions/jwks"),
        Path(emu.identity("DefraDev", kind="certificate")["certificate_path"]).read_text(),
    )


def test_a_test_session_shares_one_ca_and_its_keys_while_each_run_keeps_them_apart(
    make_emulator: Callable[..., Emulator], emulator_keys: KeyMaterial
) -> None:
    first, second = (_public_keys(make_emulator()) for _ in range(2))  # the session's KeyMaterial
    assert first[:3] == second[:3]  # one CA, the same RSA keys handed out again
    assert first[0] == emulator_keys.ca.pem()
    assert first[1] != first[2]  # within a run Entra's and the issuer's signing keys differ
    assert first[3] != second[3]  # client certificates are still issued per run
    own = _public_keys(make_emulator(keys=None))  # the default: every start makes its own
    assert own[0] != first[0] and own[1] != first[1]


def test_a_temporary_state_dir_is_removed_on_stop(emulator: Emulator) -> None:
    with Emulator(emulator.seed) as transient:
        state = transient.state_dir
        assert state is not None and (state / "ca.pem").exists()
    assert not state.exists()


def test_write_info_writes_the_json_file_privately(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "emulator.json"
    emulator.write_info(target)
    assert json.loads(target.read_text()) == emulator.info
    assert target.stat().st_mode & 0o077 == 0


# -- files other local users can neither read nor redirect (issue 10) ---------------------------------------------


def _plant_link(at: Path, victim: Path) -> None:
    """Another user's trap: a symbolic link where the emulator used to open its temporary file."""
    victim.write_bytes(b"precious")
    at.symlink_to(victim)


def test_the_json_file_is_written_through_an_unpredictable_name(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    planted, victim = folder / ".emulator.json.tmp", tmp_path / "victim"
    _plant_link(planted, victim)  # the predictable name the emulator used to open, following links
    target = folder / "emulator.json"
    emulator.write_info(target)
    assert victim.read_bytes() == b"precious"  # the link was not followed
    assert planted.is_symlink() and planted.readlink() == victim
    assert json.loads(target.read_text()) == emulator.info
    assert not target.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [".emulator.json.tmp", "emulator.json"]  # no leftovers


def test_a_link_planted_at_the_json_file_itself_is_replaced_not_followed(emulator: Emulator, tmp_path: Path) -> None:
    target, victim = tmp_path / "emulator.json", tmp_path / "victim"
    _plant_link(target, victim)
    emulator.write_info(target)
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and json.loads(target.read_text()) == emulator.info


def test_a_link_planted_in_the_state_dir_is_not_followed(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    planted, victim = state / ".server-key.pem.tmp", tmp_path / "victim"
    _plant_link(planted, victim)
    emu = make_emulator(state_dir=state)
    assert victim.read_bytes() == b"precious"  # the server's private key did not go there
    key = state / "server-key.pem"
    assert not key.is_symlink() and key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    discovery = f"{emu.authority_host}/defra.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    assert requests.get(discovery, verify=emu.ca_bundle, timeout=10).status_code == 200  # served with that key


def test_every_file_and_folder_of_the_state_dir_is_private(emulator: Emulator, tmp_path: Path) -> None:
    state = emulator.state_dir
    assert state is not None and stat.S_IMODE(state.stat().st_mode) == 0o700  # created so
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"ca.pem", "server.pem", "server-key.pem", "adp-identity-pipeline.pem"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o600)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in state.rglob("*") if p.is_dir()} == {oct(0o700)}
    emulator.remint_federated_tokens()
    assert stat.S_IMODE(Path(emulator.identity("DefraDev")["federated_token_file"]).stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_state_dir_others_can_reach_is_refused(emulator: Emulator, tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(UnsafeStateDir) as refused:
        Emulator(emulator.seed, state_dir=state).start()
    assert str(refused.value) == (
        f"state directory {state}: mode {mode:04o}, not 0700; allowed: a directory you own with mode 0700, "
        "or a path that does not exist yet (created so)"
    )
    assert list(state.iterdir()) == []


def test_a_state_dir_of_another_user_or_a_link_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(UnsafeStateDir, match=r": a symbolic link; allowed: "):
        Emulator(emulator.seed, state_dir=link).start()
    if os.geteuid() != 0:
        pytest.skip("only root can make a directory owned by another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, -1)
    with pytest.raises(UnsafeStateDir, match=r": owned by uid 65534, not by you \(uid 0\); allowed: "):
        Emulator(emulator.seed, state_dir=foreign).start()


# -- ports and shutdown ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_fixed_ports_are_honoured(make_emulator: Callable[..., Emulator]) -> None:
    entra_port, env_port = _free_port(), _free_port()
    emu = make_emulator(ports={"entra": entra_port, "defra-prd": env_port})
    assert emu.authority_host == f"https://127.0.0.1:{entra_port}"
    assert emu.environment_url("defra-prd") == f"https://127.0.0.1:{env_port}"
    reply = requests.get(
        f"{emu.authority_host}/defra.onmicrosoft.com/v2.0/.well-known/openid-configuration",
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert reply.status_code == 200


def test_unknown_port_names_are_refused(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="ports: unknown origin 'defradev-prd'; allowed: "):
        Emulator(emulator.seed, ports={"defradev-prd": 1})


def test_keep_alive_reuses_one_connection_and_stop_closes_it(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    session, url = _session(emu), _users_url(emu)
    for _ in range(3):
        assert session.get(url, timeout=10).status_code == 200
    pools = session.get_adapter(url).poolmanager.pools  # type: ignore[attr-defined]
    # RecentlyUsedContainer refuses plain iteration; keys() is its way
    assert sum(pools[key].num_connections for key in pools.keys()) == 1  # noqa: SIM118
    ca_bundle = emu.ca_bundle
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, verify=ca_bundle, timeout=10)


# -- faults ---------------------------------------------------------------------------------------------------------


def test_throttle_answers_429_with_retry_after_and_the_dataverse_code(emulator: Emulator) -> None:
    session = _session(emulator)
    emulator.faults.script("throttle", retry_after=7)
    first = session.get(_users_url(emulator), timeout=10)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert first.json()["error"]["code"] == THROTTLE_CODE
    assert session.get(_users_url(emulator), timeout=10).status_code == 200  # count=1: consumed
    assert emulator.log.count(service="dataverse", status=429) == 1


@pytest.mark.parametrize(("kind", "status"), [("unavailable", 503), ("bad_gateway", 502)])
def test_server_errors(emulator: Emulator, kind: Any, status: int) -> None:
    session = _session(emulator)
    emulator.faults.script(kind, count=2, method="GET", retry_after=3)
    replies = [session.get(_users_url(emulator), timeout=10) for _ in range(3)]
    assert [r.status_code for r in replies] == [status, status, 200]
    if kind == "unavailable":
        assert replies[0].headers["Retry-After"] == "3"
    else:
        assert "Retry-After" not in replies[0].headers
        assert replies[0].headers["Content-Type"] == "text/html"


def test_latency_delays_but_answers(emulator: Emulator) -> None:
    session = _session(emulator)
    emulator.faults.script("latency", latency_ms=20)
    assert session.get(_users_url(emulator), timeout=10).status_code == 200
    assert emulator.log.entries[-1].fault == "latency"


def test_drop_closes_the_connection_before_the_request_is_processed(emulator: Emulator) -> None:
    session = _session(emulator)
    assert _is_disabled(emulator, PAY_WEB)
    emulator.faults.script("drop", method="PATCH")
    with pytest.raises(requests.ConnectionError):
        session.patch(_user_url(emulator, PAY_WEB), json={"isdisabled": False}, timeout=10)
    assert _is_disabled(emulator, PAY_WEB)  # never processed
    assert emulator.log.entries[-1].fault == "drop"
    assert emulator.log.entries[-1].status == 0
    assert session.patch(_user_url(emulator, PAY_WEB), json={"isdisabled": False}, timeout=10).status_code == 204
    assert not _is_disabled(emulator, PAY_WEB)


def test_lost_response_commits_then_closes_without_answering(emulator: Emulator) -> None:
    session = _session(emulator)
    emulator.faults.script("lost_response", method="PATCH", path_contains="systemusers(")
    with pytest.raises(requests.ConnectionError):
        session.patch(_user_url(emulator, PAY_WEB), json={"isdisabled": False}, timeout=10)
    assert not _is_disabled(emulator, PAY_WEB)  # committed
    entry = emulator.log.entries[-1]
    assert (entry.method, entry.status, entry.fault) == ("PATCH", 204, "lost_response")


def test_faults_apply_only_to_matching_requests(emulator: Emulator) -> None:
    session = _session(emulator)
    emulator.faults.script("throttle", path_contains="/roles")
    assert session.get(_users_url(emulator), timeout=10).status_code == 200
    _session(emulator, "adp-platform-admin", "Defra")  # Entra is not "dataverse": unaffected
    assert emulator.faults.pending == 1
    roles = session.get(f"{emulator.environment_url('defradev-dev')}{API}roles?$select=name", timeout=10)
    assert roles.status_code == 429
    assert emulator.faults.pending == 0


def test_entra_faults_are_scripted_by_service(emulator: Emulator) -> None:
    emulator.faults.script("unavailable", service="entra", path_contains="/token")
    url = f"{emulator.authority_host}/{emulator.tenant('DefraDev').id}/oauth2/v2.0/token"
    assert requests.post(url, data={}, verify=emulator.ca_bundle, timeout=10).status_code == 503
    assert requests.post(url, data={}, verify=emulator.ca_bundle, timeout=10).status_code == 400


def test_rates_are_reproducible_from_their_seed(emulator: Emulator) -> None:
    session = _session(emulator)

    def run() -> list[int]:
        emulator.faults.set_rates(seed=42, throttle=0.3, unavailable=0.2)
        statuses = [session.get(_users_url(emulator), timeout=10).status_code for _ in range(20)]
        emulator.faults.clear()
        return statuses

    first, second = run(), run()
    assert first == second
    assert {429, 503, 200} == set(first)
    assert emulator.log.count(service="dataverse", status=429) == 2 * first.count(429)
    assert session.get(_users_url(emulator), timeout=10).status_code == 200  # cleared


def test_rates_are_validated(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="more than 1"):
        emulator.faults.set_rates(throttle=0.6, drop=0.6)
    with pytest.raises(ValueError, match="unknown fault kind 'slow'"):
        emulator.faults.script("slow")  # type: ignore[arg-type]


# -- the request log ------------------------------------------------------------------------------------------------


def test_the_log_records_each_request_with_its_caller(emulator: Emulator) -> None:
    session = _session(emulator, "adp-identity-pipeline")
    emulator.log.clear()
    for _ in range(2):
        session.get(_users_url(emulator), params={"$select": "fullname"}, timeout=10)
    requests.get(f"{emulator.environment_url('defradev-tst')}{API}roles", verify=emulator.ca_bundle, timeout=10)
    requests.get(f"{emulator.authority_host}/issuers/github-actions/jwks", verify=emulator.ca_bundle, timeout=10)
    log = emulator.log
    assert log.count() == 4
    assert log.count(service="dataverse", method="get", path_contains="systemusers", env="defradev-dev") == 2
    assert log.count(service="dataverse", env="defradev-tst", status=401) == 1
    assert log.count(service="issuer") == 1
    assert log.count(service="entra") == 0
    first = log.entries[0]
    assert first.caller == emulator.identity("DefraDev")["client_id"]
    assert first.query == "%24select=fullname"
    assert first.path == f"{API}systemusers"
    assert log.entries[2].caller is None
    assert [e.seq for e in log.entries] == sorted(e.seq for e in log.entries)


def test_the_log_never_holds_secrets(emulator: Emulator) -> None:
    identity = emulator.identity("DefraDev", kind="secret")
    session = _session(emulator, "adp-identity-pipeline")
    session.get(_users_url(emulator), timeout=10)
    token = str(session.headers["Authorization"]).split()[1]
    text = repr(emulator.log.entries)
    assert identity["secret"] not in text
    assert token not in text


# -- Dataverse behind the server ------------------------------------------------------------------------------------


def test_smoke_dataverse_answers_a_token_from_the_emulated_entra(emulator: Emulator) -> None:
    session = _session(emulator, "adp-identity-pipeline")
    reply = session.get(_users_url(emulator), timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    names = {row["fullname"] for row in reply.json()["value"]}
    assert {"adp-identity-pipeline", "adp-platform-admin", PAY_WEB} <= names


def test_smoke_key_vault_answers_a_token_from_the_emulated_entra(emulator: Emulator) -> None:
    identity = emulator.identity("DefraDev", kind="secret")
    credential = secret_credential(emulator, "DefraDev", None)
    token = credential.get_token("https://vault.azure.net/.default").token
    url = f"{emulator.key_vault_url('sndadpinfkv1401')}/certificates/ffc-pay-batch-app-cert?api-version=7.4"
    reply = requests.get(url, headers={"Authorization": f"Bearer {token}"}, verify=emulator.ca_bundle, timeout=10)
    assert reply.status_code == 404  # authenticated and authorized: the certificate just does not exist yet
    assert reply.json()["error"]["code"] == "CertificateNotFound"
    assert emulator.log.count(service="keyvault", env="sndadpinfkv1401", caller=identity["client_id"]) == 1
    other = emulator.key_vault_url("prdadpinfkv1401")
    refused = requests.get(
        f"{other}/certificates/x?api-version=7.4",
        headers={"Authorization": f"Bearer {token}"},
        verify=emulator.ca_bundle,
        timeout=10,
    )
    assert refused.status_code == 401  # a DefraDev token at the Defra tenant's vault


def test_tests_cannot_leave_the_loopback_interface() -> None:
    with pytest.raises(requests.ConnectionError, match="only loopback is allowed"):
        requests.get("https://login.microsoftonline.com/common/discovery/instance", timeout=5)
    with pytest.raises(OSError, match="only loopback is allowed"):
        socket.create_connection(("169.254.169.254", 80), timeout=1)
