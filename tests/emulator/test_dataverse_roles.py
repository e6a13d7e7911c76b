"""Business units, per-unit role copies, and associating / disassociating roles with application users."""

from __future__ import annotations

import pytest

from tests.emulator.dataverse_helpers import (
    ADMIN_APP,
    API,
    DEPLOYER,
    DISABLED_APP,
    ORIGIN,
    PAYMENTS,
    READER,
    DataverseHarness,
    q,
)


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _assoc(dv: DataverseHarness, user_id: str, role_ref: str) -> tuple[int, dict[str, str] | None]:
    reply = dv.call("POST", f"systemusers({user_id})/systemuserroles_association/$ref", {"@odata.id": role_ref})
    return reply.status, (reply.error if reply.status >= 400 else None)


# --------------------------------------------------------------------------------------------- business units
def test_root_business_unit_query(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "businessunits?$select=businessunitid,name&$filter=_parentbusinessunitid_value eq null")
    assert reply.status == 200
    assert reply.json["@odata.context"] == f"{ORIGIN}{API}$metadata#businessunits(businessunitid,name)"
    assert [(r["businessunitid"], r["name"]) for r in reply.json["value"]] == [
        (dv.state.root_business_unit.id, "defradev-dev")
    ]


def test_business_unit_by_name_and_parent(dv: DataverseHarness) -> None:
    reply = dv.call(
        "GET", "businessunits?$select=name,_parentbusinessunitid_value&$filter=" + q("name eq 'FFC-Payments'")
    )
    assert [r["name"] for r in reply.json["value"]] == ["ffc-payments"]  # string comparison ignores case
    assert reply.json["value"][0]["_parentbusinessunitid_value"] == dv.state.root_business_unit.id
    assert reply.json["value"][0]["businessunitid"] == dv.state.business_unit_id("ffc-payments")


# ---------------------------------------------------------------------------------------------------- roles
def test_every_business_unit_has_its_own_copy_of_every_role(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "roles?$select=roleid,name,_businessunitid_value,_parentrootroleid_value")
    rows = reply.json["value"]
    root = dv.state.root_business_unit.id
    child = dv.state.business_unit_id("ffc-payments")
    names = {"System Administrator", "ADP Identity Manager", "Basic User", "User Reader"}
    for name in names:
        copies = {r["_businessunitid_value"]: r for r in rows if r["name"] == name}
        assert set(copies) == {root, child}, name
        assert copies[root]["roleid"] != copies[child]["roleid"]
        assert copies[root]["_parentrootroleid_value"] == copies[root]["roleid"]  # the root copy is its own root
        assert copies[child]["_parentrootroleid_value"] == copies[root]["roleid"]


def test_roles_of_one_business_unit_and_one_by_name(dv: DataverseHarness) -> None:
    child = dv.state.business_unit_id("ffc-payments")
    reply = dv.call("GET", f"roles?$select=roleid,name&$filter=_businessunitid_value eq {child}")
    assert sorted(r["name"] for r in reply.json["value"]) == sorted(
        ["System Administrator", "ADP Identity Manager", "Basic User", "User Reader"]
    )
    one = dv.call(
        "GET", "roles?$select=roleid,name&$filter=" + q(f"_businessunitid_value eq {child} and name eq 'Basic User'")
    )
    assert [r["roleid"] for r in one.json["value"]] == [dv.state.role_id("Basic User", "ffc-payments")]


def test_role_by_key_and_404(dv: DataverseHarness) -> None:
    role_id = dv.state.role_id("Basic User")
    assert dv.call("GET", f"roles({role_id})?$select=name").json["name"] == "Basic User"
    missing = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    reply = dv.call("GET", f"roles({missing})")
    assert reply.status == 404
    assert reply.error == {"code": "0x80040217", "message": f"role With Id = {missing} Does Not Exist"}


# ---------------------------------------------------------------------------------------------- association
def test_associate_with_absolute_and_relative_references(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    assert _assoc(dv, user_id, dv.role_url("Basic User")) == (204, None)
    assert _assoc(dv, user_id, f"roles({dv.state.role_id('ADP Identity Manager')})") == (204, None)
    assert dv.state.role_names(user_id) == ["ADP Identity Manager", "Basic User", "User Reader"]
    reply = dv.call("GET", f"systemusers({user_id})/systemuserroles_association?$select=roleid,name")
    assert reply.status == 200
    assert reply.json["@odata.context"] == f"{ORIGIN}{API}$metadata#roles(roleid,name)"
    assert sorted(r["name"] for r in reply.json["value"]) == ["ADP Identity Manager", "Basic User", "User Reader"]


def test_associating_an_associated_role_is_a_duplicate(dv: DataverseHarness) -> None:
    status, error = _assoc(dv, dv.user_id(READER), dv.role_url("User Reader"))
    assert status == 412
    assert error == {"code": "0x80040237", "message": "A record with matching key values already exists."}


def test_role_of_another_business_unit_is_refused(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    role_id = dv.state.role_id("Basic User", "ffc-payments")
    status, error = _assoc(dv, user_id, dv.role_url("Basic User", "ffc-payments"))
    assert status == 400
    assert error is not None
    assert error["code"] == "0x80041409"  # UserInWrongBusiness, as Microsoft's error table documents
    assert "security role's Business Unit is not the same as the user's Business Unit" in error["message"]
    assert f"roleId={role_id}" in error["message"]
    assert dv.state.role_names(user_id) == ["User Reader"]


def test_no_role_for_a_disabled_user(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DISABLED_APP)
    status, error = _assoc(dv, user_id, dv.role_url("User Reader"))
    assert status == 400
    assert error is not None and error["code"] == "0x80040225"
    assert dv.state.role_names(user_id) == ["Basic User"]
    dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": False})  # enable first, then assign
    assert _assoc(dv, user_id, dv.role_url("User Reader")) == (204, None)


def test_org_setting_allows_roles_on_disabled_users() -> None:
    dv = DataverseHarness(allow_disabled_roles=True)
    user_id = dv.user_id(DISABLED_APP)
    assert _assoc(dv, user_id, dv.role_url("User Reader")) == (204, None)
    assert dv.state.role_names(user_id) == ["Basic User", "User Reader"]


def test_associate_404_for_unknown_user_or_role(dv: DataverseHarness) -> None:
    missing = "12121212-3434-5656-7878-909090909090"
    status, error = _assoc(dv, missing, dv.role_url("Basic User"))
    assert (status, error) == (404, {"code": "0x80040217", "message": f"systemuser With Id = {missing} Does Not Exist"})
    status, error = _assoc(dv, dv.user_id(READER), f"{ORIGIN}{API}roles({missing})")
    assert (status, error) == (404, {"code": "0x80040217", "message": f"role With Id = {missing} Does Not Exist"})


@pytest.mark.parametrize(
    "reference",
    [
        "https://127.0.0.1:1/api/data/v9.2/roles({role})",  # another environment's URL
        "businessunits({role})",
        "roles(not-a-guid)",
        "",
    ],
)
def test_associate_refuses_bad_references(dv: DataverseHarness, reference: str) -> None:
    status, _ = _assoc(dv, dv.user_id(READER), reference.format(role=dv.state.role_id("Basic User")))
    assert status == 400


def test_disassociate_by_key_and_by_id_query(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DEPLOYER)
    dv.state.associate(user_id, dv.state.role_id("Basic User"))
    manager = dv.state.role_id("ADP Identity Manager")
    reply = dv.call(
        "DELETE", f"systemusers({user_id})/systemuserroles_association/$ref?$id={q(dv.role_url('Basic User'))}"
    )
    assert reply.status == 204
    assert dv.state.role_names(user_id) == ["ADP Identity Manager"]
    reply = dv.call("DELETE", f"systemusers({user_id})/systemuserroles_association({manager})/$ref")
    assert reply.status == 204
    assert dv.state.role_names(user_id) == []


def test_disassociate_404_for_unknown_user_or_role(dv: DataverseHarness) -> None:
    missing = "12121212-3434-5656-7878-909090909090"
    role = dv.state.role_id("User Reader")
    reply = dv.call("DELETE", f"systemusers({missing})/systemuserroles_association({role})/$ref")
    assert reply.status == 404
    assert reply.error["message"] == f"systemuser With Id = {missing} Does Not Exist"
    reply = dv.call("DELETE", f"systemusers({dv.user_id(READER)})/systemuserroles_association({missing})/$ref")
    assert reply.status == 404
    assert reply.error["message"] == f"role With Id = {missing} Does Not Exist"


def test_disassociate_from_a_disabled_user_is_allowed(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DISABLED_APP)
    role = dv.state.role_id("Basic User")
    assert dv.call("DELETE", f"systemusers({user_id})/systemuserroles_association({role})/$ref").status == 204
    assert dv.state.role_names(user_id) == []


def test_disassociate_needs_exactly_one_id(dv: DataverseHarness) -> None:
    reply = dv.call("DELETE", f"systemusers({dv.user_id(READER)})/systemuserroles_association/$ref")
    assert reply.status == 400


def test_role_references_of_a_user(dv: DataverseHarness) -> None:
    reply = dv.call("GET", f"systemusers({dv.user_id(READER)})/systemuserroles_association/$ref")
    assert reply.json["value"] == [{"@odata.id": dv.role_url("User Reader")}]


def test_moved_user_gets_roles_only_from_its_new_unit(dv: DataverseHarness) -> None:
    dv.state.add_application_user(PAYMENTS[0], roles=["Basic User"])
    user_id = dv.user_id(PAYMENTS)
    dv.state.move_business_unit(user_id, "ffc-payments")
    assert dv.state.role_names(user_id) == []
    assert _assoc(dv, user_id, dv.role_url("Basic User"))[0] == 400
    assert _assoc(dv, user_id, dv.role_url("Basic User", "ffc-payments")) == (204, None)


def test_a_caller_cannot_hand_out_a_role_with_privileges_it_does_not_hold() -> None:
    """Privilege elevation is refused: the least-privilege deploying role can never grant System Administrator."""
    dv = DataverseHarness()
    user_id = dv.user_id(READER)
    unit = dv.state.user(user_id).business_unit_id
    for role_name in ("System Administrator",):
        role = dv.state.role_id(role_name, unit)
        reply = dv.call(
            "POST",
            f"systemusers({user_id})/systemuserroles_association/$ref",
            {"@odata.id": dv.role_url(role_name, unit)},
        )
        assert reply.status == 403 and reply.error["code"] == "0x80040220"
        assert role_name in reply.error["message"] and "prvDeleteUser" in reply.error["message"]
        assert role not in {r.id for r in dv.state.roles_of(user_id)}
    # a System Administrator caller holds every privilege, so it can
    granted = dv.call(
        "POST",
        f"systemusers({user_id})/systemuserroles_association/$ref",
        {"@odata.id": dv.role_url("System Administrator", unit)},
        app=ADMIN_APP,
    )
    assert granted.status == 204
