"""Typed errors of the Key Vault certificates client, and the ONE place azure-core's exceptions become them.

Every message is one line naming the vault, the request and what Key Vault answered; none ever carries a token
or a secret value (the client never reads secrets, and request headers are never put into an error).

:func:`error_from_sdk` is the only translation from what ``azure-keyvault-certificates`` / azure-core raise to
this tree: azure-core's own exception classes decide first (``ClientAuthenticationError`` is 401,
``ResourceNotFoundError`` 404, ``ResourceExistsError`` 409, as its ``map_error`` sets them), the status of any
other ``HttpResponseError`` second (``_BY_STATUS``). Errors the client's own guards detect (deadline, size cap,
origin, paging, names) are raised as these types where they are detected and pass through unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)


def one_line(text: str) -> str:
    """Key Vault messages contain CR/LF (RBAC errors span eight lines): fold them so a user reads one line."""
    return re.sub(r"\s+", " ", text).strip()


class KeyVaultError(Exception):
    """Base error: ``status`` (0 when no answer arrived), ``method``, ``url`` (no query), ``code``, ``message``."""

    def __init__(
        self,
        message: str,
        *,
        vault: str,
        status: int = 0,
        method: str = "",
        url: str = "",
        code: str = "",
    ) -> None:
        self.vault = vault
        self.status = status
        self.method = method
        self.url = url
        self.code = code
        self.message = one_line(message)
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.url} " if self.method else ""
        code = f" {self.code}" if self.code else ""
        answer = f"answered {self.status}{code}: " if self.status else ""
        return f"Key Vault {self.vault}: {where}{answer}{self.message}"


class BadRequest(KeyVaultError):
    """400: Key Vault refused the request's shape (policy, name, api-version)."""


class Unauthorized(KeyVaultError):
    """401: no usable token for this vault's tenant (the message names the tenant Key Vault expects)."""


class Forbidden(KeyVaultError):
    """403: the identity lacks the data action (RBAC), or the vault's policy denies the request."""


class CertificateNotFound(KeyVaultError):
    """404: no such certificate, version or pending operation."""


class Conflict(KeyVaultError):
    """409: another operation on the certificate is in progress."""


class Throttled(KeyVaultError):
    """429 kept coming after the bounded retries were spent."""


class ServerError(KeyVaultError):
    """5xx kept coming after the bounded retries were spent (or a POST was not resent: see the client)."""


class Redirected(KeyVaultError):
    """3xx: redirects are never followed (a token or a create request never goes anywhere but the vault)."""


class ConnectionFailed(KeyVaultError):
    """No answer (connection refused, reset or timed out)."""


class DeadlineExceeded(ConnectionFailed):
    """The call's overall deadline passed (a server trickling its answer cannot hold a call beyond it)."""


class MalformedResponse(KeyVaultError):
    """A success status whose body is not what Key Vault answers (not JSON, wrong shape, missing fields)."""


class ResponseTooLarge(MalformedResponse):
    """The answer is larger than the cap, counted before and while decompressing (never inflated whole)."""


class EndlessPaging(MalformedResponse):
    """A ``nextLink`` that repeats, or more pages than the page limit."""


class UntrustedOrigin(KeyVaultError):
    """A URL that is not the vault's: the vault token and requests go to the vault's own origin only."""


class InvalidName(KeyVaultError):
    """A certificate name or version that Key Vault could not have made; refused before any request."""


class TenantMismatch(KeyVaultError):
    """The credential signs in to another tenant than the vault's (contract ``tenant_id``); before any request."""

    def _describe(self) -> str:
        return self.message  # providers._identity.WrongTenant's line already names the vault and both tenants


class OperationFailed(KeyVaultError):
    """The pending certificate operation ended ``failed`` or ``cancelled``."""


class OperationTimedOut(KeyVaultError):
    """The pending certificate operation was still in progress when the bounded wait ran out."""


@dataclass(frozen=True)
class Spent:
    """What one call spent before it failed: requests sent and seconds waited between them."""

    requests: int
    waited: float

    def gave_up(self) -> str:
        return f"gave up after {self.requests} requests and {self.waited:.0f}s of waiting"


_BY_STATUS: dict[int, type[KeyVaultError]] = {400: BadRequest, 403: Forbidden, 429: Throttled}


def _kind(exc: HttpResponseError, status: int) -> type[KeyVaultError]:
    if isinstance(exc, ClientAuthenticationError):
        return Unauthorized
    if isinstance(exc, ResourceNotFoundError):
        return CertificateNotFound
    if isinstance(exc, ResourceExistsError):
        return Conflict
    if 300 <= status < 400:
        return Redirected
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, KeyVaultError)


def error_from_sdk(exc: AzureError, *, vault: str, method: str, url: str, spent: Spent) -> KeyVaultError:
    """The typed, one-line error for what the SDK raised on ``method url`` (``url`` without its query)."""
    response: Any = exc.response if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, DecodeError) and (response is None or int(response.status_code) < 300):
        # a success whose body is not JSON (ContentDecodePolicy); an error status is mapped by its status below
        return MalformedResponse("the answer is not JSON", vault=vault, method=method, url=url)
    if isinstance(exc, HttpResponseError) and response is not None:
        status = int(response.status_code)
        error = exc.error
        code = str(error.code or "") if error is not None else ""
        message = str(error.message or "") if error is not None else ""
        inner = error.innererror.get("code") if error is not None and isinstance(error.innererror, dict) else None
        if inner:
            code = f"{code}/{inner}" if code else str(inner)
        kind = _kind(exc, status)
        headers = response.headers
        if kind is Unauthorized:
            challenge = headers.get("WWW-Authenticate", "")
            if "authorization=" in challenge:
                expected = challenge.split("authorization=", 1)[1].split(",", 1)[0].strip('" ')
                message = f"{message} (the vault expects tokens from {expected})"
        elif kind is Redirected:
            message = f"redirect to {headers.get('Location', '(no Location)')} refused: redirects are never followed"
        elif kind in (Throttled, ServerError) and spent.requests > 1:
            message = f"{message or response.reason or 'no reason given'} ({spent.gave_up()})"
        return kind(message or response.reason or "", vault=vault, method=method, url=url, status=status, code=code)
    if isinstance(exc, ServiceResponseTimeoutError | ServiceRequestError | ServiceResponseError):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text or "certificate verify failed" in text:
            tls = "TLS verification failed: is REQUESTS_CA_BUNDLE set to the vault's CA?"
            return ConnectionFailed(tls, vault=vault, method=method, url=url)
        timed_out = isinstance(exc, ServiceResponseTimeoutError) or "timed out" in text.lower()
        reason = "timed out" if timed_out else "connection failed"
        return ConnectionFailed(f"no answer ({reason}; {spent.gave_up()})", vault=vault, method=method, url=url)
    return KeyVaultError(f"{type(exc).__name__}: {exc}", vault=vault, method=method, url=url)
