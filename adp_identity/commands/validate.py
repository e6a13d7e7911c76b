"""``adp-identity validate``: check the stacks/ tree offline, print every finding on one line, then a summary.

One run reports everything: schema errors, cross-file errors and the platform rules (``adp_identity.rules``, the
same rules the CrossGuard policy pack enforces) of every file together. Lines, in this order::

    <file>[:line]: <key.path>: <what is wrong>; allowed: <what is allowed> [rule <id>]            errors
    <file>[:line]: <key.path>: warning: <what is missing>; allowed: <how to set it> [rule <id>]    warnings
    <file>[:line]: <key.path>: waived: <finding>; allowed: ... [rule <id>] (exception <where, who, until>)

A warning is what a team's pull request cannot fix itself (a declared secret whose value the platform team sets);
``--strict`` (what deploy runs) makes warnings errors. Exit 0 when there is no error (and say what was checked),
1 on any error, 2 when the check itself failed unexpectedly. Never a traceback, never file content beyond a key.
"""

from __future__ import annotations

from pathlib import Path

import click

from adp_identity.desired import DesiredState, check_tree


@click.command(name="validate")
@click.option(
    "--stacks",
    "stacks_dir",
    type=click.Path(path_type=Path),
    default=Path("stacks"),
    show_default=True,
    help="The stacks directory (Pulumi stackConfigDir).",
)
@click.option("--stack", default=None, help="Check only this stack (default: every stack).")
@click.option(
    "--strict",
    is_flag=True,
    help="Treat warnings as errors (deploy runs this: e.g. a declared secret must have its encrypted value).",
)
@click.pass_context
def command(ctx: click.Context, stacks_dir: Path, stack: str | None, strict: bool) -> None:
    """Check every stack settings file and service file; list all errors, warnings and waivers, one line each."""
    try:
        report = check_tree(stacks_dir, stack, strict=strict)
    except Exception as exc:  # a bug here must still not print a traceback to a reviewer
        click.echo(f"validate: internal error ({type(exc).__name__}); please report it with the input files")
        ctx.exit(2)
    for finding in (*report.errors, *report.warnings, *report.waived):
        click.echo(str(finding))
    extras = ""
    if report.warnings:
        extras += f", {_count(len(report.warnings), 'warning')}"
    if report.waived:
        extras += f", {len(report.waived)} waived by exception"
    if report.errors:
        files = f" in {report.files_checked} files checked" if report.files_checked else ""
        click.echo(f"validate: {_count(len(report.errors), 'error')}{extras}{files}")
        ctx.exit(1)
    states = report.states
    for state in states.values():
        click.echo(_describe(state))
    services = sum(len(s.services) for s in states.values())
    environments = sum(len(s.tenant.dataverse_environments) for s in states.values())
    click.echo(
        f"validate: OK: {_count(len(states), 'stack')}, {_count(services, 'service')}, "
        f"{_count(environments, 'Dataverse environment')} checked; no errors{extras}"
    )


def _describe(state: DesiredState) -> str:
    """One line per stack: what was checked, so that a clean run shows it really read the tree."""
    tenant = state.tenant
    credentials = sum(len(state.federated_credentials(name)) for name in state.services)
    access = sum(len(spec.dataverse) for spec in state.services.values())
    secrets = sum(len(spec.key_vault_secrets) for spec in state.services.values())
    apps = sum(1 for spec in state.services.values() if spec.app_registration is not None)
    return (
        f"{state.stack}: tenant {tenant.name}; services {', '.join(state.services) or 'none'}; "
        f"environments {', '.join(tenant.dataverse_environments) or 'none'}; "
        f"{_count(len(tenant.aks_clusters), 'AKS cluster')}, {_count(credentials, 'federated credential')}, "
        f"{_count(access, 'Dataverse access entry', 'Dataverse access entries')}, "
        f"{_count(secrets, 'Key Vault secret')}, {_count(apps, 'app registration')}"
    )


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
