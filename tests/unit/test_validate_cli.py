"""``adp-identity validate`` and ``adp-identity schema`` as a user runs them: lines, summary, exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adp_identity.cli import cli
from adp_identity.desired import DesiredStateErrors, load_tree
from adp_identity.desired.schema_files import SCHEMA_MODELS, render

from .test_desired_cases import CASES, WEB, Case, Edit, make_tree, replace, write

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_real_tree_exits_0_and_says_what_it_checked() -> None:
    result = run("validate", "--stacks", str(STACKS))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "defra: tenant Defra; services ahwr-claims, ffc-pay-batch, ffc-pay-web; environments pre, prd; "
        "3 AKS clusters, 18 federated credentials, 6 Dataverse access entries, 3 Key Vault secrets, "
        "1 app registration",
        "defradev: tenant DefraDev; services ahwr-claims, ffc-pay-batch, ffc-pay-web; environments dev, tst; "
        "3 AKS clusters, 17 federated credentials, 6 Dataverse access entries, 3 Key Vault secrets, "
        "1 app registration",
        "validate: OK: 2 stacks, 6 services, 4 Dataverse environments checked; no errors",
    ]


def test_validate_defaults_to_the_stacks_directory_of_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run("validate", "--stack", "defradev")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "validate: OK: 1 stack, 3 services, 2 Dataverse environments checked; no errors"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_validate_prints_every_error_then_a_summary_and_exits_1(case: Case, tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, case.edits)
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(stacks, case.stack)
    args = ["validate", "--stacks", str(stacks)] + (["--stack", case.stack] if case.stack else [])
    if case.warning_in_pull_request:
        args.append("--strict")  # as deploy runs it; without --strict it is a warning (tested below)
    result = run(*args)
    assert result.exit_code == 1
    assert_no_traceback(result)
    lines = result.output.splitlines()
    assert lines[:-1] == [str(error) for error in raised.value.errors]
    assert len(lines[:-1]) == len(case.expected)
    for line, expected in zip(lines, case.expected, strict=False):
        assert line.startswith(expected.file)
        assert f": {expected.key_path}: {expected.message}; allowed: {expected.allowed}" in line
    count = len(case.expected)
    assert lines[-1].startswith(f"validate: {count} error{'' if count == 1 else 's'}")


def test_validate_reports_all_errors_of_a_multi_error_tree(tmp_path: Path) -> None:
    edits = (
        replace(WEB, "  - environment: tst", "  - environment: uat"),
        replace("stacks/defradev/ahwr-claims.yaml", "namespace: ahwr", "namespace: AHWR"),
        write("stacks/defra/ffc-pay-batch.yaml", "service: ffc-pay-batch\nteam: [\n"),
        replace("stacks/Pulumi.defra.yaml", "    name: Defra\n", "    name: DEFRA\n"),
    )
    result = run("validate", "--stacks", str(make_tree(tmp_path, edits)))
    assert result.exit_code == 1
    assert_no_traceback(result)
    lines = result.output.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines[:-1]] == [
        ["stacks/Pulumi.defra.yaml:10", "config.adp-identity:tenant.name"],
        ["stacks/defra/ffc-pay-batch.yaml:3", "(document)"],
        ["stacks/defradev/ahwr-claims.yaml:7", "workload_identity.federations[0].namespace"],
        ["stacks/defradev/ffc-pay-web.yaml:17", "dataverse[1].environment"],
    ]
    assert lines[-1] == "validate: 4 errors in 9 files checked"


def test_validate_unknown_stack(tmp_path: Path) -> None:
    result = run("validate", "--stacks", str(STACKS), "--stack", "prod")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "stacks/Pulumi.prod.yaml: (document): unknown stack 'prod' (no such stack settings file); "
        "allowed: stacks: defra, defradev",
        "validate: 1 error",
    ]


def test_validate_never_shows_a_traceback_even_on_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adp_identity.commands.validate as validate

    def broken(stacks_dir: Path, stack: str | None = None, *, strict: bool = False) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(validate, "check_tree", broken)
    result = run("validate", "--stacks", str(STACKS))
    assert result.exit_code == 2
    assert_no_traceback(result)
    assert result.output == "validate: internal error (RuntimeError); please report it with the input files\n"


def test_validate_console_script_on_a_binary_file_prints_no_traceback(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, (write(WEB, bytes(range(256)) * 4),))
    process = subprocess.run(
        [sys.executable, "-m", "adp_identity.cli", "validate", "--stacks", str(stacks)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert process.returncode == 1
    assert "Traceback" not in process.stdout + process.stderr
    assert process.stdout.splitlines() == [
        f"{WEB}:1: (document): binary file (NUL byte); allowed: UTF-8 YAML text",
        "validate: 1 error in 9 files checked",
    ]


# --- adp-identity schema ---------------------------------------------------------------------------------


def test_schema_prints_the_service_schema_by_default() -> None:
    result = run("schema")
    assert result.exit_code == 0
    assert result.output == render("service.schema.json")
    assert json.loads(result.output)["title"] == "ServiceSpec"


def test_schema_prints_the_tenant_settings_schema() -> None:
    result = run("schema", "--kind", "tenant-settings")
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "TenantSettings"


def test_schema_check_passes_on_the_checked_in_files() -> None:
    result = run("schema", "--check", "--dir", str(REPO / "schemas"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("schema: 2 schema files up to date")


def test_schema_write_then_check_and_a_stale_file_fails_the_check(tmp_path: Path) -> None:
    target = tmp_path / "schemas"
    result = run("schema", "--write", "--dir", str(target))
    assert result.exit_code == 0, result.output
    for name in SCHEMA_MODELS:
        assert (target / name).read_text(encoding="utf-8") == render(name)
    assert run("schema", "--check", "--dir", str(target)).exit_code == 0

    (target / "service.schema.json").write_text("{}\n", encoding="utf-8")
    result = run("schema", "--check", "--dir", str(target))
    assert result.exit_code == 1
    assert_no_traceback(result)
    assert result.output.splitlines() == [
        f"{target / 'service.schema.json'}: (document): missing or out of date with the models; "
        "allowed: the generated schema (run: adp-identity schema --write)",
        "schema: 1 of 2 schema files out of date",
    ]


def test_schema_write_and_check_together_is_a_usage_error() -> None:
    result = run("schema", "--write", "--check")
    assert result.exit_code == 2
    assert_no_traceback(result)


# --- every error in one run, warnings, waivers, wording (issue 11) ------------------------------------------


def test_four_mistakes_in_two_files_are_all_reported_in_one_run(tmp_path: Path) -> None:
    """Before: a schema error in a file hid the cross-file and policy errors of the same file until it was fixed."""
    edits = (
        replace(WEB, "namespace: ffc-pay", "namespace: FFC-Pay"),  # schema
        replace(WEB, "  - environment: tst", "  - environment: uat"),  # cross-file, same file
        replace("stacks/defra/ffc-pay-web.yaml", "team: ffc-payments\n", ""),  # schema
        replace(  # policy, same file
            "stacks/defra/ffc-pay-web.yaml",
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User",
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - System Administrator",
        ),
    )
    result = run("validate", "--stacks", str(make_tree(tmp_path, edits)))
    assert result.exit_code == 1
    assert_no_traceback(result)
    assert result.output.splitlines() == [
        "stacks/defra/ffc-pay-web.yaml:3: team: required key is missing: add `team: <owning team>`; allowed:"
        " lower-kebab: a-z, 0-9 and single hyphens, starting with a letter, at most 63 characters (e.g. ffc-pay-batch)",
        "stacks/defra/ffc-pay-web.yaml:19: dataverse[1].security_roles[0]: role 'System Administrator' is forbidden in"
        " production environment 'prd'; allowed: roles other than System Administrator, System Customizer"
        " (policy.forbidden_roles_in_production) [rule no-privileged-role-in-production]",
        "stacks/defradev/ffc-pay-web.yaml:7: workload_identity.federations[0].namespace: 'FFC-Pay' is not a Kubernetes"
        " namespace (DNS-1123 label); did you mean 'ffc-pay'?; allowed: a DNS-1123 label: a-z, 0-9 and '-', starting"
        " and ending with a letter or digit, at most 63 characters",
        "stacks/defradev/ffc-pay-web.yaml:17: dataverse[1].environment: unknown Dataverse environment 'uat'; allowed:"
        " environments of stack 'defradev': dev, tst",
        "validate: 4 errors in 9 files checked",
    ]


def _drop_web_secret() -> Edit:
    return replace(
        "stacks/Pulumi.defradev.yaml",
        "  adp-identity:secret-ffc-pay-web-session-cookie-password:\n"
        "    secure: AAABAKi1MkkN0krPHGBSGQqr6sF0HUMl5WsZm7vb5tnslZopMsRDM7Z/0AA=\n",
        "",
    )


def test_a_declared_secret_without_value_warns_in_a_pull_request_and_fails_strict(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, (_drop_web_secret(),))
    relaxed = run("validate", "--stacks", str(stacks))
    assert relaxed.exit_code == 0, relaxed.output
    lines = relaxed.output.splitlines()
    assert lines[0].startswith(
        "stacks/defradev/ffc-pay-web.yaml:10: key_vault_secrets[0]: warning: no secure config value"
        " 'adp-identity:secret-ffc-pay-web-session-cookie-password' in stacks/Pulumi.defradev.yaml yet: the"
        " platform team (or the pipeline's deployer) sets it on this branch"
    )
    assert "`pulumi config set --secret --stack defradev secret-ffc-pay-web-session-cookie-password`" in lines[0]
    assert lines[-1] == "validate: OK: 2 stacks, 6 services, 4 Dataverse environments checked; no errors, 1 warning"

    strict = run("validate", "--strict", "--stacks", str(stacks))
    assert strict.exit_code == 1
    assert strict.output.splitlines()[0] == lines[0].replace(": warning: ", ": ", 1)
    assert strict.output.splitlines()[-1] == "validate: 1 error in 9 files checked"


def test_a_waived_finding_is_printed_with_who_approved_it_until_when(tmp_path: Path) -> None:
    import datetime as dt

    expires = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    edits = (
        replace(
            "stacks/defra/ffc-pay-web.yaml",
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User",
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - System Customizer",
        ),
        write(
            "stacks/policy-exceptions.yaml",
            "exceptions:\n  - rule: no-privileged-role-in-production\n    stack: defra\n    subject: ffc-pay-web/prd\n"
            f"    approved_by: '@defra-platform-lead'\n    expires: {expires}\n    reason: ADP-1234\n",
        ),
    )
    result = run("validate", "--stacks", str(make_tree(tmp_path, edits)))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("stacks/defra/ffc-pay-web.yaml:20: dataverse[1].security_roles[0]: waived: role")
    assert lines[0].endswith(
        f"(exception stacks/policy-exceptions.yaml:2, approved by @defra-platform-lead until {expires}: ADP-1234)"
    )
    assert lines[-1].endswith("checked; no errors, 1 waived by exception")


def test_unknown_names_get_a_suggestion(tmp_path: Path) -> None:
    edits = (
        replace(WEB, "  - environment: tst", "  - environment: tsts"),
        replace("stacks/defradev/ahwr-claims.yaml", "        - DEVADPINFAK1401", "        - DEVADPINFAK1041"),
        replace(WEB, "team: ffc-payments", "team: FFC Payments"),
    )
    result = run("validate", "--stacks", str(make_tree(tmp_path, edits)), "--stack", "defradev")
    messages = [line.split("; allowed:")[0] for line in result.output.splitlines()[:-1]]
    assert messages == [
        "stacks/defradev/ffc-pay-web.yaml:4: team: 'FFC Payments' is not a lower-kebab name; did you mean"
        " 'ffc-payments'?",
        "stacks/defradev/ahwr-claims.yaml:11: workload_identity.federations[0].clusters[1]: unknown AKS cluster"
        " 'DEVADPINFAK1041': no issuer of stack 'defradev' would trust it; did you mean 'DEVADPINFAK1401'?",
        "stacks/defradev/ffc-pay-web.yaml:17: dataverse[1].environment: unknown Dataverse environment 'tsts'; did you"
        " mean 'tst'?",
    ]


BROKEN_VET_VISITS = """\
# yaml-language-server: $schema=../../schemas/service.schema.json
service: ahwr-vet-visits
team: animal-health
workload_identity:
  federations:
    - namespace: ahwr
      service_account: ahwr-vet-visits
      clusters: [PRDADPINFAK1403]
key_vault_secrets: [vets-api-key]
dataverse:
  - environment: prod
    business_unit: animal-health
    security_roles: [Basic User, AHWR Claims Processor]
  - environment: prd
    business_unit: animal-health
    security_roles: [Basic User, System Administrator]
    principal: app_registration
"""


def test_the_onboarding_guides_example_output_is_what_validate_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = (REPO / "docs" / "onboarding.md").read_text(encoding="utf-8")
    block = guide.split("For example, a file with five mistakes:\n\n```\n", 1)[1].split("```", 1)[0]
    make_tree(tmp_path, (write("stacks/defra/ahwr-vet-visits.yaml", BROKEN_VET_VISITS),))
    monkeypatch.chdir(tmp_path)
    result = run("validate", "--stack", "defra")
    assert result.exit_code == 1
    assert result.output == block
