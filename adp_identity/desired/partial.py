"""What is known of a file that did not validate as a whole: every part that validates on its own.

A service file with a bad namespace still names its environments, roles and secrets; tenant settings with a bad
tenant name still declare environments and clusters. The cross-file checks and the rules run on these parts, so
one run of `adp-identity validate` reports everything (issue 11): the schema errors of a part are reported once
(by the whole-file validation), and the checks simply skip the parts that are not known.

Each part is validated with its field's own annotation (the same rules and constraints as the model), so a part
that passes here is exactly what the model would hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Final

from pydantic import BaseModel, TypeAdapter, ValidationError

from adp_identity.desired.schema import (
    DEFAULT_FORBIDDEN_ROLES_IN_PRODUCTION,
    DEFAULT_TAGS,
    DataverseAccess,
    DataverseEnvironment,
    Federation,
    NamingSettings,
    PolicySettings,
    ServiceSpec,
    TenantSettings,
    WorkloadIdentitySpec,
)

_FAILED: Final = object()


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation)


def part(model: type[BaseModel], name: str, raw: object) -> Any:
    """Field `name` of `model` validated alone from the raw mapping (its default when absent), else `_FAILED`."""
    if not isinstance(raw, Mapping):
        return _FAILED
    field = model.model_fields[name]
    if name not in raw:
        return _FAILED if field.is_required() else field.get_default(call_default_factory=True)
    try:
        return _adapter(model, name).validate_python(raw[name])
    except ValidationError:
        return _FAILED


def known(value: object) -> bool:
    return value is not _FAILED


@dataclass(frozen=True)
class TenantView:
    """The tenant settings' parts the checks need; None where that part did not validate."""

    tenant: TenantSettings | None
    tenant_id: str | None
    identity_prefix: str | None
    clusters: Mapping[str, str] | None
    environments: Mapping[str, DataverseEnvironment] | None
    forbidden_roles: tuple[str, ...]
    tags: Mapping[str, str] | None
    location: str | None
    subscription_id: str | None


def tenant_view(raw: object, tenant: TenantSettings | None) -> TenantView:
    if tenant is not None:
        return TenantView(
            tenant,
            tenant.tenant_id,
            tenant.naming.identity_prefix,
            tenant.aks_clusters,
            tenant.dataverse_environments,
            tenant.policy.forbidden_roles_in_production,
            tenant.tags,
            tenant.location,
            tenant.subscription_id,
        )
    values = {name: part(TenantSettings, name, raw) for name in TenantSettings.model_fields}

    def get(name: str) -> Any:
        value = values[name]
        return value if known(value) else None

    naming = get("naming")
    policy = get("policy")
    tags = get("tags")
    return TenantView(
        None,
        get("tenant_id"),
        naming.identity_prefix if isinstance(naming, NamingSettings) else None,
        get("aks_clusters"),
        get("dataverse_environments"),
        policy.forbidden_roles_in_production
        if isinstance(policy, PolicySettings)
        else DEFAULT_FORBIDDEN_ROLES_IN_PRODUCTION,
        {**DEFAULT_TAGS, **tags} if isinstance(tags, dict) else None,
        get("location"),
        get("subscription_id"),
    )


@dataclass(frozen=True)
class FederationView:
    index: int
    account: tuple[str, str] | None  # (namespace, service account) when both are valid
    clusters: tuple[tuple[int, str], ...] | None  # listed clusters (position, name); None = every cluster
    complete: bool  # the whole entry is valid


@dataclass(frozen=True)
class AccessView:
    index: int
    environment: str | None
    roles: tuple[tuple[int, str], ...]  # the valid role names with their positions
    principal: str | None
    complete: bool


@dataclass(frozen=True)
class ServiceView:
    """A service file's parts; ``spec`` when the whole file is valid (then every part is known)."""

    spec: ServiceSpec | None
    service: str | None
    has_app_registration: bool | None
    app_config_provider: bool | None
    federations: tuple[FederationView, ...] | None
    secrets: tuple[tuple[int, str], ...] | None  # valid names with positions; None when the list is unknown
    secrets_complete: bool
    dataverse: tuple[AccessView, ...] | None


def _items(raw: object, key: str) -> list[Any] | None:
    if not isinstance(raw, Mapping):
        return None
    value = raw.get(key, [])
    return value if isinstance(value, list) else None


def _federation(index: int, raw: object) -> FederationView:
    whole = Federation.model_validate(raw) if _valid(Federation, raw) else None
    if whole is not None:
        every = None if whole.clusters is None else tuple(enumerate(whole.clusters))
        return FederationView(index, (whole.namespace, whole.service_account), every, True)
    namespace, account = part(Federation, "namespace", raw), part(Federation, "service_account", raw)
    listed = raw.get("clusters") if isinstance(raw, Mapping) else None
    clusters: tuple[tuple[int, str], ...] | None = None
    if isinstance(listed, list):
        adapter = _adapter(Federation, "clusters")
        clusters = tuple((i, c) for i, c in enumerate(listed) if _valid_value(adapter, [c]))
    pair = (namespace, account) if known(namespace) and known(account) else None
    return FederationView(index, pair, clusters, False)


def _access(index: int, raw: object) -> AccessView:
    if _valid(DataverseAccess, raw):
        whole = DataverseAccess.model_validate(raw)
        return AccessView(index, whole.environment, tuple(enumerate(whole.security_roles)), whole.principal, True)
    environment = part(DataverseAccess, "environment", raw)
    principal = part(DataverseAccess, "principal", raw)
    listed = raw.get("security_roles") if isinstance(raw, Mapping) else None
    roles: tuple[tuple[int, str], ...] = ()
    if isinstance(listed, list):
        adapter = _adapter(DataverseAccess, "security_roles")
        roles = tuple((i, r) for i, r in enumerate(listed) if _valid_value(adapter, [r]))
    return AccessView(
        index,
        environment if known(environment) else None,
        roles,
        principal if known(principal) else None,
        False,
    )


def _valid(model: type[BaseModel], raw: object) -> bool:
    try:
        model.model_validate(raw)
    except ValidationError:
        return False
    return True


def _valid_value(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def service_view(raw: object, spec: ServiceSpec | None) -> ServiceView:
    if spec is not None:
        identity = spec.workload_identity
        return ServiceView(
            spec,
            spec.service,
            spec.app_registration is not None,
            identity.app_config_provider,
            tuple(
                FederationView(
                    i,
                    (f.namespace, f.service_account),
                    None if f.clusters is None else tuple(enumerate(f.clusters)),
                    True,
                )
                for i, f in enumerate(identity.federations)
            ),
            tuple(enumerate(spec.key_vault_secrets)),
            True,
            tuple(
                AccessView(i, a.environment, tuple(enumerate(a.security_roles)), a.principal, True)
                for i, a in enumerate(spec.dataverse)
            ),
        )
    service = part(ServiceSpec, "service", raw)
    # an app_registration that is present but invalid still counts as declared (its own errors are reported)
    has_app = raw.get("app_registration") is not None if isinstance(raw, Mapping) else None
    identity_raw = raw.get("workload_identity", {}) if isinstance(raw, Mapping) else None
    app_config = part(WorkloadIdentitySpec, "app_config_provider", identity_raw)
    federation_items = _items(identity_raw, "federations") if isinstance(identity_raw, Mapping) else None
    secret_items = _items(raw, "key_vault_secrets")
    secrets: tuple[tuple[int, str], ...] | None = None
    secrets_complete = False
    if secret_items is not None:
        adapter = _adapter(ServiceSpec, "key_vault_secrets")
        secrets = tuple((i, s) for i, s in enumerate(secret_items) if _valid_value(adapter, [s]))
        secrets_complete = len(secrets) == len(secret_items)
    access_items = _items(raw, "dataverse")
    return ServiceView(
        None,
        service if known(service) else None,
        has_app,
        app_config if known(app_config) else None,
        None if federation_items is None else tuple(_federation(i, f) for i, f in enumerate(federation_items)),
        secrets,
        secrets_complete,
        None if access_items is None else tuple(_access(i, a) for i, a in enumerate(access_items)),
    )
