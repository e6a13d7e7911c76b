"""The stack's resources, built from one tenant's desired state: one ``Service`` component per service file.

``build_stack`` is the whole program once the desired state has been loaded and checked; it reads nothing itself
(the entry point loads config, service files and secret values first, and refuses an invalid tree before any
resource exists). Services are registered in name order, each a self-contained subtree, so removing a service
file removes exactly that service's resources.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from adp_identity.desired import naming as adp
from adp_identity.desired.schema import DesiredState, ServiceSpec
from infra.components.dataverse_access import EnvironmentGrant
from infra.components.service import AppRegistrationSettings, KeyVaultTarget, Service, ServiceArgs
from infra.components.workload_identity import FederatedSubject, WorkloadIdentityArgs


def build_stack(
    desired: DesiredState, secrets: Mapping[str, pulumi.Input[str]]
) -> dict[str, dict[str, pulumi.Input[object]]]:
    """Register every service of the stack; return each service's outputs by service name.

    ``secrets`` maps each declared secret's config key (``secret-<service>-<name>``) to its (secret) value.
    """
    outputs: dict[str, dict[str, pulumi.Input[object]]] = {}
    for name in sorted(desired.services):
        service = Service(name, service_args(desired, name, secrets))
        outputs[name] = service.stack_outputs()
    return outputs


def service_args(desired: DesiredState, name: str, secrets: Mapping[str, pulumi.Input[str]]) -> ServiceArgs:
    """One service file, translated into the components' arguments."""
    tenant = desired.tenant
    spec = desired.services[name]
    return ServiceArgs(
        identity=_identity_args(desired, name),
        key_vault=KeyVaultTarget(
            subscription_id=tenant.subscription_id,
            resource_group_name=tenant.key_vault.resource_group,
            vault_name=tenant.key_vault.name,
            vault_url=tenant.key_vault.url,
        ),
        secrets={secret: secrets[adp.secret_config_key(spec.service, secret)] for secret in spec.key_vault_secrets},
        app_registration=_app_registration(spec),
        dataverse=[
            EnvironmentGrant(
                environment=access.environment,
                environment_url=tenant.dataverse_environments[access.environment].url,
                security_roles=list(access.security_roles),
                business_unit=access.business_unit,
                disabled=access.disabled,
                principal=access.principal,
            )
            for access in spec.dataverse
        ],
    )


def _identity_args(desired: DesiredState, name: str) -> WorkloadIdentityArgs:
    tenant, spec = desired.tenant, desired.services[name]
    return WorkloadIdentityArgs(
        service_name=spec.service,
        name_prefix=tenant.naming.identity_prefix,
        team=spec.team,
        subscription_id=tenant.subscription_id,
        resource_group_name=tenant.resource_group,
        location=tenant.location,
        # in the desired state's order, which numbers them -fic-0, -fic-1, ... (cluster by cluster)
        federated_subjects=[
            FederatedSubject(credential.issuer, credential.subject)
            for credential in desired.federated_credentials(name)
        ],
        tags=dict(tenant.tags),
    )


def _app_registration(spec: ServiceSpec) -> AppRegistrationSettings | None:
    if spec.app_registration is None:
        return None
    display_name = spec.app_registration.display_name or adp.app_registration_display_name(spec.service)
    return AppRegistrationSettings(
        display_name=display_name,
        certificate_subject=adp.certificate_subject(display_name),
        validity_months=spec.app_registration.certificate.validity_months,
        renew_before_days=spec.app_registration.certificate.renew_before_days,
    )
