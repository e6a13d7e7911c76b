"""The Key Vault certificates slice of the emulator: enough of the data-plane API to create app certificates.

What it mirrors (Key Vault REST, api-version 7.4/7.5, learn.microsoft.com/rest/api/keyvault/certificates):
- ``POST /certificates/{name}/create`` answers ``202`` with the pending operation (``status: inProgress``,
  ``Location`` and ``Retry-After`` headers). The key pair is generated HERE, inside the emulated vault, at that
  moment; the certificate's dates (``created``, ``nbf`` = created - 10 min, ``exp`` = created + validity months)
  are fixed then too, as Key Vault shows them on the pending version.
- ``GET /certificates/{name}/pending`` reports ``inProgress`` for ``polls_before_completion`` polls, then
  ``completed`` (with ``target``). Until then the new version is listed disabled, without ``x5t``/``cer``, and its
  secret does not exist — as a real self-signed request looks for a few seconds.
- ``GET /certificates/{name}[/{version}]``, ``GET /certificates/{name}/versions`` (``maxresults`` + ``nextLink``),
  ``PATCH /certificates/{name}/{version}`` (``attributes.enabled``, ``tags``) return certificate bundles:
  ``id kid sid x5t cer attributes{enabled nbf exp created updated recoveryLevel recoverableDays} policy``.
- ``GET /secrets/{name}[/{version}]`` returns the private key and certificate in the policy's content type
  (``application/x-pem-file`` or base64 ``application/x-pkcs12``) — what the workload itself reads. A disabled
  version's secret is refused (``403``, "Operation get is not allowed on a disabled secret.").

Access: a bearer token for audience ``https://vault.azure.net`` of the vault's tenant (else ``401`` with Key
Vault's ``WWW-Authenticate`` challenge), then Azure RBAC from the seed's role assignments (else ``403``
``ForbiddenByRbac`` naming the data action). Policy limits Key Vault does not have by itself but ADP's Azure
Policy assignments do (``max_validity_months``) are refused with ``403`` ``ForbiddenByPolicy``.

Test knobs live on :class:`KeyVaultState`: ``clock`` (the vault's notion of now), ``polls_before_completion``,
``retry_after_seconds``, ``max_validity_months``; ``assign_role``/``remove_role`` change RBAC at run time;
``misbehave`` makes the vault answer as a broken or hostile one would (after authentication, so the client's
challenge flow runs first): any status/headers/body (429 with ``Retry-After: 0``, a negative one or a date in
the past, 5xx, a 307 to elsewhere, a malformed 200), a gzip bomb, or a ``nextLink`` that never ends.

The challenge is the one the Azure SDK's ``ChallengeAuthPolicy`` reads (azure-keyvault-certificates,
``_shared/challenge_auth_policy.py`` and ``http_challenge.py``): its first request carries no token and no
body, and gets ``401`` with ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>",
resource="https://vault.azure.net"``; the SDK takes the tenant from the authorization URL's path and asks for a
token of ``<resource>/.default``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime as dt
import functools
import hashlib
import json
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adp_identity_emulator.http import Directory, EmuRequest, EmuResponse, InvalidToken, TokenVerifier
from adp_identity_emulator.seed_model import KeyVaultSeed, TenantSeed

AUDIENCE = "https://vault.azure.net"
API_VERSIONS = ("7.4", "7.5")
DEFAULT_AUTHORITY = "https://login.windows.net"  # what Key Vault names in its challenge; never contacted here

ACTION_CREATE = "Microsoft.KeyVault/vaults/certificates/create/action"
ACTION_READ = "Microsoft.KeyVault/vaults/certificates/read"
ACTION_UPDATE = "Microsoft.KeyVault/vaults/certificates/update/action"
ACTION_GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"

# Built-in Key Vault data-plane roles, reduced to the data actions this slice serves.
ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    "Key Vault Administrator": frozenset({ACTION_CREATE, ACTION_READ, ACTION_UPDATE, ACTION_GET_SECRET}),
    "Key Vault Certificates Officer": frozenset({ACTION_CREATE, ACTION_READ, ACTION_UPDATE, ACTION_GET_SECRET}),
    "Key Vault Certificate User": frozenset({ACTION_READ, ACTION_GET_SECRET}),
    "Key Vault Secrets User": frozenset({ACTION_GET_SECRET}),
    "Key Vault Reader": frozenset({ACTION_READ}),
}

PEM = "application/x-pem-file"
PKCS12 = "application/x-pkcs12"
KEY_SIZES = (2048, 3072, 4096)
DEFAULT_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string)
DEFAULT_KEY_USAGE = ("digitalSignature", "keyEncipherment")
NBF_BACKDATE = dt.timedelta(minutes=10)  # Key Vault backdates nbf by ten minutes
MAX_PAGE = 25  # Key Vault's largest maxresults
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
STATUS_DETAILS = (
    "Pending certificate created. Certificate request is in progress. "
    "This may take some time based on the issuer provider. Please check again later."
)
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION = re.compile(r"^[0-9a-f]{32}$")
_KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)


class VaultError(Exception):
    """An answer other than success, in Key Vault's error shape ``{"error": {"code", "message"[, "innererror"]}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = dict(headers or {})

    def response(self) -> EmuResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return _json(self.status, {"error": error}, self.headers)


def _json(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> EmuResponse:
    merged = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-cache"}
    merged.update(headers or {})
    return EmuResponse(status, merged, json.dumps(obj).encode("utf-8"))


def _bad(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar months, the day clamped to the target month's length (31 Jan + 1 month = 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- policy -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificatePolicy:
    """A validated certificate policy (the parts the emulator honours), echoed back in Key Vault's shape."""

    subject: str
    validity_months: int
    key_size: int = 2048
    exportable: bool = True
    reuse_key: bool = False
    content_type: str = PKCS12
    ekus: tuple[str, ...] = DEFAULT_EKUS
    key_usage: tuple[str, ...] = DEFAULT_KEY_USAGE
    lifetime_actions: tuple[Mapping[str, Any], ...] = ()
    created: int = 0
    updated: int = 0

    @property
    def subject_name(self) -> x509.Name:
        return _parse_subject(self.subject)

    @classmethod
    def parse(cls, body: Any, *, now: int, max_validity_months: int) -> CertificatePolicy:
        """Validate a request's ``policy``; 400 ``BadParameter`` (or 403 by vault policy) naming the field."""
        if not isinstance(body, dict):
            raise _bad("The certificate policy must be a JSON object.")
        key_props = _object(body, "key_props")
        secret_props = _object(body, "secret_props")
        x509_props = _object(body, "x509_props")
        issuer = _object(body, "issuer")

        kty = key_props.get("kty", "RSA")
        if kty != "RSA":
            raise _bad(f"Key type '{kty}' is not supported by this vault: use 'RSA'.")
        key_size = key_props.get("key_size", 2048)
        if key_size not in KEY_SIZES or isinstance(key_size, bool):
            raise _bad(f"Key size {key_size} is not valid for RSA keys: use one of 2048, 3072, 4096.")
        exportable = key_props.get("exportable", True)
        reuse_key = key_props.get("reuse_key", False)
        for label, flag in (("key_props.exportable", exportable), ("key_props.reuse_key", reuse_key)):
            if not isinstance(flag, bool):
                raise _bad(f"Property {label} must be true or false.")

        content_type = secret_props.get("contentType", PKCS12)
        if content_type not in (PEM, PKCS12):
            raise _bad(f"Content type '{content_type}' is not valid: use '{PEM}' or '{PKCS12}'.")

        subject = x509_props.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise _bad("Property x509_props.subject is required, e.g. 'CN=my-app'.")
        _parse_subject(subject)
        validity = x509_props.get("validity_months", 12)
        if not isinstance(validity, int) or isinstance(validity, bool) or validity < 1:
            raise _bad(f"Property x509_props.validity_months must be a whole number of months (got {validity!r}).")
        if validity > max_validity_months:
            raise VaultError(
                403,
                "Forbidden",
                f"Operation denied by policy: the certificate validity ({validity} months) exceeds the maximum "
                f"of {max_validity_months} months allowed for this vault.",
                inner="ForbiddenByPolicy",
            )
        ekus = x509_props.get("ekus", list(DEFAULT_EKUS))
        if not isinstance(ekus, list) or not all(isinstance(e, str) and _is_oid(e) for e in ekus):
            raise _bad("Property x509_props.ekus must be a list of OIDs such as '1.3.6.1.5.5.7.3.2'.")
        key_usage = x509_props.get("key_usage", list(DEFAULT_KEY_USAGE))
        if not isinstance(key_usage, list) or not all(k in _KEY_USAGES for k in key_usage):
            raise _bad(f"Property x509_props.key_usage must list values among: {', '.join(_KEY_USAGES)}.")

        issuer_name = issuer.get("name", "Self")
        if issuer_name != "Self":
            raise _bad(f"Issuer '{issuer_name}' is not configured in this vault: only 'Self' is available.")
        actions = body.get("lifetime_actions", [])
        if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
            raise _bad("Property lifetime_actions must be a list of objects.")
        return cls(
            subject=subject.strip(),
            validity_months=validity,
            key_size=key_size,
            exportable=exportable,
            reuse_key=reuse_key,
            content_type=content_type,
            ekus=tuple(ekus),
            key_usage=tuple(key_usage),
            lifetime_actions=tuple(actions),
            created=now,
            updated=now,
        )

    def to_json(self, base: str, name: str) -> dict[str, Any]:
        return {
            "id": f"{base}/certificates/{name}/policy",
            "key_props": {
                "exportable": self.exportable,
                "kty": "RSA",
                "key_size": self.key_size,
                "reuse_key": self.reuse_key,
            },
            "secret_props": {"contentType": self.content_type},
            "x509_props": {
                "subject": self.subject,
                "sans": {},
                "ekus": list(self.ekus),
                "key_usage": list(self.key_usage),
                "validity_months": self.validity_months,
                "basic_constraints": {"ca": False},
            },
            "lifetime_actions": [dict(a) for a in self.lifetime_actions],
            "issuer": {"name": "Self"},
            "attributes": {"enabled": True, "created": self.created, "updated": self.updated},
        }


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise _bad(f"Property {key} must be a JSON object.")
    return value


def _is_oid(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)+", text) is not None


def _parse_subject(subject: str) -> x509.Name:
    """Key Vault subjects are X.500 names such as ``CN=app, O=Defra``; parsed here as RFC 4514 strings."""
    try:
        name = x509.Name.from_rfc4514_string(subject.strip())
    except ValueError:
        raise _bad(f"The subject '{subject}' is not a valid X.500 distinguished name, e.g. 'CN=my-app'.") from None
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise _bad(f"The subject '{subject}' must contain a common name (CN=...).")
    return name


# -- stored objects --------------------------------------------------------------------------------------------


@dataclass
class CertificateVersion:
    """One version: the key pair generated in the vault, its certificate, and whether it is issued yet."""

    version: str
    policy: CertificatePolicy
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    csr: x509.CertificateSigningRequest
    created: int
    updated: int
    enabled: bool = True
    issued: bool = False  # False while the pending operation is in progress
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> str:
        return _b64url(hashlib.sha1(self.der).digest())  # noqa: S324 - x5t is SHA-1 by definition

    @property
    def not_before(self) -> int:
        return _epoch(self.certificate.not_valid_before_utc)

    @property
    def not_after(self) -> int:
        return _epoch(self.certificate.not_valid_after_utc)

    def attributes(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled and self.issued,
            "nbf": self.not_before,
            "exp": self.not_after,
            "created": self.created,
            "updated": self.updated,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }

    def secret_value(self) -> str:
        """The secret Key Vault keeps next to the certificate: private key (when exportable) + certificate."""
        key = self.private_key if self.policy.exportable else None
        if self.policy.content_type == PEM:
            pem = self.certificate.public_bytes(serialization.Encoding.PEM)
            if key is not None:
                pem = (
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                    + pem
                )
            return pem.decode("ascii")
        pfx = pkcs12.serialize_key_and_certificates(None, key, self.certificate, None, serialization.NoEncryption())
        return base64.b64encode(pfx).decode("ascii")


@dataclass
class PendingOperation:
    request_id: str
    version: str
    polls_left: int
    status: str = "inProgress"  # -> "completed"


@dataclass
class StoredCertificate:
    name: str  # as first created (names are case-insensitive in Key Vault)
    policy: CertificatePolicy
    versions: list[CertificateVersion] = field(default_factory=list)  # in creation order
    operation: PendingOperation | None = None

    def latest(self) -> CertificateVersion:
        return self.versions[-1]

    def version(self, version: str) -> CertificateVersion | None:
        return next((v for v in self.versions if v.version == version.lower()), None)

    def latest_issued(self) -> CertificateVersion | None:
        return next((v for v in reversed(self.versions) if v.issued), None)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


MisbehaviourKind = Literal["answer", "gzip_bomb", "endless_next_link"]


@dataclass
class Misbehaviour:
    """An answer the vault gives instead of its own, to matching requests (``remaining`` None: every one)."""

    kind: MisbehaviourKind
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    inflated_size: int = 1 << 30  # gzip_bomb: what the body inflates to
    next_origin: str | None = None  # endless_next_link: where the nextLink points (default: this vault)
    repeat: bool = False  # endless_next_link: the same link every time (else ever onward)
    method: str | None = None
    path_contains: str | None = None
    remaining: int | None = None
    served: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.remaining is None or self.remaining > 0)
            and (self.method is None or self.method == method.upper())
            and (self.path_contains is None or self.path_contains in path)
        )


@functools.lru_cache(maxsize=4)
def gzip_of_zeros(size: int) -> bytes:
    """A gzip member inflating to ``size`` zero bytes (a multiple of 1 MiB), built in about a second.

    Each 1 MiB of zeros deflates, after a full flush, to the same bytes, so the member is that segment repeated;
    a 1 GiB bomb is about 1 MB on the wire.
    """
    chunk = 1 << 20
    if size <= 0 or size % chunk:
        raise ValueError("size must be a positive multiple of 1 MiB")
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(chunk)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * (size // chunk) + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


class KeyVaultState:
    """Everything one emulated vault holds, guarded by one lock (the TLS server serves requests on threads)."""

    def __init__(self, name: str, tenant_id: str, role_assignments: Mapping[str, set[str]] | None = None) -> None:
        self.name = name
        self.tenant_id = tenant_id
        self._roles: dict[str, set[str]] = {k.lower(): set(v) for k, v in (role_assignments or {}).items()}
        self.certificates: dict[str, StoredCertificate] = {}
        self.lock = threading.RLock()
        # Test knobs.
        self.clock: Callable[[], dt.datetime] = _utcnow
        self.polls_before_completion = 0  # GET .../pending answers inProgress this many times, then completes
        self.retry_after_seconds = 1  # Retry-After on the 202 and on in-progress polls (Key Vault sends 10)
        self.max_validity_months = 12  # ADP's Azure Policy on vaults: certificates valid at most 12 months
        self.misbehaviours: list[Misbehaviour] = []

    @classmethod
    def from_seed(cls, kv: KeyVaultSeed, tenant: TenantSeed) -> KeyVaultState:
        """Resolve the seed's ``(application, role)`` pairs to client ids; unknown names raise ``ValueError``."""
        by_name = {a.name.lower(): a.client_id for a in tenant.applications}
        by_id = {a.client_id.lower(): a.client_id for a in tenant.applications}
        roles: dict[str, set[str]] = {}
        for application, role in kv.role_assignments:
            client_id = by_name.get(application.lower()) or by_id.get(application.lower())
            if client_id is None:
                raise ValueError(
                    f"key vault {kv.name}: role assignment names unknown application {application!r} "
                    f"of tenant {tenant.name}"
                )
            if role not in ROLE_ACTIONS:
                raise ValueError(
                    f"key vault {kv.name}: unknown role {role!r}; allowed: {', '.join(sorted(ROLE_ACTIONS))}"
                )
            roles.setdefault(client_id.lower(), set()).add(role)
        return cls(kv.name, tenant.id, roles)

    # -- RBAC -----------------------------------------------------------------------------------------------
    def assign_role(self, client_id: str, role: str) -> None:
        if role not in ROLE_ACTIONS:
            raise ValueError(f"unknown role {role!r}; allowed: {', '.join(sorted(ROLE_ACTIONS))}")
        with self.lock:
            self._roles.setdefault(client_id.lower(), set()).add(role)

    def remove_role(self, client_id: str, role: str) -> None:
        with self.lock:
            self._roles.get(client_id.lower(), set()).discard(role)

    def roles_of(self, client_id: str) -> set[str]:
        with self.lock:
            return set(self._roles.get(client_id.lower(), set()))

    def allows(self, client_id: str, action: str) -> bool:
        return any(action in ROLE_ACTIONS[role] for role in self.roles_of(client_id))

    # -- misbehaviour (test knob) -----------------------------------------------------------------------------
    def misbehave(
        self,
        kind: MisbehaviourKind = "answer",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        inflated_size: int = 1 << 30,
        next_origin: str | None = None,
        repeat: bool = False,
        method: str | None = None,
        path_contains: str | None = None,
        count: int | None = None,
    ) -> Misbehaviour:
        """Answer matching requests (after authentication) as a broken or hostile vault would; see the docstring.

        ``count`` None means every matching request, for ever (until :meth:`behave`).
        """
        if kind not in ("answer", "gzip_bomb", "endless_next_link"):
            raise ValueError(f"unknown misbehaviour {kind!r}; allowed: answer, gzip_bomb, endless_next_link")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None: for ever)")
        if kind == "gzip_bomb":
            gzip_of_zeros(inflated_size)  # validates, and builds it once before the first request
        raw = body.encode("utf-8") if isinstance(body, str) else body
        misbehaviour = Misbehaviour(
            kind,
            status,
            dict(headers or {}),
            raw,
            inflated_size,
            next_origin.rstrip("/") if next_origin else None,
            repeat,
            method.upper() if method else None,
            path_contains,
            count,
        )
        with self.lock:
            self.misbehaviours.append(misbehaviour)
        return misbehaviour

    def behave(self) -> None:
        """Forget every misbehaviour."""
        with self.lock:
            self.misbehaviours.clear()

    def next_misbehaviour(self, method: str, path: str) -> tuple[Misbehaviour, int] | None:
        with self.lock:
            for misbehaviour in self.misbehaviours:
                if misbehaviour.matches(method, path):
                    if misbehaviour.remaining is not None:
                        misbehaviour.remaining -= 1
                    misbehaviour.served += 1
                    return misbehaviour, misbehaviour.served
        return None

    # -- objects --------------------------------------------------------------------------------------------
    def certificate(self, name: str) -> StoredCertificate | None:
        with self.lock:
            return self.certificates.get(name.lower())

    def now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC)


def _new_version(
    policy: CertificatePolicy, now: dt.datetime, previous: CertificateVersion | None
) -> CertificateVersion:
    """Generate the key pair (or reuse the previous one when the policy says so) and the self-signed certificate."""
    if policy.reuse_key and previous is not None and previous.private_key.key_size == policy.key_size:
        key = previous.private_key
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=policy.key_size)
    subject = policy.subject_name
    flags = {usage: usage in policy.key_usage for usage in _KEY_USAGES}
    usage = x509.KeyUsage(
        digital_signature=flags["digitalSignature"],
        content_commitment=flags["nonRepudiation"],
        key_encipherment=flags["keyEncipherment"],
        data_encipherment=flags["dataEncipherment"],
        key_agreement=flags["keyAgreement"],
        key_cert_sign=flags["keyCertSign"],
        crl_sign=flags["cRLSign"],
        encipher_only=flags["encipherOnly"] and flags["keyAgreement"],
        decipher_only=flags["decipherOnly"] and flags["keyAgreement"],
    )
    now = now.replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - NBF_BACKDATE)
        .not_valid_after(add_months(now, policy.validity_months))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if policy.ekus:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(e) for e in policy.ekus]), critical=False
        )
    certificate = builder.sign(key, hashes.SHA256())
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    created = _epoch(now)
    return CertificateVersion(uuid.uuid4().hex, policy, key, certificate, csr, created, created)


# -- the service -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    app_id: str
    object_id: str
    issuer: str


class KeyVaultService:
    """``handle(EmuRequest) -> EmuResponse`` for one vault origin (see the module docstring for what it serves)."""

    def __init__(
        self,
        state: KeyVaultState,
        *,
        origin: str,
        tenant_id: str,
        verify: TokenVerifier,
        directory: Directory,
        authority: str = DEFAULT_AUTHORITY,
    ) -> None:
        self.state = state
        self.origin = origin.rstrip("/")
        self.tenant_id = tenant_id
        self._verify = verify
        self._directory = directory
        self._authority = authority.rstrip("/")

    def handle(self, req: EmuRequest) -> EmuResponse:
        try:
            caller = self._authenticate(req)
            scripted = self.state.next_misbehaviour(req.method, req.path)
            if scripted is not None:
                return self._misbehave(req, *scripted)
            query = parse_qs(req.query, keep_blank_values=True)
            self._check_api_version(query)
            return self._route(req, query, caller)
        except VaultError as err:
            return err.response()

    def _misbehave(self, req: EmuRequest, misbehaviour: Misbehaviour, served: int) -> EmuResponse:
        if misbehaviour.kind == "gzip_bomb":
            headers = {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"}
            return EmuResponse(200, {**headers, **misbehaviour.headers}, gzip_of_zeros(misbehaviour.inflated_size))
        if misbehaviour.kind == "endless_next_link":
            origin = misbehaviour.next_origin or self.origin
            page = 1 if misbehaviour.repeat else served
            token = base64.urlsafe_b64encode(json.dumps({"offset": page * MAX_PAGE}).encode()).decode("ascii")
            link = f"{origin}{req.path}?api-version={API_VERSIONS[-1]}&$skiptoken={quote(token)}&maxresults={MAX_PAGE}"
            return _json(200, {"value": [], "nextLink": link}, misbehaviour.headers)
        return EmuResponse(misbehaviour.status, dict(misbehaviour.headers), misbehaviour.body)

    # -- authentication and authorization -----------------------------------------------------------------
    def _challenge(self, message: str) -> VaultError:
        header = f'Bearer authorization="{self._authority}/{self.tenant_id}", resource="{AUDIENCE}"'
        return VaultError(401, "Unauthorized", message, headers={"WWW-Authenticate": header})

    def _authenticate(self, req: EmuRequest) -> _Caller:
        auth = req.headers.get("Authorization", "") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            claims = self._verify(token.strip(), AUDIENCE)
        except InvalidToken as exc:
            if exc.wrong_tenant:
                raise self._challenge(f"AKV10032: Invalid issuer. {exc.reason}") from None
            raise self._challenge(f"AKV10022: Invalid token: {exc.reason}") from None
        tid = str(claims.get("tid", ""))
        if tid.lower() != self.tenant_id.lower():
            raise self._challenge(
                f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{self.tenant_id}/, "
                f"found https://sts.windows.net/{tid}/."
            )
        return _Caller(str(claims.get("appid", "")), str(claims.get("oid", "")), str(claims.get("iss", "")))

    def _authorize(self, caller: _Caller, action: str, resource: str) -> None:
        known = self._directory.service_principal(self.tenant_id, caller.app_id) is not None
        if known and self.state.allows(caller.app_id, action):
            return
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: appid={caller.app_id};oid={caller.object_id};iss={caller.issuer}\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/"
            f"providers/microsoft.keyvault/vaults/{self.state.name.lower()}/{resource}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: null \r\n"
            f"Vault: {self.state.name};location=uksouth\r\n"
        )
        raise VaultError(403, "Forbidden", message, inner="ForbiddenByRbac")

    @staticmethod
    def _check_api_version(query: Mapping[str, list[str]]) -> None:
        versions = query.get("api-version", [])
        if not versions or not versions[0]:
            raise _bad("The api-version query parameter is required (use 7.4 or 7.5).")
        if versions[0] not in API_VERSIONS:
            raise _bad(
                f"The specified version ({versions[0]}) is not recognized. Consider using the latest supported "
                f"version ({API_VERSIONS[-1]})."
            )

    # -- routing --------------------------------------------------------------------------------------------
    def _route(self, req: EmuRequest, query: Mapping[str, list[str]], caller: _Caller) -> EmuResponse:
        parts = [unquote(p) for p in req.path.split("/")[1:]]
        if parts and parts[-1] == "" and len(parts) > 2:
            parts = parts[:-1]  # "/certificates/{name}/" is the latest version, as the SDKs send it
        method = req.method.upper()
        if len(parts) >= 2 and parts[0] in ("certificates", "secrets"):
            _check_name(parts[1])
        match parts:
            case ["certificates", name, "create"] if method == "POST":
                self._authorize(caller, ACTION_CREATE, f"certificates/{name.lower()}")
                return self._create(name, req, query["api-version"][0])
            case ["certificates", name, "pending"] if method == "GET":
                self._authorize(caller, ACTION_READ, f"certificates/{name.lower()}")
                return self._pending(name)
            case ["certificates", name, "versions"] if method == "GET":
                self._authorize(caller, ACTION_READ, f"certificates/{name.lower()}")
                return self._versions(name, query, query["api-version"][0])
            case ["certificates", name] if method == "GET":
                self._authorize(caller, ACTION_READ, f"certificates/{name.lower()}")
                return self._get(name, None)
            case ["certificates", name, version] if method == "GET":
                self._authorize(caller, ACTION_READ, f"certificates/{name.lower()}")
                return self._get(name, version)
            case ["certificates", name] if method == "PATCH":
                self._authorize(caller, ACTION_UPDATE, f"certificates/{name.lower()}")
                return self._update(name, None, req)
            case ["certificates", name, version] if method == "PATCH":
                self._authorize(caller, ACTION_UPDATE, f"certificates/{name.lower()}")
                return self._update(name, version, req)
            case ["secrets", name] if method == "GET":
                self._authorize(caller, ACTION_GET_SECRET, f"secrets/{name.lower()}")
                return self._secret(name, None)
            case ["secrets", name, version] if method == "GET":
                self._authorize(caller, ACTION_GET_SECRET, f"secrets/{name.lower()}")
                return self._secret(name, version)
        raise VaultError(404, "NotFound", f"{method} {req.path} is not served by this emulated vault.")

    # -- helpers --------------------------------------------------------------------------------------------
    def _stored(self, name: str) -> StoredCertificate:
        stored = self.state.certificates.get(name.lower())
        if stored is None:
            raise _not_found("certificate", name)
        return stored

    def _found_version(self, stored: StoredCertificate, version: str | None) -> CertificateVersion:
        if version is None:
            return stored.latest()
        found = stored.version(version) if _VERSION.match(version.lower()) else None
        if found is None:
            raise _not_found("certificate", f"{stored.name}/{version}")
        return found

    def _bundle(self, stored: StoredCertificate, v: CertificateVersion) -> dict[str, Any]:
        base = self.origin
        bundle: dict[str, Any] = {"id": f"{base}/certificates/{stored.name}/{v.version}"}
        if v.issued:
            bundle.update(
                {
                    "kid": f"{base}/keys/{stored.name}/{v.version}",
                    "sid": f"{base}/secrets/{stored.name}/{v.version}",
                    "x5t": v.x5t,
                    "cer": base64.b64encode(v.der).decode("ascii"),
                }
            )
        bundle["attributes"] = v.attributes()
        bundle["policy"] = stored.policy.to_json(base, stored.name)
        if v.tags:
            bundle["tags"] = dict(v.tags)
        if stored.operation is not None and stored.operation.status == "inProgress":
            bundle["pending"] = {"id": f"{base}/certificates/{stored.name}/pending"}
        return bundle

    def _operation_json(self, stored: StoredCertificate, op: PendingOperation) -> dict[str, Any]:
        pending = stored.version(op.version)
        assert pending is not None
        body: dict[str, Any] = {
            "id": f"{self.origin}/certificates/{stored.name}/pending",
            "issuer": {"name": "Self"},
            "csr": base64.b64encode(pending.csr.public_bytes(serialization.Encoding.DER)).decode("ascii"),
            "cancellation_requested": False,
            "status": op.status,
            "request_id": op.request_id,
        }
        if op.status == "completed":
            body["target"] = f"{self.origin}/certificates/{stored.name}"
        else:
            body["status_details"] = STATUS_DETAILS
        return body

    # -- operations -----------------------------------------------------------------------------------------
    def _create(self, name: str, req: EmuRequest, api_version: str) -> EmuResponse:
        body = _request_object(req)
        now = self.state.now()
        attributes = body.get("attributes", {})
        if not isinstance(attributes, dict) or not isinstance(attributes.get("enabled", True), bool):
            raise _bad("Property attributes must be an object whose 'enabled' is true or false.")
        tags = _tags(body.get("tags", {}))
        with self.state.lock:
            stored = self.state.certificates.get(name.lower())
            if stored is not None and stored.operation is not None and stored.operation.status == "inProgress":
                raise VaultError(
                    409,
                    "Conflict",
                    f"Certificate {stored.name} has a pending operation in progress; "
                    "wait for it to complete or delete it before creating a new version.",
                )
            if "policy" in body:
                policy = CertificatePolicy.parse(
                    body["policy"], now=_epoch(now), max_validity_months=self.state.max_validity_months
                )
            elif stored is not None:
                policy = stored.policy
            else:
                raise _bad(f"A policy is required to create the first version of certificate {name}.")
            previous = stored.latest_issued() if stored is not None else None
        # Key generation is slow (RSA 4096 takes a second): outside the lock, then recorded under it.
        version = _new_version(policy, now, previous)
        version.enabled = attributes.get("enabled", True)
        version.tags = tags
        with self.state.lock:
            stored = self.state.certificates.get(name.lower())
            if stored is not None and stored.operation is not None and stored.operation.status == "inProgress":
                raise VaultError(409, "Conflict", f"Certificate {stored.name} has a pending operation in progress.")
            if stored is None:
                stored = StoredCertificate(name, policy)
                self.state.certificates[name.lower()] = stored
            elif "policy" in body:
                stored.policy = replace(policy, created=stored.policy.created, updated=_epoch(now))
            stored.versions.append(version)
            op = PendingOperation(uuid.uuid4().hex, version.version, self.state.polls_before_completion)
            stored.operation = op
            body_json = self._operation_json(stored, op)
        location = (
            f"{self.origin}/certificates/{quote(stored.name)}/pending?api-version={api_version}"
            f"&request_id={op.request_id}"
        )
        return _json(202, body_json, {"Location": location, "Retry-After": str(self.state.retry_after_seconds)})

    def _pending(self, name: str) -> EmuResponse:
        with self.state.lock:
            stored = self._stored(name)
            op = stored.operation
            if op is None:
                raise VaultError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name}")
            headers: dict[str, str] = {}
            if op.status == "inProgress":
                if op.polls_left > 0:
                    op.polls_left -= 1
                    headers["Retry-After"] = str(self.state.retry_after_seconds)
                else:
                    version = stored.version(op.version)
                    assert version is not None
                    version.issued = True
                    op.status = "completed"
            return _json(200, self._operation_json(stored, op), headers)

    def _get(self, name: str, version: str | None) -> EmuResponse:
        with self.state.lock:
            stored = self._stored(name)
            return _json(200, self._bundle(stored, self._found_version(stored, version)))

    def _versions(self, name: str, query: Mapping[str, list[str]], api_version: str) -> EmuResponse:
        size = _page_size(query)
        start = _skip_token(query)
        with self.state.lock:
            stored = self.state.certificates.get(name.lower())
            versions = list(stored.versions) if stored is not None else []
            items = []
            for v in versions[start : start + size]:
                assert stored is not None
                item: dict[str, Any] = {
                    "id": f"{self.origin}/certificates/{stored.name}/{v.version}",
                    "attributes": v.attributes(),
                }
                if v.issued:
                    item["x5t"] = v.x5t
                if v.tags:
                    item["tags"] = dict(v.tags)
                items.append(item)
        next_link = None
        if start + size < len(versions):
            token = base64.urlsafe_b64encode(json.dumps({"offset": start + size}).encode()).decode("ascii")
            next_link = (
                f"{self.origin}/certificates/{quote(name)}/versions?api-version={api_version}"
                f"&$skiptoken={quote(token)}&maxresults={size}"
            )
        return _json(200, {"value": items, "nextLink": next_link})

    def _update(self, name: str, version: str | None, req: EmuRequest) -> EmuResponse:
        body = _request_object(req)
        attributes = body.get("attributes", {})
        if not isinstance(attributes, dict):
            raise _bad("Property attributes must be a JSON object.")
        enabled = attributes.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise _bad("Property attributes.enabled must be true or false.")
        tags = _tags(body["tags"]) if "tags" in body else None
        with self.state.lock:
            stored = self._stored(name)
            found = self._found_version(stored, version)
            if enabled is not None:
                found.enabled = enabled
            if tags is not None:
                found.tags = tags
            found.updated = _epoch(self.state.now())
            return _json(200, self._bundle(stored, found))

    def _secret(self, name: str, version: str | None) -> EmuResponse:
        with self.state.lock:
            stored = self.state.certificates.get(name.lower())
            found: CertificateVersion | None = None
            if stored is not None:
                if version is None:
                    found = stored.latest_issued()
                elif _VERSION.match(version.lower()):
                    found = stored.version(version)
                    if found is not None and not found.issued:
                        found = None
            if stored is None or found is None:
                raise _not_found("secret", name if version is None else f"{name}/{version}")
            if not found.enabled:
                raise VaultError(
                    403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
                )
            attributes = found.attributes()
            return _json(
                200,
                {
                    "value": found.secret_value(),
                    "contentType": found.policy.content_type,
                    "id": f"{self.origin}/secrets/{stored.name}/{found.version}",
                    "managed": True,
                    "attributes": attributes,
                    "kid": f"{self.origin}/keys/{stored.name}/{found.version}",
                },
            )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise _bad(f"The request URI contains an invalid name: {name}")


def _not_found(kind: str, what: str) -> VaultError:
    code = "CertificateNotFound" if kind == "certificate" else "SecretNotFound"
    return VaultError(
        404,
        code,
        f"A {kind} with (name/id) {what} was not found in this key vault. If you recently deleted this {kind} "
        f"you may be able to recover it using the correct recovery command. For help resolving this issue, "
        f"please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _request_object(req: EmuRequest) -> dict[str, Any]:
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError):
        raise _bad("The request body is not valid JSON.") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    return body


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad("Property tags must be an object of string values.")
    return dict(value)


def _page_size(query: Mapping[str, list[str]]) -> int:
    raw = query.get("maxresults", [""])[0]
    if not raw:
        return MAX_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise _bad(f"The value of maxresults must be between 1 and {MAX_PAGE} (got {raw}).")
    return int(raw)


def _skip_token(query: Mapping[str, list[str]]) -> int:
    raw = query.get("$skiptoken", [""])[0]
    if not raw:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise _bad("The $skiptoken is not valid.") from None
    if not isinstance(offset, int) or offset < 0:
        raise _bad("The $skiptoken is not valid.")
    return offset
