"""The GitOps pipeline definitions, read the way GitHub reads them, so that they cannot rot silently.

Two kinds of check:

- the structure of ``.github/workflows/{preview,deploy,drift}.yml`` and the shared setup action: triggers,
  minimal permissions, actions pinned to a reviewed commit SHA with its release in a comment, every stack covered,
  the Pulumi CLI equal to the SDK in the lock file, the preview/deploy/drift flags that make each workflow what
  it is, and no credential anywhere;
- the behaviour of the shell the workflows run, executed here with bash exactly as the runner does
  (``bash --noprofile --norc -eo pipefail``): the federated token step against a strict fake of GitHub's token
  endpoint on 127.0.0.1, and the drift steps with strict fakes of ``pulumi`` and ``adp-identity`` on PATH.

Files are read with the project's strict YAML reader (PyYAML underneath): duplicate keys are refused and ``on``
stays the string GitHub sees, instead of YAML 1.1's ``True``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from adp_identity.desired.yamlsafe import read_yaml
from tests.unit import loopback, pipeline_rules

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
WORKFLOW_NAMES = ("preview", "deploy", "drift")
PULUMI_ACTION = "pulumi/actions"
BASH = shutil.which("bash")
needs_shell_tools = pytest.mark.skipif(
    BASH is None or shutil.which("curl") is None or shutil.which("jq") is None,
    reason="bash, curl and jq are on every GitHub runner; this machine lacks one of them",
)


# -- reading ---------------------------------------------------------------------------------------------------


def workflow(name: str) -> dict[str, Any]:
    return read_yaml(WORKFLOWS / f"{name}.yml").data


def setup_action() -> dict[str, Any]:
    return read_yaml(SETUP_ACTION).data


def jobs(name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow(name)["jobs"]
    return found


def all_steps() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, step) for every step of the three workflows and of the composite setup action."""
    for name in WORKFLOW_NAMES:
        for job_name, job in jobs(name).items():
            for step in job.get("steps", []):
                yield f"{name}.yml/{job_name}", step
    for step in setup_action()["runs"]["steps"]:
        yield "actions/setup", step


def pulumi_steps(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == PULUMI_ACTION]


def step_named(job: Mapping[str, Any], *, step_id: str | None = None, contains: str | None = None) -> dict[str, Any]:
    matches = [
        s
        for s in job["steps"]
        if (step_id is not None and s.get("id") == step_id) or (contains is not None and contains in s.get("run", ""))
    ]
    assert len(matches) == 1, f"expected one step ({step_id or contains!r}), found {len(matches)}"
    found: dict[str, Any] = matches[0]
    return found


def truthy(value: Any) -> bool:
    """GitHub hands every `with:` value to the action as a string: true and "true" are the same."""
    return str(value).lower() == "true"


def uses_federated_token(job: Mapping[str, Any]) -> bool:
    return any(
        s.get("uses") == "./.github/actions/setup" and truthy(s.get("with", {}).get("federated-token", "false"))
        for s in job.get("steps", [])
    )


def declared_stacks() -> set[str]:
    """The stacks the repository declares: stacks/Pulumi.<stack>.yaml."""
    stack_dir = REPO / "stacks"
    return {p.name[len("Pulumi.") : -len(".yaml")] for p in stack_dir.glob("Pulumi.*.yaml")}


# -- triggers and permissions -----------------------------------------------------------------------------------


def test_the_three_workflows_exist_and_read_strictly() -> None:
    for name in WORKFLOW_NAMES:
        document = workflow(name)
        assert document["name"] == name
        assert "on" in document, f"{name}.yml: no trigger"


def test_preview_runs_on_pull_requests_to_main_and_never_on_pull_request_target() -> None:
    assert workflow("preview")["on"] == {"pull_request": {"branches": ["main"]}}
    for name in WORKFLOW_NAMES:
        # pull_request_target runs fork code with the base repository's token and secrets: never here
        assert "pull_request_target" not in workflow(name)["on"], name


def test_deploy_runs_on_merge_to_main_and_on_demand_only() -> None:
    on = workflow("deploy")["on"]
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"]
    assert "tags" not in on["push"]


def test_drift_runs_on_a_schedule_and_on_demand() -> None:
    on = workflow("drift")["on"]
    assert set(on) == {"schedule", "workflow_dispatch"}
    crons = [entry["cron"] for entry in on["schedule"]]
    assert len(crons) == 1
    assert len(crons[0].split()) == 5, f"not a five-field cron: {crons[0]!r}"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_workflow_default_permissions_are_read_only(name: str) -> None:
    assert workflow(name)["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_every_job_states_minimal_permissions(name: str) -> None:
    for job_name, job in jobs(name).items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}.yml/{job_name}: permissions must be explicit"
        assert permissions.get("contents") == "read", f"{name}.yml/{job_name}"
        allowed = {"contents": "read", "id-token": "write"}
        if (name, job_name) == ("preview", "preview"):
            allowed["pull-requests"] = "write"  # the preview comment, and nowhere else
        extra = {k: v for k, v in permissions.items() if allowed.get(k) != v}
        assert not extra, f"{name}.yml/{job_name}: permissions beyond the minimum: {extra}"
        # an OIDC token exactly where the job signs in to Azure
        assert (permissions.get("id-token") == "write") == uses_federated_token(job), f"{name}.yml/{job_name}"


def test_only_the_preview_job_may_write_to_pull_requests() -> None:
    writers = [
        (name, job_name)
        for name in WORKFLOW_NAMES
        for job_name, job in jobs(name).items()
        if job.get("permissions", {}).get("pull-requests") == "write"
    ]
    assert writers == [("preview", "preview")]


# -- actions and versions ----------------------------------------------------------------------------------------

# Every action by full commit SHA, the release it is in a comment (zizmor's unpinned-uses; tests/unit/test_zizmor.py).
# Each SHA was read from the action's own repository (the tag's commit: `git rev-parse <tag>^{commit}`):
PINNED_ACTIONS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version_or_local() -> None:
    seen = 0
    for where, step in all_steps():
        uses = step.get("uses")
        if uses is None:
            continue
        seen += 1
        if uses.startswith("./"):
            assert (REPO / uses / "action.yml").is_file(), f"{where}: no local action {uses}"
            continue
        action, _, ref = uses.partition("@")
        assert action in PINNED_ACTIONS, f"{where}: {action} is not a reviewed action (add it with its SHA)"
        assert ref == PINNED_ACTIONS[action][0], f"{where}: {uses!r} is not pinned to the reviewed commit"
    assert seen >= 10


@pytest.mark.parametrize(
    "path", [*(WORKFLOWS / f"{n}.yml" for n in WORKFLOW_NAMES), SETUP_ACTION], ids=lambda p: p.name
)
def test_each_pinned_commit_carries_its_release_in_a_comment(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        match = USES_LINE.match(line)
        if not match or match[1].startswith("./"):
            continue
        action, _, sha = match[1].partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{path.name}: {line.strip()}"
        assert match[2].strip() == f"# {PINNED_ACTIONS[action][1]}", f"{path.name}: {line.strip()}"


def test_checkout_never_persists_the_token() -> None:
    checkouts = [(where, s) for where, s in all_steps() if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts
    for where, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, where


def test_pulumi_cli_version_equals_the_sdk_in_the_lock_file() -> None:
    sdk = importlib.metadata.version("pulumi")
    lock = (Path(__file__).parents[2] / "requirements.lock").read_text(encoding="utf-8")
    assert re.search(rf"^pulumi=={re.escape(sdk)} ", lock, re.MULTILINE), "requirements.lock pins another pulumi SDK"
    for name in WORKFLOW_NAMES:
        assert workflow(name)["env"]["PULUMI_VERSION"] == sdk, f"{name}.yml: PULUMI_VERSION is not the SDK {sdk}"
        for job_name, job in jobs(name).items():
            for step in pulumi_steps(job):
                assert step["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}", f"{name}.yml/{job_name}"


def test_every_job_installs_through_make_install() -> None:
    install = [s for s in setup_action()["runs"]["steps"] if "make install" in s.get("run", "")]
    assert len(install) == 1
    for name in WORKFLOW_NAMES:
        for job_name, job in jobs(name).items():
            uses = [s.get("uses") for s in job["steps"]]
            assert uses[0].startswith("actions/checkout@"), f"{name}.yml/{job_name}"
            assert uses[1] == "./.github/actions/setup", f"{name}.yml/{job_name}: setup right after checkout"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_azure_sign_in_is_workload_identity_only(name: str) -> None:
    for job_name, job in jobs(name).items():
        if not uses_federated_token(job):
            continue
        env = job["env"]
        where = f"{name}.yml/{job_name}"
        assert env["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential", where
        assert env["AZURE_CLIENT_ID"] == env["ARM_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}", where
        assert env["AZURE_TENANT_ID"] == env["ARM_TENANT_ID"] == "${{ vars.AZURE_TENANT_ID }}", where
        assert env["ARM_USE_OIDC"] == "true", where
        assert env["AZURE_STORAGE_ACCOUNT"] == "${{ vars.AZURE_STORAGE_ACCOUNT }}", where
        assert "environment" in job, f"{where}: identities live in GitHub environments"
        for step in pulumi_steps(job):
            if "command" in step["with"]:
                assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", where


# -- what each workflow does -------------------------------------------------------------------------------------


def test_every_declared_stack_is_previewed_deployed_and_checked_for_drift() -> None:
    stacks = declared_stacks()
    assert stacks == {"defra", "defradev"}
    assert set(jobs("preview")["preview"]["strategy"]["matrix"]["stack"]) == stacks
    assert set(jobs("drift")["drift"]["strategy"]["matrix"]["stack"]) == stacks
    deployed = {
        step["with"]["stack-name"]
        for job in jobs("deploy").values()
        for step in pulumi_steps(job)
        if step["with"].get("command") == "up"
    }
    assert deployed == stacks


def test_preview_validates_first_then_previews_each_stack_with_refresh_and_a_comment() -> None:
    validate = jobs("preview")["validate"]
    assert step_named(validate, contains="adp-identity validate")["run"].strip() == "adp-identity validate"
    preview = jobs("preview")["preview"]
    assert preview["needs"] == "validate"
    assert preview["strategy"]["fail-fast"] is False
    assert preview["environment"] == "${{ matrix.stack }}-preview"  # the read-only identity
    assert "head.repo.full_name == github.repository" in preview["if"]  # forks: no OIDC token, offline check only
    (step,) = [s for s in pulumi_steps(preview) if "command" in s["with"]]
    settings = step["with"]
    assert settings["command"] == "preview"
    assert settings["stack-name"] == "${{ matrix.stack }}"
    assert truthy(settings["refresh"])
    assert truthy(settings["comment-on-pr"])
    assert not truthy(settings.get("expect-no-changes", "false"))  # a pull request is meant to change things
    assert truthy(settings["diff"])


def test_deploy_goes_defradev_first_then_defra_behind_the_approval() -> None:
    deploy = jobs("deploy")
    assert deploy["defradev"]["needs"] == "validate"
    assert deploy["defradev"]["environment"] == "defradev"
    assert deploy["defra-preview"]["needs"] == "defradev"
    assert deploy["defra-preview"]["environment"] == "defra-preview"
    assert deploy["defra"]["needs"] == "defra-preview"
    assert deploy["defra"]["environment"] == "defra"  # its required reviewers are the production approval
    for job_name, stack in (("defradev", "defradev"), ("defra", "defra")):
        (step,) = pulumi_steps(deploy[job_name])
        assert step["with"]["command"] == "up"
        assert step["with"]["stack-name"] == stack
        assert truthy(step["with"]["refresh"]), "a change made by hand must be put back, not ignored"
    (approver_preview,) = pulumi_steps(deploy["defra-preview"])
    assert approver_preview["with"]["command"] == "preview"
    assert approver_preview["with"]["stack-name"] == "defra"
    assert truthy(approver_preview["with"]["comment-on-summary"])
    concurrency = workflow("deploy")["concurrency"]
    assert concurrency["cancel-in-progress"] is False, "a deployment must never be cancelled half-way"


PIPELINE_SCRIPTS = REPO / ".ci" / "pipelines"


def script_step(job: Mapping[str, Any], script: str) -> dict[str, Any]:
    """The step that runs .ci/pipelines/<script> (the scripts both CI systems share)."""
    return step_named(job, contains=f'"$GITHUB_WORKSPACE/.ci/pipelines/{script}"')


def test_preview_plans_each_stack_with_the_read_only_identity_before_previewing_it() -> None:
    preview = jobs("preview")["preview"]
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"
    assert preview["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
    plan = script_step(preview, "plan.sh")
    assert plan["run"] == '"$GITHUB_WORKSPACE/.ci/pipelines/plan.sh"'
    assert plan["env"] == {"OUT_DIR": "${{ runner.temp }}/plan"}
    steps = preview["steps"]
    (comment,) = [s for s in pulumi_steps(preview) if "command" in s["with"]]
    assert steps.index(plan) < steps.index(comment)
    assert comment["if"] == "!cancelled()", "a failed plan must not hide the preview"
    text = (PIPELINE_SCRIPTS / "plan.sh").read_text(encoding="utf-8")
    assert 'adp-identity plan --stack "$STACK" --identities "$OUT_DIR/outputs.json"' in text


def test_drift_refreshes_with_expect_no_changes_then_audits_the_stack_outputs() -> None:
    drift = jobs("drift")["drift"]
    assert drift["environment"] == "${{ matrix.stack }}-preview"
    assert drift["env"]["STACK"] == "${{ matrix.stack }}"
    checks = script_step(drift, "drift.sh")
    report = script_step(drift, "drift-report.sh")
    assert drift["steps"].index(checks) < drift["steps"].index(report)
    assert checks["env"] == report["env"] == {"OUT_DIR": "${{ runner.temp }}/drift"}
    assert report["if"] == "always()"
    text = (PIPELINE_SCRIPTS / "drift.sh").read_text(encoding="utf-8")
    for flag in ("pulumi refresh", "--preview-only", "--expect-no-changes", '--stack "$STACK"'):
        assert flag in text
    assert 'adp-identity audit --stack "$STACK" --identities "$OUT_DIR/outputs.json"' in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert code.index("pulumi refresh") < code.index("stack_outputs") < code.index("adp-identity audit")


# -- no credential anywhere --------------------------------------------------------------------------------------

SECRET_VARIABLES = pipeline_rules.SECRET_VARIABLES
GUID, JWT = pipeline_rules.GUID, pipeline_rules.JWT
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
ALLOWED_CONTEXTS = ("vars.", "matrix.", "env.", "steps.", "github.", "runner.", "inputs.", "hashFiles(")


def pipeline_files() -> list[Path]:
    return [*(WORKFLOWS / f"{n}.yml" for n in WORKFLOW_NAMES), SETUP_ACTION]


@pytest.mark.parametrize("path", pipeline_files(), ids=lambda p: p.name)
def test_no_plaintext_secret_or_secret_store_in_the_pipeline(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for variable in SECRET_VARIABLES:
        assert variable not in text, f"{path.name}: {variable}: credentials come from OIDC, never from a secret"
    assert not GUID.search(text), f"{path.name}: a GUID literal; ids belong in GitHub environment variables"
    assert not JWT.search(text), f"{path.name}: something that looks like a token"
    assert "--show-secrets" not in text
    assert not pipeline_rules.SET_X.search(text), f"{path.name}: set -x would print every value"
    for expression in EXPRESSION.findall(text):
        assert expression.startswith(ALLOWED_CONTEXTS), f"{path.name}: ${{{{ {expression} }}}} is not allowed"
        assert "secrets" not in expression, f"{path.name}: ${{{{ {expression} }}}}: no GitHub secrets are used"


def test_run_scripts_take_values_from_env_never_from_expressions() -> None:
    """`${{ }}` inside a script is pasted into the shell before it runs (script injection)."""
    for where, step in all_steps():
        assert "${{" not in step.get("run", ""), f"{where}: pass the value through env: instead"


# -- the federated token step, run for real against a fake token endpoint ---------------------------------------

REQUEST_TOKEN = "fake-actions-request-token-7f3a"
ID_TOKEN = "header.fake-github-oidc-id-token-for-entra.signature"


@dataclass
class TokenEndpoint:
    """GitHub's ID token endpoint, strictly: one path, the bearer request token, the Entra audience."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


@pytest.fixture
def token_endpoint() -> Iterator[tuple[TokenEndpoint, str]]:
    endpoint = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            ok = (
                parts.path == "/idtoken"
                and query.get("api-version") == ["2.0"]
                and query.get("audience") == ["api://AzureADTokenExchange"]
                and self.headers.get("Authorization") == f"bearer {REQUEST_TOKEN}"
            )
            endpoint.requests.append({"path": parts.path, "query": query})
            if not ok:
                endpoint.unexpected.append(self.path)
                self.send_error(404)
                return
            if endpoint.status != 200:
                self.send_error(endpoint.status)
                return
            body = json.dumps({"count": 1, "value": ID_TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with loopback.serve(Handler) as base:
        yield endpoint, f"{base}/idtoken?api-version=2.0"


def token_step_script() -> str:
    (step,) = [s for s in setup_action()["runs"]["steps"] if "federated" in s.get("name", "").lower()]
    assert step["if"] == "inputs.federated-token == 'true'"
    script: str = step["run"]
    return script


def run_step(script: str, env: Mapping[str, str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a step's script the way the runner does for `shell: bash`, in its own process group."""
    assert BASH is not None
    path = cwd / "step.sh"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        [BASH, "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )


def stop_refresher(pid_file: Path) -> None:
    """End the background refresher this test started (its process group: the loop and its sleep)."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGTERM)


def runner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    (tmp_path / "github-env").touch()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(temp),
        "GITHUB_ENV": str(tmp_path / "github-env"),
        **extra,
    }


@needs_shell_tools
def test_federated_token_step_writes_a_private_token_file_and_prints_no_token(
    tmp_path: Path, token_endpoint: tuple[TokenEndpoint, str]
) -> None:
    endpoint, url = token_endpoint
    env = runner_env(
        tmp_path,
        ACTIONS_ID_TOKEN_REQUEST_URL=url,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN,
        FEDERATED_TOKEN_REFRESH_SECONDS="3600",
    )
    temp = Path(env["RUNNER_TEMP"])
    pid_file = temp / "federated-token-refresher.pid"
    try:
        result = run_step(token_step_script(), env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        token_file = temp / "azure-federated-token"
        assert token_file.read_text() == ID_TOKEN  # exactly the assertion: no trailing newline
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert not (temp / "azure-federated-token.next").exists()
        assert Path(env["GITHUB_ENV"]).read_text() == f"AZURE_FEDERATED_TOKEN_FILE={token_file}\n"
        for printed in (result.stdout, result.stderr):
            assert ID_TOKEN not in printed
            assert REQUEST_TOKEN not in printed
        assert endpoint.unexpected == []
        assert len(endpoint.requests) == 1
        # the refresher keeps running after the step, to rewrite the file before the token expires
        os.kill(int(pid_file.read_text()), 0)
    finally:
        stop_refresher(pid_file)


@needs_shell_tools
def test_federated_token_step_fails_cleanly_when_github_refuses(
    tmp_path: Path, token_endpoint: tuple[TokenEndpoint, str]
) -> None:
    endpoint, url = token_endpoint
    endpoint.status = 403
    env = runner_env(tmp_path, ACTIONS_ID_TOKEN_REQUEST_URL=url, ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
    temp = Path(env["RUNNER_TEMP"])
    pid_file = temp / "federated-token-refresher.pid"
    try:
        result = run_step(token_step_script(), env, cwd=tmp_path)
        assert result.returncode != 0
        assert "403" in result.stderr
        assert REQUEST_TOKEN not in result.stdout + result.stderr
        assert not (temp / "azure-federated-token").exists()
        assert not (temp / "azure-federated-token.next").exists()
        assert not pid_file.exists(), "no refresher without a first token"
        assert Path(env["GITHUB_ENV"]).read_text() == ""
        assert endpoint.unexpected == []
    finally:
        stop_refresher(pid_file)


@needs_shell_tools
def test_federated_token_step_explains_a_missing_id_token_permission(tmp_path: Path) -> None:
    result = run_step(token_step_script(), runner_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "id-token: write" in result.stdout
    assert not (Path(runner_env(tmp_path)["RUNNER_TEMP"]) / "azure-federated-token").exists()


# -- the drift steps, run for real with fake pulumi and adp-identity ---------------------------------------------

STACK = "defradev"
OUTPUTS = {"ffc-pay-web": {"identity_name": "sndadpinfmi1401-ffc-pay-web", "dataverse_application_users": {}}}
FAKE_PULUMI = """#!/usr/bin/env bash
# strict fake: only the two calls the drift job makes, with exactly these arguments
printf '%s\\n' "pulumi $*" >> "$FAKE_LOG"
refresh="refresh --stack defradev --preview-only --expect-no-changes --diff"
refresh="$refresh --non-interactive --color never --suppress-progress"
if [ "$*" = "$refresh" ]; then
  echo "Previewing refresh (defradev):"
  echo " ~ pulumi-python:dynamic/dataverse:ApplicationUser ffc-pay-web-dataverse-dev update [diff: ~security_roles]"
  echo "error: no changes were expected but changes occurred"
  exit "$FAKE_REFRESH_EXIT"
elif [ "$*" = "stack output --stack defradev --json" ]; then
  cat "$FAKE_OUTPUTS"
  exit 0
fi
echo "fake pulumi: unexpected call: $*" >&2
exit 99
"""
FAKE_ADP_IDENTITY = """#!/usr/bin/env bash
printf '%s\\n' "adp-identity $*" >> "$FAKE_LOG"
if [ "$1 $2 $3 $4" = "audit --stack defradev --identities" ] && [ "$#" -eq 5 ] && cmp -s "$5" "$FAKE_OUTPUTS"; then
  echo "defradev-dev: sndadpinfmi1401-ffc-pay-web: roles differ: + System Administrator"
  exit "$FAKE_AUDIT_EXIT"
fi
echo "fake adp-identity: unexpected call: $*" >&2
exit 99
"""
RUNNER_TEMP = re.compile(r"\$\{\{ runner\.temp \}\}")


def fake_tools(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pulumi", FAKE_PULUMI), ("adp-identity", FAKE_ADP_IDENTITY)):
        tool = bin_dir / name
        tool.write_text(text)
        tool.chmod(0o755)
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS, indent=2) + "\n")
    return bin_dir


def step_env(step: Mapping[str, Any], runner_temp: str) -> dict[str, str]:
    """A step's `env:`, with the only expression the drift steps use (runner.temp) resolved as the runner does."""
    env = {}
    for key, value in step.get("env", {}).items():
        assert "${{" not in RUNNER_TEMP.sub("", value), f"unexpected expression in a drift step's env: {value!r}"
        env[key] = RUNNER_TEMP.sub(runner_temp, value)
    return env


def run_drift_job(tmp_path: Path, *, refresh_exit: int, audit_exit: int) -> tuple[list[int], str, str]:
    """Run the drift job's shell steps in order like the runner: a failed step skips the rest but always()."""
    drift = jobs("drift")["drift"]
    bin_dir = fake_tools(tmp_path)
    base = runner_env(
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        STACK=STACK,
        GITHUB_ACTIONS="true",
        GITHUB_WORKSPACE=str(REPO),
        FAKE_LOG=str(tmp_path / "calls.log"),
        FAKE_OUTPUTS=str(tmp_path / "outputs.json"),
        FAKE_REFRESH_EXIT=str(refresh_exit),
        FAKE_AUDIT_EXIT=str(audit_exit),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )
    exits: list[int] = []
    failed = False
    for step in (s for s in drift["steps"] if "run" in s):
        if failed and step.get("if") != "always()":
            continue
        env = {**base, **step_env(step, base["RUNNER_TEMP"])}
        result = run_step(step["run"], env, cwd=tmp_path)
        exits.append(result.returncode)
        failed = failed or result.returncode != 0
    summary = (tmp_path / "summary.md").read_text() if (tmp_path / "summary.md").exists() else ""
    return exits, summary, (tmp_path / "calls.log").read_text()


@needs_shell_tools
def test_drift_job_reports_both_kinds_of_drift_and_fails(tmp_path: Path) -> None:
    exits, summary, calls = run_drift_job(tmp_path, refresh_exit=7, audit_exit=2)
    # refresh, stack output and audit record their exit codes and carry on; only the report fails the job
    assert exits == [0, 1]
    assert calls.splitlines() == [
        "pulumi refresh --stack defradev --preview-only --expect-no-changes --diff --non-interactive "
        "--color never --suppress-progress",
        "pulumi stack output --stack defradev --json",
        f"adp-identity audit --stack defradev --identities {tmp_path / 'runner-temp' / 'drift' / 'outputs.json'}",
    ]
    assert "## Drift check of stack `defradev`" in summary
    assert "(`pulumi refresh --preview-only --expect-no-changes`) | DRIFT |" in summary
    assert "(`adp-identity audit`) | DRIFT |" in summary
    assert "<details open><summary>pulumi refresh --preview-only</summary>" in summary
    assert "ffc-pay-web-dataverse-dev update [diff: ~security_roles]" in summary
    assert "<details open><summary>adp-identity audit</summary>" in summary
    assert "roles differ: + System Administrator" in summary


@needs_shell_tools
def test_drift_job_passes_and_folds_the_report_when_clean(tmp_path: Path) -> None:
    exits, summary, _calls = run_drift_job(tmp_path, refresh_exit=0, audit_exit=0)
    assert exits == [0, 0]
    assert summary.count("| clean |") == 2
    assert "<details open>" not in summary
    assert "<details><summary>adp-identity audit</summary>" in summary


@pytest.mark.parametrize(
    ("refresh_exit", "audit_exit", "refresh_verdict", "audit_verdict"),
    [
        (7, 0, "DRIFT", "clean"),
        (0, 2, "clean", "DRIFT"),
        (255, 0, "check failed (exit 255)", "clean"),  # cannot sign in, stack missing: not "no drift"
        (0, 1, "clean", "check failed (exit 1)"),
        (2, 0, "check failed (exit 2)", "clean"),  # pulumi's 2 is a configuration error, not drift
    ],
)
@needs_shell_tools
def test_drift_job_fails_on_drift_and_on_a_check_that_could_not_run(
    tmp_path: Path, refresh_exit: int, audit_exit: int, refresh_verdict: str, audit_verdict: str
) -> None:
    exits, summary, _calls = run_drift_job(tmp_path, refresh_exit=refresh_exit, audit_exit=audit_exit)
    assert exits[-1] == 1
    assert f"--expect-no-changes`) | {refresh_verdict} |" in summary
    assert f"(`adp-identity audit`) | {audit_verdict} |" in summary


@needs_shell_tools
def test_drift_report_says_not_run_when_an_earlier_step_failed(tmp_path: Path) -> None:
    drift = jobs("drift")["drift"]
    report = script_step(drift, "drift-report.sh")
    env = runner_env(
        tmp_path,
        STACK=STACK,
        GITHUB_ACTIONS="true",
        GITHUB_WORKSPACE=str(REPO),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )
    env.update(step_env(report, env["RUNNER_TEMP"]))
    out_dir = Path(env["OUT_DIR"])
    out_dir.mkdir(parents=True)
    (out_dir / "refresh.exit").write_text("0\n")  # the refresh ran; the stack outputs (and so the audit) did not
    result = run_step(report["run"], env, cwd=tmp_path)
    assert result.returncode == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "(`adp-identity audit`) | not run |" in summary
    assert "(no output)" in summary
    assert "::error title=drift in stack defradev::refresh: clean; audit: not run" in result.stdout
