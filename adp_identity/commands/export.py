"""``adp-identity export``: bring hand-made application users under code.

It reads every application user of the stack's environments (``--environment`` picks some; ceil(N/5000) GETs
each, with the read-only client, after the tenant check ``plan`` makes) and prints the service files that would
declare what those users hold: business unit and exact roles, as Dataverse holds them. With ``--write`` it writes
them: existing service files are merged by minimal edits (comments and other keys kept), new ones are created with
what Dataverse cannot tell marked to check. Users that map to no service are listed with their roles, not written.
Exporting twice gives the same files. How users map to services: `adp_identity.drift.export`.

Exit 0 when every environment was read and every file could be merged, 1 otherwise (one line each), 130 on Ctrl-C
(files are written only after everything was read, each atomically).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from types import FrameType

import click

from adp_identity.commands._inputs import (
    InputRefused,
    StackArgs,
    interruptible,
    read_environments,
    stack_inputs,
    stack_options,
)
from adp_identity.commands._options import fail
from adp_identity.desired.errors import DesiredStateErrors
from adp_identity.drift import select_environments
from adp_identity.drift.export import ExportResult, FileChange, export, write_changes
from adp_identity.drift.render import count
from adp_identity.drift.targets import EnvironmentTarget
from providers.dataverse.models import name_key


@click.command(name="export")
@stack_options(
    identities_required=False,
    identities_help="The stack outputs (`pulumi stack output --json`; - reads stdin): map users to services by "
    "client id as well as by ADP's identity naming.",
)
@click.option(
    "--environment",
    "environment_names",
    multiple=True,
    metavar="NAME",
    help="Export only this environment of the stack (repeatable; default: every one).",
)
@click.option("--write", is_flag=True, help="Write the service files (default: print them).")
@click.pass_context
def command(ctx: click.Context, *, stack_args: StackArgs, environment_names: tuple[str, ...], write: bool) -> None:
    """Print (or --write) the service files that declare what the environments' application users hold."""
    with interruptible(ctx, "export"):
        try:
            inputs = stack_inputs(stack_args, new_services=True, declared_users=False)
            chosen = select_environments(environment_names, inputs.state)
        except InputRefused as exc:
            fail(ctx, list(exc.lines))
            return
        except DesiredStateErrors as exc:
            fail(ctx, [str(error) for error in exc.errors])
            return
        # export reads what is there: no declared user to plan, so no catalog either
        environments = [
            EnvironmentTarget(e.name, e.url, e.production, (), e.tenant_id, e.url_from)
            for e in inputs.environments
            if e.name in chosen
        ]
        readings = read_environments(ctx, "export", environments, stack_args.max_retry_wait)
        result = export(inputs.state, stack_args.stacks_dir, readings, inputs.identities)
        errors = [f"{r.environment.name}: error: cannot read the environment: {r.error}" for r in readings if r.error]
        errors += list(result.refused)
        if write:
            written = _write_uninterrupted(result)
            for change in written:
                click.echo(f"wrote {change.display} ({change.status}: {', '.join(change.environments)})")
        else:
            for change in result.changes:
                click.echo(f"# ==> {change.display} ({change.status}: {', '.join(change.environments)}) <==")
                click.echo(change.after, nl=False)
        for line in unmapped_lines(result):
            click.echo(line)
        for line in errors:
            click.echo(line)
        click.echo(summary(result, len(readings), write=write, errors=len(errors)))
        ctx.exit(1 if errors else 0)


def _write_uninterrupted(result: ExportResult) -> list[FileChange]:
    """Write every changed file with Ctrl-C held back until the last one is in place (never half the files)."""
    interrupted: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        interrupted.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        written = write_changes(result.changes)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
    return written


def unmapped_lines(result: ExportResult) -> list[str]:
    if not result.unmapped:
        return []
    lines = [f"not written: {count(len(result.unmapped), 'application user')} map to no service file"]
    for item in sorted(result.unmapped, key=lambda u: (u.environment, name_key(u.user.full_name or ""))):
        user = item.user
        roles = sorted(dict.fromkeys(user.roles.values()), key=name_key)
        held = ", ".join(repr(r) for r in roles) or "no security role"
        state = "disabled, " if user.disabled else ""
        lines.append(
            f"  {item.environment}: {user.full_name!r} (application {user.application_id}, systemuser "
            f"{user.systemuser_id}; {state}business unit {user.business_unit_name!r}; {held}): {item.reason}"
        )
    return lines


def summary(result: ExportResult, environments: int, *, write: bool, errors: int) -> str:
    statuses = [change.status for change in result.changes]
    changed = sum(1 for status in statuses if status != "unchanged")
    files = (
        f"{count(len(result.changes), 'service file')} ({statuses.count('merged')} merged, "
        f"{statuses.count('new')} new, {statuses.count('unchanged')} unchanged)"
    )
    read = sum(result.read.values())
    text = (
        f"export: {count(read, 'application user')} read in {count(environments, 'environment')}; "
        f"{len(result.exported)} exported into {files}; {len(result.unmapped)} not mapped"
    )
    if write:
        text += f"; {count(changed, 'file')} written"
    else:
        text += "; nothing was written" + (" (add --write)" if changed else "")
    if errors:
        text += f"; {count(errors, 'error')}"
    return text


__all__: Sequence[str] = ["command"]
