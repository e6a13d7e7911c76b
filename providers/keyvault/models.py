"""What the client sends to and reads from Key Vault's certificates API, as small immutable values.

Only public material appears here: a certificate version carries its ``cer`` (the DER certificate, base64) and
metadata; private keys stay inside Key Vault and have no representation in this package.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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

    def to_json(self) -> dict[str, Any]:
        policy: dict[str, Any] = {
            "key_props": {"exportable": True, "kty": "RSA", "key_size": self.key_size, "reuse_key": False},
            "secret_props": {"contentType": self.content_type},
            "x509_props": {
                "subject": self.subject,
                "validity_months": self.validity_months,
                "key_usage": ["digitalSignature", "keyEncipherment"],
                "ekus": [CLIENT_AUTH_EKU],
            },
            "issuer": {"name": "Self"},
        }
        if self.renew_before_days is not None:
            policy["lifetime_actions"] = [
                {
                    "trigger": {"days_before_expiry": self.renew_before_days},
                    "action": {"action_type": "EmailContacts"},
                }
            ]
        return policy


@dataclass(frozen=True)
class CertificateOperation:
    """A pending create operation (``GET /certificates/{name}/pending``)."""

    name: str
    status: str  # inProgress | completed | failed | cancelled (compared case-insensitively)
    request_id: str = ""
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None

    @property
    def completed(self) -> bool:
        return self.status.lower() == "completed"

    @property
    def in_progress(self) -> bool:
        return self.status.lower() == "inprogress"

    @classmethod
    def from_json(cls, name: str, body: Mapping[str, Any], retry_after: float | None) -> CertificateOperation:
        error = body.get("error") or {}
        return cls(
            name=name,
            status=str(body.get("status", "")),
            request_id=str(body.get("request_id", "")),
            error_code=str(error.get("code", "")) if isinstance(error, dict) else "",
            error_message=str(error.get("message", "")) if isinstance(error, dict) else "",
            retry_after=retry_after,
        )


def _moment(epoch: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC) if isinstance(epoch, int | float) else None


@dataclass(frozen=True)
class CertificateVersion:
    """One version's metadata and, when issued, its public certificate. ``cer`` is None in version listings."""

    name: str
    version: str
    enabled: bool
    created: dt.datetime | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    x5t: str | None = None  # base64url SHA-1 of the DER certificate; None while the version is pending
    cer: str | None = None  # base64 DER of the public certificate
    policy_subject: str | None = None
    policy_validity_months: int | None = None
    policy_renew_before_days: int | None = None

    @property
    def issued(self) -> bool:
        return self.x5t is not None

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint as upper-case hex (what Entra ID and the portal show)."""
        if self.x5t is None:
            return ""
        return base64.urlsafe_b64decode(self.x5t + "=" * (-len(self.x5t) % 4)).hex().upper()

    def subject(self) -> x509.Name | None:
        """The certificate's subject, read from ``cer`` (None without it)."""
        if self.cer is None:
            return None
        return x509.load_der_x509_certificate(base64.b64decode(self.cer)).subject

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CertificateVersion:
        """From a certificate bundle or a version-listing item (``id`` ends ``/certificates/{name}/{version}``)."""
        segments = urlsplit(str(body["id"])).path.rstrip("/").split("/")
        attributes = body.get("attributes") or {}
        policy = body.get("policy") or {}
        x509_props = policy.get("x509_props") or {}
        renew: int | None = None
        for action in policy.get("lifetime_actions") or []:
            days = (action.get("trigger") or {}).get("days_before_expiry")
            if isinstance(days, int):
                renew = days
        validity = x509_props.get("validity_months")
        return cls(
            name=segments[-2],
            version=segments[-1],
            enabled=bool(attributes.get("enabled", False)),
            created=_moment(attributes.get("created")),
            not_before=_moment(attributes.get("nbf")),
            not_after=_moment(attributes.get("exp")),
            x5t=body.get("x5t"),
            cer=body.get("cer"),
            policy_subject=x509_props.get("subject"),
            policy_validity_months=validity if isinstance(validity, int) else None,
            policy_renew_before_days=renew,
        )
