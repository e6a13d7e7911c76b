"""Drift: what a stack declares for Dataverse, what its environments hold, and reconcile's plan between them.

The GitOps loop deploys with ``pulumi up``; ``adp-identity plan``, ``audit`` and ``export`` close it by reading
Dataverse, without Pulumi and without writing anything. This package returns data; the commands print it. By
concern, each usable alone::

    identities = read_identities("outputs.json")              # identities: `pulumi stack output --json`
    urls = environment_overrides(["dev=https://127.0.0.1:8443"], state)              # targets
    environments = targets(state, identities, urls, new_services=True)              # every declared user
    readings = read_stack(environments, connect_read_only(60.0))  # reading: tenant check, then GETs only
    stack_report = report(state, readings)     # report: reconcile's plan per user, unmanaged privileged users
    plan_lines(stack_report) / audit_lines(stack_report) / plan_markdown(stack_report)              # render

``sandbox`` points a stack at the local emulator (its ``--json-file`` or ``DATAVERSE_URL_*`` variables) and
makes the stack outputs ``adp-identity emulator --outputs-file`` writes; ``export`` and ``servicefile`` turn what
an environment holds into service files. Everything here reaches the Dataverse client through its public face
only (``DataverseClient``, ``CatalogCache``, ``read_only=True``; tests/unit/test_public_face.py).
"""

from adp_identity.drift.identities import (
    STDIN,
    DriftInputErrors,
    ServiceIdentity,
    parse_identities,
    read_bounded,
    read_identities,
)
from adp_identity.drift.reading import (
    EnvironmentReader,
    EnvironmentReading,
    ListedEnvironment,
    UserReading,
    WrongTenant,
    check_tenants,
    connect_read_only,
    read_environment,
    read_stack,
)
from adp_identity.drift.render import audit_lines, audit_markdown, plan_lines, plan_markdown
from adp_identity.drift.report import (
    ALWAYS_PRIVILEGED_ROLES,
    AuditReport,
    Finding,
    PrivilegedUser,
    StackReport,
    UserDrift,
    UserView,
    audit,
    privileged_roles,
    report,
)
from adp_identity.drift.sandbox import EmulatorDescription, read_emulator_description, sandbox_urls, stack_outputs
from adp_identity.drift.targets import (
    ApplicationUserTarget,
    EnvironmentTarget,
    ServiceFiles,
    environment_overrides,
    select_environments,
    targets,
)

__all__ = [
    "ALWAYS_PRIVILEGED_ROLES",
    "STDIN",
    "ApplicationUserTarget",
    "AuditReport",
    "DriftInputErrors",
    "EmulatorDescription",
    "EnvironmentReader",
    "EnvironmentReading",
    "EnvironmentTarget",
    "Finding",
    "ListedEnvironment",
    "PrivilegedUser",
    "ServiceFiles",
    "ServiceIdentity",
    "StackReport",
    "UserDrift",
    "UserReading",
    "UserView",
    "WrongTenant",
    "audit",
    "audit_lines",
    "audit_markdown",
    "check_tenants",
    "connect_read_only",
    "environment_overrides",
    "parse_identities",
    "plan_lines",
    "plan_markdown",
    "privileged_roles",
    "read_bounded",
    "read_emulator_description",
    "read_environment",
    "read_identities",
    "read_stack",
    "report",
    "sandbox_urls",
    "select_environments",
    "stack_outputs",
    "targets",
]
