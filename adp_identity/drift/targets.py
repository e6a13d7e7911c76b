"""Targets: every application user a stack declares, where it lives, and the tenant that environment belongs to.

Built from the checked desired state (``adp_identity.desired``), the stack outputs (`identities`) and where each
environment is to be read: the stack settings' URL, unless ``--environment-url NAME=URL``, the emulator's
description (``--emulator FILE``) or its ``DATAVERSE_URL_*`` variables say otherwise (`adp_identity.drift.sandbox`).

A service with no stack outputs yet (a new service in a pull request) is still a target when the caller allows
it (``plan``): its application users are "to be created", and their business units and roles are resolved against
each environment all the same, so a typo fails the pull request rather than the deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adp_identity.desired.errors import DOCUMENT, DesiredStateError, format_key_path, show
from adp_identity.desired.schema import DesiredState
from adp_identity.desired.yamlsafe import YamlDocument, YamlRefused, read_yaml
from adp_identity.drift.identities import Principal, ServiceIdentity, refuse
from providers.dataverse.client import environment_origin
from providers.dataverse.reconcile import DesiredUser

__all__ = [
    "ApplicationUserTarget",
    "EnvironmentTarget",
    "ServiceFiles",
    "environment_overrides",
    "select_environments",
    "targets",
]


@dataclass(frozen=True)
class ApplicationUserTarget:
    """One declared application user: which service, where, as which principal, and what it should be.

    ``new``: the service's stack outputs do not name this principal yet (it is created by the next ``pulumi up``),
    so ``desired.application_id`` is empty and the user is planned as "to be created".
    """

    service: str
    environment: str  # short name (dev, tst, ...)
    principal: Principal
    desired: DesiredUser
    managed_id: str | None = None  # the systemuserid the stack's state names, when the identities file says
    new: bool = False
    index: int = 0  # the entry's position in the service file's ``dataverse`` list (for error lines)
    declared_roles: tuple[str, ...] = ()  # the roles in the file's order (for error lines)

    @property
    def application_id(self) -> str | None:
        return None if self.new else self.desired.application_id


@dataclass(frozen=True)
class EnvironmentTarget:
    """A Dataverse environment of the stack and the application users declared in it (sorted by service).

    ``tenant_id``: the Entra tenant the environment belongs to (the stack's; the emulator's stand-in for it in
    the sandbox); the credential's token must carry it before any request is sent. ``url_from`` says where the URL
    came from, for messages (``stack settings``, ``--environment-url``, ``--emulator``, ``DATAVERSE_URL_...``).
    """

    name: str
    url: str
    production: bool
    users: tuple[ApplicationUserTarget, ...]
    tenant_id: str | None = None
    url_from: str = "stack settings"


class ServiceFiles:
    """Where each service of a stack is declared, with the line of a key: what error lines point at."""

    def __init__(self, stacks_dir: Path, stack: str) -> None:
        self.stacks_dir = stacks_dir
        self.stack = stack
        self._root = stacks_dir.name or str(stacks_dir)
        self._documents: dict[str, YamlDocument | None] = {}

    def display(self, service: str) -> str:
        """The file as the loader names it, e.g. ``stacks/defradev/ffc-pay-web.yaml``."""
        return f"{self._root}/{self.stack}/{service}.yaml"

    def path(self, service: str) -> Path:
        return self.stacks_dir / self.stack / f"{service}.yaml"

    def line(self, service: str, *key_path: str | int) -> int | None:
        """The 1-based line of ``key_path`` in the service file (the nearest enclosing key that has one)."""
        if service not in self._documents:
            try:
                self._documents[service] = read_yaml(self.path(service))
            except (OSError, YamlRefused):
                self._documents[service] = None
        document = self._documents[service]
        if document is None:
            return None
        return document.line_of(tuple(key_path))


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
        refuse(errors)
    return overrides


def select_environments(names: Iterable[str], state: DesiredState, *, option: str = "--environment") -> tuple[str, ...]:
    """The stack environments ``names`` picks (all when empty), in the stack's order; unknown ones are refused."""
    chosen = list(dict.fromkeys(names))
    known = list(state.tenant.dataverse_environments)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        refuse(
            [
                DesiredStateError(
                    option, name, f"unknown environment {show(name)} of stack '{state.stack}'", ", ".join(known)
                )
                for name in unknown
            ]
        )
    return tuple(name for name in known if not chosen or name in chosen)


def targets(
    state: DesiredState,
    identities: Mapping[str, ServiceIdentity] | None,
    environment_urls: Mapping[str, str] | None = None,
    *,
    source: str = "identities",
    new_services: bool = False,
    tenant_id: str | None = None,
    url_from: Mapping[str, str] | None = None,
) -> tuple[EnvironmentTarget, ...]:
    """Every Dataverse environment of the stack (declaration order) with the application users declared there.

    ``identities`` None: no stack outputs were given. ``new_services``: a principal the outputs do not name is a
    user "to be created" (``plan``); otherwise it is an error (``audit`` cannot compare what has no id).
    ``tenant_id`` (default: the stack's) is what every environment's credential must sign in to.
    Raises `DriftInputErrors` when the identities name a service the stack does not have, or lack an id.
    """
    urls = dict(environment_urls or {})
    known_ids = dict(identities or {})
    errors: list[DesiredStateError] = []
    services = ", ".join(state.services) or "none"
    for service in known_ids:
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
        identity = known_ids.get(service)
        if identity is None and not new_services:
            errors.append(
                DesiredStateError(
                    source,
                    service,
                    f"missing: service '{service}' declares Dataverse access",
                    "the service's stack outputs with client_id (or run `plan`, which plans it as to be created)",
                )
            )
            continue
        for index, access in enumerate(spec.dataverse):
            application_id = identity.application_id(access.principal) if identity is not None else None
            if application_id is None and not new_services:
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
                application_id=application_id or "",
                business_unit=access.business_unit,
                security_roles=frozenset(access.security_roles),
                disabled=access.disabled,
            )
            managed_id = identity.application_users.get(access.environment) if identity is not None else None
            users[access.environment].append(
                ApplicationUserTarget(
                    service,
                    access.environment,
                    access.principal,
                    desired,
                    managed_id,
                    new=application_id is None,
                    index=index,
                    declared_roles=tuple(access.security_roles),
                )
            )
    if errors:
        refuse(errors)
    tenant = (tenant_id or state.tenant.tenant_id).lower()
    sources = dict(url_from or {})
    return tuple(
        EnvironmentTarget(
            name,
            urls.get(name, environment.url),
            environment.production,
            tuple(users[name]),
            tenant,
            sources.get(name, "stack settings"),
        )
        for name, environment in state.tenant.dataverse_environments.items()
    )
