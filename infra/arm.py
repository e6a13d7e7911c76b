"""Read, from Azure Resource Manager, what the platform made for a service: the import ids (no Pulumi import).

``adp-identity import-ids`` runs this before a service moves from ``owner: platform`` to ``adp-identity``. Three
kinds of read-only requests (the ``Reader`` role on the resource group and the vault is enough):

- the user-assigned identity by ADP's name (``GET .../userAssignedIdentities/{name}``, api-version 2023-01-31);
- its federated identity credentials (``GET .../federatedIdentityCredentials``, paged by ``nextLink``);
- per Key Vault secret the service uses, the role assignments of that principal there (``GET
  {secret scope}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{id}'``, api-version
  2022-04-01, Microsoft Learn "Role Assignments - List For Scope"), kept when exactly at that scope and of
  "Key Vault Secrets User".

Each declared federated credential is matched by (issuer, subject), never by name: ADP's Helm library numbers
its credentials per cluster (``{mi}-fic-{index}`` in each Helm release, DEFRA/adp-aso-helm-library
templates/_federated-credential.yaml), so its names need not be the stack's. A role assignment's name is a UUID
Azure Service Operator derives from its Kubernetes object (``{mi}-{secret}-keyvaultsecretuser-rbac-{index}`` in
the ``flux-config`` namespace, owner ARM id the secret's scope: templates/_role-assignment-managed.yaml; ASO
``randextensions.MakeUUIDName``), so it is read, never computed. Requests go through azure-core's pipeline:
bounded retries with back-off that honour ``Retry-After``; tokens come from the project's token cache, and a
credential that fails is one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from azure.core import PipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy, UserAgentPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from adp_identity.desired.errors import one_line
from adp_identity.desired.schema import DesiredState
from infra import naming
from infra.imports import ImportedCredential, ImportedGrant, ImportIds, declared_targets
from providers._identity import CredentialFailed, TokenCredential, bearer_token

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = f"{ARM_ENDPOINT}/.default"
IDENTITY_API = "2023-01-31"
ROLE_ASSIGNMENT_API = "2022-04-01"
MAX_PAGES = 20  # of one listing (an identity holds at most 20 federated credentials; a secret a few grants)
RETRIES = 3


class ArmError(Exception):
    """A read that failed: one line naming what was read and what ARM (or the credential) answered."""


class _Token(SansIOHTTPPolicy[Any, Any]):
    """``Authorization: Bearer`` from the project's token cache (``providers._identity``), refreshed on 401."""

    def __init__(self, credential: TokenCredential | None) -> None:
        self._credential = credential

    def on_request(self, request: PipelineRequest[Any]) -> None:
        try:
            token = bearer_token(self._credential, ARM_SCOPE)
        except CredentialFailed as failed:
            raise ArmError(f"could not get a token for {ARM_SCOPE}: {one_line(failed.detail)[:300]}") from None
        request.http_request.headers["Authorization"] = f"Bearer {token}"


class ArmReader:
    """GETs against Azure Resource Manager; ``transport`` is for tests (a strict fake), the default is requests."""

    def __init__(
        self,
        credential: TokenCredential | None = None,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        backoff: float = 0.8,
    ) -> None:
        """``backoff``: seconds before the first retry, doubling after (a ``Retry-After`` answer wins)."""
        policies: list[Any] = [
            UserAgentPolicy(sdk_moniker="adp-identity"),
            RetryPolicy(retry_total=RETRIES, retry_backoff_factor=backoff, retry_backoff_max=30),
            _Token(credential),
        ]
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            ARM_ENDPOINT, policies=policies, transport=transport
        )

    def get(self, path: str, api_version: str, what: str) -> dict[str, Any] | None:
        """The resource at ``path``; ``None`` when ARM answers 404."""
        response = self._send(f"{ARM_ENDPOINT}{quote(path, safe='/')}?api-version={api_version}", what)
        if response.status_code == 404:
            return None
        return self._json(response, what)

    def list(self, path: str, api_version: str, what: str, query: str = "") -> list[dict[str, Any]]:
        """Every item of a listing (``value``), following ``nextLink`` at most `MAX_PAGES` times."""
        url: str | None = f"{ARM_ENDPOINT}{quote(path, safe='/')}?api-version={api_version}{query}"
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            response = self._send(url, what)
            if response.status_code == 404:
                return items
            body = self._json(response, what)
            value = body.get("value", [])
            if not isinstance(value, list):
                raise ArmError(f"{what}: ARM answered a listing without a list")
            items.extend(item for item in value if isinstance(item, dict))
            link = body.get("nextLink")
            url = link if isinstance(link, str) and link.startswith(f"{ARM_ENDPOINT}/") else None
        raise ArmError(f"{what}: more than {MAX_PAGES} pages")

    def _send(self, url: str, what: str) -> HttpResponse:
        try:
            response = self._client.send_request(HttpRequest("GET", url, headers={"Accept": "application/json"}))
        except AzureError as exc:
            raise ArmError(f"{what}: {type(exc).__name__}: {one_line(str(exc))[:300]}") from None
        if response.status_code not in (200, 404):
            raise ArmError(f"{what}: ARM answered {response.status_code} {_arm_error(response)}")
        return response

    @staticmethod
    def _json(response: HttpResponse, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ArmError(f"{what}: ARM answered without a JSON body") from None
        if not isinstance(body, dict):
            raise ArmError(f"{what}: ARM answered {type(body).__name__}, not an object")
        return body


def _arm_error(response: HttpResponse) -> str:
    """ARM's error code and the first line of its message (never headers, never a token)."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    return one_line(f"{error.get('code', '')}: {error.get('message', '')}")[:300]


# -- what exists -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What Azure holds for a service, matched to what it declares."""

    ids: ImportIds
    missing_credentials: tuple[str, ...] = ()  # declared, not in Azure: the first deploy creates them (names)
    missing_grants: tuple[str, ...] = ()  # secrets with no grant in Azure: created
    undeclared_credentials: tuple[str, ...] = ()  # in Azure, not declared: refuse (the import would hide them)


class IdentityNotFound(Exception):
    """The identity does not exist in Azure: nothing to import (owner adp-identity simply creates it)."""


def find_import_ids(desired: DesiredState, service: str, reader: ArmReader) -> Found:
    """Read what exists for ``service`` and match it to its declaration (see the module docstring)."""
    tenant = desired.tenant
    targets = declared_targets(desired, service)
    identity_id: str = targets["identity_id"]
    name = desired.identity_name(service)
    identity = reader.get(identity_id, IDENTITY_API, f"managed identity {name}")
    if identity is None:
        raise IdentityNotFound(
            f"managed identity {name} was not found in resource group {tenant.resource_group} (subscription "
            f"{tenant.subscription_id}): nothing to import; with owner: adp-identity the first deploy creates it"
        )
    actual_id = str(identity.get("id") or identity_id)
    principal = str((identity.get("properties") or {}).get("principalId") or "")
    if not principal:
        raise ArmError(f"managed identity {name}: ARM answered without properties.principalId")

    declared: Sequence[tuple[str, str, str]] = targets["credentials"]
    azure_credentials = reader.list(
        f"{identity_id}/federatedIdentityCredentials", IDENTITY_API, f"federated credentials of {name}"
    )
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for credential in azure_credentials:
        properties = credential.get("properties") or {}
        by_pair[(str(properties.get("issuer", "")), str(properties.get("subject", "")).lower())] = credential
    adopted: list[ImportedCredential] = []
    missing: list[str] = []
    for issuer, subject, credential_name in declared:
        found = by_pair.pop((issuer, subject.lower()), None)
        if found is None:
            missing.append(credential_name)
        else:
            adopted.append(ImportedCredential(issuer, subject.lower(), str(found["id"])))
    undeclared = tuple(
        f"{credential.get('name')} (issuer {issuer}, subject {subject})"
        for (issuer, subject), credential in by_pair.items()
    )

    scopes: Mapping[str, str] = targets["secret_scopes"]
    grants: list[ImportedGrant] = []
    missing_grants: list[str] = []
    for secret, scope in scopes.items():
        assignments = reader.list(
            f"{scope}/providers/Microsoft.Authorization/roleAssignments",
            ROLE_ASSIGNMENT_API,
            f"role assignments on secret {secret}",
            query="&$filter=" + quote(f"principalId eq '{principal}'", safe="'"),
        )
        matching = list(_at_scope(assignments, scope))
        if matching:
            grants.append(ImportedGrant(secret, str(matching[0]["id"])))
        else:
            missing_grants.append(secret)
    ids = ImportIds(service, actual_id, tuple(adopted), tuple(grants))
    return Found(ids, tuple(missing), tuple(missing_grants), undeclared)


def _at_scope(assignments: Sequence[Mapping[str, Any]], scope: str) -> Iterator[Mapping[str, Any]]:
    """The "Key Vault Secrets User" assignments exactly at ``scope`` (the listing includes inherited ones)."""
    role = f"/{naming.KEY_VAULT_SECRETS_USER_ROLE}"
    for assignment in assignments:
        properties = assignment.get("properties") or {}
        if (
            str(properties.get("scope", "")).lower() == scope.lower()
            and str(properties.get("roleDefinitionId", "")).lower().endswith(role)
            and isinstance(assignment.get("id"), str)
        ):
            yield assignment
