"""The emulated Key Vault certificates API, driven in-process (EmuRequest -> handle -> EmuResponse).

Tokens are real JWTs signed with a per-test key and checked by a small verifier written here, so the service's own
authentication and RBAC paths run exactly as behind the TLS server.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from azure.keyvault.certificates._shared.http_challenge import HttpChallenge
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from adp_identity_emulator.http import Claims, EmuRequest, EmuResponse, Headers, InvalidToken, ServicePrincipal
from adp_identity_emulator.keyvault import AUDIENCE, KeyVaultService, KeyVaultState, add_months, gzip_of_zeros
from adp_identity_emulator.seed_model import ApplicationSeed, KeyVaultSeed, TenantSeed

ORIGIN = "https://127.0.0.1:50443"
TENANT = "6f504113-6b64-43f2-ade9-242e05780007"
OTHER_TENANT = "770a2450-0227-4c62-90c7-4e38537f1102"
SIGNING_KEY = "emulator-test-signing-key-0123456789abcdef"  # HS256 test key, not a credential

OFFICER = "11111111-1111-1111-1111-111111111111"
ADMIN = "22222222-2222-2222-2222-222222222222"
SECRETS_USER = "33333333-3333-3333-3333-333333333333"
READER = "44444444-4444-4444-4444-444444444444"
NOBODY = "55555555-5555-5555-5555-555555555555"  # service principal without any role on the vault
STRANGER = "66666666-6666-6666-6666-666666666666"  # no service principal in the vault's tenant

POLICY: dict[str, Any] = {
    "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
    "secret_props": {"contentType": "application/x-pem-file"},
    "x509_props": {"subject": "CN=ADP-FFC-PayBatch", "validity_months": 12},
    "issuer": {"name": "Self"},
}


def mint(app_id: str, *, tenant: str = TENANT, audience: str = AUDIENCE, expired: bool = False) -> str:
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "appid": app_id,
        "oid": str(uuid.uuid5(uuid.NAMESPACE_OID, app_id)),
        "iat": now,
        "nbf": now,
        "exp": now - 60 if expired else now + 3600,
    }
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256")


def verify(token: str, audience: str) -> Claims:
    try:
        claims: Claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"], audience=audience)
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token is expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken(f"the audience is not {audience}") from None
    except jwt.PyJWTError:
        raise InvalidToken("the token is not valid") from None
    return claims


class Directory:
    def __init__(self, app_ids: set[str]) -> None:
        self.app_ids = app_ids

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        if tenant_id != TENANT or app_id not in self.app_ids:
            return None
        return ServicePrincipal(tenant_id, app_id, str(uuid.uuid5(uuid.NAMESPACE_OID, app_id)), app_id)


class Vault:
    """One emulated vault plus a tiny client speaking to it the way HTTP would."""

    def __init__(self) -> None:
        self.state = KeyVaultState(
            "sndadpinfkv1401",
            TENANT,
            {
                OFFICER: {"Key Vault Certificates Officer"},
                ADMIN: {"Key Vault Administrator"},
                SECRETS_USER: {"Key Vault Secrets User"},
                READER: {"Key Vault Reader"},
            },
        )
        directory = Directory({OFFICER, ADMIN, SECRETS_USER, READER, NOBODY})
        self.service = KeyVaultService(
            self.state,
            origin=ORIGIN,
            tenant_id=TENANT,
            verify=verify,
            directory=directory,
            authority="https://127.0.0.1:50400",
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_app: str | None = OFFICER,
        token: str | None = None,
        api_version: str | None = "7.4",
        query: str = "",
    ) -> EmuResponse:
        headers = Headers()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif as_app is not None:
            headers["Authorization"] = f"Bearer {mint(as_app)}"
        parts = [f"api-version={api_version}"] if api_version is not None else []
        if query:
            parts.append(query)
        raw = json.dumps(body).encode() if body is not None else b""
        return self.service.handle(EmuRequest(method, path, "&".join(parts), headers, raw, ORIGIN))

    def create(self, name: str = "ffc-pay-batch-app-cert", policy: dict[str, Any] | None = None) -> EmuResponse:
        return self.call("POST", f"/certificates/{name}/create", {"policy": policy or POLICY})

    def issue(self, name: str = "ffc-pay-batch-app-cert", policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a version and poll it to completion; the certificate bundle of the new version."""
        assert self.create(name, policy).status == 202
        while body(self.call("GET", f"/certificates/{name}/pending"))["status"] != "completed":
            pass
        bundle: dict[str, Any] = body(self.call("GET", f"/certificates/{name}"))
        return bundle


def body(resp: EmuResponse) -> Any:
    return json.loads(resp.body)


def error(resp: EmuResponse) -> dict[str, Any]:
    err: dict[str, Any] = body(resp)["error"]
    return err


@pytest.fixture
def vault() -> Vault:
    return Vault()


def policy_with(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(json.dumps(POLICY))
    for path, value in changes.items():
        section, key = path.split("__")
        policy.setdefault(section, {})[key] = value
    return policy


# -- authentication ---------------------------------------------------------------------------------------------


def test_missing_token_gets_key_vaults_challenge(vault: Vault) -> None:
    resp = vault.call("GET", "/certificates/x", as_app=None)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://127.0.0.1:50400/{TENANT}", resource="https://vault.azure.net"'
    )
    assert error(resp) == {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}


def test_the_challenge_reads_as_the_azure_sdk_expects(vault: Vault) -> None:
    """The SDK's own parser (azure-keyvault-certificates ``_shared/http_challenge.py``) takes the tenant from the
    authorization URL and asks for ``<resource>/.default``; its first request is a bodiless copy of the real one."""
    bodiless = vault.service.handle(
        EmuRequest(
            "POST",
            "/certificates/x/create",
            "api-version=7.5",
            Headers({"Content-Length": "0"}),
            b"",
            ORIGIN,
        )
    )
    assert bodiless.status == 401  # the challenge comes before any check of the (absent) body
    challenge = HttpChallenge(f"{ORIGIN}/certificates/x/create", bodiless.headers["WWW-Authenticate"])
    assert challenge.tenant_id == TENANT
    assert challenge.get_resource() == "https://vault.azure.net"
    assert challenge.get_authorization_server() == f"https://127.0.0.1:50400/{TENANT}"
    assert (challenge.get_scope() or challenge.get_resource() + "/.default") == "https://vault.azure.net/.default"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(mint(OFFICER, audience="https://management.azure.com"), id="wrong-audience"),
        pytest.param(mint(OFFICER, expired=True), id="expired"),
        pytest.param("not-a-jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused_without_echoing_them(vault: Vault, token: str) -> None:
    resp = vault.call("GET", "/certificates/x", token=token)
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers
    assert error(resp)["code"] == "Unauthorized"
    assert token not in resp.body.decode()


def test_token_of_another_tenant_is_refused(vault: Vault) -> None:
    resp = vault.call("GET", "/certificates/x", token=mint(OFFICER, tenant=OTHER_TENANT))
    assert resp.status == 401
    assert error(resp)["message"].startswith("AKV10032: Invalid issuer")
    assert TENANT in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("api_version", "fragment"), [(None, "required"), ("7.0", "(7.0) is not recognized")])
def test_api_version_is_required(vault: Vault, api_version: str | None, fragment: str) -> None:
    resp = vault.call("GET", "/certificates/x", api_version=api_version)
    assert resp.status == 400
    assert error(resp)["code"] == "BadParameter"
    assert fragment in error(resp)["message"]


def test_api_version_7_5_is_served(vault: Vault) -> None:
    assert vault.call("GET", "/certificates/x", api_version="7.5").status == 404


# -- create / pending / get ------------------------------------------------------------------------------------


def test_create_answers_202_with_the_pending_operation_and_completes(vault: Vault) -> None:
    resp = vault.create()
    assert resp.status == 202
    op = body(resp)
    assert op["status"] == "inProgress"
    assert op["id"] == f"{ORIGIN}/certificates/ffc-pay-batch-app-cert/pending"
    assert op["issuer"] == {"name": "Self"}
    assert resp.headers["Location"] == (
        f"{ORIGIN}/certificates/ffc-pay-batch-app-cert/pending?api-version=7.4&request_id={op['request_id']}"
    )
    assert resp.headers["Retry-After"] == "1"
    csr = x509.load_der_x509_csr(base64.b64decode(op["csr"]))
    assert csr.subject.rfc4514_string() == "CN=ADP-FFC-PayBatch"
    assert csr.is_signature_valid

    done = vault.call("GET", "/certificates/ffc-pay-batch-app-cert/pending")
    assert done.status == 200
    assert body(done)["status"] == "completed"
    assert body(done)["target"] == f"{ORIGIN}/certificates/ffc-pay-batch-app-cert"
    assert body(done)["request_id"] == op["request_id"]


def test_certificate_bundle_mirrors_key_vault(vault: Vault) -> None:
    frozen = dt.datetime(2026, 1, 31, 9, 30, 15, tzinfo=dt.UTC)
    vault.state.clock = lambda: frozen
    bundle = vault.issue()
    version = bundle["id"].rsplit("/", 1)[1]
    assert len(version) == 32
    assert bundle["id"] == f"{ORIGIN}/certificates/ffc-pay-batch-app-cert/{version}"
    assert bundle["kid"] == f"{ORIGIN}/keys/ffc-pay-batch-app-cert/{version}"
    assert bundle["sid"] == f"{ORIGIN}/secrets/ffc-pay-batch-app-cert/{version}"
    der = base64.b64decode(bundle["cer"])
    assert bundle["x5t"] == base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.rfc4514_string() == "CN=ADP-FFC-PayBatch"
    created = int(frozen.timestamp())
    assert bundle["attributes"] == {
        "enabled": True,
        "nbf": created - 600,
        "exp": int(dt.datetime(2027, 1, 31, 9, 30, 15, tzinfo=dt.UTC).timestamp()),
        "created": created,
        "updated": created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }
    assert int(cert.not_valid_before_utc.timestamp()) == bundle["attributes"]["nbf"]
    assert int(cert.not_valid_after_utc.timestamp()) == bundle["attributes"]["exp"]
    policy = bundle["policy"]
    assert policy["id"] == f"{ORIGIN}/certificates/ffc-pay-batch-app-cert/policy"
    assert policy["key_props"] == {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False}
    assert policy["secret_props"] == {"contentType": "application/x-pem-file"}
    assert policy["x509_props"]["subject"] == "CN=ADP-FFC-PayBatch"
    assert policy["x509_props"]["validity_months"] == 12
    assert policy["issuer"] == {"name": "Self"}
    assert "pending" not in bundle
    # The specific version answers the same bundle.
    assert body(vault.call("GET", f"/certificates/ffc-pay-batch-app-cert/{version}")) == bundle


def test_validity_months_are_calendar_months_clamped() -> None:
    assert add_months(dt.datetime(2026, 1, 31, tzinfo=dt.UTC), 1) == dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    assert add_months(dt.datetime(2027, 12, 15, tzinfo=dt.UTC), 3) == dt.datetime(2028, 3, 15, tzinfo=dt.UTC)


def test_pending_version_is_hidden_until_the_operation_completes(vault: Vault) -> None:
    vault.state.polls_before_completion = 2
    assert vault.create().status == 202
    latest = body(vault.call("GET", "/certificates/ffc-pay-batch-app-cert"))
    assert latest["attributes"]["enabled"] is False
    assert "cer" not in latest and "x5t" not in latest
    assert latest["pending"] == {"id": f"{ORIGIN}/certificates/ffc-pay-batch-app-cert/pending"}
    assert vault.call("GET", "/secrets/ffc-pay-batch-app-cert", as_app=ADMIN).status == 404
    listed = body(vault.call("GET", "/certificates/ffc-pay-batch-app-cert/versions"))["value"]
    assert len(listed) == 1 and "x5t" not in listed[0]

    polls = [vault.call("GET", "/certificates/ffc-pay-batch-app-cert/pending") for _ in range(3)]
    assert [body(p)["status"] for p in polls] == ["inProgress", "inProgress", "completed"]
    assert polls[0].headers["Retry-After"] == "1"
    assert "cer" in body(vault.call("GET", "/certificates/ffc-pay-batch-app-cert"))


def test_create_while_an_operation_is_in_progress_conflicts(vault: Vault) -> None:
    vault.state.polls_before_completion = 5
    assert vault.create().status == 202
    resp = vault.create()
    assert resp.status == 409
    assert error(resp)["code"] == "Conflict"


def test_each_create_makes_a_new_version_with_its_own_key(vault: Vault) -> None:
    first = vault.issue()
    second = vault.issue()
    assert first["id"] != second["id"]
    assert body(vault.call("GET", "/certificates/ffc-pay-batch-app-cert"))["id"] == second["id"]
    keys = [
        x509.load_der_x509_certificate(base64.b64decode(b["cer"]))
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for b in (first, second)
    ]
    assert keys[0] != keys[1]


def test_reuse_key_keeps_the_previous_key_pair(vault: Vault) -> None:
    first = vault.issue()
    second = vault.issue(policy=policy_with(key_props__reuse_key=True))
    pub = [x509.load_der_x509_certificate(base64.b64decode(b["cer"])).public_key() for b in (first, second)]
    assert pub[0] == pub[1]
    assert first["x5t"] != second["x5t"]


def test_key_size_from_the_policy(vault: Vault) -> None:
    bundle = vault.issue(policy=policy_with(key_props__key_size=3072))
    cert = x509.load_der_x509_certificate(base64.b64decode(bundle["cer"]))
    assert cert.public_key().key_size == 3072  # type: ignore[union-attr]


def test_create_without_policy_reuses_the_certificates_policy(vault: Vault) -> None:
    vault.issue()
    resp = vault.call("POST", "/certificates/ffc-pay-batch-app-cert/create", {})
    assert resp.status == 202
    assert vault.call("POST", "/certificates/brand-new/create", {}).status == 400


def test_create_with_a_new_policy_replaces_the_certificates_policy(vault: Vault) -> None:
    vault.issue()
    bundle = vault.issue(policy=policy_with(x509_props__subject="CN=Renamed", x509_props__validity_months=6))
    assert bundle["policy"]["x509_props"]["subject"] == "CN=Renamed"
    assert bundle["policy"]["x509_props"]["validity_months"] == 6
    cert = x509.load_der_x509_certificate(base64.b64decode(bundle["cer"]))
    assert cert.subject.rfc4514_string() == "CN=Renamed"


@pytest.mark.parametrize(
    ("changes", "status", "fragment"),
    [
        ({"key_props__kty": "EC"}, 400, "Key type 'EC'"),
        ({"key_props__key_size": 1024}, 400, "Key size 1024"),
        ({"key_props__exportable": "yes"}, 400, "key_props.exportable"),
        ({"secret_props__contentType": "text/plain"}, 400, "Content type 'text/plain'"),
        ({"x509_props__subject": ""}, 400, "x509_props.subject is required"),
        ({"x509_props__subject": "O=Defra"}, 400, "common name"),
        ({"x509_props__validity_months": 0}, 400, "validity_months"),
        ({"x509_props__validity_months": 13}, 403, "exceeds the maximum of 12 months"),
        ({"issuer__name": "DigiCert"}, 400, "Issuer 'DigiCert'"),
    ],
)
def test_policy_is_validated(vault: Vault, changes: dict[str, Any], status: int, fragment: str) -> None:
    resp = vault.create(policy=policy_with(**changes))
    assert resp.status == status
    assert fragment in error(resp)["message"]
    assert vault.state.certificate("ffc-pay-batch-app-cert") is None


def test_policy_limit_is_reported_as_forbidden_by_policy(vault: Vault) -> None:
    resp = vault.create(policy=policy_with(x509_props__validity_months=24))
    assert error(resp)["code"] == "Forbidden"
    assert error(resp)["innererror"] == {"code": "ForbiddenByPolicy"}


@pytest.mark.parametrize("name", ["bad_name", "x" * 128, "dots.are.invalid"])
def test_certificate_names_follow_key_vault_rules(vault: Vault, name: str) -> None:
    resp = vault.create(name)
    assert resp.status == 400
    assert "invalid name" in error(resp)["message"]


def test_names_are_case_insensitive(vault: Vault) -> None:
    bundle = vault.issue("App-Cert")
    assert body(vault.call("GET", "/certificates/app-cert"))["id"] == bundle["id"]


def test_trailing_slash_means_the_latest_version(vault: Vault) -> None:
    bundle = vault.issue()
    assert body(vault.call("GET", "/certificates/ffc-pay-batch-app-cert/"))["id"] == bundle["id"]


def test_not_found_answers(vault: Vault) -> None:
    missing = vault.call("GET", "/certificates/nope")
    assert missing.status == 404
    assert error(missing)["code"] == "CertificateNotFound"
    assert "A certificate with (name/id) nope was not found" in error(missing)["message"]
    vault.issue("present")
    bad_version = vault.call("GET", f"/certificates/present/{'0' * 32}")
    assert bad_version.status == 404 and error(bad_version)["code"] == "CertificateNotFound"
    assert error(vault.call("GET", "/secrets/nope", as_app=ADMIN))["code"] == "SecretNotFound"
    assert vault.call("GET", "/certificates/nope/pending").status == 404
    assert vault.call("DELETE", "/certificates/present").status == 404


# -- versions paging ---------------------------------------------------------------------------------------------


def test_versions_are_paged_with_next_link(vault: Vault) -> None:
    ids = [vault.issue()["id"] for _ in range(5)]
    seen: list[str] = []
    pages = 0
    query = "maxresults=2"
    while True:
        resp = vault.call("GET", "/certificates/ffc-pay-batch-app-cert/versions", query=query, api_version="7.5")
        assert resp.status == 200
        page = body(resp)
        pages += 1
        assert len(page["value"]) <= 2
        for item in page["value"]:
            assert set(item) == {"id", "x5t", "attributes"}
            seen.append(item["id"])
        if not page["nextLink"]:
            break
        link = urlsplit(page["nextLink"])
        assert f"{link.scheme}://{link.netloc}" == ORIGIN
        assert "api-version=7.5" in link.query
        query = "&".join(p for p in link.query.split("&") if not p.startswith("api-version="))
    assert seen == ids
    assert pages == 3


def test_versions_of_an_unknown_certificate_is_an_empty_list(vault: Vault) -> None:
    assert body(vault.call("GET", "/certificates/none/versions")) == {"value": [], "nextLink": None}


@pytest.mark.parametrize("query", ["maxresults=0", "maxresults=26", "maxresults=x", "$skiptoken=%%%"])
def test_bad_paging_parameters_are_refused(vault: Vault, query: str) -> None:
    resp = vault.call("GET", "/certificates/any/versions", query=query)
    assert resp.status == 400
    assert error(resp)["code"] == "BadParameter"


# -- update -------------------------------------------------------------------------------------------------------


def test_disable_and_enable_a_version(vault: Vault) -> None:
    bundle = vault.issue()
    version = bundle["id"].rsplit("/", 1)[1]
    path = f"/certificates/ffc-pay-batch-app-cert/{version}"
    off = vault.call("PATCH", path, {"attributes": {"enabled": False}, "tags": {"rotated-by": "test"}})
    assert off.status == 200
    assert body(off)["attributes"]["enabled"] is False
    assert body(off)["tags"] == {"rotated-by": "test"}
    assert body(vault.call("GET", path))["attributes"]["enabled"] is False
    denied = vault.call("GET", f"/secrets/ffc-pay-batch-app-cert/{version}", as_app=SECRETS_USER)
    assert denied.status == 403
    assert error(denied) == {
        "code": "Forbidden",
        "message": "Operation get is not allowed on a disabled secret.",
        "innererror": {"code": "SecretDisabled"},
    }
    assert vault.call("PATCH", path, {"attributes": {"enabled": True}}).status == 200
    assert vault.call("GET", f"/secrets/ffc-pay-batch-app-cert/{version}", as_app=SECRETS_USER).status == 200


def test_update_rejects_a_non_boolean_enabled(vault: Vault) -> None:
    vault.issue()
    resp = vault.call("PATCH", "/certificates/ffc-pay-batch-app-cert", {"attributes": {"enabled": "no"}})
    assert resp.status == 400


# -- secrets ------------------------------------------------------------------------------------------------------


def test_pem_secret_holds_the_private_key_of_the_certificate(vault: Vault) -> None:
    bundle = vault.issue()
    resp = vault.call("GET", "/secrets/ffc-pay-batch-app-cert", as_app=SECRETS_USER)
    assert resp.status == 200
    secret = body(resp)
    version = bundle["id"].rsplit("/", 1)[1]
    assert secret["id"] == f"{ORIGIN}/secrets/ffc-pay-batch-app-cert/{version}"
    assert secret["kid"] == bundle["kid"]
    assert secret["contentType"] == "application/x-pem-file"
    assert secret["managed"] is True
    value = secret["value"].encode()
    assert b"-----BEGIN PRIVATE KEY-----" in value
    key = serialization.load_pem_private_key(value, password=None)
    cert = x509.load_der_x509_certificate(base64.b64decode(bundle["cer"]))
    assert key.public_key() == cert.public_key()
    assert x509.load_pem_x509_certificate(value) == cert


def test_pkcs12_secret_is_base64_pfx(vault: Vault) -> None:
    bundle = vault.issue(policy=policy_with(secret_props__contentType="application/x-pkcs12"))
    secret = body(vault.call("GET", "/secrets/ffc-pay-batch-app-cert", as_app=OFFICER))
    assert secret["contentType"] == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret["value"]), None)
    assert cert is not None and key is not None
    assert cert == x509.load_der_x509_certificate(base64.b64decode(bundle["cer"]))
    assert key.public_key() == cert.public_key()


def test_non_exportable_key_stays_out_of_the_secret(vault: Vault) -> None:
    vault.issue(policy=policy_with(key_props__exportable=False))
    secret = body(vault.call("GET", "/secrets/ffc-pay-batch-app-cert", as_app=SECRETS_USER))
    assert "PRIVATE KEY" not in secret["value"]
    assert "BEGIN CERTIFICATE" in secret["value"]


def test_secret_of_an_older_version(vault: Vault) -> None:
    first = vault.issue()
    vault.issue()
    version = first["id"].rsplit("/", 1)[1]
    secret = body(vault.call("GET", f"/secrets/ffc-pay-batch-app-cert/{version}", as_app=SECRETS_USER))
    assert secret["id"].endswith(version)


# -- RBAC ---------------------------------------------------------------------------------------------------------


def test_reader_cannot_create_and_gets_key_vaults_rbac_error(vault: Vault) -> None:
    resp = vault.call("POST", "/certificates/c1/create", {"policy": POLICY}, as_app=READER)
    assert resp.status == 403
    err = error(resp)
    assert err["code"] == "Forbidden"
    assert err["innererror"] == {"code": "ForbiddenByRbac"}
    assert err["message"].startswith("Caller is not authorized to perform action on resource.")
    assert "Action: 'Microsoft.KeyVault/vaults/certificates/create/action'" in err["message"]
    assert f"appid={READER}" in err["message"]
    assert "/vaults/sndadpinfkv1401/certificates/c1'" in err["message"]
    assert vault.state.certificate("c1") is None


@pytest.mark.parametrize(
    ("app", "allowed"),
    [
        (
            OFFICER,
            {"create", "pending", "get", "versions", "update", "secret"},
        ),
        (ADMIN, {"create", "pending", "get", "versions", "update", "secret"}),
        (READER, {"pending", "get", "versions"}),
        (SECRETS_USER, {"secret"}),
        (NOBODY, set()),
        (STRANGER, set()),
    ],
)
def test_rbac_by_role(vault: Vault, app: str, allowed: set[str]) -> None:
    vault.issue("c1")
    calls = {
        "create": ("POST", "/certificates/c1/create", {"policy": POLICY}),
        "pending": ("GET", "/certificates/c1/pending", None),
        "get": ("GET", "/certificates/c1", None),
        "versions": ("GET", "/certificates/c1/versions", None),
        "update": ("PATCH", "/certificates/c1", {"attributes": {"enabled": True}}),
        "secret": ("GET", "/secrets/c1", None),
    }
    got = set()
    for label, (method, path, payload) in calls.items():
        resp = vault.call(method, path, payload, as_app=app)
        assert resp.status in (200, 202, 403), (label, resp.status)
        if resp.status != 403:
            got.add(label)
        else:
            assert error(resp)["innererror"] == {"code": "ForbiddenByRbac"}
    assert got == allowed


def test_role_assignments_can_change_at_run_time(vault: Vault) -> None:
    vault.issue("c1")
    assert vault.call("GET", "/secrets/c1", as_app=NOBODY).status == 403
    vault.state.assign_role(NOBODY, "Key Vault Secrets User")
    assert vault.call("GET", "/secrets/c1", as_app=NOBODY).status == 200
    vault.state.remove_role(NOBODY, "Key Vault Secrets User")
    assert vault.call("GET", "/secrets/c1", as_app=NOBODY).status == 403
    with pytest.raises(ValueError, match="unknown role"):
        vault.state.assign_role(NOBODY, "Owner")


# -- seed -----------------------------------------------------------------------------------------------------------


def _tenant(*vaults: KeyVaultSeed) -> TenantSeed:
    return TenantSeed(
        name="DefraDev",
        id=TENANT,
        domain="defradev.onmicrosoft.com",
        applications=(
            ApplicationSeed("adp-identity-pipeline", OFFICER, str(uuid.uuid4())),
            ApplicationSeed("ffc-pay-batch", SECRETS_USER, str(uuid.uuid4())),
        ),
        key_vaults=vaults,
    )


def test_state_from_seed_resolves_application_names_and_ids() -> None:
    kv = KeyVaultSeed(
        "sndadpinfkv1401",
        (("adp-identity-pipeline", "Key Vault Certificates Officer"), (SECRETS_USER, "Key Vault Secrets User")),
    )
    state = KeyVaultState.from_seed(kv, _tenant(kv))
    assert state.name == "sndadpinfkv1401" and state.tenant_id == TENANT
    assert state.roles_of(OFFICER) == {"Key Vault Certificates Officer"}
    assert state.roles_of(SECRETS_USER.upper()) == {"Key Vault Secrets User"}
    assert state.roles_of(READER) == set()


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [(("nobody-app", "Key Vault Reader"), "unknown application 'nobody-app'"), (("ffc-pay-batch", "Owner"), "Owner")],
)
def test_state_from_seed_refuses_unknown_names(assignment: tuple[str, str], fragment: str) -> None:
    kv = KeyVaultSeed("v", (assignment,))
    with pytest.raises(ValueError, match=fragment):
        KeyVaultState.from_seed(kv, _tenant(kv))


# -- misbehaviour (test knob): a broken or hostile vault, on demand -------------------------------------------------


def test_misbehaviour_answers_after_authentication_as_often_as_asked(vault: Vault) -> None:
    vault.state.misbehave(status=429, headers={"Retry-After": "-5"}, body="{}", method="GET", count=2)
    assert vault.call("GET", "/certificates/x", as_app=None).status == 401  # the challenge is never replaced
    for _ in range(2):
        answer = vault.call("GET", "/certificates/x")
        assert (answer.status, answer.headers, answer.body) == (429, {"Retry-After": "-5"}, b"{}")
    assert vault.call("GET", "/certificates/x").status == 404  # spent: the vault answers itself again
    assert vault.call("POST", "/certificates/x/create", {"policy": POLICY}).status == 202  # other methods untouched


def test_misbehaviour_for_ever_until_behave(vault: Vault) -> None:
    vault.state.misbehave(status=307, headers={"Location": "https://elsewhere.example/x"}, path_contains="/create")
    for _ in range(5):
        assert vault.call("POST", "/certificates/x/create", {"policy": POLICY}).status == 307
    assert vault.state.certificate("x") is None
    vault.state.behave()
    assert vault.create("x").status == 202


def test_a_gzip_bomb_is_small_on_the_wire_and_huge_inflated(vault: Vault) -> None:
    vault.state.misbehave("gzip_bomb", inflated_size=8 << 20)
    answer = vault.call("GET", "/certificates/x")
    assert answer.status == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert len(answer.body) < 64 * 1024
    assert gzip.decompress(answer.body) == bytes(8 << 20)
    assert len(gzip_of_zeros(1 << 30)) < 2 << 20  # the 1 GiB bomb the client tests send is ~1 MB
    with pytest.raises(ValueError, match="multiple of 1 MiB"):
        gzip_of_zeros(1000)


@pytest.mark.parametrize("repeat", [False, True])
def test_an_endless_next_link(vault: Vault, repeat: bool) -> None:
    vault.state.misbehave("endless_next_link", repeat=repeat, path_contains="/versions")
    links = [body(vault.call("GET", "/certificates/x/versions"))["nextLink"] for _ in range(3)]
    assert all(link.startswith(f"{ORIGIN}/certificates/x/versions?api-version=") for link in links)
    tokens = [parse_qs(urlsplit(link).query)["$skiptoken"][0] for link in links]
    assert len(set(tokens)) == (1 if repeat else 3)
    vault.state.behave()
    vault.state.misbehave("endless_next_link", next_origin="https://attacker.example/")
    assert body(vault.call("GET", "/certificates/x/versions"))["nextLink"].startswith("https://attacker.example/cert")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"kind": "explode"}, "unknown misbehaviour"), ({"count": 0}, "count must be at least 1")],
)
def test_misbehaviour_is_validated(vault: Vault, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        vault.state.misbehave(**kwargs)
