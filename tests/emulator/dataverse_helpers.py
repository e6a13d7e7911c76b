"""In-process harness for the emulated Dataverse Web API: a seeded environment, real RS256 tokens minted here,
a strict token verifier and a strict directory, and a small request helper.

The service under test sees exactly what it sees behind the TLS server: an EmuRequest with a bearer token it
must verify through the injected verifier, and service principals it must look up through the injected
directory. Nothing here decides an answer for the service.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from adp_identity_emulator.dataverse import DataverseEnvironment, DataverseService
from adp_identity_emulator.http import Claims, EmuRequest, EmuResponse, Headers, InvalidToken, ServicePrincipal
from adp_identity_emulator.seed_model import (
    ApplicationSeed,
    ApplicationUserSeed,
    BusinessUnitSeed,
    EnvironmentSeed,
    RoleSeed,
    TenantSeed,
)

ORIGIN = "https://127.0.0.1:51001"
OTHER_ORIGIN = "https://127.0.0.1:51002"  # another environment of the same emulator
AUTHORITY = "https://127.0.0.1:51000"
TENANT = "3d3b7a4e-6a0c-4c55-9d8f-1c2b3a4d5e6f"
OTHER_TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
API = "/api/data/v9.2/"

MANAGER_ROLE = "ADP Identity Manager"
MANAGER_PRIVILEGES = (
    "prvReadUser",
    "prvCreateUser",
    "prvWriteUser",
    "prvReadRole",
    "prvAssignRole",
    "prvReadBusinessUnit",
)

# Applications of the test tenant: (name, client id, service principal object id, has a service principal)
DEPLOYER = ("adp-identity-pipeline", "0a1b2c3d-0000-4000-8000-000000000001", "5e000000-0000-4000-8000-000000000001")
ADMIN_APP = ("platform-admin", "0a1b2c3d-0000-4000-8000-000000000002", "5e000000-0000-4000-8000-000000000002")
READER = ("audit-reader", "0a1b2c3d-0000-4000-8000-000000000003", "5e000000-0000-4000-8000-000000000003")
PAYMENTS = ("ffc-pay-batch", "0a1b2c3d-0000-4000-8000-000000000004", "5e000000-0000-4000-8000-000000000004")
CLAIMS_APP = ("ffc-claims", "0a1b2c3d-0000-4000-8000-000000000005", "5e000000-0000-4000-8000-000000000005")
DISABLED_APP = ("retired-app", "0a1b2c3d-0000-4000-8000-000000000006", "5e000000-0000-4000-8000-000000000006")
NO_SP_APP = ("registered-only", "0a1b2c3d-0000-4000-8000-000000000007", "5e000000-0000-4000-8000-000000000007")
STRANGER = ("no-user-here", "0a1b2c3d-0000-4000-8000-000000000008", "5e000000-0000-4000-8000-000000000008")


def tenant_seed(*, allow_disabled_roles: bool = False) -> TenantSeed:
    """DefraDev-like tenant with one environment: root BU + one child, a few roles, a few application users."""
    applications = tuple(
        ApplicationSeed(name, client_id, object_id, service_principal=(name != NO_SP_APP[0]))
        for name, client_id, object_id in (
            DEPLOYER,
            ADMIN_APP,
            READER,
            PAYMENTS,
            CLAIMS_APP,
            DISABLED_APP,
            NO_SP_APP,
            STRANGER,
        )
    )
    environment = EnvironmentSeed(
        name="defradev-dev",
        business_units=(BusinessUnitSeed("defradev-dev"), BusinessUnitSeed("ffc-payments", parent="defradev-dev")),
        roles=(
            RoleSeed("System Administrator"),
            RoleSeed(MANAGER_ROLE, MANAGER_PRIVILEGES),
            RoleSeed("Basic User"),
            RoleSeed("User Reader", ("prvReadUser",)),
        ),
        application_users=(
            ApplicationUserSeed(DEPLOYER[0], roles=(MANAGER_ROLE,)),
            ApplicationUserSeed(ADMIN_APP[0], roles=("System Administrator",)),
            ApplicationUserSeed(READER[0], roles=("User Reader",)),
            ApplicationUserSeed(DISABLED_APP[0], roles=("Basic User",), disabled=True),
        ),
        allow_role_assignment_on_disabled_users=allow_disabled_roles,
    )
    return TenantSeed("DefraDev", TENANT, "defradev.onmicrosoft.com", applications, (environment,))


@cache
def _signing_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """(the emulator's signing key, a key nobody trusts) - generated once per test run."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def mint(
    app_id: str,
    *,
    audience: str = ORIGIN,
    tenant: str = TENANT,
    lifetime: int = 3600,
    trusted_key: bool = True,
    object_id: str | None = None,
) -> str:
    """An RS256 access token like Entra ID's v1 tokens for an application (``appid``, ``tid``, ``aud``)."""
    trusted, untrusted = _signing_keys()
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "appid": app_id,
        "oid": object_id or str(uuid.uuid4()),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, trusted if trusted_key else untrusted, algorithm="RS256", headers={"kid": "test"})


def verify(token: str, audience: str) -> Claims:
    """The TokenVerifier the service gets: signature, expiry and exact audience, as the Entra slice checks."""
    trusted, _ = _signing_keys()
    try:
        claims: Claims = jwt.decode(
            token,
            trusted.public_key(),
            algorithms=["RS256"],
            audience=audience,
            options={"require": ["exp", "aud", "tid"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("wrong audience") from None
    except jwt.PyJWTError as problem:
        raise InvalidToken(f"invalid token: {type(problem).__name__}") from None
    return claims


@dataclass
class StrictDirectory:
    """Service principals of known tenants; records every look-up so tests can assert on them."""

    principals: dict[tuple[str, str], ServicePrincipal]
    lookups: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, *tenants: TenantSeed) -> StrictDirectory:
        principals = {
            (t.id, a.client_id): ServicePrincipal(t.id, a.client_id, a.object_id, a.name)
            for t in tenants
            for a in t.applications
            if a.service_principal
        }
        return cls(principals)

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        self.lookups.append((tenant_id, app_id))
        return self.principals.get((tenant_id, app_id.lower()))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    operations: list[tuple[str, str, int]]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def error(self) -> dict[str, str]:
        document = self.json
        assert set(document) == {"error"}, document
        assert set(document["error"]) == {"code", "message"}, document
        return dict(document["error"])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class DataverseHarness:
    """One seeded environment and its service, called in-process."""

    def __init__(self, *, allow_disabled_roles: bool = False) -> None:
        self.tenant = tenant_seed(allow_disabled_roles=allow_disabled_roles)
        self.state = DataverseEnvironment.from_seed(self.tenant.environments[0], self.tenant)
        self.directory = StrictDirectory.of(self.tenant)
        self.service = DataverseService(
            self.state,
            origin=ORIGIN,
            tenant_id=TENANT,
            verify=verify,
            directory=self.directory,
            authority=AUTHORITY,
        )

    def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        app: tuple[str, str, str] | None = DEPLOYER,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> Reply:
        """``target`` is a path below ``/api/data/v9.2/`` (or absolute path) with an optional ``?query``."""
        path, _, query = target.partition("?")
        if not path.startswith("/"):
            path = API + path
        all_headers = Headers({"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"})
        if token is None and app is not None:
            token = mint(app[1])
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = raw_body if raw_body is not None else b""
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        for name, value in (headers or {}).items():
            all_headers[name] = value
        response: EmuResponse = self.service.handle(EmuRequest(method, path, query, all_headers, payload, ORIGIN))
        return Reply(response.status, response.headers, response.body, response.operations)

    # small conveniences over the state
    def user_id(self, app: tuple[str, str, str]) -> str:
        user = self.state.user_by_application_id(app[1])
        assert user is not None, f"{app[0]} has no application user"
        return user.id

    def role_url(self, name: str, business_unit: str | None = None) -> str:
        return f"{ORIGIN}{API}roles({self.state.role_id(name, business_unit)})"


def q(text: str) -> str:
    """Percent-encode a query option value the way an HTTP client does."""
    return quote(text, safe="$,()'=/:@")


# ------------------------------------------------------------------------------------------------- $batch
@dataclass
class Op:
    """One request of a batch body (``url`` as the client writes it)."""

    method: str
    url: str
    body: Any = None
    content_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _http_part(op: Op) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if op.content_id is not None:
        lines.append(f"Content-ID: {op.content_id}")
    lines += ["", f"{op.method} {op.url} HTTP/1.1"]
    headers = dict(op.headers)
    if op.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("")
    text = "\r\n".join(lines) + "\r\n"
    if op.body is not None:
        text += json.dumps(op.body)
    return text


def batch_body(items: list[Op | list[Op]], boundary: str = "batch_AAA123") -> tuple[str, bytes]:
    """(Content-Type, body) of a $batch request; a list of Ops is a change set."""
    out = []
    for index, item in enumerate(items):
        if isinstance(item, list):
            inner = f"changeset_{index}BBB456"
            out.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n")
            out += [f"--{inner}\r\n{_http_part(op)}\r\n" for op in item]
            out.append(f"--{inner}--\r\n")
        else:
            out.append(f"--{boundary}\r\n{_http_part(item)}\r\n")
    out.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(out).encode("utf-8")


@dataclass
class InnerReply:
    status: int
    headers: dict[str, str]
    body: str
    content_id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def parse_batch_reply(content_type: str, body: bytes) -> list[InnerReply | list[InnerReply]]:
    """Parse a multipart batch response with the standard library's MIME parser (not the service's)."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    assert message.is_multipart(), content_type
    items: list[InnerReply | list[InnerReply]] = []
    for part in message.iter_parts():
        if part.is_multipart():
            items.append([_inner(p) for p in part.iter_parts()])
        else:
            items.append(_inner(part))
    return items


def _inner(part: email.message.MIMEPart) -> InnerReply:
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    head, _, body = raw.decode("utf-8").replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.split("\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in header_lines)
    return InnerReply(int(status), headers, body, part["Content-ID"])
