"""A service's Key Vault secrets, each readable by the service's identity alone.

Values come from the stack's secret config and stay secrets end to end: the component wraps every value in
``Output.secret`` itself, so even a caller passing a plain string cannot put it into state in clear. Access is
granted per secret ("Key Vault Secrets User" scoped to ``<vault>/secrets/<name>``), as ADP does, never on the
whole vault. Role assignment names are GUIDs derived from scope, role and principal, so preview is stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import authorization, keyvault

from adp_identity.desired import naming as adp
from infra import naming
from infra.components._options import child_of, with_previous_names
from infra.imports import ImportedGrant

TYPE_TOKEN = "adp-identity:keyvault:ServiceSecrets"


@dataclass
class ServiceSecretsArgs:
    service_name: str
    values: Mapping[str, pulumi.Input[str]]  # declared name -> value (from secret config)
    subscription_id: str
    resource_group_name: str  # the vault's resource group
    vault_name: str
    # the service's identity; None when the platform owns the identity and so its grants (owner: platform)
    reader_principal_id: pulumi.Input[str] | None
    reader_principal_key: str  # a stable name of the reader (its ARM id), for the role assignment's GUID
    tags: Mapping[str, str] = field(default_factory=dict)
    reader_imports: Mapping[str, ImportedGrant] = field(default_factory=dict)  # Key Vault secret name -> grant
    retain_readers: bool = False  # keep the grants in Azure when they leave the stack (moving to the platform)


def secret_reader(
    resource_name: str,
    *,
    subscription_id: str,
    vault_id: str,
    secret_name: str,
    principal_id: pulumi.Input[str],
    principal_key: str,
    opts: pulumi.ResourceOptions,
    imported: ImportedGrant | None = None,
    retain_on_delete: bool = False,
) -> authorization.RoleAssignment:
    """ "Key Vault Secrets User" for one identity on ONE secret (per-secret RBAC), with a deterministic name.

    ``imported``: the grant exists already (the platform made it): adopt it with its own name and scope as Azure
    holds them, since Azure refuses a second assignment of one role to one principal on one scope
    (``RoleAssignmentExists``) and a role assignment cannot be renamed.
    """
    scope = naming.key_vault_secret_scope(vault_id, secret_name)
    role = naming.role_definition_id(subscription_id, naming.KEY_VAULT_SECRETS_USER_ROLE)
    name = naming.role_assignment_name(scope, role, principal_key)
    if imported is not None:
        scope, name = imported.scope, imported.name
    options = pulumi.ResourceOptions(
        import_=imported.id if imported is not None else None,
        retain_on_delete=True if retain_on_delete else None,
    )
    return authorization.RoleAssignment(
        resource_name,
        role_assignment_name=name,
        scope=scope,
        role_definition_id=role,
        principal_id=principal_id,
        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
        opts=pulumi.ResourceOptions.merge(opts, options),
    )


class ServiceSecrets(pulumi.ComponentResource):
    """``adp-identity:keyvault:ServiceSecrets``: children ``{name}-{secret}`` and ``{name}-{secret}-reader``.

    Without a reader (the platform owns the identity and grants access itself) only the secrets are registered.
    """

    secret_names: list[str]

    def __init__(
        self,
        name: str,
        args: ServiceSecretsArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        previous_names: Sequence[str] = (),
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, with_previous_names(opts, previous_names))
        vault_id = naming.key_vault_id(args.subscription_id, args.resource_group_name, args.vault_name)
        self.secret_names = []
        for declared, value in args.values.items():
            secret_name = adp.key_vault_secret_name(args.service_name, declared)
            secret = keyvault.Secret(
                f"{name}-{declared}",
                secret_name=secret_name,
                vault_name=args.vault_name,
                resource_group_name=args.resource_group_name,
                properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value)),
                tags=dict(args.tags) or None,
                opts=child_of(self),
            )
            if args.reader_principal_id is not None:
                secret_reader(
                    f"{name}-{declared}-reader",
                    subscription_id=args.subscription_id,
                    vault_id=vault_id,
                    secret_name=secret_name,
                    principal_id=args.reader_principal_id,
                    principal_key=args.reader_principal_key,
                    opts=child_of(self, secret),
                    imported=args.reader_imports.get(secret_name),
                    retain_on_delete=args.retain_readers,
                )
            self.secret_names.append(secret_name)
        self.register_outputs({"secret_names": self.secret_names})
