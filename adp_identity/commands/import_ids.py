"""``adp-identity import-ids``: the ARM ids the stack adopts when a service moves from the platform to adp-identity.

Reads (only reads) the service's user-assigned identity, its federated credentials and its "Key Vault Secrets
User" grants as ADP's Helm library made them, matches them to the service file, and prints the import file
``stacks/<stack>/imports/<service>.yaml`` (or writes it, ``--write``). The program registers each listed
resource with Pulumi's ``import`` option, so the first ``pulumi up`` after ``owner: adp-identity`` adopts them
and creates only what the platform never made. docs/operations.md, "Moving a service between owners".

Exit 0 when the file was printed or written; 1 on any error, one line each: the service is unknown, the identity
does not exist (nothing to import: the first deploy creates it), Azure holds a federated credential the service
file does not declare (declare it or delete it first, or the stack would leave it unmanaged), or a read failed.
Signs in as ``DefaultAzureCredential`` does (``AZURE_*`` variables; the ``Reader`` role is enough).
"""

from __future__ import annotations

from pathlib import Path

import click

from adp_identity.commands._options import fail, one_stack
from adp_identity.desired import DesiredStateErrors, load_tree
from infra.arm import ArmError, ArmReader, IdentityNotFound, find_import_ids
from infra.imports import check_imports, declared_targets, import_file, render_imports


@click.command(name="import-ids")
@one_stack
@click.option("--service", required=True, help="The service moving from owner: platform to adp-identity.")
@click.option("--write", is_flag=True, help="Write stacks/<stack>/imports/<service>.yaml instead of printing it.")
@click.pass_context
def command(ctx: click.Context, *, stacks_dir: Path, stack: str, service: str, write: bool) -> None:
    """Print (or --write) the ARM ids of what the platform made for a service, for Pulumi's import option."""
    try:
        desired = load_tree(stacks_dir, stack)[stack]
    except DesiredStateErrors as exc:
        fail(ctx, [str(error) for error in exc.errors])
        return
    if service not in desired.services:
        known = ", ".join(sorted(desired.services)) or "none"
        fail(ctx, [f"--service: no service {service!r} in stack {stack}; allowed: {known}"])
        return
    try:
        found = find_import_ids(desired, service, ArmReader())
    except (IdentityNotFound, ArmError) as exc:
        fail(ctx, [f"import-ids: {exc}"])
        return
    except Exception as exc:  # a bug must still not print a traceback (or anything a token could hide in)
        fail(ctx, [f"import-ids: internal error ({type(exc).__name__}); please report it"])
        return
    path = import_file(stacks_dir, stack, service)
    shown = f"{stacks_dir.name}/{stack}/imports/{path.name}"
    lines = [
        f"import-ids: federated credential {name} is in Azure but not declared in {stacks_dir.name}/{stack}/"
        f"{service}.yaml; allowed: declare it, or delete it in Azure first (nothing was written)"
        for name in found.undeclared_credentials
    ]
    lines += check_imports(found.ids, shown, **declared_targets(desired, service))
    if lines:
        fail(ctx, lines)
        return
    text = render_imports(found.ids, stack=stack)
    if write:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    ids = found.ids
    summary = (
        f"import-ids: {service}: adopt identity {ids.identity.rsplit('/', 1)[-1]}, "
        f"{len(ids.federated_credentials)} federated credential(s) and {len(ids.secret_grants)} secret grant(s); "
        f"create {len(found.missing_credentials)} credential(s) and {len(found.missing_grants)} grant(s)"
    )
    click.echo(summary + (f"; wrote {shown}" if write else ""), err=True)
