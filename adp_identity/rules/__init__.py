"""The platform rules, once, for both front ends: `adp-identity validate` and the CrossGuard policy pack.

No Pulumi engine dependency (no ``pulumi``, no ``pulumi_policy``): the pack under ``policies/`` adapts
pulumi_policy's arguments to `Resource` and calls the rules; the desired-state loader checks service files with the
same rules' predicates and messages. Public face::

    from adp_identity.rules import RULES, Resource, check_all
    RULES                       # 8 rules: id, title, why, fix, resource_types, validate(resource, context)
    check_all(resources, context, exceptions)   # every Finding, each waived or not by a reviewed exception

Modules: `resources` (type tokens, `Resource`, `UNKNOWN`), `context` (`StackContext`: what the stack declares),
`catalog` (the rules and their shared predicates), `exceptions` (``stacks/policy-exceptions.yaml``), `engine`
(findings with exceptions applied). docs/policies.md documents each rule and how to make an exception.
"""

from adp_identity.rules.catalog import (
    PRIVILEGED_ROLES,
    REQUIRED_TAGS,
    RULE_IDS,
    RULES,
    RULES_BY_ID,
    SERVICE_TAGS,
    Rule,
    subject_of,
)
from adp_identity.rules.context import Environment, ServiceFacts, StackContext
from adp_identity.rules.engine import Finding, check_all, findings, stack_findings
from adp_identity.rules.exceptions import EXCEPTIONS_FILE, ExceptionSet, PolicyException, parse_exceptions
from adp_identity.rules.resources import UNKNOWN, Resource

__all__ = [
    "EXCEPTIONS_FILE",
    "PRIVILEGED_ROLES",
    "REQUIRED_TAGS",
    "RULES",
    "RULES_BY_ID",
    "RULE_IDS",
    "SERVICE_TAGS",
    "UNKNOWN",
    "Environment",
    "ExceptionSet",
    "Finding",
    "PolicyException",
    "Resource",
    "Rule",
    "ServiceFacts",
    "StackContext",
    "check_all",
    "findings",
    "parse_exceptions",
    "stack_findings",
    "subject_of",
]
