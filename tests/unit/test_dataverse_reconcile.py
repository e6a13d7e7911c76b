"""The pure reconcile step: which operations, in which order, for each starting state (no I/O at all)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from providers.dataverse.errors import UnknownBusinessUnit, UnknownSecurityRole
from providers.dataverse.models import BusinessUnit, RoleRef, SecurityRole
from providers.dataverse.reconcile import (
    ActualUser,
    AdoptUser,
    ChangeRoles,
    CreateUser,
    DesiredUser,
    DisableUser,
    EnableUser,
    MoveBusinessUnit,
    Operation,
    RoleCatalog,
    plan,
    revoke_plan,
)

ENV = "https://defradev-dev.crm11.dynamics.com"
APP = "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
USER = "aaaaaaaa-1111-4111-8111-000000000001"
ROOT = BusinessUnit("b0000000-0000-4000-8000-000000000000", "defradev-dev", None)
PAYMENTS = BusinessUnit("b0000000-0000-4000-8000-000000000001", "ffc-payments", ROOT.id)
ROLE_NAMES = ("Basic User", "System Administrator", "ADP Identity Manager", "Environment Maker", "Delegate")


def _role_id(unit: BusinessUnit, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{unit.id}/{name}"))


CATALOG = RoleCatalog(
    ENV,
    (ROOT, PAYMENTS),
    tuple(
        SecurityRole(_role_id(unit, name), name, unit.id, _role_id(ROOT, name))
        for unit in (ROOT, PAYMENTS)
        for name in ROLE_NAMES
    ),
)


def ref(name: str, unit: BusinessUnit = ROOT) -> RoleRef:
    return RoleRef(_role_id(unit, name), name)


def desired(*roles: str, business_unit: str | None = None, disabled: bool = False) -> DesiredUser:
    return DesiredUser(ENV, APP, business_unit, frozenset(roles), disabled)


def actual(*roles: str, unit: BusinessUnit = ROOT, disabled: bool = False) -> ActualUser:
    return ActualUser(
        systemuser_id=USER,
        application_id=APP,
        full_name="ffc-pay-batch",
        disabled=disabled,
        business_unit_id=unit.id,
        business_unit_name=unit.name,
        roles={_role_id(unit, r): r for r in roles},
    )


@dataclass(frozen=True)
class Case:
    id: str
    desired: DesiredUser
    actual: ActualUser | None
    managed: bool  # the stack already manages this user (its id is the resource id)
    operations: tuple[Operation, ...]
    writes: int


ADOPT = AdoptUser(USER, "ffc-pay-batch")

CASES = [
    Case(
        "create",
        desired("Basic User", "ADP Identity Manager"),
        None,
        False,
        (CreateUser(APP, ROOT), ChangeRoles(associate=(ref("ADP Identity Manager"), ref("Basic User")))),
        2,
    ),
    Case("create-without-roles", desired(), None, False, (CreateUser(APP, ROOT),), 1),
    Case(
        "create-in-child-unit-disabled",
        desired("Basic User", business_unit="ffc-payments", disabled=True),
        None,
        False,
        (CreateUser(APP, PAYMENTS), ChangeRoles(associate=(ref("Basic User", PAYMENTS),)), DisableUser()),
        3,
    ),
    Case("adopt-exact", desired("Basic User"), actual("Basic User"), False, (ADOPT,), 0),
    Case(
        "adopt-disabled",
        desired("Basic User"),
        actual(disabled=True),
        False,
        (ADOPT, EnableUser(), ChangeRoles(associate=(ref("Basic User"),))),
        2,
    ),
    Case(
        "adopt-wrong-business-unit",
        desired("Basic User", "Environment Maker", business_unit="ffc-payments"),
        actual("Basic User", "System Administrator"),
        False,
        (
            ADOPT,
            MoveBusinessUnit(ROOT.id, ROOT.name, PAYMENTS),
            ChangeRoles(associate=(ref("Basic User", PAYMENTS), ref("Environment Maker", PAYMENTS))),
        ),
        2,
    ),
    Case(
        "adopt-extra-system-administrator",
        desired("Basic User"),
        actual("Basic User", "System Administrator"),
        False,
        (ADOPT, ChangeRoles(disassociate=(ref("System Administrator"),))),
        1,
    ),
    Case("no-op", desired("Basic User", "Delegate"), actual("Delegate", "Basic User"), True, (), 0),
    Case(
        "add-one-remove-one",
        desired("Basic User", "Environment Maker"),
        actual("Basic User", "Delegate"),
        True,
        (ChangeRoles(associate=(ref("Environment Maker"),), disassociate=(ref("Delegate"),)),),
        1,
    ),
    Case(
        "move-business-unit",
        desired("Basic User", "Delegate", business_unit="ffc-payments"),
        actual("Basic User", "Delegate", "System Administrator"),
        True,
        (
            MoveBusinessUnit(ROOT.id, ROOT.name, PAYMENTS),
            ChangeRoles(associate=(ref("Basic User", PAYMENTS), ref("Delegate", PAYMENTS))),
        ),
        2,
    ),
    Case(
        "move-back-to-root-without-roles",
        desired(),
        actual("Basic User", unit=PAYMENTS),
        True,
        (MoveBusinessUnit(PAYMENTS.id, PAYMENTS.name, ROOT),),
        1,
    ),
    Case("disable", desired("Basic User", disabled=True), actual("Basic User"), True, (DisableUser(),), 1),
    Case("enable", desired("Basic User"), actual("Basic User", disabled=True), True, (EnableUser(),), 1),
    Case(
        "stay-disabled-but-add-a-role",
        desired("Basic User", "Delegate", disabled=True),
        actual("Basic User", disabled=True),
        True,
        (EnableUser(), ChangeRoles(associate=(ref("Delegate"),)), DisableUser()),
        3,
    ),
    Case(
        "stay-disabled-and-only-remove",
        desired(disabled=True),
        actual("Basic User", disabled=True),
        True,
        (ChangeRoles(disassociate=(ref("Basic User"),)),),
        1,
    ),
    Case(
        "names-match-case-insensitively",
        desired("basic user", "ENVIRONMENT MAKER"),
        actual("Basic User", "Environment Maker"),
        True,
        (),
        0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    managed_id = USER if case.managed else None
    result = plan(case.desired, case.actual, CATALOG, managed_id=managed_id)
    assert result.operations == case.operations
    assert result.writes == case.writes
    assert result.is_noop == (case.writes == 0)
    assert result.systemuser_id == (case.actual.systemuser_id if case.actual else None)
    assert result.desired == case.desired
    assert list(result) == list(case.operations)


def test_order_rules_hold_for_every_case() -> None:
    """Enable precedes any association; a move is followed by associations only; disable comes last."""
    for case in CASES:
        ops = plan(case.desired, case.actual, CATALOG, managed_id=None).operations
        kinds = [type(op) for op in ops]
        if ChangeRoles in kinds and EnableUser in kinds:
            assert kinds.index(EnableUser) < kinds.index(ChangeRoles), case.id
        if MoveBusinessUnit in kinds and ChangeRoles in kinds:
            change = ops[kinds.index(ChangeRoles)]
            assert isinstance(change, ChangeRoles) and change.disassociate == (), case.id
        if DisableUser in kinds:
            assert kinds[-1] is DisableUser, case.id
        assert kinds.count(ChangeRoles) <= 1, case.id


def test_describe_lines() -> None:
    result = plan(
        desired("Environment Maker", business_unit="ffc-payments"),
        actual("System Administrator", disabled=True),
        CATALOG,
    )
    assert result.describe() == (
        "adopt the existing application user 'ffc-pay-batch' (aaaaaaaa-1111-4111-8111-000000000001)",
        "enable the user",
        "move from business unit 'defradev-dev' to 'ffc-payments' (Dataverse removes every role on a move)",
        "associate security role 'Environment Maker'",
    )
    assert plan(desired("Basic User"), actual("Basic User"), CATALOG, managed_id=USER).describe() == ()


def test_unknown_role_fails_before_planning_with_closest_names() -> None:
    with pytest.raises(UnknownSecurityRole) as raised:
        plan(desired("Basic User", "Sytem Administrator", business_unit="ffc-payments"), None, CATALOG)
    error = raised.value
    assert error.name == "Sytem Administrator"
    assert error.business_unit == "ffc-payments"
    assert error.environment == ENV
    assert error.closest[0] == "System Administrator"
    assert str(error) == (
        "security role 'Sytem Administrator' does not exist in business unit 'ffc-payments' of environment "
        f"{ENV}; closest: 'System Administrator'"
    )


def test_unknown_role_without_similar_names() -> None:
    with pytest.raises(UnknownSecurityRole) as raised:
        plan(desired("Zzzz"), actual(), CATALOG)
    assert raised.value.closest == ()
    assert str(raised.value).endswith("; no similar names")


def test_unknown_business_unit() -> None:
    with pytest.raises(UnknownBusinessUnit) as raised:
        plan(desired("Basic User", business_unit="ffc-paymnts"), actual("Basic User"), CATALOG)
    assert raised.value.closest == ("ffc-payments",)
    assert "\n" not in str(raised.value)


def test_roles_resolve_to_the_target_business_units_copies() -> None:
    result = plan(desired("Basic User", business_unit="ffc-payments"), None, CATALOG)
    change = result.operations[1]
    assert isinstance(change, ChangeRoles)
    assert change.associate == (RoleRef(CATALOG.resolve("Basic User", "ffc-payments"), "Basic User"),)
    assert change.associate[0].id != CATALOG.resolve("Basic User")


@pytest.mark.parametrize(
    ("start", "operations"),
    [
        (
            actual("Basic User", "System Administrator"),
            (ChangeRoles(disassociate=(ref("Basic User"), ref("System Administrator"))), DisableUser()),
        ),
        (actual(), (DisableUser(),)),
        (actual("Basic User", disabled=True), (ChangeRoles(disassociate=(ref("Basic User"),)),)),
        (actual(disabled=True), ()),
    ],
    ids=["with-roles", "no-roles", "disabled-with-roles", "already-revoked"],
)
def test_revoke_plan_removes_roles_then_disables(start: ActualUser, operations: tuple[Operation, ...]) -> None:
    result = revoke_plan(start, ENV)
    assert result.operations == operations
    assert result.desired is None
    assert all(not isinstance(op, CreateUser | MoveBusinessUnit) for op in result)
