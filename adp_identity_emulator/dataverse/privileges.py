"""Dataverse privileges the Web API slice checks, and the "missing privilege" refusal Dataverse answers.

Each privilege belongs to a table (entity) with an object type code (OTC): ``systemuser`` is 8,
``businessunit`` 10, ``role`` 1036. A caller holds the union of its security roles' privileges; the
"System Administrator" role holds every privilege. The refusal message keeps the shape Dataverse writes
("Principal user (Id=..., type=8, roleCount=..., privilegeCount=...), is missing prvX privilege (Id=...) on
OTC=8 for entity 'systemuser' ..."), because clients and people diagnose access problems by reading it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import PRINCIPAL_PRIVILEGE_DENIED, WebApiError

SYSTEM_ADMINISTRATOR = "System Administrator"

_PRIVILEGE_NAMESPACE = uuid.UUID("6f1d1c4e-2f0a-4c53-9a57-5d3c0e8b7a10")


@dataclass(frozen=True)
class Privilege:
    name: str
    entity: str  # logical name of the table the privilege is on
    otc: int  # object type code of that table
    localized_name: str

    @property
    def id(self) -> str:
        """A stable id per privilege name (real ids differ per product, but are stable too)."""
        return str(uuid.uuid5(_PRIVILEGE_NAMESPACE, self.name))


_TABLES = {
    "systemuser": (8, "User"),
    "businessunit": (10, "Business Unit"),
    "role": (1036, "Security Role"),
}


def _privilege(name: str, entity: str) -> Privilege:
    otc, localized = _TABLES[entity]
    return Privilege(name, entity, otc, localized)


# The privileges this slice checks (one per operation), plus the siblings a realistic role would list.
CATALOG: dict[str, Privilege] = {
    p.name: p
    for p in (
        _privilege("prvCreateUser", "systemuser"),
        _privilege("prvReadUser", "systemuser"),
        _privilege("prvWriteUser", "systemuser"),
        _privilege("prvDeleteUser", "systemuser"),
        _privilege("prvAppendUser", "systemuser"),
        _privilege("prvAppendToUser", "systemuser"),
        _privilege("prvReadBusinessUnit", "businessunit"),
        _privilege("prvAppendToBusinessUnit", "businessunit"),
        _privilege("prvReadRole", "role"),
        _privilege("prvAssignRole", "role"),
        _privilege("prvAppendToRole", "role"),
    )
}

READ_USER = "prvReadUser"
CREATE_USER = "prvCreateUser"
WRITE_USER = "prvWriteUser"
DELETE_USER = "prvDeleteUser"
READ_ROLE = "prvReadRole"
ASSIGN_ROLE = "prvAssignRole"
READ_BUSINESS_UNIT = "prvReadBusinessUnit"


def held_privileges(roles: Iterable[tuple[str, Iterable[str]]]) -> frozenset[str]:
    """The privileges held through ``(role name, role privileges)`` pairs; System Administrator holds all."""
    held: set[str] = set()
    for name, privileges in roles:
        if name == SYSTEM_ADMINISTRATOR:
            held.update(CATALOG)
        held.update(privileges)
    return frozenset(held)


def missing_privilege(
    *,
    user_id: str,
    object_id: str,
    business_unit_id: str,
    role_count: int,
    privilege_count: int,
    privilege: str,
) -> WebApiError:
    """The 403 Dataverse answers when the caller lacks ``privilege``."""
    p = CATALOG.get(privilege) or Privilege(privilege, "systemuser", 8, "User")
    return WebApiError(
        403,
        PRINCIPAL_PRIVILEGE_DENIED,
        f"Principal user (Id={user_id}, type=8, roleCount={role_count}, privilegeCount={privilege_count}, "
        f"accessMode='4 Non-interactive', AADObjectId='{object_id}', businessUnitId={business_unit_id}), "
        f"is missing {p.name} privilege (Id={p.id}) on OTC={p.otc} for entity '{p.entity}' "
        f"(LocalizedName='{p.localized_name}'). context.Caller={user_id}. "
        "Consider adding missed privilege to one of the principal (user/team) roles.",
    )
