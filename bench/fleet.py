"""Parts 3 and 4: reconciling many application users of one environment through client + reconcile directly.

This is what a deployment of a whole stack costs, without the provider host in between: ``ensure`` for every
user, in a thread pool (the Pulumi engine runs resource operations in parallel too). Each run gets a fresh
emulator, so every run starts from the same state and fetches the token and the role catalog once.

* adp-identity: the real :class:`DataverseClient` (one request for any role change set);
* naive: :class:`bench.naive.PerRoleClient` (one ``$ref`` request per role; everything else the same), which
  UNDERSTATES the naive cost: it keeps the single read, the process-wide catalog and the single re-read;
* faults: the real client under seeded throttling (429 + Retry-After) and lost responses; afterwards the state
  is checked user by user and a clean re-run must find nothing to write.

With an emulated latency every Dataverse request waits that long inside the emulator before it is answered, which
shows what the request budget buys when requests are not free.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from adp_identity_emulator import Emulator
from adp_identity_emulator.dataverse import DataverseEnvironment
from adp_identity_emulator.log import LogEntry
from adp_identity_sandbox.clients import emulator_session, secret_credential
from bench import state_view
from bench.counting import LogMark, RequestCount, WaitLedger, dataverse_requests, token_requests
from bench.naive import PerRoleClient
from bench.report import FaultRun, FleetRun
from bench.seed import TENANT, bench_application_ids, bench_seed
from providers.dataverse.client import CATALOGS, DataverseClient
from providers.dataverse.reconcile import DesiredUser, ensure

ENVIRONMENT = "defradev-dev"
FLEET_ROLES = ("Basic User", "FFC Payments Reader", "Service Reader", "Delegate")
FLEET_UNITS: tuple[str | None, ...] = (None, "ffc-payments", "animal-health")  # None = the root unit
MAX_RETRY_WAIT = 120.0

__all__ = ["fault_run", "fleet_desired", "fleet_run"]


def fleet_desired(environment_url: str, application_ids: Sequence[str]) -> list[DesiredUser]:
    """User i: business unit i mod 3, the first 1 + (i mod 4) roles of FLEET_ROLES (2.5 roles on average)."""
    return [
        DesiredUser(
            environment_url=environment_url,
            application_id=application_id,
            business_unit=FLEET_UNITS[index % len(FLEET_UNITS)],
            security_roles=frozenset(FLEET_ROLES[: 1 + index % len(FLEET_ROLES)]),
        )
        for index, application_id in enumerate(application_ids)
    ]


@contextmanager
def fleet_emulator(users: int) -> Iterator[tuple[Emulator, list[str]]]:
    """A fresh emulator whose DefraDev tenant has ``users`` applications without an application user yet."""
    seed = bench_seed(users)
    CATALOGS.clear()  # a new emulator may reuse a port, and so an origin, of an earlier one
    try:
        with Emulator(seed) as emulator:
            yield emulator, bench_application_ids(seed)
    finally:
        CATALOGS.clear()  # and nothing cached here may outlive this emulator's ids


def _client(
    emulator: Emulator, client_type: type[DataverseClient], *, sleep: WaitLedger | None = None, seed: int = 0
) -> DataverseClient:
    """A client acting as the deploying identity, with a client secret against the emulator's authority."""
    return client_type(
        emulator.environment_url(ENVIRONMENT),
        secret_credential(emulator, TENANT),
        session=emulator_session(emulator),
        max_retry_wait=MAX_RETRY_WAIT,
        sleep=sleep if sleep is not None else time.sleep,
        rng=random.Random(seed),
    )


@dataclass(frozen=True)
class _Pass:
    requests: RequestCount
    seconds: float
    entries: list[LogEntry]
    errors: list[str]


def _reconcile(emulator: Emulator, client: DataverseClient, desired: Sequence[DesiredUser], workers: int) -> _Pass:
    """``ensure`` every declared user in a pool of ``workers`` threads; what reached Dataverse, and how long."""
    mark = LogMark(emulator.log)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ensure") as pool:
        futures = [pool.submit(ensure, client, user) for user in desired]
        failures = [f.exception() for f in futures]
    seconds = time.perf_counter() - started
    entries = mark.entries()
    errors = [_one_line(e) for e in failures if e is not None]
    return _Pass(dataverse_requests(entries), seconds, entries, errors)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _problems(state: DataverseEnvironment, desired: Sequence[DesiredUser]) -> list[list[str]]:
    return [state_view.problems(state, user) for user in desired]


def fleet_run(users: int, *, approach: str, latency_ms: int, workers: int, rerun: bool) -> tuple[FleetRun, list[str]]:
    """One reconcile of ``users`` new users (and, with ``rerun``, the same again with nothing to change)."""
    client_type = DataverseClient if approach == "adp-identity" else PerRoleClient
    with fleet_emulator(users) as (emulator, applications):
        if latency_ms:
            emulator.faults.set_rates(seed=0, latency_ms=latency_ms)
        client = _client(emulator, client_type)
        desired = fleet_desired(client.environment_url, applications)
        first = _reconcile(emulator, client, desired, workers)
        state: DataverseEnvironment = emulator.dataverse(ENVIRONMENT)
        problems = [p for found in _problems(state, desired) for p in found] + first.errors
        again = _reconcile(emulator, client, desired, workers) if rerun else None
        if again is not None:
            problems += again.errors
            if again.requests.writes:
                problems.append(f"a re-run with nothing to change sent {again.requests.writes} write(s)")
    run = FleetRun(
        approach=approach,
        latency_ms=latency_ms,
        workers=workers,
        users=users,
        reads=first.requests.reads,
        writes=first.requests.writes,
        seconds=round(first.seconds, 3),
        token_requests=token_requests(first.entries),
        failures=len(first.errors),
        rerun_reads=again.requests.reads if again else None,
        rerun_writes=again.requests.writes if again else None,
        rerun_seconds=round(again.seconds, 3) if again else None,
    )
    return run, [f"{approach}, {latency_ms} ms, {workers} worker(s): {p}" for p in problems]


def fault_run(
    users: int,
    *,
    workers: int,
    seed: int,
    throttle_rate: float,
    lost_response_rate: float,
    retry_after: int,
    clean_requests: int,
) -> tuple[FaultRun, list[str]]:
    """The adp-identity reconcile of ``users`` new users under seeded faults; then the state is checked."""
    with fleet_emulator(users) as (emulator, applications):
        ledger = WaitLedger()
        client = _client(emulator, DataverseClient, sleep=ledger, seed=seed)
        desired = fleet_desired(client.environment_url, applications)
        emulator.faults.set_rates(
            seed=seed, throttle=throttle_rate, lost_response=lost_response_rate, retry_after=retry_after
        )
        try:
            faulted = _reconcile(emulator, client, desired, workers)
        finally:
            emulator.faults.clear()
        resends, waited = ledger.count, ledger.seconds
        state: DataverseEnvironment = emulator.dataverse(ENVIRONMENT)
        found = _problems(state, desired)
        duplicates = state_view.duplicate_users(state, applications)
        again = _reconcile(emulator, client, desired, workers)
    entries = [e for e in faulted.entries if e.service == "dataverse"]
    refused = sum(1 for e in entries if e.method == "POST" and e.path.endswith("/systemusers") and e.status == 412)
    run = FaultRun(
        users=users,
        workers=workers,
        seed=seed,
        throttle_rate=throttle_rate,
        lost_response_rate=lost_response_rate,
        retry_after=retry_after,
        reads=faulted.requests.reads,
        writes=faulted.requests.writes,
        throttled=sum(1 for e in entries if e.fault == "throttle"),
        lost_responses=sum(1 for e in entries if e.fault == "lost_response"),
        resends=resends,
        total_wait_seconds=round(waited, 2),
        seconds=round(faulted.seconds, 3),
        extra_requests=faulted.requests.total - clean_requests,
        duplicate_users=duplicates,
        duplicate_creates_refused=refused,
        wrong_users=sum(1 for f in found if f),
        failures=len(faulted.errors),
        rerun_writes=again.requests.writes,
    )
    problems = [p for f in found for p in f] + faulted.errors + again.errors
    if duplicates:
        problems.append(f"{duplicates} application(s) have more than one application user")
    if refused:
        problems.append(f"{refused} create(s) were replayed for a user that already existed (412)")
    if again.requests.writes:
        problems.append(f"a clean re-run after the faulted run still sent {again.requests.writes} write(s)")
    return run, [f"under faults: {p}" for p in problems]
