"""The benchmark's figures, as data (for ``--json``) and as tables (rich) a person reads.

Every figure here was measured in this run; nothing is a constant. Ratios compare the naive way with
adp-identity for the same operation (naive ÷ adp-identity, so 2.0 means the naive way sends twice as many).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.naive import NAIVE_RULES

LOOPBACK_NOTE = (
    "Loopback figures: the emulator and the provider host run on this machine over 127.0.0.1. Use them as "
    "ratios between operations and approaches, not as Dataverse latency."
)


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else 0.0


@dataclass(frozen=True)
class OperationFigures:
    """One provider operation through the gRPC host: Dataverse requests, the naive cost, and wall time."""

    operation: str
    reads: int
    writes: int
    naive_reads: int
    naive_writes: int
    samples: int
    median_ms: float
    p95_ms: float
    varied: bool = False  # the request counts differed between samples (they never should without faults)

    @property
    def requests(self) -> int:
        return self.reads + self.writes

    @property
    def naive_requests(self) -> int:
        return self.naive_reads + self.naive_writes

    @property
    def ratio(self) -> float:
        return _ratio(self.naive_requests, self.requests)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests": self.requests, "naive_requests": self.naive_requests, "ratio": self.ratio}


@dataclass(frozen=True)
class HostTokens:
    """What one provider-host process asked Entra ID for over its whole life."""

    host: str
    environments: int
    token_requests: int
    other_entra_requests: int
    dataverse_requests: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FleetRun:
    """Reconciling N application users of one environment through client + reconcile directly."""

    approach: str  # "adp-identity" | "naive"
    latency_ms: int
    workers: int
    users: int
    reads: int
    writes: int
    seconds: float
    token_requests: int
    failures: int
    rerun_reads: int | None = None  # the same users again, nothing to change (adp-identity runs only)
    rerun_writes: int | None = None
    rerun_seconds: float | None = None

    @property
    def requests(self) -> int:
        return self.reads + self.writes

    @property
    def per_user(self) -> float:
        return round(self.requests / self.users, 2) if self.users else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests": self.requests, "requests_per_user": self.per_user}


@dataclass(frozen=True)
class FaultRun:
    """The same N-user reconcile under seeded throttling and lost responses."""

    users: int
    workers: int
    seed: int
    throttle_rate: float
    lost_response_rate: float
    retry_after: int
    reads: int
    writes: int
    throttled: int  # answers 429
    lost_responses: int  # processed, but the answer never arrived
    resends: int  # requests sent again after a wait (Retry-After, or backoff after a lost answer)
    total_wait_seconds: float  # summed over workers
    seconds: float  # wall time
    extra_requests: int  # over the same run without faults
    duplicate_users: int
    duplicate_creates_refused: int  # POST systemusers answered 412: a create replayed for an existing user
    wrong_users: int  # users whose business unit, roles or enabled state differ from the declaration
    failures: int  # ensure calls that raised
    rerun_writes: int  # writes of a clean re-run afterwards (0 = nothing was left to fix)

    @property
    def requests(self) -> int:
        return self.reads + self.writes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests": self.requests}


@dataclass
class BenchReport:
    settings: dict[str, Any]
    machine: dict[str, Any]
    command: str
    operations: list[OperationFigures] = field(default_factory=list)
    hosts: list[HostTokens] = field(default_factory=list)
    fleet: list[FleetRun] = field(default_factory=list)
    faults: list[FaultRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # correctness: duplicates, wrong role sets
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "machine": self.machine,
            "command": self.command,
            "note": LOOPBACK_NOTE,
            "naive_rules": list(NAIVE_RULES),
            "operations": [o.as_dict() for o in self.operations],
            "hosts": [h.as_dict() for h in self.hosts],
            "fleet": [f.as_dict() for f in self.fleet],
            "faults": [f.as_dict() for f in self.faults],
            "problems": list(self.problems),
            "correct": self.correct,
            "seconds": round(self.seconds, 1),
        }


# -- rendering --------------------------------------------------------------------------------------------------


def render(report: BenchReport, console: Console) -> None:
    machine = report.machine
    console.rule("[bold]adp-identity benchmark")
    console.print(
        f"Python {machine['python']} on {machine['platform']}, {machine['cpus']} CPU(s); {report.command}",
        highlight=False,
    )
    console.print(f"[yellow]{LOOPBACK_NOTE}[/yellow]")
    if report.operations:
        console.print(_requests_table(report))
        console.print(
            "[dim]naive = the same plan, sent the way a hand-written script or Microsoft's Terraform "
            "provider (powerplatform_user) sends it:[/dim]"
        )
        for rule in NAIVE_RULES:
            console.print(f"[dim]  - {rule}[/dim]")
        console.print(_timing_table(report))
        console.print(
            "[dim]'first in process' includes the provider host's first token (importing azure-identity, one token "
            "request) and the 2 catalog GETs; the engine's check call before each operation is not timed.[/dim]"
        )
    if report.hosts:
        console.print(_hosts_table(report))
    if report.fleet:
        console.print(_fleet_table(report))
        for line in _budget_lines(report):
            console.print(line)
    if report.faults:
        console.print(_faults_table(report.faults))
    console.rule("[bold]correctness")
    if report.correct:
        console.print("[green]no duplicate application user, every role set exactly as declared[/green]")
    else:
        for problem in report.problems:
            console.print(f"[red]{problem}[/red]", highlight=False)
    console.print(f"took {report.seconds:.1f} s. Reproduce these figures with:")
    console.print(f"  {report.command}", highlight=False, soft_wrap=True)


def _requests_table(report: BenchReport) -> Table:
    table = Table(
        title="1. Dataverse requests per provider operation (through Pulumi's gRPC provider host)", title_justify="left"
    )
    for column in ("operation", "GET", "writes", "total", "naive GET", "naive writes", "naive total", "naive ÷ ours"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for op in report.operations:
        flag = " (varied)" if op.varied else ""
        table.add_row(
            op.operation + flag,
            str(op.reads),
            str(op.writes),
            str(op.requests),
            str(op.naive_reads),
            str(op.naive_writes),
            str(op.naive_requests),
            f"{op.ratio:.2f}x",
        )
    return table


def _timing_table(report: BenchReport) -> Table:
    table = Table(
        title="2. Wall time per provider operation on the loopback emulator (gRPC call to answer)", title_justify="left"
    )
    for column in ("operation", "samples", "median ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for op in report.operations:
        table.add_row(op.operation, str(op.samples), f"{op.median_ms:.1f}", f"{op.p95_ms:.1f}")
    return table


def _hosts_table(report: BenchReport) -> Table:
    table = Table(title="Entra ID token requests per provider-host process", title_justify="left")
    for column in ("provider host", "environments", "token requests", "other Entra requests", "Dataverse requests"):
        table.add_column(column, justify="left" if column == "provider host" else "right")
    for host in report.hosts:
        table.add_row(
            host.host,
            str(host.environments),
            str(host.token_requests),
            str(host.other_entra_requests),
            str(host.dataverse_requests),
        )
    return table


def _fleet_table(report: BenchReport) -> Table:
    users = report.fleet[0].users
    table = Table(
        title=f"3. Reconciling {users} application users of one environment (client + reconcile, ensure in a pool)",
        title_justify="left",
    )
    for column in (
        "approach",
        "latency/request",
        "workers",
        "GET",
        "writes",
        "requests",
        "per user",
        "seconds",
        "re-run (no change)",
    ):
        table.add_column(column, justify="left" if column == "approach" else "right")
    for run in report.fleet:
        rerun = (
            f"{run.rerun_reads} GET, {run.rerun_writes} writes, {run.rerun_seconds:.2f} s"
            if run.rerun_reads is not None and run.rerun_seconds is not None
            else "-"
        )
        approach = "adp-identity" if run.approach == "adp-identity" else "naive: one $ref per role"
        table.add_row(
            approach,
            f"{run.latency_ms} ms",
            str(run.workers),
            str(run.reads),
            str(run.writes),
            str(run.requests),
            f"{run.per_user:.2f}",
            f"{run.seconds:.2f}",
            rerun,
        )
    return table


def _budget_lines(report: BenchReport) -> list[str]:
    lines: list[str] = []
    ours = {(r.latency_ms, r.workers): r for r in report.fleet if r.approach == "adp-identity"}
    for run in report.fleet:
        if run.approach != "naive" or run.latency_ms == 0:
            continue
        mine = ours.get((run.latency_ms, run.workers))
        if mine is None:
            continue
        lines.append(
            f"at {run.latency_ms} ms per request, {run.workers} worker(s): the naive way sends "
            f"{_ratio(run.requests, mine.requests):.2f}x the requests and takes "
            f"{_ratio(run.seconds, mine.seconds):.2f}x the time ({run.seconds:.2f} s vs {mine.seconds:.2f} s)"
        )
    return lines


def _faults_table(runs: list[FaultRun]) -> Table:
    first = runs[0]
    table = Table(
        title=(
            f"4. The same {first.users} users under faults: {first.throttle_rate:.0%} throttled (429, Retry-After "
            f"{first.retry_after} s), {first.lost_response_rate:.0%} lost responses, seed {first.seed}"
        ),
        title_justify="left",
    )
    table.add_column("figure")
    for run in runs:
        table.add_column(f"{run.workers} worker{'s' if run.workers != 1 else ''}", justify="right")
    rows: tuple[tuple[str, Callable[[FaultRun], str]], ...] = (
        ("requests sent (GET / writes)", lambda r: f"{r.requests} ({r.reads} / {r.writes})"),
        ("answered 429 (throttled)", lambda r: str(r.throttled)),
        ("responses lost after processing", lambda r: str(r.lost_responses)),
        ("requests resent after a wait", lambda r: str(r.resends)),
        ("extra requests over the fault-free run", lambda r: str(r.extra_requests)),
        ("total wait (summed over workers)", lambda r: f"{r.total_wait_seconds:.1f} s"),
        ("wall time", lambda r: f"{r.seconds:.1f} s"),
        ("duplicate application users", lambda r: str(r.duplicate_users)),
        ("duplicate creates refused (412)", lambda r: str(r.duplicate_creates_refused)),
        ("users not as declared", lambda r: str(r.wrong_users)),
        ("ensure calls that failed", lambda r: str(r.failures)),
        ("writes of a clean re-run afterwards", lambda r: str(r.rerun_writes)),
    )
    for name, value in rows:
        table.add_row(name, *(value(run) for run in runs))
    return table
