"""The report: reconcile's plans as ``plan`` and ``audit`` show them, unmanaged privileged users, and errors.

One computation: every declared user's `UserView` is a view of the ``Plan`` reconcile made for it (the same plan
the provider would execute), so ``plan`` ("what would change") and ``audit`` ("where Dataverse differs") cannot
disagree. Audit's words (missing, enabled the other way, in another business unit, extra and missing roles) are
read off the plan's operations:

* ``CreateUser``: the user is missing;
* ``EnableUser`` / ``DisableUser`` (one without the other): it is disabled / enabled the other way;
* ``MoveBusinessUnit``: it sits in another business unit, and the move removes every role it holds;
* ``ChangeRoles``: roles to disassociate are extra, roles to associate are missing; after a move, roles are
  compared by name (a role re-associated in the new unit is neither extra nor missing);
* ``AdoptUser``: the user exists but the stack's outputs do not name it (it will be adopted: not drift), or name
  another user (drift: the managed user was replaced by hand).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adp_identity.desired.errors import format_key_path
from adp_identity.desired.schema import DesiredState
from adp_identity.drift.reading import EnvironmentReading, UserReading
from adp_identity.drift.targets import ApplicationUserTarget, EnvironmentTarget, ServiceFiles
from providers.dataverse.errors import UnknownBusinessUnit, UnknownName
from providers.dataverse.models import ActualUser, name_key, normalise_guid
from providers.dataverse.reconcile import (
    AdoptUser,
    ChangeRoles,
    CreateUser,
    DisableUser,
    EnableUser,
    MoveBusinessUnit,
)

__all__ = [
    "ALWAYS_PRIVILEGED_ROLES",
    "CATEGORIES",
    "AuditReport",
    "EnvironmentSummary",
    "Finding",
    "PrivilegedUser",
    "StackReport",
    "UserDrift",
    "UserView",
    "audit",
    "name_error",
    "privileged_roles",
    "report",
]

# Roles that make an application user all-powerful in any environment (Microsoft's predefined roles).
ALWAYS_PRIVILEGED_ROLES: tuple[str, ...] = ("System Administrator", "System Customizer")
CATEGORIES = ("create", "adopt", "change", "disable")


def _names(names: Iterable[str]) -> tuple[str, ...]:
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(name_key(name), name)
    return tuple(sorted(unique.values(), key=name_key))


@dataclass(frozen=True)
class UserView:
    """One declared user's plan, operation by operation, as a reader sees it."""

    reading: UserReading
    create: CreateUser | None = None
    adopt: AdoptUser | None = None
    enable: bool = False
    move: MoveBusinessUnit | None = None
    roles: ChangeRoles | None = None
    disable: bool = False

    @classmethod
    def of(cls, reading: UserReading) -> UserView:
        fields: dict[str, Any] = {}
        for op in reading.plan.operations if reading.plan is not None else ():
            if isinstance(op, CreateUser):
                fields["create"] = op
            elif isinstance(op, AdoptUser):
                fields["adopt"] = op
            elif isinstance(op, EnableUser):
                fields["enable"] = True
            elif isinstance(op, MoveBusinessUnit):
                fields["move"] = op
            elif isinstance(op, ChangeRoles):
                fields["roles"] = op
            elif isinstance(op, DisableUser):
                fields["disable"] = True
        return cls(reading, **fields)

    @property
    def target(self) -> ApplicationUserTarget:
        return self.reading.target

    @property
    def actual(self) -> ActualUser | None:
        return self.reading.actual

    @property
    def planned(self) -> bool:
        return self.reading.plan is not None

    @property
    def writes(self) -> int:
        """The writes the plan holds (each bullet of ``request_lines``)."""
        return self.reading.plan.writes if self.reading.plan is not None else 0

    @property
    def requests(self) -> int:
        """The requests the provider sends for them: one ``$batch`` change set, atomic (0 when nothing changes)."""
        return self.reading.plan.requests if self.reading.plan is not None else 0

    @property
    def replaced(self) -> bool:
        """The stack's outputs name another systemuser than the one the application holds now."""
        return self.adopt is not None and self.target.managed_id is not None

    @property
    def has_drift(self) -> bool:
        return self.writes > 0 or self.replaced

    @property
    def removed_by_move(self) -> tuple[str, ...]:
        """The roles Dataverse strips when the planned move runs: every role the user holds now."""
        if self.move is None or self.actual is None:
            return ()
        return _names(self.actual.roles.values())

    @property
    def categories(self) -> frozenset[str]:
        """Which summary columns this user counts in (``create``, ``adopt``, ``change``, ``disable``)."""
        found: set[str] = set()
        if self.create is not None:
            found.add("create")
        if self.adopt is not None:
            found.add("adopt")
        if self.create is None and (self.enable or self.move is not None or self.roles is not None):
            found.add("change")
        if self.disable:
            found.add("disable")
        return frozenset(found)

    @property
    def up_to_date(self) -> bool:
        return self.planned and self.writes == 0 and self.adopt is None

    @property
    def moved_from(self) -> str | None:
        """The business unit the user sits in when the plan moves it (its name, from the catalog if need be)."""
        if self.move is None:
            return None
        if self.move.source_name:
            return self.move.source_name
        plan = self.reading.plan
        unit = plan.catalog.business_unit_by_id(self.move.source_id) if plan and plan.catalog else None
        return unit.name if unit is not None else self.move.source_id

    @property
    def declared_business_unit(self) -> str:
        plan = self.reading.plan
        if plan is not None and plan.catalog is not None:
            return plan.catalog.business_unit(self.target.desired.business_unit).name
        return self.target.desired.business_unit or "(root)"

    def drift(self) -> UserDrift:
        """Audit's words for this plan (see the module docstring)."""
        target, desired = self.target, self.target.desired
        base = UserDrift(
            service=target.service,
            environment=target.environment,
            principal=target.principal,
            application_id=desired.application_id,
            systemuser_id=self.actual.systemuser_id if self.actual else None,
            declared_business_unit=self.declared_business_unit,
            declared_roles=_names(desired.security_roles),
            declared_disabled=desired.disabled,
            has_drift=self.has_drift,
        )
        if self.create is not None or self.actual is None:
            return UserDrift(**{**base.__dict__, "missing": True})
        associate = _names(r.name for r in self.roles.associate) if self.roles else ()
        disassociate = _names(r.name for r in self.roles.disassociate) if self.roles else ()
        if self.move is not None:
            removed = {name_key(n): n for n in self.removed_by_move}
            added = {name_key(n): n for n in associate}
            extra = _names(removed[k] for k in removed.keys() - added.keys())
            missing = _names(added[k] for k in added.keys() - removed.keys())
        else:
            extra, missing = disassociate, associate
        actual_disabled = None
        if self.enable != self.disable:
            actual_disabled = self.enable  # enabling means it is disabled now
        return UserDrift(
            **{
                **base.__dict__,
                "actual_disabled": actual_disabled,
                "actual_business_unit": self.moved_from,
                "extra_roles": extra,
                "missing_roles": missing,
                "replaced_systemuser_id": target.managed_id if self.replaced else None,
            }
        )


@dataclass(frozen=True)
class UserDrift:
    """How one declared application user differs from Dataverse (read off its plan); nothing set = in sync."""

    service: str
    environment: str
    principal: str
    application_id: str
    systemuser_id: str | None
    declared_business_unit: str
    declared_roles: tuple[str, ...]
    declared_disabled: bool
    has_drift: bool = False
    missing: bool = False
    actual_disabled: bool | None = None  # set only when it differs from declared_disabled
    actual_business_unit: str | None = None  # set only when it differs
    extra_roles: tuple[str, ...] = ()
    missing_roles: tuple[str, ...] = ()
    replaced_systemuser_id: str | None = None  # the user the stack's outputs name, when another holds the app now


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
    """An error met while reading; one line, naming the environment (and the service when it is one user's)."""

    environment: str
    message: str
    service: str | None = None

    def __str__(self) -> str:
        where = f"{self.environment} {self.service}" if self.service else self.environment
        return f"{where}: error: {self.message}"


@dataclass(frozen=True)
class EnvironmentSummary:
    """One row of the summary table."""

    environment: str
    users: int = 0
    create: int = 0
    adopt: int = 0
    change: int = 0
    disable: int = 0
    unmanaged_privileged: int = 0
    up_to_date: int = 0
    errors: int = 0
    writes: int = 0
    requests: int = 0  # write requests: one atomic $batch change set per user that changes

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StackReport:
    """What ``plan`` and ``audit`` print for one stack: every declared user's plan, unmanaged privileged users,
    and errors, per environment in the stack's order."""

    stack: str
    environments: tuple[EnvironmentTarget, ...]
    views: tuple[UserView, ...]
    privileged: tuple[PrivilegedUser, ...]
    errors: tuple[Finding, ...]
    listed: Mapping[str, int] = field(default_factory=dict)  # environment -> application users listed

    @property
    def users(self) -> tuple[UserDrift, ...]:
        """Audit's view of every planned user."""
        return tuple(view.drift() for view in self.views if view.planned)

    @property
    def drifted(self) -> tuple[UserDrift, ...]:
        return tuple(user for user in self.users if user.has_drift)

    @property
    def has_drift(self) -> bool:
        return bool(self.drifted or self.privileged)

    @property
    def writes(self) -> int:
        return sum(view.writes for view in self.views)

    @property
    def requests(self) -> int:
        return sum(view.requests for view in self.views)

    def views_in(self, environment: str) -> tuple[UserView, ...]:
        return tuple(view for view in self.views if view.target.environment == environment)

    def privileged_in(self, environment: str) -> tuple[PrivilegedUser, ...]:
        return tuple(user for user in self.privileged if user.environment == environment)

    def errors_in(self, environment: str) -> tuple[Finding, ...]:
        return tuple(error for error in self.errors if error.environment == environment)

    def summary(self) -> tuple[EnvironmentSummary, ...]:
        rows: list[EnvironmentSummary] = []
        for environment in self.environments:
            views = self.views_in(environment.name)
            counts = {name: sum(1 for v in views if name in v.categories) for name in CATEGORIES}
            rows.append(
                EnvironmentSummary(
                    environment=environment.name,
                    users=len(views),
                    unmanaged_privileged=len(self.privileged_in(environment.name)),
                    up_to_date=sum(1 for v in views if v.up_to_date),
                    errors=len(self.errors_in(environment.name)),
                    writes=sum(v.writes for v in views),
                    requests=sum(v.requests for v in views),
                    **counts,
                )
            )
        return tuple(rows)

    def total(self) -> EnvironmentSummary:
        rows = self.summary()
        return EnvironmentSummary(
            "total",
            **{
                key: sum(getattr(row, key) for row in rows)
                for key in EnvironmentSummary.__dataclass_fields__
                if key != "environment"
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (``--format json``)."""
        return {
            "stack": self.stack,
            "drift": self.has_drift,
            "environments": [{"name": e.name, "url": e.url, "production": e.production} for e in self.environments],
            "application_users": [_user_json(view) for view in self.views if view.planned],
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
            "summary": [row.to_json() for row in self.summary()],
        }


AuditReport = StackReport  # the name audit's callers know


def _user_json(view: UserView) -> dict[str, Any]:
    from adp_identity.drift.render import request_lines  # the same words the text and Markdown forms use

    user = view.drift()
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
        "new": view.target.new,
        "adopt": view.adopt.systemuser_id if view.adopt is not None else None,
        "writes": view.writes,
        "requests": view.requests,
        "changes": request_lines(view),
    }


def privileged_roles(state: DesiredState) -> frozenset[str]:
    """Role names (compared by `name_key`) whose holders are reported when the stack does not manage them."""
    names = (*ALWAYS_PRIVILEGED_ROLES, *state.tenant.policy.forbidden_roles_in_production)
    return frozenset(name_key(name) for name in names)


def name_error(
    target: ApplicationUserTarget, error: UnknownName, environment: EnvironmentTarget, files: ServiceFiles | None
) -> str:
    """One line naming the file (and line), the key, the environment, the unknown name and the names to use."""
    if isinstance(error, UnknownBusinessUnit):
        key: tuple[str | int, ...] = ("dataverse", target.index, "business_unit")
        what = f"business unit {error.name!r} does not exist in environment {environment.name} ({environment.url})"
        kind = "business unit of the environment"
    else:
        roles = list(target.declared_roles) or sorted(target.desired.security_roles)
        position = next((i for i, n in enumerate(roles) if n == error.name), None)
        key = ("dataverse", target.index, "security_roles", *(() if position is None else (position,)))
        what = (
            f"security role {error.name!r} does not exist in business unit {error.business_unit!r} of environment "
            f"{environment.name} ({environment.url})"
        )
        kind = f"security role of business unit {error.business_unit!r}"
    if error.closest:
        first, *others = error.closest
        alternatives = f" (or {', '.join(repr(n) for n in others)})" if others else ""
        fix = f"did you mean {first!r}{alternatives}?"
    else:
        fix = f"no {kind} has a similar name"
    where = ""
    if files is not None:
        line = files.line(target.service, *key)
        where = f"{files.display(target.service)}{f':{line}' if line else ''}: "
    return f"{where}{format_key_path(key)}: {what}; {fix}"


def report(
    state: DesiredState,
    readings: Iterable[EnvironmentReading],
    *,
    allowed_privileged: Iterable[str] = (),
    files: ServiceFiles | None = None,
) -> StackReport:
    """Views of every plan read, plus unmanaged privileged users and errors. ``allowed_privileged``: application
    ids whose privileged roles are known and accepted (a break-glass administrator), so they are not reported."""
    privileged = privileged_roles(state)
    allowed = {normalise_guid(app) for app in allowed_privileged}
    views: list[UserView] = []
    unmanaged: list[PrivilegedUser] = []
    errors: list[Finding] = []
    environments: list[EnvironmentTarget] = []
    listed: dict[str, int] = {}
    for reading in readings:
        environment = reading.environment
        environments.append(environment)
        for user in reading.users:
            views.append(UserView.of(user))
            errors.extend(
                Finding(environment.name, name_error(user.target, exc, environment, files), user.target.service)
                for exc in user.unknown
            )
        if reading.error is not None:
            errors.append(Finding(environment.name, f"cannot read the environment: {reading.error}"))
        if reading.application_users is not None:
            listed[environment.name] = len(reading.application_users)
        managed = {target.desired.application_id for target in environment.users if not target.new}
        by_name = sorted(reading.application_users or (), key=lambda u: (name_key(u.full_name or ""), u.systemuser_id))
        for candidate in by_name:
            if candidate.application_id in managed or candidate.application_id in allowed:
                continue
            held = _names(n for n in candidate.roles.values() if name_key(n) in privileged)
            if held:
                unmanaged.append(
                    PrivilegedUser(
                        environment=environment.name,
                        systemuser_id=candidate.systemuser_id,
                        application_id=candidate.application_id,
                        full_name=candidate.full_name,
                        disabled=candidate.disabled,
                        business_unit=candidate.business_unit_name,
                        roles=held,
                    )
                )
    return StackReport(state.stack, tuple(environments), tuple(views), tuple(unmanaged), tuple(errors), listed)


audit = report  # ``audit(state, readings)``: the name the audit command and its tests use
