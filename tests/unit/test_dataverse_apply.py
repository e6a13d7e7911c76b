"""ensure / apply / revoke through the real client against the strict fake: request budgets and lost answers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import Duplicate, ServerError, UnknownSecurityRole
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

from .fake_dataverse import APP, OTHER_APP, FakeCredential, FakeDataverse, Recorded, Reply, standard_environment


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


@pytest.fixture
def client(fake: FakeDataverse) -> DataverseClient:
    credential = FakeCredential()
    fake.token = credential.token
    return DataverseClient(fake.origin, credential, session=fake.session(), sleep=lambda _: None, rng=random.Random(1))


def desired(
    fake: FakeDataverse, *roles: str, app: str = APP, business_unit: str | None = None, disabled: bool = False
) -> DesiredUser:
    return DesiredUser(fake.origin, app, business_unit, frozenset(roles), disabled)


def calls(fake: FakeDataverse) -> list[str]:
    """The requests so far, as ``METHOD table`` (keys elided) for readable assertions."""
    return [f"{r.method} {r.path.split('(')[0].split('/')[0]}" for r in fake.requests]


def only_user(fake: FakeDataverse, app: str = APP) -> tuple[str, dict[str, Any]]:
    found = fake.user_by_app(app)
    assert found is not None
    return found


# -- request budget -------------------------------------------------------------------------------------------


def test_create_with_roles_costs_create_plus_one_association_request(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    want = desired(fake, "Basic User", "ADP Identity Manager", "Environment Maker", business_unit="ffc-payments")
    user, plan = ensure(client, want)
    assert calls(fake) == [
        "GET systemusers",  # read the user: 1 request
        "GET businessunits",  # catalog: 2 GETs, once per process per environment
        "GET roles",
        "POST systemusers",  # the create
        "POST $batch",  # all 3 associations in 1 request
        "GET systemusers",  # the fresh state
    ]
    assert plan.writes == 2 and len(fake.writes) == 2
    assert [type(op) for op in plan] == [CreateUser, ChangeRoles]
    user_id, row = only_user(fake)
    assert user.systemuser_id == user_id and row["bu"] == fake.business_unit_id("ffc-payments")
    assert fake.role_names(user_id) == {"Basic User", "ADP Identity Manager", "Environment Maker"}
    assert set(user.roles.values()) == {"Basic User", "ADP Identity Manager", "Environment Maker"}
    assert user.business_unit_name == "ffc-payments" and user.disabled is False

    fake.requests.clear()
    ensure(client, desired(fake, "Basic User", app=OTHER_APP))  # a second user: no catalog again
    assert calls(fake) == ["GET systemusers", "POST systemusers", "POST systemusers", "GET systemusers"]
    assert fake.requests[2].path.endswith("/systemuserroles_association/$ref")


def test_unchanged_user_costs_one_read_and_no_write(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "Environment Maker"))
    client.catalog()
    fake.requests.clear()
    user, plan = ensure(client, desired(fake, "Environment Maker", "Basic User"), managed_id=user_id)
    assert calls(fake) == ["GET systemusers"]
    assert plan.is_noop and plan.operations == ()
    assert user.systemuser_id == user_id


def test_one_role_added_and_one_removed_is_one_write(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    user, plan = ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert len(fake.writes) == 1 and plan.writes == 1
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}
    assert set(user.roles.values()) == {"Basic User", "Environment Maker"}


def test_adopt_disabled_user_enables_before_associating(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("System Administrator",), disabled=True)
    user, plan = ensure(client, desired(fake, "Basic User"))
    assert [type(op) for op in plan] == [AdoptUser, EnableUser, ChangeRoles]
    assert [(r.method, r.json() if r.method == "PATCH" else None) for r in fake.writes] == [
        ("PATCH", {"isdisabled": False}),
        ("POST", None),  # $batch: +Basic User, -System Administrator (the fake refuses roles for disabled users)
    ]
    assert fake.role_names(user_id) == {"Basic User"} and user.disabled is False


def test_move_business_unit_reassociates_every_role_and_disassociates_nothing(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    user, plan = ensure(
        client, desired(fake, "Basic User", "Environment Maker", business_unit="ffc-payments"), managed_id=user_id
    )
    assert [type(op) for op in plan] == [MoveBusinessUnit, ChangeRoles]
    patch, _batch = fake.writes
    assert patch.json() == {"businessunitid@odata.bind": f"/businessunits({fake.business_unit_id('ffc-payments')})"}
    assert [r.method for r in fake.batches[0]] == ["POST", "POST"]
    assert fake.users[user_id]["roles"] == {
        fake.role_id("Basic User", "ffc-payments"),
        fake.role_id("Environment Maker", "ffc-payments"),
    }
    assert user.business_unit_name == "ffc-payments"


def test_create_disabled_assigns_roles_then_disables(fake: FakeDataverse, client: DataverseClient) -> None:
    user, _ = ensure(client, desired(fake, "Basic User", disabled=True))
    assert [r.method for r in fake.writes] == ["POST", "POST", "PATCH"]
    assert fake.writes[-1].json() == {"isdisabled": True}
    assert user.disabled is True and set(user.roles.values()) == {"Basic User"}


# -- lost answers and half-way failures -----------------------------------------------------------------------


def test_lost_create_response_adopts_instead_of_duplicating(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.inject("lost_response", method="POST", path_contains="systemusers")
    user, _ = ensure(client, desired(fake, "Basic User", "Environment Maker"))
    user_id, _row = only_user(fake)  # exactly one user
    assert fake.count("POST", "systemusers") == 1  # the create was sent once
    assert calls(fake)[3:] == ["POST systemusers", "GET systemusers", "POST $batch", "GET systemusers"]
    assert user.systemuser_id == user_id
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_dropped_create_is_sent_again_once_the_reread_proves_it_absent(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    fake.inject("drop", method="POST", path_contains="systemusers")
    ensure(client, desired(fake))
    only_user(fake)
    assert calls(fake)[3:] == ["POST systemusers", "GET systemusers", "POST systemusers", "GET systemusers"]


def test_create_racing_another_writer_adopts_on_duplicate(fake: FakeDataverse, client: DataverseClient) -> None:
    def someone_else_creates(request: Recorded) -> None:
        if request.method == "POST" and request.path == "systemusers" and fake.user_by_app(APP) is None:
            fake.add_user(APP, roles=("System Administrator",))

    fake.hooks.append(someone_else_creates)
    user, _ = ensure(client, desired(fake, "Basic User"))
    user_id, _row = only_user(fake)
    assert user.systemuser_id == user_id
    assert fake.role_names(user_id) == {"Basic User"}  # and the extra System Administrator is gone


def test_lost_association_response_is_not_replayed(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    fake.inject("lost_response", path_contains="$ref")
    ensure(client, desired(fake, "Basic User"), managed_id=user_id)
    assert fake.count("POST") == 1  # the re-read showed it was done: no replay to meet a 412
    assert fake.role_names(user_id) == {"Basic User"}


def test_lost_batch_response_is_not_replayed(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    fake.inject("lost_response", path_contains="$batch")
    user, _ = ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert fake.count("POST") == 1
    assert set(user.roles.values()) == {"Basic User", "Environment Maker"}


def test_dropped_batch_is_resent_after_the_reread(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    fake.inject("drop", path_contains="$batch")
    ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert fake.count("POST", "$batch") == 2
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_association_duplicate_sends_only_what_is_still_missing(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)

    def someone_else_associates(request: Recorded) -> None:
        if request.path == "$batch" and not fake.users[user_id]["roles"]:
            fake.users[user_id]["roles"].add(fake.role_id("Basic User"))

    fake.hooks.append(someone_else_associates)
    ensure(client, desired(fake, "Basic User", "Environment Maker"), managed_id=user_id)
    assert [r.status for r in fake.writes] == [412, 204]
    assert fake.writes[1].json() == {
        "@odata.id": f"{fake.origin}/api/data/v9.2/roles({fake.role_id('Environment Maker')})"
    }
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


def test_association_refusal_the_reread_does_not_explain_is_raised_not_resent(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP)
    refusal = Reply(
        412, {"error": {"code": "0x80040237", "message": "A record with matching key values already exists."}}
    )
    fake.inject("reply", path_contains="$ref", reply=refusal)
    with pytest.raises(Duplicate):
        ensure(client, desired(fake, "Basic User"), managed_id=user_id)
    assert calls(fake) == ["GET systemusers", "GET businessunits", "GET roles", "POST systemusers", "GET systemusers"]
    assert fake.role_names(user_id) == set()


def test_create_retried_after_a_half_way_failure_converges(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.inject("server_error", path_contains="$batch")
    with pytest.raises(ServerError):
        ensure(client, desired(fake, "Basic User", "Environment Maker"))
    user_id, _row = only_user(fake)
    assert fake.role_names(user_id) == set()
    user, plan = ensure(client, desired(fake, "Basic User", "Environment Maker"))  # the provider's retried create
    assert [type(op) for op in plan] == [AdoptUser, ChangeRoles]
    assert only_user(fake)[0] == user_id == user.systemuser_id
    assert fake.role_names(user_id) == {"Basic User", "Environment Maker"}


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
    assert calls(fake) == ["GET systemusers"]  # no second refetch in this process


def test_role_created_after_the_catalog_was_fetched_is_found(fake: FakeDataverse, client: DataverseClient) -> None:
    client.catalog()
    fake.add_roles("Payments Reader")
    user, _ = ensure(client, desired(fake, "Payments Reader"))
    assert set(user.roles.values()) == {"Payments Reader"}


# -- revoke ---------------------------------------------------------------------------------------------------


def test_revoke_removes_roles_then_disables_and_keeps_the_record(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User", "System Administrator"))
    user = revoke(client, user_id)
    assert [r.method for r in fake.writes] == ["POST", "PATCH"]  # $batch of 2 DELETEs, then disable
    assert [r.method for r in fake.batches[0]] == ["DELETE", "DELETE"]
    assert fake.writes[1].json() == {"isdisabled": True}
    assert user_id in fake.users and fake.users[user_id]["isdisabled"] is True
    assert user is not None and user.roles == {} and user.disabled is True
    fake.requests.clear()
    assert revoke(client, user_id) == user  # already revoked: one read, no write
    assert calls(fake) == ["GET systemusers"]


def test_revoke_of_a_missing_user_is_none(fake: FakeDataverse, client: DataverseClient) -> None:
    assert revoke(client, "00000000-0000-4000-8000-000000000009") is None
    assert len(fake.requests) == 1
