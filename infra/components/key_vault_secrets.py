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

TYPE_TOKEN = "adp-identity:keyvault:ServiceSecrets"


@dataclass
class ServiceSecretsArgs:
    service_name: str
    values: Mapping[str, pulumi.Input[str]]  # declared name -> value (from secret config)
    subscription_id: str
    resource_group_name: str  # the vault's resource group
    vault_name: str
    reader_principal_id: pulumi.Input[str]
    reader_principal_key: str  # a stable name of the reader (its ARM id), for the role assignment's GUID
    tags: Mapping[str, str] = field(default_factory=dict)


def secret_reader(
    resource_name: str,
    *,
    subscription_id: str,
    vault_id: str,
    secret_name: str,
    principal_id: pulumi.Input[str],
    principal_key: str,
    opts: pulumi.ResourceOptions,
) -> authorization.RoleAssignment:
    """ "Key Vault Secrets User" for one identity on ONE secret (per-secret RBAC), with a deterministic name."""
    scope = naming.key_vault_secret_scope(vault_id, secret_name)
    role = naming.role_definition_id(subscription_id, naming.KEY_VAULT_SECRETS_USER_ROLE)
    return authorization.RoleAssignment(
        resource_name,
        role_assignment_name=naming.role_assignment_name(scope, role, principal_key),
        scope=scope,
        role_definition_id=role,
        principal_id=principal_id,
        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
        opts=opts,
    )


class ServiceSecrets(pulumi.ComponentResource):
    """``adp-identity:keyvault:ServiceSecrets``: children ``{name}-{secret}`` and ``{name}-{secret}-reader``."""

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
            secret_reader(
                f"{name}-{declared}-reader",
                subscription_id=args.subscription_id,
                vault_id=vault_id,
                secret_name=secret_name,
                principal_id=args.reader_principal_id,
                principal_key=args.reader_principal_key,
                opts=child_of(self, secret),
            )
            self.secret_names.append(secret_name)
        self.register_outputs({"secret_names": self.secret_names})
