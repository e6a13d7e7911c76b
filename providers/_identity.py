"""Who the API clients sign in as, and their bearer tokens: one process-wide cache for Dataverse and Key Vault.

Why one process-wide cache: one token request per (identity, scope) per process, shared by every client and
every thread of the Pulumi provider host (it serves up to four threads) and of the CLI, which may build several
clients for one environment or vault. Each azure-identity credential caches tokens itself, but only per
credential object, and ``DefaultAzureCredential`` objects built per client would each ask Entra ID again.
Dataverse and Key Vault tokens live about an hour, so one token per identity and audience serves a whole
deployment. No Pulumi import: the dynamic providers and the CLI share this module.

The cache key is (identity, scope), from ``token_key``:

* a credential handed in by the caller is its own identity (the key holds the object, so its id is never
  reused while the entry lives);
* the ``DefaultAzureCredential`` built here is identified by the variables that choose who it signs in as:
  ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_AUTHORITY_HOST``, ``AZURE_TOKEN_CREDENTIALS`` and
  ``AZURE_FEDERATED_TOKEN_FILE`` (another file is another assertion, e.g. a new sandbox on a reused port). Two
  clients under the same variables therefore share one token; a test (or a process) that switches variables
  gets a fresh credential and token rather than someone else's.

A token is reused until ``REFRESH_MARGIN`` (5 minutes) before it expires, then fetched again by exactly one
thread while the others wait for it; a token the API refused (401) is dropped with ``TokenCache.invalidate``.
Tokens are never logged, put in errors, or stored anywhere else.

A credential that gives no token raises ``CredentialFailed``, kept apart as azure-identity keeps its
``CredentialUnavailableError`` apart from ``ClientAuthenticationError``; each client turns them into its own
typed errors::

    CredentialFailed            no token, for a reason that is neither below (Entra ID unreachable, say)
    ├── CredentialUnavailable   no credential is configured: names the AZURE_* variables still missing
    └── CredentialRefused       Entra ID refused the credential: carries the AADSTSnnnnnn code

Each is one line: the first line of azure-identity's reason (or its ``AADSTS`` line), with anything shaped like a
JWT and the values of ``AZURE_CLIENT_SECRET`` / the federated token file blanked out. Never a secret or token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached token is no longer handed out

# Entra ID authority hosts of the Microsoft clouds (azure-identity's AzureAuthorityHosts and their aliases).
# Any other host is a private authority (the emulator, ADFS): MSAL's instance discovery must be off for it.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)
_IDENTITY_VARIABLES = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_FEDERATED_TOKEN_FILE",  # another file is another assertion issuer (two sandboxes on one port, say)
)


class AccessTokenLike(Protocol):
    """``azure.core.credentials.AccessToken``: the bearer token and its expiry (epoch seconds)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """What azure-identity credentials offer (``azure.core.credentials.TokenCredential``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


EXPIRED_ASSERTION = "AADSTS700024"  # "Client assertion is not within its valid time range"


class CredentialFailed(Exception):
    """The credential gave no token for ``scope``; ``detail`` is the first line of its reason, never a token."""

    def __init__(self, scope: str, detail: str, *, expired_assertion: bool = False) -> None:
        self.scope = scope
        self.detail = detail
        self.expired_assertion = expired_assertion  # Entra ID refused a federated assertion as expired
        super().__init__(f"could not get a token for {scope}: {detail}")


class CredentialUnavailable(CredentialFailed):
    """No credential is configured (nothing was sent to Entra ID); ``missing`` names the variables to set."""

    def __init__(self, scope: str, detail: str, *, missing: Sequence[str] = ()) -> None:
        super().__init__(scope, detail)
        self.missing = tuple(missing)


class CredentialRefused(CredentialFailed):
    """Entra ID refused the credential; ``aadsts`` is its code (``AADSTS7000215``: the secret is wrong)."""

    def __init__(self, scope: str, detail: str, *, aadsts: str) -> None:
        super().__init__(scope, detail, expired_assertion=aadsts == EXPIRED_ASSERTION)
        self.aadsts = aadsts


# What each credential DefaultAzureCredential can be pinned to (AZURE_TOKEN_CREDENTIALS) needs from the process
# environment, per azure-identity 1.27's EnvironmentCredential and WorkloadIdentityCredential (the others read
# no variable: a managed identity endpoint, a developer tool's sign-in). A tuple inside means "one of these".
_WORKLOAD_IDENTITY: tuple[str | tuple[str, ...], ...] = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
)
_ENVIRONMENT: tuple[str | tuple[str, ...], ...] = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"),
)
_NEEDS: Mapping[str, tuple[str | tuple[str, ...], ...]] = {
    "workloadidentitycredential": _WORKLOAD_IDENTITY,
    "environmentcredential": _ENVIRONMENT,
}
_AADSTS = re.compile(r"\b(AADSTS\d{5,7})\b[^\r\n]*")
_JWT_LIKE = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")


def missing_variables(environ: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """(what the chosen credential needs, the variables still missing) under ``AZURE_TOKEN_CREDENTIALS``.

    Unset or ``prod``: the pipeline's workload identity is what this project configures, so its three variables are
    named (with the alternative the chain also tries). A credential that reads no variable (a managed identity,
    ``az login``) needs nothing named here.
    """
    chosen = environ.get("AZURE_TOKEN_CREDENTIALS", "").strip()
    key = chosen.lower()
    needs = _NEEDS.get(key, _WORKLOAD_IDENTITY if key in ("", "prod") else ())
    missing: list[str] = []
    for need in needs:
        names = need if isinstance(need, tuple) else (need,)
        if not any(environ.get(name, "").strip() for name in names):
            missing.append(" or ".join(names))
    wanted = ", ".join(" or ".join(n) if isinstance(n, tuple) else n for n in needs)
    alternative = {"": " (the pipeline's workload identity) or an `az login`", "prod": " or a managed identity"}
    who = f"AZURE_TOKEN_CREDENTIALS={chosen}" if chosen else "DefaultAzureCredential (AZURE_TOKEN_CREDENTIALS unset)"
    return (f"{who} needs {wanted}{alternative.get(key, '')}" if needs else who), tuple(missing)


def _scrub(text: str, environ: Mapping[str, str]) -> str:
    """Blank out anything shaped like a JWT and the secret-bearing variables' values, should a reason echo them."""
    text = _JWT_LIKE.sub("***", text)
    secrets = [environ.get("AZURE_CLIENT_SECRET", "")]
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                secrets.append(handle.read(65536).strip())
        except (OSError, UnicodeDecodeError):
            pass
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


def credential_failure(scope: str, exc: BaseException, environ: Mapping[str, str] | None = None) -> CredentialFailed:
    """azure-identity's failure as one of the three kinds above (see the module docstring), one line, no secret.

    Refused: the reason carries an ``AADSTS`` code (only Entra ID hands those out). Unavailable: azure-identity
    raised ``CredentialUnavailableError``, or its chain (``DefaultAzureCredential``) ran out of credentials, each
    saying "... authentication unavailable" (its own wording), or ``AZURE_TOKEN_CREDENTIALS`` names no credential.
    """
    env = os.environ if environ is None else environ
    text = _scrub(str(exc).strip(), env)
    refused = _AADSTS.search(text)
    if refused is not None:
        return CredentialRefused(scope, refused.group(0).strip(), aadsts=refused.group(1))
    reason = _reason_line(text) or type(exc).__name__
    if (
        type(exc).__name__ == "CredentialUnavailableError"
        or _UNAVAILABLE.search(reason)
        or (isinstance(exc, ValueError) and "AZURE_TOKEN_CREDENTIALS" in text)
    ):
        return CredentialUnavailable(scope, f"no credential is configured: {reason}")
    return CredentialFailed(scope, reason)


_UNAVAILABLE = re.compile(r"(?<!service )\bunavailable\b", re.IGNORECASE)


def _reason_line(text: str) -> str:
    """The one line that says why: a credential chain's last attempt (the one that stopped it), else the first."""
    attempts = [line.strip() for line in text.splitlines() if line.startswith("\t") and line.strip()]
    if attempts:
        return attempts[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


@dataclass(frozen=True)
class _Entry:
    token: str
    expires_on: float


class TokenCache:
    """Thread-safe cache of bearer tokens keyed by (identity, scope); see the module docstring for why."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._fetch_locks: dict[Hashable, threading.Lock] = {}

    def token(self, key: Hashable, fetch: Callable[[], AccessTokenLike]) -> str:
        """The cached token for ``key``, or the one ``fetch`` returns (called by one thread at a time per key)."""
        with self._lock:
            entry = self._fresh(key)
            if entry is not None:
                return entry.token
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:
            with self._lock:
                entry = self._fresh(key)
                if entry is not None:  # another thread fetched it while this one waited
                    return entry.token
            fetched = fetch()
            with self._lock:
                self._entries[key] = _Entry(fetched.token, float(fetched.expires_on))
            return fetched.token

    def invalidate(self, key: Hashable, token: str) -> None:
        """Forget ``token`` (the API refused it); a newer token another thread stored is kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.token == token:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _fresh(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires_on - REFRESH_MARGIN <= self._clock():
            return None
        return entry


TOKENS = TokenCache()  # the process-wide cache every DataverseClient and KeyVaultCertificatesClient uses

_default_credentials: dict[tuple[str, ...], TokenCredential] = {}
_default_credentials_lock = threading.Lock()


def environment_identity() -> tuple[str, ...]:
    """Who ``DefaultAzureCredential`` would sign in as, from the variables that decide it."""
    return tuple(os.environ.get(name, "") for name in _IDENTITY_VARIABLES)


def is_private_authority(authority_host: str) -> bool:
    """True when ``AZURE_AUTHORITY_HOST`` names a host outside Microsoft's clouds (the emulator, say)."""
    if not authority_host:
        return False
    host = urlsplit(authority_host if "//" in authority_host else f"https://{authority_host}").hostname or ""
    return host.lower() not in MICROSOFT_AUTHORITY_HOSTS


def default_credential() -> TokenCredential:
    """The process's ``DefaultAzureCredential`` for the current ``AZURE_*`` variables, built on first use."""
    identity = environment_identity()
    with _default_credentials_lock:
        credential = _default_credentials.get(identity)
        if credential is None:
            from azure.identity import DefaultAzureCredential  # imported lazily: only when a token is needed

            kwargs: dict[str, Any] = {}
            if is_private_authority(os.environ.get("AZURE_AUTHORITY_HOST", "")):
                kwargs["disable_instance_discovery"] = True
            credential = DefaultAzureCredential(**kwargs)
            _default_credentials[identity] = credential
        return credential


def token_key(credential: TokenCredential | None, scope: str) -> Hashable:
    """The cache key of ``scope`` for a given credential, or (``None``) for the process's default credential."""
    if credential is not None:
        return ("credential", credential, scope)
    return ("default", environment_identity(), scope)


def fetch_token(credential: TokenCredential, scope: str) -> AccessTokenLike:
    """``credential.get_token(scope)``, with azure-identity's failures turned into ``CredentialFailed`` kinds."""
    try:
        return credential.get_token(scope)
    except Exception as exc:  # azure.core's ClientAuthenticationError, CredentialUnavailableError, ...
        raise credential_failure(scope, exc) from None


def forget_default_credential() -> None:
    """Drop the default credential of the current variables, so the next one reads the federated token file anew."""
    with _default_credentials_lock:
        _default_credentials.pop(environment_identity(), None)


def _fetch_default(scope: str) -> AccessTokenLike:
    """From the default credential; once more with a fresh one when Entra ID says the assertion expired.

    azure-identity's workload-identity credential re-reads its federated token file at most every 10 minutes,
    while GitHub's OIDC tokens live 5 (the pipeline refreshes the file every minute). A process that first needs a
    new audience in between would present an expired assertion; a fresh credential reads the current file.

    A credential that is not configured names the variables it still needs (``missing_variables``).
    """
    try:
        try:
            return fetch_token(_default_or_unavailable(scope), scope)
        except CredentialFailed as failed:
            if not failed.expired_assertion:
                raise
            forget_default_credential()
            return fetch_token(_default_or_unavailable(scope), scope)
    except CredentialUnavailable:
        needs, missing = missing_variables(os.environ)
        if not missing:
            raise
        raise CredentialUnavailable(
            scope, f"no credential is configured: {needs}; missing: {', '.join(missing)}", missing=missing
        ) from None


def _default_or_unavailable(scope: str) -> TokenCredential:
    """``default_credential()``; an AZURE_TOKEN_CREDENTIALS azure-identity refuses is ``CredentialUnavailable``."""
    try:
        return default_credential()
    except ValueError as exc:
        raise credential_failure(scope, exc) from None


def bearer_token(credential: TokenCredential | None, scope: str) -> str:
    """A token for ``scope`` from ``credential`` (``None``: the default credential), through ``TOKENS``."""
    if credential is not None:
        return TOKENS.token(token_key(credential, scope), lambda: fetch_token(credential, scope))
    return TOKENS.token(token_key(None, scope), lambda: _fetch_default(scope))


def refuse_token(credential: TokenCredential | None, scope: str, token: str) -> None:
    """The API answered 401 to ``token``: drop it so the next ``bearer_token`` fetches a new one."""
    TOKENS.invalidate(token_key(credential, scope), token)


class WrongTenant(Exception):
    """The credential signs in to another Entra tenant than the environment or vault belongs to.

    Raised before a single request reaches that environment or vault (contract ``tenant_id``, docs/security.md):
    a DefraDev pipeline credential pointed at a Defra environment, or the reverse, stops here. Names both tenants,
    never the token.
    """

    def __init__(self, target: str, expected: str, actual: str | None) -> None:
        self.target = target
        self.expected = expected
        self.actual = actual
        got = f"tenant {actual}" if actual else "a token without a tenant (tid) claim"
        super().__init__(
            f"{target} belongs to tenant {expected}, but the credential signs in to {got}; "
            "use the identity of that tenant (AZURE_TENANT_ID / the pipeline's service connection)"
        )


def _claims(token: str) -> Mapping[str, Any]:
    """The payload of a JWT read without verifying it; empty for anything that is not one. Never raises."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 16384:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def token_tenant(token: str) -> str | None:
    """The ``tid`` claim of a JWT access token, read without verifying it (the API verifies; we only compare).

    Returns ``None`` for anything that is not a JWT with a string ``tid``; never raises, never logs the token.
    """
    tid = _claims(token).get("tid")
    return tid.lower() if isinstance(tid, str) else None


def token_caller(token: str) -> str | None:
    """Who the token signs in as, ``<tid>/<appid>`` (the user Dataverse meters), or None when it does not say.

    Read without verifying it, like ``token_tenant``: it only groups requests for pacing, never authorises.
    """
    claims = _claims(token)
    tid, app = claims.get("tid"), claims.get("appid") or claims.get("azp") or claims.get("oid")
    if not isinstance(tid, str) or not isinstance(app, str):
        return None
    return f"{tid.lower()}/{app.lower()}"


def check_tenant(credential: TokenCredential | None, scope: str, tenant_id: str | None, target: str) -> None:
    """Refuse with `WrongTenant` unless the token ``credential`` obtains for ``scope`` carries ``tenant_id``.

    ``tenant_id`` ``None`` checks nothing (the argument is optional; the program always sets it). The token comes
    from the process-wide cache, so the check costs no extra token request after the first.
    """
    if not tenant_id:
        return
    actual = token_tenant(bearer_token(credential, scope))
    if actual != tenant_id.strip().lower():
        raise WrongTenant(target, tenant_id.strip().lower(), actual)
