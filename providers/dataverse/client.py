"""The Dataverse Web API client: application users, their business unit and their security roles.

Each operation is a documented Web API request (powerapps-docs; docs/reference/dataverse-web-api.md) and states
the statuses it accepts; anything else becomes a typed error from ``errors.py``. What a deployment costs
(docs/adr/0008-environment-snapshot.md):

* the environment snapshot: every application user with its roles, ``ceil(N / 5000)`` GETs
  (``Prefer: odata.maxpagesize=5000``), once per ``snapshot_max_age`` (60 s) per client; concurrent readers wait
  for the listing in flight instead of sending their own. ``lookup_*`` and ``refresh_user`` answer from it;
* the role catalog (business units + every business unit's roles): 2 GETs once per process per environment,
  refetched at most once when a name is missing (a role created minutes ago). It also names each user's business
  unit, read from the lookup column ``_businessunitid_value``: roles (N:N) and the business unit (N:1) are never
  expanded side by side in one query;
* a user read on its own (``get_application_user``, ``get_user``): 1 GET; lookups that arrive together are sent
  as ONE GET (``applicationid eq A or applicationid eq B ...``);
* ``write_user``: everything one user needs (create with k roles, enable, move, role changes, disable) as ONE
  atomic ``$batch`` change set, followed in the same ``$batch`` by a GET of that user, so the result is what
  Dataverse holds right after the write. Writes that arrive together (the engine's parallel calls) share one
  ``$batch``: one change set per user, ``Prefer: odata.continue-on-error``, at most 1000 requests; a failing
  change set fails only its own user, with its own message.

Coalescing ("arrive together"): a lookup or write waits until every operation in progress on this client
(``operation()``) is waiting for one too, or at most ``gather_window`` (20 ms) after the first of them joined;
never less than ``gather_settle`` (3 ms), so concurrent calls that are just starting can join. A lone caller
therefore pays 3 ms, and the waits are bounded.

Retries, throttling and the never-replay-a-POST rule live in ``_transport.py``; tokens in ``providers/_identity.py``
(shared with the Key Vault client), which also checks the environment's tenant before the first request when a
``tenant_id`` is given. This module imports no Pulumi: the dynamic provider and the CLI share it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import requests

from providers._identity import (
    TOKENS,
    CredentialFailed,
    TokenCache,
    TokenCredential,
    WrongTenant,
    bearer_token,
    check_tenant,
    refuse_token,
)
from providers._origin import https_origin
from providers.dataverse._batch import (
    MAX_BATCH_OPERATIONS,
    BatchItem,
    BatchRequest,
    BatchResponse,
    ChangeSet,
    decode_batch_items,
    decode_batch_response,
    encode_batch,
    encode_change_set,
)
from providers.dataverse._transport import API_PATH, Call, Transport, json_body
from providers.dataverse.errors import (
    OWNS_RECORDS_CODE,
    DataverseError,
    Rejected,
    UnexpectedResponse,
    WriteRefused,
    credential_error,
    error_for_status,
)
from providers.dataverse.models import (
    ActualUser,
    AddRole,
    NewUser,
    RemoveRole,
    RoleCatalog,
    SetBusinessUnit,
    SetDisabled,
    UserWrite,
    WriteResult,
    application_user_from_wire,
    collection_from_wire,
    normalise_guid,
)

__all__ = [
    "CATALOGS",
    "TOKENS",
    "CatalogCache",
    "DataverseClient",
    "TokenCache",
    "environment_origin",
]

USER_SELECT = "systemuserid,applicationid,fullname,isdisabled,_businessunitid_value,deletedstate"
USER_ROLES_EXPAND = "systemuserroles_association($select=roleid,name,_businessunitid_value)"
# Deprecated: roles AND the business unit expanded in one query (a combination one revision of Microsoft's $expand
# docs lists as unsupported). The client no longer sends it; it is kept, unchanged, only because
# adp_identity/drift.py's ReadOnlyDataverseClient.application_users still imports it. Use
# DataverseClient.application_users() (names the business unit from the catalog) instead.
USER_EXPAND = f"{USER_ROLES_EXPAND},businessunitid($select=businessunitid,name,_parentbusinessunitid_value)"
BUSINESS_UNIT_SELECT = "businessunitid,name,_parentbusinessunitid_value"
ROLE_SELECT = "roleid,name,_businessunitid_value,_parentrootroleid_value"

SNAPSHOT_MAX_AGE = 60.0  # seconds an environment snapshot answers reads (docs/adr/0008)
GATHER_SETTLE = 0.003  # seconds a lookup or write waits at least for company
GATHER_WINDOW = 0.02  # seconds a lookup or write waits at most for company
LOOKUPS_PER_REQUEST = 50  # application ids per coalesced GET (~2.5 KB of URL)
UNANSWERED_RESENDS = 2  # resends of change sets a $batch stopped before (not processed, so safe to resend)
PURGE_ATTEMPTS = 4  # a purge meeting the user's own usersettings row (0x80048610) is tried this often
PURGE_WAIT = 2.0  # seconds between those attempts (the platform sweeps the row within about a second)
_POLL = 0.25  # seconds between re-checks while waiting for another thread (each wait ends with that thread's call)

_JSON = {"Content-Type": "application/json"}
_UPDATE_ONLY = {**_JSON, "If-Match": "*"}  # PATCH must never upsert a user that is gone (conditional operations)
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")

T = TypeVar("T")
R = TypeVar("R")


def environment_origin(environment_url: str) -> str:
    """``https://org.crm11.dynamics.com/main.aspx?...`` -> ``https://org.crm11.dynamics.com``."""
    return https_origin(environment_url, what="a Dataverse environment URL", example="https://org.crm11.dynamics.com")


def _query(*pairs: tuple[str, str]) -> str:
    """OData query options, percent-encoded the way Dataverse documents them (``$filter=a%20eq%20b``)."""
    return "&".join(f"{name}={quote(value, safe=',()=$/:@;*')}" for name, value in pairs)


def _users_query(filter_: str) -> str:
    return _query(("$filter", filter_), ("$select", USER_SELECT), ("$expand", USER_ROLES_EXPAND))


def _by_applications(application_ids: Sequence[str]) -> str:
    return " or ".join(f"applicationid eq {app}" for app in application_ids)


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


# -- the environment snapshot ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    """What the snapshot knows of one user row: the user, when it was read, and how."""

    user: ActualUser
    at: float  # clock time the read that produced it was sent
    origin: str  # "listing" | "read" (a user read on its own) | "write" (read back right after our change set)
    refreshed: bool = False  # a refresh (the provider's read) was answered from this entry already


class _Snapshot:
    """Every application user of one environment as of one listing, plus what later reads and writes saw."""

    def __init__(self, started_at: float, generation: int) -> None:
        self.started_at = started_at  # clock time the listing's first request was sent
        self.generation = generation  # listings of this client are numbered 1, 2, ... in the order they started
        self.rows: dict[str, _Entry] = {}  # systemuser id -> entry (live and soft-deleted rows)
        self.live: dict[str, str] = {}  # application id -> systemuser id of its live user
        self.deleted: dict[str, str] = {}  # application id -> systemuser id of its soft-deleted row

    def put(self, user: ActualUser, at: float, origin: str) -> None:
        self.rows[user.systemuser_id] = _Entry(user, at, origin)
        app = user.application_id
        if app is None:
            return
        if user.deleted:
            self.deleted[app] = user.systemuser_id
            if self.live.get(app) == user.systemuser_id:
                del self.live[app]
        else:
            self.live[app] = user.systemuser_id
            if self.deleted.get(app) == user.systemuser_id:
                del self.deleted[app]

    def record_application(
        self, app: str, live: ActualUser | None, soft: ActualUser | None, at: float, origin: str
    ) -> None:
        """A read of every row of one application: it replaces what the snapshot held for that application."""
        for mapping in (self.live, self.deleted):
            previous = mapping.pop(app, None)
            if previous is not None:
                self.rows.pop(previous, None)
        for user in (live, soft):
            if user is not None:
                self.put(user, at, origin)

    def forget(self, systemuser_id: str) -> None:
        entry = self.rows.pop(systemuser_id, None)
        if entry is not None and entry.user.application_id is not None:
            for mapping in (self.live, self.deleted):
                if mapping.get(entry.user.application_id) == systemuser_id:
                    del mapping[entry.user.application_id]

    def live_user(self, app: str) -> ActualUser | None:
        user_id = self.live.get(app)
        return self.rows[user_id].user if user_id is not None else None

    def soft_deleted(self, app: str) -> ActualUser | None:
        user_id = self.deleted.get(app)
        return self.rows[user_id].user if user_id is not None else None


# -- coalescing concurrent calls into one request -------------------------------------------------------------


@dataclass
class _Pending(Generic[T, R]):
    item: T
    arrived: float
    result: R | None = None
    error: BaseException | None = None
    done: bool = False


class _Gatherer(Generic[T, R]):
    """Calls that arrive together leave as one request (see the module docstring for when "together" ends).

    The thread of the oldest waiting call sends for everyone; the others wait for their own answer. ``run`` gets
    the items (at most ``budget`` by ``cost``) and returns one result or exception per item, in order.
    """

    def __init__(
        self,
        owner: DataverseClient,
        run: Callable[[list[T]], list[R | BaseException]],
        *,
        cost: Callable[[T], int],
        budget: int,
    ) -> None:
        self._owner = owner
        self._run = run
        self._cost = cost
        self._budget = budget
        self.queue: list[_Pending[T, R]] = []
        self.in_flight = 0

    def submit(self, item: T) -> R:
        owner = self._owner
        cond = owner._coalescing
        job: _Pending[T, R] = _Pending(item, time.monotonic())
        with cond:
            self.queue.append(job)
            cond.notify_all()
        while not job.done:
            with cond:
                while not job.done and (self.in_flight or not self.queue or self.queue[0] is not job):
                    cond.wait(_POLL)  # another thread is sending; its call is bounded by the transport's budget
                if job.done:
                    break
                self._wait_for_company(job)
                batch = self._take()
                self.in_flight = len(batch)
            try:
                outcomes = self._run([pending.item for pending in batch])
            except BaseException as exc:  # handed to every caller of this batch, then raised by each
                outcomes = [exc] * len(batch)
            with cond:
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        pending.error = outcome
                    else:
                        pending.result = outcome
                    pending.done = True
                self.in_flight = 0
                cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # set with done, unless error

    def _wait_for_company(self, first: _Pending[T, R]) -> None:
        owner = self._owner
        settle_until = first.arrived + owner.gather_settle
        deadline = first.arrived + max(owner.gather_window, owner.gather_settle)
        while True:
            now = time.monotonic()  # real time, whatever clock the snapshot's age is measured with
            if now >= deadline or sum(self._cost(p.item) for p in self.queue) >= self._budget:
                return
            if now >= settle_until and owner._waiting() >= owner._active:
                return  # every operation in progress is waiting: nobody else will join
            wake = settle_until if now < settle_until else deadline
            owner._coalescing.wait(max(wake - now, 0.0005))

    def _take(self) -> list[_Pending[T, R]]:
        batch = [self.queue.pop(0)]
        spent = self._cost(batch[0].item)
        while self.queue and spent + self._cost(self.queue[0].item) <= self._budget:
            spent += self._cost(self.queue[0].item)
            batch.append(self.queue.pop(0))
        return batch


@dataclass(frozen=True)
class _UserRows:
    """Every row one application has in the environment: its live user and a soft-deleted one, if any."""

    live: ActualUser | None
    soft_deleted: ActualUser | None


@dataclass(frozen=True)
class _WriteJob:
    systemuser_id: str | None  # None: the first write is NewUser
    application_id: str
    writes: tuple[UserWrite, ...]

    @property
    def cost(self) -> int:
        return len(self.writes) + 1  # the change set and the GET that reads the user back


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
        tenant_id: str | None = None,
        snapshot_max_age: float = SNAPSHOT_MAX_AGE,
        gather_window: float = GATHER_WINDOW,
        gather_settle: float = GATHER_SETTLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``catalog_cache``: where role catalogs are kept (default: the process-wide ``CATALOGS``; a fresh
        ``CatalogCache()`` reads the catalog anew, as ``audit`` must). ``read_only``: every write method raises
        ``WriteRefused`` before a request is built (``plan``, ``audit``, ``export`` and preview never write).
        ``tenant_id``: the Entra tenant the environment belongs to; the credential's token must carry it, checked
        before the first request (``WrongTenant`` otherwise). ``snapshot_max_age``, ``gather_window``,
        ``gather_settle``: see the module docstring."""
        self.environment_url = environment_origin(environment_url)
        self.scope = f"{self.environment_url}/.default"
        self.read_only = read_only
        self.snapshot_max_age = snapshot_max_age
        self.gather_window = gather_window
        self.gather_settle = gather_settle
        self._credential = credential
        self._catalogs = CATALOGS if catalog_cache is None else catalog_cache
        self._clock = clock
        self._sleep = sleep
        self._tenant_id = normalise_guid(tenant_id) if tenant_id else None
        self._verified_tenants: set[str] = set()
        self._tenant_lock = threading.Lock()
        self._transport = Transport(
            self.environment_url,
            session or requests.Session(),
            self._token,
            self._invalidate_token,
            max_retry_wait=max_retry_wait,
            sleep=sleep,
            rng=rng or random.Random(),
        )
        self._max_retry_wait = max_retry_wait
        # the snapshot (guarded by _snapshot_lock)
        self._snapshot_lock = threading.Condition()
        self._snap: _Snapshot | None = None
        self._listing_since: float | None = None  # clock time the listing in flight started
        self._listing_generation = 0
        self._failed_listing: tuple[int, BaseException] | None = None
        # coalescing (guarded by _coalescing)
        self._coalescing = threading.Condition()
        self._active = 0
        self._lookups: _Gatherer[str, _UserRows] = _Gatherer(
            self, self._run_lookups, cost=lambda _: 1, budget=LOOKUPS_PER_REQUEST
        )
        self._writes: _Gatherer[_WriteJob, WriteResult] = _Gatherer(
            self, self._run_writes, cost=lambda job: job.cost, budget=MAX_BATCH_OPERATIONS
        )

    def __repr__(self) -> str:
        return f"DataverseClient({self.environment_url!r})"

    # -- tokens and the tenant ---------------------------------------------------------------------------------

    def _token(self) -> str:
        """The process-wide token for this environment; a credential that fails is a one-line ``Unauthorized``."""
        if self._tenant_id is not None:
            self.verify_tenant(self._tenant_id)
        try:
            return bearer_token(self._credential, self.scope)
        except CredentialFailed as failed:
            raise credential_error(failed, self.environment_url) from None

    def _invalidate_token(self, token: str) -> None:
        refuse_token(self._credential, self.scope, token)

    def verify_tenant(self, tenant_id: str | None) -> None:
        """Refuse (``WrongTenant``, one line, nothing sent to the environment) unless the credential signs in to
        ``tenant_id``; ``None`` checks nothing. Checked once per tenant per client (the token is cached anyway).

        When the token cannot even be obtained and the default credential is configured for another tenant
        (``AZURE_TENANT_ID``), that is the reason given: Entra ID refuses a token for a resource of another tenant
        before any tenant claim could be compared.
        """
        if not tenant_id:
            return
        expected = normalise_guid(tenant_id)
        with self._tenant_lock:
            if expected in self._verified_tenants:
                return
            target = f"environment {self.environment_url}"
            try:
                check_tenant(self._credential, self.scope, expected, target)
            except CredentialFailed as failed:
                configured = os.environ.get("AZURE_TENANT_ID", "").strip().lower() if self._credential is None else ""
                if configured and configured != expected:
                    raise WrongTenant(target, expected, configured) from None
                raise credential_error(failed, self.environment_url) from None
            self._verified_tenants.add(expected)

    # -- reads: the catalog and users on their own -------------------------------------------------------------

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        """Business units and every business unit's roles: 2 (paged) GETs once per process per environment.

        ``after_miss=True`` (a name was not found) refetches, at most once per environment per process.
        """
        return self._catalogs.get(self.environment_url, self._fetch_catalog, after_miss=after_miss)

    def _fetch_catalog(self) -> RoleCatalog:
        units = [
            row
            for page in self._transport.pages("businessunits", _query(("$select", BUSINESS_UNIT_SELECT)))
            for row in page
        ]
        roles = [row for page in self._transport.pages("roles", _query(("$select", ROLE_SELECT))) for row in page]
        return RoleCatalog.from_wire(self.environment_url, units, roles)

    def _user(self, row: Mapping[str, Any]) -> ActualUser:
        """A user row, its business unit named from the catalog (refetched once if the unit is new)."""
        catalog = self.catalog()
        unit_id = row.get("_businessunitid_value")
        if isinstance(unit_id, str) and catalog.business_unit_by_id(unit_id) is None:
            catalog = self.catalog(after_miss=True)
        return application_user_from_wire(row, catalog)

    def _rows_of(self, rows: Iterable[Mapping[str, Any]], app: str, url: str) -> _UserRows:
        users = [self._user(row) for row in rows]
        live = [u for u in users if not u.deleted and u.application_id == app]
        if len(live) > 1:
            raise UnexpectedResponse(
                f"{len(live)} application users hold application id {app}; Dataverse allows one",
                method="GET",
                url=url,
                environment=self.environment_url,
            )
        soft = [u for u in users if u.deleted and u.application_id == app]
        return _UserRows(live[0] if live else None, soft[0] if soft else None)

    def get_application_user(self, application_id: str) -> ActualUser | None:
        """The live application user of ``application_id`` as Dataverse holds it now: ONE request (lookups that
        arrive together share it). Also updates the snapshot, when there is one."""
        return self._lookups.submit(normalise_guid(application_id)).live

    def _run_lookups(self, apps: list[str]) -> list[_UserRows | BaseException]:
        wanted = sorted(set(apps))
        url = self._transport.url("systemusers", _users_query(_by_applications(wanted)))
        sent = self._clock()
        rows = collection_from_wire(self._transport.json(Call("GET", url, accept=(200,), idempotent=True)))
        found = {app: self._rows_of(rows, app, url) for app in wanted}
        with self._snapshot_lock:
            if self._snap is not None:
                for app, user_rows in found.items():
                    self._snap.record_application(app, user_rows.live, user_rows.soft_deleted, sent, "read")
        return [found[app] for app in apps]

    def get_user(self, systemuser_id: str) -> ActualUser | None:
        """The live user ``systemuser_id`` as Dataverse holds it now (1 request); None when it does not exist or
        is soft-deleted."""
        user = self._read_user(normalise_guid(systemuser_id))
        return None if user is None or user.deleted else user

    def _read_user(self, user_id: str) -> ActualUser | None:
        url = self._transport.url(
            f"systemusers({user_id})", _query(("$select", USER_SELECT), ("$expand", USER_ROLES_EXPAND))
        )
        sent = self._clock()
        response = self._transport.send(Call("GET", url, accept=(200, 404), idempotent=True))
        if response.status_code == 404:
            with self._snapshot_lock:
                if self._snap is not None:
                    self._snap.forget(user_id)
            return None
        try:
            body = response.json()
        except ValueError:
            raise UnexpectedResponse(
                "Dataverse answered without a JSON body", method="GET", url=url, environment=self.environment_url
            ) from None
        user = self._user(body)
        with self._snapshot_lock:
            if self._snap is not None:
                self._snap.put(user, sent, "read")
        return user

    # -- reads: the environment snapshot -----------------------------------------------------------------------

    def _snapshot(self, *, after_generation: int = 0) -> _Snapshot:
        """A snapshot no older than ``snapshot_max_age`` (and, with ``after_generation``, a listing started after
        listing number ``after_generation`` did, i.e. after the caller asked).

        Concurrent callers share one listing: whoever finds none fresh enough starts it, the others wait for it;
        when it fails, those that waited for it get its error rather than sending a listing of their own.
        """
        need = self._clock() - self.snapshot_max_age
        with self._snapshot_lock:
            waited_for: int | None = None
            while True:
                snap = self._snap
                if snap is not None and snap.started_at >= need and snap.generation > after_generation:
                    return snap
                if waited_for is not None and self._failed_listing and self._failed_listing[0] == waited_for:
                    raise self._failed_listing[1]
                if self._listing_since is None:
                    break
                if self._listing_since >= need and self._listing_generation > after_generation:
                    waited_for = self._listing_generation
                self._snapshot_lock.wait(_POLL)  # the listing in flight is bounded by the transport's budget
            started = self._clock()
            self._listing_since = started
            self._listing_generation += 1
            generation = self._listing_generation
        try:
            listed = [
                self._user(row)
                for page in self._transport.pages("systemusers", _users_query("applicationid ne null"))
                for row in page
            ]
        except BaseException as exc:
            with self._snapshot_lock:
                self._listing_since = None
                self._failed_listing = (generation, exc)
                self._snapshot_lock.notify_all()
            raise
        with self._snapshot_lock:
            fresh = _Snapshot(started, generation)
            for user in listed:
                fresh.put(user, started, "listing")
            if self._snap is not None:  # keep what a read or a write saw after this listing began
                for entry in self._snap.rows.values():
                    if entry.at > started:
                        fresh.put(entry.user, entry.at, entry.origin)
            self._snap = fresh
            self._listing_since = None
            self._snapshot_lock.notify_all()
            return fresh

    def application_users(self) -> list[ActualUser]:
        """Every live application user of the environment with its business unit and roles, from the snapshot
        (1 GET per 5000 users when it is listed; none while it is fresh)."""
        snap = self._snapshot()
        with self._snapshot_lock:
            return [e.user for e in snap.rows.values() if not e.user.deleted and e.user.application_id is not None]

    def lookup_application_user(self, application_id: str) -> ActualUser | None:
        """The live application user of ``application_id`` from the snapshot (no request while it is fresh).

        Absence here is not proof: before creating a user, read it on its own (``get_application_user``).
        """
        app = normalise_guid(application_id)
        snap = self._snapshot()
        with self._snapshot_lock:
            return snap.live_user(app)

    def lookup_user(self, systemuser_id: str) -> ActualUser | None:
        """The live user ``systemuser_id`` from the snapshot (no request while it is fresh)."""
        user_id = normalise_guid(systemuser_id)
        snap = self._snapshot()
        with self._snapshot_lock:
            entry = snap.rows.get(user_id)
            return None if entry is None or entry.user.deleted else entry.user

    def soft_deleted_user(self, application_id: str) -> ActualUser | None:
        """A soft-deleted row of ``application_id`` as the last listing or read saw it (no request)."""
        app = normalise_guid(application_id)
        with self._snapshot_lock:
            return self._snap.soft_deleted(app) if self._snap is not None else None

    def refresh_user(self, systemuser_id: str) -> ActualUser | None:
        """The user ``systemuser_id`` for a refresh (the provider's ``read``); None when it is gone.

        A refresh of N users costs one listing (``ceil(N / 5000)`` GETs): each is answered from the snapshot once,
        from rows exactly as Dataverse listed or read them. A user the snapshot has answered already, or that this
        client changed since, is asked again by a new listing (a second refresh in one process must see what
        changed since the first). A user missing from a listing older than the refresh is read on its own.
        """
        user_id = normalise_guid(systemuser_id)
        with self._snapshot_lock:
            asked = self._listing_generation  # listings started after this one began after this refresh asked
        snap = self._snapshot()
        with self._snapshot_lock:
            entry = snap.rows.get(user_id)
            if entry is not None and entry.origin != "write" and not entry.refreshed:
                entry.refreshed = True
                return None if entry.user.deleted else entry.user
            missing = entry is None
        if missing:
            if snap.generation > asked:
                return None  # listed for this very refresh: it is gone
            return self.get_user(user_id)
        snap = self._snapshot(after_generation=asked)
        with self._snapshot_lock:
            entry = snap.rows.get(user_id)
            if entry is None:
                return None
            entry.refreshed = True
            return None if entry.user.deleted else entry.user

    # -- coalescing bookkeeping --------------------------------------------------------------------------------

    @contextmanager
    def operation(self) -> Iterator[None]:
        """Mark one resource operation in progress: lookups and writes wait for the operations in progress to
        join them (bounded by ``gather_window``), so the engine's parallel calls leave in one request."""
        with self._coalescing:
            self._active += 1
        try:
            yield
        finally:
            with self._coalescing:
                self._active -= 1
                self._coalescing.notify_all()

    def _waiting(self) -> int:
        return sum(len(g.queue) + g.in_flight for g in (self._lookups, self._writes))

    # -- writes ------------------------------------------------------------------------------------------------

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise WriteRefused(
                f"{self!r} is read-only and was asked to {what}: nothing was sent", environment=self.environment_url
            )

    def write_user(self, systemuser_id: str | None, application_id: str, writes: Sequence[UserWrite]) -> WriteResult:
        """Apply ``writes`` to one user as ONE atomic change set, and read the user back in the same ``$batch``.

        ``systemuser_id`` None means the first write is ``NewUser``. Writes that arrive together share one
        ``$batch``. The change set's own failure is returned (``WriteResult.error``: none of it was applied);
        a failure of the whole ``$batch`` is raised (``ConnectionFailed(maybe_committed=True)`` when its answer was
        lost: read the user before sending anything again).
        """
        self._writable("change a user")
        if not writes:
            raise ValueError("write_user needs at least one write")
        job = _WriteJob(
            normalise_guid(systemuser_id) if systemuser_id else None, normalise_guid(application_id), tuple(writes)
        )
        self._change_set(job, 1)  # refuse a malformed change set before anything is queued
        return self._writes.submit(job)

    def _change_set(self, job: _WriteJob, first_id: int) -> tuple[ChangeSet, int]:
        requests_: list[BatchRequest] = []
        target = f"{API_PATH}systemusers({job.systemuser_id})" if job.systemuser_id else None
        next_id = first_id
        for write in job.writes:
            content_id = str(next_id)
            next_id += 1
            if isinstance(write, NewUser):
                if target is not None:
                    raise ValueError("NewUser must be the first write of a user that has no systemuserid yet")
                body = {
                    "applicationid": normalise_guid(write.application_id),
                    "businessunitid@odata.bind": f"/businessunits({normalise_guid(write.business_unit_id)})",
                }
                requests_.append(BatchRequest("POST", f"{API_PATH}systemusers", body, _JSON, content_id))
                target = f"${content_id}"  # the user this change set creates (docs: "Reference URIs in an operation")
                continue
            if target is None:
                raise ValueError("a change set without NewUser must name the systemuser it changes")
            if isinstance(write, SetDisabled):
                requests_.append(
                    BatchRequest("PATCH", target, {"isdisabled": write.disabled}, _UPDATE_ONLY, content_id)
                )
            elif isinstance(write, SetBusinessUnit):
                bind = {"businessunitid@odata.bind": f"/businessunits({normalise_guid(write.business_unit_id)})"}
                requests_.append(BatchRequest("PATCH", target, bind, _UPDATE_ONLY, content_id))
            elif isinstance(write, AddRole):
                path, ref = self._associate_in(target, normalise_guid(write.role_id))
                requests_.append(BatchRequest("POST", path, ref, _JSON, content_id))
            elif isinstance(write, RemoveRole):
                path = f"{target}/systemuserroles_association({normalise_guid(write.role_id)})/$ref"
                requests_.append(BatchRequest("DELETE", path, None, {}, content_id))
        return ChangeSet(tuple(requests_)), next_id

    def _associate_in(self, target: str, role_id: str) -> tuple[str, Mapping[str, Any]]:
        return f"{target}/systemuserroles_association/$ref", {
            "@odata.id": f"{self.environment_url}{API_PATH}roles({role_id})"
        }

    @staticmethod
    def _read_back(job: _WriteJob) -> BatchRequest:
        return BatchRequest("GET", f"{API_PATH}systemusers?{_users_query(_by_applications([job.application_id]))}")

    def _run_writes(self, jobs: list[_WriteJob]) -> list[WriteResult | BaseException]:
        """ONE ``$batch`` for ``jobs``: per job its change set, then the GET reading it back."""
        results: list[WriteResult | BaseException | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        url = self._transport.url("$batch")
        for _attempt in range(UNANSWERED_RESENDS + 1):
            items: list[BatchItem] = []
            next_id = 1
            for index in pending:
                change_set, next_id = self._change_set(jobs[index], next_id)
                items += [change_set, self._read_back(jobs[index])]
            call = self._batch_call(url, *encode_batch(items), continue_on_error=True)
            sent = self._clock()
            try:
                response = self._transport.send(call)
                answers = decode_batch_items(response.headers.get("Content-Type", ""), response.content)
            except DataverseError as exc:  # the whole $batch: every job still pending gets it
                for index in pending:
                    results[index] = exc
                return [r if r is not None else exc for r in results]
            unanswered: list[int] = []
            for position, index in enumerate(pending):
                if 2 * position >= len(answers):
                    unanswered.append(index)  # the batch stopped before this change set: it was not processed
                    continue
                sent_set = items[2 * position]
                assert isinstance(sent_set, ChangeSet)
                error = self._change_set_error(answers[2 * position], sent_set, url)
                read_back = answers[2 * position + 1] if 2 * position + 1 < len(answers) else None
                results[index] = self._written(jobs[index], error, read_back, sent)
            if not unanswered:
                break
            pending = unanswered
        else:
            for index in pending:
                results[index] = UnexpectedResponse(
                    f"$batch left this user's change set unanswered {UNANSWERED_RESENDS + 1} times",
                    method="POST",
                    url=url,
                    environment=self.environment_url,
                )
        done = [r for r in results if r is not None]
        assert len(done) == len(jobs)
        return done

    def _change_set_error(
        self, answer: BatchResponse | list[BatchResponse], change_set: ChangeSet, batch_url: str
    ) -> DataverseError | None:
        if isinstance(answer, list):
            if len(answer) == len(change_set.requests) and all(part.status < 300 for part in answer):
                return None
            failed = next((part for part in answer if part.status >= 300), None)
            if failed is None:
                return UnexpectedResponse(
                    f"$batch answered a change set of {len(change_set.requests)} requests with {len(answer)} responses",
                    method="POST",
                    url=batch_url,
                    environment=self.environment_url,
                )
            answer = failed
        if answer.status < 300:
            return None if len(change_set.requests) == 1 else self._part_error(answer, None, batch_url)
        by_id = {r.content_id: r for r in change_set.requests}
        return self._part_error(answer, by_id.get(answer.content_id or ""), batch_url)

    def _written(
        self,
        job: _WriteJob,
        error: DataverseError | None,
        read_back: BatchResponse | list[BatchResponse] | None,
        sent: float,
    ) -> WriteResult:
        if not isinstance(read_back, BatchResponse) or read_back.status != 200:
            return WriteResult(None, None, error, verified=False)
        try:
            rows = collection_from_wire(read_back.json())
        except ValueError:
            return WriteResult(None, None, error, verified=False)
        found = self._rows_of(rows, job.application_id, f"{self.environment_url}{self._read_back(job).path}")
        with self._snapshot_lock:
            if self._snap is not None:
                self._snap.record_application(job.application_id, found.live, found.soft_deleted, sent, "write")
        return WriteResult(found.live, found.soft_deleted, error)

    def purge_soft_deleted_user(self, systemuser_id: str) -> bool:
        """Delete a soft-deleted user permanently (an administrator's task; the deploying role cannot).

        Refuses a user that is not soft-deleted (``Rejected``): this never deletes a live user. A purge that meets
        the user's own ``usersettings`` row (``0x80048610``, which the platform provisions after a role change and
        sweeps shortly after; microsoft/terraform-provider-power-platform#1249) deleted nothing and is tried again
        after ``PURGE_WAIT`` seconds, at most ``PURGE_ATTEMPTS`` times. Returns False when the user was already gone.
        """
        self._writable("purge a soft-deleted user")
        user_id = normalise_guid(systemuser_id)
        user = self._read_user(user_id)
        if user is None:
            return False
        if not user.deleted:
            raise Rejected(
                f"user {user_id} is not soft-deleted: only a soft-deleted user is purged, nothing was sent",
                environment=self.environment_url,
            )
        url = self._transport.url(f"systemusers({user_id})")
        for attempt in range(1, PURGE_ATTEMPTS + 1):
            try:
                self._transport.send(Call("DELETE", url, accept=(204,), idempotent=True, accept_after_resend=(404,)))
            except Rejected as exc:
                if (exc.code or "").lower() != OWNS_RECORDS_CODE or attempt == PURGE_ATTEMPTS:
                    raise
                self._sleep(PURGE_WAIT)
                continue
            with self._snapshot_lock:
                if self._snap is not None:
                    self._snap.forget(user_id)
            return True
        return True  # not reached: the last attempt returns or raises

    # -- single writes (each one request; the provider uses write_user) ----------------------------------------

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
        target = f"{API_PATH}systemusers({user})"
        requests_ = [BatchRequest("POST", *self._associate_in(target, r)) for r in adding] + [
            BatchRequest("DELETE", f"{target}/systemuserroles_association({r})/$ref") for r in removing
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

    @staticmethod
    def _batch_call(url: str, content_type: str, body: bytes, *, continue_on_error: bool) -> Call:
        """A ``$batch`` POST: never replayed blindly; any multipart answer is the caller's to read."""
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        return Call("POST", url, accept=(200,), idempotent=False, body=body, headers=headers, accept_multipart=True)

    def _batch(self, change_set: Collection[BatchRequest]) -> None:
        url = self._transport.url("$batch")
        call = self._batch_call(url, *encode_change_set(list(change_set)), continue_on_error=False)
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
        if request is None:
            method, url = "POST", batch_url
        elif request.path.startswith("$"):  # a request on the user its change set creates
            method, url = request.method, f"{batch_url} {request.path}"
        else:
            method, url = request.method, f"{self.environment_url}{request.path}"
        return error_for_status(
            part.status, code=code, message=message, method=method, url=url, environment=self.environment_url
        )
