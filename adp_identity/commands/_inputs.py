"""What ``plan``, ``audit`` and ``export`` share: their options, reading their inputs, and running a read.

Inputs (every problem is one line naming the file or option, the key and what is allowed; all are reported
together, and nothing is read from Dataverse until every input is good):

* ``--stacks`` / ``--stack``: the desired state, checked by the loader ``validate`` uses;
* ``--identities FILE`` (``-``: stdin): the stack outputs, read bounded (`adp_identity.drift.identities`);
* where each environment is read: ``--environment-url NAME=URL``, else the emulator (``--emulator FILE``, its
  ``--json-file``; or its ``DATAVERSE_URL_*`` variables), else the stack settings (`adp_identity.drift.sandbox`).

Running: the credential is ``DefaultAzureCredential`` from the ``AZURE_*`` variables (what the emulator prints, or
the pipeline's read-only service connection). Before any Dataverse request every environment's token must carry
the stack's tenant (a wrong tenant is one line, exit 1). Progress is drawn on stderr only when it is a terminal and
``CI`` is unset; Ctrl-C stops with one line and exit 130.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import click

from adp_identity.commands._options import fail, one_stack
from adp_identity.desired import DesiredState, DesiredStateErrors, load_tree
from adp_identity.desired.errors import show
from adp_identity.drift import (
    DriftInputErrors,
    EnvironmentReading,
    EnvironmentTarget,
    ServiceFiles,
    ServiceIdentity,
    WrongTenant,
    connect_read_only,
    environment_overrides,
    read_emulator_description,
    read_identities,
    read_stack,
    report,
    sandbox_urls,
    targets,
)
from adp_identity.drift.report import StackReport
from providers.dataverse.models import normalise_guid

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


@dataclass(frozen=True)
class StackArgs:
    """The values of the options ``plan``, ``audit`` and ``export`` share (`stack_options`)."""

    stacks_dir: Path
    stack: str
    identities_file: str | None
    environment_urls: tuple[str, ...]
    emulator_file: str | None
    max_retry_wait: float


def stack_options(*, identities_required: bool, identities_help: str) -> Callable[[F], F]:
    """The options ``plan``, ``audit`` and ``export`` share, handed to the command as one ``stack_args``."""

    def apply(function: F) -> F:
        @functools.wraps(function)  # keeps the options declared below (click's __click_params__)
        def packed(*args: Any, **kwargs: Any) -> Any:
            values = {field.name: kwargs.pop(field.name) for field in fields(StackArgs)}
            return function(*args, stack_args=StackArgs(**values), **kwargs)

        wrapped: Any = packed
        decorators = (
            click.option(
                "--identities",
                "identities_file",
                required=identities_required,
                default=None,
                metavar="FILE",
                help=identities_help,
            ),
            click.option(
                "--environment-url",
                "environment_urls",
                multiple=True,
                metavar="NAME=URL",
                help="Read environment NAME at URL instead of the stack settings' URL (repeatable).",
            ),
            click.option(
                "--emulator",
                "emulator_file",
                default=None,
                metavar="FILE",
                help="Read the environments from the local emulator its --json-file describes (the stack's tenant "
                "is the emulator tenant of the same name). Without it, DATAVERSE_URL_* variables the emulator "
                "printed are used.",
            ),
            click.option(
                "--max-retry-wait",
                type=click.FloatRange(min=0),
                default=60.0,
                show_default=True,
                help="Seconds to wait at most on throttling and retries of one request (0: fail at once).",
            ),
        )
        for decorator in reversed(decorators):
            wrapped = decorator(wrapped)
        result: F = one_stack(wrapped)  # --stacks and --stack, as graph and import-ids have them
        return result

    return apply


@dataclass(frozen=True)
class StackInputs:
    state: DesiredState
    environments: tuple[EnvironmentTarget, ...]
    identities: Mapping[str, ServiceIdentity] | None
    files: ServiceFiles


class InputRefused(Exception):
    """The inputs cannot be used; ``lines`` are the one-line errors to print."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


def stack_inputs(
    args: StackArgs,
    *,
    new_services: bool,
    declared_users: bool = True,
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
) -> StackInputs:
    """Load the stack, the identities and where to read; `InputRefused` with every error found.

    ``declared_users=False`` (``export``): the environments are read for what they hold, so the identities are not
    checked against the declared users (they may name services that have no file yet).
    """
    stacks_dir, stack, identities_file, emulator_file = (
        args.stacks_dir,
        args.stack,
        args.identities_file,
        args.emulator_file,
    )
    environment_urls = args.environment_urls
    lines: list[str] = []
    state: DesiredState | None = None
    identities: dict[str, ServiceIdentity] | None = None
    try:
        state = load_tree(stacks_dir, stack)[stack]
    except DesiredStateErrors as exc:
        lines += [str(error) for error in exc.errors]
    if identities_file is not None:
        try:
            identities = read_identities(identities_file, stdin=stdin)
        except DriftInputErrors as exc:
            lines += [str(error) for error in exc.errors]
    if state is not None:
        try:
            overrides = environment_overrides(environment_urls, state)
            description = read_emulator_description(emulator_file) if emulator_file is not None else None
            sandbox = sandbox_urls(
                state,
                description=description,
                environ=os.environ if environ is None else environ,
                overridden=frozenset(overrides),
            )
            urls = {**sandbox.urls, **overrides}
            url_from = {**sandbox.url_from, **{name: "--environment-url" for name in overrides}}
            if not lines:
                source = "(stdin)" if identities_file == "-" else identities_file or "identities"
                environments = targets(
                    state,
                    identities if declared_users else None,
                    urls,
                    source=source,
                    new_services=new_services,
                    tenant_id=sandbox.tenant_id,
                    url_from=url_from,
                )
                return StackInputs(state, environments, identities, ServiceFiles(stacks_dir, stack))
        except DriftInputErrors as exc:
            lines += [str(error) for error in exc.errors]
    raise InputRefused(lines)


def progress_wanted(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Progress goes to a person's terminal only: stderr must be a TTY, and CI (any CI system sets it) unset."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return interactive and not environ.get("CI")


@contextmanager
def progress_bar(
    what: str, *, stream: TextIO | None = None
) -> Iterator[Callable[[int, int, EnvironmentTarget], None] | None]:
    """A `read_stack` progress callback drawing a transient bar on stderr, or None when no one is watching."""
    stream = stream or sys.stderr
    if not progress_wanted(stream, os.environ):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int, environment: EnvironmentTarget) -> None:
            label = f"{what}: {environment.name}" if done < total else f"{what}: done"
            bar.update(task, completed=done, total=total, description=label)

        yield update


def quiet_sdk_logs() -> None:
    """azure-identity logs a failed token request as a multi-line WARNING (with Entra's full answer); the
    commands report that failure themselves, as one line, so the SDK's log records get a handler that drops them."""
    sdk_logger = logging.getLogger("azure")
    if not any(isinstance(handler, logging.NullHandler) for handler in sdk_logger.handlers):
        sdk_logger.addHandler(logging.NullHandler())


def read_environments(
    ctx: click.Context, command: str, environments: Sequence[EnvironmentTarget], max_retry_wait: float
) -> tuple[EnvironmentReading, ...]:
    """Read every environment (tenant check first), with progress; a wrong tenant or a bug exits with one line."""
    quiet_sdk_logs()
    try:
        with progress_bar(f"{command}: reading {len(environments)} environments") as progress:
            return read_stack(environments, connect_read_only(max_retry_wait), progress=progress)
    except WrongTenant as exc:
        hint = ""
        if any(e.url_from.startswith("DATAVERSE_URL_") for e in environments):
            hint = " (the emulator's tenants have ids of their own: pass --emulator <its --json-file>)"
        click.echo(f"{command}: refused: {exc}{hint}; nothing was sent to Dataverse", err=True)
        ctx.exit(1)
    except Exception as exc:  # a bug must still not print a traceback (or anything a token could hide in)
        click.echo(f"{command}: internal error ({type(exc).__name__}); please report it", err=True)
        ctx.exit(1)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def interruptible(ctx: click.Context, command: str, consequence: str = "nothing was written") -> Iterator[None]:
    """Ctrl-C anywhere inside: one line on stderr, exit 130 (click would print "Aborted!" and exit 1)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"{command}: interrupted; {consequence}", err=True)
        ctx.exit(EXIT_INTERRUPTED)


# -- plan and audit: one report, two readings of it -------------------------------------------------------------

FORMATS = ("text", "json", "markdown")

allow_privileged_option = click.option(
    "--allow-privileged",
    "allowed_privileged",
    multiple=True,
    metavar="APPLICATION_ID",
    help="An unmanaged application user whose privileged roles are known and accepted, e.g. a break-glass "
    "administrator (repeatable).",
)

format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people and CI logs, markdown for a pull-request comment, json for machines.",
)


def not_guids(values: Sequence[str]) -> list[str]:
    """One error line per ``--allow-privileged`` value that is not a GUID."""
    errors: list[str] = []
    for value in values:
        try:
            normalise_guid(value)
        except ValueError:
            errors.append(f"--allow-privileged: {show(value)} is not a GUID; allowed: an application (client) id")
    return errors


@dataclass(frozen=True)
class Rendering:
    """How one command prints the shared report, and the exit code it gives."""

    command: str
    new_services: bool  # plan: services without stack outputs are planned as to be created
    text: Callable[[StackReport], list[str]]
    markdown: Callable[[StackReport], str]
    exit_code: Callable[[StackReport], int]
    interrupted: str


def run_report(
    ctx: click.Context, rendering: Rendering, args: StackArgs, *, allowed_privileged: Sequence[str], output_format: str
) -> None:
    """``plan`` and ``audit``: read the inputs, read the environments, build the one report, print it, exit."""
    with interruptible(ctx, rendering.command, rendering.interrupted):
        try:
            inputs = stack_inputs(args, new_services=rendering.new_services)
        except InputRefused as exc:
            fail(ctx, [*exc.lines, *not_guids(allowed_privileged)])
            return
        if not_guids(allowed_privileged):
            fail(ctx, not_guids(allowed_privileged))
            return
        readings = read_environments(ctx, rendering.command, inputs.environments, args.max_retry_wait)
        stack_report = report(inputs.state, readings, allowed_privileged=allowed_privileged, files=inputs.files)
        if output_format == "json":
            click.echo(json.dumps(stack_report.to_json(), indent=2))
        elif output_format == "markdown":
            click.echo(rendering.markdown(stack_report), nl=False)
        else:
            for line in rendering.text(stack_report):
                click.echo(line)
        ctx.exit(rendering.exit_code(stack_report))
