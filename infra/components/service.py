"""Everything one service file declares, composed: identity, secrets, app registration, Dataverse access.

One ``Service`` per ``stacks/<stack>/<service>.yaml``; its children are named ``{name}-identity``,
``{name}-secrets``, ``{name}-app`` and ``{name}-dataverse``, so deleting the file deletes exactly this subtree
and renaming the component (``previous_names``) keeps all of it. The managed identity is the principal of
everything, except the Dataverse environments where the service file names its app registration instead.

Who owns the identity (``workload_identity.owner``): with ``adp-identity`` the service registers its managed
identity, federated credentials and Key Vault secret grants; with ``platform`` ADP's Helm library owns those
(through Azure Service Operator), so the service is given the identity the program looked up
(`PlatformIdentity`) and registers none of them. Its Dataverse users, app registration, Key Vault secrets and
stack outputs are the same either way. Moving between owners deletes nothing: adopted resources carry their
import ids (`ImportIds`), released ones ``retain_on_delete`` (docs/operations.md, "Moving a service between
owners").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pulumi

from adp_identity.desired import naming as adp
from infra import naming
from infra.components._options import child_of, with_previous_names
from infra.components.app_registration import AppRegistration, AppRegistrationArgs, CertificateSettings
from infra.components.dataverse_access import DataverseAccess, DataverseAccessArgs, EnvironmentGrant
from infra.components.key_vault_secrets import ServiceSecrets, ServiceSecretsArgs
from infra.components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from infra.imports import ImportIds

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


@dataclass(frozen=True)
class PlatformIdentity:
    """A managed identity the platform owns (owner: platform), as the program looked it up in Azure."""

    name: str
    arm_id: str
    client_id: str
    principal_id: str
    tenant_id: str


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
    tenant_id: str | None = None  # the stack's Entra tenant: on every application user and certificate
    platform_identity: PlatformIdentity | None = None  # set: the platform owns identity, credentials and grants
    imports: ImportIds | None = None  # what to adopt from the platform (owner moved to adp-identity)
    retain_on_delete: bool = False  # identity, credentials and grants stay in Azure when they leave the stack


class Service(pulumi.ComponentResource):
    """``adp-identity:service:Service``: one service file's identity and access."""

    identity_name: str
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
        tags = naming.resource_tags(service_name, args.identity.team, args.identity.tags)
        imports = args.imports
        reader_principal_id: pulumi.Input[str] | None
        if args.platform_identity is not None:
            platform = args.platform_identity
            self.identity_name = platform.name
            self.client_id = pulumi.Output.from_input(platform.client_id)
            self.principal_id = pulumi.Output.from_input(platform.principal_id)
            self.tenant_id = pulumi.Output.from_input(platform.tenant_id)
            reader_principal_id, reader_key = None, platform.arm_id  # the platform grants access itself
        else:
            identity = WorkloadIdentity(f"{name}-identity", self._identity_args(args), child_of(self))
            self.identity_name = identity.identity_name
            self.client_id = identity.client_id
            self.principal_id = identity.principal_id
            self.tenant_id = identity.tenant_id
            reader_principal_id, reader_key = identity.principal_id, identity.arm_id

        if args.secrets:
            ServiceSecrets(
                f"{name}-secrets",
                ServiceSecretsArgs(
                    service_name=service_name,
                    values=args.secrets,
                    subscription_id=args.key_vault.subscription_id,
                    resource_group_name=args.key_vault.resource_group_name,
                    vault_name=args.key_vault.vault_name,
                    reader_principal_id=reader_principal_id,
                    reader_principal_key=reader_key,
                    tags=tags,
                    reader_imports={g.secret: g for g in imports.secret_grants} if imports else {},
                    retain_readers=args.retain_on_delete,
                ),
                child_of(self),
            )

        self.app_registration_client_id = None
        if args.app_registration is not None:
            settings = args.app_registration
            certificate_name = adp.certificate_name(service_name)
            app = AppRegistration(
                f"{name}-app",
                AppRegistrationArgs(
                    display_name=settings.display_name,
                    owners=list(settings.owners),
                    certificate=CertificateSettings(
                        vault_url=args.key_vault.vault_url,
                        vault_id=args.key_vault.vault_id,
                        certificate_name=certificate_name,
                        subject=settings.certificate_subject,
                        validity_months=settings.validity_months,
                        renew_before_days=settings.renew_before_days,
                        tenant_id=args.tenant_id,
                    ),
                    subscription_id=args.key_vault.subscription_id,
                    reader_principal_id=reader_principal_id,
                    reader_principal_key=reader_key,
                    tags=naming.entra_tags(tags),
                    reader_import=imports.grant(certificate_name) if imports else None,
                    retain_reader=args.retain_on_delete,
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
                    managed_identity_client_id=self.client_id,
                    app_registration_client_id=self.app_registration_client_id,
                    tenant_id=args.tenant_id,
                ),
                child_of(self),
            )
            self.application_user_ids = access.application_user_ids

        self.register_outputs(self.stack_outputs())

    @staticmethod
    def _identity_args(args: ServiceArgs) -> WorkloadIdentityArgs:
        """The identity's arguments with what is adopted (import ids) and what is released (retain) applied."""
        identity, imports = args.identity, args.imports
        if imports is None and not args.retain_on_delete:
            return identity
        subjects = [
            replace(subject, import_id=found.id)
            if imports is not None and (found := imports.credential(subject.issuer, subject.subject)) is not None
            else subject
            for subject in identity.federated_subjects
        ]
        return replace(
            identity,
            federated_subjects=subjects,
            import_id=imports.identity if imports is not None else None,
            retain_on_delete=args.retain_on_delete,
        )

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
