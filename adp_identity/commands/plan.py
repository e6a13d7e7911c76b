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

import click

from adp_identity.commands._inputs import (
    Rendering,
    StackArgs,
    allow_privileged_option,
    format_option,
    run_report,
    stack_options,
)
from adp_identity.drift import plan_lines, plan_markdown

PLAN = Rendering(
    command="plan",
    new_services=True,
    text=plan_lines,
    markdown=plan_markdown,
    exit_code=lambda report: 1 if report.errors else 0,
    interrupted="nothing was written",
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
    ctx: click.Context, *, stack_args: StackArgs, allowed_privileged: tuple[str, ...], output_format: str
) -> None:
    """Show what reconciling the declared Dataverse access would change; writes nothing."""
    run_report(ctx, PLAN, stack_args, allowed_privileged=allowed_privileged, output_format=output_format)
