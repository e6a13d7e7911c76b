"""A strict, in-memory Dataverse Web API mounted as a requests transport adapter, and a counting credential.

Strict on purpose: only the requests the client is documented to send are routed (method + path + the exact
query options); anything else fails the test on the spot (``pytest.fail`` raises a BaseException, so no
``except Exception`` in the client can swallow it). Every request that reaches the adapter is recorded so tests
assert exact counts and bodies. Nothing leaves the process: the adapter is mounted for every URL prefix.

The ``$batch`` parser here is written on the standard library's ``email`` package, independently of the
client's own multipart code, so a wire-format bug cannot hide by being symmetric.
"""

from __future__ import annotations

import copy
import email
import email.policy
import http.client
import io
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import urllib3.exceptions
from azure.core.credentials import AccessToken
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

API = "/api/data/v9.2/"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# The query options as docs/reference/dataverse-web-api.md and the issue write them (literal on purpose). Roles
# are expanded, the business unit is NOT (it comes from _businessunitid_value and the catalog: docs/adr/0008).
USER_SELECT = "systemuserid,applicationid,fullname,isdisabled,_businessunitid_value,deletedstate"
USER_EXPAND = "systemuserroles_association($select=roleid,name,_businessunitid_value)"
BU_SELECT = "businessunitid,name,_parentbusinessunitid_value"
ROLE_SELECT = "roleid,name,_businessunitid_value,_parentrootroleid_value"

DUPLICATE = "0x80040237"
THROTTLE_CODE = "0x80072322"


class FakeCredential:
    """A TokenCredential that hands out one fixed token and counts (thread-safely) how often it was asked."""

    def __init__(self, token: str | None = None, *, expires_in: int = 3600) -> None:
        self.token = token or f"fake-token-{uuid.uuid4().hex}"
        self.expires_in = expires_in
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.scopes)

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes.append(scopes)
        time.sleep(0.001)  # widen the window in which concurrent callers could race
        return AccessToken(self.token, int(time.time()) + self.expires_in)


class FakeClock:
    """A monotonic clock that moves only when a test advances it, or when ``sleep`` is asked to wait (thread-safe).

    ``sleeps`` records every wait asked of ``sleep``, which moves the clock by it instead of sleeping.
    """

    def __init__(self, start: float = 10_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds


@dataclass
class Recorded:
    method: str
    url: str
    path: str  # after /api/data/v9.2/
    query: dict[str, str]
    headers: CaseInsensitiveDict[str]
    body: bytes | None
    fault: str | None = None
    status: int | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


@dataclass
class InnerRequest:
    content_id: str | None
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Any = None  # a file-like object read as the raw body (instead of ``body``), e.g. one that trickles


@dataclass
class _Fault:
    kind: str
    method: str | None
    path_contains: str | None
    remaining: int
    retry_after: str | None
    reply: Reply | None = None
    respond: Callable[[Recorded], Reply] | None = None


class WebApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.reply = Reply(status, {"error": {"code": code, "message": message}})


def _connection_error(url: str, *, never_sent: bool) -> requests.ConnectionError:
    if never_sent:
        reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
        return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, reason))  # type: ignore[arg-type]
    cause = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


class FakeDataverse(BaseAdapter):
    """One Dataverse environment: business units, per-unit role copies, application users."""

    def __init__(self, origin: str | None = None, *, token: str | None = None, page_size: int | None = None) -> None:
        super().__init__()
        self.origin = origin or f"https://org{uuid.uuid4().hex[:12]}.crm.example"
        self.token = token  # when set, every request must carry exactly this bearer token
        self.page_size = page_size  # server-side cap below the client's odata.maxpagesize, to force paging
        self.business_units: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.applications: dict[str, str] = {}  # application id -> display name (its service principal exists)
        self.requests: list[Recorded] = []
        self.batches: list[list[InnerRequest]] = []  # per $batch: its inner requests, change sets flattened
        self.change_sets: list[list[InnerRequest]] = []  # every change set of every $batch, in order
        self.honour_continue_on_error = True  # False: the batch stops at the first failure, as without the header
        self.include_content_id_in_errors = True
        self.hooks: list[Callable[[Recorded], None]] = []  # run before a request is routed
        # run before a request takes the fake's lock, so a hook may block without stopping concurrent requests
        self.unlocked_hooks: list[Callable[[Recorded], None]] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._etag = itertools.count(1000)

    # -- arranging ---------------------------------------------------------------------------------------------

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", self)
        session.mount("http://", self)
        return session

    def add_business_unit(self, name: str, parent: str | None = None) -> str:
        unit_id = str(uuid.uuid4())
        parent_id = self.business_unit_id(parent) if parent else None
        self.business_units[unit_id] = {"name": name, "parent": parent_id}
        return unit_id

    def add_roles(self, *names: str) -> None:
        """Every business unit gets its own copy of each role; the copies share the root role's id."""
        root = self.root_id
        for name in names:
            root_role = str(uuid.uuid4())
            for unit_id in self.business_units:
                role_id = root_role if unit_id == root else str(uuid.uuid4())
                self.roles[role_id] = {"name": name, "bu": unit_id, "root": root_role}

    def add_application(self, application_id: str, name: str) -> None:
        self.applications[application_id] = name

    def add_user(
        self,
        application_id: str,
        *,
        business_unit: str | None = None,
        roles: tuple[str, ...] = (),
        disabled: bool = False,
    ) -> str:
        unit_id = self.business_unit_id(business_unit) if business_unit else self.root_id
        user_id = str(uuid.uuid4())
        self.users[user_id] = {
            "applicationid": application_id,
            "fullname": self.applications.get(application_id, "app"),
            "isdisabled": disabled,
            "bu": unit_id,
            "roles": {self.role_id(r, business_unit) for r in roles},
            "deleted": 0,
        }
        return user_id

    @property
    def root_id(self) -> str:
        return next(i for i, u in self.business_units.items() if u["parent"] is None)

    def business_unit_id(self, name: str | None) -> str:
        if name is None:
            return self.root_id
        return next(i for i, u in self.business_units.items() if u["name"] == name)

    def role_id(self, name: str, business_unit: str | None = None) -> str:
        unit_id = self.business_unit_id(business_unit)
        return next(i for i, r in self.roles.items() if r["name"] == name and r["bu"] == unit_id)

    def user_by_app(self, application_id: str) -> tuple[str, dict[str, Any]] | None:
        """The live (not soft-deleted) user of an application."""
        found = [(i, u) for i, u in self.users.items() if u["applicationid"] == application_id and not u["deleted"]]
        assert len(found) <= 1, f"{len(found)} users for one application"
        return found[0] if found else None

    def role_names(self, user_id: str) -> set[str]:
        return {self.roles[r]["name"] for r in self.users[user_id]["roles"]}

    def inject(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        count: int = 1,
        retry_after: str | int | None = None,
        reply: Reply | None = None,
        respond: Callable[[Recorded], Reply] | None = None,
    ) -> None:
        """The next ``count`` matching requests get the fault.

        Kinds: ``throttle`` (429), ``unavailable`` (503), ``bad_gateway`` (502), ``server_error`` (500),
        ``unauthorized`` (401), ``reply`` (the given Reply), ``respond`` (the Reply ``respond`` builds from the
        recorded request), ``refused`` (connection never opened), ``drop`` (connection closed before processing),
        ``lost_response`` (processed and committed, then the connection closes without a response).
        """
        after = None if retry_after is None else str(retry_after)
        self._faults.append(_Fault(kind, method, path_contains, count, after, reply, respond))

    # -- asserting ---------------------------------------------------------------------------------------------

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
        )

    @property
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_write]

    # -- transport ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        pass

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **_kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin != self.origin:
            pytest.fail(f"request to an unexpected origin: {request.method} {url}")
        if not parts.path.startswith(API):
            pytest.fail(f"request outside the Web API: {request.method} {url}")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        recorded = Recorded(
            method=request.method or "",
            url=url,
            path=parts.path[len(API) :],
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=CaseInsensitiveDict(request.headers),
            body=body,
        )
        for hook in self.unlocked_hooks:
            hook(recorded)
        with self._lock:
            self.requests.append(recorded)
            self._check_headers(recorded)
            for hook in self.hooks:
                hook(recorded)
            fault = self._take_fault(recorded)
            recorded.fault = fault.kind if fault else None
            if fault is not None and fault.kind in ("refused", "drop"):
                raise _connection_error(url, never_sent=fault.kind == "refused")
            if fault is not None and fault.kind == "respond" and fault.respond is not None:
                reply = fault.respond(recorded)
            elif fault is not None and fault.kind != "lost_response":
                reply = self._fault_reply(fault)
            else:
                reply = self._route(recorded)
            recorded.status = reply.status
            if fault is not None and fault.kind == "lost_response":
                raise _connection_error(url, never_sent=False)
        return self._response(request, reply)

    def _check_headers(self, r: Recorded) -> None:
        expected = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        expected["If-None-Match"] = "null"
        for name, value in expected.items():
            if r.headers.get(name) != value:
                pytest.fail(f"{r.method} {r.path}: header {name} is {r.headers.get(name)!r}, expected {value!r}")
        auth = r.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (self.token is not None and auth != f"Bearer {self.token}"):
            pytest.fail(f"{r.method} {r.path}: missing or wrong bearer token")
        if r.body and not r.headers.get("Content-Type"):
            pytest.fail(f"{r.method} {r.path}: a body without Content-Type")

    def _take_fault(self, r: Recorded) -> _Fault | None:
        for fault in self._faults:
            if (
                fault.remaining > 0
                and (fault.method is None or fault.method == r.method)
                and (fault.path_contains is None or fault.path_contains in r.path)
            ):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_reply(fault: _Fault) -> Reply:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.kind == "reply" and fault.reply is not None:
            return fault.reply
        if fault.kind == "throttle":
            body = {"error": {"code": THROTTLE_CODE, "message": "Number of requests exceeded the limit of 6000."}}
            return Reply(429, body, headers)
        if fault.kind == "unavailable":
            return Reply(503, None, headers)
        if fault.kind == "bad_gateway":
            return Reply(502, "<html>Bad Gateway</html>")
        if fault.kind == "server_error":
            return Reply(500, {"error": {"code": "0x80040216", "message": "An unexpected error occurred."}})
        if fault.kind == "unauthorized":
            return Reply(401, None, {"WWW-Authenticate": "Bearer authorization_uri=https://login.example/x"})
        raise AssertionError(f"unknown fault {fault.kind}")

    def _response(self, request: requests.PreparedRequest, reply: Reply) -> requests.Response:
        response = requests.Response()
        response.status_code = reply.status
        response.reason = http.client.responses.get(reply.status, "")
        response.request = request
        response.url = request.url or ""
        headers = {"OData-Version": "4.0", **reply.headers}
        if isinstance(reply.body, bytes):
            response._content = reply.body
        elif isinstance(reply.body, str):
            response._content = reply.body.encode()
            headers.setdefault("Content-Type", "text/html")
        elif reply.body is not None:
            response._content = json.dumps(reply.body).encode()
            headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
        else:
            response._content = b""
        # The body is served as a raw stream, as requests' own adapter does with stream=True: the client reads it
        # (and decompresses it) itself, so ``_content`` is left unread.
        stream = reply.stream if reply.stream is not None else io.BytesIO(response._content or b"")
        response.raw = urllib3.HTTPResponse(
            body=stream, headers=headers, status=reply.status, preload_content=False, decode_content=False
        )
        response._content = False
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = "utf-8"
        return response

    # -- routing -----------------------------------------------------------------------------------------------

    def _route(self, r: Recorded) -> Reply:
        try:
            return self._dispatch(r.method, r.path, r.query, r.headers, r.body or b"", raw_url=r.url)
        except WebApiError as exc:
            return exc.reply

    def _dispatch(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        *,
        raw_url: str = "",
        in_change_set: bool = False,
    ) -> Reply:
        def expect_query(*allowed: dict[str, str]) -> None:
            if dict(query) not in [dict(a) for a in allowed]:
                pytest.fail(f"{method} {path}: unexpected query {dict(query)}")

        if method == "GET" and path in ("businessunits", "roles") and not in_change_set:
            select = BU_SELECT if path == "businessunits" else ROLE_SELECT
            if "$skiptoken" in query:
                expect_query({"$select": select, "$skiptoken": query["$skiptoken"]})
            else:
                expect_query({"$select": select})
            return self._page(path, query, headers, raw_url)
        if method == "GET" and path == "systemusers" and not in_change_set:
            filter_ = query.get("$filter", "")
            if "$skiptoken" in query:
                expect_query(
                    {
                        "$filter": filter_,
                        "$select": USER_SELECT,
                        "$expand": USER_EXPAND,
                        "$skiptoken": query["$skiptoken"],
                    }
                )
            else:
                expect_query({"$filter": filter_, "$select": USER_SELECT, "$expand": USER_EXPAND})
            if filter_ == "applicationid ne null":  # the environment snapshot: paged like the catalog
                return self._page("systemusers", query, headers, raw_url)
            apps = filter_.split(" or ")
            if not filter_ or not all(re.fullmatch(rf"applicationid eq {GUID}", a) for a in apps):
                pytest.fail(f"GET systemusers: unexpected $filter {filter_!r}")
            wanted = {a.removeprefix("applicationid eq ") for a in apps}
            rows = [self._user_row(i, u) for i, u in self.users.items() if u["applicationid"] in wanted]
            return Reply(200, {"@odata.context": self._context("systemusers"), "value": rows})
        if method == "GET" and (m := re.fullmatch(rf"systemusers\(({GUID})\)", path)) and not in_change_set:
            expect_query({"$select": USER_SELECT, "$expand": USER_EXPAND})
            user_id = m.group(1)
            if user_id not in self.users:
                raise WebApiError(404, "0x80040217", f"systemuser With Id = {user_id} Does Not Exist")
            return Reply(
                200,
                {
                    "@odata.context": self._context("systemusers/$entity"),
                    **self._user_row(user_id, self.users[user_id]),
                },
            )
        if method == "POST" and path == "systemusers" and in_change_set:
            expect_query({})
            return self._create_user(headers, body, in_change_set=True)
        if method == "POST" and path == "systemusers":
            expect_query({"$select": "systemuserid"})
            return self._create_user(headers, body)
        if method == "PATCH" and (m := re.fullmatch(rf"systemusers\(({GUID})\)", path)):
            expect_query({})
            return self._update_user(m.group(1), headers, body)
        if method == "POST" and (
            m := re.fullmatch(rf"systemusers\(({GUID})\)/systemuserroles_association/\$ref", path)
        ):
            expect_query({})
            return self._associate(m.group(1), headers, body)
        if method == "DELETE" and (
            m := re.fullmatch(rf"systemusers\(({GUID})\)/systemuserroles_association\(({GUID})\)/\$ref", path)
        ):
            expect_query({})
            if body:
                pytest.fail("DELETE $ref with a body")
            return self._disassociate(m.group(1), m.group(2))
        if method == "DELETE" and (m := re.fullmatch(rf"systemusers\(({GUID})\)", path)) and not in_change_set:
            expect_query({})
            return self._delete_user(m.group(1))
        if method == "POST" and path == "$batch" and not in_change_set:
            expect_query({})
            return self._batch(headers, body)
        pytest.fail(f"unexpected request: {method} {path} {dict(query)}")

    def _context(self, what: str) -> str:
        return f"{self.origin}{API}$metadata#{what}"

    def _page(self, table: str, query: Mapping[str, str], headers: Mapping[str, str], raw_url: str) -> Reply:
        prefer = headers.get("Prefer", "")
        match = re.fullmatch(r"odata\.maxpagesize=(\d+)", prefer)
        if match is None:
            pytest.fail(f"GET {table} without Prefer: odata.maxpagesize (got {prefer!r})")
        size = min(int(match.group(1)), self.page_size or 5000)
        if table == "systemusers":
            rows = [self._user_row(i, u) for i, u in self.users.items()]
        elif table == "businessunits":
            rows = [
                {
                    "@odata.etag": f'W/"{next(self._etag)}"',
                    "businessunitid": i,
                    "name": u["name"],
                    "_parentbusinessunitid_value": u["parent"],
                }
                for i, u in self.business_units.items()
            ]
        else:
            rows = [
                {
                    "@odata.etag": f'W/"{next(self._etag)}"',
                    "roleid": i,
                    "name": r["name"],
                    "_businessunitid_value": r["bu"],
                    "_parentrootroleid_value": r["root"],
                }
                for i, r in self.roles.items()
            ]
        page = 1
        if "$skiptoken" in query:
            cookie = re.search(r'pagenumber="(\d+)"', query["$skiptoken"])
            assert cookie is not None, query["$skiptoken"]
            page = int(cookie.group(1))
            # the client must send the nextLink exactly as it was given
            assert raw_url == self._next_link(table, page), raw_url
        chunk = rows[(page - 1) * size : page * size]
        body: dict[str, Any] = {"@odata.context": self._context(table), "value": chunk}
        if page * size < len(rows):
            body["@odata.nextLink"] = self._next_link(table, page + 1)
        return Reply(200, body, {"Preference-Applied": f"odata.maxpagesize={size}"})

    def _next_link(self, table: str, page: int) -> str:
        cookie = (
            f"%3Ccookie%20pagenumber=%22{page}%22%20pagingcookie=%22%253ccookie%2520page%253d%2522{page - 1}"
            "%2522%253e%22%20istracking=%22False%22%20/%3E"
        )
        if table == "systemusers":
            options = f"$filter=applicationid%20ne%20null&$select={USER_SELECT}&$expand={USER_EXPAND}"
            return f"{self.origin}{API}systemusers?{options}&$skiptoken={cookie}"
        select = BU_SELECT if table == "businessunits" else ROLE_SELECT
        return f"{self.origin}{API}{table}?$select={select}&$skiptoken={cookie}"

    def _user_row(self, user_id: str, user: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "@odata.etag": f'W/"{next(self._etag)}"',
            "systemuserid": user_id,
            "applicationid": user["applicationid"],
            "fullname": user["fullname"],
            "isdisabled": user["isdisabled"],
            "_businessunitid_value": user["bu"],
            "deletedstate": user.get("deleted", 0),
            "systemuserroles_association": [
                {
                    "@odata.etag": f'W/"{next(self._etag)}"',
                    "roleid": role_id,
                    "name": self.roles[role_id]["name"],
                    "_businessunitid_value": self.roles[role_id]["bu"],
                }
                for role_id in sorted(user["roles"])
            ],
        }

    @staticmethod
    def _json_body(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        if not headers.get("Content-Type", "").startswith("application/json"):
            pytest.fail(f"JSON body sent as {headers.get('Content-Type')!r}")
        value = json.loads(body)
        assert isinstance(value, dict)
        return value

    def _create_user(self, headers: Mapping[str, str], body: bytes, *, in_change_set: bool = False) -> Reply:
        # on its own the client asks for the row back; inside a change set it needs the OData-EntityId for $n
        expected_prefer = None if in_change_set else "return=representation"
        if headers.get("Prefer") != expected_prefer:
            pytest.fail(f"POST systemusers with Prefer {headers.get('Prefer')!r}, expected {expected_prefer!r}")
        values = self._json_body(headers, body)
        if set(values) != {"applicationid", "businessunitid@odata.bind"}:
            pytest.fail(f"POST systemusers with unexpected columns {sorted(values)}")
        app = values["applicationid"]
        unit = re.fullmatch(rf"/businessunits\(({GUID})\)", values["businessunitid@odata.bind"])
        if unit is None or unit.group(1) not in self.business_units:
            raise WebApiError(400, "0x80040203", "businessunitid@odata.bind does not name a business unit")
        if app not in self.applications:
            raise WebApiError(400, "0x80040203", f"applicationid {app} has no service principal in this tenant")
        if any(u["applicationid"] == app for u in self.users.values()):  # live, or soft-deleted and not purged
            raise WebApiError(412, DUPLICATE, "A record with matching key values already exists.")
        user_id = str(uuid.uuid4())
        self.users[user_id] = {
            "applicationid": app,
            "fullname": self.applications[app],
            "isdisabled": False,
            "bu": unit.group(1),
            "roles": set(),
            "deleted": 0,
        }
        entity = f"{self.origin}{API}systemusers({user_id})"
        if in_change_set:
            return Reply(204, None, {"OData-EntityId": entity})
        return Reply(
            201,
            {"@odata.context": self._context("systemusers(systemuserid)/$entity"), "systemuserid": user_id},
            {"OData-EntityId": f"{self.origin}{API}systemusers({user_id})"},
        )

    def _user(self, user_id: str) -> dict[str, Any]:
        if user_id not in self.users:
            raise WebApiError(404, "0x80040217", f"systemuser With Id = {user_id} Does Not Exist")
        return self.users[user_id]

    def _update_user(self, user_id: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if headers.get("If-Match") != "*":
            pytest.fail("PATCH systemusers without If-Match: * (it could upsert)")
        values = self._json_body(headers, body)
        user = self._user(user_id)
        if set(values) == {"isdisabled"} and isinstance(values["isdisabled"], bool):
            user["isdisabled"] = values["isdisabled"]
        elif set(values) == {"businessunitid@odata.bind"}:
            unit = re.fullmatch(rf"/businessunits\(({GUID})\)", values["businessunitid@odata.bind"])
            if unit is None or unit.group(1) not in self.business_units:
                raise WebApiError(400, "0x80040203", "no such business unit")
            if unit.group(1) != user["bu"]:
                user["bu"] = unit.group(1)
                user["roles"] = set()  # DoNotRemoveRolesOnChangeBusinessUnit = false
        else:
            pytest.fail(f"PATCH systemusers with unexpected columns {values}")
        return Reply(204)

    def _associate(self, user_id: str, headers: Mapping[str, str], body: bytes) -> Reply:
        values = self._json_body(headers, body)
        match = re.fullmatch(rf"{re.escape(self.origin + API)}roles\(({GUID})\)", values.get("@odata.id", ""))
        if match is None or set(values) != {"@odata.id"}:
            pytest.fail(f"associate with unexpected body {values}")
        user = self._user(user_id)
        role_id = match.group(1)
        if role_id not in self.roles:
            raise WebApiError(404, "0x80040217", f"role With Id = {role_id} Does Not Exist")
        if user["isdisabled"]:
            raise WebApiError(400, "0x80040225", f"The user with SystemUserId={user_id} is disabled")
        if self.roles[role_id]["bu"] != user["bu"]:
            raise WebApiError(400, "0x80040217", "The role is not in the user's business unit")
        if role_id in user["roles"]:
            raise WebApiError(412, DUPLICATE, "A record with matching key values already exists.")
        user["roles"].add(role_id)
        return Reply(204)

    def _delete_user(self, user_id: str) -> Reply:
        user = self._user(user_id)
        if not user["isdisabled"]:
            raise WebApiError(400, "0x80040203", f"The user with SystemUserId={user_id} is enabled")
        if user["deleted"]:
            del self.users[user_id]
        else:
            user["deleted"], user["roles"] = 1, set()
        return Reply(204)

    def _disassociate(self, user_id: str, role_id: str) -> Reply:
        user = self._user(user_id)
        if role_id not in user["roles"]:
            raise WebApiError(404, "0x80040217", "The association does not exist")
        user["roles"].discard(role_id)
        return Reply(204)

    # -- $batch ------------------------------------------------------------------------------------------------

    def _batch(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Change sets (atomic, ``$n`` references) and single requests, in order; ``odata.continue-on-error``."""
        content_type = headers.get("Content-Type", "")
        if not re.fullmatch(r'multipart/mixed;\s*boundary="?batch_[\w-]+"?', content_type):
            pytest.fail(f"$batch with Content-Type {content_type!r}")
        message = email.message_from_bytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.HTTP
        )
        assert message.is_multipart(), "the $batch body is not multipart"
        continue_on_error = self.honour_continue_on_error and headers.get("Prefer") == "odata.continue-on-error"
        items: list[list[InnerRequest] | InnerRequest] = []
        for part in message.iter_parts():
            if part.get_content_type() == "multipart/mixed":
                if not (part.get_boundary() or "").startswith("changeset_"):
                    pytest.fail("a nested $batch part is not a change set")
                inner = [self._part(p) for p in part.iter_parts()]
                if any(r.method == "GET" or r.content_id is None for r in inner):
                    pytest.fail("a change set request without Content-ID, or a GET inside a change set")
                items.append(inner)
            else:
                request = self._part(part)
                if request.method != "GET":
                    pytest.fail(f"{request.method} outside a change set: the client writes only in change sets")
                items.append(request)
        ids = [r.content_id for i in items if isinstance(i, list) for r in i]
        if len(ids) != len(set(ids)):
            pytest.fail(f"Content-ID values repeat within one $batch: {ids}")
        self.batches.append([r for i in items for r in (i if isinstance(i, list) else [i])])
        answers: list[tuple[str, Any]] = []
        status = 200
        for item in items:
            if isinstance(item, list):
                self.change_sets.append(item)
                outcome = self._change_set(item)
                answers.append(outcome)
                failed = outcome[0] == "failed"
                failure_status = outcome[1][1].status if failed else 0
            else:
                reply = self._route_inner(item, {})
                answers.append(("single", (item.content_id, reply)))
                failure_status = reply.status if reply.status >= 400 else 0
            if failure_status and not continue_on_error:
                status = failure_status
                break
        return self._batch_reply(status, answers)

    def _part(self, part: Any) -> InnerRequest:
        if part.get_content_type() != "application/http" or part.get("Content-Transfer-Encoding") != "binary":
            pytest.fail("batch part is not application/http with Content-Transfer-Encoding: binary")
        return self._inner_request(part.get("Content-ID"), part.get_payload())

    def _route_inner(self, request: InnerRequest, references: Mapping[str, str]) -> Reply:
        path = request.path
        if path.startswith("$"):
            ref, _, rest = path[1:].partition("/")
            if ref not in references:
                return Reply(400, {"error": {"code": "0x80060888", "message": f"Content-ID Reference: '${ref}'"}})
            path = f"{API}systemusers({references[ref]})" + (f"/{rest}" if rest else "")
        if not path.startswith(API):
            pytest.fail(f"inner request path {request.path!r} is not /api/data/v9.2/... nor $n")
        relative, _, raw_query = path[len(API) :].partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        try:
            return self._dispatch(
                request.method,
                relative,
                query,
                request.headers,
                request.body.encode(),
                in_change_set=request.method != "GET",
            )
        except WebApiError as exc:
            return exc.reply

    def _change_set(self, change_set: list[InnerRequest]) -> tuple[str, Any]:
        snapshot = copy.deepcopy(self.users)
        references: dict[str, str] = {}
        replies: list[tuple[str | None, Reply]] = []
        for request in change_set:
            reply = self._route_inner(request, references)
            if reply.status >= 400:
                self.users = snapshot  # a change set is atomic
                return ("failed", (request.content_id, reply))
            entity = reply.headers.get("OData-EntityId", "")
            created = re.search(rf"systemusers\(({GUID})\)$", entity)
            if request.content_id is not None and created is not None:
                references[request.content_id] = created.group(1)
            replies.append((request.content_id, reply))
        return ("ok", replies)

    @staticmethod
    def _inner_request(content_id: str | None, payload: Any) -> InnerRequest:
        text = payload if isinstance(payload, str) else payload.decode()
        text = text.replace("\r\n", "\n")
        head, _, body = text.partition("\n\n")
        lines = head.split("\n")
        match = re.fullmatch(r"(GET|POST|PATCH|DELETE|PUT) (\S+) HTTP/1\.1", lines[0])
        if match is None:
            pytest.fail(f"bad inner request line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        return InnerRequest(content_id, match.group(1), match.group(2), headers, body.strip("\n"))

    def _http_part(self, content_id: str | None, reply: Reply, *, failure: bool = False) -> list[str]:
        lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if content_id is not None and (self.include_content_id_in_errors or not failure):
            lines.append(f"Content-ID: {content_id}")
        lines += ["", f"HTTP/1.1 {reply.status} {http.client.responses[reply.status]}", "OData-Version: 4.0"]
        lines += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.body is not None:
            lines += ["Content-Type: application/json; odata.metadata=minimal", "", json.dumps(reply.body)]
        else:
            lines += ["", ""]
        return lines

    def _batch_reply(self, status: int, answers: list[tuple[str, Any]]) -> Reply:
        batch = f"batchresponse_{uuid.uuid4()}"
        lines: list[str] = []
        for kind, value in answers:
            if kind == "ok":
                change_set = f"changesetresponse_{uuid.uuid4()}"
                lines += [f"--{batch}", f"Content-Type: multipart/mixed; boundary={change_set}", ""]
                for content_id, reply in value:
                    lines += [f"--{change_set}", *self._http_part(content_id, reply)]
                lines += [f"--{change_set}--"]
            else:
                content_id, reply = value
                lines += [f"--{batch}", *self._http_part(content_id, reply, failure=kind == "failed")]
        lines += [f"--{batch}--", ""]
        return Reply(status, "\r\n".join(lines).encode(), {"Content-Type": f"multipart/mixed; boundary={batch}"})


def standard_environment(**kwargs: Any) -> FakeDataverse:
    """An ADP-shaped environment: a root unit and one child, four roles copied into both, two applications."""
    fake = FakeDataverse(**kwargs)
    fake.add_business_unit("defradev-dev")
    fake.add_business_unit("ffc-payments", parent="defradev-dev")
    fake.add_roles("Basic User", "System Administrator", "ADP Identity Manager", "Environment Maker")
    fake.add_application(APP, "ffc-pay-batch")
    fake.add_application(OTHER_APP, "ffc-claims")
    return fake


APP = "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
OTHER_APP = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
