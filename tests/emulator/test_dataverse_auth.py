"""Who may call the emulated Dataverse Web API: 401 challenges, 403 for strangers and disabled callers,
and 403 0x80040220 when a security role lacks the privilege an operation needs."""

from __future__ import annotations

import re

import pytest

from adp_identity_emulator.http import Claims, EmuRequest, Headers, InvalidToken
from tests.emulator.dataverse_helpers import (
    ADMIN_APP,
    API,
    AUTHORITY,
    DEPLOYER,
    DISABLED_APP,
    ORIGIN,
    OTHER_ORIGIN,
    OTHER_TENANT,
    PAYMENTS,
    READER,
    STRANGER,
    TENANT,
    DataverseHarness,
    mint,
)


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _assert_challenge(reply_headers: dict[str, str]) -> None:
    challenge = next(v for k, v in reply_headers.items() if k.lower() == "www-authenticate")
    assert challenge == (f"Bearer authorization_uri={AUTHORITY}/{TENANT}/oauth2/authorize, resource_id={ORIGIN}/")


@pytest.mark.parametrize(
    ("label", "headers", "token"),
    [
        ("no Authorization header", {}, None),
        ("not a bearer scheme", {"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ("empty bearer", {"Authorization": "Bearer "}, None),
        ("expired token", {}, mint(DEPLOYER[1], lifetime=-120)),
        ("token signed by an unknown key", {}, mint(DEPLOYER[1], trusted_key=False)),
        ("token for another environment", {}, mint(DEPLOYER[1], audience=OTHER_ORIGIN)),
        ("not a JWT", {"Authorization": "Bearer not-a-jwt"}, None),
    ],
)
def test_unauthenticated_requests_get_401_with_dataverse_challenge(
    dv: DataverseHarness, label: str, headers: dict[str, str], token: str | None
) -> None:
    reply = dv.call("GET", "systemusers", app=None, token=token, headers=headers)
    assert reply.status == 401, label
    _assert_challenge(reply.headers)
    assert reply.error["code"] == "0x8005F101"
    if token:
        assert token not in reply.body.decode()


def test_401_applies_to_every_path_under_api_data(dv: DataverseHarness) -> None:
    assert dv.call("POST", "$batch", app=None).status == 401
    assert dv.call("GET", "/api/data/v9.1/systemusers", app=None).status == 401


def test_token_from_another_tenant_is_refused_with_not_member(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers", token=mint(DEPLOYER[1], tenant=OTHER_TENANT))
    assert reply.status == 403
    assert reply.error == {"code": "0x80072560", "message": "The user is not a member of the organization."}


def test_verifier_flagging_wrong_tenant_gives_403_not_401() -> None:
    dv = DataverseHarness()

    def wrong_tenant(token: str, audience: str) -> Claims:
        raise InvalidToken("issuer of another tenant", wrong_tenant=True)

    dv.service.verify = wrong_tenant
    reply = dv.call("GET", "systemusers")
    assert reply.status == 403
    assert reply.error["code"] == "0x80072560"


def test_application_without_application_user_is_not_a_member(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers", app=STRANGER)
    assert reply.status == 403
    assert reply.error == {"code": "0x80072560", "message": "The user is not a member of the organization."}


def test_disabled_caller_is_refused(dv: DataverseHarness) -> None:
    user_id = dv.user_id(DISABLED_APP)
    reply = dv.call("GET", "WhoAmI", app=DISABLED_APP)
    assert reply.status == 403
    error = reply.error
    assert error["code"] == "0x80040225"
    assert error["message"].startswith(f"The user with SystemUserId={user_id} ")
    assert "is disabled" in error["message"]


def test_caller_disabled_behind_the_back_loses_access_at_once(dv: DataverseHarness) -> None:
    assert dv.call("GET", "WhoAmI").status == 200
    dv.state.set_disabled(dv.user_id(DEPLOYER), True)
    assert dv.call("GET", "WhoAmI").error["code"] == "0x80040225"


def test_who_am_i_names_the_caller(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "WhoAmI")
    assert reply.status == 200
    body = reply.json
    assert body["UserId"] == dv.user_id(DEPLOYER)
    assert body["BusinessUnitId"] == dv.state.root_business_unit.id
    assert body["OrganizationId"] == dv.state.organization_id
    assert body["@odata.context"] == f"{ORIGIN}{API}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"


_PRIVILEGE_MESSAGE = re.compile(
    r"^Principal user \(Id=(?P<id>[0-9a-f-]{36}), type=8, roleCount=(?P<roles>\d+), privilegeCount=(?P<count>\d+),"
    r".*\), is missing (?P<privilege>prv\w+) privilege \(Id=[0-9a-f-]{36}\) on OTC=(?P<otc>\d+) "
    r"for entity '(?P<entity>\w+)'"
)


def _operations(dv: DataverseHarness) -> list[tuple[str, str, str, object, str, str]]:
    """(label, method, target, body, privilege, entity) for every checked operation."""
    user = dv.user_id(DEPLOYER)
    role = dv.role_url("Basic User")
    return [
        ("list users", "GET", "systemusers", None, "prvReadUser", "systemuser"),
        ("read user", "GET", f"systemusers({user})", None, "prvReadUser", "systemuser"),
        ("create user", "POST", "systemusers", {"applicationid": PAYMENTS[1]}, "prvCreateUser", "systemuser"),
        ("update user", "PATCH", f"systemusers({user})", {"isdisabled": False}, "prvWriteUser", "systemuser"),
        ("list roles", "GET", "roles", None, "prvReadRole", "role"),
        (
            "associate",
            "POST",
            f"systemusers({user})/systemuserroles_association/$ref",
            {"@odata.id": role},
            "prvAssignRole",
            "role",
        ),
        (
            "disassociate",
            "DELETE",
            f"systemusers({user})/systemuserroles_association({dv.state.role_id('Basic User')})/$ref",
            None,
            "prvAssignRole",
            "role",
        ),
        ("list business units", "GET", "businessunits", None, "prvReadBusinessUnit", "businessunit"),
    ]


def test_each_operation_checks_its_privilege() -> None:
    dv = DataverseHarness()
    reader_id = dv.user_id(READER)  # holds "User Reader": prvReadUser only
    for label, method, target, body, privilege, entity in _operations(dv):
        reply = dv.call(method, target, body, app=READER)
        if privilege == "prvReadUser":
            assert reply.status == 200, label
            continue
        assert reply.status == 403, label
        error = reply.error
        assert error["code"] == "0x80040220", label
        match = _PRIVILEGE_MESSAGE.match(error["message"])
        assert match, error["message"]
        assert match["id"] == reader_id
        assert (match["roles"], match["count"]) == ("1", "1")
        assert (match["privilege"], match["entity"]) == (privilege, entity), label
        assert match["otc"] == {"systemuser": "8", "role": "1036", "businessunit": "10"}[entity]


def test_user_without_any_role_is_refused_everything_but_who_am_i() -> None:
    dv = DataverseHarness()
    dv.state.add_application_user(PAYMENTS[0])  # no roles
    assert dv.call("GET", "WhoAmI", app=PAYMENTS).status == 200
    for label, method, target, body, privilege, _ in _operations(dv):
        reply = dv.call(method, target, body, app=PAYMENTS)
        assert reply.status == 403, label
        assert f"is missing {privilege} privilege" in reply.error["message"]
        assert "roleCount=0, privilegeCount=0" in reply.error["message"]


def test_system_administrator_holds_every_privilege() -> None:
    dv = DataverseHarness()
    for label, method, target, body, _, _ in _operations(dv):
        reply = dv.call(method, target, body, app=ADMIN_APP)
        assert reply.status in (200, 204), (label, reply.body)


def test_privilege_comes_from_roles_and_goes_with_them() -> None:
    dv = DataverseHarness()
    deployer = dv.user_id(DEPLOYER)
    assert dv.call("GET", "roles").status == 200
    dv.state.disassociate(deployer, dv.state.role_id("ADP Identity Manager"))
    reply = dv.call("GET", "roles")
    assert reply.status == 403
    assert "is missing prvReadRole privilege" in reply.error["message"]


def test_expanding_roles_needs_read_role_too(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "systemusers?$expand=systemuserroles_association($select=name)", app=READER)
    assert reply.status == 403
    assert "is missing prvReadRole privilege" in reply.error["message"]


def test_errors_are_json_with_code_and_message_only(dv: DataverseHarness) -> None:
    replies = [
        dv.call("GET", "systemusers", app=None),
        dv.call("GET", "systemusers", app=STRANGER),
        dv.call("GET", "systemusers(00000000-0000-0000-0000-000000000001)"),
        dv.call("GET", "nosuchset"),
        dv.call("GET", "systemusers?$skip=1"),
    ]
    for reply in replies:
        error = reply.error  # asserts the exact {"error": {"code", "message"}} shape
        assert re.fullmatch(r"0x[0-9A-Fa-f]{8}", error["code"]), error
        assert error["message"]
        content_type = reply.header("Content-Type")
        assert content_type is not None and content_type.startswith("application/json")


def test_request_outside_the_web_api_is_404(dv: DataverseHarness) -> None:
    reply = dv.service.handle(EmuRequest("GET", "/favicon.ico", "", Headers(), b"", ORIGIN))
    assert reply.status == 404
