"""``adp-identity validate``: check the stacks/ tree offline, print every error on one line, then a summary.

Exit 0 when clean (and say what was checked), 1 on any error in the desired state, 2 when the check itself
failed unexpectedly. Never a traceback: whatever the files hold, the user gets lines to act on.
"""

from __future__ import annotations

from pathlib import Path

import click

from adp_identity.desired import DesiredState, DesiredStateErrors, load_tree


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
@click.pass_context
def command(ctx: click.Context, stacks_dir: Path, stack: str | None) -> None:
    """Check every stack settings file and service file; list all errors, one line each."""
    try:
        states = load_tree(stacks_dir, stack)
    except DesiredStateErrors as exc:
        for error in exc.errors:
            click.echo(str(error))
        files = f" in {exc.files_checked} files checked" if exc.files_checked else ""
        click.echo(f"validate: {_count(len(exc.errors), 'error')}{files}")
        ctx.exit(1)
    except Exception as exc:  # a bug here must still not print a traceback to a reviewer
        click.echo(f"validate: internal error ({type(exc).__name__}); please report it with the input files")
        ctx.exit(2)
    for state in states.values():
        click.echo(_describe(state))
    services = sum(len(s.services) for s in states.values())
    environments = sum(len(s.tenant.dataverse_environments) for s in states.values())
    click.echo(
        f"validate: OK: {_count(len(states), 'stack')}, {_count(services, 'service')}, "
        f"{_count(environments, 'Dataverse environment')} checked; no errors"
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
