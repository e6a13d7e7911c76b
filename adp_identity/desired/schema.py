"""The desired-state schema: what a platform team declares per tenant stack and per service.

Two kinds of input, both reviewed in pull requests:

- `TenantSettings`: the value of the Pulumi config key ``adp-identity:tenant`` in ``stacks/Pulumi.<stack>.yaml``
  (tenant, subscription, naming, AKS clusters, Key Vault, Dataverse environments, policy);
- `ServiceSpec`: one file per service, ``stacks/<stack>/<service>.yaml`` (workload identity federations,
  an optional app registration, Key Vault secrets, Dataverse access).

`DesiredState` is one stack: its settings and its services, as the loader returns it after every check has
passed. Models are frozen and refuse unknown keys; scalars are strict (``"12"`` is not a number, ``yes`` is
not a boolean). Rules that involve more than one file (environments, clusters, secrets, policy) live in
``checks.py``. JSON Schemas for editors are generated from these models (``adp-identity schema``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from adp_identity.desired import naming
from adp_identity.desired.constraints import (
    LOOPBACK_HOSTS,
    AksClusterName,
    BusinessUnitName,
    DataverseUrl,
    DisplayName,
    EnvironmentName,
    Guid,
    HttpsUrl,
    KebabName,
    KeyVaultName,
    KeyVaultUri,
    Location,
    Namespace,
    ResourceCode,
    ResourceGroupName,
    ResourceNamePrefix,
    RoleName,
    SecretName,
    ServiceAccountName,
    TagName,
    TagValue,
    TwoDigits,
    invalid,
)
from adp_identity.rules.catalog import MAX_CERTIFICATE_MONTHS, PRIVILEGED_ROLES, certificate_problems

TenantName = Literal["Defra", "DefraDev"]
Principal = Literal["managed_identity", "app_registration"]
# Who creates and owns a service's managed identity, its federated credentials and its Key Vault secret grants:
# this project, or ADP's platform (the Azure Service Operator helm library), in which case the program looks the
# identity up instead (issue 7).
WorkloadIdentityOwner = Literal["platform", "adp-identity"]
DEFAULT_WORKLOAD_IDENTITY_OWNER: WorkloadIdentityOwner = "adp-identity"

DEFAULT_TAGS: dict[str, str] = {"ManagedBy": "adp-identity", "Restriction": "AUTOMATED CHANGES ONLY"}
# The rules own the list (adp_identity.rules): one place for validate and the policy pack.
DEFAULT_FORBIDDEN_ROLES_IN_PRODUCTION: tuple[str, ...] = PRIVILEGED_ROLES
# Mappings keyed by constrained names: keys not matching the key pattern are refused by the JSON Schema too.
_CLOSED_MAPPING: dict[str, JsonValue] = {"additionalProperties": False}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- tenant settings (Pulumi config `adp-identity:tenant`) ---------------------------------------------------


class NamingSettings(_Model):
    """ADP naming inputs; the managed identity prefix is derived as ADP's ``teamMIPrefix``."""

    resource_name_prefix: ResourceNamePrefix = Field(
        description="ADP resource name prefix of the environment, e.g. SNDADPINF."
    )
    managed_identity_code: ResourceCode = Field(default="MI", description="Resource type code of managed identities.")
    region_id: TwoDigits = Field(description="Two-digit region id, in quotes, e.g. '14'.")
    instance: TwoDigits = Field(default="01", description="Two-digit instance number appended to the prefix.")

    @property
    def identity_prefix(self) -> str:
        """``sndadpinfmi1401`` for SNDADPINF / MI / 14 / 01."""
        return naming.identity_prefix(
            self.resource_name_prefix, self.managed_identity_code, self.region_id, self.instance
        )


class KeyVaultSettings(_Model):
    """The application Key Vault of the stack: secrets and app registration certificates live here."""

    name: KeyVaultName = Field(description="Key Vault name, e.g. sndadpinfkv1401.")
    resource_group: ResourceGroupName = Field(description="Resource group of the Key Vault.")
    uri: KeyVaultUri | None = Field(
        default=None,
        description="Vault URI; defaults to https://<name>.vault.azure.net. A loopback origin is accepted "
        "for the local emulator.",
    )

    @model_validator(mode="after")
    def _uri_matches_name(self) -> KeyVaultSettings:
        if self.uri is not None:
            host = self.uri.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
            if host not in LOOPBACK_HOSTS and host != f"{self.name.lower()}.vault.azure.net":
                raise invalid(
                    f"'{self.uri}' is not the URI of Key Vault '{self.name}'",
                    f"https://{self.name.lower()}.vault.azure.net, or a loopback origin for the local emulator",
                    key="uri",
                )
        return self

    @property
    def url(self) -> str:
        """The vault URL without trailing slash (declared or derived)."""
        return self.uri or f"https://{self.name.lower()}.vault.azure.net"


class DataverseEnvironment(_Model):
    """A Dataverse environment services may be given access to."""

    url: DataverseUrl = Field(description="Environment URL, e.g. https://defradev-dev.crm11.dynamics.com.")
    production: StrictBool = Field(
        description="true for production environments: the policy's forbidden roles apply there."
    )


class PolicySettings(_Model):
    """Platform policy checked offline before anything is deployed."""

    forbidden_roles_in_production: tuple[RoleName, ...] = Field(
        default=DEFAULT_FORBIDDEN_ROLES_IN_PRODUCTION,
        description="Security roles no service may hold in a production environment (ADP: never "
        "Administrator rights in production).",
    )


class TenantSettings(_Model):
    """Tenant-level settings of one stack: the value of the Pulumi config key ``adp-identity:tenant``."""

    name: TenantName = Field(description="Entra tenant: Defra (production) or DefraDev (development).")
    tenant_id: Guid = Field(description="Entra tenant id (GUID).")
    subscription_id: Guid = Field(description="Azure subscription holding the managed identities (GUID).")
    location: Location = Field(default="uksouth", description="Azure region of the managed identities.")
    resource_group: ResourceGroupName = Field(description="Resource group of the managed identities.")
    naming: NamingSettings = Field(description="ADP naming inputs.")
    tags: dict[TagName, TagValue] = Field(
        default_factory=lambda: dict(DEFAULT_TAGS),
        description="Azure tags on every resource; ManagedBy and Restriction are always set (override the values "
        "here).",
        json_schema_extra=_CLOSED_MAPPING,
    )
    aks_clusters: Annotated[dict[AksClusterName, HttpsUrl], Field(min_length=1)] = Field(
        description="AKS clusters whose workloads may federate: cluster name -> OIDC issuer URL (verbatim).",
        json_schema_extra=_CLOSED_MAPPING,
    )
    key_vault: KeyVaultSettings = Field(description="The application Key Vault of the stack.")
    dataverse_environments: dict[EnvironmentName, DataverseEnvironment] = Field(
        default_factory=dict,
        description="Dataverse environments by short name (dev, tst, pre, prd, ...).",
        json_schema_extra=_CLOSED_MAPPING,
    )
    policy: PolicySettings = Field(default=PolicySettings(), description="Platform policy.")
    workload_identity_owner: WorkloadIdentityOwner = Field(
        default=DEFAULT_WORKLOAD_IDENTITY_OWNER,
        description="Default owner of every service's managed identity, federated credentials and Key Vault secret "
        "grants: adp-identity (this project creates them) or platform (ADP's Azure Service Operator helm library "
        "does; the program looks the identity up). A service may set its own workload_identity.owner.",
    )

    @field_validator("tags", mode="after")
    @classmethod
    def _with_default_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_TAGS, **tags}


# --- service files (stacks/<stack>/<service>.yaml) ------------------------------------------------------------


class Federation(_Model):
    """A Kubernetes service account allowed to sign in as the service's managed identity."""

    namespace: Namespace = Field(description="Kubernetes namespace (DNS-1123 label).")
    service_account: ServiceAccountName = Field(description="Kubernetes service account (DNS-1123 subdomain).")
    clusters: Annotated[tuple[AksClusterName, ...], Field(min_length=1)] | None = Field(
        default=None, description="AKS clusters (names from the stack's aks_clusters); omit for every cluster."
    )


def _no_default_in_schema(schema: dict[str, JsonValue]) -> None:
    """The effective default is the stack's (workload_identity_owner), so the JSON Schema shows none."""
    schema.pop("default", None)


def _default_without_owner(schema: dict[str, JsonValue]) -> None:
    default = schema.get("default")
    if isinstance(default, dict):
        default.pop("owner", None)


class WorkloadIdentitySpec(_Model):
    """The service's user-assigned managed identity: who owns it and who may federate to it."""

    # `owner` as loaded (load_tree, desired_state_from_pulumi_config) is the EFFECTIVE owner: the service's own when
    # the file sets it, else the stack's workload_identity_owner. The Pulumi program reads exactly
    # service.workload_identity.owner; it may add the ids to import here too (issue 7).

    owner: WorkloadIdentityOwner = Field(
        default=DEFAULT_WORKLOAD_IDENTITY_OWNER,
        description="Who owns the managed identity, its federated credentials and its Key Vault secret grants: "
        "adp-identity (this project creates them) or platform (ADP's helm library does; the program looks the "
        "identity up and registers none of them). Omitted: the stack's workload_identity_owner (adp-identity "
        "unless the stack says otherwise).",
        json_schema_extra=_no_default_in_schema,
    )
    federations: tuple[Federation, ...] = Field(
        default=(), description="Service accounts federated to the identity, in order (names -fic-0, -fic-1, ...)."
    )
    app_config_provider: StrictBool = Field(
        default=True,
        description="Also federate app-config-service/az-appconfig-k8s-provider (ADP's App Configuration "
        "provider) on every cluster.",
    )
    release: StrictBool = Field(
        default=False,
        description="With owner: platform, one deploy that keeps the identity, credentials and grants in the stack "
        "with retain_on_delete, so that the next deploy (without release) lets them go without deleting them.",
    )

    @model_validator(mode="after")
    def _release_hands_over_to_the_platform(self) -> WorkloadIdentitySpec:
        # judged on the file's own words: a release is a reviewed hand-over, so it writes owner: platform itself
        if self.release and self.owner != "platform":
            raise invalid(
                "release: true hands the identity over to the platform, but owner is adp-identity",
                "release: true only with owner: platform written in the same file",
                key="release",
            )
        return self

    def service_accounts(self) -> tuple[naming.ServiceAccountRef, ...]:
        """Declared federations, then the App Configuration provider when enabled (ADP's usual order)."""
        refs = [naming.ServiceAccountRef(f.namespace, f.service_account, f.clusters) for f in self.federations]
        if self.app_config_provider:
            refs.append(naming.ServiceAccountRef(naming.APP_CONFIG_NAMESPACE, naming.APP_CONFIG_SERVICE_ACCOUNT))
        return tuple(refs)


class CertificatePolicy(_Model):
    """The app registration's certificate, generated and rotated inside Key Vault (docs/adr/0005)."""

    validity_months: StrictInt = Field(
        default=12,
        description=f"Certificate validity in months, 1..{MAX_CERTIFICATE_MONTHS}.",
        json_schema_extra={"minimum": 1, "maximum": MAX_CERTIFICATE_MONTHS},
    )
    renew_before_days: StrictInt = Field(
        default=30,
        description="Renew this many days before expiry; at most validity_months x 27 (Key Vault's limit).",
        json_schema_extra={"minimum": 1},
    )

    @model_validator(mode="after")
    def _lifetime_follows_the_rule(self) -> CertificatePolicy:
        # the rule certificate-lifetime, with its own words (adp_identity.rules.catalog)
        problems = certificate_problems(self.validity_months, self.renew_before_days)
        if problems:
            key, problem, allowed = problems[0]
            raise invalid(problem, allowed, key=key, rule="certificate-lifetime")
        return self


class AppRegistrationSpec(_Model):
    """An Entra app registration with a Key Vault-held certificate: only where a managed identity cannot serve."""

    display_name: DisplayName | None = Field(
        default=None, description="Display name; defaults to ADP-<AREA>-<Service> (ffc-pay-batch -> ADP-FFC-PayBatch)."
    )
    certificate: CertificatePolicy = Field(default=CertificatePolicy(), description="Certificate credential policy.")


class DataverseAccess(_Model):
    """An application user in one Dataverse environment, with its business unit and security roles."""

    environment: EnvironmentName = Field(description="Short name of a Dataverse environment of the stack.")
    business_unit: BusinessUnitName | None = Field(
        default=None, description="Business unit name; omit for the environment's root business unit."
    )
    security_roles: Annotated[tuple[RoleName, ...], Field(min_length=1)] = Field(
        description="Security role names (of that business unit), at least one."
    )
    principal: Principal = Field(
        default="managed_identity",
        description="Who the application user is: the service's managed identity or its app registration.",
    )
    disabled: StrictBool = Field(default=False, description="Keep the application user but disabled.")


class ServiceSpec(_Model):
    """One service of one stack: ``stacks/<stack>/<service>.yaml``."""

    service: KebabName = Field(description="Service name; must equal the file name without .yaml.")
    team: KebabName = Field(description="Owning team, lower-kebab, e.g. ffc-payments.")
    workload_identity: WorkloadIdentitySpec = Field(
        default=WorkloadIdentitySpec(),
        description="The managed identity: its owner and federations.",
        json_schema_extra=_default_without_owner,
    )
    app_registration: AppRegistrationSpec | None = Field(
        default=None, description="An app registration, only where a managed identity cannot serve."
    )
    key_vault_secrets: tuple[SecretName, ...] = Field(
        default=(),
        description="Secret names (lower-kebab); each is the Key Vault secret <service>-<name>, valued from the "
        "Pulumi secret config key secret-<service>-<name>.",
    )
    dataverse: tuple[DataverseAccess, ...] = Field(
        default=(), description="Dataverse access, one entry per environment."
    )

    @property
    def app_registration_display_name(self) -> str | None:
        """The declared or derived display name; None without an app registration."""
        if self.app_registration is None:
            return None
        return self.app_registration.display_name or naming.app_registration_display_name(self.service)


class DesiredState(_Model):
    """One stack after every check has passed: its tenant settings and its services by name (sorted)."""

    stack: str
    tenant: TenantSettings
    services: dict[str, ServiceSpec]
    # the secret config keys (adp-identity:secret-<service>-<name>) whose values are held encrypted
    secure_config_keys: frozenset[str] = frozenset()

    def identity_name(self, service: str) -> str:
        """The service's managed identity name, e.g. ``sndadpinfmi1401-ffc-pay-batch``."""
        return naming.managed_identity_name(self.tenant.naming.identity_prefix, self.services[service].service)

    def federated_credentials(self, service: str) -> tuple[naming.FederatedCredential, ...]:
        spec = self.services[service]
        return naming.federated_credentials(
            self.identity_name(service), self.tenant.aks_clusters, spec.workload_identity.service_accounts()
        )

    def environment(self, short_name: str) -> DataverseEnvironment:
        return self.tenant.dataverse_environments[short_name]
