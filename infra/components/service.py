"""Everything one service file declares, composed: identity, secrets, app registration, Dataverse access.

One ``Service`` per ``stacks/<stack>/<service>.yaml``; its children are named ``{name}-identity``,
``{name}-secrets``, ``{name}-app`` and ``{name}-dataverse``, so deleting the file deletes exactly this subtree
and renaming the component (``previous_names``) keeps all of it. The managed identity is the principal of
everything, except the Dataverse environments where the service file names its app registration instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from adp_identity.desired import naming as adp
from infra import naming
from infra.components._options import child_of, with_previous_names
from infra.components.app_registration import AppRegistration, AppRegistrationArgs, CertificateSettings
from infra.components.dataverse_access import DataverseAccess, DataverseAccessArgs, EnvironmentGrant
from infra.components.key_vault_secrets import ServiceSecrets, ServiceSecretsArgs
from infra.components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

TYPE_TOKEN = "adp-identity:service:Service"


@dataclass(frozen=True)
class KeyVaultTarget:
    """The environment's application Key Vault."""

    subscription_id: str
    resource_group_name: str
    vault_name: str
    vault_url: str

    @property
    def vault_id(self) -> str:
        return naming.key_vault_id(self.subscription_id, self.resource_group_name, self.vault_name)


@dataclass
class AppRegistrationSettings:
    display_name: str
    certificate_subject: str
    owners: Sequence[str] = ()
    validity_months: int = 12
    renew_before_days: int = 30


@dataclass
class ServiceArgs:
    identity: WorkloadIdentityArgs
    key_vault: KeyVaultTarget
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    app_registration: AppRegistrationSettings | None = None
    dataverse: Sequence[EnvironmentGrant] = ()  # each grant names its principal


class Service(pulumi.ComponentResource):
    """``adp-identity:service:Service``: one service file's identity and access."""

    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    tenant_id: pulumi.Output[str]
    app_registration_client_id: pulumi.Output[str] | None
    application_user_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        args: ServiceArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        previous_names: Sequence[str] = (),
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, with_previous_names(opts, previous_names))
        service_name = args.identity.service_name
        identity = WorkloadIdentity(f"{name}-identity", args.identity, child_of(self))
        self.identity_name = identity.identity_name
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.tenant_id = identity.tenant_id

        if args.secrets:
            ServiceSecrets(
                f"{name}-secrets",
                ServiceSecretsArgs(
                    service_name=service_name,
                    values=args.secrets,
                    subscription_id=args.key_vault.subscription_id,
                    resource_group_name=args.key_vault.resource_group_name,
                    vault_name=args.key_vault.vault_name,
                    reader_principal_id=identity.principal_id,
                    reader_principal_key=identity.arm_id,
                    tags=naming.resource_tags(service_name, args.identity.team, args.identity.tags),
                ),
                child_of(self),
            )

        self.app_registration_client_id = None
        if args.app_registration is not None:
            settings = args.app_registration
            app = AppRegistration(
                f"{name}-app",
                AppRegistrationArgs(
                    display_name=settings.display_name,
                    owners=list(settings.owners),
                    certificate=CertificateSettings(
                        vault_url=args.key_vault.vault_url,
                        vault_id=args.key_vault.vault_id,
                        certificate_name=adp.certificate_name(service_name),
                        subject=settings.certificate_subject,
                        validity_months=settings.validity_months,
                        renew_before_days=settings.renew_before_days,
                    ),
                    subscription_id=args.key_vault.subscription_id,
                    reader_principal_id=identity.principal_id,
                    reader_principal_key=identity.arm_id,
                ),
                child_of(self),
            )
            self.app_registration_client_id = app.client_id

        self.application_user_ids = pulumi.Output.from_input({})
        if args.dataverse:
            access = DataverseAccess(
                f"{name}-dataverse",
                DataverseAccessArgs(
                    grants=args.dataverse,
                    managed_identity_client_id=identity.client_id,
                    app_registration_client_id=self.app_registration_client_id,
                ),
                child_of(self),
            )
            self.application_user_ids = access.application_user_ids

        self.register_outputs(self.stack_outputs())

    def stack_outputs(self) -> dict[str, pulumi.Input[object]]:
        """What the workload and its reviewers need: the ConfigMap's ids, the app's client id, the users."""
        outputs: dict[str, pulumi.Input[object]] = {
            "identity_name": self.identity_name,
            "client_id": self.client_id,
            "principal_id": self.principal_id,
            "tenant_id": self.tenant_id,
            "dataverse_application_users": self.application_user_ids,
        }
        if self.app_registration_client_id is not None:
            outputs["app_registration_client_id"] = self.app_registration_client_id
        return outputs
