"""Key Vault certificates for the provider, through ``azure-keyvault-certificates`` (ADR 7).

``KeyVaultCertificatesClient`` is a thin face over the SDK's ``CertificateClient``: it validates names, binds the
vault URL (``_transport.bind_vault``), runs every SDK call under one ``CallMeter`` (deadline, requests, waits),
translates what comes back into ``models`` values, and what is raised into ``errors`` through
``errors.error_from_sdk`` - the one mapping. It never fetches a secret: the private key of a certificate stays
in Key Vault, and only certificate metadata and the public ``cer`` pass through here. No Pulumi import.

Behaviour:
- Token (``providers/_identity.py``, shared with the Dataverse client): ``DefaultAzureCredential`` built lazily,
  once per process and ``AZURE_*`` identity, when no credential is handed in (ADR 6). One token per (identity,
  scope) per process, shared by every client and thread; it is fetched before a call's first request, so a
  credential that fails costs the vault no request. Key Vault's challenge (a first request without a token, a
  401 naming the tenant) is the SDK's; a 401 to a token drops it and sends once more with a fresh one.
- Throttling and outages: azure-core's ``RetryPolicy`` (``_transport.VaultRetryPolicy``): ``Retry-After``
  honoured (at most 60 s), else 1, 2, 4, 8 s; at most 5 requests; a POST is resent only after 429/503.
- Create is the SDK's long-running operation (``begin_create_certificate``), paced and bounded by the
  transport. When the create request's answer is lost, it looks before creating again, so one call makes one
  version. An earlier create still in progress is waited for first (the SDK cannot resume one it did not start).
- Every paged read stops at ``Limits.max_pages`` and at a ``nextLink`` seen before; a ``nextLink`` to another
  host is refused (the token goes to the vault only).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RedirectPolicy
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.certificates import CertificateOperation as SdkOperation
from azure.keyvault.certificates import KeyVaultCertificate as SdkCertificate

from providers._identity import CredentialFailed, TokenCredential, WrongTenant, bearer_token, check_tenant
from providers.keyvault._transport import (
    CALL_OPTION,
    SCOPE,
    CallMeter,
    Limits,
    ReplaceRefusedToken,
    SharedTokenCredential,
    VaultRetryPolicy,
    VaultTransport,
    bind_vault,
    same_origin,
    vault_name,
    vault_origin,
)
from providers.keyvault.errors import (
    ConnectionFailed,
    EndlessPaging,
    InvalidName,
    KeyVaultError,
    MalformedResponse,
    OperationFailed,
    OperationTimedOut,
    ServerError,
    TenantMismatch,
    Unauthorized,
    UntrustedOrigin,
    error_from_sdk,
)
from providers.keyvault.models import CertificateOperation, CertificatePolicy, CertificateVersion

__all__ = ["API_VERSION", "SCOPE", "KeyVaultCertificatesClient", "Limits", "check_name", "vault_origin"]

# The SDK logs a traceback (WARNING) when an error answer has no JSON body (a gateway's HTML 502, an empty 307),
# then carries on: the error still reaches errors.error_from_sdk. In the provider host that traceback would land in
# Pulumi's diagnostics as noise; the one-line error says what happened.
logging.getLogger("azure.keyvault.certificates._generated._utils").setLevel(logging.ERROR)

API_VERSION = "7.5"  # pinned: the version the emulator mirrors (learn.microsoft.com/rest/api/keyvault/certificates)
NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")  # Key Vault's rule for object names
VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")  # Key Vault versions are 32 hex digits; nothing else is a path segment
T = TypeVar("T")
Options = dict[str, Any]


class _Where(TypedDict):
    vault: str
    method: str
    url: str


def check_name(name: object, *, vault: str, what: str = "certificate name") -> str:
    """``InvalidName`` (before any request) unless ``name`` is a name Key Vault could have made."""
    pattern = NAME if what == "certificate name" else VERSION
    if not isinstance(name, str) or not pattern.match(name):
        allowed = "1-127 letters, digits or '-'" if pattern is NAME else "letters and digits"
        raise InvalidName(f"{what} {name!r} is not {allowed}; refusing to send it", vault=vault)
    return name


class KeyVaultCertificatesClient:
    """Certificates of one vault. Thread-safe: the SDK client and the token cache are shared by threads."""

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential | None = None,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limits: Limits | None = None,
    ) -> None:
        limits = limits or Limits()
        try:
            self.vault_url, loopback = bind_vault(vault_url)
        except ValueError as refused:
            netloc = urlsplit(vault_url.strip()).netloc or vault_url
            raise UntrustedOrigin(f"vault URL {refused}", vault=netloc) from None
        self.vault = vault_name(self.vault_url)
        self.limits = limits
        self._credential = credential
        self._transport = VaultTransport(self.vault_url, self.vault, limits, session=session, sleep=sleep)
        self._sdk = CertificateClient(
            self.vault_url,
            SharedTokenCredential(credential),
            api_version=API_VERSION,
            transport=self._transport,
            retry_policy=VaultRetryPolicy(limits),
            redirect_policy=RedirectPolicy(permit_redirects=False),
            per_retry_policies=[ReplaceRefusedToken(credential)],
            verify_challenge_resource=not loopback,  # off only for an allowed loopback vault (the emulator)
        )

    # -- tenant isolation (contract tenant_id) --------------------------------------------------------------
    def check_tenant(self, tenant_id: str | None) -> None:
        """``TenantMismatch`` (one line, both tenants) unless the credential signs in to ``tenant_id``; no request."""
        try:
            check_tenant(self._credential, SCOPE, tenant_id, f"Key Vault {self.vault}")
        except WrongTenant as wrong:
            raise TenantMismatch(str(wrong), vault=self.vault) from None
        except CredentialFailed as failed:
            raise self._unauthorized(failed) from None

    # -- certificates ---------------------------------------------------------------------------------------
    def get_certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        """The latest version (``version=None``) or a given one; ``CertificateNotFound`` when absent."""
        check_name(name, vault=self.vault)
        if version is None:
            return self._call(
                "GET", f"/certificates/{name}", lambda o: _version(self._sdk.get_certificate(name, **o)), name
            )
        check_name(version, vault=self.vault, what="certificate version")
        return self._call(
            "GET",
            f"/certificates/{name}/{version}",
            lambda o: _version(self._sdk.get_certificate_version(name, version, **o)),
            name,
        )

    def list_versions(self, name: str, *, page_size: int = 25) -> list[CertificateVersion]:
        """Every version (metadata only, no ``cer``); empty when the name is unknown. Pages are bounded."""
        check_name(name, vault=self.vault)
        path = f"/certificates/{name}/versions"

        def listing(response: PipelineResponse[Any, Any]) -> None:
            """Each page must be Key Vault's shape; the SDK would read ``{}`` or ``{"value": 3}`` as no versions."""
            if response.http_response.status_code != 200:
                return
            try:
                page = response.http_response.json()
            except ValueError:
                return  # not JSON: ContentDecodePolicy raises DecodeError, mapped to MalformedResponse
            link = page.get("nextLink") if isinstance(page, dict) else None
            if (
                not isinstance(page, dict)
                or not isinstance(page.get("value"), list)
                or not isinstance(link, str | None)
            ):
                raise MalformedResponse("the answer is not a page of versions", **self._where("GET", path))

        def pages(options: Options) -> list[CertificateVersion]:
            pager = self._sdk.list_properties_of_certificate_versions(
                name, max_page_size=page_size, raw_response_hook=listing, **options
            )
            by_page = pager.by_page()
            versions: list[CertificateVersion] = []
            seen: set[str] = set()
            for number, page in enumerate(by_page, start=1):
                versions.extend(CertificateVersion.from_properties(item) for item in page)
                link = getattr(by_page, "continuation_token", None)  # the nextLink of the page just read
                if not link:
                    return versions
                self._same_vault(str(link))
                if link in seen:
                    raise EndlessPaging("the nextLink repeats an earlier page; refused", **self._where("GET", path))
                if number >= self.limits.max_pages:
                    limit = f"more than {self.limits.max_pages} pages of versions; refused"
                    raise EndlessPaging(limit, **self._where("GET", path))
                seen.add(str(link))
            return versions

        return self._call("GET", path, pages, name)

    def set_enabled(self, name: str, version: str, enabled: bool) -> CertificateVersion:
        check_name(name, vault=self.vault)
        check_name(version, vault=self.vault, what="certificate version")
        return self._call(
            "PATCH",
            f"/certificates/{name}/{version}",
            lambda o: _version(self._sdk.update_certificate_properties(name, version, enabled=enabled, **o)),
            name,
        )

    # -- create (long-running) ------------------------------------------------------------------------------
    def get_operation(self, name: str) -> CertificateOperation | None:
        """The certificate's last create operation, or None when it has none (or does not exist)."""
        check_name(name, vault=self.vault)
        return self._call("GET", f"/certificates/{name}/pending", lambda o: self._operation(name, o), name)

    def wait_for_operation(self, name: str) -> CertificateOperation | None:
        """Wait for a create still in progress (one this process did not start); ``OperationFailed`` if it fails.

        The SDK's poller cannot resume such an operation, so this polls ``get_certificate_operation`` with the
        same pacing and wait budget as the SDK's poller gets from the transport (``CallMeter.pause``).
        """
        check_name(name, vault=self.vault)

        def wait(options: Options) -> CertificateOperation | None:
            op = self._operation(name, options)
            if op is None or not op.in_progress:
                return op  # nothing to wait for (an old failure is no reason to stop a new create)
            for _ in range(self.limits.max_polls):
                self._transport.sleep(self.limits.poll_interval)  # raises OperationTimedOut when the budget is spent
                op = self._operation(name, options)
                if op is None or not op.in_progress:
                    break
            if op is not None and op.in_progress:
                raise self._still_running(name)
            if op is not None and not op.completed:
                raise OperationFailed(
                    f"creating a version of certificate {name} ended {op.failure()}",
                    vault=self.vault,
                    code=op.error_code,
                )
            return op

        return self._call("GET", f"/certificates/{name}/pending", wait, name, seconds=self._create_seconds)

    def create_version(self, name: str, policy: CertificatePolicy) -> CertificateVersion:
        """Create one new version, wait for it, and return it (with its ``cer``).

        A create whose answer was lost may still have been accepted: before sending it again, the pending
        operation and the versions are checked, so a lost answer never yields two versions.
        """
        self.wait_for_operation(name)  # an earlier create still in progress would answer 409
        known = {v.version for v in self.list_versions(name)}
        try:
            created = self._create(name, policy)
        except (ConnectionFailed, ServerError):
            if self._create_was_accepted(name, known):
                self.wait_for_operation(name)
                created = None
            else:
                created = self._create(name, policy)
        latest = created or self.get_certificate(name)
        if latest.version in known or not latest.issued:
            raise KeyVaultError(
                f"the create operation of certificate {name} completed but no new version is the latest",
                vault=self.vault,
            )
        return latest

    def _create(self, name: str, policy: CertificatePolicy) -> CertificateVersion | None:
        """POST create, then the SDK's poller to completion; the new latest version (None: ask the vault)."""

        def run(options: Options) -> CertificateVersion | None:
            poller = self._sdk.begin_create_certificate(name, policy.to_sdk(), **options)
            result = poller.result(timeout=self._create_seconds)  # the poller's own budget ends it sooner
            if not poller.done():
                raise self._still_running(name)
            if isinstance(result, SdkOperation):
                op = CertificateOperation.from_sdk(name, result)
                raise OperationFailed(
                    f"creating a version of certificate {name} ended {op.failure()}",
                    vault=self.vault,
                    code=op.error_code,
                )
            return _version(result) if result is not None else None

        return self._call("POST", f"/certificates/{name}/create", run, name, seconds=self._create_seconds)

    def _create_was_accepted(self, name: str, known: set[str]) -> bool:
        op = self.get_operation(name)
        if op is not None and op.in_progress:
            return True
        return any(v.version not in known for v in self.list_versions(name))

    @property
    def _create_seconds(self) -> float:
        return self.limits.max_operation_wait + self.limits.call_timeout

    def _operation(self, name: str, options: Options) -> CertificateOperation | None:
        try:
            op = self._sdk.get_certificate_operation(name, **options)
        except ResourceNotFoundError:
            return None
        if not isinstance(op, SdkOperation):
            raise TypeError("the answer is not a certificate operation")
        return CertificateOperation.from_sdk(name, op)

    def _still_running(self, name: str) -> OperationTimedOut:
        return OperationTimedOut(
            f"certificate {name} is still being created after {self.limits.max_operation_wait:.0f}s of waiting; "
            "run again later: the next run adopts the version once it completes",
            vault=self.vault,
        )

    # -- one call -------------------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, run: Callable[[Options], T], subject: str, *, seconds: float | None = None
    ) -> T:
        """``run`` the SDK under one ``CallMeter``; whatever it raises leaves here as one typed, one-line error."""
        try:
            bearer_token(self._credential, SCOPE)  # a failing credential costs the vault no request
        except CredentialFailed as failed:
            raise self._unauthorized(failed) from None
        meter = CallMeter(self.limits, seconds=seconds or self.limits.call_timeout, vault=self.vault, subject=subject)
        url = f"{self.vault_url}{path}"
        try:
            return run({CALL_OPTION: meter})
        except KeyVaultError:
            raise
        except CredentialFailed as failed:
            raise self._unauthorized(failed) from None
        except AzureError as exc:
            raise error_from_sdk(exc, vault=self.vault, method=method, url=url, spent=meter.spent()) from None
        except ValueError as exc:
            if "challenge" in str(exc):  # the SDK's verify_challenge_resource (or an unreadable challenge)
                refused = "the vault's authentication challenge names another resource or none; no token was sent"
                raise UntrustedOrigin(refused, vault=self.vault, method=method, url=url) from None
            shape = f"the answer is not what Key Vault sends ({type(exc).__name__})"
            raise MalformedResponse(shape, vault=self.vault, method=method, url=url) from None
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            # the SDK or models met an answer Key Vault would not send (a list for an object, a missing id, ...)
            shape = f"the answer is not what Key Vault sends ({type(exc).__name__})"
            raise MalformedResponse(shape, vault=self.vault, method=method, url=url) from None

    def _where(self, method: str, path: str) -> _Where:
        return {"vault": self.vault, "method": method, "url": f"{self.vault_url}{path}"}

    def _same_vault(self, link: str) -> None:
        """A ``nextLink`` must point back at this vault: a token is never sent anywhere else."""
        if same_origin(link, self.vault_url):
            return
        raise UntrustedOrigin(f"refusing a nextLink to another host: {urlsplit(link).netloc}", vault=self.vault)

    def _unauthorized(self, failed: CredentialFailed) -> Unauthorized:
        return Unauthorized(f"could not get a token for {failed.scope}: {failed.detail}", vault=self.vault)


def _version(cert: SdkCertificate) -> CertificateVersion:
    return CertificateVersion.from_sdk(cert)
