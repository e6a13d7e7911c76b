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

import click

from adp_identity.commands._inputs import (
    Rendering,
    StackArgs,
    allow_privileged_option,
    format_option,
    run_report,
    stack_options,
)
from adp_identity.drift import audit_lines, audit_markdown

EXIT_DRIFT = 2

AUDIT = Rendering(
    command="audit",
    new_services=False,
    text=audit_lines,
    markdown=audit_markdown,
    exit_code=lambda report: 1 if report.errors else EXIT_DRIFT if report.has_drift else 0,
    interrupted="the audit is incomplete",
)


@click.command(name="audit")
@stack_options(
    identities_required=True,
    identities_help="The stack outputs as `pulumi stack output --json` prints them (JSON or YAML; - reads stdin).",
)
@allow_privileged_option
@format_option
@click.pass_context
def command(
    ctx: click.Context, *, stack_args: StackArgs, allowed_privileged: tuple[str, ...], output_format: str
) -> None:
    """Compare live Dataverse application users and roles with the declared state; exit 2 on drift."""
    run_report(ctx, AUDIT, stack_args, allowed_privileged=allowed_privileged, output_format=output_format)
