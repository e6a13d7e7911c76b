"""Run rules over resources and apply the reviewed exceptions: what both front ends report.

`findings` checks one resource against one rule, `stack_findings` the whole stack against a rule's stack check;
each finding names its rule, the subject an exception would name (`subject_of`) and the message. A finding an
exception covers carries that exception (``waived_by``); a finding an EXPIRED exception covered carries it as
``expired`` and is reported like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adp_identity.rules.catalog import RULES, Rule, subject_of
from adp_identity.rules.context import StackContext
from adp_identity.rules.exceptions import ExceptionSet, PolicyException
from adp_identity.rules.resources import Resource


@dataclass(frozen=True)
class Finding:
    rule: str
    subject: str
    resource: str  # the resource's Pulumi name
    message: str
    waived_by: PolicyException | None = None
    expired: PolicyException | None = None

    @property
    def reported(self) -> bool:
        return self.waived_by is None

    def text(self) -> str:
        """The violation message as a policy pack reports it (never a secret value)."""
        if self.expired is not None:
            return f"{self.message} (the exception for {self.subject} expired on {self.expired.expires.isoformat()})"
        return self.message


def _finding(
    rule: Rule, resource: Resource, message: str, context: StackContext | None, exceptions: ExceptionSet | None
) -> Finding:
    subject = subject_of(resource, context)
    stack = context.stack if context is not None else ""
    waived = exceptions.waiver(rule.id, stack, subject) if exceptions is not None else None
    expired = exceptions.expired_for(rule.id, stack, subject) if exceptions is not None and waived is None else None
    return Finding(rule.id, subject, resource.name, message, waived, expired)


def findings(
    rule: Rule, resource: Resource, context: StackContext | None, exceptions: ExceptionSet | None = None
) -> list[Finding]:
    return [_finding(rule, resource, m, context, exceptions) for m in rule.validate(resource, context)]


def stack_findings(
    rule: Rule, resources: Sequence[Resource], context: StackContext | None, exceptions: ExceptionSet | None = None
) -> list[Finding]:
    if rule.validate_stack is None:
        return []
    return [_finding(rule, r, m, context, exceptions) for r, m in rule.validate_stack(resources, context)]


def check_all(
    resources: Sequence[Resource], context: StackContext | None, exceptions: ExceptionSet | None = None
) -> list[Finding]:
    """Every rule over every resource, then every stack check: what the policy pack would find in a stack."""
    found: list[Finding] = []
    for resource in resources:
        for rule in RULES:
            found.extend(findings(rule, resource, context, exceptions))
    for rule in RULES:
        found.extend(stack_findings(rule, resources, context, exceptions))
    return found
