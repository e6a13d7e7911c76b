"""``$batch`` as execute-batch-operations-using-web-api documents it: multipart in and out, change sets that
are atomic, Content-ID / ``$n`` references, no GET inside a change set, at most 1000 requests."""

from __future__ import annotations

import pytest

from tests.emulator.dataverse_helpers import (
    API,
    CLAIMS_APP,
    DEPLOYER,
    NO_SP_APP,
    ORIGIN,
    PAYMENTS,
    READER,
    DataverseHarness,
    InnerReply,
    Op,
    batch_body,
    parse_batch_reply,
)


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _batch(
    dv: DataverseHarness, items: list[Op | list[Op]], *, prefer: str | None = None, app: tuple[str, str, str] = DEPLOYER
) -> tuple[int, list[InnerReply | list[InnerReply]], list[tuple[str, str, int]]]:
    content_type, body = batch_body(items)
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    reply = dv.call("POST", "$batch", raw_body=body, headers=headers, app=app)
    reply_type = reply.header("Content-Type")
    assert reply_type is not None and reply_type.startswith("multipart/mixed; boundary=batchresponse_"), reply.body
    return reply.status, parse_batch_reply(reply_type, reply.body), reply.operations


def _bu(dv: DataverseHarness, name: str) -> str:
    return f"/businessunits({dv.state.business_unit_id(name)})"


def test_gets_outside_change_sets(dv: DataverseHarness) -> None:
    status, replies, operations = _batch(
        dv,
        [
            Op("GET", f"/api/data/v9.2/systemusers?$filter=applicationid eq {READER[1]}&$select=fullname"),
            Op("GET", f"{ORIGIN}{API}roles?$select=name&$filter=name eq 'Basic User'"),
            Op("GET", "businessunits?$select=name"),
        ],
    )
    assert status == 200
    assert len(replies) == 3
    first, second, third = replies
    assert isinstance(first, InnerReply) and isinstance(second, InnerReply) and isinstance(third, InnerReply)
    assert [r["fullname"] for r in first.json["value"]] == [READER[0]]
    assert {r["name"] for r in second.json["value"]} == {"Basic User"}
    assert first.headers["Content-Type"].startswith("application/json")
    assert len(third.json["value"]) == 2
    assert [(m, s) for m, _, s in operations] == [("GET", 200)] * 3
    assert operations[0][1] == "/api/data/v9.2/systemusers"


def test_change_set_create_then_associate_through_content_id(dv: DataverseHarness) -> None:
    role = dv.role_url("Basic User", "ffc-payments")
    status, replies, operations = _batch(
        dv,
        [
            [
                Op(
                    "POST",
                    "/api/data/v9.2/systemusers",
                    {"applicationid": PAYMENTS[1], "businessunitid@odata.bind": _bu(dv, "ffc-payments")},
                    content_id="1",
                ),
                Op("POST", "$1/systemuserroles_association/$ref", {"@odata.id": role}, content_id="2"),
            ],
            Op("GET", f"systemusers?$filter=applicationid eq {PAYMENTS[1]}&$select=systemuserid"),
        ],
    )
    assert status == 200
    change_set, query = replies
    assert isinstance(change_set, list) and isinstance(query, InnerReply)
    created, associated = change_set
    user = dv.state.user_by_application_id(PAYMENTS[1])
    assert user is not None
    assert (created.status, created.content_id) == (204, "1")
    assert created.headers["OData-EntityId"] == f"{ORIGIN}{API}systemusers({user.id})"
    assert (associated.status, associated.content_id) == (204, "2")
    assert dv.state.role_names(user.id) == ["Basic User"]
    assert [r["systemuserid"] for r in query.json["value"]] == [user.id]
    assert operations == [
        ("POST", "/api/data/v9.2/systemusers", 204),
        ("POST", f"/api/data/v9.2/systemusers({user.id})/systemuserroles_association/$ref", 204),
        ("GET", "/api/data/v9.2/systemusers", 200),
    ]


def test_content_id_reference_in_the_body(dv: DataverseHarness) -> None:
    user_id = dv.user_id(READER)
    status, _, _ = _batch(
        dv,
        [
            [
                Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}, content_id="a"),
                Op("PATCH", "$a", {"isdisabled": True}, content_id="b"),
                Op(
                    "POST",
                    f"systemusers({user_id})/systemuserroles_association/$ref",
                    {"@odata.id": dv.role_url("Basic User")},
                ),
            ]
        ],
    )
    assert status == 200
    user = dv.state.user_by_application_id(PAYMENTS[1])
    assert user is not None and user.disabled
    assert "Basic User" in dv.state.role_names(user_id)


def test_failing_change_set_is_rolled_back_and_answered_by_the_failure(dv: DataverseHarness) -> None:
    reader = dv.user_id(READER)
    before = {u.id: (u.disabled, list(u.role_ids), u.version) for u in dv.state.users}
    status, replies, operations = _batch(
        dv,
        [
            [
                Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}, content_id="1"),
                Op(
                    "POST",
                    f"systemusers({reader})/systemuserroles_association/$ref",
                    {"@odata.id": dv.role_url("Basic User")},
                ),
                Op("PATCH", f"systemusers({reader})", {"isdisabled": True}),
                Op("POST", "systemusers", {"applicationid": NO_SP_APP[1]}, content_id="4"),  # fails: no SP
                Op("POST", "systemusers", {"applicationid": CLAIMS_APP[1]}),  # never runs
            ],
            Op("GET", "systemusers?$select=fullname"),  # never runs either: the batch stops at the failure
        ],
    )
    assert status == 400
    assert len(replies) == 1
    (failure,) = replies
    assert isinstance(failure, InnerReply)  # a failed change set is answered by the one failing response
    assert failure.status == 400
    assert failure.content_id == "4"
    assert "applicationid" in failure.json["error"]["message"]
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None
    assert dv.state.user_by_application_id(CLAIMS_APP[1]) is None
    assert {u.id: (u.disabled, list(u.role_ids), u.version) for u in dv.state.users} == before
    assert [s for _, _, s in operations] == [204, 204, 204, 400]


def test_requests_before_a_failure_stay_done_outside_change_sets(dv: DataverseHarness) -> None:
    status, replies, _ = _batch(
        dv,
        [
            [Op("POST", "systemusers", {"applicationid": PAYMENTS[1]})],
            Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}),  # duplicate
            Op("POST", "systemusers", {"applicationid": CLAIMS_APP[1]}),
        ],
    )
    assert status == 412
    assert len(replies) == 2
    committed, duplicate = replies
    assert isinstance(committed, list) and committed[0].status == 204
    assert isinstance(duplicate, InnerReply) and duplicate.json["error"]["code"] == "0x80040237"
    assert dv.state.user_by_application_id(PAYMENTS[1]) is not None
    assert dv.state.user_by_application_id(CLAIMS_APP[1]) is None


def test_continue_on_error_runs_everything(dv: DataverseHarness) -> None:
    status, replies, _ = _batch(
        dv,
        [
            [Op("POST", "systemusers", {"applicationid": NO_SP_APP[1]})],
            Op("POST", "systemusers", {"applicationid": CLAIMS_APP[1]}),
        ],
        prefer="odata.continue-on-error",
    )
    assert status == 200
    failed, created = replies
    assert isinstance(failed, InnerReply) and failed.status == 400
    assert isinstance(created, InnerReply) and created.status == 204
    assert dv.state.user_by_application_id(CLAIMS_APP[1]) is not None


def test_reference_to_an_undeclared_content_id_is_400(dv: DataverseHarness) -> None:
    status, replies, _ = _batch(
        dv,
        [
            [
                Op(
                    "POST",
                    "$1/systemuserroles_association/$ref",
                    {"@odata.id": dv.role_url("Basic User")},
                    content_id="2",
                ),
                Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}, content_id="1"),
            ]
        ],
    )
    assert status == 400
    (failure,) = replies
    assert isinstance(failure, InnerReply)
    assert failure.json["error"]["message"] == "Content-ID Reference: '$1' does not exist in the batch context."
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None


def test_inner_requests_are_authorized_as_the_batch_caller(dv: DataverseHarness) -> None:
    status, replies, _ = _batch(
        dv, [Op("GET", "systemusers?$select=fullname"), Op("GET", "roles?$select=name")], app=READER
    )
    assert status == 403
    ok, refused = replies
    assert isinstance(ok, InnerReply) and ok.status == 200
    assert isinstance(refused, InnerReply) and refused.json["error"]["code"] == "0x80040220"


def test_batch_is_authenticated_as_a_whole(dv: DataverseHarness) -> None:
    content_type, body = batch_body([Op("GET", "systemusers")])
    reply = dv.call("POST", "$batch", raw_body=body, headers={"Content-Type": content_type}, app=None)
    assert reply.status == 401


def test_get_inside_a_change_set_is_refused(dv: DataverseHarness) -> None:
    content_type, body = batch_body(
        [[Op("POST", "systemusers", {"applicationid": PAYMENTS[1]}), Op("GET", "systemusers")]]
    )
    reply = dv.call("POST", "$batch", raw_body=body, headers={"Content-Type": content_type})
    assert reply.status == 400
    assert "GET" in reply.error["message"]
    assert dv.state.user_by_application_id(PAYMENTS[1]) is None


def test_at_most_1000_requests(dv: DataverseHarness) -> None:
    content_type, body = batch_body([Op("GET", "WhoAmI")] * 1001)
    reply = dv.call("POST", "$batch", raw_body=body, headers={"Content-Type": content_type})
    assert reply.status == 400
    assert "1000" in reply.error["message"]
    status, replies, _ = _batch(dv, [Op("GET", "WhoAmI")] * 1000)
    assert status == 200 and len(replies) == 1000


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/mixed", b"--x\r\n\r\n--x--\r\n"),
        ("multipart/mixed; boundary=batch_x", b"--batch_x\r\nContent-Type: application/http\r\n"),
        ("multipart/mixed; boundary=batch_x", b"--batch_x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--batch_x--\r\n"),
        (
            "multipart/mixed; boundary=batch_x",
            b"--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            b"nonsense\r\n--batch_x--\r\n",
        ),
    ],
)
def test_malformed_batches_are_400(dv: DataverseHarness, content_type: str, body: bytes) -> None:
    reply = dv.call("POST", "$batch", raw_body=body, headers={"Content-Type": content_type})
    assert reply.status == 400
    assert reply.error["code"]


def test_nested_batch_is_refused(dv: DataverseHarness) -> None:
    status, _, _ = _batch(dv, [Op("POST", "$batch", {"x": 1})])
    assert status == 400


def test_batch_accepts_lf_only_line_endings(dv: DataverseHarness) -> None:
    content_type, body = batch_body([Op("GET", "WhoAmI")])
    reply = dv.call("POST", "$batch", raw_body=body.replace(b"\r\n", b"\n"), headers={"Content-Type": content_type})
    assert reply.status == 200
    reply_type = reply.header("Content-Type")
    assert reply_type is not None
    (who,) = parse_batch_reply(reply_type, reply.body)
    assert isinstance(who, InnerReply) and who.json["UserId"] == dv.user_id(DEPLOYER)
