"""Application users (``systemusers``): create, find, read, update, move between business units."""

from __future__ import annotations

import pytest

from tests.emulator.dataverse_helpers import (
    ADMIN_APP,
    API,
    CLAIMS_APP,
    DEPLOYER,
    NO_SP_APP,
    ORIGIN,
    PAYMENTS,
    READER,
    DataverseHarness,
    q,
)


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _bu(dv: DataverseHarness, name: str) -> str:
    return f"/businessunits({dv.state.business_unit_id(name)})"


# ------------------------------------------------------------------------------------------------- create
def test_create_without_representation_answers_204_with_entity_id(dv: DataverseHarness) -> None:
    reply = dv.call(
        "POST", "systemusers", {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": _bu(dv, "ffc-payments")}
    )
    assert reply.status == 204
    assert reply.body == b""
    user = dv.state.user_by_application_id(PAYMENTS[1])
    assert user is not None
    assert reply.header("OData-EntityId") == f"{ORIGIN}{API}systemusers({user.id})"
    assert user.business_unit_id == dv.state.business_unit_id("ffc-payments")
    assert dv.directory.lookups == [(dv.tenant.id, PAYMENTS[1])]


def test_create_fills_server_columns_from_the_service_principal(dv: DataverseHarness) -> None:
    reply = dv.call(
        "POST",
        "systemusers",
        {"applicationid": PAYMENTS[1].upper()},
        headers={"Prefer": "return=representation"},
    )
    assert reply.status == 201
    assert reply.header("Preference-Applied") == "return=representation"
    row = reply.json
    assert row["@odata.context"] == f"{ORIGIN}{API}$metadata#systemusers/$entity"
    assert row["applicationid"] == PAYMENTS[1]
    assert row["azureactivedirectoryobjectid"] == PAYMENTS[2]
    assert row["fullname"] == PAYMENTS[0]
    assert row["accessmode"] == 4
    assert row["isdisabled"] is False
    assert row["applicationiduri"] is None
    assert row["_businessunitid_value"] == dv.state.root_business_unit.id  # no bind: the root business unit
    assert row["domainname"] == row["internalemailaddress"]
    assert row["domainname"].endswith("@defradev.onmicrosoft.com")
    assert PAYMENTS[1] in row["domainname"]
    assert row["_createdby_value"] == dv.user_id(DEPLOYER)
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'


def test_create_with_representation_honours_select(dv: DataverseHarness) -> None:
    reply = dv.call(
        "POST",
        "systemusers?$select=systemuserid,fullname",
        {"applicationid": PAYMENTS[1]},
        headers={"Prefer": "return=representation"},
    )
    assert reply.status == 201
    assert set(reply.json) == {"@odata.context", "@odata.etag", "systemuserid", "fullname"}
    assert reply.json["@odata.context"].endswith("$metadata#systemusers(systemuserid,fullname)/$entity")


def test_second_user_for_the_same_application_is_a_duplicate(dv: DataverseHarness) -> None:
    assert dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1]}).status == 204
    reply = dv.call(
        "POST", "systemusers", {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": _bu(dv, "ffc-payments")}
    )
    assert reply.status == 412
    assert reply.error == {"code": "0x80040237", "message": "A record with matching key values already exists."}
    assert len([u for u in dv.state.users if u.application_id == PAYMENTS[1]]) == 1


def test_application_without_service_principal_is_refused(dv: DataverseHarness) -> None:
    reply = dv.call("POST", "systemusers", {"applicationid": NO_SP_APP[1]})
    assert reply.status == 400
    assert "applicationid" in reply.error["message"]
    assert NO_SP_APP[1] in reply.error["message"]
    assert dv.state.user_by_application_id(NO_SP_APP[1]) is None


@pytest.mark.parametrize("body", [{}, {"applicationid": "not-a-guid"}, {"applicationid": 42}])
def test_create_needs_an_application_id(dv: DataverseHarness, body: dict[str, object]) -> None:
    reply = dv.call("POST", "systemusers", body)
    assert reply.status == 400
    assert "applicationid" in reply.error["message"]


@pytest.mark.parametrize("column", ["fullname", "azureactivedirectoryobjectid", "applicationiduri"])
def test_create_refuses_read_only_columns(dv: DataverseHarness, column: str) -> None:
    reply = dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1], column: "x"})
    assert reply.status == 400
    assert column in reply.error["message"]
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None


def test_create_refuses_unknown_properties(dv: DataverseHarness) -> None:
    reply = dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1], "businessunitid": "x"})
    assert reply.status == 400
    assert reply.error["code"] == "0x80048d19"


@pytest.mark.parametrize(
    "bind",
    ["businessunits({id})", "{origin}/api/data/v9.2/businessunits({id})", "/businessunits({id})"],
)
def test_business_unit_bind_forms(dv: DataverseHarness, bind: str) -> None:
    unit = dv.state.business_unit_id("ffc-payments")
    reply = dv.call(
        "POST",
        "systemusers",
        {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": bind.format(id=unit, origin=ORIGIN)},
    )
    assert reply.status == 204
    user = dv.state.user_by_application_id(PAYMENTS[1])
    assert user is not None and user.business_unit_id == unit


def test_bind_to_unknown_business_unit_is_404(dv: DataverseHarness) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    reply = dv.call(
        "POST", "systemusers", {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": f"/businessunits({missing})"}
    )
    assert reply.status == 404
    assert reply.error == {"code": "0x80040217", "message": f"businessunit With Id = {missing} Does Not Exist"}


def test_bind_to_wrong_entity_set_is_400(dv: DataverseHarness) -> None:
    role = dv.state.role_id("Basic User")
    reply = dv.call(
        "POST", "systemusers", {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": f"/roles({role})"}
    )
    assert reply.status == 400


def test_create_requires_json_content_type(dv: DataverseHarness) -> None:
    reply = dv.call(
        "POST",
        "systemusers",
        raw_body=b'{"applicationid": "%s"}' % PAYMENTS[1].encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert reply.status == 415
    reply = dv.call("POST", "systemusers", raw_body=b"{not json", headers={"Content-Type": "application/json"})
    assert reply.status == 400


# ------------------------------------------------------------------------------------------------- read
def test_find_by_application_id_with_unquoted_guid(dv: DataverseHarness) -> None:
    target = f"systemusers?$filter=applicationid eq {DEPLOYER[1]}&$select=systemuserid,isdisabled,_businessunitid_value"
    reply = dv.call("GET", target)
    assert reply.status == 200
    body = reply.json
    assert (
        body["@odata.context"] == f"{ORIGIN}{API}$metadata#systemusers(systemuserid,isdisabled,_businessunitid_value)"
    )
    assert body["value"] == [
        {
            "@odata.etag": body["value"][0]["@odata.etag"],
            "systemuserid": dv.user_id(DEPLOYER),
            "isdisabled": False,
            "_businessunitid_value": dv.state.root_business_unit.id,
        }
    ]


def test_find_by_application_id_nothing_found_is_an_empty_collection(dv: DataverseHarness) -> None:
    reply = dv.call("GET", f"systemusers?$filter=applicationid eq {PAYMENTS[1]}")
    assert reply.status == 200
    assert reply.json["value"] == []


def test_quoted_guid_literal_is_refused(dv: DataverseHarness) -> None:
    reply = dv.call("GET", f"systemusers?$filter=applicationid eq '{DEPLOYER[1]}'")
    assert reply.status == 400
    assert reply.error["code"] == "0x80060888"
    assert "'Edm.Guid' and 'Edm.String'" in reply.error["message"]


def test_filter_encoded_like_an_http_client(dv: DataverseHarness) -> None:
    encoded = q(f"applicationid eq {DEPLOYER[1]} and isdisabled eq false").replace("%20", "+")
    reply = dv.call("GET", f"systemusers?$filter={encoded}&$select=systemuserid")
    assert [r["systemuserid"] for r in reply.json["value"]] == [dv.user_id(DEPLOYER)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("isdisabled eq true", {"retired-app"}),
        ("isdisabled eq false and applicationid eq {reader}", {"audit-reader"}),
        ("systemuserid eq {deployer_user}", {"adp-identity-pipeline"}),
        ("_businessunitid_value eq {payments_bu}", {"ffc-pay-batch"}),
        (
            "_businessunitid_value eq {root_bu} and isdisabled eq false",
            {"adp-identity-pipeline", "audit-reader", "platform-admin"},
        ),
        ("applicationid eq {reader} or applicationid eq {deployer}", {"adp-identity-pipeline", "audit-reader"}),
        ("not (isdisabled eq false)", {"retired-app"}),
        ("startswith(fullname,'FFC-')", {"ffc-pay-batch"}),
        ("applicationid eq null", set()),
        ("applicationid ne null and contains(fullname,'READ')", {"audit-reader"}),
    ],
)
def test_filter_expressions(dv: DataverseHarness, expression: str, expected: set[str]) -> None:
    dv.state.add_application_user(PAYMENTS[0], business_unit="ffc-payments")
    names = {
        "reader": READER[1],
        "deployer": DEPLOYER[1].upper(),  # GUIDs compare case-insensitively
        "deployer_user": dv.user_id(DEPLOYER),
        "payments_bu": dv.state.business_unit_id("ffc-payments"),
        "root_bu": dv.state.root_business_unit.id,
    }
    reply = dv.call("GET", f"systemusers?$filter={q(expression.format(**names))}&$select=fullname")
    assert reply.status == 200, reply.body
    assert {r["fullname"] for r in reply.json["value"]} == expected


@pytest.mark.parametrize(
    "expression",
    ["nosuchcolumn eq 1", "isdisabled eq 'false'", "applicationid eq", "isdisabled eq true and", "(isdisabled eq true"],
)
def test_bad_filters_are_400(dv: DataverseHarness, expression: str) -> None:
    reply = dv.call("GET", f"systemusers?$filter={q(expression)}")
    assert reply.status == 400
    assert reply.error["code"] == "0x80060888"


def test_unknown_select_column_is_400(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$select=systemuserid,businessunitid")
    assert reply.status == 400
    assert reply.error["message"] == (
        "Could not find a property named 'businessunitid' on type 'Microsoft.Dynamics.CRM.systemuser'."
    )


def test_get_by_key_and_by_alternate_key(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DEPLOYER)
    by_key = dv.call("GET", f"systemusers({user_id})?$select=fullname")
    assert by_key.status == 200
    assert by_key.json["@odata.context"] == f"{ORIGIN}{API}$metadata#systemusers(fullname)/$entity"
    assert by_key.json["fullname"] == DEPLOYER[0]
    assert by_key.json["systemuserid"] == user_id  # the key comes back even when not selected
    by_oid = dv.call("GET", f"systemusers(azureactivedirectoryobjectid={DEPLOYER[2]})?$select=systemuserid")
    assert by_oid.status == 200
    assert by_oid.json["systemuserid"] == user_id


def test_unknown_user_404_shapes(dv: DataverseHarness) -> None:
    missing = "0f0f0f0f-1111-2222-3333-444444444444"
    for method, body in (("GET", None), ("PATCH", {"isdisabled": True})):
        reply = dv.call(method, f"systemusers({missing})", body)
        assert reply.status == 404
        assert reply.error == {"code": "0x80040217", "message": f"systemuser With Id = {missing} Does Not Exist"}
    reply = dv.call("GET", f"systemusers(azureactivedirectoryobjectid={missing})")
    assert reply.status == 404
    assert reply.error["code"] == "0x80040217"


def test_malformed_key_is_400(dv: DataverseHarness) -> None:
    assert dv.call("GET", "systemusers(not-a-guid)").status == 400
    assert dv.call("GET", f"systemusers(applicationid={DEPLOYER[1]})").status == 400


def test_entity_requests_refuse_collection_options(dv: DataverseHarness) -> None:
    reply = dv.call("GET", f"systemusers({dv.user_id(DEPLOYER)})?$filter=isdisabled eq false")
    assert reply.status == 400


# ------------------------------------------------------------------------------------------------ update
def test_disable_and_enable(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    reply = dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": True})
    assert reply.status == 204
    assert reply.header("OData-EntityId") == f"{ORIGIN}{API}systemusers({user_id})"
    user = dv.state.user(user_id)
    assert user is not None and user.disabled
    assert dv.state.role_names(user_id) == ["User Reader"]  # disabling keeps roles
    reply = dv.call(
        "PATCH", f"systemusers({user_id})", {"isdisabled": False}, headers={"Prefer": "return=representation"}
    )
    assert reply.status == 200
    assert reply.json["isdisabled"] is False
    assert reply.json["_modifiedby_value"] == dv.user_id(DEPLOYER)


def test_update_changes_the_etag_and_if_match_guards_it(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    before = dv.call("GET", f"systemusers({user_id})?$select=isdisabled").json["@odata.etag"]
    assert dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": True}, headers={"If-Match": before}).status == 204
    after = dv.call("GET", f"systemusers({user_id})?$select=isdisabled").json["@odata.etag"]
    assert after != before
    stale = dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": False}, headers={"If-Match": before})
    assert stale.status == 412
    assert stale.error["code"] == "0x80060882"


def test_move_to_another_business_unit_strips_all_roles(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    assert dv.state.role_names(user_id) == ["User Reader"]
    reply = dv.call("PATCH", f"systemusers({user_id})", {"businessunitid@odata.bind": _bu(dv, "ffc-payments")})
    assert reply.status == 204
    user = dv.state.user(user_id)
    assert user is not None
    assert user.business_unit_id == dv.state.business_unit_id("ffc-payments")
    assert dv.state.role_names(user_id) == []
    roles = dv.call("GET", f"systemusers({user_id})/systemuserroles_association?$select=roleid,name")
    assert roles.json["value"] == []


def test_patch_to_the_same_business_unit_keeps_roles(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    reply = dv.call("PATCH", f"systemusers({user_id})", {"businessunitid@odata.bind": _bu(dv, "defradev-dev")})
    assert reply.status == 204
    assert dv.state.role_names(user_id) == ["User Reader"]


@pytest.mark.parametrize("column", ["fullname", "azureactivedirectoryobjectid", "applicationiduri"])
def test_patch_refuses_read_only_columns(dv: DataverseHarness, column: str) -> None:
    user_id = dv.user_id(READER)
    reply = dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": True, column: "changed"})
    assert reply.status == 400
    assert column in reply.error["message"]
    user = dv.state.user(user_id)
    assert user is not None and not user.disabled  # nothing of a refused PATCH is applied


def test_patch_refuses_a_non_boolean_isdisabled(dv: DataverseHarness) -> None:
    reply = dv.call("PATCH", f"systemusers({dv.user_id(READER)})", {"isdisabled": "true"})
    assert reply.status == 400


def test_collections_refuse_patch_and_delete(dv: DataverseHarness) -> None:
    assert dv.call("PATCH", "systemusers", {"isdisabled": True}).status == 405
    assert dv.call("DELETE", "roles").status == 405


def test_state_api_sees_what_the_web_api_did_and_vice_versa(dv: DataverseHarness) -> None:
    dv.call("POST", "systemusers", {"applicationid": CLAIMS_APP[1]})
    user = dv.state.user_by_application_id(CLAIMS_APP[1])
    assert user is not None
    dv.state.associate(user.id, dv.state.role_id("Basic User"))
    reply = dv.call("GET", f"systemusers({user.id})/systemuserroles_association?$select=roleid,name")
    assert [r["name"] for r in reply.json["value"]] == ["Basic User"]


def test_only_a_disabled_user_can_be_deleted_and_is_then_gone(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    # the least-privilege deploying role cannot delete users at all: it lacks prvDeleteUser
    denied = dv.call("DELETE", f"systemusers({user_id})")
    assert denied.status == 403 and "prvDeleteUser" in denied.error["message"]
    refused = dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP)
    assert refused.status == 400 and "disabled" in refused.error["message"]
    assert dv.state.user(user_id) is not None
    assert dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": True}).status == 204
    assert dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP).status == 204
    # a delete soft-deletes (admin/delete-users): the row stays, deletedstate 1, until a second delete purges it
    soft = dv.call("GET", f"systemusers({user_id})?$select=systemuserid,deletedstate,isdisabled")
    assert soft.status == 200 and soft.json["deletedstate"] == 1 and soft.json["isdisabled"] is True
    dv.state.usersettings_race = False  # (the race a purge can meet is tests/emulator/test_dataverse_soft_delete.py)
    assert dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP).status == 204
    gone = dv.call("GET", f"systemusers({user_id})?$select=systemuserid")
    assert gone.status == 404 and gone.error["code"] == "0x80040217"
