"""The CrossGuard policy pack, driven through pulumi_policy's own machinery as the Pulumi CLI drives it.

No Pulumi CLI here. What the CLI does and what these tests do instead:

- the CLI marshals each resource's inputs into an ``AnalyzeRequest`` (``KeepUnknowns``, ``KeepSecrets``,
  ``SkipInternalKeys``: a dynamic resource's ``__provider`` never reaches the pack) and calls ``Analyze``; for the
  whole stack it sends an ``AnalyzeStackRequest`` with every resource's outputs and property dependencies. Here
  the same protobuf requests go to pulumi_policy's analyzer servicer, in-process, or over gRPC to the pack started
  as the CLI starts it (``<venv>/bin/python -u -m pulumi.policy <engine> .`` in ``policies/``);
- ``--policy-pack-config policies/config/<stack>.json`` becomes a ``Configure`` call with each policy's
  enforcement level ("all" applies to every policy, a policy's own entry overrides it, as Pulumi documents).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from adp_identity.desired import PolicyContext, policy_context
from adp_identity.rules import RULES, UNKNOWN
from adp_identity.rules import resources as t
from policies import guardrails

from .test_rules import PRD_ISSUER, SECRET_KEY, TAGS, VAULT_ID

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
STACKS = REPO / "stacks"
PRD = "https://defra-prd.crm11.dynamics.com"
SECRET_VALUE = "decrypted-by-the-cli-5b1e"
TODAY = dt.date(2026, 6, 1)
LEVELS = {
    EnforcementLevel.ADVISORY: proto.ADVISORY,
    EnforcementLevel.MANDATORY: proto.MANDATORY,
    EnforcementLevel.DISABLED: proto.DISABLED,
}


def _wire(value: Any) -> Any:
    """Rule-shaped values -> what the engine marshals: UNKNOWN as the unknown sentinel, numbers as floats."""
    if value is UNKNOWN:
        return UNKNOWN_STRING_VALUE
    if isinstance(value, Secret):
        return Secret(_wire(value.value))
    if isinstance(value, Mapping):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(serialize_properties(_wire(props)))
    return message


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::adp-identity::{type_}::{name}"


class Pack:
    """pulumi_policy's analyzer servicer with the pack's policies, configured as the CLI configures it."""

    def __init__(self, load: Any, stack: str = "defra", config_file: Path | None = None) -> None:
        self.stack = stack
        self.servicer = _PolicyAnalyzerServicer(
            guardrails.PACK_NAME,
            "0.1.0",
            guardrails.policies(guardrails.PackState(load)),
            guardrails.DEFAULT_ENFORCEMENT,
        )
        if config_file is not None:
            self.servicer.Configure(
                configure_request(self.servicer.GetAnalyzerInfo(empty_pb2.Empty(), None), config_file), None
            )

    def analyze(self, type_: str, name: str, props: Mapping[str, Any]) -> list[Any]:
        request = proto.AnalyzeRequest(
            type=type_, name=name, urn=urn(self.stack, type_, name), properties=struct(props)
        )
        return list(self.servicer.Analyze(request, None).diagnostics)

    def analyze_stack(self, resources: list[tuple[str, str, Mapping[str, Any], Mapping[str, list[str]]]]) -> list[Any]:
        items = []
        for type_, name, props, dependencies in resources:
            items.append(
                proto.AnalyzerResource(
                    type=type_,
                    name=name,
                    urn=urn(self.stack, type_, name),
                    properties=struct(props),
                    propertyDependencies={
                        key: proto.AnalyzerPropertyDependencies(urns=urns) for key, urns in dependencies.items()
                    },
                )
            )
        return list(self.servicer.AnalyzeStack(proto.AnalyzeStackRequest(resources=items), None).diagnostics)


def configure_request(info: Any, config_file: Path) -> Any:
    """``--policy-pack-config``: "all" for every policy, a policy's own entry over it (Pulumi's documented rule)."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    levels = {}
    for policy in info.policies:
        value = config.get(policy.name, config.get("all"))
        if isinstance(value, dict):
            value = value.get("enforcementLevel")
        if value is not None:
            levels[policy.name] = proto.PolicyConfig(enforcementLevel=LEVELS[EnforcementLevel(value)])
    return proto.ConfigureAnalyzerRequest(policyConfig=levels)


def from_tree(stacks: Path = STACKS, stack: str = "defra", today: dt.date = TODAY) -> Any:
    return lambda: policy_context(stacks, stack, secret_values={SECRET_KEY: SECRET_VALUE}, today=today)


@pytest.fixture(scope="module")
def pack() -> Pack:
    return Pack(from_tree())


def user(roles: list[Any], url: str = PRD, **extra: Any) -> dict[str, Any]:
    return {"environment_url": url, "application_id": UNKNOWN, "security_roles": roles, "business_unit": "x", **extra}


# rule -> (a violating resource as the engine passes it, the message it gets)
VIOLATIONS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "no-password-credentials": (
        t.APPLICATION_PASSWORD,
        "ffc-pay-batch-app-secret",
        {"applicationId": "/applications/0f1e2d3c", "displayName": "legacy"},
        "ApplicationPassword 'ffc-pay-batch-app-secret' adds a client secret to an application",
    ),
    "certificate-lifetime": (
        t.KEY_VAULT_CERTIFICATE,
        "ffc-pay-batch-app-cert",
        {"vault_url": "https://prdadpinfkv1401.vault.azure.net", "certificate_name": "c", "validity_months": 24},
        "a certificate valid 24 months; allowed: 1..12 months (certificates are valid at most a year)",
    ),
    "no-privileged-role-in-production": (
        t.APPLICATION_USER,
        "ffc-pay-web-dataverse-prd",
        user(["Basic User", "system administrator"]),
        "role 'system administrator' (System Administrator) is privileged and may not be held in production"
        " environment 'prd' (privileged: System Administrator, System Customizer)",
    ),
    "application-user-identity-in-tenant": (
        t.APPLICATION_USER,
        "ffc-pay-web-dataverse-dev",
        user(["Basic User"], url="https://defradev-dev.crm11.dynamics.com"),
        "environment 'https://defradev-dev.crm11.dynamics.com' is not an environment of stack 'defra'",
    ),
    "federated-credential-subject": (
        t.FEDERATED_IDENTITY_CREDENTIAL,
        "ffc-pay-web-identity-fic-0",
        {
            "issuer": PRD_ISSUER,
            "subject": "system:serviceaccount:ffc-pay:*",
            "audiences": ["api://AzureADTokenExchange"],
        },
        "subject 'system:serviceaccount:ffc-pay:*' holds a wildcard: it would trust every matching service account",
    ),
    "key-vault-secret-from-secret-config": (
        t.KEY_VAULT_SECRET,
        "ffc-pay-web-secrets-session-cookie-password",
        {
            "secretName": "ffc-pay-web-session-cookie-password",
            "properties": {"value": Secret("typed-into-a-program-9c2d")},
            "tags": TAGS,
        },
        f"its value is not the value of the Pulumi secret config key {SECRET_KEY}",
    ),
    "platform-tags": (
        t.USER_ASSIGNED_IDENTITY,
        "ffc-pay-web-identity-mi",
        {"resourceName": "prdadpinfmi1401-ffc-pay-web", "tags": {**TAGS, "Environment": ""}},
        "tag Environment is missing",
    ),
    "role-assignment-one-secret": (
        t.ROLE_ASSIGNMENT,
        "ffc-pay-web-vault-reader",
        {"scope": VAULT_ID, "principalId": UNKNOWN, "roleDefinitionId": "x"},
        f"scope '{VAULT_ID[:57]}...' is a whole Key Vault",
    ),
}


def test_the_pack_has_one_policy_per_rule_and_one_stack_policy() -> None:
    info = Pack(from_tree()).servicer.GetAnalyzerInfo(empty_pb2.Empty(), None)
    names = [p.name for p in info.policies]
    assert names == [r.id for r in RULES] + ["application-user-identity-in-tenant-stack"]
    assert set(VIOLATIONS) == {r.id for r in RULES}
    for policy in info.policies:
        assert policy.enforcementLevel == proto.MANDATORY  # the default: fail closed
        assert "stacks/policy-exceptions.yaml" in policy.description and policy.remediation_steps


@pytest.mark.parametrize("rule", list(VIOLATIONS), ids=list(VIOLATIONS))
def test_every_rule_fires_through_pulumi_policy(pack: Pack, rule: str) -> None:
    type_, name, props, message = VIOLATIONS[rule]
    diagnostics = pack.analyze(type_, name, props)
    assert [(d.policyName, d.enforcementLevel) for d in diagnostics] == [(rule, proto.MANDATORY)]
    (diagnostic,) = diagnostics
    assert diagnostic.policyPackName == guardrails.PACK_NAME  # the engine attaches the resource's URN itself
    assert diagnostic.message.startswith(next(r.description for r in RULES if r.id == rule) + "\n")
    assert diagnostic.message.splitlines()[1].startswith(message)
    assert "typed-into-a-program" not in diagnostic.message and SECRET_VALUE not in diagnostic.message


GOOD_SECRET = {
    "secretName": "ffc-pay-web-session-cookie-password",
    "properties": {"value": Secret(SECRET_VALUE)},
    "tags": TAGS,
}


def test_what_the_program_builds_passes(pack: Pack) -> None:
    certificate = {"vault_url": "https://x", "certificate_name": "c", "validity_months": 12, "renew_before_days": 30}
    credential = {
        "issuer": PRD_ISSUER,
        "subject": "system:serviceaccount:ffc-pay:ffc-pay-web",
        "audiences": ["api://AzureADTokenExchange"],
    }
    roles = user(["Basic User", "FFC Payments Reader"], tenant_id="549741a4-5f5a-45bd-bc5b-930ebc1c669d")
    scope = {"scope": f"{VAULT_ID}/secrets/ffc-pay-web-session-cookie-password"}
    compliant = [
        (t.APPLICATION, "ffc-pay-batch-app-application", {"displayName": "ADP-FFC-PayBatch"}),
        (t.KEY_VAULT_CERTIFICATE, "ffc-pay-batch-app-cert", certificate),
        (t.APPLICATION_USER, "ffc-pay-web-dataverse-prd", roles),
        (t.FEDERATED_IDENTITY_CREDENTIAL, "ffc-pay-web-identity-fic-0", credential),
        (t.KEY_VAULT_SECRET, "ffc-pay-web-secrets-session-cookie-password", GOOD_SECRET),
        (t.USER_ASSIGNED_IDENTITY, "ffc-pay-web-identity-mi", {"tags": TAGS}),
        (t.ROLE_ASSIGNMENT, "ffc-pay-web-secrets-session-cookie-password-reader", scope),
    ]
    for type_, name, props in compliant:
        assert pack.analyze(type_, name, props) == [], name


def test_values_unknown_during_preview_are_skipped_not_failed(pack: Pack) -> None:
    unknown = [
        (t.ROLE_ASSIGNMENT, "r", {"scope": UNKNOWN}),
        (t.FEDERATED_IDENTITY_CREDENTIAL, "f", {"issuer": UNKNOWN, "subject": UNKNOWN, "audiences": UNKNOWN}),
        (t.KEY_VAULT_CERTIFICATE, "c", {"vault_url": "https://x", "certificate_name": "c", "validity_months": UNKNOWN}),
        (t.KEY_VAULT_SECRET, "s", {"secretName": UNKNOWN, "properties": {"value": UNKNOWN}, "tags": UNKNOWN}),
    ]
    for type_, name, props in unknown:
        assert pack.analyze(type_, name, props) == [], name  # no "can't run policy during preview" either


def test_the_stack_policy_fires_on_an_application_user_bound_to_no_identity_of_the_stack(pack: Pack) -> None:
    identity_urn = urn("defra", t.USER_ASSIGNED_IDENTITY, "ffc-pay-web-identity-mi")
    client_id = "0a1b2c3d-0000-4000-8000-000000000001"
    stranger = "99999999-0000-4000-8000-000000000009"
    pre = "https://defra-pre.crm11.dynamics.com"
    by_urn = {"application_id": [identity_urn]}
    resources: list[tuple[str, str, Mapping[str, Any], Mapping[str, list[str]]]] = [
        (t.USER_ASSIGNED_IDENTITY, "ffc-pay-web-identity-mi", {"clientId": client_id, "tags": TAGS}, {}),
        # bound by value (a known client id), by property dependency (preview), and to no identity of the stack
        (t.APPLICATION_USER, "ffc-pay-web-dataverse-prd", user(["Basic User"], application_id=client_id), {}),
        (t.APPLICATION_USER, "ffc-pay-web-dataverse-pre", user(["Basic User"], url=pre), by_urn),
        (t.APPLICATION_USER, "ffc-pay-web-dataverse-x", user(["Basic User"], application_id=stranger), {}),
    ]
    diagnostics = pack.analyze_stack(resources)
    assert [(d.policyName, d.urn) for d in diagnostics] == [
        ("application-user-identity-in-tenant-stack", urn("defra", t.APPLICATION_USER, "ffc-pay-web-dataverse-x"))
    ]
    assert "is the client id of no managed identity or app registration of stack 'defra'" in diagnostics[0].message


@pytest.mark.parametrize(("stack", "level"), [("defra", proto.MANDATORY), ("defradev", proto.ADVISORY)])
def test_mandatory_in_defra_and_advisory_in_defradev(stack: str, level: int) -> None:
    config_file = POLICIES / "config" / f"{stack}.json"
    pack = Pack(from_tree(stack=stack), stack=stack, config_file=config_file)
    type_, name, props, _ = VIOLATIONS["no-password-credentials"]
    assert [d.enforcementLevel for d in pack.analyze(type_, name, props)] == [level]
    info = pack.servicer.GetAnalyzerInfo(empty_pb2.Empty(), None)
    assert len(configure_request(info, config_file).policyConfig) == len(info.policies)  # "all" covers every one


def _tree_with_exception(tmp_path: Path, expires: str) -> Path:
    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS, stacks)
    entry = {
        "rule": "no-privileged-role-in-production",
        "stack": "defra",
        "subject": "ffc-pay-web/prd",
        "approved_by": "jane.doe@defra.gov.uk",
        "expires": expires,
        "reason": "one-off data migration (ADP-1234)",
    }
    (stacks / "policy-exceptions.yaml").write_text(yaml.safe_dump({"exceptions": [entry]}), encoding="utf-8")
    return stacks


def test_an_approved_exception_waives_the_finding_and_an_expired_one_does_not(tmp_path: Path) -> None:
    type_, name, props, _ = VIOLATIONS["no-privileged-role-in-production"]
    stacks = _tree_with_exception(tmp_path, "2026-09-30")
    assert Pack(from_tree(stacks, today=TODAY)).analyze(type_, name, props) == []
    # the same service's user in another environment is not covered
    elsewhere = user(["System Customizer"], url="https://x.crm11.dynamics.com")
    other = Pack(from_tree(stacks, today=TODAY)).analyze(type_, "ffc-pay-web-dataverse-pre", elsewhere)
    assert [d.policyName for d in other if d.policyName == "no-privileged-role-in-production"] == [
        "no-privileged-role-in-production"
    ]
    (expired,) = Pack(from_tree(stacks, today=dt.date(2026, 10, 1))).analyze(type_, name, props)
    assert expired.message.endswith("(the exception for ffc-pay-web/prd expired on 2026-09-30)")


def test_without_readable_stack_settings_rules_that_need_them_fail_closed(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS, stacks)
    path = stacks / "Pulumi.defra.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    name: Defra\n", "    name: Defra-Prod\n"), "utf-8")
    pack = Pack(from_tree(stacks))
    type_, name, props, _ = VIOLATIONS["application-user-identity-in-tenant"]
    (diagnostic,) = [
        d for d in pack.analyze(type_, name, props) if d.policyName == "application-user-identity-in-tenant"
    ]
    assert diagnostic.enforcementLevel == proto.MANDATORY
    assert diagnostic.message.splitlines()[1].startswith(
        "cannot check the application user's environment and tenant: the stack's settings and service files could"
        " not be read (run adp-identity validate): the desired state of stack 'defra' has 1 error; first:"
        " stacks/Pulumi.defra.yaml:10: config.adp-identity:tenant.name: 'Defra-Prod' is not allowed"
    )
    # rules that need no context still check
    type_, name, props, _ = VIOLATIONS["no-password-credentials"]
    assert [d.policyName for d in pack.analyze(type_, name, props)] == ["no-password-credentials"]


def test_the_pack_reads_the_stack_and_config_the_cli_hands_it() -> None:
    environ = {
        "PULUMI_STACK": "defra",
        "PULUMI_CONFIG": json.dumps({SECRET_KEY: SECRET_VALUE, "azure-native:location": "uksouth"}),
    }
    loaded = guardrails.load_from_environment(REPO, environ)
    assert loaded.context is not None and loaded.context.stack == "defra"
    assert dict(loaded.context.secret_values) == {SECRET_KEY: SECRET_VALUE}  # only the secret config values it compares
    missing: PolicyContext = guardrails.load_from_environment(REPO, {})
    assert missing.context is None and missing.problem and "PULUMI_STACK" in missing.problem


# --- the pack as the Pulumi CLI starts it ---------------------------------------------------------------------


def test_policy_pack_files_are_what_the_cli_needs() -> None:
    project = yaml.safe_load((POLICIES / "PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert project["runtime"]["name"] == "python"
    virtualenv = POLICIES / project["runtime"]["options"]["virtualenv"]
    assert virtualenv.resolve() == (REPO / ".venv").resolve()  # the project's locked environment (make install)
    assert (virtualenv / "bin" / "python").exists()
    requirements = (POLICIES / "requirements.txt").read_text(encoding="utf-8")
    lock = (REPO / "requirements.lock").read_text(encoding="utf-8")
    pins = [line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert "pulumi-policy==1.21.0" in pins
    for pin in pins:  # every pin is the locked version
        assert f"\n{pin} \\" in lock, pin
    for stack in ("defra", "defradev"):
        config = json.loads((POLICIES / "config" / f"{stack}.json").read_text(encoding="utf-8"))
        assert set(config) <= {"all"} | {r.id for r in RULES} | {"application-user-identity-in-tenant-stack"}


@pytest.fixture
def served_pack() -> Iterator[tuple[Any, subprocess.Popen[bytes]]]:
    """policies/ run exactly as the CLI's pulumi-analyzer-policy-python runs it; yields an Analyzer stub."""
    env = {
        **os.environ,
        "PULUMI_PROJECT": "adp-identity",
        "PULUMI_STACK": "defra",
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps({SECRET_KEY: SECRET_VALUE}),
    }
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:9", "."],
        cwd=POLICIES,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port_line = process.stdout.readline()  # the pack prints its port, then serves
        assert port_line.strip().isdigit(), process.stderr.read(2000) if process.stderr else port_line
        channel = grpc.insecure_channel(f"127.0.0.1:{int(port_line)}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel), process
        channel.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_the_pack_served_over_grpc_as_the_cli_runs_it(served_pack: tuple[Any, subprocess.Popen[bytes]]) -> None:
    stub, _ = served_pack
    info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == guardrails.PACK_NAME
    stub.Configure(configure_request(info, POLICIES / "config" / "defra.json"), timeout=30)

    def analyze(type_: str, name: str, props: Mapping[str, Any]) -> list[Any]:
        request = proto.AnalyzeRequest(type=type_, name=name, urn=urn("defra", type_, name), properties=struct(props))
        return list(stub.Analyze(request, timeout=60).diagnostics)

    type_, name, props, message = VIOLATIONS["no-privileged-role-in-production"]
    (diagnostic,) = analyze(type_, name, props)
    assert diagnostic.policyName == "no-privileged-role-in-production"
    assert diagnostic.enforcementLevel == proto.MANDATORY
    assert message in diagnostic.message
    # the secret's value is compared with what the CLI decrypted into PULUMI_CONFIG, and never echoed
    assert analyze(t.KEY_VAULT_SECRET, "ffc-pay-web-secrets-session-cookie-password", GOOD_SECRET) == []
    type_, name, props, _ = VIOLATIONS["key-vault-secret-from-secret-config"]
    (bad,) = analyze(type_, name, props)
    assert SECRET_VALUE not in bad.message and "typed-into-a-program" not in bad.message


@pytest.mark.parametrize("rule", list(VIOLATIONS), ids=list(VIOLATIONS))
def test_each_policy_validates_pulumi_policys_own_resource_validation_args(rule: str) -> None:
    """The policy object itself, called with the ResourceValidationArgs pulumi_policy builds for a resource."""
    type_, name, props, message = VIOLATIONS[rule]
    args = ResourceValidationArgs(
        type_,
        unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct(props)))),
        urn("defra", type_, name),
        name,
        PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        None,
    )
    policy = next(p for p in guardrails.policies(guardrails.PackState(from_tree())) if p.name == rule)
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[str] = []
    policy.validate(args, lambda text, urn=None: reported.append(text))
    assert [text.startswith(message) for text in reported] == [True]
