"""The stack's resources, built from one tenant's desired state: one ``Service`` component per service file.

``build_stack`` is the whole program once the desired state has been loaded and checked; it reads no file itself
(the entry point loads config, service files, import files and secret values first, and refuses an invalid tree
before any resource exists). Services are registered in name order, each a self-contained subtree, so removing a
service file removes exactly that service's resources.

Services whose identity the platform owns (``workload_identity.owner: platform``) are looked up first, all of
them, before anything is registered: an identity that does not exist fails the preview with one line per service
naming the identity and resource group, and nothing registered. The lookup is azure-native's
``managedidentity.getUserAssignedIdentity`` invoke (the function behind ``get_user_assigned_identity_output``),
called in its blocking form so that the failure comes before the first registration.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_azure_native import managedidentity

from adp_identity.desired import naming as adp
from adp_identity.desired.errors import one_line
from adp_identity.desired.schema import DesiredState, ServiceSpec
from infra import naming
from infra.components.dataverse_access import EnvironmentGrant
from infra.components.service import AppRegistrationSettings, KeyVaultTarget, PlatformIdentity, Service, ServiceArgs
from infra.components.workload_identity import FederatedSubject, WorkloadIdentityArgs
from infra.imports import ImportIds

_REASON_CHARS = 240  # of the provider's answer, in the one-line error


def build_stack(
    desired: DesiredState,
    secrets: Mapping[str, pulumi.Input[str]],
    imports: Mapping[str, ImportIds] | None = None,
) -> dict[str, dict[str, pulumi.Input[object]]]:
    """Register every service of the stack; return each service's outputs by service name.

    ``secrets`` maps each declared secret's config key (``secret-<service>-<name>``) to its (secret) value;
    ``imports`` a service's import file (checked by the entry point), for services moved from the platform.
    """
    platform = platform_identities(desired)
    outputs: dict[str, dict[str, pulumi.Input[object]]] = {}
    for name in sorted(desired.services):
        args = service_args(
            desired, name, secrets, imports=(imports or {}).get(name), platform_identity=platform.get(name)
        )
        service = Service(name, args)
        outputs[name] = service.stack_outputs()
    return outputs


def owned_by_platform(spec: ServiceSpec) -> bool:
    """The platform owns the identity and it has left the stack (``release`` keeps it in for one more deploy)."""
    return spec.workload_identity.owner == "platform" and not spec.workload_identity.release


def platform_identities(desired: DesiredState) -> dict[str, PlatformIdentity]:
    """The identity of every platform-owned service, looked up by ADP's name in the stack's resource group.

    Raises ``pulumi.RunError`` naming every identity that cannot be read (one line each) before anything is
    registered.
    """
    tenant = desired.tenant
    found: dict[str, PlatformIdentity] = {}
    missing: list[str] = []
    for name in sorted(desired.services):
        if not owned_by_platform(desired.services[name]):
            continue
        identity_name = desired.identity_name(name)
        try:
            result = managedidentity.get_user_assigned_identity(
                resource_group_name=tenant.resource_group, resource_name=identity_name
            )
        except Exception as exc:  # the provider's "not found" (or "forbidden") arrives as a plain Exception
            reason = one_line(str(exc))[:_REASON_CHARS]
            missing.append(
                f"service {name}: workload_identity.owner is platform, but the managed identity {identity_name} "
                f"was not found in resource group {tenant.resource_group} (subscription {tenant.subscription_id}); "
                f"allowed: an identity ADP's Helm library created, or owner: adp-identity ({reason})"
            )
            continue
        found[name] = PlatformIdentity(
            name=identity_name,
            arm_id=naming.managed_identity_id(tenant.subscription_id, tenant.resource_group, identity_name),
            client_id=result.client_id,
            principal_id=result.principal_id,
            tenant_id=result.tenant_id,
        )
    if missing:
        count = len(missing)
        heading = f"adp-identity: {count} platform-owned identit" + ("ies" if count != 1 else "y")
        raise pulumi.RunError(f"{heading} not found; nothing was changed:\n" + "\n".join(missing))
    return found


def service_args(
    desired: DesiredState,
    name: str,
    secrets: Mapping[str, pulumi.Input[str]],
    *,
    imports: ImportIds | None = None,
    platform_identity: PlatformIdentity | None = None,
) -> ServiceArgs:
    """One service file, translated into the components' arguments.

    A platform-owned service needs its looked-up identity (``platform_identity``); a service in its release
    deploy (``owner: platform`` with ``release: true``) keeps its resources with ``retain_on_delete``.
    """
    tenant = desired.tenant
    spec = desired.services[name]
    if owned_by_platform(spec) and platform_identity is None:
        raise ValueError(f"service {name}: owner platform needs the identity looked up (platform_identities)")
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
        tenant_id=tenant.tenant_id,
        platform_identity=platform_identity if owned_by_platform(spec) else None,
        imports=imports,
        retain_on_delete=spec.workload_identity.release,
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
