"""The naive way, for comparison: what a hand-written script, or Microsoft's Terraform provider, sends.

The reference is the ``powerplatform_user`` resource of microsoft/terraform-provider-power-platform
(``internal/services/authorization/api_user.go``): ``AddDataverseSecurityRoles`` posts one
``systemuserroles_association/$ref`` per role, ``RemoveDataverseSecurityRoles`` deletes one per role, and each of
them, like ``UpdateDataverseUser``'s PATCH, re-reads the user afterwards. A hand-written script does the same and
looks names up as it goes. Two forms:

* :func:`naive_requests` works the cost out from the very plan reconcile made for the operation (rules in
  :data:`NAIVE_RULES`), so both sides of a ratio describe the same change;
* :class:`PerRoleClient` really sends one ``$ref`` per role (and nothing else differently), for the timed runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.counting import RequestCount
from providers.dataverse.client import DataverseClient
from providers.dataverse.reconcile import (
    AdoptUser,
    ChangeRoles,
    CreateUser,
    DisableUser,
    EnableUser,
    MoveBusinessUnit,
    Plan,
)

NAIVE_RULES = (
    "1 GET reads the user (its roles expanded, as the Terraform provider does; the same as adp-identity)",
    "1 GET finds the business unit by name before a create or a move; 1 GET lists the unit's roles before adding roles",
    "1 POST / DELETE …/systemuserroles_association/$ref per role (no $batch)",
    "1 GET re-reads the user after each write step (create, enable, move, add roles, remove roles, disable)",
)


def naive_requests(the_plan: Plan | None) -> RequestCount:
    """The requests the naive way sends for ``the_plan``; None = a plain read (refresh) of one user."""
    reads, writes = 1, 0
    for operation in the_plan or ():
        if isinstance(operation, AdoptUser):
            continue
        if isinstance(operation, CreateUser | MoveBusinessUnit):
            reads += 1  # find the business unit by name
            writes += 1
            reads += 1  # re-read
        elif isinstance(operation, EnableUser | DisableUser):
            writes += 1
            reads += 1
        elif isinstance(operation, ChangeRoles):
            if operation.associate:
                reads += 1  # the unit's roles, to turn names into ids
                writes += len(operation.associate)
                reads += 1
            if operation.disassociate:
                writes += len(operation.disassociate)
                reads += 1
    return RequestCount(reads, writes)


class PerRoleClient(DataverseClient):
    """A :class:`DataverseClient` that associates and disassociates roles one ``$ref`` request at a time."""

    def change_roles(self, systemuser_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        for role_id in add:
            super().change_roles(systemuser_id, add=[role_id])
        for role_id in remove:
            super().change_roles(systemuser_id, remove=[role_id])
