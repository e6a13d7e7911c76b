"""The benchmark runs end to end with tiny sizes and produces a well-formed report (never a speed check).

What is checked is the shape of the report and that it measured something: every figure is present, counted
requests are non-zero, the derived figures agree with the counted ones, the JSON and the tables render, and the
printed command reproduces the settings. The second test proves that the correctness check, which decides the
exit status, can fail.
"""

from __future__ import annotations

import io
import json
import shlex

import pytest
from rich.console import Console

from adp_identity_emulator.dataverse import DataverseEnvironment
from bench import BenchSettings, run_benchmark
from bench.__main__ import main
from bench.report import render
from bench.seed import TENANT, bench_application_ids, bench_seed
from bench.state_view import duplicate_users, problems
from providers.dataverse.reconcile import DesiredUser

pytestmark = [pytest.mark.emulator, pytest.mark.grpc]

TINY = BenchSettings(
    repeat=2,
    first_repeat=1,
    role_counts=(1, 3),
    users=4,
    workers=(2,),
    latency_ms=5,
    fault_workers=(2,),
)


def test_a_tiny_run_measures_every_part_and_reports_it_well_formed() -> None:
    report = run_benchmark(TINY)

    assert report.correct, report.problems
    names = [op.operation for op in report.operations]
    assert names == [
        "create, 1 role (first in process)",
        "create, 1 role (subsequent)",
        "create, 3 roles (first in process)",
        "create, 3 roles (subsequent)",
        "adopt a hand-made user (disabled, other unit, + System Administrator)",
        "read (refresh)",
        "update, nothing changed",
        "update, 1 role added + 1 removed",
        "move business unit, 2 roles",
        "delete (revoke), 2 roles",
    ]
    # With the environment snapshot (docs/adr/0008) a no-op update sends nothing, and an update or an adoption of a
    # user the snapshot lists reads nothing: those figures may be 0, and adopting the seeded user (listed) reads
    # less than adopting one made since (read on its own).
    from_snapshot = ("update, nothing changed", "update, 1 role added + 1 removed", "move business unit, 2 roles")
    for op in report.operations:
        assert op.naive_reads > 0, op
        assert op.reads > 0 or op.operation in from_snapshot or op.operation.startswith("adopt"), op
        assert op.requests > 0 or op.operation == "update, nothing changed", op
        assert op.requests == op.reads + op.writes and op.naive_requests == op.naive_reads + op.naive_writes
        assert op.ratio == (round(op.naive_requests / op.requests, 2) if op.requests else 0.0)
        assert op.samples == (1 if "first in process" in op.operation else 2)
        assert 0 < op.median_ms <= op.p95_ms
        assert not op.varied or op.operation.startswith("adopt"), op
    writes = {op.operation: op.writes for op in report.operations}
    assert writes["read (refresh)"] == 0 and writes["update, nothing changed"] == 0
    assert all(n > 0 for name, n in writes.items() if name not in ("read (refresh)", "update, nothing changed"))

    assert len(report.hosts) == 3  # one per role count, one for the other operations
    assert all(h.token_requests >= 1 and h.dataverse_requests > 0 for h in report.hosts)

    approaches = {(run.approach, run.latency_ms, run.workers) for run in report.fleet}
    assert approaches == {(a, ms, 2) for a in ("adp-identity", "naive") for ms in (0, 5)}
    for run in report.fleet:
        assert run.users == 4 and run.failures == 0
        assert run.requests > 0 and run.per_user == round(run.requests / 4, 2) and run.seconds > 0
        assert (run.rerun_reads is not None) == (run.approach == "adp-identity")
    (faulted,) = report.faults
    assert faulted.requests > 0 and faulted.workers == 2 and faulted.seed == TINY.fault_seed
    assert faulted.duplicate_users == 0 and faulted.wrong_users == 0 and faulted.rerun_writes == 0

    document = json.loads(json.dumps(report.as_dict()))
    assert document["correct"] is True
    assert [o["operation"] for o in document["operations"]] == names
    assert document["settings"]["users"] == 4 and len(document["fleet"]) == 4 and len(document["faults"]) == 1

    out = io.StringIO()
    render(report, Console(file=out, width=132, color_system=None))
    text = out.getvalue()
    for heading in ("1. Dataverse requests", "2. Wall time", "token requests", "3. Reconciling", "4. The same"):
        assert heading in text
    assert TINY.command() in text

    args = shlex.split(TINY.command())[3:]  # after ".venv/bin/python -m bench"
    params = main.make_context("bench", args).params
    assert (
        BenchSettings(
            repeat=params["repeat"],
            first_repeat=params["first_repeat"],
            role_counts=tuple(params["role_counts"]),
            users=params["users"],
            workers=tuple(params["workers"]),
            latency_ms=params["latency_ms"],
            fault_workers=tuple(params["fault_workers"]),
            fault_seed=params["fault_seed"],
        )
        == TINY
    )


def test_the_correctness_check_finds_what_differs_from_the_declaration() -> None:
    seed = bench_seed(2)
    tenant = next(t for t in seed.tenants if t.name == TENANT)
    env = next(e for e in tenant.environments if e.name == "defradev-dev")
    state = DataverseEnvironment.from_seed(env, tenant)
    app, other = bench_application_ids(seed)
    desired = DesiredUser("https://env.example", app, "ffc-payments", frozenset({"Basic User"}))

    assert any("no application user" in p for p in problems(state, desired))
    state.add_application_user(app, business_unit="ffc-payments", roles=["Basic User"])
    assert problems(state, desired) == []

    user = state.user_by_application_id(app)
    assert user is not None
    state.associate(user.id, state.role_id("System Administrator", "ffc-payments"))
    assert any("holds roles" in p for p in problems(state, desired))
    state.set_disabled(user.id, True)
    assert any("disabled=True" in p for p in problems(state, desired))
    assert problems(state, DesiredUser("https://env.example", app, None, frozenset({"Basic User"})))  # wrong unit
    assert duplicate_users(state, [app, other]) == 0


def test_emulator_figures_are_measured() -> None:
    from bench.emulator import measure

    figures = measure(5)
    assert figures["requests"] == 5
    assert figures["get_median_ms"] > 0 and figures["get_p95_ms"] >= figures["get_median_ms"]
    assert figures["start_ms"] > 0
