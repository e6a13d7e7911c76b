"""Parts 1 and 2: each provider operation driven through Pulumi's own provider host over gRPC, as ``pulumi up``
drives it, against the emulator; counted from the emulator's log and timed around the gRPC call.

Layout of a run:

* for each role count k: ``first_repeat`` fresh host processes each create one user with k roles (the first
  create of a process also fetches the token and the role catalog); the first of them then creates ``repeat``
  more (the steady state);
* one more host runs the other operations ``repeat`` times each, on users arranged in the emulator's state
  directly (so arranging never shows in the log): adopt a hand-made user, read, no-op update, one role swapped,
  a business-unit move, and delete (revoke); it ends with one create in a second environment, to show that the
  token cache is per environment scope.

``check`` runs before each measured call and is not timed. After every call the emulator's state is checked
against the declaration; any difference is a correctness problem, reported and failing the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from adp_identity_emulator import Emulator
from adp_identity_emulator.dataverse import DataverseEnvironment
from adp_identity_sandbox.provider_host import ProviderHost
from bench import state_view
from bench.counting import LogMark, RequestCount, dataverse_requests, median, other_entra_requests, p95, token_requests
from bench.naive import naive_requests
from bench.report import HostTokens, OperationFigures
from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider
from providers.dataverse.reconcile import DesiredUser, Plan

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"
SECOND_ENVIRONMENT = "defradev-tst"
HAND_MADE_APPLICATION = "sndadpinfmi1401-ffc-pay-web"  # seeded disabled, in animal-health, System Administrator
HOME_UNIT = "ffc-payments"
OTHER_UNIT = "animal-health"
CREATE_ROLES = (  # the first k are declared for "create with k roles"
    "Basic User",
    "FFC Payments Reader",
    "FFC Payments Writer",
    "AHWR Claims Processor",
    "Service Reader",
    "Service Writer",
    "Delegate",
    "Knowledge Manager",
    "Help Page Consumer",
    "Tour Consumer",
)
TWO_ROLES = ("Basic User", "FFC Payments Reader")
SWAPPED_ROLES = ("Basic User", "FFC Payments Writer")  # one added, one removed relative to TWO_ROLES
ADOPT_ROLES = ("Basic User", "FFC Payments Writer")


def applications_needed(repeat: int, first_repeat: int, role_counts: tuple[int, ...]) -> int:
    """Fresh applications the operation runs consume (each create and adopt needs its own)."""
    return len(role_counts) * (first_repeat + repeat) + repeat + 1


@dataclass
class _Sample:
    requests: RequestCount
    naive: RequestCount
    ms: float


@dataclass
class _Managed:
    """The user the non-create operations work on, with its latest outputs and inputs."""

    user_id: str
    outs: dict[str, Any]
    props: dict[str, Any]


@dataclass
class OperationsResult:
    operations: list[OperationFigures] = field(default_factory=list)
    hosts: list[HostTokens] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class OperationRun:
    """One emulator, a supply of fresh applications, and the samples measured so far."""

    def __init__(self, emulator: Emulator, applications: list[str]) -> None:
        self.emulator = emulator
        self.url = emulator.environment_url(ENVIRONMENT)
        self.state: DataverseEnvironment = emulator.dataverse(ENVIRONMENT)
        self._applications = iter(applications)
        self.samples: dict[str, list[_Sample]] = {}
        self.result = OperationsResult()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def fresh_application(self) -> str:
        try:
            return next(self._applications)
        except StopIteration:
            raise RuntimeError("the benchmark seed has too few applications for these settings") from None

    @contextmanager
    def host(self, title: str, environments: int = 1) -> Iterator[ProviderHost]:
        """A provider host process, as the engine starts it; its Entra ID requests are counted over its life."""
        mark = LogMark(self.emulator.log)
        host = ProviderHost(
            ApplicationUserProvider(max_retry_wait=30.0),
            env=self.emulator.credential_env(TENANT),
            type_token=TYPE_TOKEN,
        )
        try:
            host.configure({})
            yield host
        finally:
            host.close()
        entries = mark.entries()
        self.result.hosts.append(
            HostTokens(
                host=title,
                environments=environments,
                token_requests=token_requests(entries),
                other_entra_requests=other_entra_requests(entries),
                dataverse_requests=dataverse_requests(entries).total,
            )
        )

    def props(
        self, application_id: str, roles: tuple[str, ...], unit: str | None, url: str | None = None
    ) -> dict[str, Any]:
        props: dict[str, Any] = {
            "environment_url": url or self.url,
            "application_id": application_id,
            "security_roles": list(roles),
            "disabled": False,
        }
        if unit is not None:
            props["business_unit"] = unit
        return props

    def desired(self, props: dict[str, Any]) -> DesiredUser:
        return DesiredUser(
            environment_url=self.url,
            application_id=props["application_id"],
            business_unit=props.get("business_unit"),
            security_roles=frozenset(props["security_roles"]),
            disabled=bool(props.get("disabled", False)),
        )

    @staticmethod
    def checked(host: ProviderHost, props: dict[str, Any]) -> dict[str, Any]:
        result = host.check(props)
        if result.failures:
            raise RuntimeError(f"check refused the benchmark's own inputs: {result.failures}")
        return result.inputs

    def measure(self, name: str | None, the_plan: Plan | None, call: Callable[[], Any]) -> Any:
        """Run ``call`` (a gRPC call), timed; record its Dataverse requests under ``name`` (None = not recorded)."""
        mark = LogMark(self.emulator.log)
        started = time.perf_counter()
        value = call()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if name is not None:
            sample = _Sample(dataverse_requests(mark.entries()), naive_requests(the_plan), elapsed_ms)
            self.samples.setdefault(name, []).append(sample)
        return value

    def verify(self, desired: DesiredUser) -> None:
        self.result.problems += state_view.problems(self.state, desired)

    # -- operations ------------------------------------------------------------------------------------------

    def create(
        self, host: ProviderHost, name: str | None, roles: tuple[str, ...], unit: str | None
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        props = self.checked(host, self.props(self.fresh_application(), roles, unit))
        desired = self.desired(props)
        the_plan = state_view.plan_for(self.state, desired)
        user_id, outs = self.measure(name, the_plan, partial(host.create, props))
        self.verify(desired)
        return user_id, outs, props

    def creates(self, role_count: int, first_repeat: int, repeat: int) -> None:
        roles = CREATE_ROLES[:role_count]
        label = f"create, {role_count} role{'s' if role_count != 1 else ''}"
        for attempt in range(first_repeat):
            with self.host(f"{label}: {'first host' if attempt == 0 else f'host {attempt + 1}'}") as host:
                self.create(host, f"{label} (first in process)", roles, HOME_UNIT)
                if attempt == 0:
                    for _ in range(repeat):
                        self.create(host, f"{label} (subsequent)", roles, HOME_UNIT)

    def adopt(self, host: ProviderHost, application_id: str) -> None:
        props = self.checked(host, self.props(application_id, ADOPT_ROLES, HOME_UNIT))
        desired = self.desired(props)
        the_plan = state_view.plan_for(self.state, desired)
        self.measure(
            "adopt a hand-made user (disabled, other unit, + System Administrator)",
            the_plan,
            partial(host.create, props),
        )
        self.verify(desired)

    def hand_made(self) -> str:
        """A user made in the admin centre: disabled, in another unit, with System Administrator (as the seed's)."""
        application_id = self.fresh_application()
        self.state.add_application_user(
            application_id, business_unit=OTHER_UNIT, roles=["System Administrator"], disabled=True
        )
        return application_id

    def others(self, repeat: int) -> None:
        with self.host(f"other operations, then one create in {SECOND_ENVIRONMENT}", environments=2) as host:
            user_id, outs, props = self.create(host, None, TWO_ROLES, HOME_UNIT)  # warms the token and catalog
            managed = _Managed(user_id, outs, props)
            self.adopts(host, repeat)
            self.reads(host, managed, repeat)
            self.updates(host, managed, repeat)
            self.revokes(host, managed, repeat)
            self.second_environment(host, props["application_id"])

    def adopts(self, host: ProviderHost, repeat: int) -> None:
        seeded = self.emulator.tenant(TENANT).applications
        hand_made = next(a.client_id for a in seeded if a.name == HAND_MADE_APPLICATION)
        for attempt in range(repeat):
            self.adopt(host, hand_made if attempt == 0 else self.hand_made())

    def reads(self, host: ProviderHost, managed: _Managed, repeat: int) -> None:
        for _ in range(repeat):
            _, managed.outs, _ = self.measure(
                "read (refresh)", None, partial(host.read, managed.user_id, managed.outs, managed.props)
            )

    def updates(self, host: ProviderHost, managed: _Managed, repeat: int) -> None:
        """No change; one role swapped (alternating); a business-unit move (alternating), each ``repeat`` times."""
        for _ in range(repeat):
            self.update(host, managed, "update, nothing changed", {})
        for attempt in range(repeat):
            roles = SWAPPED_ROLES if attempt % 2 == 0 else TWO_ROLES
            self.update(host, managed, "update, 1 role added + 1 removed", {"security_roles": list(roles)})
        for attempt in range(repeat):
            unit = OTHER_UNIT if attempt % 2 == 0 else HOME_UNIT
            changes = {"security_roles": list(TWO_ROLES), "business_unit": unit}
            self.update(host, managed, "move business unit, 2 roles", changes)

    def update(self, host: ProviderHost, managed: _Managed, name: str, changes: dict[str, Any]) -> None:
        news = self.checked(host, {**managed.props, **changes})
        desired = self.desired(news)
        the_plan = state_view.plan_for(self.state, desired, managed_id=managed.user_id)
        managed.outs = self.measure(name, the_plan, partial(host.update, managed.user_id, managed.outs, news))
        managed.props = news
        self.verify(desired)

    def revokes(self, host: ProviderHost, managed: _Managed, repeat: int) -> None:
        for _ in range(repeat):
            self.restore_access(managed.user_id, TWO_ROLES)
            the_plan = state_view.revoke_plan_for(self.state, managed.user_id, self.url)
            self.measure("delete (revoke), 2 roles", the_plan, partial(host.delete, managed.user_id, managed.outs))
            self.result.problems += state_view.revoked_problems(self.state, managed.user_id)

    def second_environment(self, host: ProviderHost, application_id: str) -> None:
        """The same host, a second environment: one more token request (a token is per environment scope)."""
        url = self.emulator.environment_url(SECOND_ENVIRONMENT)
        host.create(self.checked(host, self.props(application_id, TWO_ROLES, HOME_UNIT, url)))
        state: DataverseEnvironment = self.emulator.dataverse(SECOND_ENVIRONMENT)
        self.result.problems += state_view.problems(
            state, DesiredUser(url, application_id, HOME_UNIT, frozenset(TWO_ROLES))
        )

    def restore_access(self, user_id: str, roles: tuple[str, ...]) -> None:
        """Arrange an enabled user holding ``roles`` (in the state, not through the API: it is not measured)."""
        user = self.state.user(user_id)
        if user is None:
            raise RuntimeError(f"user {user_id} vanished")
        if user.disabled:
            self.state.set_disabled(user_id, False)
        held = {r.id for r in self.state.roles_of(user_id)}
        for name in roles:
            role_id = self.state.role_id(name, user.business_unit_id)
            if role_id not in held:
                self.state.associate(user_id, role_id)

    # -- figures -------------------------------------------------------------------------------------------------

    def figures(self) -> list[OperationFigures]:
        figures = []
        for name, samples in self.samples.items():
            first = samples[0]
            times = [s.ms for s in samples]
            figures.append(
                OperationFigures(
                    operation=name,
                    reads=first.requests.reads,
                    writes=first.requests.writes,
                    naive_reads=first.naive.reads,
                    naive_writes=first.naive.writes,
                    samples=len(samples),
                    median_ms=round(median(times), 2),
                    p95_ms=round(p95(times), 2),
                    varied=any(s.requests != first.requests or s.naive != first.naive for s in samples),
                )
            )
        return figures


def measure_operations(
    emulator: Emulator,
    applications: list[str],
    *,
    repeat: int,
    first_repeat: int,
    role_counts: tuple[int, ...],
) -> OperationsResult:
    """Parts 1 and 2 on a running emulator whose DefraDev tenant holds ``applications`` (fresh ones)."""
    if repeat < 1 or first_repeat < 1:
        raise ValueError("repeat and first_repeat must be at least 1")
    if any(not 1 <= k <= len(CREATE_ROLES) for k in role_counts):
        raise ValueError(f"role counts must be between 1 and {len(CREATE_ROLES)}")
    run = OperationRun(emulator, applications)
    for role_count in role_counts:
        run.creates(role_count, first_repeat, repeat)
    run.others(repeat)
    run.result.operations = run.figures()
    return run.result
