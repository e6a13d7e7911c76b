"""``adp-identity demo``: the whole story on the local emulator, in about half a minute.

1. Start the emulator (Entra ID + Dataverse Web API) with the default DefraDev/Defra seed.
2. Fetch a token with the real azure-identity ``WorkloadIdentityCredential`` (a federated token file, as on AKS or
   in GitHub Actions) and list an environment's application users and their roles.
3. Start Pulumi's own dynamic-provider host (``python -m pulumi.dynamic``, the process ``pulumi up`` starts) and
   drive the ``ApplicationUser`` provider over gRPC: create users, adopt one made by hand, see a manual change as
   drift, correct it, and revoke access.
Every step prints what it did and the requests it sent (counted from the emulator's request log). Tokens and
secrets are never printed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import jwt
import requests
from azure.identity import WorkloadIdentityCredential
from rich.console import Console
from rich.table import Table

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from adp_identity_sandbox.admin_centre import AdminCentre
from adp_identity_sandbox.provider_host import ProviderHost

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"
API = "/api/data/v9.2/"


@dataclass
class StepRecord:
    title: str
    reads: int = 0
    writes: int = 0
    tokens: int = 0
    notes: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, emulator: Emulator, console: Console) -> None:
        self.emulator = emulator
        self.console = console
        self.url = emulator.environment_url(ENVIRONMENT)
        self.steps: list[StepRecord] = []

    def app_id(self, name: str) -> str:
        for app in self.emulator.tenant(TENANT).applications:
            if app.name == name:
                return str(app.client_id)
        raise KeyError(name)

    @contextmanager
    def step(self, title: str) -> Iterator[StepRecord]:
        self.console.rule(f"[bold]{len(self.steps) + 1}. {title}")
        self.emulator.log.clear()
        record = StepRecord(title)
        yield record
        entries = self.emulator.log.entries
        record.reads = sum(1 for e in entries if e.service == "dataverse" and e.method == "GET")
        record.writes = sum(1 for e in entries if e.service == "dataverse" and e.method != "GET")
        record.tokens = sum(1 for e in entries if e.service == "entra" and e.path.endswith("/token"))
        self.console.print(
            f"[dim]requests sent: {record.reads} read(s), {record.writes} write(s) to Dataverse; "
            f"{record.tokens} token request(s) to Entra ID[/dim]"
        )
        self.steps.append(record)

    # -- rendering ---------------------------------------------------------------------------------------------
    def users_table(self, title: str, only: set[str] | None = None) -> Table:
        state = self.emulator.dataverse(ENVIRONMENT)
        table = Table(title=title, title_justify="left")
        for column in ("application user", "business unit", "enabled", "security roles"):
            table.add_column(column)
        for user in sorted(state.users, key=lambda u: u.display_name):
            if only is not None and user.application_id not in only:
                continue
            unit = state.business_unit(user.business_unit_id)
            table.add_row(
                user.display_name,
                unit.name if unit else "?",
                "no" if user.disabled else "yes",
                ", ".join(state.role_names(user.id)) or "-",
            )
        return table

    def show_outputs(self, outs: dict[str, Any]) -> None:
        self.console.print(
            f"  systemuser_id={outs['systemuser_id']}  business_unit={outs['business_unit']}  "
            f"disabled={outs['disabled']}  security_roles={outs['security_roles']}"
        )


def _declared(demo: Demo, app: str, roles: list[str], business_unit: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "environment_url": demo.url,
        "application_id": demo.app_id(app),
        "security_roles": roles,
        "disabled": False,
    }
    if business_unit is not None:
        props["business_unit"] = business_unit
    return props


def run_demo(console: Console, state_dir: Path) -> list[StepRecord]:
    from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

    with Emulator(load_seed(DEFAULT_SEED), state_dir=state_dir) as emulator:
        env = emulator.credential_env(TENANT)
        os.environ.update(env)  # this process acts as the deploying pipeline, exactly as `export` would make it
        demo = Demo(emulator, console)
        console.print(f"Emulator up: Entra ID at {emulator.authority_host}, Dataverse '{ENVIRONMENT}' at {demo.url}")
        console.print(
            f"Deploying identity: adp-identity-pipeline (client id {env['AZURE_CLIENT_ID']}), tenant {TENANT}"
        )

        with demo.step("Token from the real azure-identity workload-identity credential") as record:
            token = WorkloadIdentityCredential().get_token(f"{demo.url}/.default")
            claims = jwt.decode(token.token, options={"verify_signature": False})
            console.print(
                f"  aud={claims['aud']}  tid={claims['tid']}  appid={claims['appid']}  "
                f"expires in {int(claims['exp'] - claims['iat'])} s  (the token itself is never printed)"
            )
            record.notes.append("WorkloadIdentityCredential via AZURE_FEDERATED_TOKEN_FILE")

        with demo.step(f"Application users of {ENVIRONMENT}, read through the Web API") as record:
            session = requests.Session()
            session.headers.update({"Authorization": f"Bearer {token.token}", "Accept": "application/json"})
            response = session.get(
                f"{demo.url}{API}systemusers",
                params={
                    "$select": "fullname,applicationid,isdisabled",
                    "$expand": "systemuserroles_association($select=name),businessunitid($select=name)",
                },
                verify=emulator.ca_bundle,
                timeout=30,
            )
            response.raise_for_status()
            table = Table(title=f"GET systemusers ({response.status_code})", title_justify="left")
            for column in ("application user", "business unit", "enabled", "security roles"):
                table.add_column(column)
            for row in sorted(response.json()["value"], key=lambda r: r["fullname"]):
                table.add_row(
                    row["fullname"],
                    row["businessunitid"]["name"],
                    "no" if row["isdisabled"] else "yes",
                    ", ".join(sorted(r["name"] for r in row["systemuserroles_association"])) or "-",
                )
            console.print(table)

        batch, claims_app, web = (
            "sndadpinfmi1401-ffc-pay-batch",
            "sndadpinfmi1401-ahwr-claims",
            "sndadpinfmi1401-ffc-pay-web",
        )
        managed = {demo.app_id(a) for a in (batch, claims_app, web)}
        with ProviderHost(ApplicationUserProvider(), env=env, type_token=TYPE_TOKEN) as host:
            host.configure({})
            ids: dict[str, str] = {}
            outs: dict[str, dict[str, Any]] = {}
            props: dict[str, dict[str, Any]] = {}

            with demo.step("pulumi up: create two application users (provider host over gRPC)") as record:
                for app, roles, unit in (
                    (batch, ["Basic User", "FFC Payments Reader"], "ffc-payments"),
                    (claims_app, ["Basic User", "AHWR Claims Processor"], "animal-health"),
                ):
                    checked = host.check(_declared(demo, app, roles, unit))
                    props[app] = checked.inputs
                    ids[app], outs[app] = host.create(checked.inputs, name=app)
                    console.print(f"  created {app}")
                    demo.show_outputs(outs[app])
                record.notes.append(
                    "each create: 1 $batch (the user and all its roles, one atomic change set); catalog read once"
                )

            with demo.step("pulumi up: adopt a user someone made by hand (disabled, wrong unit, System Administrator)"):
                console.print(demo.users_table("before", {demo.app_id(web)}))
                checked = host.check(_declared(demo, web, ["Basic User", "FFC Payments Writer"], "ffc-payments"))
                props[web] = checked.inputs
                ids[web], outs[web] = host.create(checked.inputs, name=web)
                console.print(
                    demo.users_table("after: adopted, enabled, moved, exactly the declared roles", {demo.app_id(web)})
                )

            centre = AdminCentre.of(emulator, TENANT, ENVIRONMENT)
            with demo.step("Someone grants System Administrator and disables a user in the admin centre"):
                centre.grant(ids[batch], "System Administrator")
                centre.set_disabled(ids[claims_app], True)
                console.print("  (two changes made through the Web API as a System Administrator, outside the code)")

            with demo.step("pulumi refresh / drift run: read every user and diff against the code"):
                for app in (batch, claims_app, web):
                    _, live, _ = host.read(ids[app], outs[app], props[app], name=app)
                    diff = host.diff(ids[app], live, props[app], name=app)
                    changed = _drift_lines(outs[app], live)
                    verdict = "[red]DRIFT[/red] " + "; ".join(changed) if diff.has_changes else "[green]in sync[/green]"
                    console.print(f"  {app}: {verdict}")
                    outs[app] = live

            with demo.step("pulumi up: correct the drift (only the difference is sent)"):
                for app in (batch, claims_app):
                    outs[app] = host.update(ids[app], outs[app], props[app], name=app)
                    demo.show_outputs(outs[app])

            with demo.step(
                "pulumi destroy of ahwr-claims: revoke access (roles removed, then disabled; never deleted)"
            ):
                host.delete(ids[claims_app], outs[claims_app], name=claims_app)
                console.print(demo.users_table("after revoke", managed))

        return demo.steps


def _drift_lines(stored: dict[str, Any], live: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    added = sorted(set(live["security_roles"]) - set(stored["security_roles"]))
    removed = sorted(set(stored["security_roles"]) - set(live["security_roles"]))
    if added:
        lines.append(f"roles added by hand: {', '.join(added)}")
    if removed:
        lines.append(f"roles removed by hand: {', '.join(removed)}")
    if stored["disabled"] != live["disabled"]:
        lines.append(f"disabled: {stored['disabled']} -> {live['disabled']}")
    if stored["business_unit"] != live["business_unit"]:
        lines.append(f"business unit: {stored['business_unit']} -> {live['business_unit']}")
    return lines


def summarise(console: Console, steps: list[StepRecord]) -> None:
    table = Table(title="What the demo showed, and the requests each step sent", title_justify="left")
    for column, justify in (
        ("step", "left"),
        ("Dataverse reads", "right"),
        ("Dataverse writes", "right"),
        ("token requests", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for number, step in enumerate(steps, 1):
        table.add_row(f"{number}. {step.title}", str(step.reads), str(step.writes), str(step.tokens))
    console.print(table)
    console.print(
        "Shown: tokens from azure-identity's workload-identity credential; application users created, a hand-made "
        "one adopted instead of a 412 duplicate, a System Administrator grant and a disable made by hand found as "
        "drift and corrected with only the difference sent, and access revoked without deleting the record."
    )


@click.command(name="demo", help="Run the end-to-end demo against an in-process emulator.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the emulator's CA, keys and tokens here (default: a temporary directory).",
)
def command(state_dir: Path | None) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)  # CI logs: wide enough for the tables
    runner: Callable[[Path], list[StepRecord]] = lambda d: run_demo(console, d)  # noqa: E731
    if state_dir is not None:
        steps = runner(state_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="adp-identity-demo-") as tmp:
            steps = runner(Path(tmp))
    summarise(console, steps)
