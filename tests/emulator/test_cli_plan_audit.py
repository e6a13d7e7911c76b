"""``adp-identity plan`` and ``adp-identity audit`` against the emulator, as a scheduled CI job runs them.

Each test copies the real ``stacks/`` tree (its tenant id set to the emulator's DefraDev tenant, as a sandbox copy
of the settings has it), writes an identities file (what ``pulumi stack output --json`` prints) that maps the
services to applications of the emulator's DefraDev tenant, and points the stack's ``dev`` and ``tst``
environments at the emulator's ``defradev-dev`` and ``defradev-tst`` with ``--environment-url``. The declared
state is applied (where a test needs it) with ``reconcile.ensure`` from users built here, independently of the
code under test, and the identities then name the users as ``pulumi up``'s outputs would; drift is then made "by
hand" on the emulator's state. Every run asserts from the emulator's request log that nothing but GETs reached
Dataverse, and how many.

The sandbox without a Pulumi CLI (``emulator --outputs-file``, ``--emulator FILE``, ``DATAVERSE_URL_*``), tenant
isolation, the cost figures, Markdown reports, Ctrl-C and ``docs/operations.md`` §10 as written are tested at the
end of this file.
"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adp_identity.cli import cli
from adp_identity.desired import DesiredState, load_tree
from adp_identity.drift.sandbox import parse_emulator_description, write_stack_outputs
from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed
from providers.dataverse.client import DataverseClient
from providers.dataverse.reconcile import DesiredUser, ensure

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]
TENANT = "DefraDev"
STACK_TENANT_ID = "6fb17b64-ece9-4b43-8acf-99e8d37b19ad"  # stacks/Pulumi.defradev.yaml
ENVIRONMENTS = {"dev": "defradev-dev", "tst": "defradev-tst"}  # stack short name -> emulator environment
# The application each (service, principal) signs in as. ffc-pay-batch's managed identity is an app with no
# service principal: an application user for it could not even be created, so using it by mistake shows.
APPLICATIONS = {
    ("ahwr-claims", "managed_identity"): "sndadpinfmi1401-ahwr-claims",
    ("ffc-pay-web", "managed_identity"): "sndadpinfmi1401-ffc-pay-web",
    ("ffc-pay-batch", "managed_identity"): "ADP-FFC-PayReports-snd1",
    ("ffc-pay-batch", "app_registration"): "sndadpinfmi1401-ffc-pay-batch",
}
ADMIN = "adp-platform-admin"  # System Administrator in every environment of the seed
USERS_PER_ENVIRONMENT = 3


@dataclass
class Inputs:
    """A stacks tree, an identities file and the environment URLs to point the stack at."""

    tmp: Path
    stacks: Path
    identities: Path
    apps: dict[str, str]  # application name -> client id
    urls: dict[str, str]  # stack short name -> origin

    def args(self, *extra: str, identities: str | None = None) -> list[str]:
        overrides = [arg for short, url in self.urls.items() for arg in ("--environment-url", f"{short}={url}")]
        return [
            "--stacks",
            str(self.stacks),
            "--stack",
            "defradev",
            "--identities",
            identities or str(self.identities),
            *overrides,
            "--max-retry-wait",
            "0",
            *extra,
        ]

    def desired_state(self) -> DesiredState:
        return load_tree(self.stacks, "defradev")["defradev"]


@dataclass
class Setup(Inputs):
    emulator: Emulator | None = None

    @property
    def emu(self) -> Emulator:
        assert self.emulator is not None
        return self.emulator

    def url(self, short: str) -> str:
        return self.urls[short]

    def state(self, short: str) -> Any:
        return self.emu.dataverse(ENVIRONMENTS[short])

    def user_of(self, short: str, service: str, principal: str = "managed_identity") -> Any:
        user = self.state(short).user_by_application_id(self.apps[APPLICATIONS[service, principal]])
        assert user is not None, f"no application user for {service} in {short}"
        return user


def write_inputs(tmp_path: Path, apps: dict[str, str], tenant_id: str) -> tuple[Path, Path]:
    stacks = tmp_path / "stacks"
    shutil.copytree(REPO / "stacks", stacks)
    settings = stacks / "Pulumi.defradev.yaml"
    settings.write_text(settings.read_text().replace(STACK_TENANT_ID, tenant_id))
    identities = tmp_path / "outputs.json"
    identities.write_text(json.dumps(stack_outputs(apps), indent=4))
    return stacks, identities


@pytest.fixture
def setup(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    for name, value in emulator.credential_env(TENANT).items():  # the deploying pipeline, federated
        monkeypatch.setenv(name, value)
    apps = {app.name: app.client_id for app in emulator.tenant(TENANT).applications}
    urls = {short: emulator.environment_url(name) for short, name in ENVIRONMENTS.items()}
    tenant_id = emulator.tenant(TENANT).id
    return Setup(tmp_path, *write_inputs(tmp_path, apps, tenant_id), apps, urls, emulator)


@pytest.fixture
def offline(tmp_path: Path) -> Inputs:
    """Inputs for errors found before anything is read: no emulator runs, nothing listens at the URLs."""
    (tenant,) = [t for t in load_seed(DEFAULT_SEED).tenants if t.name == TENANT]
    apps = {app.name: app.client_id for app in tenant.applications}
    return Inputs(tmp_path, *write_inputs(tmp_path, apps, tenant.id), apps, {"dev": "https://127.0.0.1:9"})


def stack_outputs(apps: dict[str, str], users: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, object]]:
    """The shape of `pulumi stack output --json` for the program (infra/components/service.py stack_outputs)."""
    outputs: dict[str, dict[str, object]] = {}
    for service in ("ahwr-claims", "ffc-pay-batch", "ffc-pay-web"):
        outputs[service] = {
            "identity_name": f"sndadpinfmi1401-{service}",
            "client_id": apps[APPLICATIONS[service, "managed_identity"]],
            "principal_id": "0f9b7d2e-6c1a-4e8b-9d3f-2a5c7e9b1d4f",
            "tenant_id": STACK_TENANT_ID,
            "dataverse_application_users": dict((users or {}).get(service, {})),
        }
    outputs["ffc-pay-batch"]["app_registration_client_id"] = apps[APPLICATIONS["ffc-pay-batch", "app_registration"]]
    return outputs


def apply_declared_state(setup: Setup) -> None:
    """What `pulumi up` would leave behind, built from the service files here (not by the code under test):
    the users, and stack outputs that name them."""
    state = setup.desired_state()
    users: dict[str, dict[str, str]] = {}
    for service, spec in state.services.items():
        for access in spec.dataverse:
            desired = DesiredUser(
                environment_url=setup.url(access.environment),
                application_id=setup.apps[APPLICATIONS[service, access.principal]],
                business_unit=access.business_unit,
                security_roles=frozenset(access.security_roles),
                disabled=access.disabled,
            )
            user, _ = ensure(DataverseClient(desired.environment_url), desired)
            users.setdefault(service, {})[access.environment] = user.systemuser_id
    setup.identities.write_text(json.dumps(stack_outputs(setup.apps, users), indent=4))


def run(inputs: Inputs, command: str, *extra: str, identities: str | None = None, stdin: bytes | None = None) -> Result:
    if isinstance(inputs, Setup):
        inputs.emu.log.clear()
    result = CliRunner().invoke(cli, [command, *inputs.args(*extra, identities=identities)], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def dataverse_requests(setup: Setup) -> Counter[tuple[str, str, str]]:
    """(environment, method, table) -> count, from the emulator's request log."""
    return Counter(
        (e.env or "", e.method, e.path.rsplit("/", 1)[-1]) for e in setup.emu.log.entries if e.service == "dataverse"
    )


def assert_reads_only(setup: Setup) -> None:
    """Zero writes; per environment the user list once (1 page) and the catalog once (2 GETs), whatever the number
    of declared users (USERS_PER_ENVIRONMENT here): plan and audit read the same."""
    requests = dataverse_requests(setup)
    assert [key for key in requests if key[1] != "GET"] == []
    expected: Counter[tuple[str, str, str]] = Counter()
    for environment in ENVIRONMENTS.values():
        expected[environment, "GET", "systemusers"] = 1
        expected[environment, "GET", "businessunits"] = 1
        expected[environment, "GET", "roles"] = 1
    assert requests == expected


def audit_json(setup: Setup, *extra: str) -> tuple[int, dict[str, Any]]:
    result = run(setup, "audit", "--format", "json", *extra)
    return result.exit_code, json.loads(result.output)


def drifted(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(u["environment"], u["service"]): u for u in report["application_users"] if u["drift"]}


# -- plan -------------------------------------------------------------------------------------------------------


def test_plan_lists_the_operations_grouped_by_environment_and_writes_nothing(setup: Setup) -> None:
    web_before = setup.user_of("dev", "ffc-pay-web")
    users_before = {short: len(setup.state(short).users) for short in ENVIRONMENTS}

    result = run(setup, "plan")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    web = setup.apps[APPLICATIONS["ffc-pay-web", "managed_identity"]]
    hand_made = setup.user_of("dev", "ffc-pay-web")
    start = lines.index(
        f"  ffc-pay-web (managed identity {web}): adopt the existing application user "
        f"'sndadpinfmi1401-ffc-pay-web' ({hand_made.id}); 3 writes in 1 request"
    )
    assert lines[start + 1 : start + 5] == [  # one bullet per write
        "    - enable the user",
        "    - move from business unit 'animal-health' to 'ffc-payments' (Dataverse removes its security role "
        "'System Administrator' on the move)",
        "    - associate security roles 'Basic User', 'FFC Payments Reader'",
        "  unmanaged application user 'adp-platform-admin' (application "
        f"{setup.apps[ADMIN]}, systemuser {setup.state('dev').user_by_application_id(setup.apps[ADMIN]).id}) "
        "holds privileged security role 'System Administrator'",
    ]
    assert lines.index(f"tst ({setup.url('tst')})") > start > lines.index(f"dev ({setup.url('dev')})") == 0
    batch = setup.apps[APPLICATIONS["ffc-pay-batch", "app_registration"]]
    assert f"    - create the application user for application {batch} in business unit 'ffc-payments'" in lines
    assert "    - disable the user" in lines  # ahwr-claims is declared disabled in tst
    assert lines[-1] == (
        "plan: 6 of 6 application users would change (14 writes in 6 requests); 1 to adopt; 0 up to date; "
        "2 environments read; 2 unmanaged privileged application users; nothing was written"
    )
    assert_reads_only(setup)
    web_after = setup.user_of("dev", "ffc-pay-web")
    assert (web_after.disabled, web_after.business_unit_id) == (True, web_before.business_unit_id)
    assert {short: len(setup.state(short).users) for short in ENVIRONMENTS} == users_before


def test_plan_after_apply_is_up_to_date(setup: Setup) -> None:
    apply_declared_state(setup)
    result = run(setup, "plan")
    assert result.exit_code == 0, result.output
    assert sum(1 for line in result.output.splitlines() if line.endswith(": up to date")) == 6
    assert result.output.splitlines()[-1].startswith(
        "plan: 0 of 6 application users would change (0 writes in 0 requests)"
    )
    assert_reads_only(setup)


def test_plan_reads_the_identities_from_stdin(setup: Setup) -> None:
    apply_declared_state(setup)
    result = run(setup, "plan", identities="-", stdin=setup.identities.read_bytes())
    assert result.exit_code == 0, result.output
    assert "plan: 0 of 6 application users would change" in result.output


# -- audit: clean and drift ---------------------------------------------------------------------------------------


def test_audit_of_the_applied_state_finds_no_drift_and_only_reads(setup: Setup) -> None:
    apply_declared_state(setup)
    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["audit: no drift: 6 application users in 2 environments checked"]
    assert_reads_only(setup)

    code, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    assert code == 0
    assert report["drift"] is False
    assert report["errors"] == [] and report["unmanaged_privileged_users"] == []
    assert len(report["application_users"]) == 6 and drifted(report) == {}


def test_audit_names_a_role_granted_by_hand(setup: Setup) -> None:
    apply_declared_state(setup)
    dev = setup.state("dev")
    web = setup.user_of("dev", "ffc-pay-web")
    dev.associate(web.id, dev.role_id("System Customizer", "ffc-payments"))

    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "dev ffc-pay-web: extra security role 'System Customizer' (not declared)",
        "audit: drift: 1 of 6 application users differ",
    ]
    code, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    assert code == 2 and report["drift"] is True
    (entry,) = drifted(report).values()
    assert (entry["environment"], entry["service"], entry["systemuser_id"]) == ("dev", "ffc-pay-web", web.id)
    assert entry["extra_roles"] == ["System Customizer"] and entry["missing_roles"] == []
    assert (entry["missing"], entry["disabled"], entry["business_unit"]) == (False, None, None)
    assert_reads_only(setup)


def test_audit_reports_a_user_disabled_by_hand(setup: Setup) -> None:
    apply_declared_state(setup)
    setup.state("tst").set_disabled(setup.user_of("tst", "ffc-pay-batch", "app_registration").id, True)
    setup.state("tst").set_disabled(setup.user_of("tst", "ahwr-claims").id, False)  # declared disabled

    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "tst ahwr-claims: enabled, declared disabled",
        "tst ffc-pay-batch: disabled, declared enabled",
        "audit: drift: 2 of 6 application users differ",
    ]
    _, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    assert drifted(report)["tst", "ffc-pay-batch"]["disabled"] == {"actual": True, "declared": False}
    assert drifted(report)["tst", "ahwr-claims"]["disabled"] == {"actual": False, "declared": True}


def test_audit_reports_a_business_unit_moved_by_hand(setup: Setup) -> None:
    apply_declared_state(setup)
    setup.state("dev").move_business_unit(setup.user_of("dev", "ahwr-claims").id, "ffc-payments")  # strips roles

    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "dev ahwr-claims: business unit 'ffc-payments', declared 'animal-health'",
        "dev ahwr-claims: missing security roles 'AHWR Claims Processor', 'Basic User'",
        "audit: drift: 1 of 6 application users differ",
    ]
    _, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    entry = drifted(report)["dev", "ahwr-claims"]
    assert entry["business_unit"] == {"actual": "ffc-payments", "declared": "animal-health"}
    assert entry["missing_roles"] == ["AHWR Claims Processor", "Basic User"] and entry["extra_roles"] == []


def test_audit_reports_a_missing_user(setup: Setup) -> None:
    apply_declared_state(setup)
    tst = setup.state("tst")
    web = setup.user_of("tst", "ffc-pay-web")
    tst.set_disabled(web.id, True)
    tst.delete_user(web.id)

    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 2, result.output
    application = setup.apps[APPLICATIONS["ffc-pay-web", "managed_identity"]]
    assert result.output.splitlines() == [
        f"tst ffc-pay-web: application user missing (application {application}; declared in business unit "
        "'ffc-payments' with security roles 'Basic User', 'FFC Payments Reader')",
        "audit: drift: 1 of 6 application users differ",
    ]
    _, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    entry = drifted(report)["tst", "ffc-pay-web"]
    assert entry["missing"] is True and entry["systemuser_id"] is None
    assert entry["declared"] == {
        "business_unit": "ffc-payments",
        "security_roles": ["Basic User", "FFC Payments Reader"],
        "disabled": False,
    }


def test_audit_reports_unmanaged_application_users_with_privileged_roles(setup: Setup) -> None:
    apply_declared_state(setup)
    dev = setup.state("dev")
    rogue = dev.add_application_user(
        "2f0c6a61-8d47-4b7e-9c1e-5a3d2b1f0e9c",
        display_name="hand-made-integration",
        object_id="6d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
        business_unit="ffc-payments",
        roles=["Basic User", "System Administrator"],
    )
    dev.add_application_user(  # unmanaged but harmless: not reported
        "3a1d7b72-9e58-4c8f-8d2f-6b4e3c2a1f0d",
        display_name="report-reader",
        object_id="7e2f3a4b-5c6d-4e7f-9081-92a3b4c5d6e7",
        roles=["Service Reader"],
    )

    result = run(setup, "audit")

    assert result.exit_code == 2, result.output
    admin_dev = setup.state("dev").user_by_application_id(setup.apps[ADMIN])
    admin_tst = setup.state("tst").user_by_application_id(setup.apps[ADMIN])
    assert result.output.splitlines() == [  # by environment, then by name
        f"dev: unmanaged application user 'adp-platform-admin' (application {setup.apps[ADMIN]}, systemuser "
        f"{admin_dev.id}) holds privileged security role 'System Administrator'",
        "dev: unmanaged application user 'hand-made-integration' (application "
        f"2f0c6a61-8d47-4b7e-9c1e-5a3d2b1f0e9c, systemuser {rogue.id}) holds privileged security role "
        "'System Administrator'",
        f"tst: unmanaged application user 'adp-platform-admin' (application {setup.apps[ADMIN]}, systemuser "
        f"{admin_tst.id}) holds privileged security role 'System Administrator'",
        "audit: drift: 3 unmanaged privileged application users",
    ]

    code, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    assert code == 2 and drifted(report) == {}
    assert report["unmanaged_privileged_users"] == [
        {
            "environment": "dev",
            "systemuser_id": rogue.id,
            "application_id": "2f0c6a61-8d47-4b7e-9c1e-5a3d2b1f0e9c",
            "full_name": "hand-made-integration",
            "disabled": False,
            "business_unit": "ffc-payments",
            "privileged_roles": ["System Administrator"],
        }
    ]
    assert_reads_only(setup)


def test_audit_of_the_seed_reports_the_hand_made_user_exactly(setup: Setup) -> None:
    code, report = audit_json(setup, "--allow-privileged", setup.apps[ADMIN])
    assert code == 2
    found = drifted(report)
    assert set(found) == {(e, s) for e in ENVIRONMENTS for s in ("ahwr-claims", "ffc-pay-batch", "ffc-pay-web")}
    web = found["dev", "ffc-pay-web"]
    assert web["missing"] is False
    assert web["disabled"] == {"actual": True, "declared": False}
    assert web["business_unit"] == {"actual": "animal-health", "declared": "ffc-payments"}
    assert web["extra_roles"] == ["System Administrator"]
    assert web["missing_roles"] == ["Basic User", "FFC Payments Reader"]
    assert all(u["missing"] for key, u in found.items() if key != ("dev", "ffc-pay-web"))


# -- errors: one line each, exit 1 ------------------------------------------------------------------------------


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["plan", "audit"])
def test_a_bad_identities_file_is_one_line(offline: Inputs, command: str) -> None:
    bad = offline.tmp / "bad.json"
    bad.write_text('{\n  "ffc-pay-web": {"client_id": "fc9fbebc-4fc2-484c-b463-1f766e4117e6",}\n}\n')
    line = one_error(run(offline, command, identities=str(bad)))
    assert line.startswith(f"{bad}:2: (document): not valid JSON (")


def test_an_unreadable_identities_file_is_one_line(offline: Inputs) -> None:
    missing = offline.tmp / "nope.json"
    line = one_error(run(offline, "audit", identities=str(missing)))
    assert (
        line
        == f"{missing}: (document): cannot be read (No such file or directory); allowed: a readable JSON or YAML file"
    )


def test_an_unknown_service_in_the_identities_is_one_line(offline: Inputs) -> None:
    outputs = stack_outputs(offline.apps)
    outputs["ffc-pay-api"] = {"client_id": "0b7e3a52-1c9d-4f60-8e2a-7d5b4c3a2f1e"}
    offline.identities.write_text(json.dumps(outputs))
    line = one_error(run(offline, "audit"))
    assert line == (
        f"{offline.identities}: ffc-pay-api: unknown service 'ffc-pay-api' of stack 'defradev'; "
        "allowed: services: ahwr-claims, ffc-pay-batch, ffc-pay-web"
    )


def test_a_missing_app_registration_id_is_one_line_for_audit(offline: Inputs) -> None:
    outputs = stack_outputs(offline.apps)
    del outputs["ffc-pay-batch"]["app_registration_client_id"]
    offline.identities.write_text(json.dumps(outputs))
    lines = run(offline, "audit").output.splitlines()
    assert lines == [
        f"{offline.identities}: ffc-pay-batch.app_registration_client_id: missing: environment '{short}' uses "
        "principal app_registration; allowed: the app registration's application (client) id"
        for short in ("dev", "tst")
    ]


def test_an_unknown_environment_override_is_one_line(offline: Inputs) -> None:
    line = one_error(run(offline, "audit", "--environment-url", "qa=https://127.0.0.1:1"))
    assert line == "--environment-url: qa: unknown environment 'qa' of stack 'defradev'; allowed: dev, tst"


def test_an_invalid_tree_gets_the_loaders_one_line_errors(offline: Inputs) -> None:
    service = offline.stacks / "defradev" / "ffc-pay-web.yaml"
    service.write_text(service.read_text().replace("environment: tst", "environment: qa"))
    line = one_error(run(offline, "audit"))
    assert line.startswith(f"{service.parent.parent.name}/defradev/ffc-pay-web.yaml:")
    assert "dataverse[1].environment" in line and "'qa'" in line and "allowed:" in line


def test_an_environment_no_token_can_be_had_for_is_one_line_naming_it(setup: Setup) -> None:
    apply_declared_state(setup)
    with socket.socket() as probe:  # a loopback origin Entra ID knows no resource for
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = setup.args("--allow-privileged", setup.apps[ADMIN])
    args[args.index(f"dev={setup.url('dev')}")] = f"dev=https://127.0.0.1:{port}"
    setup.emu.log.clear()

    result = CliRunner().invoke(cli, ["audit", *args])

    assert result.exit_code == 1, result.output
    (error,) = error_lines(result)
    assert error.startswith(
        f"dev: error: cannot read the environment: could not get a token for https://127.0.0.1:{port}/.default: "
    )
    assert result.output.splitlines()[-1] == (
        "audit: no drift: 3 application users in 2 environments checked; 1 error: the audit is incomplete"
    )
    assert {entry.env for entry in setup.emu.log.entries if entry.service == "dataverse"} == {"defradev-tst"}


def test_an_unreachable_environment_is_one_line_naming_it(setup: Setup) -> None:
    apply_declared_state(setup)
    setup.emu.faults.script("drop", service="dataverse")  # dev is read first: its first request

    result = run(setup, "plan")

    assert result.exit_code == 1, result.output
    (error,) = error_lines(result)
    assert error.startswith(
        f"dev: error: cannot read the environment: Dataverse environment {setup.url('dev')}: the connection failed"
    )
    assert result.output.count(": up to date") == 3  # tst was still read
    assert_no_writes(setup)


def test_errors_reach_the_terminal_as_single_lines(setup: Setup) -> None:
    """In a real process (no pytest log capture), azure-identity's multi-line warnings must not leak."""
    args = setup.args()
    args[args.index(f"tst={setup.url('tst')}")] = "tst=https://127.0.0.1:9"
    process = subprocess.run(
        [sys.executable, "-m", "adp_identity.cli", "plan", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert process.stderr == ""
    errors = [line for line in process.stdout.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("tst: error: cannot read the environment: could not get a token")


def test_a_forbidden_environment_is_one_line_naming_it_and_never_a_token(setup: Setup) -> None:
    apply_declared_state(setup)
    dev = setup.state("dev")
    pipeline = dev.user_by_application_id(setup.emu.identity(TENANT)["client_id"])
    dev.set_disabled(pipeline.id, True)

    result = run(setup, "audit", "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 1, result.output
    (error,) = error_lines(result)
    assert error.startswith("dev: error: cannot read the environment: The user with SystemUserId=")
    assert error.endswith("-> 403)")
    assert "eyJ" not in result.output and "Bearer" not in result.output  # no JWT, no header
    token_file = Path(setup.emu.identity(TENANT, kind="federated")["federated_token_file"])
    assert token_file.read_text().strip() not in result.output
    assert_no_writes(setup)


def test_an_unknown_role_names_the_file_the_environment_the_role_and_the_closest_names(setup: Setup) -> None:
    service = setup.stacks / "defradev" / "ffc-pay-web.yaml"
    text = service.read_text()
    service.write_text(text.replace("FFC Payments Reader", "FFC Payments Raeder", 1))
    line = 1 + text[: text.index("FFC Payments Reader")].count("\n")
    result = run(setup, "plan")
    assert result.exit_code == 1, result.output
    assert (
        f"  ffc-pay-web: error: stacks/defradev/ffc-pay-web.yaml:{line}: dataverse[0].security_roles[1]: security "
        "role 'FFC Payments Raeder' does not exist in business unit 'ffc-payments' of environment dev "
        f"({setup.url('dev')}); did you mean 'FFC Payments Reader' (or 'FFC Payments Writer')?"
    ) in result.output.splitlines(), result.output
    assert_no_writes(setup)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if ": error: " in line]


def assert_no_writes(setup: Setup) -> None:
    assert [key for key in dataverse_requests(setup) if key[1] != "GET"] == []


# -- names checked in the pull request: services with no stack outputs yet ------------------------------------------


def test_plan_plans_a_service_without_outputs_as_to_be_created(setup: Setup) -> None:
    outputs = json.loads(setup.identities.read_text())
    del outputs["ahwr-claims"]  # a new service in a pull request: not deployed, so no stack outputs
    setup.identities.write_text(json.dumps(outputs))

    result = run(setup, "plan")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines.count("  ahwr-claims (managed identity, not created yet): to be created; 2 writes in 1 request") == 1
    assert (
        "    - create the application user in business unit 'animal-health' (its principal is created first)" in lines
    )
    assert "  ahwr-claims (managed identity, not created yet): to be created; 3 writes in 1 request" in lines  # tst
    assert_reads_only(setup)


def test_a_typo_in_a_new_service_fails_plan_naming_the_file_and_the_closest_names(setup: Setup) -> None:
    new = setup.stacks / "defradev" / "ffc-pay-api.yaml"
    new.write_text(
        "service: ffc-pay-api\nteam: ffc-payments\ndataverse:\n  - environment: dev\n    business_unit: ffc-paymnets\n"
        "    security_roles: [Basic User]\n  - environment: tst\n    business_unit: ffc-payments\n"
        "    security_roles:\n      - Basic User\n      - FFC Payments Raeder\n"
    )
    result = run(setup, "plan")

    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("  ffc-pay-api: error: ")]
    assert errors == [
        "  ffc-pay-api: error: stacks/defradev/ffc-pay-api.yaml:5: dataverse[0].business_unit: business unit "
        f"'ffc-paymnets' does not exist in environment dev ({setup.url('dev')}); did you mean 'ffc-payments'?",
        "  ffc-pay-api: error: stacks/defradev/ffc-pay-api.yaml:11: dataverse[1].security_roles[1]: security role "
        "'FFC Payments Raeder' does not exist in business unit 'ffc-payments' of environment tst "
        f"({setup.url('tst')}); did you mean 'FFC Payments Reader' (or 'FFC Payments Writer')?",
    ]
    assert result.output.splitlines()[-1].endswith("; nothing was written; 2 errors")
    assert_reads_only(setup)


def test_plan_without_any_identities_resolves_every_name(setup: Setup) -> None:
    args = setup.args()
    at = args.index("--identities")
    del args[at : at + 2]
    result = CliRunner().invoke(cli, ["plan", *args])
    assert result.exit_code == 0, result.output
    assert result.output.count("not created yet): to be created") == 6


# -- tenant isolation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "audit", "export"])
def test_a_credential_of_another_tenant_is_refused_before_any_dataverse_request(setup: Setup, command: str) -> None:
    settings = setup.stacks / "Pulumi.defradev.yaml"  # the stack's own tenant id, not the emulator's DefraDev
    settings.write_text(settings.read_text().replace(setup.emu.tenant(TENANT).id, STACK_TENANT_ID))
    setup.emu.log.clear()

    result = CliRunner().invoke(cli, [command, *setup.args()])

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == (
        f"{command}: refused: Dataverse environment dev ({setup.url('dev')}, from --environment-url) belongs to tenant "
        f"{STACK_TENANT_ID}, but the credential signs in to tenant {setup.emu.tenant(TENANT).id}; use the identity "
        "of that tenant (AZURE_TENANT_ID / the pipeline's service connection); nothing was sent to Dataverse"
    )
    assert dataverse_requests(setup) == Counter()


def test_the_same_credential_with_its_own_tenant_reads(setup: Setup) -> None:
    result = run(setup, "export")
    assert result.exit_code == 0, result.output
    # per environment: one page of users, and the catalog (the business unit is named from it, never expanded
    # beside the roles: ADR 8)
    assert sum(dataverse_requests(setup).values()) == 2 * 3


# -- the sandbox: the emulator's variables and its description ---------------------------------------------------------


def test_plan_reads_the_emulators_dataverse_url_variables(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENTS.values():
        monkeypatch.setenv("DATAVERSE_URL_" + name.upper().replace("-", "_"), setup.emu.environment_url(name))
    args = [a for a in setup.args() if not a.startswith(("--environment-url", "dev=", "tst="))]
    result = CliRunner().invoke(cli, ["plan", *args])
    assert result.exit_code == 0, result.output
    assert f"dev ({setup.url('dev')})" in result.output.splitlines()
    assert_reads_only(setup)


def test_dataverse_url_variables_keep_the_stacks_tenant(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables carry URLs only: against the repository's stacks the emulator's tenant id is not the stack's."""
    for name, value in emulator.credential_env(TENANT).items():
        monkeypatch.setenv(name, value)
    for name in ENVIRONMENTS.values():
        monkeypatch.setenv("DATAVERSE_URL_" + name.upper().replace("-", "_"), emulator.environment_url(name))
    result = CliRunner().invoke(cli, ["plan", "--stacks", str(REPO / "stacks"), "--stack", "defradev"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "from DATAVERSE_URL_DEFRADEV_DEV) belongs to tenant 6fb17b64" in line
    assert line.endswith(
        "(the emulator's tenants have ids of their own: pass --emulator <its --json-file>); "
        "nothing was sent to Dataverse"
    )
    assert not [e for e in emulator.log.entries if e.service == "dataverse"]


def test_the_emulator_file_runs_the_real_stacks_unchanged(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.credential_env(TENANT).items():
        monkeypatch.setenv(name, value)
    emulator.write_info(tmp_path / "emulator.json")
    states = load_tree(REPO / "stacks")
    description = parse_emulator_description(emulator.info, "the emulator")
    written = dict(
        (path.name, services) for path, services, _ in write_stack_outputs(tmp_path / "outputs", states, description)
    )
    assert written == {"defra.json": 3, "defradev.json": 3}
    base = ["--stacks", str(REPO / "stacks"), "--stack", "defradev", "--emulator", str(tmp_path / "emulator.json")]
    identities = ["--identities", str(tmp_path / "outputs" / "defradev.json")]

    plan = CliRunner().invoke(cli, ["plan", *base, *identities])
    audit = CliRunner().invoke(cli, ["audit", *base, *identities, "--format", "json"])

    assert plan.exit_code == 0, plan.output
    assert f"dev ({emulator.environment_url('defradev-dev')})" in plan.output.splitlines()
    assert audit.exit_code == 2, audit.output
    report = json.loads(audit.stdout)
    assert {u["service"] for u in report["application_users"]} == {"ahwr-claims", "ffc-pay-batch", "ffc-pay-web"}
    assert report["errors"] == []


# -- cost: ceil(N/5000) + 2 requests per environment ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "audit"])
def test_reading_an_environment_of_n_users_costs_ceil_n_over_5000_plus_the_catalog(setup: Setup, command: str) -> None:
    apply_declared_state(setup)
    dev = setup.state("dev")
    for index in range(5001 - len(dev.users)):
        dev.add_application_user(
            str(uuid.uuid5(uuid.NAMESPACE_OID, f"hand-made-{index}")),
            display_name=f"hand-made-{index:04d}",
            object_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"object-{index}")),
            roles=["Basic User"],
        )
    counts = {short: len(setup.state(short).users) for short in ENVIRONMENTS}
    assert counts["dev"] >= 5001

    result = run(setup, command, "--allow-privileged", setup.apps[ADMIN])

    assert result.exit_code == 0, result.output[-2000:]
    requests = dataverse_requests(setup)
    for short, environment in ENVIRONMENTS.items():
        per_environment = sum(n for (env, _, _), n in requests.items() if env == environment)
        assert per_environment == math.ceil(counts[short] / 5000) + 2, (short, requests)
    assert requests["defradev-dev", "GET", "systemusers"] == 2


# -- reports for pull requests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [("plan", 0), ("audit", 2)])
def test_markdown_is_one_comment_with_the_summary_table_first(setup: Setup, command: str, code: int) -> None:
    result = run(setup, command, "--format", "markdown")
    assert result.exit_code == code, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"### adp-identity {command}: stack `defradev`"
    table = lines.index(
        "| Environment | Create | Adopt | Change | Disable | Unmanaged privileged | Up to date | Errors |"
    )
    assert lines[table + 2] == "| `dev` | 2 | 1 | 1 | 0 | 1 | 0 | 0 |"
    assert lines[table + 3] == "| `tst` | 3 | 0 | 0 | 1 | 1 | 0 | 0 |"
    assert table < lines.index("<details>") and result.stdout.count("<details>") == 2
    assert "Traceback" not in result.output and "eyJ" not in result.output


# -- progress on a terminal, quiet in CI; Ctrl-C -----------------------------------------------------------------------


def _subprocess_env(setup: Setup, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(setup.emu.credential_env(TENANT))
    env.update(extra)
    return env


@pytest.mark.parametrize("ci", [False, True])
def test_progress_is_drawn_on_a_terminal_and_not_in_ci(setup: Setup, ci: bool) -> None:
    main, other = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "adp_identity.cli", "audit", *setup.args()],
            stdout=subprocess.PIPE,
            stderr=other,
            env=_subprocess_env(setup, **({"CI": "true"} if ci else {}), COLUMNS="100", TERM="xterm"),
        )
        os.close(other)
        stdout, _ = process.communicate(timeout=90)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
    assert process.returncode == 2, stdout
    assert stdout.decode().splitlines()[-1].startswith("audit: drift:")
    drawn = b"audit: reading 2 environments" in seen
    assert drawn is (not ci), seen[-500:]


def test_ctrl_c_stops_cleanly_with_one_line_and_exit_130(setup: Setup) -> None:
    setup.emu.faults.set_rates(seed=1, latency_ms=4000)  # every Dataverse answer takes 4 s
    setup.emu.log.clear()
    process = subprocess.Popen(
        [sys.executable, "-m", "adp_identity.cli", "audit", *setup.args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_subprocess_env(setup),
    )
    deadline = time.monotonic() + 60
    while not any(e.service == "entra" and e.path.endswith("/token") for e in setup.emu.log.entries):
        assert time.monotonic() < deadline and process.poll() is None, "the audit never asked for a token"
        time.sleep(0.05)
    time.sleep(0.5)  # now inside the first (slow) Dataverse read
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    setup.emu.faults.clear()
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.decode().splitlines() == ["audit: interrupted; the audit is incomplete"]
    assert b"Traceback" not in stdout + stderr


# -- docs/operations.md §10, run as written --------------------------------------------------------------------------


def section_10() -> tuple[str, str, list[str]]:
    """The section's terminal-1 command, its terminal-2 commands and the expected last lines, as written."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## 10. Running everything against the local emulator") :]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)
    shells = [body for kind, body in blocks if kind == "sh"]
    (expected,) = [body for kind, body in blocks if kind == "text"]
    assert len(shells) == 2, "the section is three commands: one for terminal 1, two for terminal 2"
    terminal_1, terminal_2 = shells
    assert len(terminal_1.strip().splitlines()) == 1 and len(terminal_2.strip().splitlines()) == 2
    return terminal_1, terminal_2, expected.strip().splitlines()


def test_operations_section_10_runs_as_written(tmp_path: Path) -> None:
    terminal_1, terminal_2, expected = section_10()
    checkout = tmp_path / "checkout"  # the commands run from a checkout after `make install`
    checkout.mkdir()
    (checkout / ".venv").symlink_to(REPO / ".venv")
    shutil.copytree(REPO / "stacks", checkout / "stacks")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "DATAVERSE_URL_")) and k != "CI"}
    emulator = subprocess.Popen(
        ["bash", "-c", f"exec {terminal_1.strip()}"],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean,
    )
    try:
        assert emulator.stdout is not None and emulator.stderr is not None
        printed: list[str] = []
        deadline = time.monotonic() + 60
        while not printed or not printed[-1].startswith("export DATAVERSE_URL_DEFRA_PRD="):
            assert time.monotonic() < deadline and emulator.poll() is None, printed
            printed.append(emulator.stdout.readline().rstrip("\n"))
        while "emulator running" not in emulator.stderr.readline():  # the stack outputs are written before this
            assert time.monotonic() < deadline and emulator.poll() is None
        pasted = "\n".join(printed)  # "paste the export lines into terminal 2"
        session = subprocess.run(
            ["bash", "-c", f"{pasted}\n{terminal_2}"],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean,
            check=False,
        )
    finally:
        emulator.send_signal(signal.SIGINT)  # "Ctrl-C in terminal 1 stops the emulator"
        _, rest = emulator.communicate(timeout=30)
    assert session.returncode == 0, session.stdout + session.stderr  # the last command is `echo "exit $?"`
    assert session.stderr == ""
    last_lines = [line for line in session.stdout.splitlines() if line.startswith(("plan: ", "audit: ", "exit "))]
    assert last_lines == expected
    assert "emulator stopped" in rest and emulator.returncode == 0
    outputs = json.loads((checkout / ".emulator" / "outputs" / "defradev.json").read_text())
    assert outputs["ffc-pay-batch"]["app_registration_client_id"]  # the seed's ADP-FFC-PayBatch
