"""The emulator's Dataverse state seen through the provider's own types, without sending a request.

Two uses: planning an operation the way reconcile will (so the naive cost of the same operation can be worked
out from the same plan), and checking after every run that Dataverse holds exactly what was declared — one user
per application, the declared business unit, exactly the declared roles, the declared enabled state. Reading the
state directly keeps both out of the request log being measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from adp_identity_emulator.dataverse import ApplicationUser, DataverseEnvironment
from providers.dataverse.models import ActualUser, BusinessUnit, RoleCatalog, SecurityRole, name_key
from providers.dataverse.reconcile import DesiredUser, Plan, plan, revoke_plan


def catalog(state: DataverseEnvironment, environment_url: str) -> RoleCatalog:
    return RoleCatalog(
        environment_url=environment_url,
        business_units=tuple(BusinessUnit(b.id, b.name, b.parent_id) for b in state.business_units),
        roles=tuple(SecurityRole(r.id, r.name, r.business_unit_id, r.parent_root_role_id) for r in state.roles),
    )


def actual_user(state: DataverseEnvironment, user: ApplicationUser) -> ActualUser:
    unit = state.business_unit(user.business_unit_id)
    return ActualUser(
        systemuser_id=user.id,
        application_id=user.application_id,
        full_name=user.display_name,
        disabled=user.disabled,
        business_unit_id=user.business_unit_id,
        business_unit_name=unit.name if unit else None,
        business_unit_is_root=unit.is_root if unit else None,
        roles={r.id: r.name for r in state.roles_of(user.id)},
    )


def plan_for(state: DataverseEnvironment, desired: DesiredUser, *, managed_id: str | None = None) -> Plan:
    """What ``ensure`` will plan for ``desired`` given the state now."""
    user = state.user_by_application_id(desired.application_id)
    actual = actual_user(state, user) if user is not None else None
    return plan(desired, actual, catalog(state, desired.environment_url), managed_id=managed_id)


def revoke_plan_for(state: DataverseEnvironment, systemuser_id: str, environment_url: str) -> Plan:
    user = state.user(systemuser_id)
    if user is None:
        raise KeyError(f"no user {systemuser_id} in {state.name}")
    return revoke_plan(actual_user(state, user), environment_url)


def problems(state: DataverseEnvironment, desired: DesiredUser) -> list[str]:
    """How Dataverse differs from ``desired`` (empty when it holds exactly that)."""
    users = [u for u in state.users if u.application_id == desired.application_id.lower()]
    if not users:
        return [f"{state.name}: no application user for application {desired.application_id}"]
    if len(users) > 1:
        return [f"{state.name}: {len(users)} application users for application {desired.application_id}"]
    (user,) = users
    found: list[str] = []
    unit_name = desired.business_unit
    want_unit = state.root_business_unit.id if unit_name is None else state.business_unit_id(unit_name)
    if user.business_unit_id != want_unit:
        found.append(f"{state.name}: {user.display_name} sits in the wrong business unit")
    roles = state.roles_of(user.id)
    held = sorted(name_key(r.name) for r in roles)
    wanted = sorted(name_key(n) for n in desired.security_roles)
    if held != wanted:
        found.append(f"{state.name}: {user.display_name} holds roles {held}, declared {wanted}")
    if any(r.business_unit_id != user.business_unit_id for r in roles):
        found.append(f"{state.name}: {user.display_name} holds a role of another business unit")
    if user.disabled != desired.disabled:
        found.append(f"{state.name}: {user.display_name} disabled={user.disabled}, declared {desired.disabled}")
    return found


def revoked_problems(state: DataverseEnvironment, systemuser_id: str) -> list[str]:
    """A revoked user must still exist, be disabled and hold no role."""
    user = state.user(systemuser_id)
    if user is None:
        return [f"{state.name}: revoked user {systemuser_id} was deleted (revoke must never delete)"]
    found = []
    if not user.disabled:
        found.append(f"{state.name}: revoked user {user.display_name} is still enabled")
    if state.roles_of(user.id):
        found.append(f"{state.name}: revoked user {user.display_name} still holds roles")
    return found


def duplicate_users(state: DataverseEnvironment, application_ids: Iterable[str]) -> int:
    """How many of these applications have more than one application user."""
    wanted = {a.lower() for a in application_ids}
    counts = Counter(u.application_id for u in state.users if u.application_id in wanted)
    return sum(1 for n in counts.values() if n > 1)
