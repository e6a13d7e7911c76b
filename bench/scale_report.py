"""The fleet part's figures: as data (JSON), as tables a person reads (rich), as docs/benchmarks.md and its chart.

Every figure here was measured in the run it describes; ratios are per-resource ÷ adp-identity, so 10x means the
per-resource way sent ten times as many requests (or took ten times as long). The targets (issue 8) are checked
and printed, never asserted: over the whole run at least 10x fewer requests and 5x less wall time than the
per-resource way, 0 answers 429 for adp-identity, and a refresh that costs the same number of requests at every
fleet size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

PHASES = ("create", "refresh", "preview", "update", "audit")
ADP = "adp-identity"
PER_RESOURCE = "per-resource"
REQUESTS_TARGET = 10.0
TIME_TARGET = 5.0


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 1) if denominator else None


def show_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


@dataclass(frozen=True)
class PhaseFigures:
    """One phase of one side: what reached Dataverse (answered, and answered 429) and how long it took."""

    side: str
    phase: str
    users: int
    requests: int  # Dataverse requests answered (not 429); a $batch is one
    reads: int
    writes: int
    batches: int  # of which $batch
    lookups: int  # of which environment lookups (the per-resource way's stand-in GET WhoAmI)
    throttled: int  # answered 429 (sent again after Retry-After; not in ``requests``)
    operations: int  # resource operations the engine sent (create / read / diff / update / delete; audit: users)
    seconds: float
    token_requests: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SideRun:
    side: str
    users: int
    latency_ms: int
    phases: list[PhaseFigures]
    second_run: PhaseFigures
    problems: list[str] = field(default_factory=list)

    def phase(self, name: str) -> PhaseFigures:
        return next(p for p in self.phases if p.phase == name)

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.phases)

    @property
    def seconds(self) -> float:
        return round(sum(p.seconds for p in self.phases), 3)

    @property
    def throttled(self) -> int:
        return sum(p.throttled for p in self.phases)

    @property
    def operations(self) -> int:
        return sum(p.operations for p in self.phases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "users": self.users,
            "latency_ms": self.latency_ms,
            "phases": [p.as_dict() for p in self.phases],
            "second_run": self.second_run.as_dict(),
            "total": {"requests": self.requests, "seconds": self.seconds, "throttled": self.throttled},
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Target:
    name: str
    holds: bool
    detail: str


@dataclass
class ScaleReport:
    machine: dict[str, Any]
    command: str
    latency_ms: int
    limits: dict[str, Any]
    rules: Sequence[str]
    runs: list[SideRun] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)  # e.g. the per-resource way at 1,500 users, and why
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        return [p for run in self.runs for p in run.problems]

    @property
    def correct(self) -> bool:
        return not self.problems

    def run(self, side: str, users: int) -> SideRun | None:
        return next((r for r in self.runs if r.side == side and r.users == users), None)

    @property
    def sizes(self) -> list[int]:
        return sorted({r.users for r in self.runs})

    @property
    def compared(self) -> list[int]:
        """Fleet sizes measured on both sides."""
        return [n for n in self.sizes if self.run(ADP, n) and self.run(PER_RESOURCE, n)]

    def targets(self) -> list[Target]:
        found: list[Target] = []
        for n in self.compared:
            ours, theirs = self.run(ADP, n), self.run(PER_RESOURCE, n)
            assert ours is not None and theirs is not None
            fewer = ratio(theirs.requests, ours.requests)
            faster = ratio(theirs.seconds, ours.seconds)
            found.append(
                Target(
                    f"{n} users: at least {REQUESTS_TARGET:.0f}x fewer requests",
                    fewer is not None and fewer >= REQUESTS_TARGET,
                    f"{theirs.requests:,} vs {ours.requests:,} ({show_ratio(fewer)})",
                )
            )
            found.append(
                Target(
                    f"{n} users: at least {TIME_TARGET:.0f}x less wall time",
                    faster is not None and faster >= TIME_TARGET,
                    f"{theirs.seconds:,.1f} s vs {ours.seconds:,.1f} s ({show_ratio(faster)})",
                )
            )
        for run in (r for r in self.runs if r.side == ADP):
            found.append(
                Target(f"{run.users} users: 0 answers 429 for adp-identity", run.throttled == 0, f"{run.throttled}")
            )
        refreshes = [(r.users, r.phase("refresh").requests) for r in self.runs if r.side == ADP]
        if len(refreshes) > 1:
            counts = {c for _, c in refreshes}
            found.append(
                Target(
                    "adp-identity refresh flat in requests across fleet sizes",
                    len(counts) == 1,
                    ", ".join(f"{n:,} users: {c}" for n, c in refreshes),
                )
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "command": self.command,
            "latency_ms": self.latency_ms,
            "limits": self.limits,
            "per_resource_rules": list(self.rules),
            "runs": [r.as_dict() for r in self.runs],
            "not_measured": list(self.not_measured),
            "targets": [asdict(t) for t in self.targets()],
            "problems": self.problems,
            "correct": self.correct,
            "seconds": round(self.seconds, 1),
        }


# -- tables (terminal) -----------------------------------------------------------------------------------------


def _cells(figures: PhaseFigures | None) -> list[str]:
    if figures is None:
        return ["not run"] + [""] * 3
    return [f"{figures.requests:,}", f"{figures.operations:,}", f"{figures.seconds:,.1f}", f"{figures.throttled:,}"]


def rows(report: ScaleReport, users: int) -> list[list[str]]:
    """Per phase, then the whole run: both sides' requests, operations, seconds, 429s, and the two ratios."""
    ours, theirs = report.run(ADP, users), report.run(PER_RESOURCE, users)
    table = []
    for name in PHASES:
        mine = ours.phase(name) if ours else None
        other = theirs.phase(name) if theirs else None
        table.append(
            [
                name,
                *_cells(mine),
                *_cells(other),
                show_ratio(ratio(other.requests, mine.requests)) if mine and other else "-",
                show_ratio(ratio(other.seconds, mine.seconds)) if mine and other else "-",
            ]
        )
    whole = ["whole run"]
    for run in (ours, theirs):
        whole += (
            [f"{run.requests:,}", f"{run.operations:,}", f"{run.seconds:,.1f}", f"{run.throttled:,}"]
            if run
            else ["not run", "", "", ""]
        )
    whole += [
        show_ratio(ratio(theirs.requests, ours.requests)) if ours and theirs else "-",
        show_ratio(ratio(theirs.seconds, ours.seconds)) if ours and theirs else "-",
    ]
    table.append(whole)
    return table


HEADERS = (
    "phase",
    "adp-identity requests",
    "ops",
    "s",
    "429",
    "per-resource requests",
    "ops",
    "s",
    "429",
    "requests ÷",
    "time ÷",
)


def render(report: ScaleReport, console: Console) -> None:
    console.rule("[bold]adp-identity fleet benchmark")
    machine = report.machine
    console.print(
        f"Python {machine['python']} on {machine['platform']}, {machine['cpus']} CPU(s), commit {machine['commit']}; "
        f"{report.latency_ms} ms per Dataverse request; limits {report.limits}",
        highlight=False,
    )
    for users in report.sizes:
        table = Table(title=f"{users:,} application users (3 environments)", title_justify="left")
        for i, column in enumerate(HEADERS):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows(report, users):
            table.add_row(*row)
        console.print(table)
        for run in (report.run(ADP, users), report.run(PER_RESOURCE, users)):
            if run is not None:
                again = run.second_run
                console.print(
                    f"  {run.side} second run (refresh + preview): {again.requests:,} requests, "
                    f"{again.writes} writes, {again.seconds:,.1f} s",
                    highlight=False,
                )
    for line in report.not_measured:
        console.print(f"[yellow]not measured: {line}[/yellow]", highlight=False)
    console.rule("[bold]targets (issue 8)")
    for target in report.targets():
        mark = "[green]holds[/green]" if target.holds else "[red]does NOT hold[/red]"
        console.print(f"{mark}  {target.name}: {target.detail}", highlight=False)
    console.rule("[bold]correctness")
    if report.correct:
        console.print("[green]exact roles, no duplicate application user, a clean second run on every side[/green]")
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]", highlight=False)
    console.print(f"took {report.seconds:,.0f} s. Reproduce with:\n  {report.command}", highlight=False, soft_wrap=True)
