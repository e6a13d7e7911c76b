"""Typed rows of the Dataverse slice this project touches, each parsed from the wire by ONE mapping function.

The mapping functions (``*_from_wire``) are the only code that knows Dataverse's column names; everything above
them (reconcile, the provider, the CLI) works with these frozen types. They read only the columns the client
selects, so a full row (the recorded responses in ``tests/fixtures/recorded-dataverse``) parses as well as a
``$select``-ed one. GUIDs are normalised to lower case so that comparisons never depend on how a server spells
them.

A user's business unit is read from its lookup column ``_businessunitid_value`` and named from the role catalog
(``application_user_from_wire(row, catalog)``): the client never expands the roles (N:N) and the business unit
(N:1) side by side in one query, a combination one revision of Microsoft's ``$expand`` documentation lists as
unsupported (docs/adr/0008-environment-snapshot.md).

The write vocabulary (``NewUser``, ``SetDisabled``, ``SetBusinessUnit``, ``AddRole``, ``RemoveRole``) is what
reconcile hands the client for one user; the client turns one user's writes into one atomic ``$batch`` change set.
"""

from __future__ import annotations

import difflib
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from providers.dataverse.errors import UnexpectedResponse, UnknownBusinessUnit, UnknownSecurityRole

_CLOSEST = 3  # how many similar names an "unknown name" error offers


def normalise_guid(value: str) -> str:
    """``{ABC...}`` / ``ABC...`` -> ``abc...``; ValueError when it is no GUID."""
    return str(uuid.UUID(value.strip().strip("{}")))


def name_key(name: str) -> str:
    """How names are compared: case-insensitive, runs of whitespace as one space (as Dataverse's UI shows them)."""
    return " ".join(name.split()).casefold()


def disguised_name(name: str) -> str | None:
    """Why a declared role or business-unit name could disguise another, or None when it is plain.

    Names are compared one way everywhere (``name_key``), so a declared name may hold no whitespace but single
    ASCII spaces between words, and no invisible or control character: otherwise ``"System\u00a0Administrator"``
    or ``"System  Customizer"`` would slip past a policy comparing one spelling and resolve to the real role.
    """
    for index, char in enumerate(name):
        if char == " ":
            continue
        category = unicodedata.category(char)
        if char.isspace() or category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"):
            return f"holds U+{ord(char):04X} ({unicodedata.name(char, category)}) at position {index + 1}"
    if name != name.strip(" "):
        return "starts or ends with a space"
    if "  " in name:
        return "holds two spaces in a row"
    return None


@dataclass(frozen=True)
class BusinessUnit:
    id: str
    name: str
    parent_id: str | None  # None for the root business unit

    @property
    def is_root(self) -> bool:
        return self.parent_id is None


@dataclass(frozen=True)
class SecurityRole:
    """One business unit's copy of a role; the copies of one role share ``root_role_id``."""

    id: str
    name: str
    business_unit_id: str
    root_role_id: str | None


@dataclass(frozen=True)
class RoleRef:
    """A role as an operation names it: its id (what Dataverse needs) and its name (what a reader needs)."""

    id: str
    name: str


@dataclass(frozen=True)
class ActualUser:
    """An application user as Dataverse holds it now."""

    systemuser_id: str
    application_id: str | None  # None only for interactive users (the recorded fixtures)
    full_name: str | None
    disabled: bool
    business_unit_id: str
    business_unit_name: str | None  # None when the row was read without the business unit expanded
    # True/False when the business unit was named (from the catalog, or expanded with its parent); None otherwise
    business_unit_is_root: bool | None = None
    roles: Mapping[str, str] = field(default_factory=dict)  # role id -> role name
    # Deleted in the environment and kept soft-deleted (``deletedstate`` not 0): no longer a user, still blocking a
    # new application user for the same application until it is purged. Readers treat such a row as gone.
    deleted: bool = False

    def role_refs(self) -> tuple[RoleRef, ...]:
        return tuple(sorted((RoleRef(i, n) for i, n in self.roles.items()), key=lambda r: (name_key(r.name), r.id)))

    def same_state(self, other: ActualUser | None) -> bool:
        """True when ``other`` is this user with the same business unit, enabled state and exact roles."""
        return (
            other is not None
            and other.systemuser_id == self.systemuser_id
            and other.business_unit_id == self.business_unit_id
            and other.disabled == self.disabled
            and set(other.roles) == set(self.roles)
            and other.deleted == self.deleted
        )


# -- what reconcile asks the client to write for one user ------------------------------------------------------


@dataclass(frozen=True)
class NewUser:
    """Create the application user of ``application_id`` in ``business_unit_id`` (first in its change set)."""

    application_id: str
    business_unit_id: str


@dataclass(frozen=True)
class SetDisabled:
    disabled: bool


@dataclass(frozen=True)
class SetBusinessUnit:
    """Move the user; Dataverse removes every role of the user when it does."""

    business_unit_id: str


@dataclass(frozen=True)
class AddRole:
    role_id: str


@dataclass(frozen=True)
class RemoveRole:
    role_id: str


UserWrite = NewUser | SetDisabled | SetBusinessUnit | AddRole | RemoveRole


@dataclass(frozen=True)
class WriteResult:
    """What one user's change set did, read back in the same ``$batch``.

    ``error`` is the change set's own failure (Dataverse applied none of it), or None. ``user`` is the live user of
    the application as read right after the change set, and ``soft_deleted`` a soft-deleted row of the same
    application; ``verified`` is False when that read did not happen (the batch stopped before it).
    """

    user: ActualUser | None
    soft_deleted: ActualUser | None = None
    error: Exception | None = None
    verified: bool = True


# -- wire mapping ---------------------------------------------------------------------------------------------


def _text(row: Mapping[str, Any], column: str, *, required: bool = True) -> str | None:
    value = row.get(column)
    if value is None:
        if required:
            raise UnexpectedResponse(f"Dataverse row lacks the column {column!r}")
        return None
    if not isinstance(value, str):
        raise UnexpectedResponse(f"Dataverse column {column!r} is not text (got {type(value).__name__})")
    return value


def _guid(row: Mapping[str, Any], column: str, *, required: bool = True) -> str | None:
    value = _text(row, column, required=required)
    if value is None:
        return None
    try:
        return normalise_guid(value)
    except ValueError:
        raise UnexpectedResponse(f"Dataverse column {column!r} is not a GUID: {value[:60]!r}") from None


def business_unit_from_wire(row: Mapping[str, Any]) -> BusinessUnit:
    """A ``businessunits`` row (``businessunitid, name, _parentbusinessunitid_value``)."""
    return BusinessUnit(
        id=_guid(row, "businessunitid") or "",
        name=_text(row, "name") or "",
        parent_id=_guid(row, "_parentbusinessunitid_value", required=False),
    )


def security_role_from_wire(row: Mapping[str, Any]) -> SecurityRole:
    """A ``roles`` row (``roleid, name, _businessunitid_value, _parentrootroleid_value``)."""
    return SecurityRole(
        id=_guid(row, "roleid") or "",
        name=_text(row, "name") or "",
        business_unit_id=_guid(row, "_businessunitid_value") or "",
        root_role_id=_guid(row, "_parentrootroleid_value", required=False),
    )


def application_user_from_wire(row: Mapping[str, Any], catalog: RoleCatalog | None = None) -> ActualUser:
    """A ``systemusers`` row with ``systemuserroles_association`` expanded.

    The business unit is named from ``catalog`` by the lookup column ``_businessunitid_value`` (or, for rows read
    the old way, from an expanded ``businessunitid``). ``deletedstate`` other than 0 marks a soft-deleted row.
    """
    disabled = row.get("isdisabled")
    if not isinstance(disabled, bool):
        raise UnexpectedResponse("Dataverse systemuser row lacks a true/false 'isdisabled'")
    expanded_roles = row.get("systemuserroles_association")
    if not isinstance(expanded_roles, list):
        raise UnexpectedResponse("Dataverse systemuser row lacks the expanded 'systemuserroles_association'")
    roles: dict[str, str] = {}
    for role_row in expanded_roles:
        if not isinstance(role_row, Mapping):
            raise UnexpectedResponse("Dataverse role association is not an object")
        roles[_guid(role_row, "roleid") or ""] = _text(role_row, "name") or ""
    business_unit_id = _guid(row, "_businessunitid_value") or ""
    business_unit = row.get("businessunitid")
    business_unit_name = None
    business_unit_is_root = None
    known = catalog.business_unit_by_id(business_unit_id) if catalog is not None else None
    if known is not None:
        business_unit_name, business_unit_is_root = known.name, known.is_root
    elif isinstance(business_unit, Mapping):
        business_unit_name = _text(business_unit, "name", required=False)
        if "_parentbusinessunitid_value" in business_unit:
            business_unit_is_root = business_unit["_parentbusinessunitid_value"] is None
    deleted_state = row.get("deletedstate", 0)
    if deleted_state is not None and (not isinstance(deleted_state, int) or isinstance(deleted_state, bool)):
        raise UnexpectedResponse(f"Dataverse column 'deletedstate' is not a number (got {deleted_state!r})")
    return ActualUser(
        systemuser_id=_guid(row, "systemuserid") or "",
        application_id=_guid(row, "applicationid", required=False),
        full_name=_text(row, "fullname", required=False),
        disabled=disabled,
        business_unit_id=business_unit_id,
        business_unit_name=business_unit_name,
        business_unit_is_root=business_unit_is_root,
        roles=roles,
        deleted=bool(deleted_state),
    )


def collection_from_wire(body: Any) -> list[Mapping[str, Any]]:
    """The rows of an OData collection response (``{"value": [...]}``)."""
    rows = body.get("value") if isinstance(body, Mapping) else None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise UnexpectedResponse("Dataverse answered a collection request without a 'value' list")
    return rows


# -- the catalog ----------------------------------------------------------------------------------------------


def _closest(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    by_key: dict[str, str] = {}
    for candidate in sorted(candidates):
        by_key.setdefault(name_key(candidate), candidate)
    matches = difflib.get_close_matches(name_key(name), list(by_key), n=_CLOSEST, cutoff=0.5)
    return tuple(by_key[m] for m in matches)


@dataclass(frozen=True)
class RoleCatalog:
    """The business units of one environment and every business unit's copies of the security roles.

    Resolution is by name, case-insensitively; a miss raises ``UnknownSecurityRole`` / ``UnknownBusinessUnit``
    naming the closest existing names, so a typo in a pull request gets a useful one-line error before any write.
    A disguised name (``disguised_name``: a no-break space, two spaces, a tab, a zero-width space...) never
    resolves, even when ``name_key`` would fold it onto a real name: it raises the same errors with ``reason`` set.
    """

    environment_url: str
    business_units: tuple[BusinessUnit, ...]
    roles: tuple[SecurityRole, ...]

    @classmethod
    def from_wire(
        cls,
        environment_url: str,
        business_unit_rows: Iterable[Mapping[str, Any]],
        role_rows: Iterable[Mapping[str, Any]],
    ) -> RoleCatalog:
        return cls(
            environment_url=environment_url,
            business_units=tuple(business_unit_from_wire(r) for r in business_unit_rows),
            roles=tuple(security_role_from_wire(r) for r in role_rows),
        )

    @cached_property
    def _units_by_id(self) -> dict[str, BusinessUnit]:
        return {unit.id: unit for unit in self.business_units}

    @cached_property
    def _units_by_name(self) -> dict[str, BusinessUnit]:
        units: dict[str, BusinessUnit] = {}
        for unit in self.business_units:
            units.setdefault(name_key(unit.name), unit)
        return units

    @cached_property
    def _roles_by_unit(self) -> dict[str, dict[str, SecurityRole]]:
        roles: dict[str, dict[str, SecurityRole]] = {}
        for role in self.roles:
            roles.setdefault(role.business_unit_id, {}).setdefault(name_key(role.name), role)
        return roles

    @property
    def root(self) -> BusinessUnit:
        for unit in self.business_units:
            if unit.is_root:
                return unit
        raise UnexpectedResponse(f"Dataverse environment {self.environment_url} has no root business unit")

    def business_unit(self, name: str | None) -> BusinessUnit:
        """The business unit called ``name``; None means the root business unit."""
        if name is None:
            return self.root
        disguise = disguised_name(name)
        if disguise is not None:
            raise UnknownBusinessUnit(environment=self.environment_url, business_unit=name, name=name, reason=disguise)
        unit = self._units_by_name.get(name_key(name))
        if unit is None:
            raise UnknownBusinessUnit(
                environment=self.environment_url,
                business_unit=name,
                name=name,
                closest=_closest(name, (u.name for u in self.business_units)),
            )
        return unit

    def business_unit_by_id(self, business_unit_id: str) -> BusinessUnit | None:
        return self._units_by_id.get(business_unit_id.lower())

    def roles_in(self, business_unit: BusinessUnit) -> tuple[SecurityRole, ...]:
        return tuple(self._roles_by_unit.get(business_unit.id, {}).values())

    def role(self, name: str, business_unit: BusinessUnit | str | None = None) -> SecurityRole:
        """The copy of role ``name`` held by ``business_unit`` (a BusinessUnit, its name, or None = root)."""
        unit = business_unit if isinstance(business_unit, BusinessUnit) else self.business_unit(business_unit)
        disguise = disguised_name(name)
        if disguise is not None:
            raise UnknownSecurityRole(
                environment=self.environment_url, business_unit=unit.name, name=name, reason=disguise
            )
        roles = self._roles_by_unit.get(unit.id, {})
        role = roles.get(name_key(name))
        if role is None:
            raise UnknownSecurityRole(
                environment=self.environment_url,
                business_unit=unit.name,
                name=name,
                closest=_closest(name, (r.name for r in roles.values())),
            )
        return role

    def resolve(self, name: str, business_unit: BusinessUnit | str | None = None) -> str:
        """The role id of ``name`` in ``business_unit``; raises UnknownSecurityRole with the closest names."""
        return self.role(name, business_unit).id
