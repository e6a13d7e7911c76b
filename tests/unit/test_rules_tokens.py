"""The type tokens and property names the rules read are the ones the locked packages really use.

Read from pulumi-azuread, pulumi-azure-native and pulumi's dynamic provider as installed from requirements.lock
(not from memory): each resource class registers exactly the token a rule matches, each property a rule reads is
a Pulumi property name of that resource (``pulumi.getter(name=...)``), and the types the tag rule calls taggable
are the ones whose resource takes ``tags``. tests/unit/test_policy_pack_program.py sees the same names on what
the real program registers.
"""

from __future__ import annotations

import inspect
from typing import Any

import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.keyvault as keyvault
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_azuread as azuread
import pytest
from pulumi.dynamic import Resource as DynamicResource

from adp_identity.rules import resources as t
from providers.dataverse.provider import INPUT_KEYS as USER_INPUTS
from providers.dataverse.provider import ApplicationUser
from providers.keyvault.provider import INPUT_KEYS as CERTIFICATE_INPUTS
from providers.keyvault.provider import KeyVaultCertificate

CLASSES: dict[str, Any] = {
    t.APPLICATION: azuread.Application,
    t.APPLICATION_PASSWORD: azuread.ApplicationPassword,
    t.SERVICE_PRINCIPAL_PASSWORD: azuread.ServicePrincipalPassword,
    t.APPLICATION_CERTIFICATE: azuread.ApplicationCertificate,
    t.APPLICATION_FEDERATED_CREDENTIAL: azuread.ApplicationFederatedIdentityCredential,
    t.APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL: azuread.ApplicationFlexibleFederatedIdentityCredential,
    t.USER_ASSIGNED_IDENTITY: managedidentity.UserAssignedIdentity,
    t.FEDERATED_IDENTITY_CREDENTIAL: managedidentity.FederatedIdentityCredential,
    t.ROLE_ASSIGNMENT: authorization.RoleAssignment,
    t.KEY_VAULT_SECRET: keyvault.Secret,
}
# property a rule reads -> (token, Pulumi property name)
READ: list[tuple[str, str]] = [
    (t.APPLICATION, "password"),
    (t.APPLICATION, "clientId"),
    (t.APPLICATION_CERTIFICATE, "startDate"),
    (t.APPLICATION_CERTIFICATE, "endDate"),
    (t.APPLICATION_CERTIFICATE, "endDateRelative"),
    (t.APPLICATION_FEDERATED_CREDENTIAL, "subject"),
    (t.APPLICATION_FEDERATED_CREDENTIAL, "issuer"),
    (t.APPLICATION_FEDERATED_CREDENTIAL, "audiences"),
    (t.USER_ASSIGNED_IDENTITY, "clientId"),
    (t.USER_ASSIGNED_IDENTITY, "tags"),
    (t.FEDERATED_IDENTITY_CREDENTIAL, "subject"),
    (t.FEDERATED_IDENTITY_CREDENTIAL, "issuer"),
    (t.FEDERATED_IDENTITY_CREDENTIAL, "audiences"),
    (t.ROLE_ASSIGNMENT, "scope"),
    (t.KEY_VAULT_SECRET, "secretName"),
    (t.KEY_VAULT_SECRET, "properties"),
    (t.KEY_VAULT_SECRET, "tags"),
]


def pulumi_names(cls: type) -> set[str]:
    """The Pulumi property names a resource class or its Args class declares (``pulumi.getter(name=...)``)."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        for value in vars(klass).values():
            getter = getattr(value, "fget", None)
            name = getattr(getter, "_pulumi_name", None)
            if isinstance(name, str):
                names.add(name)
    return names


@pytest.mark.parametrize(("token", "cls"), CLASSES.items(), ids=list(CLASSES))
def test_each_resource_class_registers_the_token_a_rule_matches(token: str, cls: type) -> None:
    source = inspect.getsource(cls.__init__) + inspect.getsource(cls)
    assert f"'{token}'" in source


@pytest.mark.parametrize(("token", "name"), READ, ids=[f"{token.rsplit(':', 1)[1]}.{name}" for token, name in READ])
def test_each_property_a_rule_reads_is_a_property_of_that_resource(token: str, name: str) -> None:
    cls = CLASSES[token]
    args = getattr(inspect.getmodule(cls), f"{cls.__name__}Args", None)
    declared = pulumi_names(cls) | (pulumi_names(args) if args is not None else set())
    assert name in declared


def test_the_secret_value_sits_in_properties_value() -> None:
    assert "value" in pulumi_names(keyvault.SecretPropertiesArgs)


def test_taggable_types_are_the_resources_that_take_tags() -> None:
    for token, cls in CLASSES.items():
        if not token.startswith("azure-native:"):
            continue
        takes_tags = "tags" in inspect.signature(cls._internal_init).parameters  # type: ignore[attr-defined]
        assert takes_tags == (token in t.TAGGABLE), token


def test_dynamic_resource_tokens_follow_pulumis_dynamic_provider() -> None:
    assert f"pulumi-python:{ApplicationUser._resource_type_name}" == t.APPLICATION_USER
    assert f"pulumi-python:{KeyVaultCertificate._resource_type_name}" == t.KEY_VAULT_CERTIFICATE

    class Plain(DynamicResource):  # a dynamic resource declared without module and name
        pass

    assert f"pulumi-python:{Plain._resource_type_name}" == t.DYNAMIC_RESOURCE
    # the inputs the rules read are the providers' own input keys
    assert {"environment_url", "application_id", "security_roles", "tenant_id"} <= set(USER_INPUTS)
    assert {"vault_url", "certificate_name", "validity_months", "renew_before_days"} <= set(CERTIFICATE_INPUTS)
