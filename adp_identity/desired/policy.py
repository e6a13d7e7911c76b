"""The rules' view of a checked stack (`adp_identity.rules.StackContext`), for the CrossGuard policy pack.

The pack judges resources against the same files `adp-identity validate` reads: it loads the stack through the
loader (strictly, as deploy does) and hands every rule the stack's tenant, clusters, environments, services and
which secret config keys are encrypted. When the tree has errors there is no context, and the pack's rules that
need one report that they cannot check (fail closed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from adp_identity.desired.loader import check_tree
from adp_identity.desired.schema import DesiredState
from adp_identity.rules.context import Environment, ServiceFacts, StackContext
from adp_identity.rules.exceptions import ExceptionSet


def stack_context(state: DesiredState, secret_values: Mapping[str, str] | None = None) -> StackContext:
    """What a checked stack declares, as the rules see it. `secret_values` are never printed."""
    tenant = state.tenant
    return StackContext(
        stack=state.stack,
        tenant_id=tenant.tenant_id,
        clusters=dict(tenant.aks_clusters),
        environments={
            name: Environment(name, environment.url, environment.production)
            for name, environment in tenant.dataverse_environments.items()
        },
        forbidden_roles=tenant.policy.forbidden_roles_in_production,
        tags=dict(tenant.tags),
        services={name: ServiceFacts(name, spec.key_vault_secrets) for name, spec in state.services.items()},
        secure_config_keys=state.secure_config_keys,
        secret_values=dict(secret_values or {}),
    )


@dataclass(frozen=True)
class PolicyContext:
    context: StackContext | None
    exceptions: ExceptionSet = field(default_factory=ExceptionSet)
    problem: str | None = None  # why there is no context


def policy_context(
    stacks_dir: Path,
    stack: str,
    *,
    secret_values: Mapping[str, str] | None = None,
    today: dt.date | None = None,
) -> PolicyContext:
    """The stack's context and exceptions from the tree, or why there is none (its first error, one line)."""
    report = check_tree(stacks_dir, stack, strict=True, today=today)
    state = report.states.get(stack)
    # errors of the exceptions file alone keep the context: an entry that is invalid or expired waives nothing,
    # so what it would have waived is reported (with "expired" when it expired)
    if state is None:
        count = len(report.errors)
        first = f"; first: {report.errors[0]}" if report.errors else ""
        problem = f"the desired state of stack '{stack}' has {count} error{'s' if count != 1 else ''}{first}"
        return PolicyContext(None, report.exceptions, problem)
    return PolicyContext(stack_context(state, secret_values), report.exceptions)
