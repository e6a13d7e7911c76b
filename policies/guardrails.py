"""The CrossGuard front end of adp-identity's rules: pulumi_policy policies that call ``adp_identity.rules``.

Nothing here decides what is allowed; every decision is a rule of ``adp_identity.rules.catalog`` (the same rules
`adp-identity validate` checks the service files with). This module only adapts:

- pulumi_policy's arguments to the rules' `Resource` (`to_resource`): its proxies unwrapped, every value it
  reports as unknown during preview turned into ``UNKNOWN`` (a rule skips what it cannot know yet, instead of the
  whole policy failing with "can't run during preview");
- the stack's declarations to the rules' `StackContext`: read once per process from the project's own
  ``stacks/`` tree through the desired-state loader, for the stack the CLI runs (``PULUMI_STACK``), with the
  decrypted ``adp-identity:secret-*`` config values the CLI hands a policy pack (``PULUMI_CONFIG``), which rules
  compare with and never print;
- each rule to one ``ResourceValidationPolicy`` named after the rule, and a rule's stack check to one
  ``StackValidationPolicy`` named ``<rule>-stack``; findings waived by ``stacks/policy-exceptions.yaml`` are not
  reported.

Enforcement: mandatory unless the policy pack config says otherwise (``policies/config/<stack>.json``, given with
``--policy-pack-config``): mandatory for Defra, advisory for DefraDev. docs/policies.md.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError

from adp_identity.desired import PolicyContext, policy_context
from adp_identity.desired.yamlsafe import YamlRefused, read_yaml
from adp_identity.rules import RULES, UNKNOWN, Resource, Rule, findings, stack_findings
from adp_identity.rules.catalog import PROJECT, SECRET_CONFIG_PREFIX

PACK_NAME = "adp-identity-guardrails"
ROOT = Path(__file__).resolve().parent.parent  # the project: Pulumi.yaml, stacks/, policies/
SECRET_PREFIX = f"{PROJECT}:{SECRET_CONFIG_PREFIX}"


def plain(value: Any) -> Any:
    """pulumi_policy's read-only proxies -> plain dicts and lists; unknown values -> ``UNKNOWN``."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError:
                out[str(key)] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def to_resource(args: ResourceValidationArgs | PolicyResource) -> Resource:
    """The rules' view of one resource the engine analyses (inputs for Analyze, outputs for AnalyzeStack)."""
    dependencies: dict[str, tuple[str, ...]] = {}
    if isinstance(args, PolicyResource):
        dependencies = {key: tuple(r.urn for r in deps) for key, deps in args.property_dependencies.items()}
    return Resource(args.resource_type, args.name, plain(args.props), args.urn, dependencies)


class PackState:
    """The stack's context and exceptions, loaded on first use (the CLI's environment is set by then)."""

    def __init__(self, load: Callable[[], PolicyContext]) -> None:
        self.load = load
        self._loaded: PolicyContext | None = None
        self._lock = threading.Lock()  # the analyzer serves requests from a thread pool

    def get(self) -> PolicyContext:
        with self._lock:
            if self._loaded is None:
                self._loaded = self.load()
            return self._loaded


def _stacks_dir(root: Path) -> Path:
    try:
        data = read_yaml(root / "Pulumi.yaml").data
    except YamlRefused:
        return root / "stacks"
    configured = data.get("stackConfigDir")
    return root / configured if isinstance(configured, str) and configured else root


def load_from_environment(root: Path = ROOT, environ: Mapping[str, str] | None = None) -> PolicyContext:
    """The context of the stack the Pulumi CLI runs the pack for (``PULUMI_STACK``, ``PULUMI_CONFIG``)."""
    import json

    environ = os.environ if environ is None else environ
    stack = environ.get("PULUMI_STACK", "")
    if not stack:
        return PolicyContext(None, problem="PULUMI_STACK is not set: run the pack with pulumi preview --policy-pack")
    try:
        config = json.loads(environ.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        config = {}
    secrets = {
        key: value
        for key, value in (config.items() if isinstance(config, dict) else ())
        if isinstance(key, str) and key.startswith(SECRET_PREFIX) and isinstance(value, str)
    }
    return policy_context(_stacks_dir(root), stack, secret_values=secrets, today=dt.datetime.now(dt.UTC).date())


def _with_problem(rule: Rule, message: str, state: PolicyContext) -> str:
    if state.context is None and state.problem and message.startswith("cannot check"):
        return f"{message}: {state.problem}"
    return message


def resource_policy(rule: Rule, state: PackState) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        loaded = state.get()
        for finding in findings(rule, to_resource(args), loaded.context, loaded.exceptions):
            if finding.reported:
                report_violation(_with_problem(rule, finding.text(), loaded), None)

    return ResourceValidationPolicy(
        name=rule.id,
        description=rule.description,
        validate=validate,
        remediation_steps=rule.fix,
    )


def stack_policy(rule: Rule, state: PackState) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        loaded = state.get()
        resources = [to_resource(r) for r in args.resources]
        for finding in stack_findings(rule, resources, loaded.context, loaded.exceptions):
            if finding.reported:
                urn = next((r.urn for r in resources if r.name == finding.resource and r.urn), None)
                report_violation(_with_problem(rule, finding.text(), loaded), urn)

    return StackValidationPolicy(
        name=f"{rule.id}-stack",
        description=rule.description,
        validate=validate,
        remediation_steps=rule.fix,
    )


def policies(state: PackState | None = None) -> list[Policy]:
    """One policy per rule, plus one per rule with a stack check."""
    state = state or PackState(load_from_environment)
    built: list[Policy] = [resource_policy(rule, state) for rule in RULES]
    built += [stack_policy(rule, state) for rule in RULES if rule.validate_stack is not None]
    return built


DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY  # fail closed; DefraDev's config makes it advisory
