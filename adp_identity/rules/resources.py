"""Resources as a rule sees them: the engine's type token, its name and its inputs, unknowns made explicit.

A rule never imports Pulumi. Both front ends hand it the same plain shape:

- the CrossGuard policy pack (``policies/``) converts pulumi_policy's ``ResourceValidationArgs`` (or a
  ``PolicyResource`` of a stack validation) into a `Resource`;
- tests build `Resource` values directly, shaped as the engine passes them: property names as the provider
  schema spells them (``federatedIdentityCredentialResourceName``, ``secretName``: camelCase for azure-native and
  azuread; the Python keys as written for dynamic resources, e.g. ``environment_url``), numbers as floats
  (``12.0``: every number crosses the gRPC wire as a double), and a value that is not known yet (during
  preview) as `UNKNOWN`.

The engine strips internal keys before a policy pack sees them (``SkipInternalKeys``), so a dynamic resource's
serialized provider (``__provider``) never reaches a rule.

Type tokens below were read from the locked packages (pulumi-azuread 6.11.1, pulumi-azure-native 3.29.0,
pulumi 3.272.0's ``pulumi.dynamic``: ``pulumi-python:dynamic[/<module>]:<Name>``) and are checked against them by
tests/unit/test_rules_tokens.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# azuread
APPLICATION: Final = "azuread:index/application:Application"
APPLICATION_PASSWORD: Final = "azuread:index/applicationPassword:ApplicationPassword"
SERVICE_PRINCIPAL_PASSWORD: Final = "azuread:index/servicePrincipalPassword:ServicePrincipalPassword"
APPLICATION_CERTIFICATE: Final = "azuread:index/applicationCertificate:ApplicationCertificate"
APPLICATION_FEDERATED_CREDENTIAL: Final = (
    "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential"
)
APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL: Final = (
    "azuread:index/applicationFlexibleFederatedIdentityCredential:ApplicationFlexibleFederatedIdentityCredential"
)
# azure-native
USER_ASSIGNED_IDENTITY: Final = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED_IDENTITY_CREDENTIAL: Final = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE_ASSIGNMENT: Final = "azure-native:authorization:RoleAssignment"
KEY_VAULT_SECRET: Final = "azure-native:keyvault:Secret"
# the project's dynamic resources (providers/dataverse/provider.py, providers/keyvault/provider.py), and the token
# of a dynamic resource declared without a module and name, which a program built another way may use
APPLICATION_USER: Final = "pulumi-python:dynamic/dataverse:ApplicationUser"
KEY_VAULT_CERTIFICATE: Final = "pulumi-python:dynamic/keyvault:KeyVaultCertificate"
DYNAMIC_RESOURCE: Final = "pulumi-python:dynamic:Resource"

# Azure resource types the program tags (their Python classes take `tags`; checked by a test). Any other
# azure-native resource that carries `tags` is held to the same tag set.
TAGGABLE: Final = frozenset({USER_ASSIGNED_IDENTITY, KEY_VAULT_SECRET})


class _Unknown:
    """A value the engine does not know yet (preview). Falsy, equal only to itself."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True)
class Resource:
    """One resource as the engine registers it: ``type`` token, Pulumi ``name``, input ``props``.

    ``property_dependencies`` (stack validation only): property name -> URNs of the resources that property's
    value came from. ``urn`` is empty when unknown (resources planned from the desired state).
    """

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)

    @property
    def is_application_user(self) -> bool:
        """The Dataverse application user, by token, or a plain dynamic resource of the same shape."""
        if self.type == APPLICATION_USER:
            return True
        return self.type == DYNAMIC_RESOURCE and {"environment_url", "security_roles"} <= set(self.props)

    @property
    def is_key_vault_certificate(self) -> bool:
        if self.type == KEY_VAULT_CERTIFICATE:
            return True
        return self.type == DYNAMIC_RESOURCE and {"vault_url", "certificate_name"} <= set(self.props)


def is_unknown(value: Any) -> bool:
    """True for `UNKNOWN` anywhere inside `value` (a list or mapping holding an unknown is not known either)."""
    if value is UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(item) for item in value)
    return False


def whole_number(value: Any) -> int | None:
    """``12`` or ``12.0`` -> 12 (numbers cross the wire as doubles); anything else -> None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if int(value) != value:
        return None
    return int(value)
