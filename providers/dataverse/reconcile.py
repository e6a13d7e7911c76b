"""Reconcile: from what is declared and what Dataverse holds, the fewest safe writes, in a safe order.

``plan`` is pure (no I/O, prints nothing): the provider, ``adp-identity plan`` and ``adp-identity audit`` all
show and execute the same ``Plan``. The order follows Dataverse's rules (docs/reference/dataverse-web-api.md):

1. ``CreateUser`` — or ``AdoptUser`` when an application user for the application already exists but is not
   the one this stack manages (docs/adr/0003: adopt, never fail with a duplicate).
2. ``EnableUser`` before any role assignment: roles cannot be associated to a disabled user.
3. ``MoveBusinessUnit``: Dataverse strips ALL roles on a move, so every desired role is then associated from
   the new business unit's copies and nothing is disassociated.
4. ``ChangeRoles``: only the difference to the exact declared set, as ONE operation (one request).
5. ``DisableUser`` last.

Every name is resolved before the first operation is emitted, so an unknown role or business unit fails before
any write. ``revoke_plan`` (for delete) removes every role, then disables; it never deletes the record.

``apply`` executes a plan and survives a lost answer without duplicating anything: a create whose response was
lost (or that meets a duplicate) re-reads by application id and adopts what it finds; a role change whose
response was lost (or that meets a 412 a replay would get) re-reads the user's roles and sends only what is
still missing. A create retried after any half-way failure therefore converges on the declared state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from providers.dataverse.errors import ConnectionFailed, Duplicate, NotFound, UnknownName, UnknownSecurityRole
from providers.dataverse.models import ActualUser, BusinessUnit, RoleCatalog, RoleRef, name_key

__all__ = [
    "ActualUser",
    "AdoptUser",
    "ChangeRoles",
    "CreateUser",
    "DataverseApi",
    "DesiredUser",
    "DisableUser",
    "EnableUser",
    "MoveBusinessUnit",
    "Operation",
    "Plan",
    "RoleCatalog",
    "apply",
    "ensure",
    "plan",
    "read_and_plan",
    "revoke",
    "revoke_plan",
    "unknown_role_names",
]


@dataclass(frozen=True)
class DesiredUser:
    """What a stack declares for one application user."""

    environment_url: str
    application_id: str
    business_unit: str | None  # name; None = the root business unit
    security_roles: frozenset[str]
    disabled: bool = False


class DataverseApi(Protocol):
    """What ``apply`` needs from a client (``DataverseClient`` is one; tests may pass another)."""

    @property
    def environment_url(self) -> str: ...

    def get_application_user(self, application_id: str) -> ActualUser | None: ...

    def get_user(self, systemuser_id: str) -> ActualUser | None: ...

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog: ...

    def create_user(self, application_id: str, business_unit_id: str) -> str: ...

    def set_disabled(self, systemuser_id: str, disabled: bool) -> None: ...

    def move_business_unit(self, systemuser_id: str, business_unit_id: str) -> None: ...

    def change_roles(self, systemuser_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None: ...


# -- operations -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateUser:
    application_id: str
    business_unit: BusinessUnit
    writes: ClassVar[int] = 1

    def lines(self) -> tuple[str, ...]:
        return (
            f"create the application user for application {self.application_id} "
            f"in business unit {self.business_unit.name!r}",
        )


@dataclass(frozen=True)
class AdoptUser:
    """The application user exists but this stack did not create it (or lost track of it): take it over."""

    systemuser_id: str
    full_name: str | None
    writes: ClassVar[int] = 0

    def lines(self) -> tuple[str, ...]:
        name = f"{self.full_name!r} " if self.full_name else ""
        return (f"adopt the existing application user {name}({self.systemuser_id})",)


@dataclass(frozen=True)
class EnableUser:
    writes: ClassVar[int] = 1

    def lines(self) -> tuple[str, ...]:
        return ("enable the user",)


@dataclass(frozen=True)
class MoveBusinessUnit:
    source_id: str
    source_name: str | None
    target: BusinessUnit
    writes: ClassVar[int] = 1

    def lines(self) -> tuple[str, ...]:
        source = repr(self.source_name) if self.source_name else self.source_id
        return (f"move from business unit {source} to {self.target.name!r} (Dataverse removes every role on a move)",)


@dataclass(frozen=True)
class ChangeRoles:
    """Associate and disassociate security roles; always ONE request, whatever the count."""

    associate: tuple[RoleRef, ...] = ()
    disassociate: tuple[RoleRef, ...] = ()
    writes: ClassVar[int] = 1

    def lines(self) -> tuple[str, ...]:
        return tuple(f"associate security role {r.name!r}" for r in self.associate) + tuple(
            f"disassociate security role {r.name!r}" for r in self.disassociate
        )


@dataclass(frozen=True)
class DisableUser:
    writes: ClassVar[int] = 1

    def lines(self) -> tuple[str, ...]:
        return ("disable the user",)


Operation = CreateUser | AdoptUser | EnableUser | MoveBusinessUnit | ChangeRoles | DisableUser


@dataclass(frozen=True)
class Plan:
    """Ordered operations for one application user, plus what ``apply`` needs to recover from a lost answer."""

    environment_url: str
    application_id: str | None
    systemuser_id: str | None  # None until CreateUser has run
    operations: tuple[Operation, ...]
    desired: DesiredUser | None = None  # None for a revoke plan
    catalog: RoleCatalog | None = field(default=None, compare=False, repr=False)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    @property
    def writes(self) -> int:
        """How many write requests executing the plan costs (when nothing is lost on the way)."""
        return sum(op.writes for op in self.operations)

    @property
    def is_noop(self) -> bool:
        return self.writes == 0

    def describe(self) -> tuple[str, ...]:
        """One human-readable line per change, in execution order; empty when nothing changes."""
        return tuple(line for op in self.operations for line in op.lines())


# -- planning (pure) ------------------------------------------------------------------------------------------


def _desired_roles(desired: DesiredUser, target: BusinessUnit, catalog: RoleCatalog) -> dict[str, RoleRef]:
    """Role id -> role of every declared name, as the copies of ``target``; the first unknown name raises."""
    wanted: dict[str, RoleRef] = {}
    for name in sorted(desired.security_roles, key=name_key):
        role = catalog.role(name, target)
        wanted[role.id] = RoleRef(role.id, role.name)
    return wanted


def plan(
    desired: DesiredUser, actual: ActualUser | None, catalog: RoleCatalog, *, managed_id: str | None = None
) -> Plan:
    """The operations that make ``actual`` what ``desired`` declares.

    ``managed_id`` is the systemuserid this stack already manages (the provider's resource id); an existing user
    with another id is adopted. Raises ``UnknownBusinessUnit`` / ``UnknownSecurityRole`` before planning anything.
    """
    target = catalog.business_unit(desired.business_unit)
    wanted = _desired_roles(desired, target, catalog)
    operations: list[Operation] = []
    if actual is None:
        operations.append(CreateUser(desired.application_id, target))
        held: dict[str, str] = {}
        disabled = False
        moving = False
    else:
        if actual.systemuser_id != managed_id:
            operations.append(AdoptUser(actual.systemuser_id, actual.full_name))
        moving = actual.business_unit_id != target.id
        held = {} if moving else dict(actual.roles)  # a move strips every role
        disabled = actual.disabled

    associate = tuple(role for role_id, role in wanted.items() if role_id not in held)
    disassociate = tuple(
        sorted((RoleRef(i, n) for i, n in held.items() if i not in wanted), key=lambda r: (name_key(r.name), r.id))
    )
    if disabled and (associate or not desired.disabled):
        operations.append(EnableUser())
        disabled = False
    if moving and actual is not None:
        operations.append(MoveBusinessUnit(actual.business_unit_id, actual.business_unit_name, target))
    if associate or disassociate:
        operations.append(ChangeRoles(associate, disassociate))
    if desired.disabled and not disabled:
        operations.append(DisableUser())
    return Plan(
        environment_url=desired.environment_url,
        application_id=desired.application_id,
        systemuser_id=actual.systemuser_id if actual is not None else None,
        operations=tuple(operations),
        desired=desired,
        catalog=catalog,
    )


def revoke_plan(actual: ActualUser, environment_url: str = "") -> Plan:
    """Revoking access (what deleting the resource means): remove every role, then disable. Never delete."""
    operations: list[Operation] = []
    if actual.roles:
        operations.append(ChangeRoles(disassociate=actual.role_refs()))
    if not actual.disabled:
        operations.append(DisableUser())
    return Plan(
        environment_url=environment_url,
        application_id=actual.application_id,
        systemuser_id=actual.systemuser_id,
        operations=tuple(operations),
    )


# -- execution ------------------------------------------------------------------------------------------------


def read_and_plan(
    client: DataverseApi, desired: DesiredUser, *, managed_id: str | None = None
) -> tuple[ActualUser | None, Plan]:
    """Read the user (1 request) and the catalog (cached), and plan; a missing name refetches the catalog once."""
    actual = client.get_application_user(desired.application_id)
    catalog = client.catalog()
    try:
        return actual, plan(desired, actual, catalog, managed_id=managed_id)
    except UnknownName:
        fresher = client.catalog(after_miss=True)
        if fresher is catalog:
            raise
    return actual, plan(desired, actual, fresher, managed_id=managed_id)


def ensure(client: DataverseApi, desired: DesiredUser, *, managed_id: str | None = None) -> tuple[ActualUser, Plan]:
    """Make Dataverse hold ``desired``; returns the fresh state and the plan that was executed.

    A no-op costs the single read; anything else costs its writes plus one re-read (see ``apply``).
    """
    actual, the_plan = read_and_plan(client, desired, managed_id=managed_id)
    if actual is not None and the_plan.is_noop:
        return actual, the_plan
    return apply(client, the_plan), the_plan


def revoke(client: DataverseApi, systemuser_id: str) -> ActualUser | None:
    """Remove every role of the user, then disable it; None when the user no longer exists."""
    actual = client.get_user(systemuser_id)
    if actual is None:
        return None
    the_plan = revoke_plan(actual, client.environment_url)
    if the_plan.is_noop:
        return actual
    return apply(client, the_plan)


def apply(client: DataverseApi, the_plan: Plan) -> ActualUser:
    """Execute ``the_plan`` in order and return the user as Dataverse holds it afterwards (1 re-read)."""
    user_id = the_plan.systemuser_id
    for operation in the_plan.operations:
        if isinstance(operation, CreateUser):
            created = _create(client, operation)
            if isinstance(created, ActualUser):
                return _converge(client, the_plan, created)
            user_id = created
            continue
        if isinstance(operation, AdoptUser):
            continue
        if user_id is None:
            raise ValueError("a plan without CreateUser must name the systemuser it changes")
        if isinstance(operation, EnableUser):
            client.set_disabled(user_id, False)
        elif isinstance(operation, MoveBusinessUnit):
            client.move_business_unit(user_id, operation.target.id)
        elif isinstance(operation, ChangeRoles):
            _change_roles(client, user_id, operation)
        elif isinstance(operation, DisableUser):
            client.set_disabled(user_id, True)
    if user_id is None:
        raise ValueError("an empty plan for a user that does not exist")
    fresh = client.get_user(user_id)
    if fresh is None:
        raise NotFound(
            f"application user {user_id} disappeared while it was being changed", environment=client.environment_url
        )
    return fresh


def _create(client: DataverseApi, operation: CreateUser) -> str | ActualUser:
    """The new systemuserid, or the existing user a lost / duplicate create turned out to have made."""
    failure: ConnectionFailed | Duplicate
    try:
        return client.create_user(operation.application_id, operation.business_unit.id)
    except ConnectionFailed as exc:
        if not exc.maybe_committed:
            raise
        failure = exc
    except Duplicate as exc:
        failure = exc
    existing = client.get_application_user(operation.application_id)
    if existing is not None:
        return existing
    if isinstance(failure, Duplicate):
        raise failure
    # Re-read proved the lost create was not processed: sending it again cannot duplicate anything.
    return client.create_user(operation.application_id, operation.business_unit.id)


def _converge(client: DataverseApi, the_plan: Plan, existing: ActualUser) -> ActualUser:
    """Continue from the user a lost create left behind: plan again from what it is now, and apply that."""
    if the_plan.desired is None or the_plan.catalog is None:
        raise ValueError("a create plan must carry its desired state and catalog")
    again = plan(the_plan.desired, existing, the_plan.catalog, managed_id=existing.systemuser_id)
    if again.is_noop:
        return existing
    return apply(client, again)


def _change_roles(client: DataverseApi, user_id: str, operation: ChangeRoles) -> None:
    """One role-change request; after a lost answer or a 412/404 caused by a replay, re-read and send the rest."""
    try:
        client.change_roles(
            user_id, add=[r.id for r in operation.associate], remove=[r.id for r in operation.disassociate]
        )
        return
    except ConnectionFailed as exc:
        if not exc.maybe_committed:
            raise
        failure: Exception = exc
    except (Duplicate, NotFound) as exc:
        failure = exc
    current = client.get_user(user_id)
    if current is None:
        raise failure
    add = [r.id for r in operation.associate if r.id not in current.roles]
    remove = [r.id for r in operation.disassociate if r.id in current.roles]
    if not add and not remove:
        return
    unexplained = len(add) == len(operation.associate) and len(remove) == len(operation.disassociate)
    if unexplained and not isinstance(failure, ConnectionFailed):
        raise failure  # the re-read does not explain the 412/404: resending the same change would fail again
    client.change_roles(user_id, add=add, remove=remove)


def unknown_role_names(desired: DesiredUser, catalog: RoleCatalog) -> list[UnknownSecurityRole]:
    """Every declared role name that does not resolve (for ``audit`` / ``plan`` to list them all at once)."""
    target = catalog.business_unit(desired.business_unit)
    errors: list[UnknownSecurityRole] = []
    for name in sorted(desired.security_roles, key=name_key):
        try:
            catalog.role(name, target)
        except UnknownSecurityRole as exc:
            errors.append(exc)
    return errors
