"""What a benchmark run measures (its settings) and the run itself, from settings to a :class:`BenchReport`."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from adp_identity_emulator import Emulator
from bench.fleet import fault_run, fleet_run
from bench.operations import applications_needed, measure_operations
from bench.report import BenchReport
from bench.seed import bench_application_ids, bench_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
APPROACHES = ("adp-identity", "naive")


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of a run. The defaults are the published figures; :data:`QUICK` is for a smoke run."""

    repeat: int = 20  # samples per provider operation (wall time: median and p95)
    first_repeat: int = 3  # fresh provider-host processes per role count, for "first in process"
    role_counts: tuple[int, ...] = (1, 3, 10)
    users: int = 50  # application users reconciled in parts 3 and 4
    workers: tuple[int, ...] = (1, 4)
    latency_ms: int = 20  # emulated latency per Dataverse request in part 3 (0 ms is always run too)
    fault_workers: tuple[int, ...] = (1, 4)  # 1 worker: the fault draws, and so the figures, repeat exactly
    fault_seed: int = 1401
    throttle_rate: float = 0.10
    lost_response_rate: float = 0.05
    retry_after: int = 1  # seconds, in every 429

    def __post_init__(self) -> None:
        if self.repeat < 1 or self.first_repeat < 1 or self.users < 1:
            raise ValueError("repeat, first-repeat and users must be at least 1")
        for name, pools in (("workers", self.workers), ("fault-workers", self.fault_workers)):
            if not pools or any(w < 1 for w in pools):
                raise ValueError(f"{name} must be one or more positive numbers")
        if self.latency_ms < 0:
            raise ValueError("latency-ms must not be negative")

    def command(self, json_path: str | None = None) -> str:
        """The command line that reproduces a run with exactly these settings."""
        parts = [
            ".venv/bin/python -m bench",
            f"--repeat {self.repeat}",
            f"--first-repeat {self.first_repeat}",
            f"--users {self.users}",
            *(f"--workers {w}" for w in self.workers),
            f"--latency-ms {self.latency_ms}",
            *(f"--fault-workers {w}" for w in self.fault_workers),
            f"--fault-seed {self.fault_seed}",
        ]
        if self.role_counts != BenchSettings.role_counts:
            parts += [f"--role-count {k}" for k in self.role_counts]
        if json_path:
            parts.append(f"--json {json_path}")
        return " ".join(parts)


QUICK = BenchSettings(repeat=3, first_repeat=1, users=8, fault_workers=(4,))


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "commit": _commit(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _commit() -> str | None:
    try:
        done = subprocess.run(  # local git only; no network
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def run_benchmark(
    settings: BenchSettings, *, command: str | None = None, progress: Callable[[str], None] = lambda _: None
) -> BenchReport:
    """Measure everything ``settings`` asks for; correctness problems are collected in ``report.problems``."""
    started = time.perf_counter()
    report = BenchReport(settings=asdict(settings), machine=machine(), command=command or settings.command())

    progress("1-2. provider operations through the gRPC provider host")
    seed = bench_seed(applications_needed(settings.repeat, settings.first_repeat, settings.role_counts))
    with Emulator(seed) as emulator:
        operations = measure_operations(
            emulator,
            bench_application_ids(seed),
            repeat=settings.repeat,
            first_repeat=settings.first_repeat,
            role_counts=settings.role_counts,
        )
    report.operations = operations.operations
    report.hosts = operations.hosts
    report.problems += operations.problems

    latencies = sorted({0, settings.latency_ms})
    for latency_ms in latencies:
        for approach in APPROACHES:
            for workers in settings.workers:
                progress(f"3. {settings.users} users: {approach}, {latency_ms} ms per request, {workers} worker(s)")
                run, problems = fleet_run(
                    settings.users,
                    approach=approach,
                    latency_ms=latency_ms,
                    workers=workers,
                    rerun=approach == "adp-identity",
                )
                report.fleet.append(run)
                report.problems += problems

    clean = next(r for r in report.fleet if r.approach == "adp-identity" and r.latency_ms == 0)
    for workers in settings.fault_workers:
        progress(f"4. {settings.users} users under faults, {workers} worker(s)")
        faulted, problems = fault_run(
            settings.users,
            workers=workers,
            seed=settings.fault_seed,
            throttle_rate=settings.throttle_rate,
            lost_response_rate=settings.lost_response_rate,
            retry_after=settings.retry_after,
            clean_requests=clean.requests,
        )
        report.faults.append(faulted)
        report.problems += problems
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["QUICK", "BenchSettings", "run_benchmark"]
