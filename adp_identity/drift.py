"""Drift detection: what a stack declares for Dataverse, what the environments hold, and the difference.

The GitOps loop deploys with ``pulumi up``; ``adp-identity plan`` and ``adp-identity audit`` close it by reading
Dataverse and comparing, without Pulumi and without writing anything. This module returns data only; the
commands render it. Steps, each usable alone::

    identities = parse_identities(Path("outputs.json").read_bytes(), "outputs.json")  # `pulumi stack output --json`
    urls = environment_overrides(["dev=https://127.0.0.1:8443"], state)            # optional
    environments = targets(state, identities, urls)     # every application user the stack declares
    readings = read_stack(environments, connect)        # 1 GET per user + the catalog once per environment
    report = audit(state, readings)                      # exact drift, unmanaged privileged users, errors

Why an identities file: a service's application (client) id exists only after ``pulumi up`` created its managed
identity or app registration; it is a stack output (``infra/program.py``: per service ``client_id`` and, with an
app registration, ``app_registration_client_id``), so these commands take what ``pulumi stack output --json``
prints rather than importing Pulumi.

Reads only: the client used here (`ReadOnlyDataverseClient`) refuses every write method, and the role catalog is
read fresh once per environment per run (an audit must not trust a catalog another part of the process cached).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn, Protocol

from adp_identity.desired.errors import (
    DOCUMENT,
    DesiredStateError,
    DesiredStateErrors,
    KeyPath,
    format_key_path,
    kind_of,
    show,
)
from adp_identity.desired.schema import DesiredState
from adp_identity.desired.yamlsafe import MAX_BYTES, YamlRefused, parse_yaml
from providers.dataverse.client import (
    USER_EXPAND,
    USER_SELECT,
    CatalogCache,
    DataverseClient,
    _query,
    environment_origin,
)
from providers.dataverse.errors import DataverseError, UnknownBusinessUnit, UnknownName
from providers.dataverse.models import (
    ActualUser,
    RoleCatalog,
    application_user_from_wire,
    name_key,
    normalise_guid,
)
from providers.dataverse.reconcile import DataverseApi, DesiredUser, Plan, read_and_plan, unknown_role_names

__all__ = [
    "ALWAYS_PRIVILEGED_ROLES",
    "ApplicationUserTarget",
    "AuditReport",
    "DriftInputErrors",
    "EnvironmentReader",
    "EnvironmentReading",
    "EnvironmentTarget",
    "Finding",
    "PrivilegedUser",
    "ReadOnlyDataverseClient",
    "ServiceIdentity",
    "UserDrift",
    "UserReading",
    "audit",
    "environment_overrides",
    "parse_identities",
    "privileged_roles",
    "read_environment",
    "read_stack",
    "targets",
    "user_drift",
]

Principal = Literal["managed_identity", "app_registration"]

# Roles that make an application user all-powerful in any environment (Microsoft's predefined roles).
ALWAYS_PRIVILEGED_ROLES: tuple[str, ...] = ("System Administrator", "System Customizer")

_IDENTITIES_ALLOWED = "the output of `pulumi stack output --json`: service -> {client_id, app_registration_client_id}"
_GUID_ALLOWED = "an application (client) id GUID"


class DriftInputErrors(DesiredStateErrors):
    """Problems with the identities file or ``--environment-url``; one line each, like the loader's errors."""


def _refuse(errors: Sequence[DesiredStateError]) -> NoReturn:
    raise DriftInputErrors(errors)


# -- identities (pulumi stack output --json) ------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceIdentity:
    """A service's application ids as ``pulumi up`` made them (the program's stack outputs)."""

    service: str
    client_id: str  # the managed identity's application (client) id
    app_registration_client_id: str | None = None
    # environment short name -> systemuserid the stack manages (output dataverse_application_users), if known
    application_users: Mapping[str, str] = field(default_factory=dict)

    def application_id(self, principal: Principal) -> str | None:
        return self.app_registration_client_id if principal == "app_registration" else self.client_id


def parse_identities(data: bytes, source: str) -> dict[str, ServiceIdentity]:
    """Service name -> its ids, from JSON or YAML bytes; `DriftInputErrors` lists every problem.

    Only ``client_id``, ``app_registration_client_id`` and ``dataverse_application_users`` are read; other stack
    outputs (``identity_name``, ``principal_id``, ...) are accepted and ignored.
    """
    document, lines = _identities_document(data, source)
    errors: list[DesiredStateError] = []

    def error(path: KeyPath, message: str, allowed: str) -> None:
        line = lines.get(path) if lines else None
        errors.append(DesiredStateError(source, format_key_path(path), message, allowed, line))

    def guid(path: KeyPath, value: Any) -> str | None:
        if not isinstance(value, str):
            error(path, f"is {kind_of(value)}", _GUID_ALLOWED)
            return None
        try:
            return normalise_guid(value)
        except ValueError:
            error(path, f"{show(value)} is not a GUID", _GUID_ALLOWED)
            return None

    identities: dict[str, ServiceIdentity] = {}
    for service, outputs in document.items():
        if not isinstance(outputs, Mapping):
            error((service,), f"is {kind_of(outputs)}", "the service's stack outputs (a mapping)")
            continue
        if "client_id" not in outputs:
            error((service,), "has no client_id", "client_id: the managed identity's application (client) id")
            continue
        client_id = guid((service, "client_id"), outputs["client_id"])
        app_id = None
        if outputs.get("app_registration_client_id") is not None:
            app_id = guid((service, "app_registration_client_id"), outputs["app_registration_client_id"])
        users: dict[str, str] = {}
        raw_users = outputs.get("dataverse_application_users") or {}
        if not isinstance(raw_users, Mapping):
            error(
                (service, "dataverse_application_users"),
                f"is {kind_of(raw_users)}",
                "environment -> systemuserid (a mapping)",
            )
        else:
            for environment, user_id in raw_users.items():
                checked = guid((service, "dataverse_application_users", str(environment)), user_id)
                if checked is not None:
                    users[str(environment)] = checked
        if client_id is not None:
            identities[service] = ServiceIdentity(service, client_id, app_id, users)
    if errors:
        _refuse(errors)
    return identities


def _identities_document(data: bytes, source: str) -> tuple[dict[str, Any], Mapping[KeyPath, int] | None]:
    """The top-level mapping (and the line of each key for YAML); JSON first, as Pulumi prints JSON."""

    def refuse(message: str, allowed: str = _IDENTITIES_ALLOWED, line: int | None = None) -> NoReturn:
        _refuse([DesiredStateError(source, DOCUMENT, message, allowed, line)])

    if len(data) > MAX_BYTES:
        refuse(f"file is larger than {MAX_BYTES // 1024} KiB ({len(data)} bytes)", f"at most {MAX_BYTES // 1024} KiB")
    if not data.strip():
        refuse("is empty")
    if data.lstrip().startswith(b"{"):
        try:
            value = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
        except UnicodeDecodeError:
            refuse("invalid UTF-8", "UTF-8 JSON or YAML text")
        except json.JSONDecodeError as exc:
            refuse(f"not valid JSON ({exc.msg})", line=exc.lineno)
        except _DuplicateKey as exc:
            refuse(f"duplicate key {show(exc.key)}", "each key once")
        return value, None
    try:
        document = parse_yaml(data)
    except YamlRefused as exc:
        refuse(exc.message, exc.allowed, exc.line)
    return document.data, document.lines


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


# -- targets: every application user the stack declares -----------------------------------------------------


@dataclass(frozen=True)
class ApplicationUserTarget:
    """One declared application user: which service, where, as which principal, and what it should be."""

    service: str
    environment: str  # short name (dev, tst, ...)
    principal: Principal
    desired: DesiredUser
    managed_id: str | None = None  # the systemuserid the stack's state names, when the identities file says


@dataclass(frozen=True)
class EnvironmentTarget:
    """A Dataverse environment of the stack and the application users declared in it (sorted by service)."""

    name: str
    url: str
    production: bool
    users: tuple[ApplicationUserTarget, ...]


def environment_overrides(pairs: Iterable[str], state: DesiredState) -> dict[str, str]:
    """``["dev=https://127.0.0.1:8443", ...]`` -> {short name: origin}; every problem is one line."""
    known = state.tenant.dataverse_environments
    allowed_names = ", ".join(known) or "none (the stack declares no Dataverse environments)"
    overrides: dict[str, str] = {}
    errors: list[DesiredStateError] = []
    for pair in pairs:
        name, equals, url = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            errors.append(
                DesiredStateError(
                    "--environment-url", DOCUMENT, f"{show(pair)} is not NAME=URL", "e.g. dev=https://..."
                )
            )
            continue
        if name not in known:
            errors.append(
                DesiredStateError(
                    "--environment-url",
                    name,
                    f"unknown environment {show(name)} of stack '{state.stack}'",
                    allowed_names,
                )
            )
            continue
        if name in overrides:
            errors.append(DesiredStateError("--environment-url", name, "given more than once", "each environment once"))
            continue
        try:
            overrides[name] = environment_origin(url)
        except ValueError:
            errors.append(
                DesiredStateError(
                    "--environment-url", name, f"{show(url)} is not an https origin", "https://<host>[:<port>]"
                )
            )
    if errors:
        _refuse(errors)
    return overrides


def targets(
    state: DesiredState,
    identities: Mapping[str, ServiceIdentity],
    environment_urls: Mapping[str, str] | None = None,
    *,
    source: str = "identities",
) -> tuple[EnvironmentTarget, ...]:
    """Every Dataverse environment of the stack (declaration order) with the application users declared there.

    Raises `DriftInputErrors` when the identities name a service the stack does not have, or lack the id a
    declared application user needs.
    """
    urls = dict(environment_urls or {})
    errors: list[DesiredStateError] = []
    services = ", ".join(state.services) or "none"
    for service in identities:
        if service not in state.services:
            errors.append(
                DesiredStateError(
                    source,
                    service,
                    f"unknown service {show(service)} of stack '{state.stack}'",
                    f"services: {services}",
                )
            )
    users: dict[str, list[ApplicationUserTarget]] = {name: [] for name in state.tenant.dataverse_environments}
    for service, spec in sorted(state.services.items()):
        if not spec.dataverse:
            continue
        identity = identities.get(service)
        if identity is None:
            errors.append(
                DesiredStateError(
                    source,
                    service,
                    f"missing: service '{service}' declares Dataverse access",
                    "the service's stack outputs with client_id",
                )
            )
            continue
        for access in spec.dataverse:
            application_id = identity.application_id(access.principal)
            if application_id is None:
                errors.append(
                    DesiredStateError(
                        source,
                        format_key_path((service, "app_registration_client_id")),
                        f"missing: environment '{access.environment}' uses principal app_registration",
                        "the app registration's application (client) id",
                    )
                )
                continue
            environment = state.tenant.dataverse_environments[access.environment]
            desired = DesiredUser(
                environment_url=urls.get(access.environment, environment.url),
                application_id=application_id,
                business_unit=access.business_unit,
                security_roles=frozenset(access.security_roles),
                disabled=access.disabled,
            )
            managed_id = identity.application_users.get(access.environment)
            users[access.environment].append(
                ApplicationUserTarget(service, access.environment, access.principal, desired, managed_id)
            )
    if errors:
        _refuse(errors)
    return tuple(
        EnvironmentTarget(name, urls.get(name, environment.url), environment.production, tuple(users[name]))
        for name, environment in state.tenant.dataverse_environments.items()
    )


# -- reading (GETs only) ---------------------------------------------------------------------------------------


class ReadOnlyDataverseClient(DataverseClient):
    """`DataverseClient` that cannot write, reads its catalog fresh per instance, and lists application users.

    ``plan`` and ``audit`` must never change an environment, whatever a bug elsewhere asks for: every write
    method raises before a request is built.
    """

    def __init__(self, environment_url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(environment_url, *args, **kwargs)
        self._catalogs = CatalogCache()

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        return self._catalogs.get(self.environment_url, self._fetch_catalog, after_miss=after_miss)

    def application_users(self) -> list[ActualUser]:
        """Every application user of the environment with its roles (1 GET per 5000 users)."""
        query = _query(("$filter", "applicationid ne null"), ("$select", USER_SELECT), ("$expand", USER_EXPAND))
        return [application_user_from_wire(row) for page in self._transport.pages("systemusers", query) for row in page]

    def _refuse_write(self) -> NoReturn:
        raise RuntimeError(f"{self!r} is read-only: plan and audit never write")

    def create_user(self, application_id: str, business_unit_id: str) -> str:
        self._refuse_write()

    def set_disabled(self, systemuser_id: str, disabled: bool) -> None:
        self._refuse_write()

    def move_business_unit(self, systemuser_id: str, business_unit_id: str) -> None:
        self._refuse_write()

    def change_roles(self, systemuser_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        self._refuse_write()


@dataclass(frozen=True)
class UserReading:
    """One declared user as read: its live state and reconcile's plan, or the one-line reason there is none."""

    target: ApplicationUserTarget
    actual: ActualUser | None = None
    plan: Plan | None = None
    catalog: RoleCatalog | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvironmentReading:
    """An environment as read. ``error`` (one line) means it could not be read past that point."""

    environment: EnvironmentTarget
    users: tuple[UserReading, ...] = ()
    application_users: tuple[ActualUser, ...] | None = None  # every application user (audit only)
    error: str | None = None


class EnvironmentReader(DataverseApi, Protocol):
    """What reading an environment needs: reconcile's client protocol plus the list of application users."""

    def application_users(self) -> list[ActualUser]: ...


Connect = Callable[[EnvironmentTarget], EnvironmentReader]


def read_environment(
    environment: EnvironmentTarget, client: EnvironmentReader, *, application_users: bool = False
) -> EnvironmentReading:
    """Read each declared user (1 GET each; the catalog 2 GETs once), then optionally list every application user.

    A declared name the environment lacks is that user's error (all unknown role names at once); a failure of
    the environment itself (unreachable, 401/403, throttled) stops this environment with a one-line error.
    """
    users: list[UserReading] = []
    try:
        for target in environment.users:
            try:
                actual, the_plan = read_and_plan(client, target.desired, managed_id=target.managed_id)
            except UnknownName as exc:
                users.append(UserReading(target, errors=_unknown_names(client, target, exc)))
                continue
            users.append(UserReading(target, actual, the_plan, the_plan.catalog))
        listed = tuple(client.application_users()) if application_users else None
    except DataverseError as exc:
        return EnvironmentReading(environment, tuple(users), None, str(exc))
    return EnvironmentReading(environment, tuple(users), listed)


def _unknown_names(client: EnvironmentReader, target: ApplicationUserTarget, first: UnknownName) -> tuple[str, ...]:
    """Every unknown name of the declared user (the catalog is cached: no request)."""
    if isinstance(first, UnknownBusinessUnit):
        return (str(first),)
    return tuple(str(exc) for exc in unknown_role_names(target.desired, client.catalog())) or (str(first),)


def read_stack(
    environments: Iterable[EnvironmentTarget], connect: Connect, *, application_users: bool = False
) -> tuple[EnvironmentReading, ...]:
    """Read every environment in turn (one client each); environments with nothing to read are skipped
    unless ``application_users`` (audit scans each environment for unmanaged privileged users)."""
    readings: list[EnvironmentReading] = []
    for environment in environments:
        if not environment.users and not application_users:
            continue
        try:
            client = connect(environment)
        except ValueError as exc:
            readings.append(EnvironmentReading(environment, error=str(exc)))
            continue
        readings.append(read_environment(environment, client, application_users=application_users))
    return tuple(readings)


# -- comparing (pure) ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserDrift:
    """How one declared application user differs from Dataverse; nothing set = in sync."""

    service: str
    environment: str
    principal: Principal
    application_id: str
    systemuser_id: str | None
    declared_business_unit: str  # name (the root unit's name when the service file omits it)
    declared_roles: tuple[str, ...]
    declared_disabled: bool
    missing: bool = False
    actual_disabled: bool | None = None  # set only when it differs from declared_disabled
    actual_business_unit: str | None = None  # set only when it differs
    extra_roles: tuple[str, ...] = ()
    missing_roles: tuple[str, ...] = ()

    @property
    def has_drift(self) -> bool:
        return (
            self.missing
            or self.actual_disabled is not None
            or self.actual_business_unit is not None
            or bool(self.extra_roles)
            or bool(self.missing_roles)
        )


def user_drift(target: ApplicationUserTarget, actual: ActualUser | None, catalog: RoleCatalog) -> UserDrift:
    """The exact difference between ``target`` and ``actual``; names compare as Dataverse shows them.

    Raises `UnknownBusinessUnit` when the declared business unit does not exist in ``catalog``.
    """
    desired = target.desired
    unit = catalog.business_unit(desired.business_unit)
    declared_roles = tuple(sorted(desired.security_roles, key=name_key))
    base = UserDrift(
        service=target.service,
        environment=target.environment,
        principal=target.principal,
        application_id=desired.application_id,
        systemuser_id=actual.systemuser_id if actual else None,
        declared_business_unit=unit.name,
        declared_roles=declared_roles,
        declared_disabled=desired.disabled,
    )
    if actual is None:
        return replace(base, missing=True)
    held = {name_key(name): name for name in actual.roles.values()}
    wanted = {name_key(name): name for name in declared_roles}
    actual_unit = actual.business_unit_name
    if actual_unit is None:
        found = catalog.business_unit_by_id(actual.business_unit_id)
        actual_unit = found.name if found else actual.business_unit_id
    return replace(
        base,
        actual_disabled=actual.disabled if actual.disabled != desired.disabled else None,
        actual_business_unit=actual_unit if actual.business_unit_id != unit.id else None,
        extra_roles=tuple(sorted((held[k] for k in held.keys() - wanted.keys()), key=name_key)),
        missing_roles=tuple(sorted((wanted[k] for k in wanted.keys() - held.keys()), key=name_key)),
    )


@dataclass(frozen=True)
class PrivilegedUser:
    """An application user the stack does not manage that holds a privileged role."""

    environment: str
    systemuser_id: str
    application_id: str | None
    full_name: str | None
    disabled: bool
    business_unit: str | None
    roles: tuple[str, ...]  # the privileged roles it holds


@dataclass(frozen=True)
class Finding:
    """An error met while auditing; one line, naming the environment (and the service when it is one user's)."""

    environment: str
    message: str
    service: str | None = None

    def __str__(self) -> str:
        where = f"{self.environment} {self.service}" if self.service else self.environment
        return f"{where}: error: {self.message}"


@dataclass(frozen=True)
class AuditReport:
    """The audit of one stack: every declared user's drift, unmanaged privileged users, and errors."""

    stack: str
    environments: tuple[EnvironmentTarget, ...]
    users: tuple[UserDrift, ...]
    privileged: tuple[PrivilegedUser, ...]
    errors: tuple[Finding, ...]

    @property
    def drifted(self) -> tuple[UserDrift, ...]:
        return tuple(user for user in self.users if user.has_drift)

    @property
    def has_drift(self) -> bool:
        return bool(self.drifted or self.privileged)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (``adp-identity audit --format json``)."""
        return {
            "stack": self.stack,
            "drift": self.has_drift,
            "environments": [{"name": e.name, "url": e.url, "production": e.production} for e in self.environments],
            "application_users": [_user_json(user) for user in self.users],
            "unmanaged_privileged_users": [
                {
                    "environment": p.environment,
                    "systemuser_id": p.systemuser_id,
                    "application_id": p.application_id,
                    "full_name": p.full_name,
                    "disabled": p.disabled,
                    "business_unit": p.business_unit,
                    "privileged_roles": list(p.roles),
                }
                for p in self.privileged
            ],
            "errors": [{"environment": f.environment, "service": f.service, "message": f.message} for f in self.errors],
        }


def _user_json(user: UserDrift) -> dict[str, Any]:
    return {
        "service": user.service,
        "environment": user.environment,
        "principal": user.principal,
        "application_id": user.application_id,
        "systemuser_id": user.systemuser_id,
        "drift": user.has_drift,
        "missing": user.missing,
        "disabled": None
        if user.actual_disabled is None
        else {"actual": user.actual_disabled, "declared": user.declared_disabled},
        "business_unit": None
        if user.actual_business_unit is None
        else {"actual": user.actual_business_unit, "declared": user.declared_business_unit},
        "extra_roles": list(user.extra_roles),
        "missing_roles": list(user.missing_roles),
        "declared": {
            "business_unit": user.declared_business_unit,
            "security_roles": list(user.declared_roles),
            "disabled": user.declared_disabled,
        },
    }


def privileged_roles(state: DesiredState) -> frozenset[str]:
    """Role names (compared by `name_key`) whose holders are reported when the stack does not manage them."""
    names = (*ALWAYS_PRIVILEGED_ROLES, *state.tenant.policy.forbidden_roles_in_production)
    return frozenset(name_key(name) for name in names)


def audit(
    state: DesiredState, readings: Iterable[EnvironmentReading], *, allowed_privileged: Iterable[str] = ()
) -> AuditReport:
    """Compare what was read with what is declared. ``allowed_privileged``: application ids whose privileged
    roles are known and accepted (a break-glass administrator), so they are not reported."""
    privileged = privileged_roles(state)
    allowed = {normalise_guid(app) for app in allowed_privileged}
    users: list[UserDrift] = []
    unmanaged: list[PrivilegedUser] = []
    errors: list[Finding] = []
    environments: list[EnvironmentTarget] = []
    for reading in readings:
        environment = reading.environment
        environments.append(environment)
        for user in reading.users:
            target = user.target
            errors.extend(Finding(environment.name, message, target.service) for message in user.errors)
            if user.catalog is None:
                continue
            try:
                users.append(user_drift(target, user.actual, user.catalog))
            except UnknownName as exc:
                errors.append(Finding(environment.name, str(exc), target.service))
        if reading.error is not None:
            errors.append(Finding(environment.name, f"cannot read the environment: {reading.error}"))
        managed = {user.target.desired.application_id for user in reading.users}
        by_name = sorted(reading.application_users or (), key=lambda u: (name_key(u.full_name or ""), u.systemuser_id))
        for listed in by_name:
            if listed.application_id in managed or listed.application_id in allowed:
                continue
            held = tuple(sorted((n for n in listed.roles.values() if name_key(n) in privileged), key=name_key))
            if held:
                unmanaged.append(
                    PrivilegedUser(
                        environment=environment.name,
                        systemuser_id=listed.systemuser_id,
                        application_id=listed.application_id,
                        full_name=listed.full_name,
                        disabled=listed.disabled,
                        business_unit=listed.business_unit_name,
                        roles=held,
                    )
                )
    return AuditReport(state.stack, tuple(environments), tuple(users), tuple(unmanaged), tuple(errors))
