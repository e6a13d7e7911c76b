"""Desired state of adp-identity: the schema of stack settings and service files, and its strict loader.

Public face (no Pulumi import anywhere in this package)::

    from adp_identity.desired import load_tree, DesiredStateErrors
    states = load_tree(Path("stacks"))            # {"defra": DesiredState, "defradev": DesiredState}
    state = states["defradev"]
    state.tenant.dataverse_environments["dev"].url
    state.services["ffc-pay-batch"].dataverse[0].security_roles
    state.identity_name("ffc-pay-batch")          # sndadpinfmi1401-ffc-pay-batch
    state.federated_credentials("ffc-pay-batch")  # names, issuers, subjects

Every problem is a one-line `DesiredStateError`; a load raises `DesiredStateErrors` carrying all of them.
`check_tree` returns them all instead (errors, warnings, findings waived by a reviewed exception), which is what
`adp-identity validate` prints; `policy_context` gives the CrossGuard policy pack the same stack, as its rules see it.
"""

from adp_identity.desired.errors import DesiredStateError, DesiredStateErrors
from adp_identity.desired.loader import TreeReport, check_tree, desired_state_from_pulumi_config, load_stack, load_tree
from adp_identity.desired.policy import PolicyContext, policy_context, stack_context
from adp_identity.desired.schema import (
    AppRegistrationSpec,
    CertificatePolicy,
    DataverseAccess,
    DataverseEnvironment,
    DesiredState,
    Federation,
    KeyVaultSettings,
    NamingSettings,
    PolicySettings,
    ServiceSpec,
    TenantSettings,
    WorkloadIdentitySpec,
)

__all__ = [
    "AppRegistrationSpec",
    "CertificatePolicy",
    "DataverseAccess",
    "DataverseEnvironment",
    "DesiredState",
    "DesiredStateError",
    "DesiredStateErrors",
    "Federation",
    "KeyVaultSettings",
    "NamingSettings",
    "PolicyContext",
    "PolicySettings",
    "ServiceSpec",
    "TenantSettings",
    "TreeReport",
    "WorkloadIdentitySpec",
    "check_tree",
    "desired_state_from_pulumi_config",
    "load_stack",
    "load_tree",
    "policy_context",
    "stack_context",
]
