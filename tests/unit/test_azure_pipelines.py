"""The Azure DevOps pipelines (.azuredevops/), read and run the way Azure Pipelines reads and runs them.

Three kinds of check, as tests/unit/test_workflows.py does for the GitHub workflows:

- **the expanded pipeline.** A small expander does what Azure Pipelines does at compile time for the constructs
  these files use (``extends``, ``template:`` includes with typed parameters, ``${{ each }}``, ``${{ a.b }}``) and
  refuses anything else, so the tests read the pipeline the agent would get: triggers, stages and their order,
  conditions, environments and locks, which service connection each Azure step uses, where System.AccessToken goes;
- **the rules the workflows hold to** (issue 10 §4): tool versions pinned and equal to the locks and the GitHub
  workflows, tasks pinned to a major version, no secret literal or secret variable, values reaching scripts through
  ``env:`` only, the stand-alone and the ADP (ADPPipelineCommon) entry points identical;
- **the jobs, run.** A small agent runs each job's steps in order as the agent does (``bash`` steps from the sources
  directory, ``AzureCLI@2`` scripts with their arguments, step conditions, ``##vso[task.prependpath]``, pipeline
  artifacts, job variables as environment), with strict fakes of ``curl`` (the Pulumi release host), ``pulumi``
  and ``adp-identity`` on PATH, and a strict fake of the Azure DevOps REST API on 127.0.0.1 for the comment.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from adp_identity.desired.yamlsafe import read_yaml
from tests.unit import loopback, pipeline_rules

REPO = Path(__file__).resolve().parents[2]
ADO = REPO / ".azuredevops"
TEMPLATES = ADO / "templates"
SCRIPTS = REPO / ".ci" / "pipelines"
PIPELINES = ("preview", "deploy", "drift")
BASH = shutil.which("bash")
CURL = shutil.which("curl")
needs_shell_tools = pytest.mark.skipif(
    BASH is None or CURL is None or shutil.which("jq") is None or shutil.which("sha256sum") is None,
    reason="bash, curl, jq and sha256sum are on every Microsoft-hosted Linux agent; this machine lacks one",
)

# -- the expander ------------------------------------------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
EACH = re.compile(r"each\s+([A-Za-z_]\w*)\s+in\s+(\S+)")
PUBLISHED = re.compile(r"/pipelines/adp-identity/([a-z-]+\.yaml)@ADPPipelineCommon")


class NotSupported(AssertionError):
    """A construct the expander (and so these tests) does not know: extend the expander or keep the YAML simple."""


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = read_yaml(path).data
    return data


def lookup(expression: str, scope: Mapping[str, Any]) -> Any:
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", expression):
        raise NotSupported(f"expression ${{{{ {expression} }}}}")
    head, *path = expression.split(".")
    if head not in scope:
        raise NotSupported(f"${{{{ {expression} }}}}: {head} is not in scope")
    value = scope[head]
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            raise AssertionError(f"${{{{ {expression} }}}}: no {name!r}")
        value = value[name]
    return value


def render(value: Any) -> str:
    return ("True" if value else "False") if isinstance(value, bool) else str(value)


def substitute(text: str, scope: Mapping[str, Any]) -> Any:
    whole = EXPRESSION.fullmatch(text.strip())
    if whole and len(EXPRESSION.findall(text)) == 1:
        return lookup(whole[1], scope)
    return EXPRESSION.sub(lambda m: render(lookup(m[1], scope)), text)


def bind(template: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """A template's declared parameters with the values given: unknown ones, missing ones and wrong types fail."""
    declared = load(template).get("parameters", [])
    names = {p["name"] for p in declared}
    assert set(given) <= names, f"{template.name}: unexpected parameters {sorted(set(given) - names)}"
    bound = {}
    for parameter in declared:
        name = parameter["name"]
        assert name in given or "default" in parameter, f"{template.name}: parameter {name} is required"
        value = given.get(name, parameter.get("default"))
        kind = parameter.get("type", "string")
        checks: dict[str, Callable[[Any], bool]] = {
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "object": lambda v: True,
        }
        assert checks[kind](value), f"{template.name}: parameter {name} must be a {kind}, got {value!r}"
        bound[name] = value
    return bound


def include(path: Path, given: Mapping[str, Any]) -> list[Any]:
    document = load(path)
    scope = {"parameters": bind(path, given)}
    (kind,) = [k for k in ("steps", "jobs", "stages", "variables") if k in document]
    expanded: list[Any] = expand(document[kind], scope, path.parent)
    return expanded


def expand(node: Any, scope: Mapping[str, Any], base: Path) -> Any:
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, dict) and len(item) == 1 and EXPRESSION.fullmatch(next(iter(item))):
                (key, body) = next(iter(item.items()))
                each = EACH.fullmatch(EXPRESSION.fullmatch(key)[1])  # type: ignore[index]
                if not each:
                    raise NotSupported(f"{key} (only ${{{{ each }}}} is used in these files)")
                for value in lookup(each[2], scope):
                    out.extend(expand(body, {**scope, each[1]: value}, base))
            elif isinstance(item, dict) and "template" in item and set(item) <= {"template", "parameters"}:
                target = base / item["template"]
                given = expand(item.get("parameters", {}), scope, base)
                out.extend(include(target, given))
            else:
                out.append(expand(item, scope, base))
        return out
    if isinstance(node, dict):
        for key in node:
            if EXPRESSION.search(str(key)):
                raise NotSupported(f"expression in a key: {key}")
        return {key: expand(value, scope, base) for key, value in node.items()}
    if isinstance(node, str):
        return substitute(node, scope)
    return node


def expanded(path: Path, run_parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pipeline as the agent gets it. ADPPipelineCommon's published templates are these same files."""
    pipeline = load(path)
    scope = {"parameters": bind(path, run_parameters or {})}
    reference = pipeline["extends"]["template"]
    published = PUBLISHED.fullmatch(reference)
    template = TEMPLATES / published[1] if published else path.parent / reference
    given = expand(pipeline["extends"].get("parameters", {}), scope, path.parent)
    body = load(template)
    template_scope = {"parameters": bind(template, given)}
    result = {k: v for k, v in pipeline.items() if k not in {"extends", "parameters"}}
    for key in ("variables", "stages"):
        result[key] = expand(body[key], template_scope, template.parent)
    return result


def pipeline(name: str, **run_parameters: Any) -> dict[str, Any]:
    return expanded(ADO / f"{name}.yaml", run_parameters)


def stages(name: str, **run_parameters: Any) -> dict[str, dict[str, Any]]:
    return {stage["stage"]: stage for stage in pipeline(name, **run_parameters)["stages"]}


def job_name(job: Mapping[str, Any]) -> str:
    name: str = job.get("job") or job["deployment"]
    return name


def job_steps(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "deployment" in job:
        found: list[dict[str, Any]] = job["strategy"]["runOnce"]["deploy"]["steps"]
        return found
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def all_jobs(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for stage_name, stage in stages(name).items():
        for job in stage["jobs"]:
            yield stage_name, job


def azure_steps(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job_steps(job) if str(s.get("task", "")).startswith("AzureCLI@")]


def declared_stacks() -> set[str]:
    return {p.name[len("Pulumi.") : -len(".yaml")] for p in (REPO / "stacks").glob("Pulumi.*.yaml")}


def pipeline_variables() -> dict[str, str]:
    return {v["name"]: str(v["value"]) for v in load(TEMPLATES / "variables.yaml")["variables"]}


# -- triggers ---------------------------------------------------------------------------------------------------


def test_every_pipeline_expands_and_reads_strictly() -> None:
    for name in PIPELINES:
        for path in (ADO / f"{name}.yaml", ADO / "adp" / f"{name}.yaml"):
            document = expanded(path)
            assert document["stages"], path
            assert document["variables"] == load(TEMPLATES / "variables.yaml")["variables"]


def test_preview_runs_on_pull_requests_to_main_only() -> None:
    document = pipeline("preview")
    assert document["trigger"] == "none"
    assert document["pr"]["branches"] == {"include": ["main"]}
    assert "schedules" not in document


def test_deploy_runs_on_merge_to_main_only_never_for_pull_requests() -> None:
    document = pipeline("deploy")
    assert document["pr"] == "none"
    assert document["trigger"]["branches"] == {"include": ["main"]}
    assert document["trigger"]["batch"] is True
    assert set(document["trigger"]["paths"]["exclude"]) == {"docs/*", "*.md"}


def test_drift_runs_on_a_weekday_schedule_even_without_commits() -> None:
    document = pipeline("drift")
    assert document["trigger"] == "none"
    assert document["pr"] == "none"
    (schedule,) = document["schedules"]
    assert len(schedule["cron"].split()) == 5
    assert schedule["branches"] == {"include": ["main"]}
    assert schedule["always"] is True, "drift happens without commits"


def test_the_adp_entry_points_are_the_stand_alone_pipelines_extending_adppipelinecommon() -> None:
    for name in PIPELINES:
        own, adp = load(ADO / f"{name}.yaml"), load(ADO / "adp" / f"{name}.yaml")
        assert own["extends"]["template"] == f"templates/{name}.yaml"
        assert adp["extends"]["template"] == f"/pipelines/adp-identity/{name}.yaml@ADPPipelineCommon"
        (repository,) = adp["resources"]["repositories"]
        # as ADP's repositories declare it (DEFRA/adp-infrastructure-core .azuredevops/*.yaml)
        assert {k: repository[k] for k in ("repository", "name", "endpoint", "type")} == {
            "repository": "ADPPipelineCommon",
            "name": "DEFRA/adp-pipeline-common",
            "endpoint": "DEFRA",
            "type": "github",
        }
        assert repository["ref"].startswith("refs/tags/"), "a template repository is pinned to a tag, never a branch"
        assert "resources" not in own, "the stand-alone pipeline needs nothing outside this repository"
        strip = ("extends", "resources")
        assert {k: v for k, v in own.items() if k not in strip} == {k: v for k, v in adp.items() if k not in strip}
        assert own["extends"].get("parameters") == adp["extends"].get("parameters")
        assert expanded(ADO / f"{name}.yaml") == {
            k: v for k, v in expanded(ADO / "adp" / f"{name}.yaml").items() if k != "resources"
        }


def test_templates_refer_only_to_files_beside_them_so_they_work_from_any_repository() -> None:
    for path in TEMPLATES.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        for reference in re.findall(r"template:\s*(\S+)", text):
            assert "@" not in reference and not reference.startswith("/"), f"{path.name}: {reference}"
            assert (path.parent / reference).is_file(), f"{path.name}: no {reference}"


# -- stages, environments, approvals, locks --------------------------------------------------------------------


def test_preview_checks_offline_first_then_plans_and_previews_every_stack_read_only() -> None:
    found = stages("preview")
    assert list(found) == ["Check", "Preview"]
    check = {job_name(j): j for j in found["Check"]["jobs"]}
    assert set(check) == {"check", "validate"}
    assert [s.get("bash") for s in job_steps(check["check"])][-1].startswith("make check")
    assert job_steps(check["validate"])[-1]["bash"] == "adp-identity validate"
    for job in check.values():
        assert azure_steps(job) == [], "the offline checks have no Azure access"
    assert found["Preview"]["dependsOn"] == "Check"
    jobs = {job_name(j): j for j in found["Preview"]["jobs"]}
    assert set(jobs) == {f"preview_{s}" for s in declared_stacks()} | {"report"}
    for stack in declared_stacks():
        job = jobs[f"preview_{stack}"]
        assert "ne(variables['System.PullRequest.IsFork'], 'True')" in job["condition"]
        assert job["variables"] == [{"group": f"adp-identity-{stack}"}]
        plan, preview = azure_steps(job)
        for step in (plan, preview):
            assert step["inputs"]["azureSubscription"] == f"adp-identity-{stack}-preview"  # the read-only identity
            assert step["env"]["STACK"] == stack
        assert plan["inputs"]["arguments"].split() == ["plan.sh"]
        assert preview["inputs"]["arguments"].split() == ["pulumi.sh", "preview"]
        assert preview["condition"] == "succeededOrFailed()", "a failed plan must not hide the preview"
    assert jobs["report"]["dependsOn"] == [f"preview_{s}" for s in ("defradev", "defra")]
    assert azure_steps(jobs["report"]) == [], "the job holding System.AccessToken has no Azure identity"


def test_deploy_goes_defradev_first_then_defra_behind_its_environment_and_never_from_a_branch() -> None:
    found = stages("deploy")
    assert list(found) == ["Validate", "Development", "ProductionPreview", "Production"]
    assert found["Development"]["dependsOn"] == "Validate"
    assert found["ProductionPreview"]["dependsOn"] == "Development"
    assert found["Production"]["dependsOn"] == "ProductionPreview"
    main = "eq(variables['Build.SourceBranch'], 'refs/heads/main')"
    assert found["Development"]["condition"] == f"and(succeeded(), or({main}, eq('False', 'true')))"
    assert found["ProductionPreview"]["condition"] == found["Production"]["condition"] == f"and(succeeded(), {main})"
    # a person may deploy a feature branch to DefraDev (ADP's deployFromFeature); Defra stays main-only
    with_feature = stages("deploy", deployFromFeature=True)
    assert with_feature["Development"]["condition"] == f"and(succeeded(), or({main}, eq('True', 'true')))"
    assert with_feature["Production"]["condition"] == found["Production"]["condition"]
    for stage, stack, connection in (
        ("Development", "defradev", "adp-identity-defradev"),
        ("Production", "defra", "adp-identity-defra"),
    ):
        assert found[stage]["lockBehavior"] == "sequential", "one run per stack at a time"
        (job,) = found[stage]["jobs"]
        assert job["deployment"] == "up"
        assert job["environment"] == f"adp-identity-{stack}"  # Approvals (Defra), Exclusive lock, Branch control
        (step,) = azure_steps(job)
        assert step["inputs"]["azureSubscription"] == connection
        assert step["inputs"]["arguments"].split() == ["pulumi.sh", "up"]
        assert step["env"]["STACK"] == stack
        assert step["env"]["SUMMARY"] == "1"
    (approver,) = found["ProductionPreview"]["jobs"]
    assert "environment" not in approver and "deployment" not in approver, "the approver's preview waits for no one"
    (step,) = azure_steps(approver)
    assert step["inputs"]["azureSubscription"] == "adp-identity-defra-preview"
    assert step["inputs"]["arguments"].split() == ["pulumi.sh", "preview"]
    assert azure_steps(found["Validate"]["jobs"][0]) == []


def test_drift_checks_every_stack_read_only_and_always_reports() -> None:
    (stage,) = stages("drift").values()
    jobs = {job_name(j): j for j in stage["jobs"]}
    assert set(jobs) == {f"drift_{s}" for s in declared_stacks()}
    for stack in declared_stacks():
        steps = job_steps(jobs[f"drift_{stack}"])
        (check,) = azure_steps(jobs[f"drift_{stack}"])
        assert check["inputs"]["azureSubscription"] == f"adp-identity-{stack}-preview"
        assert check["inputs"]["arguments"].split() == ["drift.sh"]
        report = steps[-1]
        assert report["bash"] == ".ci/pipelines/drift-report.sh"
        assert report["condition"] == "always()"
        assert report["env"]["OUT_DIR"] == check["env"]["OUT_DIR"]
        assert steps.index(check) < steps.index(report)


def test_only_the_report_step_gets_system_access_token() -> None:
    holders = []
    for name in PIPELINES:
        for stage_name, job in all_jobs(name):
            for step in job_steps(job):
                if "System.AccessToken" in json.dumps(step):
                    holders.append((name, stage_name, job_name(job), step.get("bash")))
    assert holders == [("preview", "Preview", "report", ".ci/pipelines/pr-comment.sh")]
    text = "".join(p.read_text(encoding="utf-8") for p in ADO.rglob("*.yaml"))
    assert text.count("$(System.AccessToken)") == 1


def test_azure_is_reached_only_through_workload_identity_service_connections() -> None:
    connections = set()
    for name in PIPELINES:
        for _stage, job in all_jobs(name):
            for step in azure_steps(job):
                inputs = step["inputs"]
                assert step["task"] == "AzureCLI@2"
                assert inputs["scriptType"] == "bash"
                assert inputs["scriptPath"] == ".ci/pipelines/with-azure-cli.sh"
                assert inputs["keepAzSessionActive"] is True, "long runs outlive the federated token"
                assert "addSpnToEnvironment" not in inputs, "no credential material in the script's environment"
                connections.add(inputs["azureSubscription"])
            for step in job_steps(job):
                task = str(step.get("task", ""))
                assert not task.startswith(("AzureKeyVault@", "AzurePowerShell@", "AzureResourceManager")), task
    assert connections == {f"adp-identity-{s}{kind}" for s in declared_stacks() for kind in ("", "-preview")}


# -- pinned versions and no secrets -----------------------------------------------------------------------------


def test_tool_versions_are_pinned_and_equal_to_the_locks_and_the_github_workflows() -> None:
    variables = pipeline_variables()
    lock = (REPO / "uv.lock").read_text(encoding="utf-8")
    pulumi_sdk = re.search(r'\[\[package\]\]\nname = "pulumi"\nversion = "([^"]+)"', lock)
    assert pulumi_sdk and variables["PULUMI_VERSION"] == pulumi_sdk[1]
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", variables["PULUMI_VERSION"])
    github_setup = load(REPO / ".github" / "actions" / "setup" / "action.yml")["runs"]["steps"][0]
    assert variables["PYTHON_VERSION"] == github_setup["with"]["python-version"]
    for name in PIPELINES:
        env = load(REPO / ".github" / "workflows" / f"{name}.yml")["env"]
        for key in ("PULUMI_VERSION", "UV_FROZEN", "UV_PYTHON_DOWNLOADS", "PULUMI_SKIP_UPDATE_CHECK"):
            assert str(env[key]) == variables[key], f"{name}.yml and the Azure DevOps variables disagree on {key}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^UV_VERSION := [0-9]+\.[0-9]+\.[0-9]+$", makefile, re.MULTILINE), "make install pins uv"
    setup = include(TEMPLATES / "steps" / "setup.yaml", {})
    assert any("make install" in s.get("bash", "") for s in setup)


def test_tasks_and_images_are_pinned() -> None:
    for name in PIPELINES:
        for _stage, job in all_jobs(name):
            assert re.fullmatch(r"ubuntu-[0-9]{2}\.[0-9]{2}", job["pool"]["vmImage"]), "a named image, not -latest"
            for step in job_steps(job):
                if "task" in step:
                    assert re.fullmatch(r"[A-Za-z]+@[0-9]+", step["task"]), step["task"]


SECRET_VARIABLES = (*pipeline_rules.SECRET_VARIABLES, "servicePrincipalKey")  # AzureCLI@2 addSpnToEnvironment
GUID, JWT = pipeline_rules.GUID, pipeline_rules.JWT
MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")
ALLOWED_MACROS = {
    "Agent.TempDirectory",
    "Build.SourceVersion",
    "Pipeline.Workspace",
    "System.PullRequest.SourceCommitId",
    "System.AccessToken",
    "PYTHON_VERSION",
    "PULUMI_VERSION",
}


@pytest.mark.parametrize("path", sorted(ADO.rglob("*.yaml")), ids=lambda p: p.relative_to(ADO).as_posix())
def test_no_secret_literal_or_secret_variable_in_the_pipeline(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for variable in SECRET_VARIABLES:
        assert variable not in text, f"{path.name}: {variable}"
    assert not GUID.search(text), f"{path.name}: a GUID literal; ids belong to service connections and groups"
    assert not JWT.search(text)
    assert "isSecret" not in text and "AzureKeyVault" not in text
    assert not pipeline_rules.SET_X.search(text), f"{path.name}: set -x would print every value"
    for macro in MACRO.findall(text):
        assert macro in ALLOWED_MACROS, f"{path.name}: $({macro}) is not an agreed variable"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_scripts_take_values_from_the_environment_and_print_no_secret(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    # script files reach the agent as they are (no ${{ }} or $( ) expansion): values come in through env
    assert "${{" not in text, f"{path.name}: template expressions do not apply to script files"
    assert not GUID.search(text) and not JWT.search(text)
    assert not pipeline_rules.SET_X.search(text)
    assert "--show-secrets" not in text
    if path.name != "lib.sh":
        assert text.startswith("#!/usr/bin/env bash\n") and os.access(path, os.X_OK), path.name
        assert "set -euo pipefail" in text


def test_every_script_a_pipeline_runs_exists() -> None:
    for name in PIPELINES:
        for _stage, job in all_jobs(name):
            for step in job_steps(job):
                command = step.get("bash", "")
                for script in re.findall(r"\.ci/pipelines/[a-z-]+\.sh", command):
                    assert (REPO / script).is_file(), script
                if step in azure_steps(job):
                    target = step["inputs"]["arguments"].split()[0]
                    assert (SCRIPTS / target).is_file(), target


# -- the agent --------------------------------------------------------------------------------------------------

SOURCE_VERSION = "4f2c9e0d1b7a8c6e5f4d3c2b1a0918273645aabb"
ACCESS_TOKEN = "fake-system-access-token-2b7e9"
GROUP_VARIABLES = {"PULUMI_BACKEND_URL": "azblob://pulumi-state", "AZURE_STORAGE_ACCOUNT": "sndadpinfst1401"}
STEP_CONDITIONS: dict[str, Callable[[bool, Mapping[str, str]], bool]] = {
    "succeeded()": lambda failed, v: not failed,
    "succeededOrFailed()": lambda failed, v: True,
    "always()": lambda failed, v: True,
    "and(succeeded(), eq(variables['Build.Reason'], 'PullRequest'))": lambda failed, v: (
        not failed and v["Build.Reason"] == "PullRequest"
    ),
}
SKIPPED_TASKS = {"UsePythonVersion@0"}  # the agent's own tool installer: nothing to run here


@dataclass
class Agent:
    """One Microsoft-hosted Linux agent, reduced to what these jobs use."""

    root: Path
    variables: dict[str, str]
    path: list[str]
    extra_env: dict[str, str] = field(default_factory=dict)
    artifacts: Path = field(init=False)
    log: list[tuple[str, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.artifacts = self.root / "artifacts"
        self.artifacts.mkdir(exist_ok=True)

    def macro(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            assert match[1] in self.variables, f"the agent has no variable {match[1]}"
            return self.variables[match[1]]

        return MACRO.sub(value, text)

    def environment(self, job_vars: Mapping[str, str], step: Mapping[str, Any]) -> dict[str, str]:
        env = {
            "HOME": str(self.root),
            "PATH": os.pathsep.join([*self.path, os.environ["PATH"]]),
            "TF_BUILD": "True",
            **self.extra_env,
        }
        for name, value in {**pipeline_variables(), **job_vars}.items():  # variables become environment
            env[name.upper().replace(".", "_")] = value
        for name in ("Agent.TempDirectory", "Agent.ToolsDirectory", "Build.SourcesDirectory", "Build.Reason"):
            env[name.upper().replace(".", "_")] = self.variables[name]
        for name, value in step.get("env", {}).items():
            env[name] = self.macro(str(value))
        return env

    def run_job(self, job: Mapping[str, Any]) -> list[tuple[str, int]]:
        job_vars = dict(GROUP_VARIABLES) if job.get("variables") else {}
        results: list[tuple[str, int]] = []
        failed = False
        for step in job_steps(job):
            condition = step.get("condition", "succeeded()")
            assert condition in STEP_CONDITIONS, f"the agent does not know the condition {condition!r}"
            label = step.get("displayName") or step.get("checkout") or step.get("task")
            if not STEP_CONDITIONS[condition](failed, self.variables):
                continue
            code = self.run_step(step, job_vars)
            results.append((self.macro(str(label)), code))
            failed = failed or code != 0
        return results

    def run_step(self, step: Mapping[str, Any], job_vars: Mapping[str, str]) -> int:
        if "checkout" in step or step.get("task") in SKIPPED_TASKS:
            return 0
        if step.get("bash", "").startswith("set -euo pipefail\nmake install"):
            return 0  # make install: proven by tests/unit/test_pulumi_toolchain.py on a fresh clone
        env = self.environment(job_vars, step)
        task = step.get("task")
        if task == "PublishPipelineArtifact@1":
            source = Path(self.macro(step["inputs"]["targetPath"]))
            shutil.copytree(source, self.artifacts / step["inputs"]["artifact"])
            return 0
        if task == "DownloadPipelineArtifact@2":
            assert step["inputs"]["buildType"] == "current"
            prefix = step["inputs"]["itemPattern"].split("*")[0]
            target = Path(self.macro(step["inputs"]["targetPath"]))
            for artifact in self.artifacts.glob(f"{prefix}*"):
                shutil.copytree(artifact, target / artifact.name)
            return 0
        if task == "AzureCLI@2":
            inputs = step["inputs"]
            command = [str(BASH), str(REPO / inputs["scriptPath"]), *self.macro(inputs["arguments"]).split()]
        else:
            assert set(step) <= {"bash", "displayName", "env", "condition"}, f"unknown step {step}"
            script = self.root / "step.sh"
            script.write_text(step["bash"], encoding="utf-8")
            command = [str(BASH), "--noprofile", "--norc", str(script)]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        output = result.stdout + result.stderr
        self.log.append((str(step.get("displayName")), result.returncode, output))
        for line in result.stdout.splitlines():  # the agent's logging commands
            if line.startswith("##vso[task.prependpath]"):
                self.path.insert(0, line.removeprefix("##vso[task.prependpath]"))
        return result.returncode

    def output(self) -> str:
        return "\n".join(text for _, _, text in self.log)

    def summaries(self) -> list[str]:
        found = re.findall(r"^##vso\[task\.uploadsummary\](.+)$", self.output(), re.MULTILINE)
        return [Path(f).read_text(encoding="utf-8") for f in found]


# -- fakes --------------------------------------------------------------------------------------------------------

FAKE_PULUMI = r"""#!/usr/bin/env bash
# strict fake of the Pulumi CLI: only the calls these pipelines make, with exactly these arguments
printf '%s|%s|%s|%s\n' "pulumi $*" "${AZURE_TOKEN_CREDENTIALS:-}" "${PULUMI_BACKEND_URL:-}" \
  "${SYSTEM_ACCESSTOKEN:+token-present}" >> "$FAKE_LOG"
tail="--non-interactive --color never --suppress-progress"
stack="$FAKE_STACK"
case "$*" in
  "version") echo "v$FAKE_VERSION"; exit 0 ;;
  "stack output --stack $stack --json")
    if [ "${FAKE_NEW_STACK:-0}" = 1 ]; then echo "error: no stack named '$stack' found" >&2; exit 255; fi
    cat "$FAKE_OUTPUTS"; exit 0 ;;
  "preview --stack $stack --refresh --diff $tail")
    echo "Previewing update ($stack):"; echo " ~ ffc-pay-web-dataverse-dev update [diff: ~security_roles]"
    exit "${FAKE_PREVIEW_EXIT:-0}" ;;
  "up --stack $stack --refresh --diff --yes --message deploy $FAKE_SHA $tail")
    echo "Updating ($stack):"; echo "Resources: 1 updated"; exit "${FAKE_UP_EXIT:-0}" ;;
  "refresh --stack $stack --preview-only --expect-no-changes --diff $tail")
    echo " ~ ffc-pay-web-dataverse-dev update [diff: ~security_roles]"; exit "${FAKE_REFRESH_EXIT:-0}" ;;
esac
echo "fake pulumi: unexpected call: $*" >&2
exit 99
"""
FAKE_ADP_IDENTITY = r"""#!/usr/bin/env bash
printf '%s|%s\n' "adp-identity $*" "$(cat "${5:-/dev/null}" 2>/dev/null | tr -d '\n ')" >> "$FAKE_LOG"
if [ "$1 $2 $3 $4" = "plan --stack $FAKE_STACK --identities" ] && [ "$#" -eq 5 ]; then
  echo "defradev-dev: sndadpinfmi1401-ffc-pay-web: to be created (roles: FFC Payments Writer)"
  if [ "${FAKE_PLAN_EXIT:-0}" != 0 ]; then
    echo "stacks/defradev/ffc-pay-web.yaml: defradev-dev: unknown security role 'FFC Payment Reader'" >&2
  fi
  exit "${FAKE_PLAN_EXIT:-0}"
fi
if [ "$1 $2 $3 $4" = "audit --stack $FAKE_STACK --identities" ] && [ "$#" -eq 5 ]; then
  echo "defradev-dev: sndadpinfmi1401-ffc-pay-web: roles differ: + System Administrator"
  exit "${FAKE_AUDIT_EXIT:-0}"
fi
echo "fake adp-identity: unexpected call: $*" >&2
exit 99
"""
# curl: the Pulumi release host and GitHub's release downloads from files; loopback goes to the real curl.
FAKE_CURL = r"""#!/usr/bin/env bash
url="${!#}"
case "$url" in
  http://127.0.0.1:*) exec "$REAL_CURL" "$@" ;;
esac
printf 'curl %s\n' "$url" >> "$FAKE_LOG"
out=""
while [ "$#" -gt 1 ]; do
  if [ "$1" = "--output" ]; then out="$2"; shift; fi
  shift
done
case "$url" in
  "https://get.pulumi.com/releases/sdk/pulumi-v$FAKE_VERSION-linux-x64.tar.gz") cp "$FAKE_ARCHIVE" "$out" ;;
  "https://github.com/pulumi/pulumi/releases/download/v$FAKE_VERSION/pulumi-$FAKE_VERSION-checksums.txt")
    cp "$FAKE_CHECKSUMS" "$out" ;;
  *) echo "curl: (22) The requested URL returned error: 404" >&2; exit 22 ;;
esac
"""


@dataclass
class Fakes:
    root: Path
    bin: Path
    log: Path
    env: dict[str, str]

    def calls(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []


def make_fakes(root: Path, stack: str, *, tamper: bool = False, **settings: str) -> Fakes:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("adp-identity", FAKE_ADP_IDENTITY), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    version = pipeline_variables()["PULUMI_VERSION"]
    # the release archive, laid out as Pulumi's (pulumi/pulumi at the top), holding the fake CLI
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = FAKE_PULUMI.encode()
        info = tarfile.TarInfo("pulumi/pulumi")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    archive_name = f"pulumi-v{version}-linux-x64.tar.gz"
    (root / "release").mkdir()
    (root / "release" / archive_name).write_bytes(archive.getvalue())
    digest = hashlib.sha256(archive.getvalue()).hexdigest()
    if tamper:
        digest = hashlib.sha256(b"another archive").hexdigest()
    (root / "release" / "checksums.txt").write_text(
        f"{'0' * 64}  pulumi-v{version}-darwin-arm64.tar.gz\n{digest}  {archive_name}\n", encoding="utf-8"
    )
    outputs = root / "outputs.json"
    outputs.write_text(json.dumps({"ffc-pay-web": {"client_id": "fake"}}) + "\n", encoding="utf-8")
    log = root / "calls.log"
    env = {
        "FAKE_LOG": str(log),
        "FAKE_STACK": stack,
        "FAKE_VERSION": version,
        "FAKE_SHA": SOURCE_VERSION,
        "FAKE_ARCHIVE": str(root / "release" / archive_name),
        "FAKE_CHECKSUMS": str(root / "release" / "checksums.txt"),
        "FAKE_OUTPUTS": str(outputs),
        "REAL_CURL": str(CURL),
        **settings,
    }
    return Fakes(root, bin_dir, log, env)


def make_agent(tmp_path: Path, fakes: Fakes, *, reason: str = "PullRequest", **variables: str) -> Agent:
    temp = tmp_path / "agent-temp"
    tools = tmp_path / "agent-tools"
    workspace = tmp_path / "pipeline"
    for directory in (temp, tools, workspace):
        directory.mkdir(exist_ok=True)
    agent_vars = {
        "Agent.TempDirectory": str(temp),
        "Agent.ToolsDirectory": str(tools),
        "Build.SourcesDirectory": str(REPO),
        "Build.SourceVersion": SOURCE_VERSION,
        "Build.Reason": reason,
        "Pipeline.Workspace": str(workspace),
        "System.PullRequest.SourceCommitId": SOURCE_VERSION,
        "System.AccessToken": ACCESS_TOKEN,
        "PYTHON_VERSION": pipeline_variables()["PYTHON_VERSION"],
        "PULUMI_VERSION": pipeline_variables()["PULUMI_VERSION"],
        **variables,
    }
    return Agent(tmp_path, agent_vars, [str(fakes.bin)], extra_env=fakes.env)


# -- a strict fake of the Azure DevOps REST API (pull-request threads) ------------------------------------------


@dataclass
class Threads:
    threads: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    patch_status: int = 200


ORG, PROJECT, REPOSITORY, PULL_REQUEST = "defra", "6c1a0b6e", "adp-identity-repo", "42"
BASE = f"/{ORG}/{PROJECT}/_apis/git/repositories/{REPOSITORY}/pullRequests/{PULL_REQUEST}/threads"


@pytest.fixture
def azure_devops() -> Iterator[tuple[Threads, str]]:
    state = Threads()

    class Handler(BaseHTTPRequestHandler):
        def _check(self) -> str | None:
            parts = urlsplit(self.path)
            state.requests.append((self.command, parts.path))
            ok = (
                parse_qs(parts.query) == {"api-version": ["7.1"]}
                and self.headers.get("Authorization") == f"Bearer {ACCESS_TOKEN}"
                and parts.path.startswith(BASE)
            )
            if not ok:
                state.unexpected.append(f"{self.command} {self.path} {self.headers.get('Authorization')}")
                self.send_error(401 if "Authorization" not in self.headers else 404)
                return None
            return parts.path

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            assert self.headers.get("Content-Type") == "application/json"
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def do_GET(self) -> None:
            if self._check() == BASE:
                self._json(200, {"value": state.threads, "count": len(state.threads)})
            elif not self.wfile.closed:
                self.send_error(404)

        def do_POST(self) -> None:
            if self._check() != BASE:
                return
            body = self._body()
            thread = {"id": 100 + len(state.threads), "isDeleted": False, "status": body["status"]}
            thread["comments"] = [{"id": 1, **c} for c in body["comments"]]
            state.threads.append(thread)
            self._json(200, thread)

        def do_PATCH(self) -> None:
            path = self._check()
            match = re.fullmatch(rf"{re.escape(BASE)}/([0-9]+)/comments/([0-9]+)", path or "")
            if not match:
                return
            if state.patch_status != 200:
                self.send_error(state.patch_status)
                return
            (thread,) = [t for t in state.threads if t["id"] == int(match[1])]
            thread["comments"][int(match[2]) - 1]["content"] = self._body()["content"]
            self._json(200, thread["comments"][0])

        def log_message(self, format: str, *args: Any) -> None:
            return

    with loopback.serve(Handler) as base:
        yield state, f"{base}/{ORG}/"


def repository_variables(collection: str, provider: str = "TfsGit") -> dict[str, str]:
    return {
        "SYSTEM_COLLECTIONURI": collection,
        "SYSTEM_TEAMPROJECTID": PROJECT,
        "BUILD_REPOSITORY_ID": REPOSITORY,
        "BUILD_REPOSITORY_PROVIDER": provider,
        "SYSTEM_PULLREQUEST_PULLREQUESTID": PULL_REQUEST,
    }


def preview_jobs() -> dict[str, dict[str, Any]]:
    return {job_name(j): j for j in stages("preview")["Preview"]["jobs"]}


def run_preview(tmp_path: Path, collection: str, **settings: str) -> tuple[Agent, dict[str, list[tuple[str, int]]]]:
    """Both stacks' preview jobs, then the report job, on one agent (artifacts pass between them)."""
    results = {}
    agent: Agent | None = None
    for stack in ("defradev", "defra"):
        fakes = make_fakes(tmp_path / stack, stack, **settings, **repository_variables(collection))
        agent = make_agent(tmp_path, fakes) if agent is None else agent
        agent.path = [str(fakes.bin)]
        agent.extra_env = fakes.env
        results[stack] = agent.run_job(preview_jobs()[f"preview_{stack}"])
    assert agent is not None
    results["report"] = agent.run_job(preview_jobs()["report"])
    return agent, results


# -- the jobs, run ----------------------------------------------------------------------------------------------


@needs_shell_tools
def test_preview_posts_plan_and_preview_of_every_stack_as_one_comment_then_updates_it(
    tmp_path: Path, azure_devops: tuple[Threads, str]
) -> None:
    threads, collection = azure_devops
    agent, results = run_preview(tmp_path / "first", collection)
    for stack in ("defradev", "defra"):
        assert [label for label, _ in results[stack]] == [
            "self",
            f"Python {pipeline_variables()['PYTHON_VERSION']}",
            "make install",
            f"Pulumi CLI {pipeline_variables()['PULUMI_VERSION']}",
            f"adp-identity plan ({stack})",
            f"pulumi preview --refresh ({stack})",
            "keep the plan and the preview for the report",
        ]
        assert all(code == 0 for _, code in results[stack]), results[stack]
    assert [code for _, code in results["report"]] == [0, 0, 0, 0]
    calls = (tmp_path / "first" / "defradev" / "calls.log").read_text(encoding="utf-8").splitlines()
    version = pipeline_variables()["PULUMI_VERSION"]
    assert [c.split("|")[0] for c in calls] == [
        f"curl https://get.pulumi.com/releases/sdk/pulumi-v{version}-linux-x64.tar.gz",
        f"curl https://github.com/pulumi/pulumi/releases/download/v{version}/pulumi-{version}-checksums.txt",
        "pulumi version",
        "pulumi stack output --stack defradev --json",
        f"adp-identity plan --stack defradev --identities {tmp_path / 'first' / 'agent-temp' / 'preview-defradev'}"
        "/outputs.json",
        "pulumi preview --stack defradev --refresh --diff --non-interactive --color never --suppress-progress",
    ]
    pulumi_calls = [c.split("|") for c in calls if c.startswith("pulumi stack") or c.startswith("pulumi preview")]
    for _call, credential, backend, token in pulumi_calls:
        assert (credential, backend, token) == ("AzureCliCredential", "azblob://pulumi-state", "")
    assert [(m, p == BASE) for m, p in threads.requests] == [("GET", True), ("POST", True)]
    (thread,) = threads.threads
    assert thread["status"] == "closed", "a report never blocks completion"
    content = thread["comments"][0]["content"]
    assert content.startswith("<!-- adp-identity:preview -->\n## adp-identity preview of 4f2c9e0d1b7a")
    assert "| `defradev` | ok | ok |" in content and "| `defra` | ok | ok |" in content
    for stack in ("defradev", "defra"):
        assert f"<summary>{stack}: adp-identity plan</summary>" in content
        assert f"<summary>{stack}: pulumi preview --refresh --diff</summary>" in content
    assert "to be created (roles: FFC Payments Writer)" in content
    assert "ffc-pay-web-dataverse-dev update [diff: ~security_roles]" in content
    assert agent.summaries() == [content]
    assert ACCESS_TOKEN not in agent.output()
    assert threads.unexpected == []

    # the next push to the pull request: the same comment, updated
    _agent, results = run_preview(tmp_path / "second", collection, FAKE_PLAN_EXIT="1")
    assert [(m, p == BASE) for m, p in threads.requests[2:]] == [("GET", True), ("PATCH", False)]
    (thread,) = threads.threads
    assert "| `defradev` | FAILED (exit 1) | ok |" in thread["comments"][0]["content"]
    assert "unknown security role 'FFC Payment Reader'" in thread["comments"][0]["content"]


@needs_shell_tools
def test_a_failed_plan_fails_the_job_but_the_preview_still_runs_and_is_reported(
    tmp_path: Path, azure_devops: tuple[Threads, str]
) -> None:
    threads, collection = azure_devops
    _agent, results = run_preview(tmp_path, collection, FAKE_PLAN_EXIT="1")
    codes = dict(results["defradev"])
    assert codes["adp-identity plan (defradev)"] == 1
    assert codes["pulumi preview --refresh (defradev)"] == 0
    assert codes["keep the plan and the preview for the report"] == 0
    (thread,) = threads.threads
    assert "| `defradev` | FAILED (exit 1) | ok |" in thread["comments"][0]["content"]


@needs_shell_tools
def test_a_stack_without_state_is_planned_with_empty_outputs(tmp_path: Path, azure_devops: tuple[Threads, str]) -> None:
    _threads, collection = azure_devops
    _agent, results = run_preview(tmp_path, collection, FAKE_NEW_STACK="1")
    assert all(code == 0 for _, code in results["defradev"])
    calls = (tmp_path / "defradev" / "calls.log").read_text(encoding="utf-8").splitlines()
    (plan,) = [c for c in calls if c.startswith("adp-identity plan")]
    assert plan.endswith("|{}"), "a new stack: every service to be created"


@needs_shell_tools
@pytest.mark.parametrize(("reason", "provider"), [("IndividualCI", "TfsGit"), ("PullRequest", "GitHub")])
def test_no_comment_outside_an_azure_repos_pull_request(
    tmp_path: Path, azure_devops: tuple[Threads, str], reason: str, provider: str
) -> None:
    threads, collection = azure_devops
    fakes = make_fakes(tmp_path / "defradev", "defradev", **repository_variables(collection, provider))
    agent = make_agent(tmp_path, fakes, reason=reason)
    agent.run_job(preview_jobs()["preview_defradev"])
    results = agent.run_job(preview_jobs()["report"])
    assert all(code == 0 for _, code in results)
    assert threads.requests == []
    assert len(agent.summaries()) == 1, "the report is on the run's summary page all the same"


@needs_shell_tools
def test_the_comment_falls_back_to_a_new_thread_when_the_old_one_cannot_be_edited(
    tmp_path: Path, azure_devops: tuple[Threads, str]
) -> None:
    threads, collection = azure_devops
    threads.threads.append(
        {"id": 7, "isDeleted": False, "comments": [{"id": 1, "content": "<!-- adp-identity:preview -->\nby hand"}]}
    )
    threads.patch_status = 403
    run_preview(tmp_path, collection)
    methods = [m for m, _ in threads.requests]
    assert methods == ["GET", "PATCH", "POST"]  # the PATCH is retried only on transient errors; a 403 is final
    assert len(threads.threads) == 2


@needs_shell_tools
def test_a_tampered_pulumi_release_is_not_installed_and_nothing_after_it_runs(tmp_path: Path) -> None:
    fakes = make_fakes(tmp_path / "defradev", "defradev", tamper=True)
    agent = make_agent(tmp_path, fakes)
    results = agent.run_job(preview_jobs()["preview_defradev"])
    codes = dict(results)
    assert codes[f"Pulumi CLI {pipeline_variables()['PULUMI_VERSION']}"] == 1
    assert "does not match its published SHA-256: not installed" in agent.output()
    assert "adp-identity plan (defradev)" not in codes
    assert not any((tmp_path / "agent-tools").rglob("pulumi/pulumi"))
    assert [c for c in fakes.calls() if not c.startswith("curl")] == []


@needs_shell_tools
@pytest.mark.parametrize(("stage", "stack"), [("Development", "defradev"), ("Production", "defra")])
def test_deploy_runs_pulumi_up_with_the_commit_and_puts_the_output_on_the_summary(
    tmp_path: Path, stage: str, stack: str
) -> None:
    fakes = make_fakes(tmp_path / stack, stack)
    agent = make_agent(tmp_path, fakes, reason="IndividualCI")
    (job,) = stages("deploy")[stage]["jobs"]
    results = agent.run_job(job)
    assert all(code == 0 for _, code in results), agent.output()
    (up,) = [c for c in fakes.calls() if c.startswith("pulumi up")]
    assert up.split("|")[0] == (
        f"pulumi up --stack {stack} --refresh --diff --yes --message deploy {SOURCE_VERSION} "
        "--non-interactive --color never --suppress-progress"
    )
    (summary,) = agent.summaries()
    assert summary.startswith(f"## `pulumi up --refresh` of stack `{stack}`: succeeded")
    assert "Resources: 1 updated" in summary


@needs_shell_tools
def test_a_failed_deployment_fails_the_job(tmp_path: Path) -> None:
    fakes = make_fakes(tmp_path / "defradev", "defradev", FAKE_UP_EXIT="255")
    agent = make_agent(tmp_path, fakes, reason="IndividualCI")
    (job,) = stages("deploy")["Development"]["jobs"]
    results = agent.run_job(job)
    assert results[-1][1] == 255
    (summary,) = agent.summaries()
    assert "FAILED (exit 255)" in summary


@needs_shell_tools
@pytest.mark.parametrize(
    ("refresh_exit", "audit_exit", "job_fails", "refresh_verdict", "audit_verdict"),
    [
        ("0", "0", False, "clean", "clean"),
        ("7", "2", True, "DRIFT", "DRIFT"),
        ("0", "2", True, "clean", "DRIFT"),
        ("255", "0", True, "check failed (exit 255)", "clean"),
    ],
)
def test_drift_reports_on_the_summary_and_fails_on_drift_or_a_failed_check(
    tmp_path: Path, refresh_exit: str, audit_exit: str, job_fails: bool, refresh_verdict: str, audit_verdict: str
) -> None:
    fakes = make_fakes(tmp_path / "defra", "defra", FAKE_REFRESH_EXIT=refresh_exit, FAKE_AUDIT_EXIT=audit_exit)
    agent = make_agent(tmp_path, fakes, reason="Schedule")
    (stage,) = stages("drift").values()
    (job,) = [j for j in stage["jobs"] if job_name(j) == "drift_defra"]
    results = agent.run_job(job)
    assert (results[-1][1] != 0) == job_fails
    (summary,) = agent.summaries()
    assert summary.startswith("## Drift check of stack `defra`")
    assert f"--expect-no-changes`) | {refresh_verdict} |" in summary
    assert f"(`adp-identity audit`) | {audit_verdict} |" in summary
    if job_fails:
        assert "##vso[task.logissue type=error]drift in stack defra: refresh:" in agent.output()
    calls = [c.split("|")[0] for c in fakes.calls() if not c.startswith(("curl", "pulumi version"))]
    assert calls == [
        "pulumi refresh --stack defra --preview-only --expect-no-changes --diff --non-interactive --color never "
        "--suppress-progress",
        "pulumi stack output --stack defra --json",
        f"adp-identity audit --stack defra --identities {tmp_path / 'agent-temp' / 'drift-defra' / 'outputs.json'}",
    ]
