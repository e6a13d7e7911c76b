"""The emulated Entra ID over real HTTPS: discovery, keys, every credential kind azure-identity uses, the
refusals Entra gives (shape and AADSTS code), and the token verifier resource services rely on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    WorkloadIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from adp_identity_emulator.entra import FEDERATION_AUDIENCE
from adp_identity_emulator.http import InvalidToken
from adp_identity_emulator.pki import b64url

pytestmark = pytest.mark.emulator

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator for this module: these tests only read Entra (each asserts on its own log slice)."""
    with Emulator(load_seed(DEFAULT_SEED), state_dir=tmp_path_factory.mktemp("entra")) as running:
        yield running


def _get(emu: Emulator, path: str) -> requests.Response:
    return requests.get(f"{emu.authority_host}{path}", verify=emu.ca_bundle, timeout=10)


def _token(emu: Emulator, tenant_ref: str, form: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{emu.authority_host}/{tenant_ref}/oauth2/v2.0/token", data=form, verify=emu.ca_bundle, timeout=10
    )


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _check_access_token(emu: Emulator, token: str, tenant: str, app: str, env: str) -> dict[str, Any]:
    tenant_seed = emu.tenant(tenant)
    application = next(a for a in tenant_seed.applications if a.name == app)
    claims = _claims(token)
    assert claims["aud"] == emu.environment_url(env)
    assert not claims["aud"].endswith("/")
    assert claims["iss"] == f"{emu.authority_host}/{tenant_seed.id}/v2.0"
    assert claims["tid"] == tenant_seed.id
    assert claims["appid"] == application.client_id
    assert claims["oid"] == application.object_id
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert emu.entra.verify(token, emu.environment_url(env)) == claims
    return claims


# -- discovery and keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["id", "domain"])
def test_discovery_by_tenant_id_or_domain(emu: Emulator, ref: str) -> None:
    tenant = emu.tenant("DefraDev")
    reply = _get(emu, f"/{tenant.id if ref == 'id' else tenant.domain}/v2.0/.well-known/openid-configuration")
    assert reply.status_code == 200
    doc = reply.json()
    base = f"{emu.authority_host}/{tenant.id}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]


def test_discovery_of_an_unknown_tenant_is_refused_as_entra_does(emu: Emulator) -> None:
    reply = _get(emu, "/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_description"].startswith("AADSTS90002: Tenant 'contoso.onmicrosoft.com' not found.")


def test_jwks_verifies_the_access_tokens(emu: Emulator) -> None:
    tenant = emu.tenant("Defra")
    identity = emu.identity("Defra", "adp-platform-admin", "secret")
    url = emu.environment_url("defra-prd")
    reply = _token(
        emu,
        tenant.id,
        {
            "grant_type": "client_credentials",
            "client_id": identity["client_id"],
            "client_secret": identity["secret"],
            "scope": f"{url}/.default",
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    keys = _get(emu, f"/{tenant.domain}/discovery/v2.0/keys").json()["keys"]
    assert keys and all({"kid", "x5t", "n", "e", "kty"} <= set(k) for k in keys)
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=url,
        issuer=f"{emu.authority_host}/{tenant.id}/v2.0",
    )
    assert claims["appid"] == identity["client_id"]


def test_hosted_issuer_serves_discovery_and_jwks_for_the_federated_tokens(emu: Emulator) -> None:
    issuer_url = f"{emu.authority_host}/issuers/github-actions"
    doc = _get(emu, "/issuers/github-actions/.well-known/openid-configuration").json()
    assert doc["issuer"] == issuer_url
    assert doc["jwks_uri"] == f"{issuer_url}/jwks"
    keys = requests.get(doc["jwks_uri"], verify=emu.ca_bundle, timeout=10).json()["keys"]
    identity = emu.identity("DefraDev")
    token = Path(identity["federated_token_file"]).read_text()
    jwk = next(k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=FEDERATION_AUDIENCE)
    assert claims["iss"] == issuer_url
    assert claims["sub"] == "repo:DEFRA/adp-identity:environment:defradev"
    assert claims["exp"] - time.time() > 23 * 3600
    assert emu.log.count(service="issuer", path_contains="/jwks") >= 1


# -- azure-identity credentials -------------------------------------------------------------------------------------


def test_client_secret_credential(emu: Emulator) -> None:
    identity = emu.identity("DefraDev", kind="secret")
    credential = ClientSecretCredential(
        emu.tenant("DefraDev").id,
        identity["client_id"],
        identity["secret"],
        authority=emu.authority_host,
        disable_instance_discovery=True,
        connection_verify=emu.ca_bundle,
    )
    token = credential.get_token(f"{emu.environment_url('defradev-tst')}/.default").token
    claims = _check_access_token(emu, token, "DefraDev", "adp-identity-pipeline", "defradev-tst")
    assert claims["appidacr"] == "1"


def test_certificate_credential(emu: Emulator) -> None:
    identity = emu.identity("Defra", kind="certificate")
    credential = CertificateCredential(
        emu.tenant("Defra").domain,
        identity["client_id"],
        identity["certificate_path"],
        authority=emu.authority_host,
        disable_instance_discovery=True,
        connection_verify=emu.ca_bundle,
    )
    token = credential.get_token(f"{emu.environment_url('defra-pre')}/.default").token
    claims = _check_access_token(emu, token, "Defra", "adp-identity-pipeline", "defra-pre")
    assert claims["appidacr"] == "2"


def test_msal_certificate_with_public_certificate_signs_ps256(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """MSAL 1.39 given the public certificate signs PS256 with x5t#S256 (azure-identity passes a SHA-1
    thumbprint and gets RS256 + x5t): both must be accepted."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)  # requests lets this override verify=
    identity = emu.identity("DefraDev", kind="certificate")
    pem = Path(identity["certificate_path"]).read_bytes()
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
    app = msal.ConfidentialClientApplication(
        identity["client_id"],
        client_credential={
            "private_key": pem.decode(),
            "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        },
        authority=f"{emu.authority_host}/{emu.tenant('DefraDev').id}",
        instance_discovery=False,
        verify=emu.ca_bundle,
    )
    result = app.acquire_token_for_client([f"{emu.environment_url('defradev-dev')}/.default"])
    assert "access_token" in result, result
    _check_access_token(emu, result["access_token"], "DefraDev", "adp-identity-pipeline", "defradev-dev")


def test_workload_identity_credential(emu: Emulator) -> None:
    identity = emu.identity("DefraDev", "sndadpinfmi1401-ffc-pay-batch")
    credential = WorkloadIdentityCredential(
        tenant_id=emu.tenant("DefraDev").id,
        client_id=identity["client_id"],
        token_file_path=identity["federated_token_file"],
        authority=emu.authority_host,
        connection_verify=emu.ca_bundle,
    )
    token = credential.get_token(f"{emu.environment_url('defradev-dev')}/.default").token
    _check_access_token(emu, token, "DefraDev", "sndadpinfmi1401-ffc-pay-batch", "defradev-dev")


def test_default_azure_credential_from_credential_env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "AZURE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    env = emu.credential_env("Defra")
    assert env["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    token = DefaultAzureCredential().get_token(f"{emu.environment_url('defra-prd')}/.default").token
    _check_access_token(emu, token, "Defra", "adp-identity-pipeline", "defra-prd")


def test_a_token_for_another_tenants_resource_is_refused(emu: Emulator) -> None:
    identity = emu.identity("Defra", kind="secret")
    credential = ClientSecretCredential(
        emu.tenant("Defra").id,
        identity["client_id"],
        identity["secret"],
        authority=emu.authority_host,
        disable_instance_discovery=True,
        connection_verify=emu.ca_bundle,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        credential.get_token(f"{emu.environment_url('defradev-dev')}/.default")


def test_key_vault_is_a_known_resource_of_every_tenant(emu: Emulator) -> None:
    identity = emu.identity("DefraDev", "adp-platform-admin", "secret")
    form = {
        "grant_type": "client_credentials",
        "client_id": identity["client_id"],
        "client_secret": identity["secret"],
        "scope": "https://vault.azure.net/.default",
    }
    reply = _token(emu, emu.tenant("DefraDev").id, form)
    assert reply.status_code == 200
    assert _claims(reply.json()["access_token"])["aud"] == "https://vault.azure.net"


# -- refusals -------------------------------------------------------------------------------------------------------


def _pem_parts(identity: dict[str, str]) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    pem = Path(identity["certificate_path"]).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])


def _client_assertion(
    emu: Emulator,
    *,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    client_id: str,
    algorithm: str = "RS256",
    lifetime: int = 600,
    audience: str | None = None,
) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)
    headers = (
        {"x5t": b64url(cert.fingerprint(hashes.SHA1()))}
        if algorithm == "RS256"
        else {"x5t#S256": b64url(cert.fingerprint(hashes.SHA256()))}
    )
    assert der  # the thumbprints above are of this DER encoding
    now = int(time.time())
    claims = {
        "aud": audience or f"{emu.authority_host}/{emu.tenant('DefraDev').id}/oauth2/v2.0/token",
        "iss": client_id,
        "sub": client_id,
        "iat": now - 30,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _assertion_form(emu: Emulator, client_id: str, assertion: str, env: str = "defradev-dev") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": f"{emu.environment_url(env)}/.default",
    }


@pytest.mark.parametrize("algorithm", ["RS256", "PS256"])
def test_certificate_assertions_in_both_signing_styles_are_accepted(emu: Emulator, algorithm: str) -> None:
    identity = emu.identity("DefraDev", kind="certificate")
    key, cert = _pem_parts(identity)
    assertion = _client_assertion(emu, key=key, cert=cert, client_id=identity["client_id"], algorithm=algorithm)
    reply = _token(emu, emu.tenant("DefraDev").id, _assertion_form(emu, identity["client_id"], assertion))
    assert reply.status_code == 200, reply.text


def _refusal(emu: Emulator, case: str) -> tuple[requests.Response, str]:
    """Make the request for one refusal case; returns the reply and a secret that must not be echoed."""
    dev = emu.tenant("DefraDev")
    secret_identity = emu.identity("DefraDev", kind="secret")
    cert_identity = emu.identity("DefraDev", kind="certificate")
    client_id, secret = secret_identity["client_id"], secret_identity["secret"]
    scope = f"{emu.environment_url('defradev-dev')}/.default"
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope}
    issuer = emu.entra.issuer("github-actions")
    federated = emu.identity("DefraDev")
    subject = "repo:DEFRA/adp-identity:environment:defradev"
    if case == "unknown tenant":
        return _token(emu, "contoso.onmicrosoft.com", form), secret
    if case == "unknown client":
        return _token(emu, dev.id, {**form, "client_id": str(uuid.uuid4())}), secret
    if case == "no service principal":
        no_sp = next(a for a in dev.applications if not a.service_principal)
        return _token(emu, dev.id, {**form, "client_id": no_sp.client_id}), secret
    if case == "wrong secret":
        return _token(emu, dev.id, {**form, "client_secret": "not-the-secret"}), secret
    if case == "no credential":
        return _token(emu, dev.id, {k: v for k, v in form.items() if k != "client_secret"}), secret
    if case == "unknown grant":
        return _token(emu, dev.id, {**form, "grant_type": "password"}), secret
    if case == "missing grant":
        return _token(emu, dev.id, {k: v for k, v in form.items() if k != "grant_type"}), secret
    if case == "unknown resource":
        return _token(emu, dev.id, {**form, "scope": "https://contoso.crm11.dynamics.com/.default"}), secret
    if case == "scope without .default":
        return _token(emu, dev.id, {**form, "scope": emu.environment_url("defradev-dev")}), secret
    if case == "two scopes":
        return _token(emu, dev.id, {**form, "scope": f"{scope} https://vault.azure.net/.default"}), secret
    if case == "GET on token endpoint":
        reply = requests.get(f"{emu.authority_host}/{dev.id}/oauth2/v2.0/token", verify=emu.ca_bundle, timeout=10)
        return reply, secret
    key, cert = _pem_parts(cert_identity)
    cid = cert_identity["client_id"]
    if case == "unknown certificate":
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_cert = (
            x509.CertificateBuilder()
            .subject_name(cert.subject)
            .issuer_name(cert.subject)
            .public_key(stranger.public_key())
            .serial_number(1)
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
            .sign(stranger, hashes.SHA256())
        )
        assertion = _client_assertion(emu, key=stranger, cert=other_cert, client_id=cid)
        return _token(emu, dev.id, _assertion_form(emu, cid, assertion)), secret
    if case == "bad assertion signature":
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assertion = _client_assertion(emu, key=stranger, cert=cert, client_id=cid)  # registered x5t, wrong key
        return _token(emu, dev.id, _assertion_form(emu, cid, assertion)), secret
    if case == "expired assertion":
        assertion = _client_assertion(emu, key=key, cert=cert, client_id=cid, lifetime=-60)
        return _token(emu, dev.id, _assertion_form(emu, cid, assertion)), secret
    if case == "assertion for another audience":
        assertion = _client_assertion(emu, key=key, cert=cert, client_id=cid, audience="https://example.com/token")
        return _token(emu, dev.id, _assertion_form(emu, cid, assertion)), secret
    if case == "federated subject mismatch":
        assertion = issuer.mint("repo:DEFRA/someone-else:environment:defradev")
        return _token(emu, dev.id, _assertion_form(emu, federated["client_id"], assertion)), secret
    if case == "federated audience mismatch":
        assertion = issuer.mint(subject, audience="api://SomethingElse")
        return _token(emu, dev.id, _assertion_form(emu, federated["client_id"], assertion)), secret
    if case == "expired federated token":
        assertion = issuer.mint(subject, issued_at=int(time.time()) - 25 * 3600)
        return _token(emu, dev.id, _assertion_form(emu, federated["client_id"], assertion)), secret
    if case == "forged federated token":
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        real = issuer.mint(subject)
        forged = jwt.encode(_claims(real), stranger, algorithm="RS256", headers=jwt.get_unverified_header(real))
        return _token(emu, dev.id, _assertion_form(emu, federated["client_id"], forged)), secret
    raise AssertionError(case)


REFUSALS = [
    ("unknown tenant", 400, "invalid_request", 90002),
    ("unknown client", 400, "unauthorized_client", 700016),
    ("no service principal", 400, "unauthorized_client", 700016),
    ("wrong secret", 401, "invalid_client", 7000215),
    ("no credential", 401, "invalid_client", 7000218),
    ("unknown grant", 400, "unsupported_grant_type", 70003),
    ("missing grant", 400, "invalid_request", 900144),
    ("unknown resource", 400, "invalid_resource", 500011),
    ("scope without .default", 400, "invalid_scope", 1002012),
    ("two scopes", 400, "invalid_scope", 70011),
    ("GET on token endpoint", 400, "invalid_request", 900561),
    ("unknown certificate", 401, "invalid_client", 700027),
    ("bad assertion signature", 401, "invalid_client", 700027),
    ("expired assertion", 401, "invalid_client", 700024),
    ("assertion for another audience", 401, "invalid_client", 50012),
    ("federated subject mismatch", 401, "invalid_client", 70021),
    ("federated audience mismatch", 401, "invalid_client", 70021),
    ("expired federated token", 401, "invalid_client", 700024),
    ("forged federated token", 401, "invalid_client", 700027),
]


@pytest.mark.parametrize(("case", "status", "error", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_shaped_as_entra_answers(emu: Emulator, case: str, status: int, error: str, code: int) -> None:
    reply, secret = _refusal(emu, case)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]
    assert body["trace_id"] in body["error_description"]
    assert secret not in reply.text
    assert "access_token" not in body


def test_the_refusal_names_what_was_wrong(emu: Emulator) -> None:
    reply, _ = _refusal(emu, "federated subject mismatch")
    description = reply.json()["error_description"]
    assert f"Assertion Issuer: '{emu.authority_host}/issuers/github-actions'" in description
    assert "Assertion Subject: 'repo:DEFRA/someone-else:environment:defradev'" in description
    reply, _ = _refusal(emu, "unknown certificate")
    assert "The key was not found" in reply.json()["error_description"]


# -- the verifier and the directory resource services use -----------------------------------------------------------


def test_verifier_refuses_bad_tokens(emu: Emulator) -> None:
    dev, prod = emu.tenant("DefraDev"), emu.tenant("Defra")
    url = emu.environment_url("defradev-dev")
    pipeline = dev.applications[0]
    good = emu.entra.issue_access_token(dev.id, pipeline.client_id, url)
    assert emu.entra.verify(good, url)["appid"] == pipeline.client_id

    expired = emu.entra.issue_access_token(dev.id, pipeline.client_id, url, issued_at=int(time.time()) - 7200)
    with pytest.raises(InvalidToken, match="expired"):
        emu.entra.verify(expired, url)
    with pytest.raises(InvalidToken, match="audience"):
        emu.entra.verify(good, emu.environment_url("defradev-tst"))
    head, payload, signature = good.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(InvalidToken, match="signature"):
        emu.entra.verify(tampered, url)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(good), stranger, algorithm="RS256", headers={"kid": "someone-else"})
    with pytest.raises(InvalidToken, match="known Entra ID key"):
        emu.entra.verify(forged, url)
    with pytest.raises(InvalidToken, match="not a JWT"):
        emu.entra.verify("not-a-token", url)
    foreign = emu.entra.issue_access_token(prod.id, prod.applications[0].client_id, url)
    with pytest.raises(InvalidToken) as caught:
        emu.entra.verify(foreign, url)
    assert caught.value.wrong_tenant


def test_directory_knows_service_principals_only(emu: Emulator) -> None:
    dev = emu.tenant("DefraDev")
    batch = next(a for a in dev.applications if a.name.endswith("ffc-pay-batch"))
    principal = emu.entra.service_principal(dev.id, batch.client_id.upper())
    assert principal is not None
    assert (principal.object_id, principal.display_name, principal.tenant_id) == (batch.object_id, batch.name, dev.id)
    no_sp = next(a for a in dev.applications if not a.service_principal)
    assert emu.entra.service_principal(dev.id, no_sp.client_id) is None
    assert emu.entra.service_principal(emu.tenant("Defra").id, batch.client_id) is None
    assert emu.entra.service_principal(str(uuid.uuid4()), batch.client_id) is None
