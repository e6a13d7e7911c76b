"""``adp-identity schema``: print, write or check the JSON Schemas generated from the desired-state models."""

from __future__ import annotations

from pathlib import Path

import click

from adp_identity.desired.schema_files import SCHEMA_MODELS, render, stale_files, write_all

_KINDS = {"service": "service.schema.json", "tenant-settings": "tenant-settings.schema.json"}


@click.command(name="schema")
@click.option(
    "--kind",
    type=click.Choice(sorted(_KINDS)),
    default="service",
    show_default=True,
    help="Which schema to print.",
)
@click.option(
    "--dir",
    "schemas_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Where the checked-in schema files live (for --write and --check).",
)
@click.option("--write", is_flag=True, help="Regenerate every schema file in --dir.")
@click.option("--check", is_flag=True, help="Exit 1 when a schema file in --dir is missing or out of date.")
@click.pass_context
def command(ctx: click.Context, kind: str, schemas_dir: Path, write: bool, check: bool) -> None:
    """Print the JSON Schema of service files (or tenant settings); --write / --check the checked-in ones."""
    if write and check:
        raise click.UsageError("--write and --check exclude each other")
    if write:
        try:
            for path in write_all(schemas_dir):
                click.echo(f"wrote {path}")
        except OSError as exc:
            raise click.ClickException(f"{schemas_dir}: cannot write ({exc.strerror or type(exc).__name__})") from None
        return
    if check:
        stale = stale_files(schemas_dir)
        for name in stale:
            click.echo(
                f"{schemas_dir / name}: (document): missing or out of date with the models; "
                "allowed: the generated schema (run: adp-identity schema --write)"
            )
        if stale:
            click.echo(f"schema: {len(stale)} of {len(SCHEMA_MODELS)} schema files out of date")
            ctx.exit(1)
        click.echo(f"schema: {len(SCHEMA_MODELS)} schema files up to date in {schemas_dir}")
        return
    click.echo(render(_KINDS[kind]), nl=False)
