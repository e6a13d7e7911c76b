"""The Dataverse Web API client: application users, their business unit and their security roles.

Each operation is one documented Web API request (powerapps-docs; docs/reference/dataverse-web-api.md) and states
the statuses it accepts; anything else becomes a typed error from ``errors.py``. What a deployment costs:

* reading one user with its business unit and roles: 1 request (``$expand`` of both);
* the role catalog (business units + every business unit's roles): 2 GETs once per process per environment,
  refetched at most once when a name is missing (a role created minutes ago);
* creating a user with k roles: the create, then 1 request for all k associations;
* any role change set (k added, m removed): 1 request — a single ``$ref`` POST/DELETE, or one ``$batch`` change
  set, which Dataverse applies atomically.

Retries, throttling and the never-replay-a-POST rule live in ``_transport.py``; tokens in ``providers/_identity.py``
(shared with the Key Vault client). This module imports no Pulumi: the dynamic provider and the CLI share it.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from providers._identity import TOKENS, CredentialFailed, TokenCache, TokenCredential, bearer_token, refuse_token
from providers._origin import https_origin
from providers.dataverse._batch import BatchRequest, BatchResponse, decode_batch_response, encode_change_set
from providers.dataverse._transport import API_PATH, Call, Transport, json_body
from providers.dataverse.errors import (
    DataverseError,
    UnexpectedResponse,
    WriteRefused,
    credential_error,
    error_for_status,
)
from providers.dataverse.models import (
    ActualUser,
    RoleCatalog,
    application_user_from_wire,
    collection_from_wire,
    normalise_guid,
)

__all__ = ["CATALOGS", "TOKENS", "CatalogCache", "DataverseClient", "TokenCache", "environment_origin"]

USER_SELECT = "systemuserid,applicationid,fullname,isdisabled,_businessunitid_value"
USER_EXPAND = (
    "systemuserroles_association($select=roleid,name,_businessunitid_value),"
    "businessunitid($select=businessunitid,name,_parentbusinessunitid_value)"
)
BUSINESS_UNIT_SELECT = "businessunitid,name,_parentbusinessunitid_value"
ROLE_SELECT = "roleid,name,_businessunitid_value,_parentrootroleid_value"

_JSON = {"Content-Type": "application/json"}
_UPDATE_ONLY = {**_JSON, "If-Match": "*"}  # PATCH must never upsert a user that is gone (conditional operations)
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


def environment_origin(environment_url: str) -> str:
    """``https://org.crm11.dynamics.com/main.aspx?...`` -> ``https://org.crm11.dynamics.com``."""
    return https_origin(environment_url, what="a Dataverse environment URL", example="https://org.crm11.dynamics.com")


def _query(*pairs: tuple[str, str]) -> str:
    """OData query options, percent-encoded the way Dataverse documents them (``$filter=a%20eq%20b``)."""
    return "&".join(f"{name}={quote(value, safe=',()=$/:@;*')}" for name, value in pairs)


@dataclass
class _CatalogEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    catalog: RoleCatalog | None = None
    refetched_after_miss: bool = False


class CatalogCache:
    """Role catalogs per environment origin, fetched once per process and shared by every client and thread.

    Business units and roles change rarely and every user of an environment needs them, so fetching them per
    user would multiply requests for nothing. A name that is not in the catalog may be a role created since it
    was fetched: the first such miss per environment refetches once; later misses do not (a typo repeated in
    twenty files must not cost forty requests).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _CatalogEntry] = {}

    def get(self, origin: str, fetch: Callable[[], RoleCatalog], *, after_miss: bool = False) -> RoleCatalog:
        with self._lock:
            entry = self._entries.setdefault(origin, _CatalogEntry())
        with entry.lock:
            if entry.catalog is None:
                entry.catalog = fetch()
            elif after_miss and not entry.refetched_after_miss:
                entry.refetched_after_miss = True
                entry.catalog = fetch()
            return entry.catalog

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CATALOGS = CatalogCache()  # the process-wide catalog cache


class DataverseClient:
    """A client for one Dataverse environment (its https origin); safe to share between threads."""

    def __init__(
        self,
        environment_url: str,
        credential: TokenCredential | None = None,
        *,
        session: requests.Session | None = None,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        catalog_cache: CatalogCache | None = None,
        read_only: bool = False,
    ) -> None:
        """``catalog_cache``: where role catalogs are kept (default: the process-wide ``CATALOGS``; a fresh
        ``CatalogCache()`` reads the catalog anew, as ``audit`` must). ``read_only``: every write method raises
        ``WriteRefused`` before a request is built (``plan``, ``audit``, ``export`` and preview never write)."""
        self.environment_url = environment_origin(environment_url)
        self.scope = f"{self.environment_url}/.default"
        self.read_only = read_only
        self._credential = credential
        self._catalogs = CATALOGS if catalog_cache is None else catalog_cache
        self._transport = Transport(
            self.environment_url,
            session or requests.Session(),
            self._token,
            self._invalidate_token,
            max_retry_wait=max_retry_wait,
            sleep=sleep,
            rng=rng or random.Random(),
        )

    def __repr__(self) -> str:
        return f"DataverseClient({self.environment_url!r})"

    # -- tokens ------------------------------------------------------------------------------------------------

    def _token(self) -> str:
        """The process-wide token for this environment; a credential that fails is a one-line ``Unauthorized``."""
        try:
            return bearer_token(self._credential, self.scope)
        except CredentialFailed as failed:
            raise credential_error(failed, self.environment_url) from None

    def _invalidate_token(self, token: str) -> None:
        refuse_token(self._credential, self.scope, token)

    # -- reads -------------------------------------------------------------------------------------------------

    def get_application_user(self, application_id: str) -> ActualUser | None:
        """The application user of ``application_id`` with its business unit and roles, in ONE request."""
        app = normalise_guid(application_id)
        query = _query(
            ("$filter", f"applicationid eq {app}"),
            ("$select", USER_SELECT),
            ("$expand", USER_EXPAND),
        )
        url = self._transport.url("systemusers", query)
        rows = collection_from_wire(self._transport.json(Call("GET", url, accept=(200,), idempotent=True)))
        if len(rows) > 1:
            raise UnexpectedResponse(
                f"{len(rows)} application users hold application id {app}; Dataverse allows one",
                method="GET",
                url=url,
                environment=self.environment_url,
            )
        return application_user_from_wire(rows[0]) if rows else None

    def get_user(self, systemuser_id: str) -> ActualUser | None:
        """The user ``systemuser_id`` with its business unit and roles (1 request); None when it does not exist."""
        url = self._transport.url(
            f"systemusers({normalise_guid(systemuser_id)})", _query(("$select", USER_SELECT), ("$expand", USER_EXPAND))
        )
        response = self._transport.send(Call("GET", url, accept=(200, 404), idempotent=True))
        if response.status_code == 404:
            return None
        try:
            return application_user_from_wire(response.json())
        except ValueError:
            raise UnexpectedResponse(
                "Dataverse answered without a JSON body", method="GET", url=url, environment=self.environment_url
            ) from None

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        """Business units and every business unit's roles: 2 (paged) GETs once per process per environment.

        ``after_miss=True`` (a name was not found) refetches, at most once per environment per process.
        """
        return self._catalogs.get(self.environment_url, self._fetch_catalog, after_miss=after_miss)

    def application_users(self) -> list[ActualUser]:
        """Every application user of the environment with its business unit and roles (1 GET per 5000 users)."""
        query = _query(("$filter", "applicationid ne null"), ("$select", USER_SELECT), ("$expand", USER_EXPAND))
        return [application_user_from_wire(row) for page in self._transport.pages("systemusers", query) for row in page]

    def _fetch_catalog(self) -> RoleCatalog:
        units = [
            row
            for page in self._transport.pages("businessunits", _query(("$select", BUSINESS_UNIT_SELECT)))
            for row in page
        ]
        roles = [row for page in self._transport.pages("roles", _query(("$select", ROLE_SELECT))) for row in page]
        return RoleCatalog.from_wire(self.environment_url, units, roles)

    # -- writes ------------------------------------------------------------------------------------------------

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise WriteRefused(
                f"{self!r} is read-only and was asked to {what}: nothing was sent", environment=self.environment_url
            )

    def create_user(self, application_id: str, business_unit_id: str) -> str:
        """Create the application user of ``application_id`` in ``business_unit_id``; returns its systemuserid.

        Raises ``Duplicate`` when it already exists, ``ConnectionFailed(maybe_committed=True)`` when the answer
        was lost: the caller re-reads by application id before trying again (a POST is never replayed blindly).
        """
        self._writable("create a user")
        body = {
            "applicationid": normalise_guid(application_id),
            "businessunitid@odata.bind": f"/businessunits({normalise_guid(business_unit_id)})",
        }
        url = self._transport.url("systemusers", _query(("$select", "systemuserid")))
        headers = {**_JSON, "Prefer": "return=representation"}
        response = self._transport.send(
            Call("POST", url, accept=(201, 204), idempotent=False, body=json_body(body), headers=headers)
        )
        if response.status_code == 201:
            try:
                created = response.json()
                return normalise_guid(str(created["systemuserid"]))
            except (ValueError, KeyError, TypeError):
                pass
        match = _ENTITY_ID.search(response.headers.get("OData-EntityId", ""))
        if match is None:
            raise UnexpectedResponse(
                "Dataverse created the user but did not say its systemuserid",
                status=response.status_code,
                method="POST",
                url=url,
                environment=self.environment_url,
            )
        return normalise_guid(match.group(1))

    def set_disabled(self, systemuser_id: str, disabled: bool) -> None:
        """Disable or enable the user (an absolute value, so safe to resend)."""
        self._patch(systemuser_id, {"isdisabled": disabled})

    def move_business_unit(self, systemuser_id: str, business_unit_id: str) -> None:
        """Move the user to ``business_unit_id``. Dataverse removes ALL its security roles when it does."""
        self._patch(systemuser_id, {"businessunitid@odata.bind": f"/businessunits({normalise_guid(business_unit_id)})"})

    def _patch(self, systemuser_id: str, values: Mapping[str, Any]) -> None:
        self._writable("update a user")
        url = self._transport.url(f"systemusers({normalise_guid(systemuser_id)})")
        self._transport.send(
            Call("PATCH", url, accept=(200, 204), idempotent=True, body=json_body(values), headers=_UPDATE_ONLY)
        )

    def change_roles(self, systemuser_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Associate ``add`` and disassociate ``remove`` (role ids) in ONE request; none when both are empty.

        One change: a single ``$ref`` POST or DELETE. More: one ``$batch`` change set (atomic: all or nothing).
        """
        user = normalise_guid(systemuser_id)
        adding = sorted({normalise_guid(r) for r in add})
        removing = sorted({normalise_guid(r) for r in remove})
        if set(adding) & set(removing):
            raise ValueError("a role cannot be both associated and disassociated in one change")
        requests_ = [BatchRequest("POST", *self._associate(user, r)) for r in adding] + [
            BatchRequest("DELETE", self._disassociate_path(user, r)) for r in removing
        ]
        if not requests_:
            return
        self._writable("change roles")
        if len(requests_) == 1:
            (single,) = requests_
            url = f"{self.environment_url}{single.path}"
            if single.method == "POST":
                body = json_body(single.body or {})
                self._transport.send(Call("POST", url, accept=(204,), idempotent=False, body=body, headers=_JSON))
            else:  # a DELETE of a reference answered 404 after a lost response: the first attempt did it
                self._transport.send(Call("DELETE", url, accept=(204,), idempotent=True, accept_after_resend=(404,)))
            return
        self._batch(requests_)

    def _associate(self, user: str, role_id: str) -> tuple[str, Mapping[str, Any]]:
        path = f"{API_PATH}systemusers({user})/systemuserroles_association/$ref"
        return path, {"@odata.id": f"{self.environment_url}{API_PATH}roles({role_id})"}

    @staticmethod
    def _disassociate_path(user: str, role_id: str) -> str:
        return f"{API_PATH}systemusers({user})/systemuserroles_association({role_id})/$ref"

    def _batch(self, change_set: Collection[BatchRequest]) -> None:
        content_type, body = encode_change_set(list(change_set))
        url = self._transport.url("$batch")
        call = Call(
            "POST",
            url,
            accept=(200,),
            idempotent=False,
            body=body,
            headers={"Content-Type": content_type},
            accept_multipart=True,
        )
        response = self._transport.send(call)
        parts = decode_batch_response(response.headers.get("Content-Type", ""), response.content)
        by_id = {str(i): request for i, request in enumerate(change_set, start=1)}
        for part in parts:
            if part.status >= 400:
                raise self._part_error(part, by_id.get(part.content_id or ""), url)
        if response.status_code != 200 or len(parts) != len(change_set) or any(p.status >= 300 for p in parts):
            raise UnexpectedResponse(
                f"$batch answered {response.status_code} with {len(parts)} responses to {len(change_set)} requests",
                status=response.status_code,
                method="POST",
                url=url,
                environment=self.environment_url,
            )

    def _part_error(self, part: BatchResponse, request: BatchRequest | None, batch_url: str) -> DataverseError:
        """The typed error of a failed change-set request, named by the request itself when it can be matched."""
        code, message = None, f"a request of the $batch change set failed ({part.status})"
        try:
            error = part.json()["error"]
            code = error.get("code") or None
            message = error.get("message") or message
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        method, url = (request.method, f"{self.environment_url}{request.path}") if request else ("POST", batch_url)
        return error_for_status(
            part.status, code=code, message=message, method=method, url=url, environment=self.environment_url
        )
