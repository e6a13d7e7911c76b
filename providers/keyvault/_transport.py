"""How the Key Vault client talks to a vault: azure-core's pipeline, plus the guards it does not have (ADR 7).

``azure-keyvault-certificates`` brings the challenge-based authentication, the retry policy (``Retry-After``
honoured, bounded attempts), typed errors and the create poller. What this module adds, each where azure-core
lets a caller plug in (a policy, a transport, a ``requests`` adapter):

- ``bind_vault``: the token is bound to Key Vault. A vault URL must be ``https://<name>.vault.azure.net``, or a
  loopback origin the emulator listed in ``ADP_IDENTITY_LOOPBACK_VAULTS``; only then is the SDK's challenge
  resource check (``verify_challenge_resource``) turned off, for that loopback origin alone.
- ``VaultTransport``: every request goes to the vault's own origin (a ``nextLink`` or ``Location`` elsewhere is
  refused before it is sent), counts against its call (``CallMeter``: an overall deadline per call), and gets
  an exchange deadline. Its ``sleep`` paces the create poller: ``Retry-After`` of ``/pending`` honoured within
  [1 s, 10 s], and a wait budget counting polls as well as seconds, so ``Retry-After: 0`` still ends.
- ``_BoundedAdapter``: a ``requests`` adapter that caps the answer's size BEFORE decompression (and while
  inflating, so a gzip bomb is refused having inflated at most the cap), and a watchdog that shuts the socket
  when the exchange deadline passes (a server trickling its headers cannot hold a call: read timeouts are per
  ``recv``, so they cannot stop it).
- ``VaultRetryPolicy``: azure-core's ``RetryPolicy`` with Microsoft's Key Vault backoff (1, 2, 4, 8 s: no
  immediate retry), ``Retry-After`` capped, PATCH of attributes counted idempotent, and a POST resent only after
  429/503 (Key Vault did not process it), never after another 5xx or a lost connection.
- ``ReplaceRefusedToken``: a 401 to a bearer token drops it from the process-wide cache and sends once more.
- ``SharedTokenCredential``: the SDK's credential, answered from ``providers._identity``'s one cache.

No Pulumi import. Secrets never pass through here: the client only reads certificate metadata and public ``cer``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, RetryPolicy
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from providers._identity import CredentialFailed, TokenCredential, bearer_token, default_credential, refuse_token
from providers._origin import https_origin
from providers._wire import Expired, TooLarge, Undecodable, WatchedAdapter, read_bounded, watching
from providers.keyvault.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MalformedResponse,
    OperationTimedOut,
    ResponseTooLarge,
    Spent,
    UntrustedOrigin,
)

SCOPE = "https://vault.azure.net/.default"
LOOPBACK_VAULTS_ENV = "ADP_IDENTITY_LOOPBACK_VAULTS"  # set by the emulator's credential_env / exports only
CALL_OPTION = "adp_keyvault_call"  # the per-call keyword that carries a CallMeter down to the transport
_VAULT_HOST = re.compile(r"^[0-9a-z-]{3,24}\.vault\.azure\.net$")  # Key Vault names: 3-24 letters, digits, '-'
_NOT_PROCESSED = (429, 503)  # Key Vault did not act on the request: even a POST may be sent again


@dataclass(frozen=True)
class Limits:
    """Every bound of a Key Vault call (ADR 7). Defaults are for real vaults; tests pass smaller ones."""

    retry_total: int = 4  # resends per request: 5 requests at most under a vault that throttles forever
    backoff_factor: float = 1.0  # 1, 2, 4, 8 s (learn.microsoft.com/azure/key-vault/general/overview-throttling)
    backoff_max: float = 16.0
    max_retry_after: float = 60.0  # a longer Retry-After is capped (the call deadline still applies)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # per recv; the exchange deadline bounds the whole answer
    exchange_timeout: float = 60.0  # one request and its whole answer
    call_timeout: float = 120.0  # one call with its retries and pages; a create adds max_operation_wait
    max_response_bytes: int = 4 * 1024 * 1024  # certificate bundles are ~5 KB, a page of 25 versions ~10 KB
    max_pages: int = 50  # 1,250 versions of one certificate at 25 a page
    poll_interval: float = 5.0  # between polls of /pending when Key Vault sends no Retry-After (the SDK's)
    min_poll_interval: float = 1.0  # a Retry-After of 0 (or less) on /pending still waits this long
    max_poll_interval: float = 10.0  # Key Vault itself advises 10 s
    max_operation_wait: float = 300.0  # seconds of waiting for one create to complete
    max_polls: int = 120  # polls of one create, whatever Retry-After says


# -- which URLs the vault token may go to ---------------------------------------------------------------------


def vault_origin(vault_url: str) -> str:
    """``https://name.vault.azure.net[:port]`` from any URL of the vault (path, query and slash dropped)."""
    return https_origin(vault_url, what="vault URL", example="https://<vault>.vault.azure.net")


def same_origin(url: str, origin: str) -> bool:
    """True when ``url`` is on ``origin`` (an https origin as ``vault_origin`` writes it)."""
    try:
        return vault_origin(url) == origin
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_vaults(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The loopback vault origins ``ADP_IDENTITY_LOOPBACK_VAULTS`` allows (space-separated; others are ignored)."""
    allowed: set[str] = set()
    for item in environ.get(LOOPBACK_VAULTS_ENV, "").split():
        try:
            origin = vault_origin(item)
        except ValueError:
            continue
        if _is_loopback(urlsplit(origin).hostname or ""):
            allowed.add(origin)
    return frozenset(allowed)


def bind_vault(vault_url: str) -> tuple[str, bool]:
    """(origin, is_loopback) of a URL the vault token may be sent to; ``ValueError`` (one line) for any other.

    The Azure SDK binds its token the same way: the challenge resource (``https://vault.azure.net``) must be a
    suffix of the vault's host (``verify_challenge_resource``, aka.ms/azsdk/blog/vault-uri). A loopback origin
    is accepted only when listed in ``ADP_IDENTITY_LOOPBACK_VAULTS`` (the emulator's exports set it).
    """
    origin = vault_origin(vault_url)
    host = urlsplit(origin).hostname or ""
    if _VAULT_HOST.match(host) and urlsplit(origin).port is None:
        return origin, False
    if origin in loopback_vaults():
        return origin, True
    raise ValueError(
        f"must be a Key Vault URL https://<vault>.vault.azure.net (got {vault_url!r}): the vault token is sent "
        f"to Key Vault only (a loopback emulator vault must be listed in {LOOPBACK_VAULTS_ENV})"
    )


def vault_name(origin: str) -> str:
    """What errors call the vault: its name for ``*.vault.azure.net``, else ``host:port``."""
    parts = urlsplit(origin)
    host = parts.hostname or ""
    return host.split(".")[0] if _VAULT_HOST.match(host) else parts.netloc


# -- one call's budget ----------------------------------------------------------------------------------------


class CallMeter:
    """What one client call (its retries, pages and polls) may spend, and has spent. One per call, one thread
    at a time (the create poller's thread takes over from the caller's)."""

    def __init__(self, limits: Limits, *, seconds: float, vault: str = "", subject: str = "") -> None:
        self.limits = limits
        self.vault = vault
        self.subject = subject  # the certificate, for messages
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.requests = 0
        self.waited = 0.0
        self.polls = 0  # answers of /pending seen
        self.poll_wait = 0.0
        self.pending_retry_after: float | None = None
        self.after_poll = False  # the last answer was an in-progress /pending: the next sleep paces a poll

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def spent(self) -> Spent:
        return Spent(self.requests, self.waited)

    def saw(self, method: str, url: str, response: HttpResponse) -> None:
        self.after_poll = (
            method.upper() == "GET"
            and urlsplit(url).path.rstrip("/").endswith("/pending")
            and response.status_code == 200
        )
        if self.after_poll:
            self.polls += 1
            self.pending_retry_after = _seconds(response.headers.get("Retry-After"))

    def pause(self, requested: float) -> float:
        """How long to sleep now (``requested`` is what the SDK asked for); ``OperationTimedOut`` when a create's
        wait budget (seconds or polls) is spent."""
        lim = self.limits
        if self.after_poll:
            advised = self.pending_retry_after if self.pending_retry_after is not None else requested
            delay = min(max(advised, lim.min_poll_interval), lim.max_poll_interval)
            if self.polls >= lim.max_polls or self.poll_wait + delay > lim.max_operation_wait:
                raise OperationTimedOut(
                    f"certificate {self.subject} is still being created after {self.poll_wait:.0f}s of waiting "
                    f"({self.polls} polls); run again later: the next run adopts the version once it completes",
                    vault=self.vault,
                )
            self.poll_wait += delay
        else:
            delay = min(max(requested, 0.0), lim.max_retry_after)
        return max(0.0, min(delay, self.remaining()))


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# -- the transport: origin lock, call deadline, pacing ----------------------------------------------------------

_LOCAL = threading.local()  # per thread: the CallMeter being served, and the exchange in flight


@dataclass(frozen=True)
class _Exchange:
    deadline: float
    seconds: float
    max_bytes: int
    vault: str
    method: str
    url: str


class VaultTransport(HttpTransport[HttpRequest, HttpResponse]):  # type: ignore[type-var]
    """azure-core's ``RequestsTransport`` for one vault origin, with the call budget and origin lock applied."""

    def __init__(
        self,
        origin: str,
        vault: str,
        limits: Limits,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.origin = origin
        self.vault = vault
        self.limits = limits
        self._sleep = sleep
        self.session = session or bounded_session()
        self._inner = RequestsTransport(
            session=self.session,
            session_owner=False,
            connection_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
        )

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        meter = kwargs.pop(CALL_OPTION, None)
        if not isinstance(meter, CallMeter):  # every call of the client carries one; never unbounded
            meter = CallMeter(self.limits, seconds=self.limits.call_timeout, vault=self.vault)
        parts = urlsplit(request.url)
        shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if not same_origin(request.url, self.origin):
            raise UntrustedOrigin(
                f"refusing to send {request.method} to {parts.scheme}://{parts.netloc}: not the vault's origin",
                vault=self.vault,
            )
        remaining = meter.remaining()
        if remaining <= 0:
            raise DeadlineExceeded(
                f"no complete answer within the call's deadline of {meter.seconds:.0f}s ({meter.spent().gave_up()})",
                vault=self.vault,
                method=request.method,
                url=shown,
            )
        meter.requests += 1
        exchange = min(self.limits.exchange_timeout, remaining)
        kwargs["connection_timeout"] = min(float(kwargs.get("connection_timeout") or exchange), exchange)
        kwargs["read_timeout"] = min(self.limits.read_timeout, exchange)
        _LOCAL.meter = meter
        _LOCAL.exchange = _Exchange(
            time.monotonic() + exchange, exchange, self.limits.max_response_bytes, self.vault, request.method, shown
        )
        try:
            response: HttpResponse = self._inner.send(request, **kwargs)
        finally:
            _LOCAL.exchange = None
        meter.saw(request.method, request.url, response)
        return response

    def sleep(self, duration: float) -> None:
        """Between retries (azure-core's RetryPolicy) and between polls (the SDK's create poller)."""
        meter = getattr(_LOCAL, "meter", None)
        if not isinstance(meter, CallMeter):
            delay = min(max(duration, 0.0), self.limits.max_retry_after)
        else:
            delay = meter.pause(duration)
        if delay > 0:
            self._sleep(delay)
            if isinstance(meter, CallMeter):
                meter.waited += delay

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> VaultTransport:
        self.open()
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()


# -- the wire: size cap before decompression, and a watchdog for the exchange deadline ----------------------------


class _BoundedAdapter(WatchedAdapter):
    """Every answer is read here, within the exchange deadline and the size cap, before anyone decodes it."""

    def send(  # type: ignore[override]  # noqa: PLR0917 - requests' signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        exchange = getattr(_LOCAL, "exchange", None)
        if not isinstance(exchange, _Exchange):  # used outside VaultTransport: still bounded
            seconds = Limits.exchange_timeout
            exchange = _Exchange(time.monotonic() + seconds, seconds, Limits.max_response_bytes, "", "", "")
        with watching(exchange.deadline) as watch:
            try:
                response = self._exchange(request, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
                _load_bounded(response, exchange)
                if watch.fired:  # a socket shut mid-headers reads as their end: never take that as an answer
                    response.close()
                    raise TimeoutError("the exchange deadline passed")
                return response
            except (ResponseTooLarge, MalformedResponse):
                raise
            except requests.exceptions.SSLError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
                    # a configuration problem, not a network one: never retried
                    raise ConnectionFailed(
                        "TLS verification failed: is REQUESTS_CA_BUNDLE set to the vault's CA?",
                        vault=exchange.vault,
                        method=exchange.method,
                        url=exchange.url,
                    ) from None
                raise
            except Exception:
                if watch.fired:
                    raise requests.exceptions.ReadTimeout(_NO_ANSWER.format(seconds=exchange.seconds)) from None
                raise

    def _exchange(
        self,
        request: requests.PreparedRequest,
        *,
        timeout: Any,
        verify: bool | str,
        cert: Any,
        proxies: Mapping[str, str] | None,
    ) -> requests.Response:
        """The wire exchange, always streamed (so nothing is read or inflated before ``_load_bounded``)."""
        return super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def _load_bounded(response: requests.Response, exchange: _Exchange) -> None:
    """Read the raw body (never decoded by urllib3) with ``read_bounded``: at most the cap either side of inflating."""
    limit = exchange.max_bytes

    def refuse(kind: type[MalformedResponse], message: str) -> MalformedResponse:
        response.close()  # the connection is dropped, never reused with the rest of the answer in it
        return kind(message, vault=exchange.vault, method=exchange.method, url=exchange.url)

    try:
        body = read_bounded(response, limit, expired=lambda: time.monotonic() >= exchange.deadline)
    except TooLarge as too_large:
        what = _TOO_LARGE_AT[too_large.stage].format(read=too_large.read)
        raise refuse(ResponseTooLarge, f"the answer {what} more than the {limit} bytes allowed; refused") from None
    except Undecodable as bad:
        if bad.unsupported:
            raise refuse(MalformedResponse, f"the answer is encoded {bad.encoding!r}, which is not asked for") from None
        raise refuse(MalformedResponse, f"the {bad.encoding} answer does not inflate") from None
    except Expired:
        response.close()
        raise requests.exceptions.ReadTimeout(_NO_ANSWER.format(seconds=exchange.seconds)) from None
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    if "Content-Encoding" in response.headers:
        del response.headers["Content-Encoding"]  # decoded here: azure-core must not decode it again
    response.headers["Content-Length"] = str(len(body))


_NO_ANSWER = "no complete answer within {seconds:.1f}s (the exchange's share of the call deadline)"
# what a ResponseTooLarge says of each stage at which read_bounded stopped
_TOO_LARGE_AT = {"announced": "declares {read} bytes,", "inflated": "inflates to", "wire": "holds", "buffered": "holds"}


def bounded_session() -> requests.Session:
    """A session whose every https request goes through ``_BoundedAdapter`` (plain http is never mounted)."""
    session = requests.Session()
    session.mount("https://", _BoundedAdapter())
    session.mount("http://", _RefuseHttp())
    return session


class _RefuseHttp(requests.adapters.BaseAdapter):
    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raise requests.exceptions.InvalidURL("Key Vault is only reached over https")

    def close(self) -> None:
        pass


# -- retries, refused tokens, the shared token cache ------------------------------------------------------------


class VaultRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy with Key Vault's rules (see the module docstring)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(
            retry_total=limits.retry_total,
            retry_connect=limits.retry_total,
            retry_read=limits.retry_total,
            retry_status=limits.retry_total,
            retry_backoff_factor=limits.backoff_factor,
            retry_backoff_max=limits.backoff_max,
            timeout=limits.call_timeout,
        )
        self._max_retry_after = limits.max_retry_after

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(options)
        settings["methods"] = frozenset(settings["methods"]) | {"PATCH"}  # PATCH of attributes is idempotent
        return settings

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_request.method.upper() == "POST":
            return bool(settings["total"]) and response.http_response.status_code in _NOT_PROCESSED
        return bool(super().is_retry(settings, response))

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        attempts = len(settings["history"])  # the failures so far, this one included
        return min(float(settings["max_backoff"]), settings["backoff"] * 2 ** (attempts - 1)) if attempts else 0.0

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        after = super().get_retry_after(response)  # 0 for a negative value or a date in the past: backoff then
        return None if after is None else min(after, self._max_retry_after)


_REPLACED = "adp_keyvault_token_replaced"


class ReplaceRefusedToken(HTTPPolicy[HttpRequest, HttpResponse]):
    """A 401 answered to a bearer token: drop it from the process-wide cache and send once more (once a call)."""

    def __init__(self, credential: TokenCredential | None) -> None:
        super().__init__()
        self._credential = credential

    def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, HttpResponse]:
        response = self.next.send(request)
        if response.http_response.status_code != 401 or request.context.get(_REPLACED):
            return response
        scheme, _, token = str(request.http_request.headers.get("Authorization", "")).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return response
        refuse_token(self._credential, SCOPE, token)
        request.context[_REPLACED] = True
        return self.next.send(request)


class SharedTokenCredential:
    """The SDK's ``TokenCredential``, answered from ``providers._identity``'s process-wide cache.

    ``expires_on`` is reported as now: the SDK's challenge policy then asks here before every request, and the
    one cache decides (it refreshes five minutes before the real expiry, and forgets a token a vault refused).
    A CAE claims challenge goes to the credential itself, uncached.
    """

    def __init__(self, credential: TokenCredential | None) -> None:
        self._credential = credential

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        scope = scopes[0] if scopes else SCOPE
        if claims:
            credential = self._credential or default_credential()
            try:
                fresh = credential.get_token(scope, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae)
            except Exception as exc:
                text = str(exc).strip()
                raise CredentialFailed(scope, text.splitlines()[0] if text else type(exc).__name__) from None
            return AccessToken(fresh.token, int(fresh.expires_on))
        return AccessToken(bearer_token(self._credential, scope), int(time.time()))
