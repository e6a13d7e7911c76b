"""Azure ids, role assignment names and tags of the resources the program creates (no Pulumi import).

ADP's names (managed identity, federated credentials, secrets, certificates, display names) come from
``adp_identity.desired.naming``, the module the loader also uses to check them, so the loader and the program can
never disagree. This module adds what only the program needs: ARM ids and scopes, built-in role ids, and role
assignment names that are GUIDs derived from what they grant (scope, role, principal) — never random — so the
same desired state always gives the same names and a preview that changes nothing stays empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

# Built-in role ids are the same in every tenant (Microsoft Learn, "Azure built-in roles").
KEY_VAULT_SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"
# ADP's tags (the keys every taggable resource carries; a policy rule checks them). ManagedBy and Restriction are
# the pair ADP's Helm library puts on what Azure Service Operator manages (DEFRA/adp-aso-helm-library
# templates/_helpers.tpl "adp-aso-helm-library.commonTags": ManagedBy: AzureServiceOperator, Restriction: AUTOMATED
# CHANGES ONLY); ServiceCode and ServiceName are the platform's default tags (DEFRA/adp-infrastructure-core
# infra/common/default-tags.json: ServiceName/ServiceCode "ADP"), ServiceName being the service here as in the
# Helm library's commonTags.serviceName. Team names the owning team (the service file's `team`).
DEFAULT_TAGS: Mapping[str, str] = {
    "ManagedBy": "adp-identity",
    "Restriction": "AUTOMATED CHANGES ONLY",
    "ServiceCode": "ADP",
}
REQUIRED_TAG_KEYS: tuple[str, ...] = ("ManagedBy", "Restriction", "ServiceCode", "ServiceName", "Team")

# uuid5 namespace of role assignment names: fixed forever, or every assignment would be replaced.
_ROLE_ASSIGNMENT_NAMESPACE = uuid.UUID("5d0c3a51-7f0e-4c1b-9a52-6a1f0d7e2b44")


def key_vault_id(subscription_id: str, resource_group: str, vault_name: str) -> str:
    """The ARM id of a Key Vault: the prefix of every per-secret scope."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.KeyVault/vaults/{vault_name}"
    )


def key_vault_secret_scope(vault_id: str, name: str) -> str:
    """The ARM scope of one secret (a certificate's secret carries the certificate's name)."""
    return f"{vault_id}/secrets/{name}"


def managed_identity_id(subscription_id: str, resource_group: str, identity_name: str) -> str:
    """The ARM id of a user-assigned identity: known before creation, so usable as a principal key."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity_name}"
    )


def role_definition_id(subscription_id: str, role_id: str) -> str:
    """A built-in role's definition id as ARM role assignments take it."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"


def role_assignment_name(scope: str, role_definition: str, principal_key: str) -> str:
    """A GUID fixed by (scope, role, principal): the same grant always has the same name.

    ``principal_key`` is a stable text naming the principal, such as the identity's ARM id: the principal's
    object id is only known after creation, so a name derived from it would be unknown during preview.
    Case-insensitive, as ARM compares ids.
    """
    key = "|".join(part.lower() for part in (scope, role_definition, principal_key))
    return str(uuid.uuid5(_ROLE_ASSIGNMENT_NAMESPACE, key))


def resource_tags(service: str, team: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tags of a service's Azure resources: the tenant's tags, then ServiceName and Team.

    Every key of `REQUIRED_TAG_KEYS` is always present (the tenant may set the values of the defaults, not remove
    them).
    """
    return {**DEFAULT_TAGS, **(base or {}), "ServiceName": service, "Team": team}


def entra_tags(tags: Mapping[str, str]) -> list[str]:
    """The same tags for an Entra application or service principal, which take a list of strings: ``Key:Value``.

    Microsoft Graph ``application.tags``: "custom strings that can be used to categorize and identify the
    application"; sorted, so the list is the same on every run.
    """
    return [f"{key}:{value}" for key, value in sorted(tags.items())]
