"""Query options as Dataverse serves them: paging with nextLink, $top, $skip refused, $expand shapes,
@odata.context, $orderby, $count and lookup annotations."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.emulator.dataverse_helpers import API, DEPLOYER, ORIGIN, READER, DataverseHarness, q


@pytest.fixture
def dv() -> DataverseHarness:
    harness = DataverseHarness()
    for i in range(7):  # 4 seeded + 7 = 11 application users
        harness.state.add_application_user(
            f"{i:08x}-aaaa-4bbb-8ccc-dddddddddddd",
            display_name=f"bulk-app-{i}",
            object_id=f"{i:08x}-0000-4000-8000-000000000000",
        )
    return harness


def _follow(dv: DataverseHarness, link: str, page_size: int) -> Any:
    split = urlsplit(link)
    assert f"{split.scheme}://{split.netloc}" == ORIGIN
    return dv.call("GET", f"{split.path}?{split.query}", headers={"Prefer": f"odata.maxpagesize={page_size}"}).json


def test_paging_with_next_link_visits_every_row_once(dv: DataverseHarness) -> None:
    first = dv.call("GET", "systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=4"})
    assert first.status == 200
    assert first.header("Preference-Applied") == "odata.maxpagesize=4"
    body = first.json
    pages = [body]
    while "@odata.nextLink" in body:
        link = str(body["@odata.nextLink"])
        assert link.startswith(f"{ORIGIN}{API}systemusers?$select=fullname&$skiptoken=")
        body = _follow(dv, link, 4)
        pages.append(body)
    assert [len(p["value"]) for p in pages] == [4, 4, 3]
    ids = [row["systemuserid"] for p in pages for row in p["value"]]
    assert len(ids) == len(set(ids)) == len(dv.state.users) == 11
    assert all(p["@odata.context"] == f"{ORIGIN}{API}$metadata#systemusers(fullname)" for p in pages)


def test_skiptoken_looks_like_dataverse_paging_cookie(dv: DataverseHarness) -> None:
    body = dv.call("GET", "systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=2"}).json
    token = str(body["@odata.nextLink"]).split("$skiptoken=", 1)[1]
    assert token.startswith("%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie")
    assert token.endswith("istracking=%22False%22%20/%3E")


def test_paging_is_keyed_on_the_last_row_so_inserts_do_not_shift_pages(dv: DataverseHarness) -> None:
    body = dv.call("GET", "systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=5"}).json
    seen = [r["systemuserid"] for r in body["value"]]
    root = dv.state.root_business_unit.id
    for user_id, app_id in (
        ("00000000-0000-4000-8000-000000000000", "00000000-aaaa-4bbb-8ccc-000000000001"),  # before every key
        ("ffffffff-ffff-4fff-bfff-ffffffffffff", "00000000-aaaa-4bbb-8ccc-000000000002"),  # after every key
    ):
        dv.state.create_application_user(
            application_id=app_id, object_id=app_id, display_name="late", business_unit_id=root, user_id=user_id
        )
    while "@odata.nextLink" in body:
        body = _follow(dv, str(body["@odata.nextLink"]), 5)
        seen += [r["systemuserid"] for r in body["value"]]
    assert len(seen) == len(set(seen)) == 12  # nothing repeated or skipped; the row sorting first was missed
    assert "ffffffff-ffff-4fff-bfff-ffffffffffff" in seen
    assert "00000000-0000-4000-8000-000000000000" not in seen


def test_tampered_or_reencoded_skiptoken_is_refused(dv: DataverseHarness) -> None:
    link = str(dv.call("GET", "systemusers", headers={"Prefer": "odata.maxpagesize=3"}).json["@odata.nextLink"])
    split = urlsplit(link)
    double_encoded = split.query.replace("%", "%25")
    reply = dv.call("GET", f"{split.path}?{double_encoded}", headers={"Prefer": "odata.maxpagesize=3"})
    assert reply.status == 400
    assert reply.error["code"] == "0x8004112A"
    assert dv.call("GET", "systemusers?$skiptoken=3").status == 400


def test_skip_is_not_supported(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$top=2&$skip=2")
    assert reply.status == 400
    assert reply.error == {"code": "0x80060888", "message": "The query parameter $skip is not supported"}


def test_top_limits_rows_without_next_link(dv: DataverseHarness) -> None:
    body = dv.call("GET", "systemusers?$select=fullname&$top=3").json
    assert len(body["value"]) == 3
    assert "@odata.nextLink" not in body


def test_top_is_ignored_with_maxpagesize_as_documented(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$select=fullname&$top=3", headers={"Prefer": "odata.maxpagesize=5"})
    assert len(reply.json["value"]) == 5
    assert "@odata.nextLink" in reply.json


def test_maxpagesize_is_capped_at_5000(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=9000"})
    assert reply.header("Preference-Applied") == "odata.maxpagesize=5000"
    assert len(reply.json["value"]) == 11


def test_no_prefer_header_no_preference_applied(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$select=fullname")
    assert reply.header("Preference-Applied") is None
    assert "@odata.nextLink" not in reply.json


def test_unknown_query_options_are_refused(dv: DataverseHarness) -> None:
    assert dv.call("GET", "systemusers?$search=x").status == 400
    assert dv.call("GET", "systemusers?foo=bar").status == 400
    assert dv.call("GET", "systemusers?$top=x").status == 400
    assert dv.call("GET", "systemusers?$select=fullname&$select=systemuserid").status == 400


def test_orderby_and_count(dv: DataverseHarness) -> None:
    body = dv.call(
        "GET",
        "systemusers?$select=fullname&$orderby=fullname desc&$count=true&$filter=" + q("startswith(fullname,'bulk')"),
    ).json
    names = [r["fullname"] for r in body["value"]]
    assert names == sorted(names, reverse=True)
    assert body["@odata.count"] == 7


def test_expand_roles_collection_shape(dv: DataverseHarness) -> None:
    target = (
        f"systemusers?$filter=applicationid eq {DEPLOYER[1]}&$select=systemuserid,isdisabled,_businessunitid_value"
        "&$expand=systemuserroles_association($select=roleid,name,_businessunitid_value)"
    )
    body = dv.call("GET", target).json
    assert body["@odata.context"] == (
        f"{ORIGIN}{API}$metadata#systemusers(systemuserid,isdisabled,_businessunitid_value,"
        "systemuserroles_association(roleid,name,_businessunitid_value))"
    )
    (row,) = body["value"]
    assert list(row) == [
        "@odata.etag",
        "systemuserid",
        "isdisabled",
        "_businessunitid_value",
        "systemuserroles_association",
    ]
    (role,) = row["systemuserroles_association"]
    assert set(role) == {"@odata.etag", "roleid", "name", "_businessunitid_value"}
    assert role["name"] == "ADP Identity Manager"
    assert role["_businessunitid_value"] == row["_businessunitid_value"]
    assert "systemuserroles_association@odata.nextLink" not in row


def test_expanded_collection_is_not_paged(dv: DataverseHarness) -> None:
    admin = dv.state.add_application_user(
        "99999999-aaaa-4bbb-8ccc-dddddddddddd",
        display_name="many-roles",
        object_id="99999999-0000-4000-8000-000000000000",
    )
    for name in ("System Administrator", "ADP Identity Manager", "Basic User", "User Reader"):
        dv.state.associate(admin.id, dv.state.role_id(name))
    reply = dv.call(
        "GET",
        f"systemusers({admin.id})?$select=fullname&$expand=systemuserroles_association($select=name)",
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert len(reply.json["systemuserroles_association"]) == 4


def test_expand_single_valued_business_unit(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    reply = dv.call(
        "GET", f"systemusers({user_id})?$select=fullname&$expand=businessunitid($select=businessunitid,name)"
    )
    assert reply.status == 200
    body = reply.json
    assert (
        body["@odata.context"]
        == f"{ORIGIN}{API}$metadata#systemusers(fullname,businessunitid(businessunitid,name))/$entity"
    )
    assert set(body["businessunitid"]) == {"@odata.etag", "businessunitid", "name"}
    assert body["businessunitid"]["name"] == "defradev-dev"


def test_expand_nested_filter_on_roles(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DEPLOYER)
    dv.state.associate(user_id, dv.state.role_id("Basic User"))
    target = (
        f"systemusers({user_id})?$select=fullname&$expand=systemuserroles_association($select=name;$filter="
        + q("name eq 'Basic User'")
        + ")"
    )
    reply = dv.call("GET", target)
    assert [r["name"] for r in reply.json["systemuserroles_association"]] == ["Basic User"]


@pytest.mark.parametrize(
    "expand",
    [
        "nosuchnav",
        "systemuserroles_association($select=nosuchcolumn)",
        "businessunitid($filter=name eq 'x')",
        "systemuserroles_association($skip=1)",
    ],
)
def test_bad_expands_are_400(dv: DataverseHarness, expand: str) -> None:
    assert dv.call("GET", f"systemusers?$expand={q(expand)}").status == 400


def test_lookup_annotations_when_asked_for(dv: DataverseHarness) -> None:
    reply = dv.call(
        "GET",
        f"systemusers({dv.user_id(READER)})?$select=_businessunitid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = reply.json
    assert body["_businessunitid_value@OData.Community.Display.V1.FormattedValue"] == "defradev-dev"
    assert body["_businessunitid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "businessunit"
    assert body["_businessunitid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "businessunitid"
    plain = dv.call("GET", f"systemusers({dv.user_id(READER)})?$select=_businessunitid_value").json
    assert not [k for k in plain if "@" in k and k != "@odata.etag" and k != "@odata.context"]


def test_unknown_entity_set_is_404_resource_not_found(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "accounts")
    assert reply.status == 404
    assert reply.error == {"code": "0x8006088a", "message": "Resource not found for the segment 'accounts'."}


def test_other_api_version_is_404(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "/api/data/v9.1/systemusers")
    assert reply.status == 404
