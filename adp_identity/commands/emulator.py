"""``adp-identity emulator``: run the local Entra ID + Dataverse Web API emulator in the foreground.

It prints shell ``export`` lines (the deploying identity of one tenant — ``--tenant``, by default the seed's
first — with every other tenant's lines commented out, then the environments' URLs) so that another terminal can
``eval`` them and run the real tools against it, and writes the full description
(every identity, its secret / certificate / federated token file) to ``--json-file`` for programs. It stops
cleanly on Ctrl-C or SIGTERM. A seed the emulator cannot use is one line and exit code 2.
"""

from __future__ import annotations

import re
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from adp_identity.desired import DesiredState, DesiredStateErrors, load_tree
from adp_identity.drift.sandbox import parse_emulator_description, write_stack_outputs
from adp_identity_emulator import DEFAULT_SEED, Emulator, SeedError, UnsafeStateDir, load_seed


@click.command(name="emulator")
@click.option(
    "--seed",
    "seed_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Seed YAML (tenants, applications, environments). Default: the packaged ADP-shaped seed.",
)
@click.option(
    "--json-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the emulator's description (URLs, CA bundle, identities and their credentials) here.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the CA, certificates and token files go (default: a temporary directory, removed on exit).",
)
@click.option(
    "--tenant",
    default=None,
    help="Whose deploying identity the export lines set (default: the seed's first tenant, DefraDev).",
)
@click.option(
    "--outputs-file",
    "outputs_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Write DIR/<stack>.json for each stack of --stacks: the stack outputs (`pulumi stack output --json`) "
    "its services would have against this emulator, for plan, audit and export --identities.",
)
@click.option(
    "--stacks",
    "stacks_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("stacks"),
    show_default=True,
    help="The stacks directory --outputs-file reads.",
)
@click.pass_context
def command(
    ctx: click.Context,
    *,
    seed_path: Path | None,
    json_file: Path | None,
    state_dir: Path | None,
    tenant: str | None,
    outputs_dir: Path | None,
    stacks_dir: Path,
) -> None:
    """Run the emulator on 127.0.0.1 until Ctrl-C / SIGTERM."""
    try:
        seed = load_seed(seed_path or DEFAULT_SEED)
    except SeedError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    stacks = _load_stacks(ctx, stacks_dir) if outputs_dir is not None else {}
    names = [t.name for t in seed.tenants]
    if tenant is not None and tenant not in names:
        click.echo(f"error: --tenant: no tenant named {tenant!r} in the seed; allowed: {', '.join(names)}", err=True)
        ctx.exit(2)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(seed, state_dir=state_dir)
    try:
        try:
            emulator.start()
            if json_file is not None:
                emulator.write_info(json_file)
            if outputs_dir is not None:
                _write_outputs(outputs_dir, stacks, emulator)
        except UnsafeStateDir as exc:
            click.echo(f"error: --state-dir {exc.path}: {exc.reason}", err=True)
            ctx.exit(2)
        except OSError as exc:
            click.echo(f"error: cannot start the emulator: {exc.strerror or exc}", err=True)
            ctx.exit(1)
        for line in export_lines(emulator, json_file, tenant=tenant):
            click.echo(line)
        click.echo(
            f"emulator running on 127.0.0.1 ({len(emulator.info['environments'])} environments); Ctrl-C to stop",
            err=True,
        )
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("emulator stopped", err=True)


def _load_stacks(ctx: click.Context, stacks_dir: Path) -> dict[str, DesiredState]:
    """The stacks --outputs-file is for, checked as `validate` checks them; errors are one line each, exit 2."""
    try:
        return load_tree(stacks_dir)
    except DesiredStateErrors as exc:
        for error in exc.errors:
            click.echo(f"error: --outputs-file: {error}", err=True)
        ctx.exit(2)
    raise AssertionError("unreachable")  # pragma: no cover


def _write_outputs(directory: Path, stacks: dict[str, DesiredState], emulator: Emulator) -> None:
    description = parse_emulator_description(emulator.info, "the emulator")
    for path, services, left_out in write_stack_outputs(directory, stacks, description):
        note = f"; no identity in the seed for {', '.join(left_out)}" if left_out else ""
        click.echo(f"stack outputs: {path} ({services} services{note})", err=True)


# What a script needs against the sandbox besides these variables (issue 11): MSAL does instance discovery against
# a fixed Microsoft host (login.microsoftonline.com) before it trusts an authority it does not know.
MSAL_NOTE = [
    "# Scripts: azure-identity's MSAL-based credentials (ClientSecretCredential, CertificateCredential) need",
    "#   authority=$AZURE_AUTHORITY_HOST and disable_instance_discovery=True here: instance discovery goes to a",
    "#   fixed Microsoft host. DefaultAzureCredential under the exports below needs nothing more.",
]


def export_lines(emulator: Emulator, json_file: Path | None = None, *, tenant: str | None = None) -> list[str]:
    """Shell lines: the AZURE_* variables of one tenant's deploying identity (the others commented out, so that a
    shell never silently ends up with the last tenant's), then one URL variable per environment."""
    info = emulator.info
    chosen = tenant or info["tenants"][0]["name"]
    where = f"; details in {json_file}" if json_file is not None else ""
    lines = [f"# adp-identity emulator: authority {info['authority_host']}, CA {info['ca_bundle']}{where}"]
    lines += MSAL_NOTE
    for entry in info["tenants"]:
        identity = emulator.identity(entry["name"])
        if "federated_token_file" not in identity:
            lines.append(
                f"# tenant {entry['name']} ({entry['id']}): its deploying identity has no federated credential"
            )
            continue
        lines.append(
            f"# tenant {entry['name']} ({entry['id']}): deploying identity {identity['name']} "
            "(workload identity federation)"
        )
        prefix = "" if entry["name"] == chosen else "# "
        for name, value in emulator.credential_env(entry["name"]).items():
            lines.append(f"{prefix}export {name}={shlex.quote(value)}")
    lines.append("# Dataverse environments")
    for env in info["environments"]:
        variable = "DATAVERSE_URL_" + re.sub(r"[^A-Z0-9]+", "_", env["name"].upper())
        lines.append(f"export {variable}={shlex.quote(env['url'])}  # tenant {env['tenant']}")
    return lines
