"""Typed errors of the Key Vault certificates client.

Every message is one line naming the vault, the request and what Key Vault answered; none ever carries a token
or a secret value (the client never reads secrets, and request headers are never put into an error).
"""

from __future__ import annotations

import re


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
        answer = f"answered {self.status} {self.code}: " if self.status else ""
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
    """429 kept coming after the retry budget was spent."""


class ServerError(KeyVaultError):
    """5xx kept coming after the retry budget was spent."""


class ConnectionFailed(KeyVaultError):
    """No answer (connection refused, reset or timed out)."""


class OperationFailed(KeyVaultError):
    """The pending certificate operation ended ``failed`` or ``cancelled``."""


class OperationTimedOut(KeyVaultError):
    """The pending certificate operation was still in progress when the bounded wait ran out."""
