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

from .test_desired_cases import CASES, WEB, Case, make_tree, replace, write

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
