"""``adp-identity plan``: what reconciling the declared Dataverse access would change, without changing anything.

For every environment of the stack it lists the application users (ceil(N/5000) GETs) and reads the role catalog
(2 GETs), asks reconcile for the plan the provider would execute for each declared user, and prints the plans
grouped by environment, then a summary. A service with no stack outputs yet is planned as "to be created": its
business units and roles are resolved all the same, so an unknown name fails the pull request (exit 1) with a
line naming the file, the environment, the name and the closest existing names. It never writes (the client is
read-only) and imports no Pulumi. ``--format markdown`` is one pull-request comment; ``json`` is for machines.

Exit 0 when every environment was read and every name resolved, 1 on any error (one line each, never a traceback
or a token), 130 on Ctrl-C.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from adp_identity.commands._inputs import (
    InputRefused,
    fail,
    interruptible,
    read_environments,
    stack_inputs,
    stack_options,
)
from adp_identity.desired.errors import show
from adp_identity.drift import plan_lines, plan_markdown, report
from providers.dataverse.models import normalise_guid

FORMATS = ("text", "json", "markdown")


def not_guids(values: tuple[str, ...]) -> list[str]:
    """One error line per ``--allow-privileged`` value that is not a GUID."""
    errors: list[str] = []
    for value in values:
        try:
            normalise_guid(value)
        except ValueError:
            errors.append(f"--allow-privileged: {show(value)} is not a GUID; allowed: an application (client) id")
    return errors


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


@click.command(name="plan")
@stack_options(
    identities_required=False,
    identities_help="The stack outputs as `pulumi stack output --json` prints them (JSON or YAML; - reads stdin). "
    "A service they do not name is planned as to be created.",
)
@allow_privileged_option
@format_option
@click.pass_context
def command(
    ctx: click.Context,
    *,
    stacks_dir: Path,
    stack: str,
    identities_file: str | None,
    environment_urls: tuple[str, ...],
    emulator_file: str | None,
    max_retry_wait: float,
    allowed_privileged: tuple[str, ...],
    output_format: str,
) -> None:
    """Show what reconciling the declared Dataverse access would change; writes nothing."""
    with interruptible(ctx, "plan"):
        try:
            inputs = stack_inputs(
                stacks_dir, stack, identities_file, environment_urls, emulator_file, new_services=True
            )
        except InputRefused as exc:
            fail(ctx, [*exc.lines, *not_guids(allowed_privileged)])
            return
        if not_guids(allowed_privileged):
            fail(ctx, not_guids(allowed_privileged))
            return
        readings = read_environments(ctx, "plan", inputs.environments, max_retry_wait)
        stack_report = report(inputs.state, readings, allowed_privileged=allowed_privileged, files=inputs.files)
        if output_format == "json":
            click.echo(json.dumps(stack_report.to_json(), indent=2))
        elif output_format == "markdown":
            click.echo(plan_markdown(stack_report), nl=False)
        else:
            for line in plan_lines(stack_report):
                click.echo(line)
        ctx.exit(1 if stack_report.errors else 0)
