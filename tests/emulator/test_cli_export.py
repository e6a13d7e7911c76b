"""``adp-identity export`` against the emulator: hand-made application users brought under code (issue 7 §2).

Acceptance, on the emulator's default seed: export writes the files, ``validate`` passes (or reports only the
privileged-role policy), and ``plan`` shows no change for every exported user; exporting twice gives the same
files. The sandbox is the one ``docs/operations.md`` §10 describes: the real ``stacks/`` tree (copied), the
emulator's ``--json-file`` (``--emulator``) and the stack outputs ``emulator --outputs-file`` writes.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adp_identity.cli import cli
from adp_identity.desired import load_tree
from adp_identity.drift.sandbox import parse_emulator_description, write_stack_outputs
from adp_identity_emulator import Emulator

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Sandbox:
    emu: Emulator
    root: Path
    stacks: Path
    emulator_file: Path
    outputs: Path

    def use(self, monkeypatch: pytest.MonkeyPatch, tenant: str) -> None:
        for name, value in self.emu.credential_env(tenant).items():
            monkeypatch.setenv(name, value)

    def run(self, command: str, stack: str, *extra: str, identities: bool = True) -> Result:
        self.emu.log.clear()
        args = [command, "--stacks", str(self.stacks), "--stack", stack]
        if command != "validate":
            args += ["--emulator", str(self.emulator_file)]
            if identities:
                args += ["--identities", str(self.outputs / f"{stack}.json")]
        result = CliRunner().invoke(cli, [*args, *extra])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result

    def dataverse_requests(self) -> Counter[tuple[str, str]]:
        return Counter((e.method, e.path.rsplit("/", 1)[-1]) for e in self.emu.log.entries if e.service == "dataverse")

    def files(self) -> dict[str, str]:
        return {str(p.relative_to(self.stacks)): p.read_text() for p in sorted(self.stacks.rglob("*.yaml"))}


def make_sandbox(emu: Emulator, root: Path, stacks: Path) -> Sandbox:
    emu.write_info(root / "emulator.json")
    write_stack_outputs(root / "outputs", load_tree(stacks), parse_emulator_description(emu.info, "emulator"))
    return Sandbox(emu, root, stacks, root / "emulator.json", root / "outputs")


@pytest.fixture
def sandbox(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    stacks = tmp_path / "stacks"
    shutil.copytree(REPO / "stacks", stacks)
    box = make_sandbox(emulator, tmp_path, stacks)
    box.use(monkeypatch, "DefraDev")
    return box


def plan_json(box: Sandbox, stack: str) -> dict[str, Any]:
    result = box.run("plan", stack, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def exported_pairs(output: str) -> set[tuple[str, str]]:
    """(service, environment) of each file line ``wrote stacks/<stack>/<service>.yaml (<status>: dev, tst)``."""
    pairs: set[tuple[str, str]] = set()
    for line in output.splitlines():
        if line.startswith(("wrote ", "# ==> ")):
            path, _, rest = line.removeprefix("wrote ").removeprefix("# ==> ").partition(" (")
            service = Path(path).stem
            environments = rest.split(": ", 1)[1].split(")")[0]
            pairs |= {(service, env) for env in environments.split(", ")}
    return pairs


# -- acceptance on the default seed --------------------------------------------------------------------------------


def test_export_round_trip_on_the_default_seed(sandbox: Sandbox) -> None:
    before = sandbox.files()

    first = sandbox.run("export", "defradev", "--write")

    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[0] == "wrote stacks/defradev/ffc-pay-web.yaml (merged: dev)"
    assert first.stdout.splitlines()[-1] == (
        "export: 5 application users read in 2 environments; 1 exported into 1 service file (1 merged, 0 new, "
        "0 unchanged); 4 not mapped; 1 file written"
    )
    assert sandbox.dataverse_requests() == Counter(
        {("GET", "systemusers"): 2, ("GET", "businessunits"): 2, ("GET", "roles"): 2}
    )  # one page per environment
    after = sandbox.files()
    assert {k for k in after if after[k] != before.get(k)} == {"defradev/ffc-pay-web.yaml"}

    web = after["defradev/ffc-pay-web.yaml"]
    assert web.startswith(before["defradev/ffc-pay-web.yaml"].split("dataverse:")[0])  # comments and keys kept
    assert (
        "dataverse:\n  - environment: dev\n    business_unit: animal-health\n    security_roles:\n"
        "      - System Administrator\n    disabled: true\n  - environment: tst\n"
    ) in web  # privileged roles written as they are; the tst entry untouched
    assert web.endswith(before["defradev/ffc-pay-web.yaml"].split("  - environment: tst\n")[1])

    validate = sandbox.run("validate", "defradev")
    assert validate.exit_code == 0, validate.output  # defradev has no production environment

    plan = plan_json(sandbox, "defradev")
    changes = [
        user
        for user in plan["application_users"]
        if (user["service"], user["environment"]) in exported_pairs(first.stdout) and user["drift"]
    ]
    assert changes == []  # plan changes: 0 for every exported user
    text = sandbox.run("plan", "defradev").stdout.splitlines()
    hand_made = sandbox.emu.dataverse("defradev-dev").user_by_application_id(
        sandbox.emu.identity("DefraDev", "sndadpinfmi1401-ffc-pay-web")["client_id"]
    )
    assert hand_made is not None
    assert (
        f"  ffc-pay-web (managed identity {hand_made.application_id}): adopt the existing application user "
        f"'sndadpinfmi1401-ffc-pay-web' ({hand_made.id}); no write"
    ) in text

    second = sandbox.run("export", "defradev", "--write")
    assert second.exit_code == 0, second.output
    assert second.stdout.splitlines()[-1].endswith("(0 merged, 0 new, 1 unchanged); 4 not mapped; 0 files written")
    assert sandbox.files() == after  # exporting twice gives the same files


def test_unmapped_users_are_listed_with_their_roles_not_written(sandbox: Sandbox) -> None:
    result = sandbox.run("export", "defradev")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("not written: 4 application users map to no service file")
    pipeline = sandbox.emu.identity("DefraDev")
    listed = lines[start + 1 : start + 5]
    assert [line.split(": ", 1)[0] for line in listed] == ["  dev", "  dev", "  tst", "  tst"]
    assert all(line.endswith(": no service: not named sndadpinfmi1401-<service>") for line in listed)
    assert any(
        f"'adp-identity-pipeline' (application {pipeline['client_id']}, systemuser " in line
        and "business unit 'defradev-dev'; 'ADP Identity Manager')" in line
        for line in listed
    )
    assert sum("'adp-platform-admin'" in line and "'System Administrator'" in line for line in listed) == 2


def test_export_without_write_prints_the_files_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.files()
    result = sandbox.run("export", "defradev", "--environment", "dev", identities=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# ==> stacks/defradev/ffc-pay-web.yaml (merged: dev) <=="
    assert lines[1] == "# yaml-language-server: $schema=../../schemas/service.schema.json"
    assert lines[-1].startswith("export: 3 application users read in 1 environment; ")
    assert lines[-1].endswith("; nothing was written (add --write)")
    assert sandbox.files() == before
    assert sandbox.dataverse_requests() == Counter(
        {("GET", "systemusers"): 1, ("GET", "businessunits"): 1, ("GET", "roles"): 1}
    )


def test_an_unknown_environment_is_one_line(sandbox: Sandbox) -> None:
    result = sandbox.run("export", "defradev", "--environment", "qa")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "--environment: qa: unknown environment 'qa' of stack 'defradev'; allowed: dev, tst"
    ]


# -- brownfield into a tree without service files -----------------------------------------------------------------


def test_export_writes_new_files_that_validate_and_plan_without_a_change(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    settings = (REPO / "stacks" / "Pulumi.defradev.yaml").read_text()
    (stacks / "Pulumi.defradev.yaml").write_text(settings.split("  adp-identity:secret-")[0])  # no service, no secret
    tst = emulator.dataverse("defradev-tst")
    tst.add_application_user(
        "sndadpinfmi1401-ahwr-claims", business_unit="animal-health", roles=["Basic User", "AHWR Claims Processor"]
    )
    dev = emulator.dataverse("defradev-dev")
    dev.add_application_user("ADP-FFC-PayBatch", business_unit="ffc-payments", roles=["FFC Payments Writer"])
    tst.add_application_user("sndadpinfmi1401-ffc-pay-batch", roles=["Basic User"])  # root business unit
    box = make_sandbox(emulator, tmp_path, stacks)
    box.use(monkeypatch, "DefraDev")
    batch_app = emulator.identity("DefraDev", "ADP-FFC-PayBatch")["client_id"]
    batch_mi = emulator.identity("DefraDev", "sndadpinfmi1401-ffc-pay-batch")["client_id"]
    identities = tmp_path / "batch.json"  # maps the app registration user by client id
    identities.write_text(
        json.dumps({"ffc-pay-batch": {"client_id": batch_mi, "app_registration_client_id": batch_app}})
    )

    result = box.run("export", "defradev", "--write", "--identities", str(identities), identities=False)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [
        "wrote stacks/defradev/ahwr-claims.yaml (new: tst)",
        "wrote stacks/defradev/ffc-pay-batch.yaml (new: dev, tst)",
        "wrote stacks/defradev/ffc-pay-web.yaml (new: dev)",
    ]
    batch = (stacks / "defradev" / "ffc-pay-batch.yaml").read_text()
    assert "team: ffc-payments  # guessed from business unit 'ffc-payments': check it\n" in batch
    assert batch.endswith(
        "app_registration:\n  display_name: ADP-FFC-PayBatch\ndataverse:\n  - environment: dev\n"
        "    business_unit: ffc-payments\n    security_roles:\n      - FFC Payments Writer\n"
        "    principal: app_registration\n  - environment: tst\n    security_roles:\n      - Basic User\n"
    )  # the root business unit is left out

    validate = box.run("validate", "defradev")
    assert validate.exit_code == 0, validate.output

    # the stack outputs of the services now declared (the app registration's id included, by its display name)
    write_stack_outputs(box.outputs, load_tree(stacks), parse_emulator_description(emulator.info, "emulator"))
    assert json.loads((box.outputs / "defradev.json").read_text())["ffc-pay-batch"]["app_registration_client_id"]
    plan = box.run("plan", "defradev", "--format", "json")
    assert plan.exit_code == 0, plan.output
    users = json.loads(plan.stdout)["application_users"]
    assert {(u["service"], u["environment"]) for u in users} == {
        ("ahwr-claims", "tst"), ("ffc-pay-batch", "dev"), ("ffc-pay-batch", "tst"), ("ffc-pay-web", "dev")
    }  # fmt: skip
    assert [u for u in users if u["drift"]] == []

    again = box.run("export", "defradev", "--write", "--identities", str(identities), identities=False)
    assert again.stdout.splitlines()[-1].endswith("(0 merged, 0 new, 3 unchanged); 4 not mapped; 0 files written")


def test_privileged_roles_are_exported_as_they_are_for_the_production_policy_to_flag(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = tmp_path / "stacks"
    shutil.copytree(REPO / "stacks", stacks)
    emulator.dataverse("defra-prd").add_application_user(
        "prdadpinfmi1401-ffc-pay-web", business_unit="ffc-payments", roles=["Basic User", "System Administrator"]
    )
    box = make_sandbox(emulator, tmp_path, stacks)
    box.use(monkeypatch, "Defra")

    result = box.run("export", "defra", "--write")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "wrote stacks/defra/ffc-pay-web.yaml (merged: prd)"

    validate = box.run("validate", "defra")
    assert validate.exit_code == 1
    errors = validate.output.splitlines()[:-1]
    assert len(errors) == 1 and "stacks/defra/ffc-pay-web.yaml" in errors[0]
    assert "System Administrator" in errors[0] and "dataverse[1]" in errors[0]
