"""ensure / apply / revoke through the real client against the strict fake: request budgets and lost answers.

Every write of a plan is ONE ``$batch``: the user's change set (atomic), then a GET reading the user back. Reads
come from the environment snapshot (one listing), except a user the snapshot lacks, which is read on its own
before anything is created, and a revoke, which always reads the user on its own.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import (
    ConnectionFailed,
    Duplicate,
    Rejected,
    ServerError,
    SoftDeletedUser,
    UnknownSecurityRole,
)
from providers.dataverse.reconcile import (
    AdoptUser,
    ChangeRoles,
    CreateUser,
    DesiredUser,
    EnableUser,
    MoveBusinessUnit,
    ensure,
    revoke,
)

from .fake_dataverse import API, APP, OTHER_APP, FakeCredential, FakeDataverse, Recorded, Reply, standard_environment


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


def make_client(fake: FakeDataverse, **kwargs: Any) -> DataverseClient:
    credential = FakeCredential()
    fake.token = credential.token
    return DataverseClient(
        fake.origin, credential, session=fake.session(), sleep=lambda _: None, rng=random.Random(1), **kwargs
    )


@pytest.fixture
def client(fake: FakeDataverse) -> DataverseClient:
    return make_client(fake)


def desired(
    fake: FakeDataverse, *roles: str, app: str = APP, business_unit: str | None = None, disabled: bool = False
) -> DesiredUser:
    return DesiredUser(fake.origin, app, business_unit, frozenset(roles), disabled)


def calls(fake: FakeDataverse) -> list[str]:
    """The requests so far, as ``METHOD table`` (keys elided) for readable assertions."""
    return [f"{r.method} {r.path.split('(')[0].split('/')[0]}" for r in fake.requests]


def change_set(fake: FakeDataverse, index: int = -1) -> list[tuple[str, str]]:
    """(method, path after the API base or the $n reference) of one change set the fake received."""
    return [(r.method, r.path.removeprefix(API)) for r in fake.change_sets[index]]


def only_user(fake: FakeDataverse, app: str = APP) -> tuple[str, dict[str, Any]]:
    found = fake.user_by_app(app)
    assert found is not None
    return found


# -- request budget -------------------------------------------------------------------------------------------


def test_create_with_roles_is_one_request_and_atomic(fake: FakeDataverse, client: DataverseClient) -> None:
    want = desired(fake, "Basic User", "ADP Identity Manager", "Environment Maker", business_unit="ffc-payments")
    user, plan = ensure(client, want)
    assert calls(fake) == [
        "GET systemusers",  # the environment snapshot: every application user, 1 GET per 5000
        "GET businessunits",  # catalog: 2 GETs, once per process per environment
        "GET roles",
        "GET systemusers",  # the user is not in the snapshot: read on its own before anything is created
        "POST $batch",  # the create and all 3 associations: ONE atomic change set, and the user read back
    ]
    assert plan.writes == 2 and plan.requests == 1 and len(fake.writes) == 1
    assert [type(op) for op in plan] == [CreateUser, ChangeRoles]
    ops = change_set(fake)
    assert ops[0] == ("POST", "systemusers")
    assert ops[1:] == [("POST", "$1/systemuserroles_association/$ref")] * 3  # the new user, by Content-ID
    assert [r.method for r in fake.batches[0]] == ["POST", "POST", "POST", "POST", "GET"]  # then the read-back
    assert fake.requests[-1].headers["Prefer"] == "odata.continue-on-error"
    user_id, row = only_user(fake)
    assert user.systemuser_id == user_id and row["bu"] == fake.business_unit_id("ffc-payments")
    assert fake.role_names(user_id) == {"Basic User", "ADP Identity Manager", "Environment Maker"}
    assert set(user.roles.values()) == {"Basic User", "ADP Identity Manager", "Environment Maker"}
    assert user.business_unit_name == "ffc-payments" and user.disabled is False
    assert user.full_name == "ffc-pay-batch"  # from the read-back: no re-read afterwards

    fake.requests.clear()
    ensure(client, desired(fake, "Basic User", app=OTHER_APP))  # a second user: no listing, no catalog again
    assert calls(fake) == ["GET systemusers", "POST $batch"]


def test_unchanged_user_costs_no_request_once_the_snapshot_is_listed(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "Environment Maker"))
    client.catalog()
    fake.requests.clear()
    user, plan = ensure(client, desired(fake, "Environment Maker", "Basic User"), managed_id=user_id)
    assert calls(fake) == ["GET systemusers"]  # the listing, once
    assert plan.is_noop and plan.operations == () and plan.requests == 0
    assert user.systemuser_id == user_id
    fake.requests.clear()
    ensure(client, desired(fake, "Environment Maker", "Basic User"), managed_id=user_id)
    assert fake.requests == []  # a no-op update: 0 requests while the snapshot is fresh


def test_one_role_added_and_one_removed_is_one_request(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    client.lookup_user(user_id)  # the snapshot and the catalog, as any earlier operation of the process leaves them
    fake.requests.clear()
    user, plan = ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert calls(fake) == ["POST $batch"] and plan.requests == 1
    assert change_set(fake) == [
        ("POST", f"systemusers({user_id})/systemuserroles_association/$ref"),
        ("DELETE", f"systemusers({user_id})/systemuserroles_association({fake.role_id('System Administrator')})/$ref"),
    ]
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}
    assert set(user.roles.values()) == {"Basic User", "Environment Maker"}


def test_adopt_disabled_user_enables_before_associating(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("System Administrator",), disabled=True)
    user, plan = ensure(client, desired(fake, "Basic User"))
    assert [type(op) for op in plan] == [AdoptUser, EnableUser, ChangeRoles]
    (batch,) = fake.writes
    assert batch.path == "$batch"
    assert [(m, p.split("/")[-1]) for m, p in change_set(fake)] == [
        ("PATCH", f"systemusers({user_id})"),
        ("POST", "$ref"),
        ("DELETE", "$ref"),
    ]
    enable = fake.change_sets[0][0]
    assert enable.body == '{"isdisabled":false}' and enable.headers["If-Match"] == "*"  # never an upsert
    assert fake.role_names(user_id) == {"Basic User"} and user.disabled is False


def test_move_business_unit_reassociates_every_role_and_disassociates_nothing(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    user, plan = ensure(
        client, desired(fake, "Basic User", "Environment Maker", business_unit="ffc-payments"), managed_id=user_id
    )
    assert [type(op) for op in plan] == [MoveBusinessUnit, ChangeRoles]
    assert len(fake.writes) == 1
    move, *associations = fake.change_sets[0]
    assert move.method == "PATCH"
    assert move.body == f'{{"businessunitid@odata.bind":"/businessunits({fake.business_unit_id("ffc-payments")})"}}'
    assert [r.method for r in associations] == ["POST", "POST"]
    assert fake.users[user_id]["roles"] == {
        fake.role_id("Basic User", "ffc-payments"),
        fake.role_id("Environment Maker", "ffc-payments"),
    }
    assert user.business_unit_name == "ffc-payments"


def test_create_disabled_assigns_roles_then_disables(fake: FakeDataverse, client: DataverseClient) -> None:
    user, _ = ensure(client, desired(fake, "Basic User", disabled=True))
    assert change_set(fake) == [
        ("POST", "systemusers"),
        ("POST", "$1/systemuserroles_association/$ref"),
        ("PATCH", "$1"),
    ]
    assert fake.change_sets[0][-1].body == '{"isdisabled":true}'
    assert user.disabled is True and set(user.roles.values()) == {"Basic User"}


# -- lost answers, refusals, and what changed since the snapshot --------------------------------------------------


def test_lost_create_response_adopts_instead_of_duplicating(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.inject("lost_response", method="POST", path_contains="$batch")
    user, _ = ensure(client, desired(fake, "Basic User", "Environment Maker"))
    user_id, _row = only_user(fake)  # exactly one user
    assert fake.count("POST", "$batch") == 1  # the create was sent once
    assert calls(fake)[3:] == ["GET systemusers", "POST $batch", "GET systemusers"]  # re-read, no replay
    assert user.systemuser_id == user_id
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_dropped_create_is_sent_again_once_the_reread_proves_it_absent(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    fake.inject("drop", method="POST", path_contains="$batch")
    ensure(client, desired(fake))
    only_user(fake)
    assert calls(fake)[3:] == ["GET systemusers", "POST $batch", "GET systemusers", "POST $batch"]


def test_create_racing_another_writer_adopts_on_duplicate(fake: FakeDataverse, client: DataverseClient) -> None:
    def someone_else_creates(request: Recorded) -> None:
        if request.path == "$batch" and fake.user_by_app(APP) is None:
            fake.add_user(APP, roles=("System Administrator",))

    fake.hooks.append(someone_else_creates)
    user, _ = ensure(client, desired(fake, "Basic User"))
    user_id, _row = only_user(fake)
    assert user.systemuser_id == user_id
    assert fake.role_names(user_id) == {"Basic User"}  # and the extra System Administrator is gone
    assert fake.count("POST", "$batch") == 2  # the create met 412; the read-back in the same $batch led to adoption
    assert change_set(fake, 0)[0] == ("POST", "systemusers") and change_set(fake, 1)[0][0] == "POST"


def test_lost_role_change_response_is_not_replayed(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    fake.inject("lost_response", path_contains="$batch")
    user, _ = ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert fake.count("POST") == 1  # the re-read showed it was done: no replay to meet a 412
    assert set(user.roles.values()) == {"Basic User", "Environment Maker"}


def test_dropped_batch_is_resent_after_the_reread(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    fake.inject("drop", path_contains="$batch")
    ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert fake.count("POST", "$batch") == 2
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_a_role_granted_since_the_snapshot_is_found_by_the_read_back_and_only_the_rest_is_sent(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP)
    client.lookup_user(user_id)  # listed without roles
    fake.users[user_id]["roles"].add(fake.role_id("Basic User"))  # someone grants one behind our back
    ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    # the change set met 412 (rolled back); the user read back in the same $batch holds Basic User already
    assert fake.count("POST", "$batch") == 2
    assert [len(cs) for cs in fake.change_sets] == [2, 1]
    assert (
        fake.change_sets[1][0].body == f'{{"@odata.id":"{fake.origin}{API}roles({fake.role_id("Environment Maker")})"}}'
    )
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_a_role_granted_since_the_snapshot_is_removed_in_the_same_operation(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP)
    client.lookup_user(user_id)
    fake.users[user_id]["roles"].add(fake.role_id("System Administrator"))  # granted behind our back
    user, _ = ensure(client, desired(fake, "Basic User"), managed_id=user_id)
    # the change set succeeded, the read-back shows the extra role: a second (last) round removes it
    assert [len(cs) for cs in fake.change_sets] == [1, 1]
    assert fake.change_sets[1][0].method == "DELETE"
    assert fake.role_names(user_id) == {"Basic User"} and set(user.roles.values()) == {"Basic User"}


def test_a_user_disabled_since_the_snapshot_is_enabled_before_its_roles(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP)
    client.lookup_user(user_id)
    fake.users[user_id]["isdisabled"] = True  # disabled behind our back: the association is refused (0x80040225)
    user, _ = ensure(client, desired(fake, "Basic User"), managed_id=user_id)
    assert [[r.method for r in cs] for cs in fake.change_sets] == [["POST"], ["PATCH", "POST"]]
    assert user.disabled is False and set(user.roles.values()) == {"Basic User"}


def test_a_refusal_the_read_back_does_not_explain_is_raised_not_resent(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    fake.applications.pop(APP)  # no service principal: Dataverse refuses the create (400)
    with pytest.raises(Rejected) as raised:
        ensure(client, desired(fake, "Basic User"))
    assert raised.value.code == "0x80040203" and "service principal" in str(raised.value)
    assert fake.count("POST", "$batch") == 1  # the user is exactly as planned from (absent): no resend
    assert fake.users == {}


def test_a_whole_batch_refused_is_raised_not_resent(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    refusal = Reply(
        412, {"error": {"code": "0x80040237", "message": "A record with matching key values already exists."}}
    )
    fake.inject("reply", path_contains="$batch", reply=refusal)
    with pytest.raises(Duplicate):
        ensure(client, desired(fake, "Basic User"), managed_id=user_id)
    assert calls(fake) == ["GET systemusers", "GET businessunits", "GET roles", "POST $batch"]
    assert fake.role_names(user_id) == set()


def test_a_failed_create_leaves_nothing_and_the_retried_create_makes_it(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    fake.inject("server_error", path_contains="$batch")
    with pytest.raises(ServerError):
        ensure(client, desired(fake, "Basic User", "Environment Maker"))
    assert fake.users == {}  # atomic: no half-made user to clean up
    user, plan = ensure(client, desired(fake, "Basic User", "Environment Maker"))  # the provider's retried create
    assert [type(op) for op in plan] == [CreateUser, ChangeRoles]
    assert only_user(fake)[0] == user.systemuser_id
    assert fake.role_names(user.systemuser_id) == {"Basic User", "Environment Maker"}


def test_a_connection_that_keeps_failing_is_raised_after_two_rounds(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    fake.inject("drop", path_contains="$batch", count=5)
    with pytest.raises(ConnectionFailed):
        ensure(client, desired(fake, "Basic User"))
    assert fake.count("POST", "$batch") == 2  # bounded: the create, then once more after a read proved it absent


def test_a_soft_deleted_user_stops_the_create_before_any_write(fake: FakeDataverse, client: DataverseClient) -> None:
    deleted = fake.add_user(APP, disabled=True)
    fake.users[deleted]["deleted"] = 1  # deleted in the admin centre: kept soft-deleted until purged
    with pytest.raises(SoftDeletedUser) as raised:
        ensure(client, desired(fake, "Basic User"))
    message = str(raised.value)
    assert deleted in message and "ffc-pay-batch" in message and APP in message and fake.origin in message
    assert "purges it" in message and f"DELETE {fake.origin}/api/data/v9.2/systemusers({deleted})" in message
    assert "\n" not in message
    assert fake.writes == []


def test_a_soft_deleted_user_found_only_by_the_read_back_is_reported(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    def deleted_meanwhile(request: Recorded) -> None:
        if request.path == "$batch" and not fake.users:
            user_id = fake.add_user(APP, disabled=True)
            fake.users[user_id]["deleted"] = 1

    fake.hooks.append(deleted_meanwhile)
    with pytest.raises(SoftDeletedUser):
        ensure(client, desired(fake, "Basic User"))
    assert fake.count("POST", "$batch") == 1


# -- names ----------------------------------------------------------------------------------------------------


def test_unknown_role_fails_before_any_write_and_refetches_the_catalog_once(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    with pytest.raises(UnknownSecurityRole) as raised:
        ensure(client, desired(fake, "Basic User", "Enviroment Maker"))
    assert raised.value.closest[0] == "Environment Maker"
    assert fake.writes == []
    assert calls(fake) == ["GET systemusers", "GET businessunits", "GET roles", "GET businessunits", "GET roles"]
    fake.requests.clear()
    with pytest.raises(UnknownSecurityRole):
        ensure(client, desired(fake, "Enviroment Maker", app=OTHER_APP))
    assert calls(fake) == []  # no second refetch in this process, and the snapshot answered


@pytest.mark.parametrize(
    "disguised",
    ["System\u00a0Administrator", "System  Administrator", "System\tAdministrator", "System\u200bAdministrator"],
)
def test_a_disguised_role_name_never_resolves(fake: FakeDataverse, client: DataverseClient, disguised: str) -> None:
    with pytest.raises(UnknownSecurityRole) as raised:
        ensure(client, desired(fake, disguised))
    assert raised.value.reason is not None and "refused" in str(raised.value)
    assert fake.writes == []


def test_a_role_name_in_another_case_resolves_to_the_real_role(fake: FakeDataverse, client: DataverseClient) -> None:
    user, _ = ensure(client, desired(fake, "basic USER"))
    assert set(user.roles.values()) == {"Basic User"}


def test_role_created_after_the_catalog_was_fetched_is_found(fake: FakeDataverse, client: DataverseClient) -> None:
    client.catalog()
    fake.add_roles("Payments Reader")
    user, _ = ensure(client, desired(fake, "Payments Reader"))
    assert set(user.roles.values()) == {"Payments Reader"}


# -- coalescing -------------------------------------------------------------------------------------------------


def test_operations_that_arrive_together_share_one_read_and_one_batch(fake: FakeDataverse) -> None:
    apps = [f"0000000{i}-5b6a-4978-8a9b-0c1d2e3f4a5b" for i in range(1, 5)]
    for app in apps:
        fake.add_application(app, f"svc-{app[7]}")
    client = make_client(fake, gather_window=5.0, gather_settle=0.5)  # generous: this host is shared
    client.catalog()
    barrier = threading.Barrier(len(apps))
    roles = ["Basic User", "Environment Maker", "ADP Identity Manager", "System Administrator"]

    def create(index: int) -> Any:
        barrier.wait()
        return ensure(client, desired(fake, roles[index], app=apps[index]))

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        results = list(pool.map(create, range(len(apps))))
    assert calls(fake) == ["GET businessunits", "GET roles", "GET systemusers", "GET systemusers", "POST $batch"]
    lookup = fake.requests[3]
    assert sorted(lookup.query["$filter"].split(" or ")) == [f"applicationid eq {app}" for app in apps]
    assert len(fake.change_sets) == 4  # one change set per user, each atomic, in ONE $batch
    for index, (user, _plan) in enumerate(results):
        assert set(user.roles.values()) == {roles[index]}


def _create_together(fake: FakeDataverse, client: DataverseClient, apps: list[str]) -> list[Any]:
    """``ensure`` for each application in its own thread, released together, queued in the order given; returns
    each result or exception."""
    barrier = threading.Barrier(len(apps))

    def create(index: int) -> Any:
        barrier.wait()
        time.sleep(0.05 * index)  # well inside the gather settle (0.5 s): the order in the $batch is deterministic
        try:
            return ensure(client, desired(fake, "Basic User", app=apps[index]))
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        return list(pool.map(create, range(len(apps))))


def test_a_failing_change_set_fails_only_its_own_user_with_its_own_message(fake: FakeDataverse) -> None:
    fake.add_application(OTHER_APP, "ffc-claims")
    client = make_client(fake, gather_window=5.0, gather_settle=0.5)
    fake.applications.pop(APP)  # APP's create will be refused; OTHER_APP's must not suffer for it
    client.catalog()
    refused, (user, _plan) = _create_together(fake, client, [APP, OTHER_APP])
    assert isinstance(refused, Rejected)
    assert "service principal" in str(refused) and APP in str(refused)
    assert fake.count("POST", "$batch") == 1 and len(fake.change_sets) == 2
    assert set(user.roles.values()) == {"Basic User"} and fake.user_by_app(APP) is None


def test_change_sets_a_batch_stopped_before_are_sent_again(fake: FakeDataverse) -> None:
    fake.add_application(OTHER_APP, "ffc-claims")
    fake.honour_continue_on_error = False  # a server that stops at the first failure, as without the preference
    client = make_client(fake, gather_window=5.0, gather_settle=0.5)
    fake.applications.pop(APP)
    client.catalog()
    refused, (user, _plan) = _create_together(fake, client, [APP, OTHER_APP])
    assert isinstance(refused, Rejected)
    assert set(user.roles.values()) == {"Basic User"}
    # OTHER_APP's change set came second: not processed when APP's failed, so it went again, alone
    assert fake.count("POST", "$batch") == 2
    assert [len(b) for b in fake.batches] == [3 + 3, 3]  # (create + 1 role, then the read-back) x 2, then x 1
    assert fake.change_sets[-1][0].body.endswith(
        f'"applicationid":"{OTHER_APP}","businessunitid@odata.bind":"/businessunits({fake.root_id})"}}'
    )


# -- revoke ---------------------------------------------------------------------------------------------------


def test_revoke_removes_roles_then_disables_and_keeps_the_record(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    user = revoke(client, user_id)
    assert [r.method for r in fake.writes] == ["POST"]  # ONE $batch: 2 DELETEs then the disable
    assert [r.method for r in fake.change_sets[0]] == ["DELETE", "DELETE", "PATCH"]
    assert fake.change_sets[0][-1].body == '{"isdisabled":true}'
    assert user_id in fake.users and fake.users[user_id]["isdisabled"] is True
    assert user is not None and user.roles == {} and user.disabled is True
    fake.requests.clear()
    assert revoke(client, user_id) == user  # already revoked: one read, no write
    assert calls(fake) == ["GET systemusers"]


def test_revoke_reads_the_user_on_its_own_and_misses_no_role_granted_since_the_snapshot(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP)
    client.lookup_user(user_id)  # the snapshot: no roles
    fake.users[user_id]["roles"].add(fake.role_id("System Administrator"))  # granted behind our back
    user = revoke(client, user_id)
    assert user is not None and user.roles == {} and fake.role_names(user_id) == set()


def test_revoke_of_a_missing_user_is_none(fake: FakeDataverse, client: DataverseClient) -> None:
    assert revoke(client, "00000000-0000-4000-8000-000000000009") is None
    assert len(fake.requests) == 1
