"""One Dataverse environment's data: business units, security roles (one copy per business unit) and
application users with their role associations.

The Web API service reads and changes it through the methods below, and so do tests, to arrange and inspect
state "behind the tool's back" (a user disabled by an administrator, a role removed in the portal...).
Every method enforces the rules Dataverse enforces, so a test cannot arrange a state Dataverse could not
hold: one application user per application, a role only from the user's own business unit, no new role on a
disabled user (unless the org setting allows it), and moving a user to another business unit removes all
of its roles.

Deleting follows power-platform ``admin/delete-users.md``: only a disabled user can be deleted; the first delete
*soft-deletes* it (the row stays, ``deletedstate`` 1, disabled, its roles unassigned, still listed and retrieved, no
longer a user that can sign in), a second delete purges it. Until it is purged, a new application user for the same
application is refused as a duplicate (412, microsoft/terraform-provider-power-platform#623). A purge soon after a
role change meets the user's own ``usersettings`` row, which the platform provisions asynchronously after a role
change: it fails once with ``0x80048610`` and deletes nothing; the next attempt succeeds (the race reported in
microsoft/terraform-provider-power-platform#1249, made deterministic here; ``usersettings_race`` turns it off).

All methods take the environment's lock (re-entrant), so tests may arrange state while the server runs.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..seed_model import ApplicationSeed, EnvironmentSeed, TenantSeed
from . import errors
from .errors import WebApiError

# Dataverse's own names for the roles that ship with every environment (so they are "managed").
_BUILT_IN_ROLES = frozenset({"System Administrator", "System Customizer", "Basic User", "Environment Maker"})
_SYSTEM_ADMINISTRATOR_TEMPLATE = "627090ff-40a3-4053-8790-584edc5be201"
OWNS_RECORDS = "0x80048610"  # "Can't delete a user which owns records" (terraform-provider-power-platform#1249)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return str(uuid.uuid4())


def _same_id(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


@dataclass
class BusinessUnit:
    id: str
    name: str
    parent_id: str | None  # None = the root business unit
    created_on: str
    version: int
    calendar_id: str = field(default_factory=_new_id)
    address1_id: str = field(default_factory=_new_id)
    address2_id: str = field(default_factory=_new_id)

    @property
    def is_root(self) -> bool:
        return self.parent_id is None


@dataclass
class SecurityRole:
    """One business unit's copy of a role; the copies of a role share ``parent_root_role_id``."""

    id: str
    name: str
    business_unit_id: str
    parent_root_role_id: str  # == id for the root business unit's copy
    parent_role_id: str | None  # the copy in the parent business unit (None at the root)
    privileges: frozenset[str]
    managed: bool
    created_on: str
    version: int
    unique_id: str = field(default_factory=_new_id)
    solution_id: str = "fd140aaf-4df4-11dd-bd17-0019b9312238"  # the "Active" solution of unmanaged rows
    template_id: str | None = None


@dataclass
class ApplicationUser:
    """A ``systemuser`` row of an application user (``applicationid`` set, ``accessmode`` 4)."""

    id: str
    application_id: str
    object_id: str  # the service principal's object id in the tenant
    display_name: str
    email: str
    business_unit_id: str
    disabled: bool
    role_ids: list[str]  # associated roles, in association order
    created_on: str
    modified_on: str
    version: int
    identity_id: int
    created_by: str | None = None
    modified_by: str | None = None
    deleted_state: int = 0  # 1 once soft-deleted: kept until purged, served with deletedstate 1
    settings_pending: bool = False  # a role change provisions usersettings asynchronously (see the module docstring)
    calendar_id: str = field(default_factory=_new_id)
    queue_id: str = field(default_factory=_new_id)
    mailbox_id: str = field(default_factory=_new_id)
    address1_id: str = field(default_factory=_new_id)
    address2_id: str = field(default_factory=_new_id)


class DataverseEnvironment:
    """The state of one Dataverse environment (one organization)."""

    def __init__(
        self,
        name: str,
        *,
        tenant_id: str,
        tenant_domain: str,
        applications: Iterable[ApplicationSeed] = (),
        allow_role_assignment_on_disabled_users: bool = False,
    ) -> None:
        self.name = name
        self.tenant_id = tenant_id
        self.tenant_domain = tenant_domain
        self.organization_id = _new_id()
        self.system_user_id = _new_id()  # the built-in SYSTEM user that "created" business units and roles
        self.allow_role_assignment_on_disabled_users = allow_role_assignment_on_disabled_users
        self.usersettings_race = True  # a purge right after a role change meets the usersettings row once
        self.lock = threading.RLock()
        self._applications = list(applications)
        self._business_units: dict[str, BusinessUnit] = {}
        self._roles: dict[str, SecurityRole] = {}
        self._role_seeds: list[tuple[str, frozenset[str]]] = []
        self._users: dict[str, ApplicationUser] = {}
        self._version = 1_400_000
        self._identity = 100

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_seed(cls, env: EnvironmentSeed, tenant: TenantSeed) -> DataverseEnvironment:
        """Build the environment a seed describes (business units, roles in every unit, application users)."""
        state = cls(
            env.name,
            tenant_id=tenant.id,
            tenant_domain=tenant.domain,
            applications=tenant.applications,
            allow_role_assignment_on_disabled_users=env.allow_role_assignment_on_disabled_users,
        )
        pending = list(env.business_units)
        while pending:
            progressed = False
            for unit in list(pending):
                if unit.parent is None or unit.parent in {b.name for b in state._business_units.values()}:
                    state.add_business_unit(unit.name, parent=unit.parent)
                    pending.remove(unit)
                    progressed = True
            if not progressed:
                names = ", ".join(u.name for u in pending)
                raise ValueError(f"environment {env.name}: business units with an unknown parent: {names}")
        for role in env.roles:
            state.add_role(role.name, role.privileges)
        for user in env.application_users:
            state.add_application_user(
                user.application, business_unit=user.business_unit, roles=user.roles, disabled=user.disabled
            )
        return state

    def add_business_unit(self, name: str, *, parent: str | None = None) -> BusinessUnit:
        """Add a business unit (the first one, without parent, is the root); it gets a copy of every role."""
        with self.lock:
            if any(b.name.lower() == name.lower() for b in self._business_units.values()):
                raise ValueError(f"business unit {name!r} already exists in {self.name}")
            if parent is None and self._business_units:
                raise ValueError(f"{self.name} already has a root business unit; give {name!r} a parent")
            parent_unit = self._business_unit_ref(parent) if parent is not None else None
            unit = BusinessUnit(_new_id(), name, parent_unit.id if parent_unit else None, _now(), self._bump())
            self._business_units[unit.id] = unit
            for role_name, privileges in self._role_seeds:
                self._copy_role(role_name, privileges, unit)
            return unit

    def add_role(self, name: str, privileges: Iterable[str] = ()) -> SecurityRole:
        """Add a role to every business unit; returns the root business unit's copy."""
        with self.lock:
            if any(existing.lower() == name.lower() for existing, _ in self._role_seeds):
                raise ValueError(f"role {name!r} already exists in {self.name}")
            frozen = frozenset(privileges)
            self._role_seeds.append((name, frozen))
            root_copy: SecurityRole | None = None
            for unit in self._units_parents_first():
                role = self._copy_role(name, frozen, unit)
                root_copy = root_copy or role
            if root_copy is None:
                raise ValueError(f"{self.name} has no business unit to hold role {name!r}")
            return root_copy

    def _units_parents_first(self) -> list[BusinessUnit]:
        ordered: list[BusinessUnit] = []
        remaining = list(self._business_units.values())
        while remaining:
            for unit in list(remaining):
                if unit.parent_id is None or any(u.id == unit.parent_id for u in ordered):
                    ordered.append(unit)
                    remaining.remove(unit)
        return ordered

    def _copy_role(self, name: str, privileges: frozenset[str], unit: BusinessUnit) -> SecurityRole:
        parent_copy = None
        root_copy = None
        for role in self._roles.values():
            if role.name == name and role.business_unit_id == unit.parent_id:
                parent_copy = role
            if role.name == name and self._business_units[role.business_unit_id].is_root:
                root_copy = role
        role_id = _new_id()
        role = SecurityRole(
            id=role_id,
            name=name,
            business_unit_id=unit.id,
            parent_root_role_id=root_copy.id if root_copy and not unit.is_root else role_id,
            parent_role_id=parent_copy.id if parent_copy else None,
            privileges=privileges,
            managed=name in _BUILT_IN_ROLES,
            created_on=_now(),
            version=self._bump(),
            template_id=_SYSTEM_ADMINISTRATOR_TEMPLATE if name == "System Administrator" else None,
        )
        self._roles[role.id] = role
        return role

    # ---------------------------------------------------------------------------------------- look-ups
    @property
    def business_units(self) -> list[BusinessUnit]:
        with self.lock:
            return list(self._business_units.values())

    @property
    def roles(self) -> list[SecurityRole]:
        with self.lock:
            return list(self._roles.values())

    @property
    def users(self) -> list[ApplicationUser]:
        with self.lock:
            return list(self._users.values())

    @property
    def root_business_unit(self) -> BusinessUnit:
        with self.lock:
            return next(b for b in self._business_units.values() if b.is_root)

    def business_unit(self, business_unit_id: str) -> BusinessUnit | None:
        with self.lock:
            return next((b for b in self._business_units.values() if _same_id(b.id, business_unit_id)), None)

    def business_unit_id(self, name: str) -> str:
        """The id of the business unit called ``name`` (KeyError naming the known units otherwise)."""
        return self._business_unit_ref(name).id

    def _business_unit_ref(self, ref: str | None) -> BusinessUnit:
        """A business unit by id or name; ``None`` = the root."""
        with self.lock:
            if ref is None:
                return self.root_business_unit
            by_id = self.business_unit(ref)
            if by_id is not None:
                return by_id
            for unit in self._business_units.values():
                if unit.name.lower() == ref.lower():
                    return unit
            known = ", ".join(sorted(b.name for b in self._business_units.values()))
            raise KeyError(f"no business unit {ref!r} in {self.name} (known: {known})")

    def role(self, role_id: str) -> SecurityRole | None:
        with self.lock:
            return next((r for r in self._roles.values() if _same_id(r.id, role_id)), None)

    def role_id(self, name: str, business_unit: str | None = None) -> str:
        """The id of role ``name``'s copy in ``business_unit`` (name or id; ``None`` = the root)."""
        with self.lock:
            unit = self._business_unit_ref(business_unit)
            for role in self._roles.values():
                if role.business_unit_id == unit.id and role.name.lower() == name.lower():
                    return role.id
            known = ", ".join(sorted({r.name for r in self._roles.values()}))
            raise KeyError(f"no role {name!r} in business unit {unit.name!r} of {self.name} (known: {known})")

    def user(self, user_id: str) -> ApplicationUser | None:
        with self.lock:
            return next((u for u in self._users.values() if _same_id(u.id, user_id)), None)

    def user_by_application_id(self, application_id: str) -> ApplicationUser | None:
        """The live (not soft-deleted) application user of ``application_id``."""
        with self.lock:
            return next(
                (u for u in self._users.values() if _same_id(u.application_id, application_id) and not u.deleted_state),
                None,
            )

    def soft_deleted_users(self, application_id: str) -> list[ApplicationUser]:
        """The soft-deleted rows of ``application_id`` that wait to be purged."""
        with self.lock:
            return [u for u in self._users.values() if _same_id(u.application_id, application_id) and u.deleted_state]

    def user_by_object_id(self, object_id: str) -> ApplicationUser | None:
        with self.lock:
            return next(
                (u for u in self._users.values() if _same_id(u.object_id, object_id) and not u.deleted_state), None
            )

    def roles_of(self, user_id: str) -> list[SecurityRole]:
        """The roles associated with a user, in association order."""
        with self.lock:
            user = self._user(user_id)
            return [self._roles[r] for r in user.role_ids]

    def role_names(self, user_id: str) -> list[str]:
        """The sorted names of a user's roles (what a test usually asserts)."""
        return sorted(r.name for r in self.roles_of(user_id))

    def _user(self, user_id: str) -> ApplicationUser:
        user = self.user(user_id)
        if user is None:
            raise errors.not_found("systemuser", user_id)
        return user

    def _role(self, role_id: str) -> SecurityRole:
        role = self.role(role_id)
        if role is None:
            raise errors.not_found("role", role_id)
        return role

    # ---------------------------------------------------------------------------------------- changes
    def add_application_user(
        self,
        application: str,
        *,
        business_unit: str | None = None,
        roles: Iterable[str] = (),
        disabled: bool = False,
        display_name: str | None = None,
        object_id: str | None = None,
    ) -> ApplicationUser:
        """Arrange an application user as an administrator would (portal or seed).

        ``application`` is a name or client id of the tenant's applications; for an application the tenant
        does not know, pass its client id with ``display_name`` and ``object_id``. ``roles`` are role names
        of the user's business unit (name or id; ``None`` = root). Roles are given before ``disabled`` applies,
        so a seed can describe a disabled user that still holds roles.
        """
        with self.lock:
            app = next(
                (a for a in self._applications if a.name == application or _same_id(a.client_id, application)),
                None,
            )
            if app is None and (display_name is None or object_id is None):
                known = ", ".join(a.name for a in self._applications) or "none"
                raise KeyError(
                    f"application {application!r} is not one of tenant applications ({known}); "
                    "pass display_name and object_id"
                )
            unit = self._business_unit_ref(business_unit)
            user = self.create_application_user(
                application_id=app.client_id if app else application,
                object_id=object_id or (app.object_id if app else ""),
                display_name=display_name or (app.name if app else application),
                business_unit_id=unit.id,
            )
            for role_name in roles:
                self.associate(user.id, self.role_id(role_name, unit.id))
            if disabled:
                self.set_disabled(user.id, True)
            return user

    def create_application_user(
        self,
        *,
        application_id: str,
        object_id: str,
        display_name: str,
        business_unit_id: str,
        user_id: str | None = None,
        disabled: bool = False,
        created_by: str | None = None,
    ) -> ApplicationUser:
        """Create the ``systemuser`` of an application (what ``POST systemusers`` does once validated)."""
        with self.lock:
            if any(_same_id(u.application_id, application_id) for u in self._users.values()):
                raise errors.duplicate()  # live, or soft-deleted and not purged yet
            if user_id is not None and self.user(user_id) is not None:
                raise errors.duplicate()
            unit = self.business_unit(business_unit_id)
            if unit is None:
                raise errors.not_found("businessunit", business_unit_id)
            now = _now()
            self._identity += 1
            compact = "".join(ch for ch in display_name.lower() if ch.isalnum())
            user = ApplicationUser(
                id=(user_id or _new_id()).lower(),
                application_id=application_id.lower(),
                object_id=object_id.lower(),
                display_name=display_name,
                email=f"{compact}{application_id.lower()}@{self.tenant_domain}",
                business_unit_id=unit.id,
                disabled=disabled,
                role_ids=[],
                created_on=now,
                modified_on=now,
                version=self._bump(),
                identity_id=self._identity,
                created_by=created_by,
                modified_by=created_by,
            )
            self._users[user.id] = user
            return user

    def associate(self, user_id: str, role_id: str) -> None:
        """Give a user a role of its own business unit (``POST .../systemuserroles_association/$ref``)."""
        with self.lock:
            user = self._user(user_id)
            role = self._role(role_id)
            if user.deleted_state:
                raise _soft_deleted(user)
            if user.disabled and not self.allow_role_assignment_on_disabled_users:
                raise WebApiError(
                    400,
                    errors.USER_NOT_ENABLED,
                    "The specified user is either disabled or is not a member of any business unit. "
                    f"(systemuserid={user.id}: security roles cannot be assigned to a disabled user unless the "
                    "organization setting allowRoleAssignmentOnDisabledUsers is enabled)",
                )
            if role.business_unit_id != user.business_unit_id:
                raise WebApiError(
                    400,
                    errors.USER_IN_WRONG_BUSINESS,
                    "Cannot associate security role because the security role's Business Unit is not the same as "
                    f"the user's Business Unit. Details: userid={user.id}, userBU={user.business_unit_id}, "
                    f"roleId={role.id}, roleBU={role.business_unit_id}",
                )
            if role.id in user.role_ids:
                raise errors.duplicate()
            user.role_ids.append(role.id)
            user.settings_pending = True
            self._touch(user)

    def disassociate(self, user_id: str, role_id: str) -> None:
        """Remove a role from a user; removing a role the user does not hold changes nothing."""
        with self.lock:
            user = self._user(user_id)
            role = self._role(role_id)
            if role.id in user.role_ids:
                user.role_ids.remove(role.id)
                user.settings_pending = True
                self._touch(user)

    def set_disabled(self, user_id: str, disabled: bool, *, by: str | None = None) -> None:
        """Disable or enable a user (``PATCH systemusers(id) {"isdisabled": ...}``); roles are kept."""
        with self.lock:
            user = self._user(user_id)
            if user.deleted_state and not disabled:
                raise _soft_deleted(user)
            if user.disabled != disabled:
                user.disabled = disabled
                self._touch(user, by)

    def delete_user(self, user_id: str) -> None:
        """Delete an application user (admin/delete-users): only a disabled one. The first delete soft-deletes it
        (roles unassigned, the row kept with ``deletedstate`` 1); a second delete purges the row (see the module
        docstring for the usersettings race a purge can meet)."""
        with self.lock:
            user = self._user(user_id)
            if not user.disabled:
                raise errors.WebApiError(
                    400,
                    errors.INVALID_ARGUMENT,
                    f"The user with SystemUserId={user.id} is enabled: only disabled users can be deleted.",
                )
            if not user.deleted_state:
                user.role_ids.clear()
                user.deleted_state = 1
                self._touch(user)
                return
            if user.settings_pending and self.usersettings_race:
                user.settings_pending = False  # the platform's sweep catches up: the next attempt succeeds
                raise errors.WebApiError(
                    400,
                    OWNS_RECORDS,
                    f"Can't delete a user which owns records. SystemUserId={user.id} owns its usersettings record; "
                    "reassign or delete the records the user owns and try again.",
                )
            del self._users[user.id]

    def move_business_unit(self, user_id: str, business_unit: str, *, by: str | None = None) -> None:
        """Move a user to another business unit (name or id); this REMOVES ALL of the user's roles.

        Dataverse's default (``DoNotRemoveRolesOnChangeBusinessUnit`` = false): roles belong to a business
        unit, so the caller must re-assign them from the new unit's copies.
        """
        with self.lock:
            user = self._user(user_id)
            if user.deleted_state:
                raise _soft_deleted(user)
            try:
                unit = self._business_unit_ref(business_unit)
            except KeyError:
                raise errors.not_found("businessunit", business_unit) from None
            if unit.id == user.business_unit_id:
                return
            user.business_unit_id = unit.id
            user.role_ids.clear()
            self._touch(user, by)

    def touch(self, user_id: str, by: str | None) -> None:
        """Record a change made by ``by`` (new version number and modified time)."""
        with self.lock:
            self._touch(self._user(user_id), by)

    def _touch(self, user: ApplicationUser, by: str | None = None) -> None:
        user.version = self._bump()
        user.modified_on = _now()
        if by is not None:
            user.modified_by = by

    def _bump(self) -> int:
        self._version += 1
        return self._version

    # ------------------------------------------------------------------------------------ transactions
    def snapshot(self) -> dict[str, Any]:
        """A copy of everything a Web API request can change (for atomic change sets)."""
        with self.lock:
            return {"users": copy.deepcopy(self._users), "version": self._version, "identity": self._identity}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Roll back to a :meth:`snapshot` (a failed change set leaves no trace)."""
        with self.lock:
            self._users = snapshot["users"]
            self._version = snapshot["version"]
            self._identity = snapshot["identity"]


def _soft_deleted(user: ApplicationUser) -> WebApiError:
    """A change to a soft-deleted user (docs: "The user can't be restored"; the exact error is inferred)."""
    return WebApiError(
        400,
        errors.INVALID_ARGUMENT,
        f"The user with SystemUserId={user.id} is deleted: a soft-deleted user cannot be changed or restored.",
    )
