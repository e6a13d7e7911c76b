"""The fleet part: a whole tenant of application users, through Pulumi's provider host, side by side with the
per-resource way (``bench/per_resource.py``), at the service protection limits Microsoft documents.

Shape (issue 8 §4): services x 3 environments, one application user per (service, environment) — 500 services
are 1,500 users; 1-4 roles each, a third of them outside the root business unit. Every Dataverse request waits
``latency_ms`` inside the emulator (its latency fault), and the emulator enforces Microsoft's documented limits
(6,000 requests and 1,200 s of execution per 300 s sliding window per caller, 52 concurrent requests).

Each phase is one ``pulumi`` command, so each gets a fresh provider-host process (``python -m pulumi.dynamic``,
as the engine starts it), driven :data:`ENGINE_PARALLELISM` calls at a time — the host's gRPC server has that many
workers (``grpc.server(ThreadPoolExecutor(max_workers=4))`` in ``pulumi/dynamic/__main__.py``), so that is how
many operations the engine gets through at once:

1. **create** (``pulumi up`` on an empty stack): check + create of every resource; a per-resource role
   assignment starts when its user exists (it depends on the user's id);
2. **refresh** (``pulumi refresh``): read of every resource;
3. **preview** (``pulumi preview``, nothing changed): check + diff of every resource (adp-identity's check looks
   the declared names up in the environment's role catalog);
4. **update** (``pulumi up`` after one role of every tenth user was replaced by another): check + diff of every
   resource, then the update (adp-identity) or the replacement (per-resource: create the new role assignment,
   then delete the old one, as the engine replaces create-before-delete);
5. **audit**: adp-identity runs ``adp-identity audit`` over every environment (a fresh process, as a scheduled
   job runs it); the per-resource way has no audit, so it refreshes every resource (``terraform plan
   -refresh-only``), which finds drift in what it manages and cannot see anything else.

Then correctness, on the emulator's state (never through the code measured): every user exactly as declared, no
duplicate application user; and a **second run** (refresh, then preview against the declaration) must find
nothing to change and send no write.

Counting: every figure comes from the emulator's request log (Dataverse requests, 429 answers, environment
lookups, token requests) and from the benchmark's clock around each phase (the provider host's start-up is not
timed; it is the same for both sides).
"""

from __future__ import annotations

import abc
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adp_identity_emulator import Emulator, ServiceProtectionLimits
from adp_identity_emulator.dataverse import DataverseEnvironment
from adp_identity_emulator.log import LogEntry
from adp_identity_sandbox.provider_host import ProviderHost
from bench import state_view
from bench.counting import LogMark, token_requests
from bench.per_resource import (
    APPLICATION_USER,
    ENVIRONMENT_LOOKUP,
    PER_RESOURCE_RULES,
    ROLE_ASSIGNMENT,
    PerResourceProvider,
)
from bench.per_resource import TYPE_TOKEN as PER_RESOURCE_TYPE
from bench.scale_report import PhaseFigures, ScaleReport, SideRun
from bench.seed import TENANT, bench_application_ids, bench_seed
from providers.dataverse.provider import TYPE_TOKEN as ADP_TYPE
from providers.dataverse.provider import ApplicationUserProvider
from providers.dataverse.reconcile import DesiredUser

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"dev": "defradev-dev", "tst": "defradev-tst", "pre": "defradev-pre"}  # stack short name -> emulator
EXTRA_ENVIRONMENTS = ("defradev-pre",)  # the packaged seed has dev and tst
UNITS = ("ffc-payments", "animal-health")  # below the root unit
ROLES = ("Basic User", "FFC Payments Reader", "Service Reader", "Delegate")  # user i holds the first 1 + i mod 4
REPLACEMENT_ROLE = "Service Writer"  # the update phase puts it in place of the user's last role
CHANGE_EVERY = 10  # every tenth user gets the one-role change
ENGINE_PARALLELISM = 4  # pulumi/dynamic/__main__.py: grpc.server(ThreadPoolExecutor(max_workers=4))
MAX_RETRY_WAIT = 300.0  # adp-identity's bound on one request's throttling waits (a whole sliding window)
PRIVILEGED_BY_HAND = ("adp-platform-admin", "sndadpinfmi1401-ffc-pay-web")  # seeded with System Administrator
ADP = "adp-identity"
PER_RESOURCE = "per-resource"
SIDES = (ADP, PER_RESOURCE)
AUDIT_TIMEOUT = 1800.0

__all__ = ["SIDES", "FleetSettings", "FleetUser", "fleet_users", "measure_side", "run_fleet"]


# -- the fleet -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetUser:
    """One application user of the fleet: a service in one environment, as a service file declares it."""

    service: str
    environment: str  # the stack's short name (dev, tst, pre)
    application_id: str
    business_unit: str | None  # None = the root business unit
    roles: tuple[str, ...]
    changed_roles: tuple[str, ...] | None  # the declaration after the update phase, if this user changes

    @property
    def name(self) -> str:
        return f"{self.service}-{self.environment}"

    def roles_at(self, updated: bool) -> tuple[str, ...]:
        return self.changed_roles if updated and self.changed_roles is not None else self.roles


def services_for(users: int) -> int:
    return math.ceil(users / len(ENVIRONMENTS))


def fleet_users(users: int, applications: Sequence[str]) -> list[FleetUser]:
    """User i: service i div 3 in environment i mod 3; every third service outside the root unit; 1 + i mod 4
    roles; every tenth user has its last role replaced by :data:`REPLACEMENT_ROLE` in the update phase."""
    if users < 1:
        raise ValueError("the fleet needs at least one user")
    if len(applications) < services_for(users):
        raise ValueError(f"{users} users need {services_for(users)} applications, got {len(applications)}")
    shorts = tuple(ENVIRONMENTS)
    fleet = []
    for i in range(users):
        service = i // len(shorts)
        roles = ROLES[: 1 + i % len(ROLES)]
        fleet.append(
            FleetUser(
                service=f"svc-{service:04d}",
                environment=shorts[i % len(shorts)],
                application_id=applications[service],
                business_unit=UNITS[(service // 3) % len(UNITS)] if service % 3 == 0 else None,
                roles=roles,
                changed_roles=(*roles[:-1], REPLACEMENT_ROLE) if i % CHANGE_EVERY == 0 else None,
            )
        )
    return fleet


# -- the engine: at most ENGINE_PARALLELISM operations at a time ------------------------------------------------

Task = Callable[[], Sequence["Task"]]  # runs one operation; returns the operations that were waiting for it


def run_engine(tasks: Sequence[Task], parallelism: int = ENGINE_PARALLELISM) -> int:
    """Run ``tasks`` ``parallelism`` at a time, each task's dependants as soon as it finished; returns how many
    ran. The first failure is raised once nothing is in flight any more (the engine also lets running steps end)."""
    pending = list(reversed(tasks))
    ran = 0
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="engine") as pool:
        running: set[Future[Sequence[Task]]] = set()
        while pending or running:
            while pending and len(running) < parallelism and failure is None:
                running.add(pool.submit(pending.pop()))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                ran += 1
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                pending.extend(reversed(future.result()))
    if failure is not None:
        raise failure
    return ran


# -- counting one phase ----------------------------------------------------------------------------------------


def phase_figures(
    side: str, phase: str, users: int, entries: Sequence[LogEntry], *, operations: int, seconds: float
) -> PhaseFigures:
    dataverse = [e for e in entries if e.service == "dataverse"]
    answered = [e for e in dataverse if e.status != 429]
    return PhaseFigures(
        side=side,
        phase=phase,
        users=users,
        requests=len(answered),
        reads=sum(1 for e in answered if e.method == "GET"),
        writes=sum(1 for e in answered if e.method != "GET"),
        batches=sum(1 for e in answered if e.path.endswith("/$batch")),
        lookups=sum(1 for e in answered if e.path.endswith(f"/{ENVIRONMENT_LOOKUP}")),
        throttled=len(dataverse) - len(answered),
        operations=operations,
        seconds=round(seconds, 3),
        token_requests=token_requests(entries),
    )


@dataclass
class _Resource:
    """What the engine keeps in state for one resource: its inputs, id and outputs."""

    name: str
    user: FleetUser
    inputs: dict[str, Any]
    id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class _Side(abc.ABC):
    """One side of the comparison on one emulator: its resources, and the phases run through provider hosts."""

    side = ""
    type_token = ""

    def __init__(self, emulator: Emulator, fleet: Sequence[FleetUser]) -> None:
        self.emulator = emulator
        self.fleet = fleet
        self.urls = {short: emulator.environment_url(name) for short, name in ENVIRONMENTS.items()}
        self.tenant_id = emulator.tenant(TENANT).id
        self._lock = threading.Lock()

    @abc.abstractmethod
    def provider(self) -> Any:
        """The provider this side's hosts run."""

    @contextmanager
    def host(self) -> Iterator[ProviderHost]:
        host = ProviderHost(self.provider(), env=self.emulator.credential_env(TENANT), type_token=self.type_token)
        try:
            host.configure({})
            yield host
        finally:
            host.close()

    def checked(self, host: ProviderHost, resource: _Resource, news: dict[str, Any]) -> dict[str, Any]:
        result = host.check(news, resource.inputs if resource.id else None, name=resource.name)
        if result.failures:
            raise RuntimeError(f"check refused the benchmark's own inputs for {resource.name}: {result.failures}")
        return result.inputs

    @abc.abstractmethod
    def create(self, host: ProviderHost) -> int:
        """Every resource created; returns the operations sent."""

    @abc.abstractmethod
    def refresh(self, host: ProviderHost) -> int:
        """Every resource read; returns the operations sent."""

    @abc.abstractmethod
    def preview(self, host: ProviderHost, *, updated: bool) -> tuple[int, int]:
        """(diff calls, resources with changes)."""

    @abc.abstractmethod
    def update(self, host: ProviderHost) -> tuple[int, int]:
        """(resource operations, resources changed)."""

    def read_all(self, host: ProviderHost, resources: Sequence[_Resource]) -> int:
        def read(resource: _Resource) -> Sequence[Task]:
            assert resource.id is not None
            new_id, outs, inputs = host.read(resource.id, resource.outputs, resource.inputs, name=resource.name)
            if not new_id:
                raise RuntimeError(f"refresh found {resource.name} gone")
            resource.id, resource.outputs = new_id, outs
            if inputs is not None:
                resource.inputs = inputs
            return ()

        return run_engine([_bind(read, r) for r in resources])

    def diff_all(
        self, host: ProviderHost, resources: Sequence[_Resource], news: Callable[[_Resource], dict[str, Any]]
    ) -> int:
        changes = [0]

        def diff(resource: _Resource) -> Sequence[Task]:
            assert resource.id is not None
            checked = self.checked(host, resource, news(resource))
            if host.diff(resource.id, resource.outputs, checked, name=resource.name).changes == 2:  # DIFF_SOME
                with self._lock:
                    changes[0] += 1
            return ()

        run_engine([_bind(diff, r) for r in resources])
        return changes[0]


def _bind(function: Callable[[_Resource], Sequence[Task]], resource: _Resource) -> Task:
    return lambda: function(resource)


# -- adp-identity ----------------------------------------------------------------------------------------------


class AdpIdentitySide(_Side):
    """adp-identity's ApplicationUser provider: one resource per application user."""

    side = ADP
    type_token = ADP_TYPE

    def __init__(self, emulator: Emulator, fleet: Sequence[FleetUser]) -> None:
        super().__init__(emulator, fleet)
        self.resources = [_Resource(user.name, user, self.props(user, updated=False)) for user in fleet]

    def provider(self) -> Any:
        return ApplicationUserProvider(max_retry_wait=MAX_RETRY_WAIT)

    def props(self, user: FleetUser, *, updated: bool) -> dict[str, Any]:
        props: dict[str, Any] = {
            "environment_url": self.urls[user.environment],
            "application_id": user.application_id,
            "security_roles": list(user.roles_at(updated)),
            "disabled": False,
            "tenant_id": self.tenant_id,
        }
        if user.business_unit is not None:
            props["business_unit"] = user.business_unit
        return props

    def create(self, host: ProviderHost) -> int:
        def create(resource: _Resource) -> Sequence[Task]:
            resource.inputs = self.checked(host, resource, resource.inputs)
            resource.id, resource.outputs = host.create(resource.inputs, name=resource.name)
            return ()

        return run_engine([_bind(create, r) for r in self.resources])

    def refresh(self, host: ProviderHost) -> int:
        return self.read_all(host, self.resources)

    def preview(self, host: ProviderHost, *, updated: bool) -> tuple[int, int]:
        changes = self.diff_all(host, self.resources, lambda r: self.props(r.user, updated=updated))
        return len(self.resources), changes

    def update(self, host: ProviderHost) -> tuple[int, int]:
        changed = [0]

        def up(resource: _Resource) -> Sequence[Task]:
            assert resource.id is not None
            news = self.checked(host, resource, self.props(resource.user, updated=True))
            if host.diff(resource.id, resource.outputs, news, name=resource.name).changes == 2:
                resource.outputs = host.update(resource.id, resource.outputs, news, name=resource.name)
                with self._lock:
                    changed[0] += 1
            resource.inputs = news
            return ()

        run_engine([_bind(up, r) for r in self.resources])
        return len(self.resources) + changed[0], changed[0]

    def audit(self) -> tuple[int, list[str]]:
        """``adp-identity audit --format json`` over every environment, in a fresh process; no drift expected."""
        with tempfile.TemporaryDirectory(prefix="adp-identity-bench-stack-") as tmp:
            args = write_stack(Path(tmp), self.fleet, self.urls, self.emulator)
            env = {**os.environ, **self.emulator.credential_env(TENANT)}
            done = subprocess.run(  # noqa: S603 - our own CLI, arguments built here
                [sys.executable, "-m", "adp_identity.cli", "audit", *args, "--format", "json"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=AUDIT_TIMEOUT,
                check=False,
            )
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return 0, [f"audit exited {done.returncode} without a report: {last}"]
        problems = [f"audit error: {e['environment']}: {e['message']}" for e in report["errors"]]
        problems += [
            f"audit found drift: {u['environment']} {u['service']}" for u in report["application_users"] if u["drift"]
        ]
        problems += [
            f"audit found unmanaged privileged {p['application_id']}" for p in report["unmanaged_privileged_users"]
        ]
        if done.returncode != 0 and not problems:
            problems.append(f"audit exited {done.returncode}")
        return len(report["application_users"]), problems


def write_stack(tmp: Path, fleet: Sequence[FleetUser], urls: dict[str, str], emulator: Emulator) -> list[str]:
    """A stacks tree declaring the fleet as it stands after the update phase, and the identities file (what
    ``pulumi stack output --json`` prints); returns the audit's arguments."""
    stacks = tmp / "stacks"
    (stacks / "defradev").mkdir(parents=True)
    settings: Any = yaml.safe_load((REPO_ROOT / "stacks" / "Pulumi.defradev.yaml").read_text(encoding="utf-8"))
    config = settings["config"]
    for key in [k for k in config if k.startswith("adp-identity:secret-")]:
        del config[key]  # no service of the fleet declares a Key Vault secret
    config["adp-identity:tenant"]["dataverse_environments"] = {
        short: {"url": f"https://{name}.crm11.dynamics.com", "production": False}
        for short, name in ENVIRONMENTS.items()
    }
    # The stack's tenant is the emulator's DefraDev tenant: audit refuses an environment of another tenant
    stack_tenant = str(config["adp-identity:tenant"]["tenant_id"])
    text = yaml.safe_dump(settings, sort_keys=False).replace(stack_tenant, emulator.tenant(TENANT).id)
    (stacks / "Pulumi.defradev.yaml").write_text(text, encoding="utf-8")
    services: dict[str, list[FleetUser]] = {}
    for user in fleet:
        services.setdefault(user.service, []).append(user)
    identities: dict[str, dict[str, str]] = {}
    for service, users in services.items():
        access = []
        for user in users:
            entry: dict[str, Any] = {"environment": user.environment}
            if user.business_unit is not None:
                entry["business_unit"] = user.business_unit
            entry["security_roles"] = list(user.roles_at(True))
            access.append(entry)
        document = {"service": service, "team": "bench", "dataverse": access}
        (stacks / "defradev" / f"{service}.yaml").write_text(
            yaml.safe_dump(document, sort_keys=False), encoding="utf-8"
        )
        identities[service] = {"client_id": users[0].application_id}
    outputs = tmp / "outputs.json"
    outputs.write_text(json.dumps(identities), encoding="utf-8")
    apps = {a.name: a.client_id for a in emulator.tenant(TENANT).applications}
    args = ["--stacks", str(stacks), "--stack", "defradev", "--identities", str(outputs)]
    for short, url in urls.items():
        args += ["--environment-url", f"{short}={url}"]
    for name in PRIVILEGED_BY_HAND:  # System Administrator by seed, on purpose: known and accepted here
        args += ["--allow-privileged", apps[name]]
    return [*args, "--max-retry-wait", str(MAX_RETRY_WAIT)]


# -- the per-resource way --------------------------------------------------------------------------------------


class PerResourceSide(_Side):
    """The baseline: one resource per application user and one per role, as Microsoft's Terraform provider."""

    side = PER_RESOURCE
    type_token = PER_RESOURCE_TYPE

    def __init__(self, emulator: Emulator, fleet: Sequence[FleetUser]) -> None:
        super().__init__(emulator, fleet)
        state: dict[str, DataverseEnvironment] = {s: emulator.dataverse(n) for s, n in ENVIRONMENTS.items()}
        self.users = [_Resource(u.name, u, self.user_props(u, state[u.environment])) for u in fleet]
        self.roles: dict[str, list[_Resource]] = {u.name: [] for u in fleet}

    def provider(self) -> Any:
        return PerResourceProvider()

    def user_props(self, user: FleetUser, state: DataverseEnvironment) -> dict[str, Any]:
        props: dict[str, Any] = {
            "kind": APPLICATION_USER,
            "environment_url": self.urls[user.environment],
            "application_id": user.application_id,
            "disabled": False,
        }
        if user.business_unit is not None:  # a literal or a data source in a Terraform configuration (not counted)
            props["business_unit_id"] = state.business_unit_id(user.business_unit)
        return props

    def role_props(self, user: _Resource, role: str) -> dict[str, Any]:
        return {
            "kind": ROLE_ASSIGNMENT,
            "environment_url": self.urls[user.user.environment],
            "principal_id": user.id,
            "security_role_name": role,
        }

    @property
    def all_resources(self) -> list[_Resource]:
        return [*self.users, *(r for roles in self.roles.values() for r in roles)]

    def create_role(self, host: ProviderHost, user: _Resource, role: str) -> _Resource:
        resource = _Resource(f"{user.name}/{role}", user.user, self.role_props(user, role))
        resource.inputs = self.checked(host, resource, resource.inputs)
        resource.id, resource.outputs = host.create(resource.inputs, name=resource.name)
        return resource

    def create(self, host: ProviderHost) -> int:
        def role_task(user: _Resource, role: str) -> Task:
            def create_role() -> Sequence[Task]:
                resource = self.create_role(host, user, role)
                with self._lock:
                    self.roles[user.name].append(resource)
                return ()

            return create_role

        def create_user(resource: _Resource) -> Sequence[Task]:
            resource.inputs = self.checked(host, resource, resource.inputs)
            resource.id, resource.outputs = host.create(resource.inputs, name=resource.name)
            return [role_task(resource, role) for role in resource.user.roles]

        return run_engine([_bind(create_user, r) for r in self.users])

    def refresh(self, host: ProviderHost) -> int:
        return self.read_all(host, self.all_resources)

    def declared(self, resource: _Resource) -> dict[str, Any]:
        """The declaration of a resource as the configuration states it (for the preview's check + diff)."""
        if resource.inputs["kind"] == APPLICATION_USER:
            return self.user_props(resource.user, self.emulator.dataverse(ENVIRONMENTS[resource.user.environment]))
        return dict(resource.inputs)

    def preview(self, host: ProviderHost, *, updated: bool) -> tuple[int, int]:
        resources = self.all_resources
        changes = self.diff_all(host, resources, self.declared)
        return len(resources), changes

    def update(self, host: ProviderHost) -> tuple[int, int]:
        """check + diff of every resource (nothing changes but the replaced roles, which are new resources with
        a new ``security_role_name``: the engine creates them, then deletes the old ones)."""
        users = {u.name: u for u in self.users}
        diffs_run = len(self.all_resources)
        diffs = self.diff_all(host, self.all_resources, self.declared)
        if diffs:
            raise RuntimeError(f"{diffs} resource(s) changed before the one-role change was applied")
        swaps = [(u, u.user.roles[-1]) for u in self.users if u.user.changed_roles is not None]

        def create_replacement(user: _Resource) -> Task:
            def create() -> Sequence[Task]:
                resource = self.create_role(host, user, REPLACEMENT_ROLE)
                with self._lock:
                    self.roles[user.name].append(resource)
                return ()

            return create

        run_engine([create_replacement(users[u.name]) for u, _ in swaps])
        old = []
        for user, role in swaps:
            (resource,) = [r for r in self.roles[user.name] if r.inputs["security_role_name"] == role]
            self.roles[user.name].remove(resource)
            old.append(resource)

        def delete(resource: _Resource) -> Sequence[Task]:
            assert resource.id is not None
            host.delete(resource.id, resource.outputs, name=resource.name)
            return ()

        run_engine([_bind(delete, r) for r in old])
        return diffs_run + 2 * len(swaps), len(swaps)


# -- one side, every phase ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSettings:
    users: int
    latency_ms: int = 50
    limits: ServiceProtectionLimits = field(default_factory=ServiceProtectionLimits)


def measure_side(
    side_name: str, settings: FleetSettings, *, progress: Callable[[str], None] = lambda _: None
) -> SideRun:
    """Every phase of one side on a fresh emulator, then the correctness checks; figures and problems."""
    seed = bench_seed(services_for(settings.users), extra_environments=EXTRA_ENVIRONMENTS)
    problems: list[str] = []
    phases: list[PhaseFigures] = []
    with Emulator(seed, limits=settings.limits) as emulator:
        fleet = fleet_users(settings.users, bench_application_ids(seed))
        side: _Side = AdpIdentitySide(emulator, fleet) if side_name == ADP else PerResourceSide(emulator, fleet)
        if settings.latency_ms:
            emulator.faults.set_rates(seed=0, latency_ms=settings.latency_ms)

        def measured(phase: str, run: Callable[[ProviderHost | None], int], *, host: bool = True) -> PhaseFigures:
            """Run one phase (in a fresh provider host unless ``host`` is False), counted and timed."""
            progress(f"{side_name}, {settings.users} users: {phase}")
            mark = LogMark(emulator.log)
            with side.host() if host else _no_host() as provider_host:
                started = time.perf_counter()
                operations = run(provider_host)
                seconds = time.perf_counter() - started
            figures = phase_figures(
                side_name, phase, settings.users, mark.entries(), operations=operations, seconds=seconds
            )
            phases.append(figures)
            return figures

        measured("create", _in_host(side.create))
        measured("refresh", _in_host(side.refresh))
        preview_changes = [0]

        def preview(host: ProviderHost) -> int:
            diffs, preview_changes[0] = side.preview(host, updated=False)
            return diffs

        measured("preview", _in_host(preview))
        if preview_changes[0]:
            problems.append(f"the no-op preview found {preview_changes[0]} change(s)")
        changed = [0]

        def update(host: ProviderHost) -> int:
            operations, changed[0] = side.update(host)
            return operations

        measured("update", _in_host(update))
        expected = sum(1 for u in fleet if u.changed_roles is not None)
        if changed[0] != expected:
            problems.append(f"the update changed {changed[0]} user(s), {expected} declared a change")
        if isinstance(side, AdpIdentitySide):
            audit_problems: list[str] = []
            adp_side = side

            def audit(_: ProviderHost | None) -> int:
                checked, found = adp_side.audit()
                audit_problems.extend(found)
                return checked

            measured("audit", audit, host=False)
            problems += audit_problems
        else:
            measured("audit", _in_host(side.refresh))
        problems += state_problems(emulator, fleet)

        second_changes = [0]

        def second(host: ProviderHost) -> int:
            reads = side.refresh(host)
            _, second_changes[0] = side.preview(host, updated=True)
            return reads

        again = measured("second run", _in_host(second))
        phases.remove(again)
        if second_changes[0] or again.writes:
            problems.append(f"the second run found {second_changes[0]} change(s) and sent {again.writes} write(s)")
    return SideRun(
        side=side_name,
        users=settings.users,
        latency_ms=settings.latency_ms,
        phases=phases,
        second_run=again,
        problems=[f"{side_name}, {settings.users} users: {p}" for p in problems],
    )


@contextmanager
def _no_host() -> Iterator[None]:
    yield None


def _in_host(run: Callable[[ProviderHost], int]) -> Callable[[ProviderHost | None], int]:
    def in_host(host: ProviderHost | None) -> int:
        assert host is not None
        return run(host)

    return in_host


def state_problems(emulator: Emulator, fleet: Sequence[FleetUser]) -> list[str]:
    """Every user exactly as declared after the update (unit, roles, enabled); no application with two users."""
    found: list[str] = []
    for short, name in ENVIRONMENTS.items():
        state: DataverseEnvironment = emulator.dataverse(name)
        url = emulator.environment_url(name)
        users = [u for u in fleet if u.environment == short]
        for user in users:
            desired = DesiredUser(url, user.application_id, user.business_unit, frozenset(user.roles_at(True)))
            found += state_view.problems(state, desired)
        duplicates = state_view.duplicate_users(state, [u.application_id for u in users])
        if duplicates:
            found.append(f"{name}: {duplicates} application(s) have more than one application user")
    return found


# -- the whole fleet part ----------------------------------------------------------------------------------------


def run_fleet(
    sizes: Sequence[int],
    *,
    latency_ms: int,
    per_resource_max_users: int,
    command: str,
    machine: dict[str, Any],
    progress: Callable[[str], None] = lambda _: None,
) -> ScaleReport:
    """Both sides at every size (the per-resource way up to ``per_resource_max_users``), each on a fresh emulator
    with Microsoft's documented service protection limits."""
    started = time.perf_counter()
    limits = ServiceProtectionLimits()
    report = ScaleReport(
        machine=machine,
        command=command,
        latency_ms=latency_ms,
        limits={
            "requests": limits.requests,
            "execution_seconds": limits.execution_seconds,
            "concurrent": limits.concurrent,
            "window_seconds": limits.window_seconds,
        },
        rules=PER_RESOURCE_RULES,
    )
    for users in sorted(set(sizes)):
        settings = FleetSettings(users=users, latency_ms=latency_ms, limits=limits)
        report.runs.append(measure_side(ADP, settings, progress=progress))
        if users <= per_resource_max_users:
            report.runs.append(measure_side(PER_RESOURCE, settings, progress=progress))
        else:
            report.not_measured.append(
                f"the per-resource way at {users:,} users (--per-resource-max-users {per_resource_max_users}): "
                "its figures are shown only where measured; nothing is extrapolated"
            )
    report.seconds = time.perf_counter() - started
    return report
