"""The fleet part at a tiny size (7 users, no latency): the request counts of every phase on both sides.

Only request counts are asserted (never a time). The per-resource way's counts are worked out here from its rules
(bench/per_resource.py, from Microsoft's Terraform provider), user by user, independently of the code that sends
them; adp-identity's are the ones issue 8 sets. Both sides must leave Dataverse exactly as declared and find
nothing to change on a second run. The docs generated from the run are checked for shape.
"""

from __future__ import annotations

import math
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from adp_identity_emulator import Emulator
from bench.scale import (
    ADP,
    ENVIRONMENTS,
    EXTRA_ENVIRONMENTS,
    PER_RESOURCE,
    REPLACEMENT_ROLE,
    FleetSettings,
    FleetUser,
    fleet_users,
    measure_side,
    run_engine,
    services_for,
    state_problems,
)
from bench.scale_docs import document, svg, write_docs
from bench.scale_report import PHASES, ScaleReport, SideRun
from bench.seed import bench_application_ids, bench_seed

pytestmark = [pytest.mark.emulator, pytest.mark.grpc]

USERS = 7  # user 0 changes a role; services 0 (outside the root unit) and 1, 2 (root); 1-4 roles


@pytest.fixture(scope="module")
def fleet() -> list[FleetUser]:
    return fleet_users(USERS, bench_application_ids(bench_seed(services_for(USERS))))


@pytest.fixture(scope="module")
def per_resource() -> SideRun:
    return measure_side(PER_RESOURCE, FleetSettings(users=USERS, latency_ms=0))


@pytest.fixture(scope="module")
def adp() -> SideRun:
    return measure_side(ADP, FleetSettings(users=USERS, latency_ms=0))


def test_the_fleet_is_shaped_as_the_issue_says() -> None:
    users = fleet_users(300, bench_application_ids(bench_seed(100)))
    assert len({u.application_id for u in users}) == 100 and len({(u.service, u.environment) for u in users}) == 300
    assert {len(u.roles) for u in users} == {1, 2, 3, 4}
    assert sum(1 for u in users if u.business_unit is not None) == 102  # every third service: a third of the users
    changed = [u for u in users if u.changed_roles is not None]
    assert len(changed) == 30
    assert all(c.changed_roles == (*c.roles[:-1], REPLACEMENT_ROLE) for c in changed)


def test_per_resource_requests_follow_the_terraform_providers_rules(
    per_resource: SideRun, fleet: list[FleetUser]
) -> None:
    assert per_resource.problems == []
    roles = sum(len(u.roles) for u in fleet)
    in_unit = sum(1 for u in fleet if u.business_unit is not None)
    changed = sum(1 for u in fleet if u.changed_roles is not None)
    refresh = sum(2 + 5 * len(u.roles) for u in fleet)  # 2 + 5N per user
    expected = {
        # a user: 7 (9 when the root unit must be looked up); a role assignment: 9
        "create": 7 * in_unit + 9 * (USERS - in_unit) + 9 * roles,
        "refresh": refresh,
        "preview": 0,
        "update": 18 * changed,  # a role assignment created (9) and one deleted (9)
        "audit": refresh,  # no audit: a refresh of every resource
    }
    assert {p.phase: p.requests for p in per_resource.phases} == expected
    writes = {p.phase: p.writes for p in per_resource.phases}
    assert writes == {"create": USERS + roles, "refresh": 0, "preview": 0, "update": 2 * changed, "audit": 0}
    lookups = {p.phase: p.lookups for p in per_resource.phases}
    assert lookups["create"] == 4 * in_unit + 5 * (USERS - in_unit) + 5 * roles
    assert lookups["refresh"] == USERS + 3 * roles
    resources = USERS + roles
    operations = {p.phase: p.operations for p in per_resource.phases}
    assert operations == {
        "create": resources,
        "refresh": resources,
        "preview": resources,
        "update": resources + 2 * changed,
        "audit": resources,
    }
    assert all(p.throttled == 0 for p in per_resource.phases)
    assert per_resource.second_run.requests == refresh and per_resource.second_run.writes == 0


def test_adp_identity_requests_per_phase(adp: SideRun, fleet: list[FleetUser]) -> None:
    """Issue 8 §1: per environment, a listing of every application user (1 GET up to 5,000) and the role catalog
    (2 GETs: business units, roles) answer refresh and audit; a user's create or change is one $batch change set,
    coalesced with concurrent ones; a no-op writes nothing; preview checks names against the catalog."""
    assert adp.problems == []
    environments = len(ENVIRONMENTS)
    listing = math.ceil(USERS / 5000) + 2  # per environment
    changed = sum(1 for u in fleet if u.changed_roles is not None)
    changed_environments = len({u.environment for u in fleet if u.changed_roles is not None})
    figures = {p.phase: p for p in adp.phases}
    create = figures["create"]
    # every write a $batch, at most one per user (coalescing merges concurrent ones; how many depends on timing)
    assert create.writes == create.batches and environments <= create.batches <= USERS
    # listing + catalog per environment, and at most one individual re-read per user missing from the listing
    assert environments * listing <= create.reads <= environments * listing + USERS
    assert (figures["refresh"].requests, figures["refresh"].writes) == (environments * listing, 0)
    assert (figures["preview"].requests, figures["preview"].writes) == (environments * 2, 0)  # the catalogs
    update = figures["update"]
    assert (update.writes, update.batches) == (changed, changed)  # one role changed: 1 request
    assert update.reads == environments * 2 + changed_environments * (listing - 2)
    assert (figures["audit"].requests, figures["audit"].writes) == (environments * listing, 0)
    assert all(p.throttled == 0 for p in adp.phases)
    assert (adp.second_run.requests, adp.second_run.writes) == (environments * listing, 0)
    assert {p.phase: p.operations for p in adp.phases} == {
        "create": USERS,
        "refresh": USERS,
        "preview": USERS,
        "update": USERS + changed,
        "audit": USERS,
    }


def test_the_docs_are_generated_from_the_run(adp: SideRun, per_resource: SideRun, tmp_path: Path) -> None:
    report = ScaleReport(
        machine={"python": "3", "platform": "x", "cpus": 2, "commit": "abc1234", "at": "now"},
        command=".venv/bin/python -m bench fleet --fleet-users 7",
        latency_ms=0,
        limits={"requests": 6000, "execution_seconds": 1200.0, "concurrent": 52, "window_seconds": 300.0},
        rules=("rule one",),
        runs=[adp, per_resource],
    )
    markdown, chart = tmp_path / "benchmarks.md", tmp_path / "benchmarks.svg"
    write_docs(report, markdown, chart)
    text = markdown.read_text(encoding="utf-8")
    assert text == document(report, "benchmarks.svg") and "![" in text and "make bench-fleet" in text
    for phase in (*PHASES, "whole run"):
        assert f"| {phase} |" in text
    assert f"| create | {adp.phase('create').requests:,} |" in text
    root = ET.fromstring(chart.read_text(encoding="utf-8"))  # well-formed SVG
    assert root.tag.endswith("svg") and chart.read_text(encoding="utf-8") == svg(report)
    assert f">{per_resource.phase('create').requests:,}<" in chart.read_text(encoding="utf-8")


def test_the_correctness_check_finds_a_user_that_differs(fleet: list[FleetUser]) -> None:
    seed = bench_seed(services_for(USERS), extra_environments=EXTRA_ENVIRONMENTS)
    with Emulator(seed) as emulator:
        assert any("no application user" in p for p in state_problems(emulator, fleet))
        for user in fleet:
            state = emulator.dataverse(ENVIRONMENTS[user.environment])
            state.add_application_user(
                user.application_id, business_unit=user.business_unit, roles=list(user.roles_at(True))
            )
        assert state_problems(emulator, fleet) == []
        first = fleet[0]
        state = emulator.dataverse(ENVIRONMENTS[first.environment])
        found = state.user_by_application_id(first.application_id)
        assert found is not None
        state.associate(found.id, state.role_id("Delegate", found.business_unit_id))
        assert any("holds roles" in p for p in state_problems(emulator, fleet))


def test_the_engine_runs_four_at_a_time_and_dependants_after_their_dependency() -> None:
    lock = threading.Lock()
    running, peak, order = [0], [0], []

    def task(name: str, then: tuple[str, ...] = ()) -> object:
        def run() -> list[object]:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.01)
            with lock:
                running[0] -= 1
                order.append(name)
            return [task(f"{name}/{child}") for child in then]

        return run

    ran = run_engine([task(f"u{i}", ("a", "b")) for i in range(6)])  # type: ignore[list-item]
    assert ran == 18 and peak[0] == 4
    assert all(order.index(f"u{i}") < order.index(f"u{i}/a") for i in range(6))


def test_a_failure_is_raised_after_the_operations_in_flight_end() -> None:
    finished = []

    def ok() -> list[object]:
        time.sleep(0.02)
        finished.append(1)
        return []

    def boom() -> list[object]:
        raise RuntimeError("create failed")

    with pytest.raises(RuntimeError, match="create failed"):
        run_engine([boom, ok, ok, ok])  # type: ignore[list-item]
    assert len(finished) == 3
