"""``adp-identity plan``: what reconciling the declared Dataverse access would change, without changing anything.

For every (service, environment) of the stack it reads the application user (1 GET) and the environment's role
catalog (2 GETs, once), asks reconcile for the plan the provider would execute, and prints its operations,
grouped by environment, then a summary. It never writes (the client refuses writes) and imports no Pulumi.

The application ids come from the stack outputs (``--identities``: what ``pulumi stack output --json`` prints,
``-`` for stdin); environment URLs from the stack settings, overridable with ``--environment-url NAME=URL``.
Exit 0 when every environment was read, 1 on any error (one line each, never a traceback or a token).

The options and input handling here are shared with ``adp-identity audit``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from adp_identity.desired import DesiredState, DesiredStateErrors, load_tree
from adp_identity.desired.errors import DOCUMENT, DesiredStateError
from adp_identity.drift import (
    EnvironmentReading,
    EnvironmentTarget,
    ReadOnlyDataverseClient,
    UserReading,
    environment_overrides,
    parse_identities,
    read_stack,
    targets,
)
from providers.dataverse.reconcile import AdoptUser

F = TypeVar("F", bound=Callable[..., Any])
_STDIN = "-"


def stack_options(function: F) -> F:
    """The options ``plan`` and ``audit`` share."""
    decorators = (
        click.option(
            "--stacks",
            "stacks_dir",
            type=click.Path(path_type=Path),
            default=Path("stacks"),
            show_default=True,
            help="The stacks directory (Pulumi stackConfigDir).",
        ),
        click.option("--stack", required=True, help="The stack (Entra tenant), e.g. defradev."),
        click.option(
            "--identities",
            "identities_file",
            required=True,
            metavar="FILE",
            help="The stack outputs as `pulumi stack output --json` prints them (JSON or YAML); - reads stdin.",
        ),
        click.option(
            "--environment-url",
            "environment_urls",
            multiple=True,
            metavar="NAME=URL",
            help="Read environment NAME at URL instead of the stack settings' URL (repeatable).",
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
        function = decorator(function)
    return function


@dataclass(frozen=True)
class StackInputs:
    state: DesiredState
    environments: tuple[EnvironmentTarget, ...]


class InputRefused(Exception):
    """The inputs cannot be used; ``lines`` are the one-line errors to print."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


def stack_inputs(stacks_dir: Path, stack: str, identities_file: str, environment_urls: Sequence[str]) -> StackInputs:
    """Load the stack, the identities and the overrides; `InputRefused` with every error found."""
    try:
        state = load_tree(stacks_dir, stack)[stack]
        source = "(stdin)" if identities_file == _STDIN else identities_file
        identities = parse_identities(_read_identities(identities_file, source), source)
        urls = environment_overrides(environment_urls, state)
        return StackInputs(state, targets(state, identities, urls, source=source))
    except DesiredStateErrors as exc:
        raise InputRefused([str(error) for error in exc.errors]) from None


def _read_identities(identities_file: str, source: str) -> bytes:
    if identities_file == _STDIN:
        return sys.stdin.buffer.read()
    try:
        return Path(identities_file).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DesiredStateErrors(
            [DesiredStateError(source, DOCUMENT, f"cannot be read ({reason})", "a readable JSON or YAML file")]
        ) from None


def connector(max_retry_wait: float) -> Callable[[EnvironmentTarget], ReadOnlyDataverseClient]:
    """One read-only client per environment, signing in as DefaultAzureCredential does (AZURE_* variables).

    azure-identity logs a failed token request as a multi-line WARNING (with Entra's full answer); the command
    reports that failure itself, as one line, so the SDK's log records get a handler that drops them.
    """
    sdk_logger = logging.getLogger("azure")
    if not any(isinstance(handler, logging.NullHandler) for handler in sdk_logger.handlers):
        sdk_logger.addHandler(logging.NullHandler())

    def connect(environment: EnvironmentTarget) -> ReadOnlyDataverseClient:
        return ReadOnlyDataverseClient(environment.url, max_retry_wait=max_retry_wait)

    return connect


def fail(ctx: click.Context, lines: Sequence[str]) -> None:
    """Print input errors on stderr, one line each (nothing was read); exit 1."""
    for line in lines:
        click.echo(line, err=True)
    ctx.exit(1)


def count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def principal_label(reading: UserReading) -> str:
    target = reading.target
    kind = "app registration" if target.principal == "app_registration" else "managed identity"
    return f"{kind} {target.desired.application_id}"


# -- the command ------------------------------------------------------------------------------------------------


@click.command(name="plan")
@stack_options
@click.pass_context
def command(
    ctx: click.Context,
    *,
    stacks_dir: Path,
    stack: str,
    identities_file: str,
    environment_urls: tuple[str, ...],
    max_retry_wait: float,
) -> None:
    """Show what reconciling the declared Dataverse access would change; writes nothing."""
    try:
        inputs = stack_inputs(stacks_dir, stack, identities_file, environment_urls)
    except InputRefused as exc:
        fail(ctx, exc.lines)
        return
    try:
        readings = read_stack(inputs.environments, connector(max_retry_wait))
    except Exception as exc:  # a bug must still not print a traceback (or anything a token could hide in)
        click.echo(f"plan: internal error ({type(exc).__name__}); please report it", err=True)
        ctx.exit(1)
        return
    errors = render(readings)
    ctx.exit(1 if errors else 0)


def render(readings: Sequence[EnvironmentReading]) -> int:
    """Print the plan grouped by environment, then the summary; returns the number of errors printed."""
    users = changing = up_to_date = writes = errors = 0
    for reading in readings:
        environment = reading.environment
        click.echo(f"{environment.name} ({environment.url})")
        for user in reading.users:
            users += 1
            name = user.target.service
            if user.errors or user.plan is None:
                errors += len(user.errors)
                for message in user.errors:
                    click.echo(f"  {name}: error: {message}")
                continue
            lines = _plan_lines(user)
            if not lines:
                up_to_date += 1
                click.echo(f"  {name}: up to date")
                continue
            changing += 1
            writes += user.plan.writes
            click.echo(f"  {name} ({principal_label(user)}): {count(user.plan.writes, 'write request')}")
            for line in lines:
                click.echo(f"    - {line}")
        if reading.error is not None:
            errors += 1
            click.echo(f"{environment.name}: error: cannot read the environment: {reading.error}")
    summary = (
        f"plan: {changing} of {count(users, 'application user')} would change "
        f"({count(writes, 'write request')}); {up_to_date} up to date; {count(len(readings), 'environment')} read; "
        "nothing was written"
    )
    if errors:
        summary += f"; {count(errors, 'error')}"
    click.echo(summary)
    return errors


def _plan_lines(user: UserReading) -> tuple[str, ...]:
    """The plan's lines; adopting is only news when the stack's state names another user."""
    assert user.plan is not None
    operations = [
        op for op in user.plan.operations if user.target.managed_id is not None or not isinstance(op, AdoptUser)
    ]
    return tuple(line for op in operations for line in op.lines())
