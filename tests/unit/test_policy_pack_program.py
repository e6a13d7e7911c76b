"""The real Pulumi program's registrations, as the engine would hand them to the policy pack.

The program runs under Pulumi's mocks (tests/program/mocks.py: what ``pulumi preview`` runs, against fakes), and
every resource it registers goes to the pack as an ``AnalyzeRequest`` (its inputs, internal keys stripped as the
engine strips them) and the whole stack as one ``AnalyzeStackRequest`` (its outputs). What the program builds
from the example stacks passes every rule; the same registrations, each changed in one way the rules forbid,
fire the rule they break. So the tokens and property names the rules read are the ones the program really sends.
"""

from __future__ import annotations

import copy
import datetime as dt
from functools import cache
from typing import Any

import pytest

from adp_identity.desired import policy_context
from adp_identity.rules import resources as t
from tests.program import mocks
from tests.program.mocks import ProgramRun, Registration

from .test_policy_pack import STACKS, Pack

TODAY = dt.date(2026, 6, 1)


@cache
def program(stack: str) -> ProgramRun:
    run = mocks.run_program(mocks.REPO, stack)
    assert run.error is None, run.error
    return run


def pack_for(stack: str) -> Pack:
    run = program(stack)
    return Pack(lambda: policy_context(STACKS, stack, secret_values=run.secret_values, today=TODAY), stack=stack)


def engine_inputs(registration: Registration) -> dict[str, Any]:
    """What the engine marshals for a policy pack: internal keys (``__provider``) skipped."""
    return {key: value for key, value in registration.inputs.items() if not key.startswith("__")}


def custom(run: ProgramRun) -> list[Registration]:
    return [r for r in run.registrations if r.custom]


@pytest.mark.parametrize("stack", ["defra", "defradev"])
def test_what_the_program_registers_passes_every_rule(stack: str) -> None:
    run = program(stack)
    pack = pack_for(stack)
    registered = custom(run)
    assert {r.type for r in registered} >= {
        t.USER_ASSIGNED_IDENTITY,
        t.FEDERATED_IDENTITY_CREDENTIAL,
        t.KEY_VAULT_SECRET,
        t.ROLE_ASSIGNMENT,
        t.APPLICATION,
        t.APPLICATION_CERTIFICATE,
        t.KEY_VAULT_CERTIFICATE,
        t.APPLICATION_USER,
    }
    for registration in registered:
        assert pack.analyze(registration.type, registration.name, engine_inputs(registration)) == [], registration.name
    outputs = [(r.type, r.name, r.outputs, {}) for r in registered]
    assert pack.analyze_stack(outputs) == []


def _first(run: ProgramRun, type_: str, name_part: str = "") -> Registration:
    return next(r for r in custom(run) if r.type == type_ and name_part in r.name)


def _changed(registration: Registration, change: Any) -> dict[str, Any]:
    inputs = copy.deepcopy(engine_inputs(registration))
    change(inputs)
    return inputs


PRD_USER = "ffc-pay-web-dataverse-prd"
CHANGES: dict[str, tuple[str, str, Any]] = {
    # rule -> (type, name part, change to the program's inputs)
    "no-password-credentials": (t.APPLICATION, "", lambda i: i.update(password={"displayName": "legacy"})),
    "certificate-lifetime": (t.KEY_VAULT_CERTIFICATE, "", lambda i: i.update(validity_months=18.0)),
    "no-privileged-role-in-production": (
        t.APPLICATION_USER,
        PRD_USER,
        lambda i: i.update(security_roles=[*i["security_roles"], "System\u00a0Customizer"]),
    ),
    "application-user-identity-in-tenant": (
        t.APPLICATION_USER,
        PRD_USER,
        lambda i: i.update(environment_url="https://defradev-dev.crm11.dynamics.com"),
    ),
    "federated-credential-subject": (
        t.FEDERATED_IDENTITY_CREDENTIAL,
        "",
        lambda i: i.update(subject="system:serviceaccount:ffc-pay:*"),
    ),
    "key-vault-secret-from-secret-config": (
        t.KEY_VAULT_SECRET,
        "",
        lambda i: i.update(properties={"value": "not-from-config"}),
    ),
    "platform-tags": (t.USER_ASSIGNED_IDENTITY, "", lambda i: i["tags"].pop("Environment")),
    "role-assignment-one-secret": (
        t.ROLE_ASSIGNMENT,
        "",
        lambda i: i.update(scope=i["scope"].rsplit("/secrets/", 1)[0]),
    ),
}


@pytest.mark.parametrize("rule", list(CHANGES), ids=list(CHANGES))
def test_each_rule_fires_on_the_programs_own_resource_changed_to_break_it(rule: str) -> None:
    run = program("defra")
    type_, name_part, change = CHANGES[rule]
    registration = _first(run, type_, name_part)
    diagnostics = pack_for("defra").analyze(registration.type, registration.name, _changed(registration, change))
    assert rule in [d.policyName for d in diagnostics]


def test_an_application_user_bound_to_another_identity_fails_the_stack_policy() -> None:
    run = program("defra")
    outputs = []
    for registration in custom(run):
        state = copy.deepcopy(registration.outputs)
        if registration.name == PRD_USER:
            state["application_id"] = "99999999-0000-4000-8000-000000000009"
        outputs.append((registration.type, registration.name, state, {}))
    diagnostics = pack_for("defra").analyze_stack(outputs)
    assert [(d.policyName, d.urn.rsplit("::", 1)[1]) for d in diagnostics] == [
        ("application-user-identity-in-tenant-stack", PRD_USER)
    ]
