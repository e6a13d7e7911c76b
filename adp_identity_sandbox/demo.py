"""``adp-identity demo``: the whole story on the local emulator, in well under a minute.

Chapter 1, greenfield: a token from the real azure-identity ``WorkloadIdentityCredential``; then Pulumi's own
dynamic-provider host (``python -m pulumi.dynamic``, the process ``pulumi up`` starts) drives the
``ApplicationUser`` provider over gRPC, as ``pulumi up`` would: create users, adopt one made by hand, see changes
made in the admin centre as drift, correct them, revoke access.

Chapter 2, brownfield: an environment already holds application users added by hand; ``adp-identity export``
writes the service files that declare them, ``validate`` passes, ``plan`` has nothing to change for them, and a
typo in a new service file is caught by ``plan`` and by the provider's check during preview, before any write.

Every step prints what changed (before/after) and the requests it sent, the tool's apart from the admin centre's
(counted from the emulator's request log by the caller's application id). Tokens and secrets are never printed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import jwt
from azure.identity import WorkloadIdentityCredential
from click.testing import CliRunner
from rich import box
from rich.console import Console
from rich.table import Table

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from adp_identity_sandbox.admin_centre import ADMIN_APPLICATION, AdminCentre
from adp_identity_sandbox.provider_host import ProviderCallError, ProviderHost

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"
BROWNFIELD = "defradev-tst"  # the stack's `tst` environment
PREFIX = "sndadpinfmi1401-"  # ADP's identity name is {prefix}-{service}: the tables show the service part
WIDTH = 80
PROVIDER = "the provider, as `pulumi up` runs it"
STACKS = Path(__file__).resolve().parents[1] / "stacks"  # the checkout's stacks/ (copied, never changed)


@dataclass
class StepRecord:
    title: str
    reads: int = 0  # the tool's (the deploying identity's) Dataverse GETs
    writes: int = 0  # the tool's Dataverse writes ($batch counts as one)
    admin: int = 0  # the admin centre's requests (changes "by hand")
    tokens: int = 0
    notes: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, emulator: Emulator, console: Console, environment: str = ENVIRONMENT) -> None:
        self.emulator = emulator
        self.console = console
        self.environment = environment
        self.url = emulator.environment_url(environment)
        self.steps: list[StepRecord] = []
        self.admin_id = self.app_id(ADMIN_APPLICATION)

    def app_id(self, name: str) -> str:
        for app in self.emulator.tenant(TENANT).applications:
            if app.name == name:
                return str(app.client_id)
        raise KeyError(name)

    @contextmanager
    def step(self, title: str) -> Iterator[StepRecord]:
        self.console.rule(f"[bold]{len(self.steps) + 1}. {title}", align="left")
        self.emulator.log.clear()
        record = StepRecord(title)
        yield record
        entries = [e for e in self.emulator.log.entries if e.service == "dataverse"]
        tool = [e for e in entries if e.caller != self.admin_id]
        record.reads = sum(1 for e in tool if e.method == "GET")
        record.writes = sum(1 for e in tool if e.method != "GET")
        record.admin = sum(1 for e in entries if e.caller == self.admin_id)
        record.tokens = sum(1 for e in self.emulator.log.entries if e.service == "entra" and e.path.endswith("/token"))
        line = f"requests: the tool {record.reads} read(s), {record.writes} write(s)"
        if record.admin:
            line += f"; the admin centre {record.admin}"
        if record.tokens:
            line += f"; {record.tokens} token request(s)"
        self.console.print(f"[dim]{line}[/dim]")
        self.steps.append(record)

    def users(self, only: set[str] | None = None, environment: str | None = None) -> list[tuple[str, str, str, str]]:
        state = self.emulator.dataverse(environment or self.environment)
        rows: list[tuple[str, str, str, str]] = []
        for user in sorted(state.users, key=lambda u: u.display_name):
            if only is not None and user.application_id not in only:
                continue
            unit = state.business_unit(user.business_unit_id)
            rows.append(
                (
                    user.display_name.removeprefix(PREFIX),
                    unit.name if unit else "?",
                    "no" if user.disabled else "yes",
                    ", ".join(state.role_names(user.id)) or "-",
                )
            )
        return rows

    def table(self, title: str, rows: list[tuple[str, str, str, str]]) -> None:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("application user", "business unit", "enabled", "security roles"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    @contextmanager
    def before_after(self, only: set[str] | None = None, environment: str | None = None) -> Iterator[None]:
        """Print the users' state before and after the block (every step that changes something)."""
        self.table("before", self.users(only, environment))
        yield
        self.table("after", self.users(only, environment))


def _declared(demo: Demo, app: str, roles: list[str], business_unit: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "environment_url": demo.url,
        "application_id": demo.app_id(app),
        "security_roles": roles,
        "disabled": False,
        "tenant_id": str(demo.emulator.tenant(TENANT).id),
    }
    if business_unit is not None:
        props["business_unit"] = business_unit
    return props


@contextmanager
def _acting_as(env: dict[str, str]) -> Iterator[None]:
    """This process acts as the deploying pipeline, exactly as pasting the emulator's `export` lines would make it;
    the variables it had before are put back afterwards (the demo also runs inside tests)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(console: Console, state_dir: Path) -> list[StepRecord]:
    steps = greenfield(console, state_dir / "greenfield")
    steps += brownfield(console, state_dir / "brownfield", first=len(steps) + 1)
    return steps


def greenfield(console: Console, state_dir: Path) -> list[StepRecord]:
    from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

    with (
        Emulator(load_seed(DEFAULT_SEED), state_dir=state_dir) as emulator,
        _acting_as(env := emulator.credential_env(TENANT)),
    ):
        demo = Demo(emulator, console)
        console.print("[bold]Chapter 1: access declared in code, enforced and kept[/bold]")
        console.print(f"Emulator: Entra ID at {emulator.authority_host}; Dataverse {ENVIRONMENT} at {demo.url}")
        console.print(f"Deploying identity: adp-identity-pipeline ({env['AZURE_CLIENT_ID']}), tenant {TENANT}")

        with demo.step("A token from azure-identity's WorkloadIdentityCredential"):
            token = WorkloadIdentityCredential().get_token(f"{demo.url}/.default")
            claims = jwt.decode(token.token, options={"verify_signature": False})
            console.print(f"  audience {claims['aud']}")
            console.print(
                f"  tenant {claims['tid']}, client {claims['appid']}, valid {claims['exp'] - claims['iat']} s"
            )
            console.print("  (the token itself is never printed)")

        batch, claims_app, web = (f"{PREFIX}ffc-pay-batch", f"{PREFIX}ahwr-claims", f"{PREFIX}ffc-pay-web")
        managed = {demo.app_id(a) for a in (batch, claims_app, web)}
        with ProviderHost(ApplicationUserProvider(), env=env, type_token=TYPE_TOKEN) as host:
            host.configure({})
            ids: dict[str, str] = {}
            outs: dict[str, dict[str, Any]] = {}
            props: dict[str, dict[str, Any]] = {}

            with demo.step(f"{PROVIDER}: create two users"), demo.before_after(managed):
                for app, roles, unit in (
                    (batch, ["Basic User", "FFC Payments Reader"], "ffc-payments"),
                    (claims_app, ["Basic User", "AHWR Claims Processor"], "animal-health"),
                ):
                    checked = host.check(_declared(demo, app, roles, unit))
                    props[app] = checked.inputs
                    ids[app], outs[app] = host.create(checked.inputs, name=app)
                console.print("  each user and all its roles: one atomic $batch change set")

            with (
                demo.step(f"{PROVIDER}: adopt a user made by hand"),
                demo.before_after({demo.app_id(web)}),
            ):
                console.print("  declared: ffc-payments; Basic User, FFC Payments Writer; enabled")
                checked = host.check(_declared(demo, web, ["Basic User", "FFC Payments Writer"], "ffc-payments"))
                props[web] = checked.inputs
                ids[web], outs[web] = host.create(checked.inputs, name=web)
                console.print("  adopted instead of a 412 duplicate: enabled, moved, exactly the declared roles")

            centre = AdminCentre.of(emulator, TENANT, ENVIRONMENT)
            with demo.step("Someone changes two users in the admin centre"), demo.before_after(managed):
                centre.grant(ids[batch], "System Administrator")
                centre.set_disabled(ids[claims_app], True)

            with demo.step(f"{PROVIDER}: refresh, drift found"):
                for app in (batch, claims_app, web):
                    _, live, _ = host.read(ids[app], outs[app], props[app], name=app)
                    diff = host.diff(ids[app], live, props[app], name=app)
                    changed = _drift_lines(outs[app], live)
                    verdict = (
                        "[red]drift[/red]: " + "; ".join(changed) if diff.has_changes else "[green]in sync[/green]"
                    )
                    console.print(f"  {app.removeprefix(PREFIX)}: {verdict}")
                    outs[app] = live

            with demo.step(f"{PROVIDER}: correct the drift"), demo.before_after(managed):
                for app in (batch, claims_app):
                    outs[app] = host.update(ids[app], outs[app], props[app], name=app)
                console.print("  only the difference was sent: one request per user")

            with demo.step(f"{PROVIDER}: destroy ahwr-claims"), demo.before_after(managed):
                host.delete(ids[claims_app], outs[claims_app], name=claims_app)
                console.print("  access revoked: roles removed, then disabled; the record is never deleted")

        return demo.steps


def brownfield(console: Console, state_dir: Path, *, first: int) -> list[StepRecord]:
    """Chapter 2: hand-made application users brought under code (export, validate, plan, a typo caught)."""
    from adp_identity.cli import cli
    from adp_identity.desired import load_tree
    from adp_identity.drift.sandbox import parse_emulator_description, stack_outputs
    from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

    console.print()
    console.print("[bold]Chapter 2: bringing hand-made access under code[/bold]")
    if not (STACKS / "Pulumi.defradev.yaml").is_file():
        console.print(f"  (skipped: chapter 2 reads the checkout's stacks/ tree, not found at {STACKS})")
        return []
    with (
        Emulator(load_seed(DEFAULT_SEED), state_dir=state_dir) as emulator,
        _acting_as(env := emulator.credential_env(TENANT)),
    ):
        demo = Demo(emulator, console, BROWNFIELD)
        demo.steps = [StepRecord("") for _ in range(first - 1)]  # keep the numbering of chapter 1
        work = Path(tempfile.mkdtemp(prefix="stacks-", dir=state_dir))
        stacks = work / "stacks"
        shutil.copytree(STACKS, stacks)
        description_file = work / "emulator.json"
        description_file.write_text(json.dumps(emulator.info), encoding="utf-8")
        description_file.chmod(0o600)
        outputs_file = work / "defradev.json"
        state = load_tree(stacks, "defradev", strict=False)["defradev"]
        description = parse_emulator_description(emulator.info, str(description_file))
        outputs_file.write_text(json.dumps(stack_outputs(state, description)), encoding="utf-8")
        common = ["--stacks", str(stacks), "--stack", "defradev", "--emulator", str(description_file)]

        def run(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
            return result.exit_code, result.output

        hand_made = {
            f"{PREFIX}ahwr-claims": ("animal-health", ["Basic User", "AHWR Claims Processor"]),
            f"{PREFIX}ffc-pay-web": ("ffc-payments", ["Basic User", "FFC Payments Writer"]),
        }
        centre = AdminCentre.of(emulator, TENANT, BROWNFIELD)
        mine = {demo.app_id(app) for app in hand_made}
        with demo.step(f"Someone adds two application users to {BROWNFIELD} by hand"), demo.before_after(mine):
            for app, (unit, roles) in hand_made.items():
                centre.create_user(demo.app_id(app), unit, roles)

        with demo.step("adp-identity export --environment tst --write"):
            before = {p.name: p.read_text() for p in sorted((stacks / "defradev").glob("*.yaml"))}
            code, out = run("export", *common, "--identities", str(outputs_file), "--environment", "tst", "--write")
            console.print("  " + (out.strip().splitlines() or ["(no output)"])[-1])
            for name, text in before.items():
                after = (stacks / "defradev" / name).read_text()
                if after != text:
                    console.print(f"  changed stacks/defradev/{name}:")
                    for line in _changed_lines(text, after):
                        console.print(f"    {line}", markup=False)
            if code != 0:
                raise click.ClickException(f"export failed (exit {code})")

        with demo.step("adp-identity validate"):
            code, out = run("validate", "--stacks", str(stacks), "--stack", "defradev")
            verdict = [line for line in out.splitlines() if line.startswith("validate:")] or ["(no verdict)"]
            console.print(f"  {verdict[-1]} (exit status {code})")

        with demo.step("adp-identity plan: the exported users"):
            code, out = run("plan", *common, "--identities", str(outputs_file), "--format", "json")
            report = json.loads(out)
            for user in report["application_users"]:
                if user["environment"] == "tst" and user["service"] in ("ahwr-claims", "ffc-pay-web"):
                    console.print(
                        f"  {user['service']} in tst: {user['writes']} write(s) to send "
                        f"in {user['requests']} request(s)"
                    )

        typo = stacks / "defradev" / "ahwr-vets.yaml"
        typo.write_text(
            "service: ahwr-vets\nteam: animal-health\ndataverse:\n  - environment: tst\n"
            "    business_unit: animal-health\n    security_roles: [Basic User, AHWR Claim Processor]\n",
            encoding="utf-8",
        )
        with demo.step("A typo in a new service file: plan"):
            code, out = run("plan", *common, "--identities", str(outputs_file))
            for line in out.strip().splitlines():
                if "AHWR Claim Processor" in line:
                    console.print(f"  {_short(line)}", markup=False)
                    break
            console.print(f"  plan exit status {code}: the pull request fails here")

        with demo.step("The same typo in the provider's check (preview)"):
            with ProviderHost(ApplicationUserProvider(), env=env, type_token=TYPE_TOKEN) as host:
                host.configure({})
                props = {
                    "environment_url": demo.url,
                    "application_id": demo.app_id(f"{PREFIX}ahwr-claims"),
                    "security_roles": ["Basic User", "AHWR Claim Processor"],
                    "business_unit": "animal-health",
                    "tenant_id": str(emulator.tenant(TENANT).id),
                }
                failures: list[Any]
                try:
                    failures = list(host.check(props).failures)
                except ProviderCallError as exc:  # pragma: no cover - check returns failures, never raises
                    failures = [exc.last_line]
                for failure in failures:
                    reason = failure[1] if isinstance(failure, tuple) else getattr(failure, "reason", failure)
                    console.print(f"  check failed: {_short(str(reason))}", markup=False)
            console.print("  preview stops before any write")
        return demo.steps[first - 1 :]


def _changed_lines(before: str, after: str) -> list[str]:
    import difflib

    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _drift_lines(stored: dict[str, Any], live: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    added = sorted(set(live["security_roles"]) - set(stored["security_roles"]))
    removed = sorted(set(stored["security_roles"]) - set(live["security_roles"]))
    if added:
        lines.append(f"roles added by hand: {', '.join(added)}")
    if removed:
        lines.append(f"roles removed by hand: {', '.join(removed)}")
    if stored["disabled"] != live["disabled"]:
        enabled = {False: "yes", True: "no"}
        lines.append(f"enabled: {enabled[bool(stored['disabled'])]} -> {enabled[bool(live['disabled'])]}")
    if stored["business_unit"] != live["business_unit"]:
        lines.append(f"business unit: {stored['business_unit']} -> {live['business_unit']}")
    return lines


def summarise(console: Console, steps: list[StepRecord]) -> None:
    table = Table(
        title="Requests each step sent to Dataverse", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    table.add_column("step", overflow="fold")
    for column in ("tool reads", "tool writes", "admin centre", "tokens"):
        table.add_column(column, justify="right")
    for number, step in enumerate(steps, 1):
        title = step.title.replace(f"{PROVIDER}: ", "provider: ")
        table.add_row(f"{number}. {title}", str(step.reads), str(step.writes), str(step.admin), str(step.tokens))
    table.add_section()
    table.add_row(
        "total",
        str(sum(s.reads for s in steps)),
        str(sum(s.writes for s in steps)),
        str(sum(s.admin for s in steps)),
        str(sum(s.tokens for s in steps)),
    )
    console.print(table)
    console.print(
        "Shown: access created, a hand-made user adopted, changes made by hand found as drift and corrected with "
        "only the difference sent, access revoked without deleting the record; then hand-made users exported to "
        "service files that validate and plan without a change, and a typo stopped before any write."
    )


@click.command(name="demo", help="Run the end-to-end demo against an in-process emulator.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the emulator's CA, keys and tokens here (default: a temporary directory).",
)
def command(state_dir: Path | None) -> None:
    console = Console(highlight=False, width=WIDTH, soft_wrap=False)
    runner: Callable[[Path], list[StepRecord]] = lambda d: run_demo(console, d)  # noqa: E731
    try:
        if state_dir is not None:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            steps = runner(state_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="adp-identity-demo-") as tmp:
                steps = runner(Path(tmp))
    except (OSError, ValueError) as exc:  # an unsafe --state-dir, say: one line, no traceback
        raise click.ClickException(str(exc).splitlines()[0]) from None
    summarise(console, steps)
