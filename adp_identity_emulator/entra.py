"""Entra ID, as much as a deploying pipeline and its workloads see of it: discovery, keys and the token endpoint.

Served on the emulator's authority host (multi-tenant: ``{tenant}`` is the tenant GUID or its domain):

* ``GET  /{tenant}/v2.0/.well-known/openid-configuration`` - OIDC discovery (what MSAL reads first)
* ``GET  /{tenant}/discovery/v2.0/keys`` - the JWKS resources verify access tokens with
* ``POST /{tenant}/oauth2/v2.0/token`` - client credentials with a client secret, a certificate-signed client
  assertion, or a federated assertion (workload identity federation)
* ``GET  /issuers/{name}/.well-known/openid-configuration`` and ``/issuers/{name}/jwks`` - hosted external
  token issuers (a stand-in for GitHub Actions' or an AKS cluster's OIDC issuer) whose tokens apps trust
  through federated identity credentials.

Refusals carry Entra's shape (``error``, ``error_description`` starting ``AADSTSnnnn:``, ``error_codes``,
``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``) with the codes Entra uses, so clients are
exercised against the answers they will meet (codes from learn.microsoft.com/entra/identity-platform/
reference-error-codes and answers recorded in public issues).

The same object verifies access tokens for resource services (:meth:`EntraService.verify`, a ``TokenVerifier``)
and answers their directory questions (:meth:`EntraService.service_principal`, the ``Directory`` protocol).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from adp_identity_emulator.http import Claims, EmuRequest, EmuResponse, InvalidToken, ServicePrincipal
from adp_identity_emulator.pki import SigningKey, b64url
from adp_identity_emulator.seed_model import ApplicationSeed, TenantSeed

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_LIFETIME = 3600  # seconds, as Entra's default for app-only tokens
FEDERATED_TOKEN_LIFETIME = 24 * 3600
KEY_VAULT_RESOURCE = "https://vault.azure.net"
_ASSERTION_ALGORITHMS = ("RS256", "PS256")
_JSON = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store, no-cache"}


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential on an app registration: trust tokens with this issuer/subject/audience."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (FEDERATION_AUDIENCE,)


@dataclass
class _AppCredentials:
    secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    federated: list[FederatedCredential] = field(default_factory=list)


class HostedIssuer:
    """An external OIDC issuer hosted by the emulator: it mints the tokens workloads present as assertions."""

    def __init__(self, name: str, url: str, key: SigningKey) -> None:
        self.name = name
        self.url = url
        self._key = key

    def mint(
        self,
        subject: str,
        *,
        audience: str = FEDERATION_AUDIENCE,
        lifetime_s: int = FEDERATED_TOKEN_LIFETIME,
        issued_at: int | None = None,
    ) -> str:
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key.private_key, algorithm="RS256", headers={"kid": self._key.kid})

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.jwk(alg="RS256")]}

    def verify(self, token: str, audience: Sequence[str]) -> Claims:
        claims: Claims = jwt.decode(
            token,
            self._key.public_key,
            algorithms=["RS256"],
            audience=list(audience),
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
        return claims


class _Refusal(Exception):
    """An Entra error answer: raised deep in the token flow, turned into a response at the top."""

    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.code = code
        self.message = message


class EntraService:
    """The emulated Entra ID of every tenant in the seed (one authority host)."""

    def __init__(
        self,
        tenants: Sequence[TenantSeed],
        authority: str,
        *,
        resources: Mapping[str, Iterable[str]] | None = None,
        issuer_names: Sequence[str] = ("github-actions",),
        signing_key: SigningKey | None = None,
        issuer_key: SigningKey | None = None,
    ) -> None:
        self.authority = authority.rstrip("/")
        self._by_ref: dict[str, TenantSeed] = {}
        for tenant in tenants:
            self._by_ref[tenant.id.lower()] = tenant
            self._by_ref[tenant.domain.lower()] = tenant
        self._lock = threading.Lock()
        self._resources: dict[str, set[str]] = {t.id: {KEY_VAULT_RESOURCE} for t in tenants}
        for tenant_id, origins in (resources or {}).items():
            for origin in origins:
                self.add_resource(tenant_id, origin)
        self._credentials: dict[tuple[str, str], _AppCredentials] = {}
        self._key = signing_key or SigningKey.generate("adp-identity emulator token signing")
        issuer_key = issuer_key or SigningKey.generate("adp-identity emulator federated issuer")
        self._issuers = {
            name: HostedIssuer(name, f"{self.authority}/issuers/{name}", issuer_key) for name in issuer_names
        }

    # -- configuration ------------------------------------------------------------------------------------------

    def tenant(self, ref: str) -> TenantSeed | None:
        """The tenant named by GUID or domain (as Entra accepts in URLs), or None."""
        return self._by_ref.get(ref.lower())

    def add_resource(self, tenant_id: str, origin: str) -> None:
        """Make ``origin`` a resource (token audience) known in a tenant."""
        with self._lock:
            self._resources.setdefault(tenant_id.lower(), set()).add(_resource_id(origin))

    def resources(self, tenant_id: str) -> set[str]:
        with self._lock:
            return set(self._resources.get(tenant_id.lower(), set()))

    def _app_credentials(self, tenant_id: str, client_id: str) -> _AppCredentials:
        return self._credentials.setdefault((tenant_id.lower(), client_id.lower()), _AppCredentials())

    def add_secret(self, tenant_id: str, client_id: str, secret: str) -> None:
        with self._lock:
            self._app_credentials(tenant_id, client_id).secrets.append(secret)

    def add_certificate(self, tenant_id: str, client_id: str, certificate: x509.Certificate) -> None:
        with self._lock:
            self._app_credentials(tenant_id, client_id).certificates.append(certificate)

    def add_federated_credential(self, tenant_id: str, client_id: str, credential: FederatedCredential) -> None:
        with self._lock:
            self._app_credentials(tenant_id, client_id).federated.append(credential)

    def issuer(self, name: str) -> HostedIssuer:
        return self._issuers[name]

    def kind_of(self, path: str) -> str:
        """Request-log service name: hosted issuers are logged apart from Entra itself."""
        return "issuer" if path.startswith("/issuers/") else "entra"

    # -- Directory protocol ---------------------------------------------------------------------------------------

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        tenant = self.tenant(tenant_id)
        app = _find_app(tenant, app_id) if tenant else None
        if tenant is None or app is None or not app.service_principal:
            return None
        return ServicePrincipal(tenant.id, app.client_id, app.object_id, app.name)

    # -- access tokens --------------------------------------------------------------------------------------------

    def issuer_for(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}/v2.0"

    def issue_access_token(
        self,
        tenant_id: str,
        client_id: str,
        audience: str,
        *,
        lifetime_s: int = ACCESS_TOKEN_LIFETIME,
        issued_at: int | None = None,
        client_auth: str = "1",
    ) -> str:
        """Sign an app-only access token (also handy for tests that need an expired or foreign token)."""
        tenant = self.tenant(tenant_id)
        app = _find_app(tenant, client_id) if tenant else None
        if tenant is None or app is None:
            raise KeyError(f"no application {client_id} in tenant {tenant_id}")
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "aud": audience,
            "iss": self.issuer_for(tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "tid": tenant.id,
            "appid": app.client_id,
            "appidacr": client_auth,
            "azp": app.client_id,
            "azpacr": client_auth,
            "oid": app.object_id,
            "sub": app.object_id,
            "idtyp": "app",
            "ver": "2.0",
            "uti": b64url(uuid.uuid4().bytes),
        }
        headers = {"kid": self._key.kid, "x5t": self._key.x5t}
        return jwt.encode(claims, self._key.private_key, algorithm="RS256", headers=headers)

    def verify(self, token: str, audience: str) -> Claims:
        """``TokenVerifier``: the claims of a token this emulator issued for ``audience``; else InvalidToken."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a JWT") from None
        if header.get("kid") != self._key.kid or header.get("alg") != "RS256":
            raise InvalidToken("the token is not signed by a known Entra ID key")
        try:
            claims: Claims = jwt.decode(
                token,
                self._key.public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "nbf", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token is expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet (nbf)") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is invalid ({exc})") from None
        tenant = self.tenant(str(claims["tid"]))
        if tenant is None or claims["iss"] != self.issuer_for(tenant.id):
            raise InvalidToken("the token issuer is not a known tenant")
        if _resource_id(str(claims["aud"])) != _resource_id(audience):
            raise InvalidToken(f"the token audience {claims['aud']!r} is not {audience!r}")
        owners = [t for t, origins in self._snapshot_resources().items() if _resource_id(audience) in origins]
        if len(owners) == 1 and owners[0] != tenant.id:
            raise InvalidToken("the token was issued by another tenant", wrong_tenant=True)
        return claims

    __call__ = verify

    def _snapshot_resources(self) -> dict[str, set[str]]:
        with self._lock:
            return {k: set(v) for k, v in self._resources.items()}

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def handle(self, req: EmuRequest) -> EmuResponse:
        parts = [unquote(p) for p in req.path.strip("/").split("/")]
        try:
            if len(parts) >= 2 and parts[0] == "issuers":
                return self._issuer_route(req, parts[1], parts[2:])
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return self._get_only(req) or self._discovery(parts[0])
            if len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"]:
                return self._get_only(req) or self._keys(parts[0])
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                return self._token(req, parts[0])
        except _Refusal as refusal:
            return self._refusal(refusal)
        return EmuResponse.json(404, {"error": "not_found", "error_description": "No such endpoint."}, _JSON)

    @staticmethod
    def _get_only(req: EmuRequest) -> EmuResponse | None:
        if req.method in ("GET", "HEAD"):
            return None
        return EmuResponse.json(405, {"error": "method_not_allowed"}, {**_JSON, "Allow": "GET"})

    def _issuer_route(self, req: EmuRequest, name: str, rest: list[str]) -> EmuResponse:
        issuer = self._issuers.get(name)
        if issuer is None or rest not in ([".well-known", "openid-configuration"], ["jwks"]):
            return EmuResponse.json(404, {"error": "not_found"}, _JSON)
        return self._get_only(req) or EmuResponse.json(
            200, issuer.jwks() if rest == ["jwks"] else issuer.discovery(), _JSON
        )

    def _discovery(self, ref: str) -> EmuResponse:
        tenant = self.tenant(ref)
        if tenant is None:
            raise _Refusal(400, "invalid_tenant", 90002, _tenant_not_found(ref))
        base = f"{self.authority}/{tenant.id}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer_for(tenant.id),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid", "azp"],
            "tenant_region_scope": "EU",
        }
        return EmuResponse.json(200, doc, _JSON)

    def _keys(self, ref: str) -> EmuResponse:
        tenant = self.tenant(ref)
        if tenant is None:
            raise _Refusal(400, "invalid_tenant", 90002, _tenant_not_found(ref))
        return EmuResponse.json(200, {"keys": [self._key.jwk(issuer=self.issuer_for(tenant.id))]}, _JSON)

    def _refusal(self, refusal: _Refusal) -> EmuResponse:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{refusal.code}: {refusal.message}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: {stamp}"
        )
        body = {
            "error": refusal.error,
            "error_description": description,
            "error_codes": [refusal.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.authority}/error?code={refusal.code}",
        }
        return EmuResponse.json(refusal.status, body, {**_JSON, "x-ms-request-id": trace})

    # -- the token endpoint ---------------------------------------------------------------------------------------

    def _token(self, req: EmuRequest, ref: str) -> EmuResponse:
        if req.method != "POST":
            raise _Refusal(
                400,
                "invalid_request",
                900561,
                f"The endpoint only accepts POST, OPTIONS requests. Received a {req.method} request.",
            )
        tenant = self.tenant(ref)
        if tenant is None:
            raise _Refusal(400, "invalid_request", 90002, _tenant_not_found(ref))
        form = _form(req)
        basic_id, basic_secret = _basic_auth(req)
        grant = _param(form, "grant_type")
        if grant != "client_credentials":
            raise _Refusal(
                400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
            )
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise _missing("client_id")
        app = _find_app(tenant, client_id, by_name=False)
        if app is None or not app.service_principal:
            raise _Refusal(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant.name}'. This can "
                "happen if the application has not been installed by the administrator of the tenant or consented to "
                "by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        resource = self._resource(tenant, _param(form, "scope"))
        with self._lock:
            registered = self._app_credentials(tenant.id, app.client_id)
            creds = _AppCredentials(list(registered.secrets), list(registered.certificates), list(registered.federated))
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if secret is not None:
            if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in creds.secrets):
                raise _Refusal(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                    f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
                )
            acr = "1"
        elif assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise _Refusal(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_assertion_type'.",
                )
            self._check_assertion(tenant, ref, app, assertion, creds)
            acr = "2"
        else:
            raise _Refusal(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        token = self.issue_access_token(tenant.id, app.client_id, resource, client_auth=acr)
        body = {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME,
            "access_token": token,
        }
        return EmuResponse.json(200, body, {**_JSON, "Pragma": "no-cache"})

    def _resource(self, tenant: TenantSeed, scope: str) -> str:
        scopes = scope.split()
        if len(scopes) != 1:
            raise _Refusal(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
            )
        if not scopes[0].endswith("/.default") or scopes[0] == "/.default":
            raise _Refusal(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = _resource_id(scopes[0][: -len("/.default")])
        if resource not in self.resources(tenant.id):
            raise _Refusal(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant.name}. This can "
                "happen if the application has not been installed by the administrator of the tenant or consented to "
                "by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
            )
        return resource

    def _check_assertion(
        self, tenant: TenantSeed, ref: str, app: ApplicationSeed, assertion: str, creds: _AppCredentials
    ) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _malformed("JWT token is invalid or malformed.") from None
        issuer, subject = claims.get("iss"), claims.get("sub")
        if (
            not isinstance(issuer, str)
            or not isinstance(subject, str)
            or not isinstance(claims.get("exp"), int | float)
        ):
            raise _malformed("Invalid JWT token. The token must carry 'iss', 'sub' and 'exp' claims.")
        if issuer.lower() == app.client_id:
            self._check_certificate_assertion(
                tenant, ref, app, assertion=assertion, header=header, claims=claims, creds=creds
            )
        else:
            self._check_federated_assertion(app, assertion, claims, creds)

    def _check_certificate_assertion(
        self,
        tenant: TenantSeed,
        ref: str,
        app: ApplicationSeed,
        *,
        assertion: str,
        header: dict[str, Any],
        claims: Claims,
        creds: _AppCredentials,
    ) -> None:
        algorithm = header.get("alg")
        if algorithm not in _ASSERTION_ALGORITHMS:
            raise _malformed(
                f"Invalid JWT token. '{algorithm}' is not a supported signature algorithm. "
                f"Supported signing algorithms are: '{', '.join(_ASSERTION_ALGORITHMS)}'"
            )
        if str(claims["sub"]).lower() != app.client_id or not claims.get("jti"):
            raise _malformed("Invalid JWT token. A client assertion needs sub = iss = the client id, and a jti.")
        sha1, sha256 = header.get("x5t"), header.get("x5t#S256")
        if not sha1 and not sha256:
            raise _malformed("Invalid JWT token. No certificate thumbprint specified in token header.")
        used = _thumbprint_hex(str(sha256 or sha1))
        certificate = next(
            (c for c in creds.certificates if _matches_thumbprint(c, sha1, sha256)),
            None,
        )
        if certificate is None:
            raise _Refusal(
                401,
                "invalid_client",
                700027,
                f"Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{used}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to "
                f"see configured keys for app Id '{app.client_id}'.]",
            )
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):  # pragma: no cover - the emulator only issues RSA certs
            raise _malformed("Invalid JWT token. Only RSA certificates are supported.")
        try:
            jwt.decode(
                assertion,
                public_key,
                algorithms=[str(algorithm)],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise _Refusal(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match "
                f"the expected signature value., Thumbprint of key used by client: '{used}', Found key "
                f"'Start={certificate.not_valid_before_utc:%m/%d/%Y %H:%M:%S}, "
                f"End={certificate.not_valid_after_utc:%m/%d/%Y %H:%M:%S}']",
            ) from None
        except jwt.PyJWTError:
            raise _malformed("JWT token is invalid or malformed.") from None
        _check_time_range(claims)
        endpoints = {f"{self.authority}/{t}/oauth2/v2.0/token".lower() for t in (tenant.id, tenant.domain, ref)}
        audiences = claims.get("aud")
        audience_list = audiences if isinstance(audiences, list) else [audiences]
        if not any(isinstance(a, str) and a.lower().rstrip("/") in endpoints for a in audience_list):
            raise _Refusal(401, "invalid_client", 50012, "Client assertion audience claim does not match Realm issuer.")

    def _check_federated_assertion(
        self, app: ApplicationSeed, assertion: str, claims: Claims, creds: _AppCredentials
    ) -> None:
        audiences = claims.get("aud")
        audience_list = [a for a in (audiences if isinstance(audiences, list) else [audiences]) if isinstance(a, str)]
        record = next(
            (
                f
                for f in creds.federated
                if f.issuer == claims["iss"] and f.subject == claims["sub"] and set(f.audiences) & set(audience_list)
            ),
            None,
        )
        issuer = next((i for i in self._issuers.values() if i.url == claims["iss"]), None)
        if record is None or issuer is None:
            raise _Refusal(
                401,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{claims['iss']}'. Assertion Subject: '{claims['sub']}'. "
                f"Assertion Audience: '{', '.join(audience_list)}'. "
                "https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
            )
        try:
            issuer.verify(assertion, record.audiences)
        except jwt.InvalidSignatureError:
            raise _Refusal(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match "
                f"the expected signature value., Issuer: '{issuer.url}']",
            ) from None
        except jwt.PyJWTError:
            raise _malformed("JWT token is invalid or malformed.") from None
        _check_time_range(claims)


# ---------------------------------------------------------------------------------------------------------------
# small pure helpers


def _resource_id(origin: str) -> str:
    """Resource identifiers compare without a trailing slash and with a lower-case scheme and host."""
    text = origin.rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def _find_app(tenant: TenantSeed | None, ref: str, *, by_name: bool = True) -> ApplicationSeed | None:
    if tenant is None:
        return None
    for app in tenant.applications:
        if app.client_id == ref.lower() or (by_name and app.name == ref):
            return app
    return None


def _tenant_not_found(ref: str) -> str:
    return (
        f"Tenant '{ref}' not found. Check to make sure you have the correct tenant ID and are signing into the "
        "correct cloud. Check with your subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant."
    )


def _form(req: EmuRequest) -> dict[str, str]:
    content_type = str(req.headers.get("content-type", "")).split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    parsed = parse_qs(req.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _basic_auth(req: EmuRequest) -> tuple[str | None, str | None]:
    header = str(req.headers.get("authorization", ""))
    if not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except ValueError:
        return None, None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _missing(name: str) -> _Refusal:
    return _Refusal(400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'.")


def _param(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise _missing(name)
    return value


def _malformed(message: str) -> _Refusal:
    return _Refusal(401, "invalid_client", 50027, message)


def _thumbprint_bytes(value: str | None) -> bytes | None:
    """A JOSE thumbprint header decoded; padded (as MSAL sends it) or not (as RFC 7515 says)."""
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return None


def _thumbprint_hex(value: str) -> str:
    raw = _thumbprint_bytes(value)
    return raw.hex().upper() if raw else value


def _matches_thumbprint(certificate: x509.Certificate, sha1: str | None, sha256: str | None) -> bool:
    der = certificate.public_bytes(Encoding.DER)
    wanted256, wanted1 = _thumbprint_bytes(sha256), _thumbprint_bytes(sha1)
    if wanted256 is not None and hmac.compare_digest(wanted256, hashlib.sha256(der).digest()):
        return True
    return wanted1 is not None and hmac.compare_digest(wanted1, hashlib.sha1(der).digest())  # noqa: S324


def _check_time_range(claims: Claims) -> None:
    now = time.time()
    expires = float(claims["exp"])
    not_before = float(claims.get("nbf", claims.get("iat", 0)) or 0)
    if expires <= now or not_before > now:
        raise _Refusal(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion valid from "
            f"{_iso(not_before)}, expiry time of assertion {_iso(expires)}. Review the documentation at "
            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )


def _iso(epoch: float) -> str:
    """Entra's timestamp style in these messages: seven fractional digits."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
