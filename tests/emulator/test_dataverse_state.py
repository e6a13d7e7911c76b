"""The environment state and the Python API tests use to arrange and inspect it behind the tool's back."""

from __future__ import annotations

import threading

import pytest

from adp_identity_emulator.dataverse import DataverseEnvironment, WebApiError
from adp_identity_emulator.seed_model import BusinessUnitSeed, EnvironmentSeed, RoleSeed
from tests.emulator.dataverse_helpers import DEPLOYER, DISABLED_APP, PAYMENTS, READER, DataverseHarness, tenant_seed


def test_from_seed_builds_units_roles_and_users() -> None:
    tenant = tenant_seed()
    env = DataverseEnvironment.from_seed(tenant.environments[0], tenant)
    assert env.name == "defradev-dev"
    assert env.root_business_unit.name == "defradev-dev"
    assert sorted(b.name for b in env.business_units) == ["defradev-dev", "ffc-payments"]
    assert len(env.roles) == 4 * 2
    deployer = env.user_by_application_id(DEPLOYER[1])
    assert deployer is not None
    assert deployer.object_id == DEPLOYER[2] and deployer.display_name == DEPLOYER[0]
    assert env.role_names(deployer.id) == ["ADP Identity Manager"]
    retired = env.user_by_application_id(DISABLED_APP[1])
    assert retired is not None and retired.disabled
    assert env.role_names(retired.id) == ["Basic User"]  # a seed may describe a disabled user holding roles


def test_from_seed_accepts_units_listed_before_their_parent() -> None:
    tenant = tenant_seed()
    seed = EnvironmentSeed(
        "ordering",
        (
            BusinessUnitSeed("root"),
            BusinessUnitSeed("grandchild", parent="child"),
            BusinessUnitSeed("child", parent="root"),
        ),
        (RoleSeed("Basic User"),),
    )
    env = DataverseEnvironment.from_seed(seed, tenant)
    grandchild_role = env.role(env.role_id("Basic User", "grandchild"))
    child_role = env.role(env.role_id("Basic User", "child"))
    assert grandchild_role is not None and child_role is not None
    assert grandchild_role.parent_role_id == child_role.id
    assert grandchild_role.parent_root_role_id == env.role_id("Basic User")


def test_look_ups_name_what_is_known() -> None:
    dv = DataverseHarness()
    with pytest.raises(KeyError, match="known: defradev-dev, ffc-payments"):
        dv.state.business_unit_id("nope")
    with pytest.raises(KeyError, match="no role 'Nope' in business unit 'ffc-payments'"):
        dv.state.role_id("Nope", "ffc-payments")
    with pytest.raises(KeyError, match="not one of tenant applications"):
        dv.state.add_application_user("unknown-app")
    assert dv.state.role_id("basic user") == dv.state.role_id("Basic User")  # names compare case-insensitively


def test_state_api_enforces_dataverse_rules() -> None:
    dv = DataverseHarness()
    reader = dv.user_id(READER)
    with pytest.raises(WebApiError) as wrong_unit:
        dv.state.associate(reader, dv.state.role_id("Basic User", "ffc-payments"))
    assert wrong_unit.value.code == "0x80041409"
    with pytest.raises(WebApiError) as duplicate:
        dv.state.add_application_user(READER[0])
    assert duplicate.value.status == 412
    with pytest.raises(WebApiError) as disabled:
        dv.state.associate(dv.user_id(DISABLED_APP), dv.state.role_id("User Reader"))
    assert disabled.value.code == "0x80040225"


def test_move_business_unit_strips_roles_and_accepts_name_or_id() -> None:
    dv = DataverseHarness()
    reader = dv.user_id(READER)
    dv.state.move_business_unit(reader, dv.state.business_unit_id("ffc-payments"))
    assert dv.state.role_names(reader) == []
    dv.state.associate(reader, dv.state.role_id("Basic User", "ffc-payments"))
    dv.state.move_business_unit(reader, "defradev-dev")
    assert dv.state.role_names(reader) == []


def test_snapshot_and_restore_undo_changes() -> None:
    dv = DataverseHarness()
    snapshot = dv.state.snapshot()
    dv.state.add_application_user(PAYMENTS[0], roles=["Basic User"])
    dv.state.set_disabled(dv.user_id(READER), True)
    dv.state.restore(snapshot)
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None
    reader = dv.state.user(dv.user_id(READER))
    assert reader is not None and not reader.disabled


def test_concurrent_creates_of_one_application_make_exactly_one_user() -> None:
    dv = DataverseHarness()
    statuses: list[int] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        statuses.append(dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1]}).status)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [204] + [412] * 7
    assert len([u for u in dv.state.users if u.application_id == PAYMENTS[1]]) == 1
