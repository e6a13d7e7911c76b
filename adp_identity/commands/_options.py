"""Options several commands share, defined once (not a command: ``adp_identity/cli.py`` lists the commands)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def one_stack(function: F) -> F:
    """``--stacks DIR`` (default ``stacks``) and a required ``--stack NAME``."""
    function = click.option("--stack", required=True, help="The stack (Entra tenant), e.g. defradev.")(function)
    return click.option(
        "--stacks",
        "stacks_dir",
        type=click.Path(path_type=Path),
        default=Path("stacks"),
        show_default=True,
        help="The stacks directory (Pulumi stackConfigDir).",
    )(function)


def fail(ctx: click.Context, lines: list[str]) -> None:
    """One line each on stderr, then exit 1."""
    for line in lines:
        click.echo(line, err=True)
    ctx.exit(1)
