"""Reading environments: GETs only, a fixed number of them, after the credential's tenant has been checked.

Per environment, whatever the number N of application users (``docs/operations.md``, tests/emulator):

* the tenant check: the token for the environment's audience must carry the stack's tenant id (issue 10 §2;
  ``providers._identity.check_tenant``). It is a token request to Entra ID, never a Dataverse request, and it
  runs for every environment before any environment is read: a wrong tenant sends nothing anywhere;
* every application user with its business unit and roles: ceil(N / 5000) GETs (``application_users()``);
* the role catalog, only when the environment has declared users: 2 GETs (business units, roles), read fresh per
  run (``catalog_cache=CatalogCache()``: an audit must not trust a catalog another part of the process cached).

Each declared user is then planned by reconcile itself (``read_and_plan``) over `ListedEnvironment`, a read-only
view that answers ``get_application_user`` from the list already read, so ``plan``, ``audit`` and the provider
share one planner and reading N declared users costs no request more. The client is built ``read_only=True``:
any write raises ``WriteRefused`` before a request is built, whatever a bug elsewhere asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol

from adp_identity.drift.targets import ApplicationUserTarget, EnvironmentTarget
from providers._identity import CredentialFailed, TokenCredential, WrongTenant, check_tenant
from providers.dataverse.client import CatalogCache, DataverseClient
from providers.dataverse.errors import DataverseError, UnknownBusinessUnit, UnknownName, WriteRefused
from providers.dataverse.models import ActualUser, RoleCatalog
from providers.dataverse.reconcile import Plan, plan, unknown_role_names

__all__ = [
    "Connect",
    "EnvironmentReader",
    "EnvironmentReading",
    "ListedEnvironment",
    "Progress",
    "UserReading",
    "WrongTenant",
    "check_tenants",
    "connect_read_only",
    "read_environment",
    "read_stack",
]


class EnvironmentReader(Protocol):
    """What reading an environment needs from a client (``DataverseClient`` is one; tests pass strict fakes)."""

    @property
    def environment_url(self) -> str: ...

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog: ...

    def application_users(self) -> list[ActualUser]: ...


Connect = Callable[[EnvironmentTarget], EnvironmentReader]
# Called as each environment starts (index, total, environment); the CLI draws a progress bar with it.
Progress = Callable[[int, int, EnvironmentTarget], None]


def connect_read_only(
    max_retry_wait: float, credential: TokenCredential | None = None
) -> Callable[[EnvironmentTarget], DataverseClient]:
    """One read-only client per environment, each with a catalog cache of its own (fresh per run)."""

    def connect(environment: EnvironmentTarget) -> DataverseClient:
        return DataverseClient(
            environment.url,
            credential,
            max_retry_wait=max_retry_wait,
            catalog_cache=CatalogCache(),
            read_only=True,
        )

    return connect


class ListedEnvironment:
    """Reconcile's client protocol over what was read: the listed users and the catalog; it cannot write.

    ``get_application_user`` answers from the list; ``catalog(after_miss=True)`` returns the same catalog, which
    was read moments ago in this run (refetching it could not find a name it lacks), so a typo costs nothing.
    """

    def __init__(self, environment_url: str, users: Iterable[ActualUser], catalog: RoleCatalog) -> None:
        self.environment_url = environment_url
        self._catalog = catalog
        self._by_application: dict[str, ActualUser] = {}
        for user in users:
            if user.application_id is not None:
                self._by_application.setdefault(user.application_id.lower(), user)

    def get_application_user(self, application_id: str) -> ActualUser | None:
        return self._by_application.get(application_id.lower()) if application_id else None

    def get_user(self, systemuser_id: str) -> ActualUser | None:
        for user in self._by_application.values():
            if user.systemuser_id == systemuser_id.lower():
                return user
        return None

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        return self._catalog

    def _refuse(self, what: str) -> NoReturn:
        raise WriteRefused(f"the listed view of {self.environment_url} cannot {what}", environment=self.environment_url)

    def create_user(self, application_id: str, business_unit_id: str) -> str:
        self._refuse("create a user")

    def set_disabled(self, systemuser_id: str, disabled: bool) -> None:
        self._refuse("update a user")

    def move_business_unit(self, systemuser_id: str, business_unit_id: str) -> None:
        self._refuse("update a user")

    def change_roles(self, systemuser_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        self._refuse("change roles")


@dataclass(frozen=True)
class UserReading:
    """One declared user as read: its live state and reconcile's plan, or the names the environment lacks."""

    target: ApplicationUserTarget
    actual: ActualUser | None = None
    plan: Plan | None = None
    unknown: tuple[UnknownName, ...] = ()  # every declared name that does not resolve (then ``plan`` is None)


@dataclass(frozen=True)
class EnvironmentReading:
    """An environment as read. ``error`` (one line) means it could not be read past that point."""

    environment: EnvironmentTarget
    users: tuple[UserReading, ...] = ()
    application_users: tuple[ActualUser, ...] | None = None  # every application user of the environment
    error: str | None = None


def read_environment(environment: EnvironmentTarget, client: EnvironmentReader) -> EnvironmentReading:
    """List every application user, read the catalog when users are declared, and plan each declared user.

    A declared name the environment lacks is that user's finding (all its unknown names at once); a failure of
    the environment itself (unreachable, 401/403, throttled) stops this environment with a one-line error.
    """
    try:
        listed = tuple(client.application_users())
        catalog = client.catalog() if environment.users else None
    except DataverseError as exc:
        return EnvironmentReading(environment, error=str(exc))
    if catalog is None:
        return EnvironmentReading(environment, (), listed)
    view = ListedEnvironment(client.environment_url, listed, catalog)
    users: list[UserReading] = []
    for target in environment.users:
        actual = view.get_application_user(target.desired.application_id)
        try:
            the_plan = plan(target.desired, actual, catalog, managed_id=target.managed_id)  # reconcile's pure step
        except UnknownName as exc:
            users.append(UserReading(target, actual, unknown=_unknown_names(target, catalog, exc)))
            continue
        users.append(UserReading(target, actual, the_plan))
    return EnvironmentReading(environment, tuple(users), listed)


def _unknown_names(target: ApplicationUserTarget, catalog: RoleCatalog, first: UnknownName) -> tuple[UnknownName, ...]:
    if isinstance(first, UnknownBusinessUnit):
        return (first,)
    return tuple(unknown_role_names(target.desired, catalog)) or (first,)


def check_tenants(
    environments: Sequence[EnvironmentTarget],
    *,
    credential: TokenCredential | None = None,
    check: Callable[[TokenCredential | None, str, str | None, str], None] = check_tenant,
) -> None:
    """Refuse (`WrongTenant`) unless each environment's token carries its tenant id; before ANY Dataverse request.

    A credential that gives no token at all is not decided here: the environment's first read reports it as
    that environment's one-line error (and sends nothing, since it has no token to send).
    """
    for environment in environments:
        try:
            check(credential, f"{environment.url}/.default", environment.tenant_id, _target_text(environment))
        except CredentialFailed:
            continue


def _target_text(environment: EnvironmentTarget) -> str:
    return f"Dataverse environment {environment.name} ({environment.url}, from {environment.url_from})"


def read_stack(
    environments: Sequence[EnvironmentTarget],
    connect: Connect,
    *,
    progress: Progress | None = None,
    credential: TokenCredential | None = None,
    check: Callable[[TokenCredential | None, str, str | None, str], None] = check_tenant,
) -> tuple[EnvironmentReading, ...]:
    """Check every environment's tenant, then read each in turn (one client each)."""
    check_tenants(environments, credential=credential, check=check)
    readings: list[EnvironmentReading] = []
    for index, environment in enumerate(environments):
        if progress is not None:
            progress(index, len(environments), environment)
        try:
            client = connect(environment)
        except ValueError as exc:
            readings.append(EnvironmentReading(environment, error=str(exc)))
            continue
        readings.append(read_environment(environment, client))
    if progress is not None and environments:
        progress(len(environments), len(environments), environments[-1])
    return tuple(readings)
