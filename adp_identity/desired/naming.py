"""ADP names, derived the way DEFRA's platform derives them (docs/reference/adp-conventions.md).

Pure string functions, shared by the loader (to check lengths before anything is deployed) and the Pulumi
program (to name resources), so that both always agree:

- managed identity ``{prefix}-{service}`` lower-cased, prefix = ``lower(resourceNamePrefix + managedIdentityCode)
  + regionId + instance`` (``sndadpinfmi1401``);
- federated identity credentials ``{miName}-fic-{index}`` (0-based, as ADP's helm library ``range $index``),
  subject ``system:serviceaccount:{namespace}:{serviceAccount}`` lower-cased, audience
  ``api://AzureADTokenExchange``;
- Key Vault secrets ``{service}-{name}``, their values in Pulumi config ``secret-{service}-{name}``;
- app registrations ``ADP-<AREA>-<Service>`` (``ffc-pay-batch`` -> ``ADP-FFC-PayBatch``), their certificate
  ``{service}-app-cert`` with subject ``CN=<display name>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
APP_CONFIG_NAMESPACE = "app-config-service"
APP_CONFIG_SERVICE_ACCOUNT = "az-appconfig-k8s-provider"
SECRET_CONFIG_PREFIX = "secret-"

# Azure limits the derived names must respect (Microsoft Learn: "Resource name rules"; "Workload identity
# federation considerations": 3-120 characters for a federated credential name, at most 20 per identity).
MAX_MANAGED_IDENTITY_NAME = 128
MAX_FEDERATED_CREDENTIAL_NAME = 120
MAX_FEDERATED_CREDENTIALS = 20
MAX_KEY_VAULT_SECRET_NAME = 127
MAX_KEY_VAULT_CERTIFICATE_NAME = 127


@dataclass(frozen=True)
class FederatedCredential:
    """One federated identity credential on a service's managed identity."""

    name: str  # {miName}-fic-{index}
    cluster: str  # AKS cluster name (key of the tenant's aks_clusters)
    issuer: str  # that cluster's OIDC issuer URL, verbatim
    subject: str  # system:serviceaccount:{namespace}:{serviceAccount}, lower-cased
    audience: str = FEDERATION_AUDIENCE


@dataclass(frozen=True)
class ServiceAccountRef:
    """A Kubernetes service account to federate, on some clusters (None = every cluster of the stack)."""

    namespace: str
    service_account: str
    clusters: Sequence[str] | None = None


def identity_prefix(resource_name_prefix: str, managed_identity_code: str, region_id: str, instance: str) -> str:
    """``("SNDADPINF", "MI", "14", "01")`` -> ``sndadpinfmi1401`` (ADP's ``teamMIPrefix``)."""
    return f"{resource_name_prefix}{managed_identity_code}{region_id}{instance}".lower()


def managed_identity_name(prefix: str, service: str) -> str:
    """``{prefix}-{service}`` lower-cased, e.g. ``sndadpinfmi1401-ffc-pay-batch``."""
    return f"{prefix}-{service}".lower()


def federated_credential_name(identity_name: str, index: int) -> str:
    return f"{identity_name}-fic-{index}".lower()


def federation_subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}".lower()


def federated_credentials(
    identity_name: str, clusters: Mapping[str, str], accounts: Iterable[ServiceAccountRef]
) -> tuple[FederatedCredential, ...]:
    """The federated credentials of one identity, numbered cluster by cluster in the stack's cluster order.

    Cluster-major numbering keeps ADP's names for a stack's first cluster (``-fic-0`` is the service's own
    account, ``-fic-1`` the App Configuration provider) and appends when a cluster is added at the end.
    """
    refs = list(accounts)
    result: list[FederatedCredential] = []
    for cluster, issuer in clusters.items():
        for ref in refs:
            if ref.clusters is not None and cluster not in ref.clusters:
                continue
            result.append(
                FederatedCredential(
                    name=federated_credential_name(identity_name, len(result)),
                    cluster=cluster,
                    issuer=issuer,
                    subject=federation_subject(ref.namespace, ref.service_account),
                )
            )
    return tuple(result)


def key_vault_secret_name(service: str, name: str) -> str:
    """The Key Vault secret holding a service's secret: ``{service}-{name}``."""
    return f"{service}-{name}"


def secret_config_key(service: str, name: str) -> str:
    """The Pulumi config key (project namespace implied) holding the secret's value: ``secret-{service}-{name}``."""
    return f"{SECRET_CONFIG_PREFIX}{service}-{name}"


def app_registration_display_name(service: str) -> str:
    """ADP style: the first segment is the area in capitals, the rest in PascalCase.

    ``ffc-pay-batch`` -> ``ADP-FFC-PayBatch``; ``ahwr-claims`` -> ``ADP-AHWR-Claims``; ``demo`` -> ``ADP-DEMO``.
    """
    area, *rest = service.split("-")
    name = "".join(part[:1].upper() + part[1:] for part in rest)
    return f"ADP-{area.upper()}-{name}" if name else f"ADP-{area.upper()}"


def certificate_name(service: str) -> str:
    """The Key Vault certificate of a service's app registration: ``{service}-app-cert``."""
    return f"{service}-app-cert"


def certificate_subject(display_name: str) -> str:
    return f"CN={display_name}"
