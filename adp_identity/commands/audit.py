"""``adp-identity audit``: report exactly where Dataverse differs from what the stack declares.

Per declared application user: missing, enabled/disabled the other way, in another business unit (actual vs
declared), extra roles and missing roles (names). Per environment: application users the stack does not manage
that hold a privileged role (System Administrator, System Customizer, or the stack's forbidden roles), so a
grant made by hand in the admin centre is noticed the next time the scheduled audit runs.

Exit 0 when nothing differs, 2 when drift was found (a scheduled CI job fails and its log says what changed),
1 on errors (one line each; errors win over drift because the audit is then incomplete). ``--format json``
prints `AuditReport.to_json()` for machines. Reads only: 1 GET per declared user, the role catalog (2 GETs) and
the list of application users (1 GET per 5000) once per environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from adp_identity.commands.plan import InputRefused, connector, count, fail, stack_inputs, stack_options
from adp_identity.desired.errors import show
from adp_identity.drift import AuditReport, PrivilegedUser, UserDrift, audit, read_stack
from providers.dataverse.models import normalise_guid

EXIT_DRIFT = 2


def _not_guids(values: Sequence[str]) -> list[str]:
    """One error line per ``--allow-privileged`` value that is not a GUID."""
    errors: list[str] = []
    for value in values:
        try:
            normalise_guid(value)
        except ValueError:
            errors.append(f"--allow-privileged: {show(value)} is not a GUID; allowed: an application (client) id")
    return errors


@click.command(name="audit")
@stack_options
@click.option(
    "--allow-privileged",
    "allowed_privileged",
    multiple=True,
    metavar="APPLICATION_ID",
    help="An unmanaged application user whose privileged roles are known and accepted, e.g. a break-glass "
    "administrator (repeatable).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for machines.",
)
@click.pass_context
def command(
    ctx: click.Context,
    *,
    stacks_dir: Path,
    stack: str,
    identities_file: str,
    environment_urls: tuple[str, ...],
    max_retry_wait: float,
    allowed_privileged: tuple[str, ...],
    output_format: str,
) -> None:
    """Compare live Dataverse application users and roles with the declared state; exit 2 on drift."""
    try:
        inputs = stack_inputs(stacks_dir, stack, identities_file, environment_urls)
    except InputRefused as exc:
        fail(ctx, [*exc.lines, *_not_guids(allowed_privileged)])
        return
    if _not_guids(allowed_privileged):
        fail(ctx, _not_guids(allowed_privileged))
        return
    try:
        readings = read_stack(inputs.environments, connector(max_retry_wait), application_users=True)
        report = audit(inputs.state, readings, allowed_privileged=allowed_privileged)
    except Exception as exc:  # a bug must still not print a traceback (or anything a token could hide in)
        click.echo(f"audit: internal error ({type(exc).__name__}); please report it", err=True)
        ctx.exit(1)
        return
    if output_format == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        render(report)
    ctx.exit(1 if report.errors else EXIT_DRIFT if report.has_drift else 0)


def render(report: AuditReport) -> None:
    """Per environment, one line per difference (``<environment> <service>: <what>``); then the summary."""
    for environment in report.environments:
        for user in report.drifted:
            if user.environment == environment.name:
                for line in drift_lines(user):
                    click.echo(f"{user.environment} {user.service}: {line}")
        for privileged in report.privileged:
            if privileged.environment == environment.name:
                click.echo(f"{privileged.environment}: {privileged_line(privileged)}")
        for error in report.errors:
            if error.environment == environment.name:
                click.echo(f"{error}")
    click.echo(summary(report))


def drift_lines(user: UserDrift) -> list[str]:
    if user.missing:
        return [
            f"application user missing (application {user.application_id}; declared in business unit "
            f"{user.declared_business_unit!r} with {_names(user.declared_roles)})"
        ]
    lines: list[str] = []
    if user.actual_disabled is not None:
        lines.append("disabled, declared enabled" if user.actual_disabled else "enabled, declared disabled")
    if user.actual_business_unit is not None:
        lines.append(f"business unit {user.actual_business_unit!r}, declared {user.declared_business_unit!r}")
    if user.extra_roles:
        lines.append(f"extra {_roles(user.extra_roles)} (not declared)")
    if user.missing_roles:
        lines.append(f"missing {_roles(user.missing_roles)}")
    return lines


def privileged_line(user: PrivilegedUser) -> str:
    name = f"{user.full_name!r} " if user.full_name else ""
    state = "disabled " if user.disabled else ""
    return (
        f"unmanaged {state}application user {name}(application {user.application_id}, systemuser "
        f"{user.systemuser_id}) holds privileged {_roles(user.roles)}"
    )


def summary(report: AuditReport) -> str:
    checked = (
        f"{count(len(report.users), 'application user')} in {count(len(report.environments), 'environment')} checked"
    )
    parts: list[str] = []
    if report.drifted:
        parts.append(f"{len(report.drifted)} of {count(len(report.users), 'application user')} differ")
    if report.privileged:
        parts.append(count(len(report.privileged), "unmanaged privileged application user"))
    text = f"audit: drift: {'; '.join(parts)}" if parts else f"audit: no drift: {checked}"
    if report.errors:
        text += f"; {count(len(report.errors), 'error')}: the audit is incomplete"
    return text


def _roles(names: Sequence[str]) -> str:
    return ("security role " if len(names) == 1 else "security roles ") + _quoted(names)


def _names(names: Sequence[str]) -> str:
    return _roles(names) if names else "no security roles"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)
