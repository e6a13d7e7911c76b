"""The Dataverse Web API client against a strict in-memory fake: wire shapes, errors, retries, caches."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from providers import _identity
from providers._retry_after import retry_after
from providers.dataverse.client import DataverseClient, environment_origin
from providers.dataverse.errors import (
    ConnectionFailed,
    DataverseError,
    Duplicate,
    Forbidden,
    NotFound,
    Rejected,
    ServerError,
    Throttled,
    Unauthorized,
)

from .fake_dataverse import API, APP, OTHER_APP, FakeCredential, FakeDataverse, Reply, standard_environment

ROLE_NAMES = ["Basic User", "System Administrator", "ADP Identity Manager", "Environment Maker"]


class Sleeps(list[float]):
    """Records the waits the client asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


@pytest.fixture
def credential(fake: FakeDataverse) -> FakeCredential:
    cred = FakeCredential()
    fake.token = cred.token  # the fake insists on exactly this bearer token
    return cred


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fake: FakeDataverse, credential: FakeCredential, sleeps: Sleeps) -> DataverseClient:
    return make_client(fake, credential, sleeps)


def make_client(
    fake: FakeDataverse, credential: Any, sleeps: Callable[[float], None], **kwargs: Any
) -> DataverseClient:
    return DataverseClient(
        fake.origin + "/main.aspx?appid=123#view",
        credential,
        session=fake.session(),
        sleep=sleeps,
        rng=random.Random(7),
        **kwargs,
    )


# -- construction and headers ---------------------------------------------------------------------------------


def test_environment_url_is_reduced_to_its_origin() -> None:
    assert (
        environment_origin("https://ORG.crm11.dynamics.com:443/main.aspx?appid=1#x") == "https://org.crm11.dynamics.com"
    )
    assert environment_origin("https://127.0.0.1:8443/api/data/v9.2/") == "https://127.0.0.1:8443"
    client = DataverseClient("https://org.crm11.dynamics.com/", FakeCredential())
    assert client.scope == "https://org.crm11.dynamics.com/.default"
    with pytest.raises(ValueError, match="https"):
        DataverseClient("http://org.crm11.dynamics.com", FakeCredential())


def test_documented_headers_on_every_request(
    fake: FakeDataverse, client: DataverseClient, credential: FakeCredential
) -> None:
    client.get_application_user(APP)
    user_id = client.create_user(APP, fake.root_id)
    client.set_disabled(user_id, True)
    assert [r.method for r in fake.requests] == ["GET", "POST", "PATCH"]
    for request in fake.requests:
        assert request.headers["Accept"] == "application/json"
        assert request.headers["OData-MaxVersion"] == "4.0"
        assert request.headers["OData-Version"] == "4.0"
        assert request.headers["If-None-Match"] == "null"
        assert request.headers["Authorization"] == f"Bearer {credential.token}"
    get, post, patch = fake.requests
    assert "Content-Type" not in get.headers
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Prefer"] == "return=representation"
    assert patch.headers["Content-Type"] == "application/json"
    assert patch.headers["If-Match"] == "*"  # a PATCH must never create (upsert) a user that is gone


# -- reads ----------------------------------------------------------------------------------------------------


def test_get_application_user_is_one_request_with_business_unit_and_roles(
    fake: FakeDataverse, client: DataverseClient
) -> None:
    user_id = fake.add_user(APP, business_unit="ffc-payments", roles=("Basic User", "Environment Maker"), disabled=True)
    client.catalog()  # 2 GETs once per process: it names the user's business unit
    fake.requests.clear()
    user = client.get_application_user(APP.upper())
    assert len(fake.requests) == 1
    request = fake.requests[0]
    # roles (N:N) expanded, the business unit (N:1) NOT: it comes from _businessunitid_value and the catalog
    assert request.url == (
        f"{fake.origin}{API}systemusers?$filter=applicationid%20eq%20{APP}"
        "&$select=systemuserid,applicationid,fullname,isdisabled,_businessunitid_value,deletedstate"
        "&$expand=systemuserroles_association($select=roleid,name,_businessunitid_value)"
    )
    assert user is not None
    assert user.systemuser_id == user_id
    assert user.application_id == APP
    assert user.full_name == "ffc-pay-batch"
    assert user.disabled is True
    assert user.business_unit_id == fake.business_unit_id("ffc-payments")
    assert user.business_unit_name == "ffc-payments"
    assert user.business_unit_is_root is False
    assert user.roles == {
        fake.role_id("Basic User", "ffc-payments"): "Basic User",
        fake.role_id("Environment Maker", "ffc-payments"): "Environment Maker",
    }


def test_get_application_user_absent_is_none(fake: FakeDataverse, client: DataverseClient) -> None:
    assert client.get_application_user(APP) is None
    assert len(fake.requests) == 1


def test_get_user_by_id_and_404_is_none(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    client.catalog()
    fake.requests.clear()
    user = client.get_user(user_id)
    assert user is not None and user.roles == {fake.role_id("Basic User"): "Basic User"}
    assert user.business_unit_name == "defradev-dev" and user.business_unit_is_root is True
    assert client.get_user(str(uuid.uuid4())) is None
    assert [r.path.split("(")[0] for r in fake.requests] == ["systemusers", "systemusers"]


def test_catalog_follows_next_link_untouched(fake: FakeDataverse, client: DataverseClient) -> None:
    fake.page_size = 3  # 2 units -> 1 page; 8 role copies -> 3 pages
    catalog = client.catalog()
    assert [r.path for r in fake.requests] == ["businessunits", "roles", "roles", "roles"]
    assert all(r.headers["Prefer"] == "odata.maxpagesize=5000" for r in fake.requests)
    assert "$skiptoken" in fake.requests[2].query  # (the fake also asserts the URL equals its nextLink exactly)
    assert len(catalog.roles) == 8
    assert catalog.root.name == "defradev-dev"
    for name in ROLE_NAMES:
        assert catalog.resolve(name, "ffc-payments") == fake.role_id(name, "ffc-payments")


def test_catalog_is_fetched_once_per_process_per_environment(
    fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps
) -> None:
    first = client.catalog()
    other_client = make_client(fake, FakeCredential(fake.token), sleeps)
    assert other_client.catalog() is first
    assert fake.count("GET") == 2
    elsewhere = standard_environment()
    other_env = make_client(elsewhere, FakeCredential(), sleeps)
    assert other_env.catalog() is not first
    assert elsewhere.count("GET") == 2


def test_catalog_fetch_is_shared_by_threads(fake: FakeDataverse, client: DataverseClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        catalogs = list(pool.map(lambda _: client.catalog(), range(16)))
    assert all(c is catalogs[0] for c in catalogs)
    assert fake.count("GET") == 2


def test_catalog_refetches_at_most_once_after_a_miss(fake: FakeDataverse, client: DataverseClient) -> None:
    first = client.catalog()
    fake.add_roles("Created Later")
    second = client.catalog(after_miss=True)
    assert second is not first and second.resolve("Created Later")
    assert client.catalog(after_miss=True) is second
    assert fake.count("GET") == 4


# -- typed errors ---------------------------------------------------------------------------------------------


def _forbidden() -> Reply:
    message = "Principal user (Id=1, type=8, roleCount=1) is missing prvCreateSystemUser privilege"
    return Reply(403, {"error": {"code": "0x80040220", "message": message}})


@pytest.mark.parametrize(
    ("arrange", "kind", "status", "code"),
    [
        (lambda f: f.add_user(APP), Duplicate, 412, "0x80040237"),
        (lambda f: f.applications.pop(APP), Rejected, 400, "0x80040203"),
        (lambda f: f.inject("reply", reply=_forbidden()), Forbidden, 403, "0x80040220"),
        (lambda f: f.inject("server_error"), ServerError, 500, "0x80040216"),
        (lambda f: f.inject("unauthorized", count=2), Unauthorized, 401, None),
    ],
    ids=["duplicate", "rejected", "forbidden", "server-error-not-retried", "unauthorized"],
)
def test_create_errors_are_typed(
    fake: FakeDataverse,
    client: DataverseClient,
    credential: FakeCredential,
    arrange: Callable[[FakeDataverse], Any],
    kind: type[DataverseError],
    status: int,
    code: str | None,
) -> None:
    arrange(fake)
    with pytest.raises(kind) as raised:
        client.create_user(APP, fake.root_id)
    error = raised.value
    assert type(error) is kind
    assert (error.status, error.code, error.method) == (status, code, "POST")
    assert error.url == f"{fake.origin}{API}systemusers?$select=systemuserid"
    assert error.environment == fake.origin
    text = str(error)
    assert "\n" not in text and f"POST {error.url} -> {status}" in text
    assert credential.token not in text and credential.token not in repr(error)
    assert fake.count("POST") == (2 if kind is Unauthorized else 1)  # 401: one retry with a fresh token


def test_patch_of_missing_user_is_not_found(fake: FakeDataverse, client: DataverseClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound) as raised:
        client.set_disabled(missing, True)
    assert raised.value.code == "0x80040217"
    assert missing in str(raised.value)


def test_401_refreshes_the_token_once(fake: FakeDataverse, client: DataverseClient, credential: FakeCredential) -> None:
    fake.inject("unauthorized")
    assert client.get_application_user(APP) is None
    assert fake.count("GET") == 2
    assert credential.calls == 2


def test_token_echoed_by_the_server_is_scrubbed(
    fake: FakeDataverse, client: DataverseClient, credential: FakeCredential
) -> None:
    echo = Reply(400, {"error": {"code": "0x80060888", "message": f"bad request\nwith Bearer {credential.token}"}})
    fake.inject("reply", reply=echo)
    with pytest.raises(Rejected) as raised:
        client.get_application_user(APP)
    assert credential.token not in str(raised.value)
    assert "***" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_credential_failure_is_one_line_unauthorized(fake: FakeDataverse, sleeps: Sleeps) -> None:
    class Failing:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise RuntimeError("AADSTS7000215: Invalid client secret provided.\nTrace ID: 1234")

    client = make_client(fake, Failing(), sleeps)
    with pytest.raises(Unauthorized) as raised:
        client.get_application_user(APP)
    assert (
        str(raised.value)
        == f"could not get a token for {fake.origin}/.default: AADSTS7000215: Invalid client secret provided."
    )
    assert fake.requests == []


# -- retries --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("throttle", 429), ("unavailable", 503)])
def test_retry_after_is_honoured(
    fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps, kind: str, status: int
) -> None:
    fake.inject(kind, count=2, retry_after=7)
    assert client.get_application_user(APP) is None
    assert sleeps == [7.0, 7.0]
    assert fake.count("GET") == 3
    assert [r.status for r in fake.requests] == [status, status, 200]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),  # an HTTP-date: seconds from "now" (60 s past the epoch)
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # already past
        ("inf", None),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_header_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    assert retry_after(headers, now=lambda: 60.0) == seconds


def test_retry_budget_exhausted_raises_throttled_naming_the_environment(
    fake: FakeDataverse, credential: FakeCredential, sleeps: Sleeps
) -> None:
    client = make_client(fake, credential, sleeps, max_retry_wait=10)
    fake.inject("throttle", count=10, retry_after=4)
    with pytest.raises(Throttled) as raised:
        client.get_application_user(APP)
    assert sleeps == [4.0, 4.0]  # a third wait would pass the 10 s budget
    assert fake.count("GET") == 3
    error = raised.value
    assert (error.status, error.code, error.environment, error.waited) == (429, "0x80072322", fake.origin, 8.0)
    assert fake.origin in str(error) and "10 s retry budget" in str(error)


def test_throttled_post_is_resent_after_retry_after(
    fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps
) -> None:
    fake.inject("throttle", method="POST", retry_after=2)
    user_id = client.create_user(APP, fake.root_id)
    assert sleeps == [2.0]
    assert fake.count("POST") == 2
    assert list(fake.users) == [user_id]


def test_get_backs_off_on_502_and_connection_errors(
    fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps
) -> None:
    fake.inject("bad_gateway", count=2)
    fake.inject("drop")
    assert client.get_application_user(APP) is None
    assert fake.count("GET") == 4
    assert len(sleeps) == 3
    for attempt, wait in enumerate(sleeps):  # exponential with jitter: in [ceiling/2, ceiling], ceiling doubling
        ceiling = 0.5 * 2**attempt
        assert ceiling / 2 <= wait <= ceiling


def test_get_gives_up_after_bounded_backoff(fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps) -> None:
    fake.inject("bad_gateway", count=50)
    with pytest.raises(ServerError) as raised:
        client.get_application_user(APP)
    assert fake.count("GET") == 5
    assert len(sleeps) == 4
    assert raised.value.status == 502


@pytest.mark.parametrize("kind", ["bad_gateway", "lost_response", "drop"])
def test_post_is_never_replayed(fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps, kind: str) -> None:
    fake.inject(kind, method="POST")
    with pytest.raises(ConnectionFailed) as raised:
        client.create_user(APP, fake.root_id)
    assert raised.value.maybe_committed is True
    assert "may have been processed" in str(raised.value)
    assert fake.count("POST") == 1
    assert sleeps == []
    assert len(fake.users) == (1 if kind == "lost_response" else 0)


def test_post_is_resent_when_the_connection_never_opened(
    fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps
) -> None:
    fake.inject("refused", method="POST")
    client.create_user(APP, fake.root_id)
    assert fake.count("POST") == 2
    assert len(sleeps) == 1
    assert len(fake.users) == 1


@pytest.mark.parametrize("kind", ["bad_gateway", "lost_response"])
def test_patch_of_an_absolute_value_is_retried(fake: FakeDataverse, client: DataverseClient, kind: str) -> None:
    user_id = fake.add_user(APP)
    fake.inject(kind, method="PATCH")
    client.set_disabled(user_id, True)
    assert fake.count("PATCH") == 2
    assert fake.users[user_id]["isdisabled"] is True


def test_delete_ref_answered_404_after_a_lost_response_is_done(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    fake.inject("lost_response", method="DELETE")
    client.change_roles(user_id, remove=[fake.role_id("Basic User")])
    assert [r.status for r in fake.requests] == [204, 404]
    assert fake.users[user_id]["roles"] == set()


def test_delete_ref_404_on_first_attempt_is_not_found(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP)
    with pytest.raises(NotFound):
        client.change_roles(user_id, remove=[fake.role_id("Basic User")])
    assert fake.count("DELETE") == 1


# -- role changes ---------------------------------------------------------------------------------------------


def test_one_role_change_is_one_plain_request(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    client.change_roles(user_id)
    assert fake.requests == []
    client.change_roles(user_id, add=[fake.role_id("Environment Maker")])
    (post,) = fake.requests
    assert post.method == "POST"
    assert post.path == f"systemusers({user_id})/systemuserroles_association/$ref"
    assert post.json() == {"@odata.id": f"{fake.origin}{API}roles({fake.role_id('Environment Maker')})"}
    client.change_roles(user_id, remove=[fake.role_id("Basic User")])
    delete = fake.requests[-1]
    assert (delete.method, delete.path, delete.body) == (
        "DELETE",
        f"systemusers({user_id})/systemuserroles_association({fake.role_id('Basic User')})/$ref",
        None,
    )
    assert fake.role_names(user_id) == {"Environment Maker"}
    with pytest.raises(ValueError, match="both"):
        client.change_roles(user_id, add=[fake.role_id("Basic User")], remove=[fake.role_id("Basic User")])


def test_several_role_changes_are_one_batch_change_set(fake: FakeDataverse, client: DataverseClient) -> None:
    user_id = fake.add_user(APP, roles=("Basic User",))
    add = sorted([fake.role_id("Environment Maker"), fake.role_id("ADP Identity Manager")])
    remove = fake.role_id("Basic User")
    client.change_roles(user_id, add=add, remove=[remove])
    (batch,) = fake.requests
    assert (batch.method, batch.path) == ("POST", "$batch")
    content_type = batch.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=batch_")
    boundary = content_type.split("boundary=")[1]
    raw = (batch.body or b"").decode()
    assert raw.startswith(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_")
    assert raw.endswith(f"--{boundary}--\r\n")
    assert "\r\n" in raw and "\n" not in raw.replace("\r\n", "")  # CRLF line ends only
    (inner,) = fake.batches
    assert [(r.content_id, r.method, r.path) for r in inner] == [
        ("1", "POST", f"{API}systemusers({user_id})/systemuserroles_association/$ref"),
        ("2", "POST", f"{API}systemusers({user_id})/systemuserroles_association/$ref"),
        ("3", "DELETE", f"{API}systemusers({user_id})/systemuserroles_association({remove})/$ref"),
    ]
    assert [r.body for r in inner[:2]] == [f'{{"@odata.id":"{fake.origin}{API}roles({role})"}}' for role in add]
    assert inner[0].headers == {"Content-Type": "application/json"}
    assert inner[2].body == ""
    assert fake.role_names(user_id) == {"Environment Maker", "ADP Identity Manager"}


@pytest.mark.parametrize("content_id", [True, False])
def test_failed_change_set_raises_the_typed_error_of_the_failed_part(
    fake: FakeDataverse, client: DataverseClient, content_id: bool
) -> None:
    fake.include_content_id_in_errors = content_id
    user_id = fake.add_user(APP, roles=("Environment Maker",))
    add = sorted([fake.role_id("Environment Maker"), fake.role_id("Basic User")])
    with pytest.raises(Duplicate) as raised:
        client.change_roles(user_id, add=add)
    error = raised.value
    assert (error.status, error.code, error.method) == (412, "0x80040237", "POST")
    if content_id:
        assert error.url == f"{fake.origin}{API}systemusers({user_id})/systemuserroles_association/$ref"
    else:
        assert error.url == f"{fake.origin}{API}$batch"
    assert fake.role_names(user_id) == {"Environment Maker"}  # the change set was rolled back
    assert fake.count() == 1


def test_lost_batch_response_is_maybe_committed(fake: FakeDataverse, client: DataverseClient, sleeps: Sleeps) -> None:
    user_id = fake.add_user(APP)
    fake.inject("lost_response", path_contains="$batch")
    with pytest.raises(ConnectionFailed) as raised:
        client.change_roles(user_id, add=[fake.role_id("Basic User"), fake.role_id("Environment Maker")])
    assert raised.value.maybe_committed is True
    assert fake.count() == 1 and sleeps == []


# -- tokens ---------------------------------------------------------------------------------------------------


def test_one_token_request_across_many_calls(
    fake: FakeDataverse, client: DataverseClient, credential: FakeCredential
) -> None:
    for _ in range(5):
        client.get_application_user(APP)
    client.catalog()
    client.create_user(OTHER_APP, fake.root_id)
    assert credential.calls == 1
    assert credential.scopes == [(f"{fake.origin}/.default",)]


def test_one_token_request_across_threads_and_clients(
    fake: FakeDataverse, credential: FakeCredential, sleeps: Sleeps
) -> None:
    clients = [make_client(fake, credential, sleeps) for _ in range(4)]
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            clients[i % 4].get_application_user(APP)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    # 24 reads (of a user that does not exist: no catalog needed); lookups that arrive together at one client
    # share a GET, so 12 (3 per client) to 24
    assert 12 <= fake.count("GET") <= 24
    assert credential.calls == 1


def test_token_near_expiry_is_fetched_again(fake: FakeDataverse, sleeps: Sleeps) -> None:
    short = FakeCredential(expires_in=200)  # inside the 5-minute refresh margin from the start
    client = make_client(fake, short, sleeps)
    for _ in range(3):
        client.get_application_user(APP)
    assert short.calls == 3


def test_tokens_are_per_scope(sleeps: Sleeps) -> None:
    one, two = standard_environment(), standard_environment()
    shared = FakeCredential()
    make_client(one, shared, sleeps).get_application_user(APP)
    make_client(two, shared, sleeps).get_application_user(APP)
    make_client(one, shared, sleeps).get_application_user(APP)
    assert sorted(shared.scopes) == sorted([(f"{one.origin}/.default",), (f"{two.origin}/.default",)])


def test_token_cache_refreshes_five_minutes_before_expiry() -> None:
    now = [1_000_000.0]
    cache = _identity.TokenCache(clock=lambda: now[0])
    fetched: list[str] = []

    class Token:
        def __init__(self, value: str) -> None:
            self.token, self.expires_on = value, int(now[0]) + 3600

    def fetch() -> Token:
        fetched.append(f"t{len(fetched)}")
        return Token(fetched[-1])

    assert cache.token("k", fetch) == "t0"
    now[0] += 3600 - 301
    assert cache.token("k", fetch) == "t0"
    now[0] += 2
    assert cache.token("k", fetch) == "t1"
    cache.invalidate("k", "stale")  # a token other than the cached one: kept
    assert cache.token("k", fetch) == "t1"
    cache.invalidate("k", "t1")
    assert cache.token("k", fetch) == "t2"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("https://127.0.0.1:8443", {"disable_instance_discovery": True}),
        ("https://login.microsoftonline.com", {}),
        ("", {}),
    ],
)
def test_default_credential_is_built_lazily_and_pinned_to_private_authorities(
    monkeypatch: pytest.MonkeyPatch, fake: FakeDataverse, sleeps: Sleeps, authority: str, expected: dict[str, Any]
) -> None:
    built: list[dict[str, Any]] = []

    class Recorder(FakeCredential):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            built.append(kwargs)

    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Recorder)
    monkeypatch.setenv("AZURE_TENANT_ID", str(uuid.uuid4()))  # a fresh identity: nothing cached yet
    monkeypatch.setenv("AZURE_CLIENT_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "WorkloadIdentityCredential")
    if authority:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
    else:
        monkeypatch.delenv("AZURE_AUTHORITY_HOST", raising=False)
    client = make_client(fake, None, sleeps)
    assert built == []  # lazily: nothing until a token is needed
    client.get_application_user(APP)
    make_client(fake, None, sleeps).get_application_user(APP)
    assert built == [expected]  # one credential (and one token) for both clients
