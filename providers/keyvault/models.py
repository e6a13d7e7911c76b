"""What the client sends to and reads from Key Vault's certificates API, as small immutable values.

The client speaks to Key Vault through ``azure-keyvault-certificates``; these values are what the rest of the
package sees of it (``to_sdk`` / ``from_sdk`` are the only places SDK models are read or built). Only public
material appears here: a certificate version carries its ``cer`` (the DER certificate, base64) and metadata;
private keys stay inside Key Vault and have no representation in this package. No Pulumi import.

``from_sdk`` raises ``ValueError`` (or ``TypeError``) for an answer that lacks what Key Vault always sends; the
client turns that into ``MalformedResponse``.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from azure.keyvault import certificates as sdk
from cryptography import x509

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
CLIENT_AUTH_EKU = "1.3.6.1.5.5.7.3.2"


@dataclass(frozen=True)
class CertificatePolicy:
    """The policy of an app-registration certificate: self-signed RSA, key generated in the vault, not reused.

    ``renew_before_days`` becomes an ``EmailContacts`` lifetime action, never ``AutoRenew``: renewal is done by the
    Pulumi resource (two slots, ADR 5), and a version Key Vault made on its own would not be registered on the app.
    """

    subject: str
    validity_months: int
    renew_before_days: int | None = None
    key_size: int = 2048
    content_type: str = PKCS12

    def to_sdk(self) -> sdk.CertificatePolicy:
        actions = None
        if self.renew_before_days is not None:
            actions = [
                sdk.LifetimeAction(
                    sdk.CertificatePolicyAction.email_contacts, days_before_expiry=self.renew_before_days
                )
            ]
        return sdk.CertificatePolicy(
            issuer_name="Self",
            subject=self.subject,
            validity_in_months=self.validity_months,
            exportable=True,
            key_type=sdk.KeyType.rsa,
            key_size=self.key_size,
            reuse_key=False,
            content_type=sdk.CertificateContentType(self.content_type),
            enhanced_key_usage=[CLIENT_AUTH_EKU],
            key_usage=[sdk.KeyUsageType.digital_signature, sdk.KeyUsageType.key_encipherment],
            lifetime_actions=actions,
        )


@dataclass(frozen=True)
class CertificateOperation:
    """A pending create operation (``GET /certificates/{name}/pending``)."""

    name: str
    status: str  # inProgress | completed | failed | cancelled (compared case-insensitively)
    request_id: str = ""
    error_code: str = ""
    error_message: str = ""

    @property
    def completed(self) -> bool:
        return self.status.lower() == "completed"

    @property
    def in_progress(self) -> bool:
        return self.status.lower() == "inprogress"

    def failure(self) -> str:
        """How it ended, for an error line: ``failed (Code: message)``."""
        detail = f" ({self.error_code}: {self.error_message})" if self.error_code or self.error_message else ""
        return f"{self.status}{detail}"

    @classmethod
    def from_sdk(cls, name: str, op: sdk.CertificateOperation) -> CertificateOperation:
        status = op.status
        if not isinstance(status, str) or not status:
            raise ValueError("the pending operation has no status")
        error = op.error
        return cls(
            name=name,
            status=status,
            request_id=str(op.request_id or ""),
            error_code=str(getattr(error, "code", "") or ""),
            error_message=str(getattr(error, "message", "") or ""),
        )


def _moment(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise TypeError("a date is not a date")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class CertificateVersion:
    """One version's metadata and, when issued, its public certificate. ``cer`` is None in version listings."""

    name: str
    version: str
    enabled: bool
    created: dt.datetime | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    thumbprint: str | None = None  # SHA-1 of the DER certificate, upper-case hex; None while the version is pending
    cer: str | None = None  # base64 DER of the public certificate
    policy_subject: str | None = None
    policy_validity_months: int | None = None
    policy_renew_before_days: int | None = None

    @property
    def issued(self) -> bool:
        return self.thumbprint is not None

    def subject(self) -> x509.Name | None:
        """The certificate's subject, read from ``cer`` (None without it)."""
        if self.cer is None:
            return None
        return x509.load_der_x509_certificate(base64.b64decode(self.cer)).subject

    @classmethod
    def from_properties(cls, props: sdk.CertificateProperties, **extra: Any) -> CertificateVersion:
        """From a version-listing item (metadata only) or the properties of a full certificate."""
        name, version = props.name, props.version
        if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
            raise ValueError("the answer names no certificate version")
        thumbprint = props.x509_thumbprint
        if thumbprint is not None and not isinstance(thumbprint, bytes | bytearray):
            raise TypeError("x5t is not base64url")
        return cls(
            name=name,
            version=version,
            enabled=props.enabled is True,
            created=_moment(props.created_on),
            not_before=_moment(props.not_before),
            not_after=_moment(props.expires_on),
            thumbprint=bytes(thumbprint).hex().upper() if thumbprint else None,
            **extra,
        )

    @classmethod
    def from_sdk(cls, cert: sdk.KeyVaultCertificate) -> CertificateVersion:
        """From a certificate bundle (``GET /certificates/{name}[/{version}]``, ``PATCH``)."""
        if not isinstance(cert, sdk.KeyVaultCertificate):
            raise TypeError("the answer is not a certificate bundle")
        policy = cert.policy
        renew: int | None = None
        for action in (policy.lifetime_actions if policy is not None else None) or []:
            if isinstance(action.days_before_expiry, int):
                renew = action.days_before_expiry
        validity = policy.validity_in_months if policy is not None else None
        cer = cert.cer
        if cert.properties is None:
            raise ValueError("the certificate bundle has no id")
        if cer is not None and not isinstance(cer, bytes | bytearray):
            raise TypeError("cer is not base64")
        return cls.from_properties(
            cert.properties,
            cer=base64.b64encode(bytes(cer)).decode("ascii") if cer else None,
            policy_subject=policy.subject if policy is not None else None,
            policy_validity_months=validity if isinstance(validity, int) else None,
            policy_renew_before_days=renew,
        )
