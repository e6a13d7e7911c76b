"""``adp-identity audit``: report exactly where Dataverse differs from what the stack declares.

It reads what ``plan`` reads and reports the same plans in audit's words (one computation, so the two cannot
disagree): per declared application user missing, enabled/disabled the other way, in another business unit
(actual vs declared), extra and missing roles (names); per environment the application users the stack does not
manage that hold a privileged role (System Administrator, System Customizer, or the stack's forbidden roles), so a
grant made by hand in the admin centre is noticed the next time the scheduled audit runs.

Exit 0 when nothing differs, 2 when drift was found (a scheduled CI job fails and its log says what changed),
1 on errors (one line each; errors win over drift because the audit is then incomplete), 130 on Ctrl-C.
``--format json`` prints `StackReport.to_json()` for machines, ``markdown`` one comment for a pull request or a
run summary. Reads only: ceil(N/5000) GETs for the N application users and the role catalog (2 GETs) per
environment.
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
from adp_identity.commands.plan import allow_privileged_option, format_option, not_guids
from adp_identity.drift import audit_lines, audit_markdown, report

EXIT_DRIFT = 2


@click.command(name="audit")
@stack_options(
    identities_required=True,
    identities_help="The stack outputs as `pulumi stack output --json` prints them (JSON or YAML; - reads stdin).",
)
@allow_privileged_option
@format_option
@click.pass_context
def command(
    ctx: click.Context,
    *,
    stacks_dir: Path,
    stack: str,
    identities_file: str,
    environment_urls: tuple[str, ...],
    emulator_file: str | None,
    max_retry_wait: float,
    allowed_privileged: tuple[str, ...],
    output_format: str,
) -> None:
    """Compare live Dataverse application users and roles with the declared state; exit 2 on drift."""
    with interruptible(ctx, "audit", "the audit is incomplete"):
        try:
            inputs = stack_inputs(
                stacks_dir, stack, identities_file, environment_urls, emulator_file, new_services=False
            )
        except InputRefused as exc:
            fail(ctx, [*exc.lines, *not_guids(allowed_privileged)])
            return
        if not_guids(allowed_privileged):
            fail(ctx, not_guids(allowed_privileged))
            return
        readings = read_environments(ctx, "audit", inputs.environments, max_retry_wait)
        stack_report = report(inputs.state, readings, allowed_privileged=allowed_privileged, files=inputs.files)
        if output_format == "json":
            click.echo(json.dumps(stack_report.to_json(), indent=2))
        elif output_format == "markdown":
            click.echo(audit_markdown(stack_report), nl=False)
        else:
            for line in audit_lines(stack_report):
                click.echo(line)
        ctx.exit(1 if stack_report.errors else EXIT_DRIFT if stack_report.has_drift else 0)
