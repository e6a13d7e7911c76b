"""Reconcile: from what is declared and what Dataverse holds, the fewest safe writes, in a safe order.

``plan`` is pure (no I/O, prints nothing): the provider, ``adp-identity plan`` and ``adp-identity audit`` all
show and execute the same ``Plan``. The order follows Dataverse's rules (docs/reference/dataverse-web-api.md):

1. ``CreateUser`` — or ``AdoptUser`` when an application user for the application already exists but is not
   the one this stack manages (docs/adr/0003: adopt, never fail with a duplicate).
2. ``EnableUser`` before any role assignment: roles cannot be associated to a disabled user.
3. ``MoveBusinessUnit``: Dataverse strips ALL roles on a move, so every desired role is then associated from
   the new business unit's copies and nothing is disassociated.
4. ``ChangeRoles``: only the difference to the exact declared set.
5. ``DisableUser`` last.

Every name is resolved before the first operation is emitted, so an unknown (or disguised, see
``models.disguised_name``) role or business unit fails before any write. ``revoke_plan`` (for delete) removes every
role, then disables; it never deletes the record.

``apply`` sends a whole plan as ONE atomic ``$batch`` change set (``client.write_user``; a failure leaves nothing
half-made) and gets the user back, read in the same ``$batch``. If the change set was refused or the user is not
yet what was declared (someone changed it since the plan was made: the snapshot it was planned from is up to 60 s
old), it plans again from that fresh read and sends what is still missing, once (``MAX_ROUNDS``). A refusal the
fresh read does not explain (the user is exactly as planned from) is raised, never resent. A lost answer re-reads
before anything is sent again, so a create is never duplicated. docs/adr/0008-environment-snapshot.md says why
planning from the snapshot is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from providers.dataverse.errors import (
    ConnectionFailed,
    NotFound,
    SoftDeletedUser,
    UnknownName,
    UnknownSecurityRole,
)
from providers.dataverse.models import (
    ActualUser,
    AddRole,
    BusinessUnit,
    NewUser,
    RemoveRole,
    RoleCatalog,
    RoleRef,
    SetBusinessUnit,
    SetDisabled,
    UserWrite,
    WriteResult,
    name_key,
)

MAX_ROUNDS = 2  # change sets one apply sends at most: the plan, then once what a fresh read shows still missing

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
    "plan_writes",
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
    """What reconcile needs from a client (``DataverseClient`` is one; tests may pass another).

    ``read_and_plan`` needs only the first four; ``ensure``, ``revoke`` and ``apply`` the rest.
    """

    @property
    def environment_url(self) -> str: ...

    def get_application_user(self, application_id: str) -> ActualUser | None: ...

    def get_user(self, systemuser_id: str) -> ActualUser | None: ...

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog: ...

    def lookup_application_user(self, application_id: str) -> ActualUser | None: ...

    def soft_deleted_user(self, application_id: str) -> ActualUser | None: ...

    def write_user(
        self, systemuser_id: str | None, application_id: str, writes: Sequence[UserWrite]
    ) -> WriteResult: ...

    def operation(self) -> AbstractContextManager[None]: ...

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
    actual: ActualUser | None = field(default=None, compare=False, repr=False)  # the state it was planned from

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    @property
    def writes(self) -> int:
        """How many writes the plan holds (each would be one request sent on its own; ``apply`` sends them all as
        ONE ``$batch`` change set, see ``requests``)."""
        return sum(op.writes for op in self.operations)

    @property
    def requests(self) -> int:
        """Write requests ``apply`` sends for the plan when nothing changed since it was made: 1, or 0 for a no-op."""
        return 1 if self.writes else 0

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
        actual=actual,
    )


def plan_writes(the_plan: Plan) -> tuple[UserWrite, ...]:
    """The plan as the client's write vocabulary, in order: what ONE change set holds."""
    writes: list[UserWrite] = []
    for operation in the_plan.operations:
        if isinstance(operation, CreateUser):
            writes.append(NewUser(operation.application_id, operation.business_unit.id))
        elif isinstance(operation, EnableUser):
            writes.append(SetDisabled(False))
        elif isinstance(operation, MoveBusinessUnit):
            writes.append(SetBusinessUnit(operation.target.id))
        elif isinstance(operation, ChangeRoles):
            writes += [AddRole(r.id) for r in operation.associate] + [RemoveRole(r.id) for r in operation.disassociate]
        elif isinstance(operation, DisableUser):
            writes.append(SetDisabled(True))
    return tuple(writes)


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
        actual=actual,
    )


# -- execution ------------------------------------------------------------------------------------------------


def read_and_plan(
    client: DataverseApi, desired: DesiredUser, *, managed_id: str | None = None, snapshot: bool = False
) -> tuple[ActualUser | None, Plan]:
    """Read the user and the catalog (cached), and plan; a missing name refetches the catalog once.

    The user is read on its own (1 request), or from the environment snapshot with ``snapshot=True`` (no request
    while it is fresh: an environment of N users then costs ``ceil(N / 5000)`` requests plus the catalog).
    """
    read = client.lookup_application_user if snapshot else client.get_application_user
    actual = read(desired.application_id)
    return actual, _plan_with_catalog(client, desired, actual, managed_id)


def _plan_with_catalog(
    client: DataverseApi, desired: DesiredUser, actual: ActualUser | None, managed_id: str | None
) -> Plan:
    catalog = client.catalog()
    try:
        return plan(desired, actual, catalog, managed_id=managed_id)
    except UnknownName:
        fresher = client.catalog(after_miss=True)
        if fresher is catalog:
            raise
    return plan(desired, actual, fresher, managed_id=managed_id)


def ensure(client: DataverseApi, desired: DesiredUser, *, managed_id: str | None = None) -> tuple[ActualUser, Plan]:
    """Make Dataverse hold ``desired``; returns the fresh state and the plan that was executed.

    Planned from the environment snapshot: a no-op costs no request while the snapshot is fresh, a change ONE
    request (``apply``). A user the snapshot does not hold is read on its own before anything is created; a
    soft-deleted row of the application stops the create with ``SoftDeletedUser`` before any write.
    """
    with client.operation():
        actual, the_plan = read_and_plan(client, desired, managed_id=managed_id, snapshot=True)
        if actual is None:
            actual = client.get_application_user(desired.application_id)
            if actual is None:
                _refuse_soft_deleted(client, desired.application_id)
            else:
                the_plan = _plan_with_catalog(client, desired, actual, managed_id)
        if actual is not None and the_plan.is_noop:
            return actual, the_plan
        return apply(client, the_plan), the_plan


def revoke(client: DataverseApi, systemuser_id: str) -> ActualUser | None:
    """Remove every role of the user, then disable it; None when the user no longer exists.

    The user is read on its own, never from the snapshot: revoking must not miss a role granted since.
    """
    with client.operation():
        actual = client.get_user(systemuser_id)
        if actual is None:
            return None
        the_plan = revoke_plan(actual, client.environment_url)
        if the_plan.is_noop:
            return actual
        return _apply(client, the_plan, lambda fresh: revoke_plan(fresh, client.environment_url))


def apply(client: DataverseApi, the_plan: Plan) -> ActualUser:
    """Execute ``the_plan`` and return the user as Dataverse holds it afterwards (read in the same request)."""
    desired, catalog = the_plan.desired, the_plan.catalog
    if desired is None or catalog is None:
        fresh = _apply(client, the_plan, lambda user: revoke_plan(user, the_plan.environment_url))
    else:
        managed_id = the_plan.systemuser_id if not any(isinstance(op, AdoptUser) for op in the_plan) else None
        fresh = _apply(client, the_plan, lambda user: plan(desired, user, catalog, managed_id=managed_id))
    if fresh is None:
        raise NotFound(
            f"application user {the_plan.systemuser_id} disappeared while it was being changed",
            environment=client.environment_url,
        )
    return fresh


def _creates(the_plan: Plan) -> bool:
    return any(isinstance(op, CreateUser) for op in the_plan)


def _refuse_soft_deleted(client: DataverseApi, application_id: str) -> None:
    soft = client.soft_deleted_user(application_id)
    if soft is not None:
        raise SoftDeletedUser(
            environment=client.environment_url,
            application_id=application_id,
            systemuser_id=soft.systemuser_id,
            full_name=soft.full_name,
        )


def _apply(client: DataverseApi, the_plan: Plan, replan: Callable[[ActualUser], Plan]) -> ActualUser | None:
    """At most ``MAX_ROUNDS`` change sets; None when the user the plan changes is gone."""
    current = the_plan
    for round_ in range(1, MAX_ROUNDS + 1):
        writes = plan_writes(current)
        if not writes:
            return current.actual
        application_id = current.application_id or ""
        try:
            result = client.write_user(current.systemuser_id, application_id, writes)
        except ConnectionFailed as exc:
            if not exc.maybe_committed or round_ == MAX_ROUNDS:
                raise
            result = WriteResult(None, None, exc, verified=False)  # read below before anything is sent again
        if not result.verified:
            live = client.get_application_user(application_id)
            result = WriteResult(live, client.soft_deleted_user(application_id), result.error)
        fresh = result.user
        if fresh is not None and current.systemuser_id is not None and fresh.systemuser_id != current.systemuser_id:
            fresh = None  # the application holds another user now: the one this plan changes is gone
        error = result.error
        if error is not None and not isinstance(error, ConnectionFailed):
            if fresh is None and _creates(current):
                _refuse_soft_deleted(client, application_id)
            if (fresh is None and current.actual is None) or (fresh is not None and fresh.same_state(current.actual)):
                raise error  # the user is as planned from: the refusal is the plan's own, resending would repeat it
        if fresh is None:
            if not _creates(current):
                return None
            if error is not None and not isinstance(error, ConnectionFailed):
                raise error
            if round_ == MAX_ROUNDS:
                raise error or NotFound(
                    f"application user of application {application_id} was not found right after it was created",
                    environment=client.environment_url,
                )
            continue  # the lost create was proven not processed (the read found nothing): send it again
        again = replan(fresh)
        if again.is_noop:
            return fresh
        if round_ == MAX_ROUNDS:
            if error is not None:
                raise error
            return fresh  # changed again while being changed: the outputs show it, and so does the next refresh
        current = again
    return None  # not reached: every round returns, raises or continues


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
