"""An in-process emulated vault that the real Azure SDK talks to, for the Key Vault client and provider tests.

``VaultAdapter`` is a strict wire for azure-core's ``RequestsTransport``: it replaces only the socket exchange
of the client's own ``requests`` adapter (``_BoundedAdapter``), so the size cap and decompression run as over
the network. A request for any other origin fails the test, every request is recorded, and faults can be
scripted (throttle, unavailable, bad gateway, drop, lost response, TLS failure). Tokens are real JWTs minted by
``TestCredential`` and verified by the service's injected verifier, so the SDK's challenge flow and the client's
token handling run against the same checks as behind the TLS server.
"""

from __future__ import annotations

import http
import io
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.keyvault.certificates._shared import http_challenge_cache

from adp_identity_emulator.http import Claims, EmuRequest, EmuResponse, Headers, InvalidToken, ServicePrincipal
from adp_identity_emulator.keyvault import AUDIENCE, KeyVaultService, KeyVaultState
from adp_identity_emulator.seed_model import ApplicationSeed, KeyVaultSeed, Seed, TenantSeed
from providers._identity import TOKENS
from providers.keyvault._transport import LOOPBACK_VAULTS_ENV, _BoundedAdapter
from providers.keyvault.client import KeyVaultCertificatesClient, Limits

REPO_ROOT = Path(__file__).resolve().parents[2]
VAULT_URL = "https://127.0.0.1:51443"
TENANT = "6f504113-6b64-43f2-ade9-242e05780007"
PIPELINE = "11111111-1111-1111-1111-111111111111"  # Key Vault Certificates Officer
WORKLOAD = "33333333-3333-3333-3333-333333333333"  # Key Vault Secrets User
READER = "44444444-4444-4444-4444-444444444444"  # Key Vault Reader
_SIGNING_KEY = "keyvault-provider-test-signing-key-0123456789"  # HS256 test key, not a credential

# A seed for the HTTPS emulator: the pipeline deploys with a federated credential; the workload reads secrets.
EMULATOR_PIPELINE = "0b1c7a52-3a1e-4a52-9d55-52f0b1a6c0de"
EMULATOR_WORKLOAD = "5d2b8f1e-7c4a-4e0b-8a61-3f9c2e7d4b10"
EMULATOR_VAULT = "sndadpinfkv1401"
EMULATOR_SEED = Seed(
    tenants=(
        TenantSeed(
            name="DefraDev",
            id="6f504113-6b64-43f2-ade9-242e05780007",
            domain="defradev.onmicrosoft.com",
            applications=(
                ApplicationSeed(
                    "adp-identity-pipeline",
                    EMULATOR_PIPELINE,
                    str(uuid.uuid4()),
                    credentials=("federated",),
                    federated_subject="repo:DEFRA/adp-identity:environment:defradev",
                ),
                ApplicationSeed("ffc-pay-batch", EMULATOR_WORKLOAD, str(uuid.uuid4())),
            ),
            key_vaults=(
                KeyVaultSeed(
                    EMULATOR_VAULT,
                    (
                        ("adp-identity-pipeline", "Key Vault Certificates Officer"),
                        ("ffc-pay-batch", "Key Vault Secrets User"),
                    ),
                ),
            ),
        ),
    )
)


def mint(app_id: str, *, lifetime: int = 3600, key: str = _SIGNING_KEY, tenant: str = TENANT) -> str:
    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "appid": app_id,
        "oid": str(uuid.uuid5(uuid.NAMESPACE_OID, app_id)),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def verify(token: str, audience: str) -> Claims:
    try:
        claims: Claims = jwt.decode(token, _SIGNING_KEY, algorithms=["HS256"], audience=audience)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"token refused ({type(exc).__name__})") from None
    return claims


class _Directory:
    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        if app_id not in (PIPELINE, WORKLOAD, READER):
            return None
        return ServicePrincipal(tenant_id, app_id, str(uuid.uuid5(uuid.NAMESPACE_OID, app_id)), app_id)


class TestCredential:
    """A TokenCredential that mints vault tokens for one app and counts how often it was asked."""

    __test__ = False

    def __init__(self, app_id: str = PIPELINE, *, lifetime: int = 3600, bad_first: int = 0) -> None:
        self.app_id = app_id
        self.lifetime = lifetime
        self.bad_first = bad_first  # the first N tokens are signed with the wrong key
        self.calls: list[tuple[str, ...]] = []
        self.issued: list[str] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:  # the SDK passes tenant_id, enable_cae
        assert scopes == ("https://vault.azure.net/.default",), scopes
        self.calls.append(scopes)
        key = "wrong-key-wrong-key-wrong-key-0123456789" if len(self.calls) <= self.bad_first else _SIGNING_KEY
        token = mint(self.app_id, lifetime=self.lifetime, key=key)
        self.issued.append(token)
        return AccessToken(token, int(time.time()) + self.lifetime)


@dataclass
class Fault:
    kind: str  # throttle | unavailable | bad_gateway | drop | lost_response | tls | answer
    method: str | None = None
    path_contains: str | None = None
    retry_after: int | None = 1
    count: int = 1
    status: int = 0  # answer: this status and these headers, before the vault sees the request
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    status: int  # 0 when no answer reached the client
    fault: str | None = None
    authorized: bool = False  # the request carried a bearer token


class VaultAdapter(_BoundedAdapter):
    """Answers ``requests`` from the in-process service of one origin; anything else fails the test."""

    def __init__(self, service: KeyVaultService, origin: str) -> None:
        super().__init__()
        self.service = service
        self.origin = origin
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []

    def script(self, kind: str, count: int = 1, **kwargs: Any) -> None:
        self.faults.append(Fault(kind, count=count, **kwargs))

    def _draw(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and (fault.method in (None, method)) and (fault.path_contains or "") in path:
                fault.count -= 1
                return fault
        return None

    def _exchange(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        origin = f"{url.scheme}://{url.netloc}"
        assert origin == self.origin, f"unexpected request to {origin}"
        method = (request.method or "GET").upper()
        authorized = str(request.headers.get("Authorization", "")).lower().startswith("bearer ")
        fault = self._draw(method, url.path)
        if fault is not None and fault.kind == "answer":
            self.exchanges.append(Exchange(method, url.path, url.query, fault.status, fault.kind, authorized))
            return self._response(request, EmuResponse.json(fault.status, {}, fault.headers))
        if fault is not None and fault.kind in ("drop", "tls"):
            self.exchanges.append(Exchange(method, url.path, url.query, 0, fault.kind))
            if fault.kind == "tls":
                raise requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
            raise requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted."))
        if fault is not None and fault.kind in ("throttle", "unavailable", "bad_gateway"):
            status = {"throttle": 429, "unavailable": 503, "bad_gateway": 502}[fault.kind]
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            code = "Throttled" if status == 429 else "ServiceUnavailable"
            answer = EmuResponse.json(status, {"error": {"code": code, "message": "Try again later."}}, headers)
            self.exchanges.append(Exchange(method, url.path, url.query, status, fault.kind))
            return self._response(request, answer)
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        headers = Headers(dict(request.headers.items()))
        answer = self.service.handle(EmuRequest(method, url.path, url.query, headers, raw, origin))
        if fault is not None and fault.kind == "lost_response":
            self.exchanges.append(Exchange(method, url.path, url.query, 0, fault.kind))
            raise requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted."))
        self.exchanges.append(Exchange(method, url.path, url.query, answer.status, authorized=authorized))
        return self._response(request, answer)

    def _response(self, request: requests.PreparedRequest, answer: EmuResponse) -> requests.Response:
        """What urllib3 would hand requests for this answer: an unread, undecoded body."""
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.body),
            headers=answer.headers,
            status=answer.status,
            reason=http.HTTPStatus(answer.status).phrase,
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        return sum(1 for e in self.exchanges if (method is None or e.method == method) and path_contains in e.path)


def fresh_process_state() -> None:
    """What a new provider-host process starts with: no cached token, no cached Key Vault challenge."""
    TOKENS.clear()
    http_challenge_cache.clear()


@pytest.fixture
def loopback_vaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allow the in-process vault's loopback origin, as the emulator's exports do."""
    monkeypatch.setenv(LOOPBACK_VAULTS_ENV, VAULT_URL)


class InProcessVault:
    """One emulated vault, its adapter, and client factory."""

    def __init__(self, origin: str = VAULT_URL) -> None:
        self.origin = origin
        self.state = KeyVaultState(
            "sndadpinfkv1401",
            TENANT,
            {
                PIPELINE: {"Key Vault Certificates Officer"},
                WORKLOAD: {"Key Vault Secrets User"},
                READER: {"Key Vault Reader"},
            },
        )
        self.service = KeyVaultService(
            self.state, origin=origin, tenant_id=TENANT, verify=verify, directory=_Directory()
        )
        self.adapter = VaultAdapter(self.service, origin)
        self.sleeps: list[float] = []

    def session(self) -> requests.Session:
        session = requests.Session()
        for prefix in ("https://", "http://"):  # every request meets the strict adapter, never the network
            session.mount(prefix, self.adapter)
        return session

    def client(self, credential: Any = None, **limits: Any) -> KeyVaultCertificatesClient:
        """A client of this vault (its origin must be allowed: see the ``loopback_vaults`` fixture)."""
        return KeyVaultCertificatesClient(
            self.origin,
            credential or TestCredential(),
            session=self.session(),
            sleep=self.sleeps.append,
            limits=Limits(**limits),
        )

    def start_create(self, name: str, subject: str = "CN=ADP-FFC-PayBatch") -> None:
        """A create left in progress by an earlier, interrupted run (POSTed straight to the vault)."""
        policy = {"x509_props": {"subject": subject, "validity_months": 12}, "issuer": {"name": "Self"}}
        headers = Headers({"Authorization": f"Bearer {mint(PIPELINE)}"})
        body = json.dumps({"policy": policy}).encode()
        answer = self.service.handle(
            EmuRequest("POST", f"/certificates/{name}/create", "api-version=7.5", headers, body, self.origin)
        )
        assert answer.status == 202, answer.body

    def workload_secret(self, name: str, version: str | None = None) -> EmuResponse:
        """What the workload (Secrets User) gets from ``GET /secrets/{name}[/{version}]``."""
        path = f"/secrets/{name}" + (f"/{version}" if version else "")
        headers = Headers({"Authorization": f"Bearer {mint(WORKLOAD)}"})
        return self.service.handle(EmuRequest("GET", path, "api-version=7.4", headers, b"", self.origin))


def body_of(resp: EmuResponse) -> Mapping[str, Any]:
    parsed: Mapping[str, Any] = json.loads(resp.body)
    return parsed
