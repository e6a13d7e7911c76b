"""Constrained value types of the desired-state schema (GUIDs, Kubernetes names, Azure names, URLs).

Each type is an ``Annotated[str, ...]`` carrying a validator that explains itself (what is wrong, what is
allowed, in the words of the platform rule it enforces) and the JSON Schema of the same rule, so that the
checked-in schema an editor uses and the loader agree. Errors are raised as `invalid(...)`, a pydantic custom
error whose context carries ``problem`` and ``allowed``; the loader turns it into a one-line error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError

from adp_identity.desired.errors import show
from adp_identity.rules.catalog import shown
from providers.dataverse.models import disguised_name

ERROR_TYPE = "adp_invalid"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def invalid(problem: str, allowed: str, *, key: str | None = None, rule: str | None = None) -> PydanticCustomError:
    """A validation error the loader renders as ``<problem>; allowed: <allowed>`` (under `key` if given).

    `rule` names the platform rule (adp_identity.rules) the refusal enforces; such a refusal is an attempt the
    program could not build at all (a wildcard subject), so no exception can waive it.
    """
    context: dict[str, Any] = {"problem": problem, "allowed": allowed}
    if key is not None:
        context["key"] = key
    if rule is not None:
        context["rule"] = rule
    return PydanticCustomError(ERROR_TYPE, "{problem}", context)


_WILDCARD_WHY = {
    "federated-credential-subject": "a federated credential trusts exactly one system:serviceaccount:<namespace>:"
    "<service account>",
    "role-assignment-one-secret": "access is granted to one secret at a time, never to the whole Key Vault",
}


def _suggestion(value: str, pattern: str, max_length: int) -> str | None:
    """The lower-kebab spelling of `value` when that would be valid (``AHWR_Claims`` -> ``ahwr-claims``)."""
    candidate = re.sub(r"[\s_.]+", "-", value.strip().lower()).strip("-")
    candidate = re.sub(r"-{2,}", "-", candidate)
    if candidate and candidate != value and len(candidate) <= max_length and re.fullmatch(pattern, candidate):
        return candidate
    return None


@dataclass(frozen=True)
class TextRule:
    """A string rule: a regular expression plus a length limit, explained in `allowed`."""

    what: str  # "a GUID"
    pattern: str  # full-match; also the JSON Schema "pattern" (ECMA 262 compatible)
    allowed: str  # shown after "allowed:" in errors
    max_length: int
    min_length: int = 1
    lower: bool = False  # normalise to lower case after checking (GUIDs)
    suggest: bool = False  # offer the lower-kebab spelling when that is valid
    wildcard_rule: str | None = None  # the platform rule a wildcard here would break

    def __call__(self, value: str) -> str:
        if self.wildcard_rule is not None and ("*" in value or "?" in value):
            raise invalid(
                f"{show(value)} holds a wildcard: {_WILDCARD_WHY[self.wildcard_rule]}",
                f"{self.allowed}; one exact name per entry (list several entries instead of a wildcard)",
                rule=self.wildcard_rule,
            )
        if len(value) > self.max_length + 256 or not re.fullmatch(self.pattern, value):
            hint = _suggestion(value, self.pattern, self.max_length) if self.suggest else None
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            raise invalid(f"{show(value)} is not {self.what}{did_you_mean}", self.allowed)
        if len(value) < self.min_length:
            raise invalid(f"{show(value)} is shorter than {self.min_length} characters", self.allowed)
        if len(value) > self.max_length:
            raise invalid(f"{show(value)} is longer than {self.max_length} characters", self.allowed)
        return value.lower() if self.lower else value

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": f"^(?:{self.pattern})$",
            "minLength": self.min_length,
            "maxLength": self.max_length,
        }


# What a name character may not be, for editors (ECMA 262): whitespace (\s includes the no-break space), C0/C1
# controls and the invisible format characters; the loader's own check is `disguised_name`.
_NOT_NAME_CHAR = r"[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"


@dataclass(frozen=True)
class FreeTextRule:
    """Display names (roles, business units): words separated by single spaces, nothing invisible, bounded.

    Names are compared one way everywhere (``providers.dataverse.models.name_key``), so a name that could disguise
    another (``System\u00a0Administrator``, ``System  Customizer``, a tab, a zero-width space) is refused here,
    before a policy could compare one spelling while Dataverse resolves the other (issue 10).
    """

    what: str
    max_length: int

    @property
    def allowed(self) -> str:
        return (
            f"{self.what}: 1..{self.max_length} characters, words separated by single spaces; no tab, no-break"
            " space or invisible character"
        )

    def __call__(self, value: str) -> str:
        if not value or len(value) > self.max_length:
            raise invalid(f"{shown(value)} has {len(value)} characters", self.allowed)
        if value != value.strip():
            raise invalid(f"{shown(value)} has leading or trailing spaces", self.allowed)
        reason = disguised_name(value)
        if reason is not None:
            raise invalid(f"{shown(value)} {reason}", self.allowed)
        return value

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": f"^{_NOT_NAME_CHAR}+(?: {_NOT_NAME_CHAR}+)*$",
        }


@dataclass(frozen=True)
class UrlRule:
    """An https URL. `origin_only` refuses any path; `hosts` limits the host (loopback always allowed)."""

    what: str
    allowed: str
    origin_only: bool = False
    host_suffix: str | None = None  # e.g. ".dynamics.com"
    max_length: int = 2048

    def __call__(self, value: str) -> str:
        if len(value) > self.max_length or any(ch.isspace() for ch in value):
            raise invalid(f"{show(value)} is not {self.what}", self.allowed)
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            raise invalid(f"{show(value)} is not {self.what}", self.allowed) from None
        if parts.scheme != "https":
            scheme = parts.scheme or "no scheme"
            raise invalid(f"{show(value)} uses {scheme}, not https", self.allowed)
        if not host or parts.username is not None or parts.password is not None:
            raise invalid(f"{show(value)} is not {self.what}", self.allowed)
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise invalid(f"{show(value)} has a query or fragment", self.allowed)
        loopback = host in LOOPBACK_HOSTS
        if self.host_suffix and not loopback and not host.endswith(self.host_suffix):
            raise invalid(f"{show(value)} is not {self.what}", self.allowed)
        if self.origin_only:
            if parts.path not in ("", "/"):
                raise invalid(f"{show(value)} has a path", self.allowed)
            return value.rstrip("/")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uri", "pattern": "^https://", "maxLength": self.max_length}


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"

GUID = TextRule(
    "a GUID",
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "a GUID like 3f2b9c4e-8a51-4d7e-9b0a-6c1d2e3f4a5b",
    36,
    min_length=36,
    lower=True,
)
KEBAB_NAME = TextRule(
    "a lower-kebab name",
    r"[a-z][a-z0-9]*(-[a-z0-9]+)*",
    "lower-kebab: a-z, 0-9 and single hyphens, starting with a letter, at most 63 characters (e.g. ffc-pay-batch)",
    63,
    suggest=True,
)
SECRET_NAME = TextRule(
    KEBAB_NAME.what,
    KEBAB_NAME.pattern,
    KEBAB_NAME.allowed,
    KEBAB_NAME.max_length,
    suggest=True,
    wildcard_rule="role-assignment-one-secret",
)
ENVIRONMENT_NAME = TextRule(
    "an environment short name",
    r"[a-z][a-z0-9]*(-[a-z0-9]+)*",
    "a short lower-case name such as dev, tst, pre, prd (a-z, 0-9, hyphens; at most 20 characters)",
    20,
)
# Kubernetes: namespaces are RFC 1123 labels, service accounts RFC 1123 subdomains (DNS-1123).
NAMESPACE = TextRule(
    "a Kubernetes namespace (DNS-1123 label)",
    _LABEL,
    "a DNS-1123 label: a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters",
    63,
    suggest=True,
    wildcard_rule="federated-credential-subject",
)
SERVICE_ACCOUNT = TextRule(
    "a Kubernetes service account name (DNS-1123 subdomain)",
    rf"{_LABEL}(\.{_LABEL})*",
    "a DNS-1123 subdomain: dot-separated labels of a-z, 0-9 and '-', each starting and ending with a letter"
    " or digit, at most 253 characters",
    253,
    suggest=True,
    wildcard_rule="federated-credential-subject",
)
AKS_CLUSTER_NAME = TextRule(
    "an AKS cluster name",
    r"[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?",
    "an AKS cluster name: letters, digits, '-' and '_', starting and ending with a letter or digit,"
    " at most 63 characters (e.g. SNDADPINFAK1401)",
    63,
)
RESOURCE_GROUP = TextRule(
    "a resource group name",
    r"[A-Za-z0-9_().-]*[A-Za-z0-9_()-]",
    "a resource group name: letters, digits, '_', '-', '.', '(' and ')', not ending with '.', at most 90 characters",
    90,
)
KEY_VAULT_NAME = TextRule(
    "a Key Vault name",
    r"[A-Za-z](-?[A-Za-z0-9])*",
    "a Key Vault name: 3..24 letters, digits and single hyphens, starting with a letter, ending with a letter"
    " or digit (e.g. sndadpinfkv1401)",
    24,
    min_length=3,
)
LOCATION = TextRule("an Azure region name", r"[a-z][a-z0-9]*", "an Azure region name such as uksouth or ukwest", 40)
RESOURCE_NAME_PREFIX = TextRule(
    "an ADP resource name prefix",
    r"[A-Za-z][A-Za-z0-9]*",
    "letters and digits, starting with a letter, at most 20 characters (e.g. SNDADPINF)",
    20,
    min_length=2,
)
RESOURCE_CODE = TextRule("a resource type code", r"[A-Za-z]+", "1..5 letters (e.g. MI)", 5)
TWO_DIGITS = TextRule(
    "two digits", r"[0-9]{2}", "two digits in quotes (e.g. '14'); a bare 14 is a number, not text", 2, min_length=2
)
DISPLAY_NAME = TextRule(
    "an app registration display name",
    r"[A-Za-z0-9][A-Za-z0-9 ._-]*",
    "letters, digits, spaces, '.', '_' and '-', starting with a letter or digit, at most 120 characters"
    " (e.g. ADP-FFC-PayBatch)",
    120,
)
TAG_NAME = TextRule(
    "an Azure tag name",
    r"[^<>%&\\?/]+",
    "an Azure tag name: 1..512 characters without < > % & \\ ? /",
    512,
)
TAG_VALUE = TextRule(
    "an Azure tag value", r"[^\x00-\x1f]*", "an Azure tag value of at most 256 characters", 256, min_length=0
)
ROLE_NAME = FreeTextRule("a Dataverse security role name", 100)
BUSINESS_UNIT_NAME = FreeTextRule("a Dataverse business unit name", 160)
HTTPS_URL = UrlRule("an https URL", "an https URL without query or fragment (an AKS OIDC issuer URL)")
DATAVERSE_URL = UrlRule(
    "a Dataverse environment URL",
    "https://<org>.crm<N>.dynamics.com (the origin only, no path), or a loopback https origin for the local emulator",
    origin_only=True,
    host_suffix=".dynamics.com",
)
KEY_VAULT_URI = UrlRule(
    "a Key Vault URI",
    "https://<key vault name>.vault.azure.net (no path), or a loopback https origin for the local emulator",
    origin_only=True,
)

Guid = Annotated[str, Strict(), AfterValidator(GUID), WithJsonSchema(GUID.json_schema())]
KebabName = Annotated[str, Strict(), AfterValidator(KEBAB_NAME), WithJsonSchema(KEBAB_NAME.json_schema())]
SecretName = Annotated[str, Strict(), AfterValidator(SECRET_NAME), WithJsonSchema(SECRET_NAME.json_schema())]
EnvironmentName = Annotated[
    str, Strict(), AfterValidator(ENVIRONMENT_NAME), WithJsonSchema(ENVIRONMENT_NAME.json_schema())
]
Namespace = Annotated[str, Strict(), AfterValidator(NAMESPACE), WithJsonSchema(NAMESPACE.json_schema())]
ServiceAccountName = Annotated[
    str, Strict(), AfterValidator(SERVICE_ACCOUNT), WithJsonSchema(SERVICE_ACCOUNT.json_schema())
]
AksClusterName = Annotated[
    str, Strict(), AfterValidator(AKS_CLUSTER_NAME), WithJsonSchema(AKS_CLUSTER_NAME.json_schema())
]
ResourceGroupName = Annotated[
    str, Strict(), AfterValidator(RESOURCE_GROUP), WithJsonSchema(RESOURCE_GROUP.json_schema())
]
KeyVaultName = Annotated[str, Strict(), AfterValidator(KEY_VAULT_NAME), WithJsonSchema(KEY_VAULT_NAME.json_schema())]
Location = Annotated[str, Strict(), AfterValidator(LOCATION), WithJsonSchema(LOCATION.json_schema())]
ResourceNamePrefix = Annotated[
    str, Strict(), AfterValidator(RESOURCE_NAME_PREFIX), WithJsonSchema(RESOURCE_NAME_PREFIX.json_schema())
]
ResourceCode = Annotated[str, Strict(), AfterValidator(RESOURCE_CODE), WithJsonSchema(RESOURCE_CODE.json_schema())]
TwoDigits = Annotated[str, Strict(), AfterValidator(TWO_DIGITS), WithJsonSchema(TWO_DIGITS.json_schema())]
DisplayName = Annotated[str, Strict(), AfterValidator(DISPLAY_NAME), WithJsonSchema(DISPLAY_NAME.json_schema())]
TagName = Annotated[str, Strict(), AfterValidator(TAG_NAME), WithJsonSchema(TAG_NAME.json_schema())]
TagValue = Annotated[str, Strict(), AfterValidator(TAG_VALUE), WithJsonSchema(TAG_VALUE.json_schema())]
RoleName = Annotated[str, Strict(), AfterValidator(ROLE_NAME), WithJsonSchema(ROLE_NAME.json_schema())]
BusinessUnitName = Annotated[
    str, Strict(), AfterValidator(BUSINESS_UNIT_NAME), WithJsonSchema(BUSINESS_UNIT_NAME.json_schema())
]
HttpsUrl = Annotated[str, Strict(), AfterValidator(HTTPS_URL), WithJsonSchema(HTTPS_URL.json_schema())]
DataverseUrl = Annotated[str, Strict(), AfterValidator(DATAVERSE_URL), WithJsonSchema(DATAVERSE_URL.json_schema())]
KeyVaultUri = Annotated[str, Strict(), AfterValidator(KEY_VAULT_URI), WithJsonSchema(KEY_VAULT_URI.json_schema())]
