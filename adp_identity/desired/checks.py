"""Rules that span files: a service against its stack's settings, services against each other, secrets.

Each file has already passed its own schema (or its errors were reported and it is skipped here, so one
mistake is not reported again as a cascade). What is checked:

- the service name equals the file name, and no two files declare the same service;
- federations name clusters the stack declares, each cluster once, each service account once, and the
  derived names and counts fit Entra's limits (20 federated credentials per identity, name lengths);
- Dataverse access names an environment of the stack, once per environment; ``principal: app_registration``
  needs an ``app_registration`` block; roles are listed once and the policy's forbidden roles are refused in
  production environments;
- every Key Vault secret has an encrypted (``secure:``) Pulumi config value; no plaintext value; no secret
  config key that no service declares; Key Vault secret names unique in the stack's vault;
- ``azure-native``/``azuread`` provider settings, when set, agree with the tenant settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from adp_identity.desired import naming
from adp_identity.desired.errors import DesiredStateError, KeyPath, format_key_path, show
from adp_identity.desired.schema import ServiceSpec, TenantSettings
from adp_identity.desired.yamlsafe import YamlDocument

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
    """One service file: `spec` is None when the file already failed (its errors are reported)."""

    display: str  # e.g. "stacks/defradev/ffc-pay-web.yaml"
    stem: str  # file name without .yaml
    spec: ServiceSpec | None
    document: YamlDocument | None = None


@dataclass(frozen=True)
class StackConfig:
    """The stack's Pulumi config as far as these checks need it."""

    stack: str
    display: str  # e.g. "stacks/Pulumi.defradev.yaml"
    tenant: TenantSettings | None  # None when the tenant settings already failed
    secrets: Mapping[str, SecretStatus]  # full config key (adp-identity:secret-...) -> how its value is held
    provider_settings: Mapping[str, object]  # other namespaces' keys -> values (non-secret only)
    document: YamlDocument | None = None


class _Report:
    def __init__(self) -> None:
        self.errors: list[DesiredStateError] = []

    def add(self, file: str, document: YamlDocument | None, path: KeyPath, message: str, allowed: str) -> None:
        line = document.line_of(path) if document is not None else None
        self.errors.append(DesiredStateError(file, format_key_path(path), message, allowed, line))


def check_stack(config: StackConfig, services: Sequence[ServiceFile]) -> list[DesiredStateError]:
    """Every cross-file error of one stack, services in the given order, then the stack file's own."""
    report = _Report()
    # service name -> the file that owns it: the file named after it, else the first declaring it
    owners = {f.spec.service: f.display for f in services if f.spec is not None and f.spec.service == f.stem}
    vault_secrets: dict[str, str] = {}  # Key Vault secret name -> file declaring it first
    declared_secret_keys: set[str] = set()
    for file in services:
        spec = file.spec
        if spec is None:
            continue
        owner = owners.setdefault(spec.service, file.display)
        if owner != file.display:
            report.add(
                file.display,
                file.document,
                ("service",),
                f"service '{spec.service}' is already declared in {owner}",
                "one file per service",
            )
        if spec.service != file.stem:
            report.add(
                file.display,
                file.document,
                ("service",),
                f"'{spec.service}' does not match the file name '{file.stem}.yaml'",
                f"'{file.stem}' (the file name without .yaml)",
            )
            continue  # every derived name would be wrong: fix the name first, then see the rest
        _check_secrets(report, config, file=file, spec=spec, vault_secrets=vault_secrets, declared=declared_secret_keys)
        _check_dataverse(report, config, file, spec)
        if config.tenant is not None:
            _check_workload_identity(report, config.stack, config.tenant, file, spec)
    _check_stack_secrets(report, config, services, declared_secret_keys)
    _check_provider_settings(report, config)
    return report.errors


def _check_workload_identity(
    report: _Report, stack: str, tenant: TenantSettings, file: ServiceFile, spec: ServiceSpec
) -> None:
    clusters = list(tenant.aks_clusters)
    federations = spec.workload_identity.federations
    accounts: dict[tuple[str, str], int] = {}
    app_config = (naming.APP_CONFIG_NAMESPACE, naming.APP_CONFIG_SERVICE_ACCOUNT)
    for index, federation in enumerate(federations):
        path: KeyPath = ("workload_identity", "federations", index)
        listed: set[str] = set()
        for position, cluster in enumerate(federation.clusters or ()):
            if cluster not in tenant.aks_clusters:
                report.add(
                    file.display,
                    file.document,
                    (*path, "clusters", position),
                    f"unknown AKS cluster {show(cluster)}",
                    f"clusters of stack '{stack}': {', '.join(clusters)}",
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
        account = (federation.namespace, federation.service_account)
        if account == app_config and spec.workload_identity.app_config_provider:
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
            accounts[account] = index

    identity = naming.managed_identity_name(tenant.naming.identity_prefix, spec.service)
    if len(identity) > naming.MAX_MANAGED_IDENTITY_NAME:
        report.add(
            file.display,
            file.document,
            ("service",),
            f"managed identity name '{identity}' has {len(identity)} characters",
            f"at most {naming.MAX_MANAGED_IDENTITY_NAME} characters",
        )
    credentials = naming.federated_credentials(identity, tenant.aks_clusters, spec.workload_identity.service_accounts())
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


def _check_dataverse(report: _Report, config: StackConfig, file: ServiceFile, spec: ServiceSpec) -> None:
    tenant = config.tenant
    environments: dict[str, int] = {}
    for index, access in enumerate(spec.dataverse):
        path: KeyPath = ("dataverse", index)
        environment = tenant.dataverse_environments.get(access.environment) if tenant is not None else None
        if tenant is not None and environment is None:
            declared = ", ".join(tenant.dataverse_environments) or "none declared"
            report.add(
                file.display,
                file.document,
                (*path, "environment"),
                f"unknown Dataverse environment {show(access.environment)}",
                f"environments of stack '{config.stack}': {declared}",
            )
        if access.environment in environments:
            report.add(
                file.display,
                file.document,
                (*path, "environment"),
                f"environment {show(access.environment)} already has an entry:"
                f" dataverse[{environments[access.environment]}]",
                "one entry per environment",
            )
        else:
            environments[access.environment] = index
        if access.principal == "app_registration" and spec.app_registration is None:
            report.add(
                file.display,
                file.document,
                (*path, "principal"),
                "app_registration, but the service declares no app_registration",
                "managed_identity, or add an app_registration block to the service",
            )
        forbidden = {role.casefold() for role in tenant.policy.forbidden_roles_in_production} if tenant else set()
        roles: set[str] = set()
        for position, role in enumerate(access.security_roles):
            if role.casefold() in roles:
                report.add(
                    file.display,
                    file.document,
                    (*path, "security_roles", position),
                    f"role {show(role)} is listed twice",
                    "each role once",
                )
            roles.add(role.casefold())
            if environment is not None and environment.production and role.casefold() in forbidden:
                assert tenant is not None
                report.add(
                    file.display,
                    file.document,
                    (*path, "security_roles", position),
                    f"role {show(role)} is forbidden in production environment '{access.environment}'",
                    "roles other than "
                    + ", ".join(tenant.policy.forbidden_roles_in_production)
                    + " (policy.forbidden_roles_in_production)",
                )


def _check_secrets(
    report: _Report,
    config: StackConfig,
    *,
    file: ServiceFile,
    spec: ServiceSpec,
    vault_secrets: dict[str, str],
    declared: set[str],
) -> None:
    listed: set[str] = set()
    for index, name in enumerate(spec.key_vault_secrets):
        path: KeyPath = ("key_vault_secrets", index)
        if name in listed:
            report.add(file.display, file.document, path, f"secret {show(name)} is listed twice", "each secret once")
            continue
        listed.add(name)
        vault_name = naming.key_vault_secret_name(spec.service, name)
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
        short_key = naming.secret_config_key(spec.service, name)
        key = f"{PROJECT}:{short_key}"
        declared.add(key)
        if key not in config.secrets:
            report.add(
                file.display,
                file.document,
                path,
                f"no secure config value '{key}' in {config.display}",
                f"an encrypted value: pulumi config set --secret --stack {config.stack} {short_key}",
            )


def _check_stack_secrets(
    report: _Report, config: StackConfig, services: Sequence[ServiceFile], declared: set[str]
) -> None:
    failed = [
        f"{SECRET_KEY_PREFIX}{file.stem}-" for file in services if file.spec is None or file.spec.service != file.stem
    ]
    for key, status in config.secrets.items():
        path: KeyPath = ("config", key)
        short_key = key.split(":", 1)[1]
        setter = f"secure: <ciphertext>, written by pulumi config set --secret --stack {config.stack} {short_key}"
        if status == "plaintext":
            report.add(
                config.display, config.document, path, "plaintext value; secret values must be encrypted", setter
            )
        elif status == "malformed":
            report.add(config.display, config.document, path, "expected a mapping 'secure: <ciphertext>'", setter)
        if key not in declared and not any(key.startswith(prefix) for prefix in failed):
            report.add(
                config.display,
                config.document,
                path,
                "no service declares this secret",
                "secret-<service>-<name> for a name listed in that service's key_vault_secrets",
            )


def _check_provider_settings(report: _Report, config: StackConfig) -> None:
    tenant = config.tenant
    if tenant is None:
        return
    for key, attribute in _PROVIDER_SETTINGS.items():
        if key not in config.provider_settings:
            continue
        value = config.provider_settings[key]
        expected = str(getattr(tenant, attribute))
        if not isinstance(value, str) or value.lower() != expected.lower():
            report.add(
                config.display,
                config.document,
                ("config", key),
                f"{show(value)} differs from {TENANT_KEY} {attribute} '{expected}'",
                f"'{expected}', or remove the key",
            )
