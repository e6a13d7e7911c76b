"""The ``adp-identity`` command line.

Each command lives in ``adp_identity/commands/<name>.py`` (``-`` in a name is ``_`` in its module) and exposes a
click command called ``command``.
Commands are imported only when run, so ``adp-identity --help`` stays fast and a broken optional dependency of
one command cannot break another. Errors a user can fix are reported as one line (``UsageError`` /
``ClickException``), never as a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from adp_identity import __version__

# name -> one-line help, shown by --help without importing the command
COMMANDS: dict[str, str] = {
    "emulator": "Run the local Entra ID + Dataverse Web API emulator in the foreground.",
    "demo": "Run the end-to-end demo against an in-process emulator.",
    "validate": "Check the stacks/ tree offline: every service file and stack setting.",
    "plan": "Show what reconciling the declared Dataverse access would change (no writes).",
    "audit": "Compare live Dataverse application users and roles with the declared state.",
    "export": "Print (or write) the service files that declare what Dataverse holds today (no Dataverse writes).",
    "schema": "Print (or check) the JSON Schema of service files.",
    "import-ids": "Print the ARM ids a service moving from the platform to adp-identity is imported with.",
    "graph": "Draw who can reach what: services, identities, environments and roles (Mermaid, SVG or DOT).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _module_exists(cmd_name):
            return None
        module = importlib.import_module(_module_name(cmd_name))
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_name(name: str) -> str:
    """``import-ids`` lives in ``adp_identity/commands/import_ids.py``."""
    return f"adp_identity.commands.{name.replace('-', '_')}"


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(_module_name(name)) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adp-identity")
def cli() -> None:
    """Identity and Dataverse access as code for Defra's Azure Development Platform."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="adp-identity")


if __name__ == "__main__":  # pragma: no cover
    main()
