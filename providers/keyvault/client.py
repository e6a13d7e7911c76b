"""A small client for Key Vault's certificates data plane (api-version 7.4), over ``requests`` + azure-identity.

Why not ``azure-keyvault-certificates``: the project's design card keeps every HTTP call on ``requests`` with
azure-identity tokens (one retry and error policy for Dataverse and Key Vault alike), and this client needs five
calls. It never fetches a secret: the private key of a certificate stays in Key Vault, and only certificate
metadata and the public ``cer`` pass through here.

Behaviour:
- Token (``providers/_identity.py``, shared with the Dataverse client): ``DefaultAzureCredential`` built lazily,
  once per process and ``AZURE_*`` identity, when no credential is handed in (ADR 6: ``disable_instance_discovery``
  when ``AZURE_AUTHORITY_HOST`` is not Microsoft's). One token per (identity, scope) per process, shared by every
  client and thread, refreshed five minutes before expiry; a ``401`` drops it and retries once with a fresh one.
- Throttling and outages: ``429``/``503`` (and ``502``/``504`` and lost connections for reads) are retried,
  honouring ``Retry-After``, until ``max_retry_wait`` seconds of waiting are spent; then a typed error.
- Create is a long-running operation: ``create_version`` starts it, polls ``/pending`` (honouring
  ``Retry-After``, at most ``max_operation_wait`` seconds of waiting) and returns the new version. When the
  create request's answer is lost, it looks before creating again, so one call makes one version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from providers._identity import CredentialFailed, TokenCredential, bearer_token, refuse_token
from providers._origin import https_origin
from providers._retry_after import retry_after
from providers.keyvault.errors import (
    BadRequest,
    CertificateNotFound,
    Conflict,
    ConnectionFailed,
    Forbidden,
    KeyVaultError,
    OperationFailed,
    OperationTimedOut,
    ServerError,
    Throttled,
    Unauthorized,
)
from providers.keyvault.models import CertificateOperation, CertificatePolicy, CertificateVersion

SCOPE = "https://vault.azure.net/.default"
API_VERSION = "7.4"
_RETRY_STATUSES = {429, 502, 503, 504}
_SAFE_TO_REPEAT = {"GET", "PATCH"}  # PATCH of attributes is idempotent; POST create is not


def vault_origin(vault_url: str) -> str:
    """``https://name.vault.azure.net[:port]`` from any URL of the vault (path, query and slash dropped)."""
    return https_origin(vault_url, what="vault URL", example="https://<vault>.vault.azure.net")


class KeyVaultCertificatesClient:
    """Certificates of one vault. Thread-safe: the session is only used for independent requests."""

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential | None = None,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_wait: float = 60.0,
        max_operation_wait: float = 300.0,
        timeout: float = 30.0,
    ) -> None:
        self.vault_url = vault_origin(vault_url)
        host = urlsplit(self.vault_url).hostname or self.vault_url
        self.vault = host.split(".")[0] if host.endswith(".vault.azure.net") else urlsplit(self.vault_url).netloc
        self._credential = credential
        self._session = session or requests.Session()
        self._sleep = sleep
        self.max_retry_wait = max_retry_wait
        self.max_operation_wait = max_operation_wait
        self._timeout = timeout

    # -- certificates ---------------------------------------------------------------------------------------
    def get_certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        """The latest version (``version=None``) or a given one; ``CertificateNotFound`` when absent."""
        path = f"/certificates/{quote(name)}" + (f"/{quote(version)}" if version else "")
        body, _ = self._request("GET", path)
        return CertificateVersion.from_json(body)

    def list_versions(self, name: str, *, page_size: int = 25) -> list[CertificateVersion]:
        """Every version (metadata only, no ``cer``), following ``nextLink``; empty when the name is unknown."""
        versions: list[CertificateVersion] = []
        body, _ = self._request("GET", f"/certificates/{quote(name)}/versions", params={"maxresults": page_size})
        while True:
            versions.extend(CertificateVersion.from_json(item) for item in body.get("value") or [])
            next_link = body.get("nextLink")
            if not next_link:
                return versions
            body, _ = self._request("GET", self._same_vault(str(next_link)), params=None)

    def set_enabled(self, name: str, version: str, enabled: bool) -> CertificateVersion:
        body, _ = self._request(
            "PATCH", f"/certificates/{quote(name)}/{quote(version)}", json={"attributes": {"enabled": enabled}}
        )
        return CertificateVersion.from_json(body)

    # -- create (long-running) ------------------------------------------------------------------------------
    def begin_create(self, name: str, policy: CertificatePolicy) -> CertificateOperation:
        body, headers = self._request("POST", f"/certificates/{quote(name)}/create", json={"policy": policy.to_json()})
        return CertificateOperation.from_json(name, body, retry_after(headers))

    def get_operation(self, name: str) -> CertificateOperation | None:
        """The certificate's last create operation, or None when it has none (or does not exist)."""
        try:
            body, headers = self._request("GET", f"/certificates/{quote(name)}/pending")
        except CertificateNotFound:
            return None
        return CertificateOperation.from_json(name, body, retry_after(headers))

    def wait_for_operation(self, name: str) -> CertificateOperation | None:
        """Poll ``/pending`` until it is no longer in progress; ``OperationFailed`` / ``OperationTimedOut``."""
        waited = 0.0
        while True:
            op = self.get_operation(name)
            if op is None or op.completed:
                return op
            if not op.in_progress:
                detail = f" ({op.error_code}: {op.error_message})" if op.error_code or op.error_message else ""
                raise OperationFailed(
                    f"creating a version of certificate {name} ended {op.status}{detail}",
                    vault=self.vault,
                    code=op.error_code,
                )
            delay = min(max(op.retry_after if op.retry_after is not None else 1.0, 0.0), 10.0)
            if waited + delay > self.max_operation_wait:
                raise OperationTimedOut(
                    f"certificate {name} is still being created after {waited:.0f}s of waiting "
                    f"(request {op.request_id}); run again later: the next run adopts the version once it completes",
                    vault=self.vault,
                )
            self._sleep(delay)
            waited += delay

    def create_version(self, name: str, policy: CertificatePolicy) -> CertificateVersion:
        """Create one new version, wait for it, and return it (with its ``cer``).

        A create whose answer was lost may still have been accepted: before sending it again, the pending
        operation and the versions are checked, so a lost answer never yields two versions.
        """
        earlier = self.get_operation(name)
        if earlier is not None and earlier.in_progress:
            self.wait_for_operation(name)  # an earlier create still in progress would answer 409
        known = {v.version for v in self.list_versions(name)}
        try:
            self.begin_create(name, policy)
        except (ConnectionFailed, ServerError):
            if not self._create_was_accepted(name, known):
                self.begin_create(name, policy)
        self.wait_for_operation(name)
        latest = self.get_certificate(name)
        if latest.version in known or not latest.issued:
            raise KeyVaultError(
                f"the create operation of certificate {name} completed but no new version is the latest",
                vault=self.vault,
            )
        return latest

    def _create_was_accepted(self, name: str, known: set[str]) -> bool:
        op = self.get_operation(name)
        if op is not None and op.in_progress:
            return True
        return any(v.version not in known for v in self.list_versions(name))

    # -- transport ------------------------------------------------------------------------------------------
    def _same_vault(self, link: str) -> str:
        """A ``nextLink`` must point back at this vault: a token is never sent anywhere else."""
        parts = urlsplit(link)
        if vault_origin(f"{parts.scheme}://{parts.netloc}") != self.vault_url:
            raise KeyVaultError(f"refusing a nextLink to another host: {parts.netloc}", vault=self.vault)
        return link

    def _token(self) -> str:
        """The process-wide vault token; a credential that fails is a one-line ``Unauthorized`` naming the vault."""
        try:
            return bearer_token(self._credential, SCOPE)
        except CredentialFailed as failed:
            raise Unauthorized(f"could not get a token for {failed.scope}: {failed.detail}", vault=self.vault) from None

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        if path_or_url.startswith("https://"):
            url, query = path_or_url, None  # a nextLink carries its own api-version
        else:
            url, query = f"{self.vault_url}{path_or_url}", {"api-version": API_VERSION, **(params or {})}
        shown = urlsplit(url)._replace(query="", fragment="").geturl()
        waited = 0.0
        attempt = 0
        refreshed = False
        token = self._token()
        while True:
            attempt += 1
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=query,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=self._timeout,
                )
            except requests.exceptions.SSLError:
                raise ConnectionFailed(
                    "TLS verification failed: is REQUESTS_CA_BUNDLE set to the vault's CA?",
                    vault=self.vault,
                    method=method,
                    url=shown,
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = min(2.0 ** (attempt - 1), 10.0)
                if method in _SAFE_TO_REPEAT and waited + delay <= self.max_retry_wait:
                    self._sleep(delay)
                    waited += delay
                    continue
                raise ConnectionFailed(
                    f"no answer ({type(exc).__name__})", vault=self.vault, method=method, url=shown
                ) from None
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                refuse_token(self._credential, SCOPE, token)
                token = self._token()
                continue
            retryable = resp.status_code in (429, 503) or (
                resp.status_code in _RETRY_STATUSES and method in _SAFE_TO_REPEAT
            )
            if retryable:
                advised = retry_after(resp.headers)
                delay = advised if advised is not None else min(2.0 ** (attempt - 1), 10.0)
                if waited + delay <= self.max_retry_wait:
                    self._sleep(delay)
                    waited += delay
                    continue
            if resp.status_code >= 400:
                raise self._error(resp, method, shown, waited)
            if not resp.content:
                return {}, resp.headers
            body = resp.json()
            return (body if isinstance(body, dict) else {}), resp.headers

    def _error(self, resp: requests.Response, method: str, url: str, waited: float) -> KeyVaultError:
        try:
            error = resp.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        inner = error.get("innererror") if isinstance(error, dict) else None
        if isinstance(inner, dict) and inner.get("code"):
            code = f"{code}/{inner['code']}" if code else str(inner["code"])
        status = resp.status_code
        kind: type[KeyVaultError]
        if status == 400:
            kind = BadRequest
        elif status == 401:
            kind = Unauthorized
            challenge = resp.headers.get("WWW-Authenticate", "")
            if "authorization=" in challenge:
                expected = challenge.split("authorization=", 1)[1].split(",", 1)[0].strip('" ')
                message = f"{message} (the vault expects tokens from {expected})"
        elif status == 403:
            kind = Forbidden
        elif status == 404:
            kind = CertificateNotFound
        elif status == 409:
            kind = Conflict
        elif status == 429:
            kind = Throttled
            message = f"{message or 'too many requests'} (gave up after waiting {waited:.0f}s)"
        elif status >= 500:
            kind = ServerError
            if waited:
                message = f"{message or resp.reason} (gave up after waiting {waited:.0f}s)"
        else:
            kind = KeyVaultError
        return kind(message or resp.reason or "", vault=self.vault, status=status, method=method, url=url, code=code)
