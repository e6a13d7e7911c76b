"""The per-resource baseline of the fleet part: a dynamic provider that sends what Microsoft's Terraform provider sends.

Source: microsoft/terraform-provider-power-platform at commit 57ba091a (2026-08-21). Its application user is two
resource types, modelled here one for one (a Pulumi dynamic provider, run by the same provider host as
adp-identity's, one resource per Terraform resource):

* ``powerplatform_environment_application_user`` (``internal/services/application/resource_application_user.go``):
  one per application user; its business unit, and whether it is disabled;
* ``powerplatform_role_assignment`` (``internal/services/application/resource_role_assignment.go``): one per
  security role of a user, "resolved by name within the target business unit";

and the requests they send come from ``internal/services/application/api_application.go``. The same pattern is in
``internal/services/authorization/api_user.go`` (``powerplatform_user``): every client method first calls
``GetEnvironmentHostById`` (``getEnvironment``: ``GET {bapi}/providers/Microsoft.BusinessAppPlatform/scopes/admin/
environments/{id}``, also the environment client's ``GetEnvironment`` in ``internal/services/environment/
api_environment.go``), posts or deletes one ``systemuserroles_association/$ref`` per role, and re-reads the user
after each write. The rules, as :data:`PER_RESOURCE_RULES` lists them, give per user with N roles:
**create 7 + 9N** requests (9 + 9N when the user sits in the root business unit), **refresh 2 + 5N**, and a role
replaced **18**.

Where the emulator differs, and what stands in (said again in docs/benchmarks.md):

* The environment lookup is a BAPI request, not a Dataverse one, and the emulator serves no BAPI (nor
  ``organizations``): ``GET /api/data/v9.2/WhoAmI``, a real Dataverse read the emulator serves, stands for each
  lookup. In Dataverse these would not count towards its service protection limits (BAPI has its own), so the
  figures report lookups separately, and the ratios leave them in (they are requests the provider sends).
* ``CreateScopedApplicationUser`` also sends ``"accessmode": 4``; the emulator refuses that column on create, so it
  is left out; ``GetRootBusinessUnitId`` filters on ``parentbusinessunitid eq null``, which the emulator does not
  parse, so the lookup column ``_parentbusinessunitid_value`` stands in (same requests, same count).
* A user outside the root business unit is declared with its ``business_unit_id``, as a Terraform configuration
  would write it or take it from a data source; that lookup is not counted (in the baseline's favour).
* Terraform retries 429 (and 401, 408, 425, 5xx) after ``Retry-After``, or 10-20 s when absent, with no
  client-side pacing (``internal/api/client.go``, ``internal/api/request.go``). Here the retries are bounded
  (:data:`MAX_ATTEMPTS`), as every retry in this project is.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from providers._identity import bearer_token, refuse_token

TYPE_TOKEN = "pulumi-python:dynamic/bench:PerResource"
API = "/api/data/v9.2/"
ENVIRONMENT_LOOKUP = "WhoAmI"  # stands for the BAPI getEnvironment the Terraform provider sends before each call
APPLICATION_USER = "application_user"
ROLE_ASSIGNMENT = "role_assignment"
KINDS = (APPLICATION_USER, ROLE_ASSIGNMENT)
MAX_ATTEMPTS = 30  # per request; Terraform's loop is bounded only by the operation's timeout
RETRYABLE = frozenset({401, 408, 425, 429, 499, 500, 502, 503, 504})  # internal/api/client.go retryableStatusCodes

USER_SELECT = "applicationid,systemuserid,fullname,isdisabled,deletedstate,_businessunitid_value"
USER_EXPAND = "systemuserroles_association($select=roleid,name,_businessunitid_value)"
ROLE_SELECT = "roleid,name,_businessunitid_value"

PER_RESOURCE_RULES = (
    "one resource per application user (powerplatform_environment_application_user) and one per security role "
    "(powerplatform_role_assignment): internal/services/application/resource_application_user.go, "
    "resource_role_assignment.go",
    "an environment lookup before every Dataverse call (GetEnvironmentHostById -> getEnvironment, a BAPI GET; "
    "DataverseExists once more at the start of a create or a role operation): api_application.go; here GET WhoAmI "
    "stands for each lookup",
    "user create: DataverseExists, GetApplicationUser (lookup + GET by applicationid), GetRootBusinessUnitId when "
    "no business unit is given (lookup + GET), CreateScopedApplicationUser (lookup + POST, then lookup + GET "
    "re-read): 7 requests, 9 in the root business unit",
    "role assignment create: resolveRequestedRole (DataverseExists, lookup + GET the user, lookup + GET the "
    "unit's roles) then AddPrincipalSecurityRoles (lookup + one POST $ref + lookup + GET re-read): 9 requests",
    "refresh: a user 2 requests (lookup + GET), each role assignment 5 (resolveRequestedRole): 2 + 5N for a user "
    "with N roles",
    "a role replaced: security_role_name forces replacement, so one role assignment is created (9) and one "
    "deleted (resolveRequestedRole, then lookup + one DELETE $ref + lookup + GET re-read: 9): 18 requests",
    "throttling: 429 retried after Retry-After (10-20 s without it), no client-side pacing: internal/api/"
    "client.go, request.go",
)


class PerResourceError(Exception):
    """A request of the baseline failed for good (one line: method, path, status, Dataverse's message)."""


# -- the HTTP side ---------------------------------------------------------------------------------------------


def _query(*pairs: tuple[str, str]) -> str:
    return "&".join(f"{name}={quote(value, safe=',()=$/:@;*')}" for name, value in pairs)


def _retry_after(response: requests.Response, rng: random.Random) -> float:
    """internal/api/request.go retryAfter: delta-seconds when given, else 10-20 s (DefaultRetryAfter)."""
    header = response.headers.get("Retry-After", "")
    return float(header) if header.isdigit() else float(rng.randint(10, 19))


class _Environment:
    """One environment's connection: a session, the default credential's token, bounded retries."""

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.scope = f"{self.origin}/.default"
        self._session = requests.Session()  # REQUESTS_CA_BUNDLE from the environment, as for adp-identity
        self._rng = random.Random()

    def send(
        self, method: str, path: str, *, query: str = "", body: Mapping[str, Any] | None = None, accept: tuple[int, ...]
    ) -> requests.Response:
        url = f"{self.origin}{API}{path}{'?' + query if query else ''}"
        data = json.dumps(body) if body is not None else None
        for _ in range(MAX_ATTEMPTS):
            token = bearer_token(None, self.scope)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            response = self._session.request(method, url, headers=headers, data=data, timeout=120)
            if response.status_code in accept:
                return response
            if response.status_code not in RETRYABLE:
                raise PerResourceError(f"{method} {path}: {response.status_code}: {_message(response)}")
            if response.status_code == 401:
                refuse_token(None, self.scope, token)
            time.sleep(_retry_after(response, self._rng) if response.status_code != 401 else 0.0)
        raise PerResourceError(f"{method} {path}: gave up after {MAX_ATTEMPTS} attempts")

    def json(self, method: str, path: str, *, query: str = "", accept: tuple[int, ...] = (200,)) -> Any:
        response = self.send(method, path, query=query, accept=accept)
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise PerResourceError(f"{method} {path}: 403: {_message(response)}")
        return response.json()

    # -- the client methods of internal/services/application/api_application.go --------------------------------

    def lookup(self) -> None:
        """``GetEnvironmentHostById`` / ``DataverseExists``: one environment lookup (here GET WhoAmI)."""
        self.send("GET", ENVIRONMENT_LOOKUP, accept=(200,))

    def application_users(self, application_id: str) -> list[dict[str, Any]]:
        """``getApplicationUsersByApplicationId``: lookup + GET systemusers filtered by applicationid."""
        self.lookup()
        query = _query(
            ("$select", USER_SELECT), ("$expand", USER_EXPAND), ("$filter", f"applicationid eq {application_id}")
        )
        found = self.json("GET", "systemusers", query=query, accept=(200, 403, 404))
        rows: list[dict[str, Any]] = (found or {}).get("value", [])
        return [row for row in rows if not row.get("deletedstate")]

    def root_business_unit(self) -> str:
        """``GetRootBusinessUnitId``: lookup + GET businessunits whose parent is null."""
        self.lookup()
        # Terraform filters on "parentbusinessunitid eq null"; the emulator knows the lookup column's name only
        query = _query(("$select", "businessunitid,name"), ("$filter", "_parentbusinessunitid_value eq null"))
        rows = (self.json("GET", "businessunits", query=query, accept=(200, 403, 404)) or {}).get("value", [])
        if len(rows) != 1:
            raise PerResourceError(f"expected exactly one root business unit in {self.origin}, got {len(rows)}")
        return str(rows[0]["businessunitid"])

    def create_user(self, application_id: str, business_unit_id: str) -> dict[str, Any]:
        """``CreateScopedApplicationUser``: lookup + POST systemusers, then the re-read (lookup + GET)."""
        self.lookup()
        body = {
            "applicationid": application_id,
            "isdisabled": False,
            "businessunitid@odata.bind": f"/businessunits({business_unit_id})",
        }
        response = self.send("POST", "systemusers", body=body, accept=(201, 204))
        ids = re.findall(
            r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", response.headers.get("OData-EntityId", "")
        )
        if not ids:
            raise PerResourceError("no entity record id returned from the odata-entityid header")
        return self.principal(ids[-1])

    def principal(self, systemuser_id: str) -> dict[str, Any]:
        """``GetPrincipalBySystemUserId``: lookup + GET systemusers(id) with its roles."""
        self.lookup()
        query = _query(("$select", USER_SELECT), ("$expand", USER_EXPAND))
        row = self.json("GET", f"systemusers({systemuser_id})", query=query, accept=(200, 403, 404))
        if row is None or row.get("deletedstate"):
            raise PerResourceError(f"principal not found for system user ID {systemuser_id}")
        return dict(row)

    def roles(self, business_unit_id: str) -> list[dict[str, Any]]:
        """``GetDataverseSecurityRoles``: lookup + GET roles of one business unit."""
        self.lookup()
        query = _query(("$select", ROLE_SELECT), ("$filter", f"_businessunitid_value eq {business_unit_id}"))
        return list((self.json("GET", "roles", query=query, accept=(200, 403, 404)) or {}).get("value", []))

    def add_role(self, systemuser_id: str, role_id: str) -> dict[str, Any]:
        """``AddPrincipalSecurityRoles`` with one role: lookup + POST $ref, then the re-read."""
        self.lookup()
        body = {"@odata.id": f"{self.origin}{API}roles({role_id})"}
        self.send("POST", f"systemusers({systemuser_id})/systemuserroles_association/$ref", body=body, accept=(204,))
        return self.principal(systemuser_id)

    def remove_role(self, systemuser_id: str, role_id: str) -> dict[str, Any]:
        """``RemovePrincipalSecurityRoles`` with one role: lookup + DELETE $ref?$id=, then the re-read."""
        self.lookup()
        query = _query(("$id", f"{self.origin}{API}roles({role_id})"))
        self.send(
            "DELETE", f"systemusers({systemuser_id})/systemuserroles_association/$ref", query=query, accept=(204, 404)
        )
        return self.principal(systemuser_id)

    def set_disabled(self, systemuser_id: str, application_id: str, disabled: bool) -> dict[str, Any]:
        """``SetApplicationUserDisabledState``: lookup + PATCH, then the re-read."""
        self.lookup()
        body = {"isdisabled": disabled, "applicationid": application_id}
        self.send("PATCH", f"systemusers({systemuser_id})", body=body, accept=(200, 204))
        return self.principal(systemuser_id)


def _message(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


_ENVIRONMENTS: dict[str, _Environment] = {}
_ENVIRONMENTS_LOCK = threading.Lock()


def _environment(origin: str) -> _Environment:
    """One connection per environment per provider-host process (Terraform's provider keeps one client too)."""
    with _ENVIRONMENTS_LOCK:
        if origin not in _ENVIRONMENTS:
            _ENVIRONMENTS[origin] = _Environment(origin)
        return _ENVIRONMENTS[origin]


# -- the two resource types ------------------------------------------------------------------------------------

_REQUIRED = {
    APPLICATION_USER: ("environment_url", "application_id"),
    ROLE_ASSIGNMENT: ("environment_url", "principal_id", "security_role_name"),
}
_REPLACE = {
    APPLICATION_USER: ("environment_url", "application_id", "business_unit_id"),
    ROLE_ASSIGNMENT: ("environment_url", "principal_id", "security_role_name", "business_unit_id"),
}
_UPDATE = {APPLICATION_USER: ("disabled",), ROLE_ASSIGNMENT: ()}


def _user_outputs(props: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **props,
        "systemuser_id": str(row["systemuserid"]),
        "business_unit_id": str(row["_businessunitid_value"]),
        "disabled": bool(row.get("isdisabled")),
        "full_name": row.get("fullname"),
    }


@dataclass
class _Resolved:
    principal: dict[str, Any]
    role_id: str
    business_unit_id: str


def _resolve(env: _Environment, props: Mapping[str, Any]) -> _Resolved:
    """``resolveRequestedRole``: DataverseExists, the principal, the business unit's roles (5 requests)."""
    env.lookup()
    principal = env.principal(str(props["principal_id"]))
    unit = str(props.get("business_unit_id") or principal["_businessunitid_value"])
    matches = [r for r in env.roles(unit) if r.get("name") == props["security_role_name"]]
    if len(matches) != 1:
        raise PerResourceError(
            f"security role {props['security_role_name']!r}: {len(matches)} matches in business unit {unit}"
        )
    return _Resolved(principal, str(matches[0]["roleid"]), unit)


def _holds(principal: Mapping[str, Any], role_id: str) -> bool:
    return any(str(r.get("roleid")) == role_id for r in principal.get("systemuserroles_association") or [])


@dataclass
class PerResourceProvider(ResourceProvider):
    """Both Terraform resource types in one bench-only provider; ``kind`` says which a resource is."""

    serialize_as_secret_always: bool = field(default=False)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        kind = news.get("kind")
        if kind not in KINDS:
            return CheckResult(news, [CheckFailure("kind", f"must be one of {', '.join(KINDS)}")])
        missing = [CheckFailure(key, "is required") for key in _REQUIRED[kind] if not news.get(key)]
        return CheckResult(news, missing)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        kind = str(news["kind"])
        replaces = [key for key in _REPLACE[kind] if key in news and _changed(olds.get(key), news.get(key))]
        updates = [key for key in _UPDATE[kind] if _changed(olds.get(key, False), news.get(key, False))]
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        env = _environment(str(props["environment_url"]))
        if props["kind"] == APPLICATION_USER:
            return self._create_user(env, props)
        env_resolved = _resolve(env, props)
        principal = env_resolved.principal
        if not _holds(principal, env_resolved.role_id):
            principal = env.add_role(str(props["principal_id"]), env_resolved.role_id)
        outputs = {**props, "role_id": env_resolved.role_id, "business_unit_id": env_resolved.business_unit_id}
        return CreateResult(f"{props['principal_id']}/{props['security_role_name']}", outputs)

    @staticmethod
    def _create_user(env: _Environment, props: dict[str, Any]) -> CreateResult:
        env.lookup()  # DataverseExists
        application_id = str(props["application_id"])
        existing = env.application_users(application_id)
        if len(existing) > 1:
            raise PerResourceError(f"multiple active application users found for application {application_id}")
        if existing:
            row = existing[0]
        else:
            unit = str(props.get("business_unit_id") or env.root_business_unit())
            row = env.create_user(application_id, unit)
        if bool(row.get("isdisabled")) != bool(props.get("disabled", False)):
            row = env.set_disabled(str(row["systemuserid"]), application_id, bool(props.get("disabled", False)))
        return CreateResult(str(row["systemuserid"]), _user_outputs(props, row))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        env = _environment(str(props["environment_url"]))
        if props["kind"] == APPLICATION_USER:
            found = env.application_users(str(props["application_id"]))
            if not found:
                return ReadResult(None, {})
            return ReadResult(str(found[0]["systemuserid"]), _user_outputs(props, found[0]))
        resolved = _resolve(env, props)
        if not _holds(resolved.principal, resolved.role_id):
            return ReadResult(None, {})
        return ReadResult(id_, {**props, "role_id": resolved.role_id, "business_unit_id": resolved.business_unit_id})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only an application user's ``disabled`` is updated in place (everything else forces replacement)."""
        env = _environment(str(news["environment_url"]))
        application_id = str(news["application_id"])
        found = env.application_users(application_id)
        if not found:
            raise PerResourceError(f"application user {application_id} not found for update")
        row = found[0]
        if bool(row.get("isdisabled")) != bool(news.get("disabled", False)):
            row = env.set_disabled(str(row["systemuserid"]), application_id, bool(news.get("disabled", False)))
        return UpdateResult(_user_outputs(news, row))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """A role assignment: resolve, then remove the role if held. The benchmark never deletes a user."""
        if props["kind"] != ROLE_ASSIGNMENT:
            raise PerResourceError("the fleet benchmark never deletes an application user")
        env = _environment(str(props["environment_url"]))
        resolved = _resolve(env, props)
        if _holds(resolved.principal, resolved.role_id):
            env.remove_role(str(props["principal_id"]), resolved.role_id)


def _changed(old: Any, new: Any) -> bool:
    return str(old or "").casefold() != str(new or "").casefold()
