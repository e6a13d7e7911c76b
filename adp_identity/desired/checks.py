"""Rules that span files: a service against its stack's settings, services against each other, secrets, policy.

Every part of a file that validates on its own is checked (`partial`), so a schema error in one part of a file
never hides a cross-file or policy error in another part (issue 11: every error in one run). What is checked:

- the service name equals the file name, and no two files declare the same service;
- federations name clusters the stack declares (rule ``federated-credential-subject``: the issuer is one of the
  stack's clusters), each cluster once, each service account once, and the derived names and counts fit Entra's
  limits (20 federated credentials per identity, name lengths);
- Dataverse access names an environment of the stack, once per environment; ``principal: app_registration``
  needs an ``app_registration`` block (rule ``application-user-identity-in-tenant``); roles are listed once; the
  policy's privileged roles are refused in production environments, compared as the Dataverse client compares
  names (``name_key``), and in an environment the stack does not declare, which is treated as production (rule
  ``no-privileged-role-in-production``);
- every Key Vault secret has an encrypted (``secure:``) Pulumi config value (rule
  ``key-vault-secret-from-secret-config``; a WARNING unless `strict`, because the platform team sets the value
  after the team's pull request); no plaintext value; no secret config key that no service declares; Key Vault
  secret names unique in the stack's vault;
- the stack's tags give every resource ADP's tag set (rule ``platform-tags``);
- ``azure-native``/``azuread`` provider settings, when set, agree with the tenant settings.

Rule errors carry the rule's id and, where a reviewed exception may waive them, their subject.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from adp_identity.desired import naming
from adp_identity.desired.errors import DesiredStateError, KeyPath, format_key_path, show
from adp_identity.desired.partial import ServiceView, TenantView, service_view, tenant_view
from adp_identity.desired.schema import ServiceSpec, TenantSettings
from adp_identity.desired.yamlsafe import YamlDocument
from adp_identity.rules.catalog import SERVICE_TAGS, privileged_role, shown, tag_problems
from providers.dataverse.models import name_key

PROJECT = "adp-identity"
TENANT_KEY = f"{PROJECT}:tenant"
SECRET_KEY_PREFIX = f"{PROJECT}:{naming.SECRET_CONFIG_PREFIX}"

SecretStatus = Literal["secure", "plaintext", "malformed"]

# provider config key -> TenantSettings attribute it must agree with
_PROVIDER_SETTINGS: dict[str, str] = {
    "azure-native:location": "location",
    "azure-native:subscriptionId": "subscription_id",
    "azure-native:tenantId": "tenant_id",
    "azuread:tenantId": "tenant_id",
}


@dataclass(frozen=True)
class ServiceFile:
    """One service file: `spec` is None when the file failed its schema (its errors are reported); `view` holds
    the parts of it that are valid on their own."""

    display: str  # e.g. "stacks/defradev/ffc-pay-web.yaml"
    stem: str  # file name without .yaml
    spec: ServiceSpec | None
    document: YamlDocument | None = None
    view: ServiceView | None = None

    @property
    def parts(self) -> ServiceView:
        return self.view if self.view is not None else service_view(None, self.spec)


@dataclass(frozen=True)
class StackConfig:
    """The stack's Pulumi config as far as these checks need it."""

    stack: str
    display: str  # e.g. "stacks/Pulumi.defradev.yaml"
    tenant: TenantSettings | None  # None when the tenant settings failed (their parts are in `view`)
    secrets: Mapping[str, SecretStatus]  # full config key (adp-identity:secret-...) -> how its value is held
    provider_settings: Mapping[str, object]  # other namespaces' keys -> values (non-secret only)
    document: YamlDocument | None = None
    view: TenantView | None = None

    @property
    def parts(self) -> TenantView:
        return self.view if self.view is not None else tenant_view(None, self.tenant)


class _Report:
    def __init__(self) -> None:
        self.errors: list[DesiredStateError] = []

    def add(
        self,
        file: str,
        document: YamlDocument | None,
        path: KeyPath,
        message: str,
        allowed: str,
        *,
        rule: str | None = None,
        subject: str | None = None,
        warning: bool = False,
    ) -> None:
        line = document.line_of(path) if document is not None else None
        self.errors.append(
            DesiredStateError(
                file,
                format_key_path(path),
                message,
                allowed,
                line,
                rule=rule,
                subject=subject,
                severity="warning" if warning else "error",
                waivable=subject is not None,
            )
        )


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_stack(
    config: StackConfig, services: Sequence[ServiceFile], *, strict: bool = True
) -> list[DesiredStateError]:
    """Every cross-file and policy error of one stack, services in the given order, then the stack file's own.

    `strict` (deploy): a declared secret without a secure value is an error; otherwise a warning.
    """
    report = _Report()
    tenant = config.parts
    # service name -> the file that owns it: the file named after it, else the first declaring it
    owners = {f.parts.service: f.display for f in services if f.parts.service == f.stem}
    vault_secrets: dict[str, str] = {}  # Key Vault secret name -> file declaring it first
    declared_secret_keys: set[str] = set()
    for file in services:
        parts = file.parts
        service = parts.service
        named_right = service is not None and service == file.stem
        if service is not None:
            owner = owners.setdefault(service, file.display)
            if owner != file.display:
                report.add(
                    file.display,
                    file.document,
                    ("service",),
                    f"service '{service}' is already declared in {owner}",
                    "one file per service",
                )
            if not named_right:
                report.add(
                    file.display,
                    file.document,
                    ("service",),
                    f"'{service}' does not match the file name '{file.stem}.yaml'",
                    f"'{file.stem}' (the file name without .yaml)",
                )
        # derived names (identity, secrets) need the right service name; everything else is checked regardless
        if named_right and service is not None:
            _check_secrets(
                report,
                config,
                file=file,
                service=service,
                vault_secrets=vault_secrets,
                declared=declared_secret_keys,
                strict=strict,
            )
        _check_dataverse(report, config, tenant, file, service or file.stem)
        _check_workload_identity(report, config.stack, tenant, file, service if named_right else None)
    _check_stack_secrets(report, config, services, declared_secret_keys)
    _check_tags(report, config, tenant)
    _check_provider_settings(report, config, tenant)
    return report.errors


def _check_workload_identity(
    report: _Report, stack: str, tenant: TenantView, file: ServiceFile, service: str | None
) -> None:
    parts = file.parts
    federations = parts.federations or ()
    clusters = tenant.clusters
    accounts: dict[tuple[str, str], int] = {}
    app_config = (naming.APP_CONFIG_NAMESPACE, naming.APP_CONFIG_SERVICE_ACCOUNT)
    for federation in federations:
        path: KeyPath = ("workload_identity", "federations", federation.index)
        listed: set[str] = set()
        for position, cluster in federation.clusters or ():
            if clusters is not None and cluster not in clusters:
                report.add(
                    file.display,
                    file.document,
                    (*path, "clusters", position),
                    f"unknown AKS cluster {show(cluster)}: no issuer of stack '{stack}' would trust it"
                    + _did_you_mean(cluster, list(clusters)),
                    f"clusters of stack '{stack}': {', '.join(clusters)}",
                    rule="federated-credential-subject",
                )
            elif cluster in listed:
                report.add(
                    file.display,
                    file.document,
                    (*path, "clusters", position),
                    f"cluster {show(cluster)} is listed twice",
                    "each cluster once",
                )
            listed.add(cluster)
        account = federation.account
        if account is None:
            continue
        if account == app_config and parts.app_config_provider:
            report.add(
                file.display,
                file.document,
                path,
                f"'{account[0]}/{account[1]}' is already federated by app_config_provider: true",
                "remove this entry, or set app_config_provider: false",
            )
        elif account in accounts:
            report.add(
                file.display,
                file.document,
                path,
                f"'{account[0]}/{account[1]}' is already federated by federations[{accounts[account]}]",
                "each namespace/service account once (list several clusters in one entry)",
            )
        else:
            accounts[account] = federation.index

    if service is None or tenant.identity_prefix is None:
        return
    identity = naming.managed_identity_name(tenant.identity_prefix, service)
    if len(identity) > naming.MAX_MANAGED_IDENTITY_NAME:
        report.add(
            file.display,
            file.document,
            ("service",),
            f"managed identity name '{identity}' has {len(identity)} characters",
            f"at most {naming.MAX_MANAGED_IDENTITY_NAME} characters",
        )
    complete = parts.federations is not None and all(f.complete for f in federations)
    if not complete or clusters is None or parts.app_config_provider is None:
        return  # the counts and names need every federation: they are checked once the entries are valid
    refs = [
        naming.ServiceAccountRef(*f.account, None if f.clusters is None else [c for _, c in f.clusters])
        for f in federations
        if f.account is not None
    ]
    if parts.app_config_provider:
        refs.append(naming.ServiceAccountRef(naming.APP_CONFIG_NAMESPACE, naming.APP_CONFIG_SERVICE_ACCOUNT))
    credentials = naming.federated_credentials(identity, clusters, refs)
    if len(credentials) > naming.MAX_FEDERATED_CREDENTIALS:
        report.add(
            file.display,
            file.document,
            ("workload_identity",),
            f"{len(credentials)} federated credentials (service accounts x clusters)",
            f"at most {naming.MAX_FEDERATED_CREDENTIALS} per managed identity (Entra limit)",
        )
    longest = max((c.name for c in credentials), key=len, default="")
    if len(longest) > naming.MAX_FEDERATED_CREDENTIAL_NAME:
        report.add(
            file.display,
            file.document,
            ("service",),
            f"federated credential name '{longest}' has {len(longest)} characters",
            f"at most {naming.MAX_FEDERATED_CREDENTIAL_NAME} characters (shorten the service name)",
        )


def _check_dataverse(report: _Report, config: StackConfig, tenant: TenantView, file: ServiceFile, service: str) -> None:
    parts = file.parts
    environments = tenant.environments
    forbidden = tenant.forbidden_roles
    seen: dict[str, int] = {}
    for access in parts.dataverse or ():
        path: KeyPath = ("dataverse", access.index)
        name = access.environment
        environment = environments.get(name) if environments is not None and name is not None else None
        unknown = environments is not None and name is not None and environment is None
        if unknown:
            assert environments is not None and name is not None
            declared = ", ".join(environments) or "none declared"
            report.add(
                file.display,
                file.document,
                (*path, "environment"),
                f"unknown Dataverse environment {show(name)}" + _did_you_mean(name, list(environments)),
                f"environments of stack '{config.stack}': {declared}",
            )
        if name is not None:
            if name in seen:
                report.add(
                    file.display,
                    file.document,
                    (*path, "environment"),
                    f"environment {show(name)} already has an entry: dataverse[{seen[name]}]",
                    "one entry per environment",
                )
            else:
                seen[name] = access.index
        if access.principal == "app_registration" and parts.has_app_registration is False:
            report.add(
                file.display,
                file.document,
                (*path, "principal"),
                "app_registration, but the service declares no app_registration: the application user would be bound"
                " to an identity the stack does not declare",
                "managed_identity, or add an app_registration block to the service",
                rule="application-user-identity-in-tenant",
            )
        roles: set[str] = set()
        # an environment not known to be anything else is treated as production, so that a typo in its name (or
        # broken tenant settings) never hides the policy: fail closed
        production = environment.production if environment is not None else True
        for position, role in access.roles:
            key = name_key(role)
            if key in roles:
                report.add(
                    file.display,
                    file.document,
                    (*path, "security_roles", position),
                    f"role {shown(role)} is listed twice",
                    "each role once",
                )
            roles.add(key)
            match = privileged_role(role, forbidden)
            if production and match is not None:
                if environment is not None:
                    where = f"production environment '{name}'"
                elif unknown:
                    where = f"environment {show(name)}, which the stack does not declare (treated as production)"
                else:
                    where = "an environment that cannot be read yet (treated as production)"
                report.add(
                    file.display,
                    file.document,
                    (*path, "security_roles", position),
                    f"role {shown(role)} is forbidden in {where}",
                    "roles other than " + ", ".join(forbidden) + " (policy.forbidden_roles_in_production)",
                    rule="no-privileged-role-in-production",
                    subject=f"{service}/{name}" if name is not None else service,
                )


def _check_secrets(
    report: _Report,
    config: StackConfig,
    *,
    file: ServiceFile,
    service: str,
    vault_secrets: dict[str, str],
    declared: set[str],
    strict: bool,
) -> None:
    listed: set[str] = set()
    for index, name in file.parts.secrets or ():
        path: KeyPath = ("key_vault_secrets", index)
        if name in listed:
            report.add(file.display, file.document, path, f"secret {show(name)} is listed twice", "each secret once")
            continue
        listed.add(name)
        vault_name = naming.key_vault_secret_name(service, name)
        if len(vault_name) > naming.MAX_KEY_VAULT_SECRET_NAME:
            report.add(
                file.display,
                file.document,
                path,
                f"Key Vault secret name '{vault_name}' has {len(vault_name)} characters",
                f"at most {naming.MAX_KEY_VAULT_SECRET_NAME} characters",
            )
        if vault_name in vault_secrets:
            report.add(
                file.display,
                file.document,
                path,
                f"Key Vault secret '{vault_name}' is also declared by {vault_secrets[vault_name]}",
                "secret names unique within the stack's Key Vault",
            )
            continue
        vault_secrets[vault_name] = file.display
        short_key = naming.secret_config_key(service, name)
        key = f"{PROJECT}:{short_key}"
        declared.add(key)
        if key not in config.secrets:
            report.add(
                file.display,
                file.document,
                path,
                f"no secure config value '{key}' in {config.display} yet: the platform team (or the pipeline's"
                " deployer) sets it on this branch, and deploy (validate --strict) refuses the tree until then",
                f"an encrypted value, set with `pulumi config set --secret --stack {config.stack} {short_key}`",
                rule="key-vault-secret-from-secret-config",
                warning=not strict,
            )


def _check_stack_secrets(
    report: _Report, config: StackConfig, services: Sequence[ServiceFile], declared: set[str]
) -> None:
    # services whose secrets are not all known: a config key of theirs is not reported as undeclared
    unsure = [
        f"{SECRET_KEY_PREFIX}{file.stem}-"
        for file in services
        if file.parts.service != file.stem or not file.parts.secrets_complete
    ]
    for key, status in config.secrets.items():
        path: KeyPath = ("config", key)
        short_key = key.split(":", 1)[1]
        setter = f"secure: <ciphertext>, written by pulumi config set --secret --stack {config.stack} {short_key}"
        if status == "plaintext":
            report.add(
                config.display,
                config.document,
                path,
                "plaintext value; secret values must be encrypted",
                setter,
                rule="key-vault-secret-from-secret-config",
            )
        elif status == "malformed":
            report.add(
                config.display,
                config.document,
                path,
                "expected a mapping 'secure: <ciphertext>'",
                setter,
                rule="key-vault-secret-from-secret-config",
            )
        if key not in declared and not any(key.startswith(prefix) for prefix in unsure):
            report.add(
                config.display,
                config.document,
                path,
                "no service declares this secret" + _did_you_mean(key, sorted(declared)),
                "secret-<service>-<name> for a name listed in that service's key_vault_secrets",
            )


def _check_tags(report: _Report, config: StackConfig, tenant: TenantView) -> None:
    if tenant.tags is None:
        return
    # what the program adds per service (ServiceName, Team) stands in for the check of the stack's own tags
    provided = {**tenant.tags, **dict.fromkeys(SERVICE_TAGS, "set-by-the-program")}
    problems = tag_problems(provided)
    if problems:
        report.add(
            config.display,
            config.document,
            ("config", TENANT_KEY, "tags"),
            "; ".join(problems) + " (every Azure resource of the stack carries these tags)",
            "tags with Environment, ServiceCode and ServiceType (e.g. Environment: SND, ServiceCode: ADP, ServiceType:"
            " Dedicated); ManagedBy and Restriction have defaults, ServiceName and Team come from each service",
            rule="platform-tags",
            subject="*",
        )


def _check_provider_settings(report: _Report, config: StackConfig, tenant: TenantView) -> None:
    for key, attribute in _PROVIDER_SETTINGS.items():
        if key not in config.provider_settings:
            continue
        expected = getattr(tenant, attribute)
        if expected is None:
            continue  # that tenant setting is itself invalid (reported)
        value = config.provider_settings[key]
        if not isinstance(value, str) or value.lower() != str(expected).lower():
            report.add(
                config.display,
                config.document,
                ("config", key),
                f"{show(value)} differs from {TENANT_KEY} {attribute} '{expected}'",
                f"'{expected}', or remove the key",
            )
