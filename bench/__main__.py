"""``python -m bench`` (``make bench``): measure, print the figures, optionally write them as JSON.

``python -m bench`` measures each provider operation and a single environment's reconcile (parts 1-4);
``python -m bench fleet`` measures a whole fleet side by side with the per-resource way (``bench/scale.py``) and,
with ``--write-docs``, writes docs/benchmarks.md and docs/benchmarks.svg (``make bench-fleet``).

Exit status: 0 when every run left Dataverse exactly as declared; 1 when a duplicate application user or a wrong
role set was found (correctness, not speed); 2 when the benchmark itself could not run. The fleet's targets are
printed, never turned into an exit status: they are measurements.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from bench.report import render
from bench.run import QUICK, BenchSettings, machine, run_benchmark
from bench.scale import run_fleet
from bench.scale_docs import CHART, MARKDOWN
from bench.scale_docs import write_docs as write_docs_files
from bench.scale_report import render as render_fleet

FLEET_SIZES = (100, 500, 1500)
FLEET_LATENCY_MS = 50
# `make bench` stops the slow per-resource way at 500 users; `make bench-fleet` (docs/benchmarks.md) runs it at 1,500
PER_RESOURCE_MAX_USERS = 500


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Tiny sizes (a smoke run of every part); overrides the sizes below.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=BenchSettings.repeat,
    show_default=True,
    help="Samples per provider operation.",
)
@click.option(
    "--first-repeat",
    type=click.IntRange(min=1),
    default=BenchSettings.first_repeat,
    show_default=True,
    help="Fresh provider-host processes per role count (first create in a process).",
)
@click.option(
    "--role-count",
    "role_counts",
    type=click.IntRange(1, 10),
    multiple=True,
    default=BenchSettings.role_counts,
    show_default=True,
    help="Roles per created user (repeatable).",
)
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=BenchSettings.users,
    show_default=True,
    help="Application users reconciled in parts 3 and 4.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    multiple=True,
    default=BenchSettings.workers,
    show_default=True,
    help="Thread-pool sizes for part 3 (repeatable).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=BenchSettings.latency_ms,
    show_default=True,
    help="Emulated latency per Dataverse request in part 3 (0 ms is always run too).",
)
@click.option(
    "--fault-workers",
    type=click.IntRange(min=1),
    multiple=True,
    default=BenchSettings.fault_workers,
    show_default=True,
    help="Thread-pool sizes for the runs under faults (repeatable; 1 worker repeats exactly from the seed).",
)
@click.option(
    "--fault-seed",
    type=int,
    default=BenchSettings.fault_seed,
    show_default=True,
    help="Seed of the fault draws (and of the client's backoff jitter).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the figures to this file as JSON.",
)
@click.pass_context
def main(
    ctx: click.Context,
    *,
    quick: bool,
    repeat: int,
    first_repeat: int,
    role_counts: tuple[int, ...],
    users: int,
    workers: tuple[int, ...],
    latency_ms: int,
    fault_workers: tuple[int, ...],
    fault_seed: int,
    json_path: str | None,
) -> None:
    """Measure request counts and loopback timings of the Dataverse ApplicationUser provider."""
    if ctx.invoked_subcommand is not None:
        return
    settings = (
        QUICK
        if quick
        else BenchSettings(
            repeat=repeat,
            first_repeat=first_repeat,
            role_counts=tuple(role_counts),
            users=users,
            workers=tuple(workers),
            latency_ms=latency_ms,
            fault_workers=tuple(fault_workers),
            fault_seed=fault_seed,
        )
    )
    # A log or a pipe gets a width the tables fit in; a terminal keeps its own.
    console = Console() if sys.stdout.isatty() else Console(width=132)
    progress = Console(stderr=True)
    try:
        report = run_benchmark(
            settings,
            command=settings.command(json_path),
            progress=lambda step: progress.print(f"[dim]measuring {step}…[/dim]", highlight=False),
        )
    except Exception as exc:  # one line, never a traceback (a provider error carries the host's traceback)
        console.print(f"[red]bench could not run: {type(exc).__name__}: {_one_line(exc)}[/red]", highlight=False)
        sys.exit(2)
    render(report, console)
    if json_path:
        Path(json_path).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}", highlight=False)
    sys.exit(0 if report.correct else 1)


@main.command(name="fleet")
@click.option(
    "--fleet-users",
    "sizes",
    type=click.IntRange(min=1),
    multiple=True,
    default=FLEET_SIZES,
    show_default=True,
    help="Application users in the fleet, over 3 environments (repeatable: how the cost grows).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=FLEET_LATENCY_MS,
    show_default=True,
    help="Emulated latency per Dataverse request.",
)
@click.option(
    "--per-resource-max-users",
    type=click.IntRange(min=0),
    default=PER_RESOURCE_MAX_USERS,
    show_default=True,
    help="Measure the per-resource way only up to this fleet size (it is slow by design); never extrapolated.",
)
@click.option("--write-docs", is_flag=True, help="Write docs/benchmarks.md and docs/benchmarks.svg from this run.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the figures to this file as JSON.",
)
def fleet(
    *, sizes: tuple[int, ...], latency_ms: int, per_resource_max_users: int, write_docs: bool, json_path: str | None
) -> None:
    """A fleet through the provider host, side by side with the per-resource way, at the documented limits."""
    console = Console() if sys.stdout.isatty() else Console(width=160)
    progress = Console(stderr=True)
    started = time.monotonic()
    command = fleet_command(sizes, latency_ms, per_resource_max_users, write_docs=write_docs)
    try:
        report = run_fleet(
            sizes,
            latency_ms=latency_ms,
            per_resource_max_users=per_resource_max_users,
            command=command,
            machine=machine(),
            progress=lambda step: progress.print(
                f"[dim]{time.monotonic() - started:6.0f} s  measuring {step}…[/dim]", highlight=False
            ),
        )
    except Exception as exc:  # one line, never a traceback
        console.print(f"[red]bench fleet could not run: {type(exc).__name__}: {_one_line(exc)}[/red]", highlight=False)
        sys.exit(2)
    render_fleet(report, console)
    if json_path:
        Path(json_path).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}", highlight=False)
    if write_docs:
        write_docs_files(report)
        console.print(f"wrote {MARKDOWN} and {CHART}", highlight=False)
    sys.exit(0 if report.correct else 1)


def fleet_command(sizes: tuple[int, ...], latency_ms: int, per_resource_max_users: int, *, write_docs: bool) -> str:
    """The command line that reproduces a fleet run with exactly these settings."""
    parts = [".venv/bin/python -m bench fleet", *(f"--fleet-users {n}" for n in sizes)]
    parts += [f"--latency-ms {latency_ms}", f"--per-resource-max-users {per_resource_max_users}"]
    if write_docs:
        parts.append("--write-docs")
    return " ".join(parts)  # --json only says where to copy the figures: it changes none of them


def _one_line(error: Exception) -> str:
    """What a person reads first: a provider-host error's last line, else the message's first line."""
    last_line = getattr(error, "last_line", None)
    if isinstance(last_line, str) and last_line:
        return last_line
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


if __name__ == "__main__":
    main()
