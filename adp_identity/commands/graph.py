"""``adp-identity graph``: a picture of who can reach what, from the service files or from the environments.

``--format mermaid`` (the default) prints a Mermaid flowchart, which GitHub and Azure DevOps render in a pull
request comment or a Markdown file (inside a ```mermaid block); ``svg`` a standalone SVG laid out in pure Python
that any browser opens (nothing to install); ``dot`` Graphviz text for your own tools. ``--output FILE`` writes the
drawing to FILE instead of stdout.

Without ``--live`` it draws what the stack's service files declare (offline, like ``validate``). With ``--live``
it reads every Dataverse environment of the stack with a read-only client and a fresh role catalog (the client
refuses every write before a request is built; 1 GET per 5000 application users per environment) and draws what
the environments hold; application users that belong to no service are drawn apart, as unmanaged. A user belongs
to a service by ADP's naming (its full name is the service's identity name or app registration display name), or
by client id when ``--identities`` gives the stack outputs. Before reading an environment the token's tenant is
compared with the stack's (contract ``tenant_id``): a credential of another tenant is refused before any request.

Exit 0 when the drawing was written; 1 on any error (one line each, no drawing: a partial picture would mislead).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from adp_identity.commands._options import fail, one_stack
from adp_identity.desired import DesiredState, DesiredStateErrors, load_tree
from adp_identity.drift import ServiceIdentity, environment_overrides, read_identities
from adp_identity.graph import dot as dot_format
from adp_identity.graph import mermaid, svg
from adp_identity.graph.model import Graph, LiveEnvironment, from_desired, from_live
from providers._identity import CredentialFailed, WrongTenant, check_tenant
from providers.dataverse.client import CatalogCache, DataverseClient
from providers.dataverse.errors import DataverseError

RENDERERS: dict[str, Callable[[Graph], str]] = {
    "mermaid": mermaid.render,
    "svg": svg.render,
    "dot": dot_format.render,
}


class GraphRefused(Exception):
    """The live graph cannot be drawn; ``lines`` are the one-line errors."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def read_environments(state: DesiredState, urls: dict[str, str], max_retry_wait: float) -> list[LiveEnvironment]:
    """Every environment's application users, read-only, in the stack's order; `GraphRefused` lists failures."""
    environments: list[LiveEnvironment] = []
    errors: list[str] = []
    for name, environment in state.tenant.dataverse_environments.items():
        try:
            client = DataverseClient(
                urls.get(name, environment.url),
                max_retry_wait=max_retry_wait,
                catalog_cache=CatalogCache(),
                read_only=True,
            )
            check_tenant(
                None, client.scope, state.tenant.tenant_id, f"Dataverse environment {name} ({client.environment_url})"
            )
            environments.append(LiveEnvironment(name, client.application_users()))
        except (DataverseError, WrongTenant, ValueError) as exc:
            errors.append(f"graph: environment {name}: {exc}")
        except CredentialFailed as failed:
            errors.append(f"graph: environment {name}: could not get a token for {failed.scope}: {failed.detail}")
    if errors:
        raise GraphRefused(errors)
    return environments


@click.command(name="graph")
@one_stack
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(RENDERERS)),
    default="mermaid",
    show_default=True,
    help="mermaid renders in a pull request; svg opens in a browser; dot is Graphviz text.",
)
@click.option("--live", is_flag=True, help="Draw what the environments hold (read-only) instead of the service files.")
@click.option(
    "--identities",
    "identities_file",
    metavar="FILE",
    help="With --live: the stack outputs (`pulumi stack output --json`, - for stdin), to map users to services by "
    "client id instead of by ADP's naming.",
)
@click.option(
    "--environment-url",
    "environment_urls",
    multiple=True,
    metavar="NAME=URL",
    help="With --live: read environment NAME at URL instead of the stack settings' URL (repeatable).",
)
@click.option(
    "--max-retry-wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="With --live: seconds to wait at most on throttling and retries of one request.",
)
@click.option("--output", "-o", "output", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE.")
@click.pass_context
def command(
    ctx: click.Context,
    *,
    stacks_dir: Path,
    stack: str,
    output_format: str,
    live: bool,
    identities_file: str | None,
    environment_urls: tuple[str, ...],
    max_retry_wait: float,
    output: Path | None,
) -> None:
    """Draw services, identities, environments and roles (privileged ones marked), as declared or as held."""
    if not live and (identities_file or environment_urls):
        fail(ctx, ["graph: --identities and --environment-url read the environments; allowed: with --live"])
        return
    try:
        state = load_tree(stacks_dir, stack)[stack]
        identities: dict[str, ServiceIdentity] | None = None
        if identities_file:
            identities = read_identities(identities_file)  # bounded, as plan's (adp_identity.drift.identities)
        urls = environment_overrides(environment_urls, state)
    except DesiredStateErrors as exc:
        fail(ctx, [str(error) for error in exc.errors])
        return
    if live:
        try:
            graph = from_live(state, read_environments(state, urls, max_retry_wait), identities)
        except GraphRefused as exc:
            fail(ctx, exc.lines)
            return
        except Exception as exc:  # a bug must still not print a traceback (or anything a token could hide in)
            fail(ctx, [f"graph: internal error ({type(exc).__name__}); please report it"])
            return
    else:
        graph = from_desired(state)
    text = RENDERERS[output_format](graph)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"graph: wrote {output} ({output_format})", err=True)
