"""The platform rules, once: what each requires, why, how to comply, and its check of one resource.

Each `Rule` has a ``validate(resource, context)`` that returns one message per violation of ONE resource, shaped
as the engine passes it (see `resources`); the CrossGuard policy pack calls it for every resource of a preview
or update. `adp-identity validate` checks the service files with the same rules, through the predicates
below (`privileged_role`, `certificate_problems`, `service_account_subject_problem`, `tag_problems`,
`secret_scope_problem`, `secret_config_key`) and the same messages, before any resource exists.

``context`` is None when the stack's declarations could not be read: rules that need them then report that
they cannot check (fail closed), rules that do not still check.

Names of roles are compared with ``providers.dataverse.models.name_key`` (the comparison the Dataverse client
resolves roles with: case-insensitive, runs of whitespace as one), and a name that `disguised_name` flags is a
violation in itself, so no spelling slips past the policy while resolving to the real role.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adp_identity.rules.context import StackContext
from adp_identity.rules.resources import (
    APPLICATION,
    APPLICATION_CERTIFICATE,
    APPLICATION_FEDERATED_CREDENTIAL,
    APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL,
    APPLICATION_PASSWORD,
    APPLICATION_USER,
    DYNAMIC_RESOURCE,
    FEDERATED_IDENTITY_CREDENTIAL,
    KEY_VAULT_CERTIFICATE,
    KEY_VAULT_SECRET,
    ROLE_ASSIGNMENT,
    SERVICE_PRINCIPAL_PASSWORD,
    TAGGABLE,
    USER_ASSIGNED_IDENTITY,
    Resource,
    is_unknown,
    whole_number,
)
from adp_yaml import show
from providers.dataverse.models import disguised_name, name_key

PROJECT = "adp-identity"
SECRET_CONFIG_PREFIX = "secret-"
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
PRIVILEGED_ROLES: tuple[str, ...] = ("System Administrator", "System Customizer")
MAX_CERTIFICATE_MONTHS = 12
DEFAULT_CERTIFICATE_MONTHS = 12
DEFAULT_RENEW_BEFORE_DAYS = 30
# Key Vault: a lifetime action's daysBeforeExpiry lies in 1..validity_in_months x 27 (Microsoft Learn, Key Vault
# certificates, LifetimeAction); 27 days is also shorter than any month, so the renewal starts inside the validity.
KEY_VAULT_DAYS_PER_MONTH = 27
# ADP's tag set: the Azure Service Operator helm library's commonTags (DEFRA/adp-aso-helm-library, templates/
# _helpers.tpl: Environment, ServiceCode, ServiceName, ServiceType, ManagedBy, Restriction) and the owning Team.
REQUIRED_TAGS: tuple[str, ...] = (
    "Environment",
    "ManagedBy",
    "Restriction",
    "ServiceCode",
    "ServiceName",
    "ServiceType",
    "Team",
)
SERVICE_TAGS: tuple[str, ...] = ("ServiceName", "Team")  # set per service by the program; the rest by the stack
RESTRICTION = "AUTOMATED CHANGES ONLY"
EXCEPTION_HOW = "an entry in stacks/policy-exceptions.yaml naming the approver and the expiry date (docs/policies.md)"

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_SUBJECT = re.compile(rf"system:serviceaccount:(?P<ns>{_LABEL}):(?P<sa>{_LABEL}(?:\.{_LABEL})*)")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SECRET_SCOPE = re.compile(
    rf"/subscriptions/{_GUID}/resourceGroups/[A-Za-z0-9_().-]{{1,90}}/providers/Microsoft\.KeyVault/vaults/"
    r"[A-Za-z0-9-]{3,24}/secrets/[A-Za-z0-9-]{1,127}",
    re.IGNORECASE,
)
_VAULT_SCOPE = re.compile(r".*/providers/Microsoft\.KeyVault/vaults/[^/]+/?", re.IGNORECASE)
_RESOURCE_GROUP_SCOPE = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/?", re.IGNORECASE)
_SUBSCRIPTION_SCOPE = re.compile(r"/subscriptions/[^/]+/?|/", re.IGNORECASE)
_DURATION = re.compile(
    r"(?:(?P<h>[0-9]+(?:\.[0-9]+)?)h)?(?:(?P<m>[0-9]+(?:\.[0-9]+)?)m)?(?:(?P<s>[0-9]+(?:\.[0-9]+)?)s)?"
)

ResourceCheck = Callable[[Resource, StackContext | None], list[str]]
StackCheck = Callable[[Sequence[Resource], StackContext | None], list[tuple[Resource, str]]]


@dataclass(frozen=True)
class Rule:
    """One platform rule. ``validate`` checks one resource; ``validate_stack`` (if any) the whole stack."""

    id: str
    title: str  # the requirement, one sentence (the policy's description)
    why: str
    fix: str  # how to comply
    resource_types: tuple[str, ...]
    validate: ResourceCheck
    validate_stack: StackCheck | None = None

    @property
    def description(self) -> str:
        return f"{self.title} Fix: {self.fix} Exceptions: {EXCEPTION_HOW}."


# --- predicates shared with the desired-state front end ------------------------------------------------------


def shown(value: str) -> str:
    """A short excerpt of a name for a message, whitespace other than a space and invisible characters escaped
    (``\\u00a0``), so that a disguise is visible in the message."""
    escaped = "".join(
        ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else f"\\u{ord(ch):04x}" for ch in value[:200]
    )
    return show(escaped)


def privileged_role(role: str, forbidden: Sequence[str]) -> str | None:
    """The forbidden role `role` names (compared as the Dataverse client resolves names), or None."""
    key = name_key(role)
    return next((name for name in forbidden if name_key(name) == key), None)


def certificate_problems(validity_months: int, renew_before_days: int) -> list[tuple[str, str, str]]:
    """(field, what is wrong, what is allowed) for a Key Vault certificate's lifetime and renewal window."""
    problems: list[tuple[str, str, str]] = []
    if validity_months < 1 or validity_months > MAX_CERTIFICATE_MONTHS:
        problems.append(
            (
                "validity_months",
                f"a certificate valid {validity_months} months",
                f"1..{MAX_CERTIFICATE_MONTHS} months (certificates are valid at most a year)",
            )
        )
        return problems
    limit = validity_months * KEY_VAULT_DAYS_PER_MONTH
    if renew_before_days < 1 or renew_before_days > limit:
        months = f"{validity_months} month" + ("s" if validity_months > 1 else "")
        problems.append(
            (
                "renew_before_days",
                f"renewal {renew_before_days} days before expiry is not inside the certificate validity ({months})",
                f"1..{limit} days (validity_months x {KEY_VAULT_DAYS_PER_MONTH}, Key Vault's limit)",
            )
        )
    return problems


def service_account_subject_problem(subject: str) -> str | None:
    """Why `subject` is not exactly ``system:serviceaccount:<namespace>:<service account>``, or None."""
    if "*" in subject or "?" in subject:
        return f"subject {shown(subject)} holds a wildcard: it would trust every matching service account"
    if not _SUBJECT.fullmatch(subject):
        return f"subject {shown(subject)} is not system:serviceaccount:<namespace>:<service account>"
    if len(subject.rsplit(":", 1)[1]) > 253:
        return f"subject {shown(subject)} names a service account longer than 253 characters"
    return None


def tag_problems(tags: Mapping[str, Any], required: Iterable[str] = REQUIRED_TAGS) -> list[str]:
    """What is missing or wrong in a resource's tags, one phrase each."""
    problems = [f"tag {key} is missing" for key in required if not (isinstance(tags.get(key), str) and tags[key])]
    restriction = tags.get("Restriction")
    if isinstance(restriction, str) and restriction and restriction != RESTRICTION:
        problems.append(f"tag Restriction is {shown(restriction)}, not '{RESTRICTION}'")
    return problems


def secret_scope_problem(scope: str) -> str | None:
    """Why a role assignment scope is not exactly one Key Vault secret, or None."""
    if _SECRET_SCOPE.fullmatch(scope):
        return None
    if _VAULT_SCOPE.fullmatch(scope):
        return f"scope {shown(scope)} is a whole Key Vault"
    if _RESOURCE_GROUP_SCOPE.fullmatch(scope):
        return f"scope {shown(scope)} is a whole resource group"
    if _SUBSCRIPTION_SCOPE.fullmatch(scope):
        return f"scope {shown(scope)} is a whole subscription"
    return f"scope {shown(scope)} is not one Key Vault secret"


def secret_config_key(vault_secret_name: str) -> str:
    """The full Pulumi config key holding the value of Key Vault secret ``<service>-<name>``."""
    return f"{PROJECT}:{SECRET_CONFIG_PREFIX}{vault_secret_name}"


def subject_of(resource: Resource, context: StackContext | None) -> str:
    """The subject an exception names: ``<service>[/<environment>]`` for a declared service, else the name."""
    services = sorted(context.services, key=len, reverse=True) if context is not None else []
    service = next((s for s in services if resource.name == s or resource.name.startswith(s + "-")), None)
    if service is None:
        return resource.name
    if resource.is_application_user and context is not None:
        url = resource.get("environment_url")
        environment = context.environment_at(url) if isinstance(url, str) else None
        if environment is not None:
            return f"{service}/{environment.name}"
    return service


def _no_context(what: str) -> list[str]:
    return [
        f"cannot check {what}: the stack's settings and service files could not be read (run adp-identity validate)"
    ]


# --- the rules' checks of one resource -----------------------------------------------------------------------


def _no_password(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.type == APPLICATION_PASSWORD:
        return [f"ApplicationPassword '{resource.name}' adds a client secret to an application"]
    if resource.type == SERVICE_PRINCIPAL_PASSWORD:
        return [f"ServicePrincipalPassword '{resource.name}' adds a client secret to a service principal"]
    if resource.type == APPLICATION and resource.get("password") not in (None, {}):
        return [f"application '{resource.name}' declares a password credential (its password block)"]
    return []


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar months later, the day clamped to the month's length (31 January + 1 month = 28/29 February)."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _duration(value: str) -> dt.timedelta | None:
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or match is None:
        return None
    return dt.timedelta(hours=float(match["h"] or 0), minutes=float(match["m"] or 0), seconds=float(match["s"] or 0))


def _certificate_lifetime(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.is_key_vault_certificate:
        months_value = resource.get("validity_months", DEFAULT_CERTIFICATE_MONTHS)
        days_value = resource.get("renew_before_days", DEFAULT_RENEW_BEFORE_DAYS)
        if is_unknown(months_value) or is_unknown(days_value):
            return []
        months, days = whole_number(months_value), whole_number(days_value)
        if months is None or days is None:
            return [
                f"validity_months {show(months_value)} / renew_before_days {show(days_value)} are not whole numbers"
            ]
        return [f"{what}; allowed: {allowed}" for _field, what, allowed in certificate_problems(months, days)]
    if resource.type != APPLICATION_CERTIFICATE and not resource.type.endswith(
        ":servicePrincipalCertificate:ServicePrincipalCertificate"
    ):
        return []
    start_value, end_value = resource.get("startDate"), resource.get("endDate")
    relative = resource.get("endDateRelative")
    if is_unknown(start_value) or is_unknown(end_value) or is_unknown(relative):
        return []
    start = _parse_time(start_value) or dt.datetime.now(dt.UTC)
    if isinstance(relative, str) and relative:
        span = _duration(relative)
        if span is None:
            return [f"endDateRelative {show(relative)} is not a duration such as 8760h"]
        end: dt.datetime | None = start + span
    else:
        end = _parse_time(end_value)
    if end is None:
        return ["the certificate has no end date: its validity cannot be shown to be at most 12 months"]
    latest = _add_months(start, MAX_CERTIFICATE_MONTHS) + dt.timedelta(days=1)
    if end > latest:
        return [
            f"certificate valid from {start.date().isoformat()} to {end.date().isoformat()}, longer than"
            f" {MAX_CERTIFICATE_MONTHS} months"
        ]
    return []


def _privileged_role(resource: Resource, context: StackContext | None) -> list[str]:
    if not resource.is_application_user:
        return []
    roles = resource.get("security_roles")
    url = resource.get("environment_url")
    if not isinstance(roles, list | tuple):
        return []
    forbidden = context.forbidden_roles if context is not None else PRIVILEGED_ROLES
    environment = context.environment_at(url) if context is not None and isinstance(url, str) else None
    # an environment this stack does not declare (or one not known yet) is treated as production: fail closed
    production = environment.production if environment is not None else True
    where = f"production environment '{environment.name}'" if environment is not None else "an undeclared environment"
    messages: list[str] = []
    for role in roles:
        if not isinstance(role, str):
            continue
        reason = disguised_name(role)
        if reason is not None:
            messages.append(f"role {shown(role)} {reason}: a disguised name could resolve to a privileged role")
            continue
        match = privileged_role(role, forbidden)
        if production and match is not None:
            messages.append(
                f"role {shown(role)} ({match}) is privileged and may not be held in {where}"
                f" (privileged: {', '.join(forbidden)})"
            )
    return messages


def _user_in_tenant(resource: Resource, context: StackContext | None) -> list[str]:
    if not resource.is_application_user:
        return []
    if context is None:
        return _no_context("the application user's environment and tenant")
    messages: list[str] = []
    url = resource.get("environment_url")
    if isinstance(url, str) and context.environment_at(url) is None:
        declared = ", ".join(f"{e.name} ({e.url})" for e in context.environments.values()) or "none"
        messages.append(
            f"environment {shown(url)} is not an environment of stack '{context.stack}' (tenant"
            f" {context.tenant_id}); its environments: {declared}"
        )
    tenant = resource.get("tenant_id")
    if isinstance(tenant, str) and tenant.strip().strip("{}").lower() != context.tenant_id.lower():
        messages.append(f"tenant_id {shown(tenant)} is not the stack's tenant {context.tenant_id}")
    return messages


_IDENTITY_TYPES = (USER_ASSIGNED_IDENTITY, APPLICATION)


def _users_bound(resources: Sequence[Resource], context: StackContext | None) -> list[tuple[Resource, str]]:
    """Every application user's application (client) id comes from an identity registered in this stack."""
    identities = {r.urn for r in resources if r.type in _IDENTITY_TYPES and r.urn}
    client_ids = {
        str(r.get("clientId")).lower()
        for r in resources
        if r.type in _IDENTITY_TYPES and isinstance(r.get("clientId"), str)
    }
    found: list[tuple[Resource, str]] = []
    for user in resources:
        if not user.is_application_user:
            continue
        if any(urn in identities for urn in user.property_dependencies.get("application_id", ())):
            continue
        application_id = user.get("application_id")
        if isinstance(application_id, str) and application_id.lower() in client_ids:
            continue
        shown_id = shown(application_id) if isinstance(application_id, str) else "a value"
        found.append(
            (
                user,
                f"application_id {shown_id} is the client id of no managed identity or app registration of stack"
                f" '{context.stack if context else '?'}': an application user is bound to an identity its own"
                " tenant's stack declares",
            )
        )
    return found


def _federated_subject(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.type == APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL:
        return [f"flexible federated credential '{resource.name}' matches subjects by expression (wildcards)"]
    if resource.type not in (FEDERATED_IDENTITY_CREDENTIAL, APPLICATION_FEDERATED_CREDENTIAL):
        return []
    messages: list[str] = []
    subject = resource.get("subject")
    if isinstance(subject, str):
        problem = service_account_subject_problem(subject)
        if problem is not None:
            messages.append(problem)
    elif subject is None:
        messages.append("the credential has no subject")
    issuer = resource.get("issuer")
    if isinstance(issuer, str):
        if context is None:
            messages.extend(_no_context(f"issuer {shown(issuer)}"))
        elif issuer not in context.issuers:
            clusters = ", ".join(context.clusters) or "none"
            messages.append(
                f"issuer {shown(issuer)} is not the OIDC issuer of a cluster of stack '{context.stack}' ({clusters})"
            )
    audiences = resource.get("audiences")
    if isinstance(audiences, list | tuple) and not is_unknown(audiences) and list(audiences) != [FEDERATION_AUDIENCE]:
        messages.append(f"audiences are {', '.join(map(str, audiences)) or 'empty'}, not exactly {FEDERATION_AUDIENCE}")
    return messages


def _secret_source(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.type != KEY_VAULT_SECRET:
        return []
    name = resource.get("secretName")
    if not isinstance(name, str):
        return [] if is_unknown(name) else ["the secret has no secretName"]
    if context is None:
        return _no_context(f"Key Vault secret {shown(name)}")
    owner = next(
        (s for s in context.services.values() if any(name == f"{s.name}-{n}" for n in s.secrets)),
        None,
    )
    messages: list[str] = []
    if owner is None:
        messages.append(
            f"Key Vault secret {shown(name)} is not <service>-<name> for a secret a service file of stack"
            f" '{context.stack}' declares in key_vault_secrets"
        )
    key = secret_config_key(name)
    if key not in context.secure_config_keys:
        messages.append(
            f"its value has no encrypted Pulumi config value {key} (a secure: value in Pulumi.<stack>.yaml)"
        )
        return messages
    properties = resource.get("properties")
    value = properties.get("value") if isinstance(properties, Mapping) else None
    expected = context.secret_values.get(key)
    if is_unknown(value) or expected is None:
        return messages
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), str(expected).encode()):
        messages.append(f"its value is not the value of the Pulumi secret config key {key}")
    return messages


def _platform_tags(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.type not in TAGGABLE and not (resource.type.startswith("azure-native:") and "tags" in resource.props):
        return []
    tags = resource.get("tags")
    if is_unknown(tags):
        return []
    problems = tag_problems(tags if isinstance(tags, Mapping) else {})
    return ["; ".join(problems)] if problems else []


def _one_secret_scope(resource: Resource, context: StackContext | None) -> list[str]:
    if resource.type != ROLE_ASSIGNMENT:
        return []
    scope = resource.get("scope")
    if not isinstance(scope, str):
        return [] if is_unknown(scope) else ["the role assignment has no scope"]
    problem = secret_scope_problem(scope)
    return [problem] if problem else []


_DYNAMIC = (APPLICATION_USER, DYNAMIC_RESOURCE)

RULES: tuple[Rule, ...] = (
    Rule(
        "no-password-credentials",
        "No password credential (client secret) on any application or service principal.",
        "ADP's rule: no client secrets to store or rotate; app registrations authenticate with certificates.",
        "register a Key Vault-held certificate (app_registration.certificate), never a password or client secret.",
        (APPLICATION, APPLICATION_PASSWORD, SERVICE_PRINCIPAL_PASSWORD),
        _no_password,
    ),
    Rule(
        "certificate-lifetime",
        "Certificates are valid at most 12 months and renewed inside their validity.",
        "A short-lived certificate limits what a leaked key can do; renewal inside the window keeps the workload's "
        "certificate registered (docs/adr/0005).",
        "validity_months 1..12 and renew_before_days at most validity_months x 27.",
        (KEY_VAULT_CERTIFICATE, DYNAMIC_RESOURCE, APPLICATION_CERTIFICATE),
        _certificate_lifetime,
    ),
    Rule(
        "no-privileged-role-in-production",
        "No privileged security role (policy.forbidden_roles_in_production) for an application user in a production "
        "environment, and no role name that could disguise another.",
        "Never Administrator rights in production; names are compared as Dataverse resolves them.",
        "grant least-privilege roles; write role names with single spaces and no invisible characters.",
        _DYNAMIC,
        _privileged_role,
    ),
    Rule(
        "application-user-identity-in-tenant",
        "Every application user is bound to an identity declared in the same tenant's stack, in an environment of "
        "that tenant.",
        "An application user must never let another tenant's identity into an environment.",
        "declare the environment in the stack's dataverse_environments and bind the user to the service's managed "
        "identity or its app_registration.",
        _DYNAMIC,
        _user_in_tenant,
        _users_bound,
    ),
    Rule(
        "federated-credential-subject",
        "Federated credentials trust exactly system:serviceaccount:<namespace>:<service account>, no wildcard, "
        "issued by one of the stack's AKS clusters, for audience api://AzureADTokenExchange.",
        "A wildcard or foreign issuer would let other workloads sign in as the service.",
        "list the namespace and service account in workload_identity.federations, on clusters of the stack.",
        (FEDERATED_IDENTITY_CREDENTIAL, APPLICATION_FEDERATED_CREDENTIAL, APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL),
        _federated_subject,
    ),
    Rule(
        "key-vault-secret-from-secret-config",
        "Key Vault secret values come only from encrypted Pulumi config, and secret names are <service>-<name>.",
        "A value in clear in a file or computed elsewhere would end up in a pull request or in state.",
        "list the name in the service's key_vault_secrets; the platform team sets the value with "
        "`pulumi config set --secret secret-<service>-<name>`.",
        (KEY_VAULT_SECRET,),
        _secret_source,
    ),
    Rule(
        "platform-tags",
        "Every taggable Azure resource carries ADP's tags: " + ", ".join(REQUIRED_TAGS) + ".",
        "ADP finds, bills and protects resources by these tags (Restriction: AUTOMATED CHANGES ONLY).",
        "set Environment, ServiceCode and ServiceType in the stack's tags (adp-identity:tenant.tags); the program "
        "adds ServiceName and Team.",
        (USER_ASSIGNED_IDENTITY, KEY_VAULT_SECRET),
        _platform_tags,
    ),
    Rule(
        "role-assignment-one-secret",
        "Role assignments are scoped to one Key Vault secret, never to a whole vault, resource group or subscription.",
        "Per-secret RBAC: a service reads its own secrets and nothing else.",
        "list each secret the service reads in key_vault_secrets; each gets its own role assignment.",
        (ROLE_ASSIGNMENT,),
        _one_secret_scope,
    ),
)
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
RULE_IDS: tuple[str, ...] = tuple(RULES_BY_ID)
