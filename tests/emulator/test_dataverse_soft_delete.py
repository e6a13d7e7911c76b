"""Failure modes users report, as the emulator reproduces them.

* A deleted application user leaves a soft-deleted row (power-platform ``admin/delete-users.md``: "The user record
  still exists in the environment and continues to have a Disabled status"); a new application user for the same
  application meets 412 ``0x80040237`` until that row is purged (microsoft/terraform-provider-power-platform#623,
  whose provider therefore filters ``deletedstate`` and purges with a second DELETE).
* A purge soon after a role change meets the user's own ``usersettings`` row: 400 ``0x80048610``, nothing deleted,
  the next attempt succeeds (microsoft/terraform-provider-power-platform#1249).
* ``$batch`` with several change sets and ``Prefer: odata.continue-on-error``: each change set stands alone.
"""

from __future__ import annotations

import pytest

from tests.emulator.dataverse_helpers import (
    ADMIN_APP,
    CLAIMS_APP,
    DEPLOYER,
    NO_SP_APP,
    PAYMENTS,
    DataverseHarness,
    InnerReply,
    Op,
    batch_body,
    parse_batch_reply,
)


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _soft_deleted_payments_user(dv: DataverseHarness) -> str:
    assert dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1]}).status == 204
    user = dv.state.user_by_application_id(PAYMENTS[1])
    assert user is not None
    dv.state.associate(user.id, dv.state.role_id("Basic User"))  # a role change: usersettings is provisioned
    assert dv.call("PATCH", f"systemusers({user.id})", {"isdisabled": True}).status == 204
    assert dv.call("DELETE", f"systemusers({user.id})", app=ADMIN_APP).status == 204
    return user.id


def test_a_deleted_user_is_kept_soft_deleted_and_listed_with_its_deleted_state(dv: DataverseHarness) -> None:
    user_id = _soft_deleted_payments_user(dv)
    listed = dv.call(
        "GET",
        f"systemusers?$filter=applicationid eq {PAYMENTS[1]}&$select=systemuserid,deletedstate,isdisabled"
        "&$expand=systemuserroles_association($select=roleid)",
    )
    assert listed.status == 200
    (row,) = listed.json["value"]
    assert (row["systemuserid"], row["deletedstate"], row["isdisabled"]) == (user_id, 1, True)
    assert row["systemuserroles_association"] == []  # a soft delete unassigns every role
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None  # no longer a user of the environment
    assert [u.id for u in dv.state.soft_deleted_users(PAYMENTS[1])] == [user_id]
    # a soft-deleted user cannot be restored
    restore = dv.call("PATCH", f"systemusers({user_id})", {"isdisabled": False})
    assert restore.status == 400 and "soft-deleted" in restore.error["message"]


def test_a_new_user_for_the_application_meets_412_until_the_soft_deleted_row_is_purged(dv: DataverseHarness) -> None:
    user_id = _soft_deleted_payments_user(dv)
    again = dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1]})
    assert again.status == 412 and again.error["code"] == "0x80040237"

    # the purge right after a role change meets the user's own usersettings row: nothing is deleted ...
    raced = dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP)
    assert raced.status == 400 and raced.error["code"] == "0x80048610"
    assert "owns records" in raced.error["message"]
    assert dv.state.user(user_id) is not None
    # ... and the next attempt purges it
    assert dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP).status == 204
    assert dv.state.user(user_id) is None
    assert dv.call("POST", "systemusers", {"applicationid": PAYMENTS[1]}).status == 204
    assert dv.state.user_by_application_id(PAYMENTS[1]) is not None


def test_without_the_race_a_purge_succeeds_at_once(dv: DataverseHarness) -> None:
    dv.state.usersettings_race = False
    user_id = _soft_deleted_payments_user(dv)
    assert dv.call("DELETE", f"systemusers({user_id})", app=ADMIN_APP).status == 204
    assert dv.state.user(user_id) is None


def test_several_change_sets_with_continue_on_error_each_stand_alone(dv: DataverseHarness) -> None:
    basic = dv.role_url("Basic User")
    content_type, body = batch_body(
        [
            [
                Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}, content_id="1"),
                Op("POST", "$1/systemuserroles_association/$ref", {"@odata.id": basic}, content_id="2"),
            ],
            Op("GET", f"systemusers?$filter=applicationid eq {PAYMENTS[1]}&$select=systemuserid"),
            [  # an application without a service principal: this change set fails on its own
                Op("POST", "systemusers", {"applicationid": NO_SP_APP[1]}, content_id="3"),
                Op("POST", "$3/systemuserroles_association/$ref", {"@odata.id": basic}, content_id="4"),
            ],
            [
                Op("POST", "systemusers", {"applicationid": CLAIMS_APP[1]}, content_id="5"),
                Op("POST", "$5/systemuserroles_association/$ref", {"@odata.id": basic}, content_id="6"),
            ],
        ]
    )
    headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
    reply = dv.call("POST", "$batch", raw_body=body, headers=headers, app=DEPLOYER)
    assert reply.status == 200
    assert reply.header("Preference-Applied") == "odata.continue-on-error"
    first, read_back, failed, third = parse_batch_reply(reply.header("Content-Type") or "", reply.body)
    assert isinstance(first, list) and [p.status for p in first] == [204, 204]
    assert isinstance(read_back, InnerReply) and len(read_back.json["value"]) == 1
    assert isinstance(failed, InnerReply) and failed.status == 400 and failed.content_id == "3"
    assert isinstance(third, list) and [p.status for p in third] == [204, 204]
    for app in (PAYMENTS, CLAIMS_APP):
        user = dv.state.user_by_application_id(app[1])
        assert user is not None and dv.state.role_names(user.id) == ["Basic User"]
    assert dv.state.user_by_application_id(NO_SP_APP[1]) is None


def test_continue_on_error_without_a_failure_applies_no_preference(dv: DataverseHarness) -> None:
    content_type, body = batch_body([Op("GET", "systemusers?$select=fullname")])
    headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
    reply = dv.call("POST", "$batch", raw_body=body, headers=headers, app=DEPLOYER)
    assert reply.status == 200 and reply.header("Preference-Applied") is None
