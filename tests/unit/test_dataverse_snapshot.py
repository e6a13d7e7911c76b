"""The environment snapshot, refresh semantics, ``write_user`` and tenant isolation, against the strict fake.

docs/adr/0008-environment-snapshot.md states the rules these tests hold the client to.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from providers._identity import TOKENS, WrongTenant
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import Unauthorized, WriteRefused
from providers.dataverse.models import AddRole, NewUser, RemoveRole, SetDisabled

from .fake_dataverse import API, APP, OTHER_APP, FakeCredential, FakeDataverse, standard_environment


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_client(fake: FakeDataverse, clock: Clock | None = None, **kwargs: Any) -> DataverseClient:
    credential = kwargs.pop("credential", None) or FakeCredential()
    fake.token = credential.token
    if clock is not None:
        kwargs["clock"] = clock
    return DataverseClient(
        fake.origin, credential, session=fake.session(), sleep=lambda _: None, rng=random.Random(3), **kwargs
    )


@pytest.fixture
def client(fake: FakeDataverse, clock: Clock) -> DataverseClient:
    return make_client(fake, clock)


def listings(fake: FakeDataverse) -> int:
    return sum(
        1 for r in fake.requests if r.path == "systemusers" and r.query.get("$filter") == "applicationid ne null"
    )


# -- the snapshot ---------------------------------------------------------------------------------------------


def test_the_snapshot_lists_every_application_user_with_roles_and_names_units_from_the_catalog(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    reader = fake.add_user(APP, business_unit="ffc-payments", roles=("Basic User",))
    other = fake.add_user(OTHER_APP, roles=("System Administrator",), disabled=True)
    users = {u.systemuser_id: u for u in client.application_users()}
    assert set(users) == {reader, other}
    assert users[reader].business_unit_name == "ffc-payments" and users[reader].business_unit_is_root is False
    assert set(users[other].roles.values()) == {"System Administrator"} and users[other].disabled is True
    listing = fake.requests[0]
    assert listing.headers["Prefer"] == "odata.maxpagesize=5000"
    assert "businessunitid(" not in listing.query["$expand"]  # never roles AND the unit in one query
    assert [r.path for r in fake.requests] == ["systemusers", "businessunits", "roles"]
    fake.requests.clear()
    assert client.lookup_application_user(APP) == users[reader]
    assert client.lookup_user(other) == users[other]
    assert client.lookup_application_user(str(uuid.uuid4())) is None
    assert fake.requests == []  # answered from the snapshot


def test_a_refresh_of_n_users_costs_ceil_n_over_5000_requests_plus_the_catalog(fake: FakeDataverse) -> None:
    count = 5001
    users = [fake.add_user(str(uuid.uuid4())) for _ in range(count)]
    client = make_client(fake)
    with ThreadPoolExecutor(max_workers=4) as pool:  # the provider host serves four calls at a time
        read = list(pool.map(client.refresh_user, users))
    assert all(u is not None and u.systemuser_id == i for u, i in zip(read, users, strict=True))
    assert [r.path for r in fake.requests] == ["systemusers", "businessunits", "roles", "systemusers"]
    assert "$skiptoken" in fake.requests[-1].query  # the second page of 5000 (the fake checks it is the nextLink)


def test_concurrent_readers_wait_for_one_listing(fake: FakeDataverse, client: DataverseClient) -> None:
    ids = [fake.add_user(str(uuid.uuid4())) for _ in range(8)]
    barrier = threading.Barrier(8)

    def read(user_id: str) -> Any:
        barrier.wait()
        return client.refresh_user(user_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(read, ids))
    assert listings(fake) == 1


def test_the_snapshot_has_a_bounded_age(fake: FakeDataverse, client: DataverseClient, clock: Clock) -> None:
    user_id = fake.add_user(APP)
    client.lookup_user(user_id)
    clock.now += 59.0
    client.lookup_user(user_id)
    assert listings(fake) == 1
    clock.now += 2.0  # 61 s: too old to answer
    client.lookup_user(user_id)
    assert listings(fake) == 2


def test_a_failed_listing_is_the_error_of_those_who_waited_for_it(fake: FakeDataverse) -> None:
    client = make_client(fake)
    fake.inject("bad_gateway", count=50, method="GET")
    barrier = threading.Barrier(4)

    def read(_: int) -> BaseException | None:
        barrier.wait()
        try:
            client.lookup_application_user(APP)
        except Exception as exc:  # the typed error, one per caller
            return exc
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = list(pool.map(read, range(4)))
    assert all(e is not None and ("502" in str(e) or "Bad Gateway" in str(e)) for e in errors)
    assert fake.count("GET") <= 2 * 5  # the waiters did not each send a listing of their own (5 = 1 + 4 retries)


def test_soft_deleted_rows_are_not_users_but_are_remembered(fake: FakeDataverse, client: DataverseClient) -> None:
    deleted = fake.add_user(APP, disabled=True)
    fake.users[deleted]["deleted"] = 1
    assert client.application_users() == []
    assert client.lookup_application_user(APP) is None
    soft = client.soft_deleted_user(APP)
    assert soft is not None and soft.systemuser_id == deleted and soft.deleted
    assert client.refresh_user(deleted) is None
    assert client.get_user(deleted) is None and client.get_application_user(APP) is None


# -- refresh semantics ----------------------------------------------------------------------------------------


def test_each_user_is_refreshed_once_per_listing(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    assert client.refresh_user(user_id) is not None
    fake.users[user_id]["roles"].add(fake.role_id("System Administrator"))  # drift made by hand
    again = client.refresh_user(user_id)  # a second refresh in this process: a new listing, which sees it
    assert again is not None and set(again.roles.values()) == {"System Administrator"}
    assert listings(fake) == 2


def test_a_refresh_after_our_own_write_lists_again(fake: FakeDataverse, client: DataverseClient) -> None:
    result = client.write_user(None, APP, [NewUser(APP, fake.root_id), AddRole(fake.role_id("Basic User"))])
    assert result.user is not None
    user_id = result.user.systemuser_id
    fake.users[user_id]["roles"].add(fake.role_id("System Administrator"))  # changed after our write
    fresh = client.refresh_user(user_id)
    assert fresh is not None and set(fresh.roles.values()) == {"Basic User", "System Administrator"}


def test_a_user_missing_from_an_older_listing_is_read_on_its_own(fake: FakeDataverse, client: DataverseClient) -> None:
    client.application_users()  # listed before the user existed
    client.catalog()
    user_id = fake.add_user(APP)
    fake.requests.clear()
    assert client.refresh_user(user_id) is not None
    assert [r.path for r in fake.requests] == [f"systemusers({user_id})"]


def test_a_user_missing_from_a_listing_made_for_its_refresh_is_gone_without_another_request(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    assert client.refresh_user(str(uuid.uuid4())) is None
    assert [r.path for r in fake.requests] == ["systemusers"]


# -- write_user -----------------------------------------------------------------------------------------------


def test_write_user_sends_one_change_set_and_reads_the_user_back(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    client.catalog()  # names the business unit of the user read back
    fake.requests.clear()
    result = client.write_user(
        user_id, APP, [RemoveRole(fake.role_id("Basic User")), AddRole(fake.role_id("Environment Maker"))]
    )
    assert result.error is None and result.verified
    assert result.user is not None and set(result.user.roles.values()) == {"Environment Maker"}
    (batch,) = fake.requests
    assert batch.headers["Prefer"] == "odata.continue-on-error"
    inner = fake.batches[0]
    assert [(r.content_id, r.method) for r in inner] == [("1", "DELETE"), ("2", "POST"), (None, "GET")]
    assert inner[-1].path.startswith(f"{API}systemusers?$filter=applicationid")


def test_a_change_set_failure_is_returned_typed_with_the_state_read_back(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    result = client.write_user(
        user_id, APP, [AddRole(fake.role_id("Environment Maker")), AddRole(fake.role_id("Basic User"))]
    )
    assert result.error is not None and getattr(result.error, "code", None) == "0x80040237"
    assert f"systemusers({user_id})/systemuserroles_association/$ref" in str(result.error)
    assert result.user is not None and set(result.user.roles.values()) == {"Basic User"}  # rolled back
    assert fake.role_names(user_id) == {"Basic User"}


def test_a_batch_holds_at_most_1000_requests(fake: FakeDataverse) -> None:
    client = make_client(fake, gather_window=5.0, gather_settle=0.5)
    client._writes._budget = 5  # the same rule at a size a test can reach: 1000 in production
    ids = [fake.add_user(str(uuid.uuid4())) for _ in range(3)]
    apps = [fake.users[i]["applicationid"] for i in ids]
    barrier = threading.Barrier(3)

    def disable(index: int) -> Any:
        barrier.wait()
        with client.operation():
            return client.write_user(ids[index], apps[index], [AddRole(fake.role_id("Basic User")), SetDisabled(True)])

    with ThreadPoolExecutor(max_workers=3) as pool:  # 3 jobs of 3 requests each (2 writes + the read-back)
        results = list(pool.map(disable, range(3)))
    assert all(r.error is None for r in results)
    assert fake.count("POST", "$batch") == 3 and all(len(b) <= 5 for b in fake.batches)


def test_a_read_only_client_refuses_every_write_before_sending(fake: FakeDataverse) -> None:
    client = make_client(fake, read_only=True)
    for write in (
        lambda: client.write_user(None, APP, [NewUser(APP, fake.root_id)]),
        lambda: client.purge_soft_deleted_user(str(uuid.uuid4())),
    ):
        with pytest.raises(WriteRefused, match="read-only"):
            write()
    assert fake.requests == []


def test_a_malformed_change_set_is_refused_before_anything_is_queued(client: DataverseClient) -> None:
    with pytest.raises(ValueError, match="must name the systemuser"):
        client.write_user(None, APP, [AddRole(str(uuid.uuid4()))])
    with pytest.raises(ValueError, match="at least one"):
        client.write_user(str(uuid.uuid4()), APP, [])


# -- tenant isolation -------------------------------------------------------------------------------------------

DEFRADEV = "a798744b-41a1-41b0-b394-141dbf8496c4"
DEFRA = "f204cad1-9a84-48cc-a48e-3e1300dc5edc"


def _jwt(tenant: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'tid': tenant, 'aud': 'x'})}.c2ln"


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Any:
    TOKENS.clear()
    yield
    TOKENS.clear()


def test_a_credential_of_another_tenant_is_refused_before_any_request(fake: FakeDataverse) -> None:
    client = make_client(fake, credential=FakeCredential(_jwt(DEFRADEV)), tenant_id=DEFRA)
    with pytest.raises(WrongTenant) as raised:
        client.lookup_application_user(APP)
    assert DEFRA in str(raised.value) and DEFRADEV in str(raised.value) and fake.origin in str(raised.value)
    assert fake.requests == []


def test_the_credential_of_the_environments_own_tenant_works(fake: FakeDataverse) -> None:
    credential = FakeCredential(_jwt(DEFRA))
    client = make_client(fake, credential=credential, tenant_id=DEFRA.upper())
    assert client.get_application_user(APP) is None and len(fake.requests) == 1
    client.verify_tenant(DEFRA)
    assert credential.calls == 1  # one token, checked and then used


def test_verify_tenant_names_both_tenants_and_sends_nothing(fake: FakeDataverse) -> None:
    client = make_client(fake, credential=FakeCredential(_jwt(DEFRA)))
    client.verify_tenant(None)  # nothing declared: nothing checked
    with pytest.raises(WrongTenant):
        client.verify_tenant(DEFRADEV)
    assert fake.requests == []


def test_no_token_for_the_environment_is_one_line_naming_the_tenant_check(fake: FakeDataverse) -> None:
    class Refused:
        token = "never-issued"

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise RuntimeError("AADSTS500011: The resource principal named x was not found in the tenant\nTrace")

    client = make_client(fake, credential=Refused())
    with pytest.raises(Unauthorized) as raised:
        client.verify_tenant(DEFRA)
    assert "to check that" in str(raised.value) and DEFRA in str(raised.value) and "AADSTS500011" in str(raised.value)
    assert "\n" not in str(raised.value) and fake.requests == []


def test_with_the_default_credential_a_token_refused_for_another_tenant_names_both_tenants(
    fake: FakeDataverse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import _identity
    from providers._identity import CredentialFailed

    def refused(credential: Any, scope: str) -> str:
        raise CredentialFailed(scope, "AADSTS500011: The resource principal named x was not found in the tenant")

    monkeypatch.setattr(_identity, "bearer_token", refused)
    monkeypatch.setenv("AZURE_TENANT_ID", DEFRADEV)
    client = DataverseClient(fake.origin, None, session=fake.session())
    with pytest.raises(WrongTenant) as raised:
        client.verify_tenant(DEFRA)
    assert DEFRA in str(raised.value) and DEFRADEV in str(raised.value)
    assert fake.requests == []
