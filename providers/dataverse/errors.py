"""Typed errors of the Dataverse Web API client and of role / business-unit resolution.

Every failure the client meets becomes one of these, so callers decide by type, never by parsing text::

    DataverseError                  status, method, url, code, message (+ environment)
    ├── WriteRefused                a read-only client was asked to write; nothing was sent
    ├── Unauthorized                401: no, expired or refused token (after one token refresh)
    │   ├── CredentialNotConfigured no credential is configured; ``missing`` names the AZURE_* variables
    │   └── CredentialRejected      Entra ID refused the credential; ``aadsts`` is its AADSTSnnnnnn code
    ├── Forbidden                   403: the caller lacks a Dataverse privilege, is disabled, or is in another tenant
    ├── NotFound                    404: the row (user, role, business unit) does not exist
    ├── Duplicate                   412 0x80040237: a record with matching key values already exists
    ├── Rejected                    any other 4xx the call did not accept (400 validation, 412 concurrency, ...)
    ├── Throttled                   429 / 503 still answered when the retry budget was spent; names the environment
    ├── ServerError                 5xx after the retries an idempotent call is allowed (none for a POST)
    ├── ConnectionFailed            no usable response; ``maybe_committed`` says whether the request may have run
    │   └── DeadlineExceeded        the operation's overall deadline passed (a trickling server, a long wait)
    ├── UnexpectedResponse          a status or body the call does not know how to read
    │   ├── Redirected              a 3xx: never followed, so the token never leaves the environment
    │   ├── ResponseTooLarge        a body over the size cap, counted before and after decompression
    │   └── EndlessPaging           @odata.nextLink repeated a page or went past the page limit
    ├── SoftDeletedUser             the application's user was deleted and waits, soft-deleted, to be purged
    └── UnknownName                 a name that resolution could not find (raised before any write)
        ├── UnknownSecurityRole     carries environment, business unit, the name and the closest role names
        └── UnknownBusinessUnit     carries environment, the name and the closest business unit names
                                    (both also refuse a disguised name: ``reason`` says why, see models.disguised_name)

``str(error)`` is always one line. Nothing here ever holds a token or an ``Authorization`` header: errors are
built only from the method, the URL (which never carries credentials) and Dataverse's own error body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from providers._identity import CredentialFailed, CredentialRefused, CredentialUnavailable

DUPLICATE_CODE = "0x80040237"  # "A record with matching key values already exists."
# "Can't delete a user which owns records": a permanent delete met the user's own usersettings row, which the
# platform provisions asynchronously after a role change (microsoft/terraform-provider-power-platform#1249).
# Nothing was deleted, so trying again after a moment is safe.
OWNS_RECORDS_CODE = "0x80048610"

_CONTROL = re.compile(r"[\s\x00-\x1f\x7f\u2028\u2029\x85]+")
_MESSAGE_MAX = 400


def one_line(text: str, limit: int = _MESSAGE_MAX) -> str:
    """Collapse line breaks and control characters (server messages carry them) and cap the length."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class DataverseError(Exception):
    """Base of every error of ``providers.dataverse``.

    ``status`` is the HTTP status (None when there was no response), ``code`` Dataverse's hexadecimal error code
    (``0x80040237``) when it sent one, ``message`` the server's (or our) explanation.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        code: str | None = None,
        environment: str | None = None,
    ) -> None:
        self.message = one_line(message)
        self.status = status
        self.method = method
        self.url = url
        self.code = code
        self.environment = environment
        super().__init__(self.message)

    def __str__(self) -> str:
        text = self.message
        if self.code:
            text += f" [{self.code}]"
        if self.method and self.url:
            text += f" ({self.method} {self.url}"
            text += f" -> {self.status})" if self.status is not None else ")"
        return one_line(text, limit=2 * _MESSAGE_MAX)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class WriteRefused(DataverseError):
    """A read-only client (``plan``, ``audit``, ``export``, preview's name check) was asked to write: nothing sent."""


class Unauthorized(DataverseError):
    """401, or no token could be obtained for the environment."""


class CredentialNotConfigured(Unauthorized):
    """No credential is configured for the process (azure-identity's "unavailable"): nothing reached Entra ID.

    ``missing`` lists the ``AZURE_*`` variables the chosen credential still needs (empty when the reason is not a
    variable, e.g. ``az login`` was never run).
    """

    def __init__(self, message: str, *, missing: Sequence[str] = (), environment: str | None = None) -> None:
        super().__init__(message, environment=environment)
        self.missing = tuple(missing)


class CredentialRejected(Unauthorized):
    """Entra ID refused the credential; ``aadsts`` is the code it gave (``AADSTS7000215``: wrong secret)."""

    def __init__(self, message: str, *, aadsts: str, environment: str | None = None) -> None:
        super().__init__(message, environment=environment)
        self.aadsts = aadsts


class Forbidden(DataverseError):
    """403: the caller is not an (enabled) user of the environment holding the needed privilege."""


class NotFound(DataverseError):
    """404: the row addressed does not exist."""


class Duplicate(DataverseError):
    """412 ``0x80040237``: creating or associating something that already exists."""


class Rejected(DataverseError):
    """A 4xx other than the ones above: the request was understood and refused."""


class ServerError(DataverseError):
    """A 5xx that retries (where allowed) did not get past."""


class UnexpectedResponse(DataverseError):
    """A status the call does not accept, or a body it cannot read."""


class Redirected(UnexpectedResponse):
    """A 3xx: the transport never follows one, so no request (and no token) goes to another origin.

    ``location`` is the origin (scheme, host, port) the answer pointed to, or None when it named none.
    """

    def __init__(
        self, *, status: int, method: str, url: str, environment: str, location: str | None, code: str | None = None
    ) -> None:
        where = f" to {location}" if location else ""
        super().__init__(
            f"Dataverse environment {environment} answered a redirect ({status}){where}; redirects are never followed",
            status=status,
            method=method,
            url=url,
            code=code,
            environment=environment,
        )
        self.location = location


class ResponseTooLarge(UnexpectedResponse):
    """A body over ``limit`` bytes: refused while reading, before (compressed) and after (decompressed) decoding."""

    def __init__(
        self, *, limit: int, read: int, what: str, status: int, method: str, url: str, environment: str
    ) -> None:
        super().__init__(
            f"Dataverse environment {environment} sent a body over the {limit:,}-byte limit ({what}); "
            f"stopped after {read:,} bytes",
            status=status,
            method=method,
            url=url,
            environment=environment,
        )
        self.limit = limit
        self.read = read


class Throttled(DataverseError):
    """Dataverse kept answering 429 / 503 beyond the retry budget (``max_retry_wait``)."""

    def __init__(
        self,
        *,
        environment: str,
        status: int,
        method: str,
        url: str,
        waited: float,
        budget: float,
        retry_after: float | None,
        code: str | None = None,
    ) -> None:
        asked = f"; it asked for {retry_after:g} s more" if retry_after is not None else ""
        what = "throttling requests" if status == 429 else "unavailable"
        message = (
            f"Dataverse environment {environment} kept {what} ({status}): gave up after waiting "
            f"{waited:g} s of the {budget:g} s retry budget{asked}"
        )
        super().__init__(message, status=status, method=method, url=url, code=code, environment=environment)
        self.waited = waited
        self.budget = budget
        self.retry_after = retry_after


class ConnectionFailed(DataverseError):
    """No usable response arrived.

    ``maybe_committed`` is True when the request reached (or may have reached) Dataverse, which may have
    processed it: the connection dropped after sending, the response was lost, or a gateway answered 502/504 to a
    POST. The caller must re-read before deciding to resend a non-idempotent request.
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_committed: bool,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        environment: str | None = None,
    ) -> None:
        if maybe_committed:
            message += "; the request may have been processed"
        super().__init__(message, status=status, method=method, url=url, environment=environment)
        self.maybe_committed = maybe_committed


class EndlessPaging(UnexpectedResponse):
    """A collection whose ``@odata.nextLink`` repeated a page already read, or went on past the page limit."""

    def __init__(self, message: str, *, pages: int, method: str, url: str, environment: str) -> None:
        super().__init__(message, method=method, url=url, environment=environment)
        self.pages = pages


class DeadlineExceeded(ConnectionFailed):
    """The operation (every attempt, wait and byte of it) did not finish within its overall deadline.

    A server trickling its headers or body, a Retry-After or pacing wait longer than the time left: the call ends
    here. ``maybe_committed`` follows ``ConnectionFailed``: True once a request may have reached Dataverse.
    """

    def __init__(
        self,
        message: str,
        *,
        deadline: float,
        maybe_committed: bool,
        method: str | None = None,
        url: str | None = None,
        environment: str | None = None,
    ) -> None:
        super().__init__(message, maybe_committed=maybe_committed, method=method, url=url, environment=environment)
        self.deadline = deadline


class SoftDeletedUser(DataverseError):
    """The application's user was deleted in the environment and still exists soft-deleted.

    Dataverse keeps a deleted user as a soft-deleted row (``deletedstate`` 1, disabled, no roles) and refuses a new
    application user for the same application (412 ``0x80040237``) until an administrator deletes that row
    permanently (power-platform ``admin/delete-users.md``; microsoft/terraform-provider-power-platform#623). The
    deploying identity cannot purge it (it holds no ``prvDeleteUser``, and a purge erases the user's name from the
    audit history), so this error says what to do instead. Raised before any write.
    """

    def __init__(self, *, environment: str, application_id: str, systemuser_id: str, full_name: str | None) -> None:
        self.application_id = application_id
        self.systemuser_id = systemuser_id
        self.full_name = full_name
        name = f"{full_name!r} " if full_name else ""
        text = (
            f"application user {name}({systemuser_id}) of application {application_id} was deleted in environment "
            f"{environment} and is still soft-deleted: Dataverse refuses a new one for that application until an "
            "administrator purges it (admin centre: Users > Filter 'Users not in AAD and soft deleted' > Delete; or "
            f"DELETE {environment}/api/data/v9.2/systemusers({systemuser_id}) once more), then run again; nothing "
            "was written"
        )
        super().__init__(text, status=412, code=DUPLICATE_CODE, environment=environment)
        self.message = one_line(text, 2 * _MESSAGE_MAX)  # names two ids and a URL: longer than most


class UnknownName(DataverseError):
    """A security role or business unit name that does not exist where it was looked up.

    ``reason`` (set instead of a lookup result) says why a declared name was refused outright: it holds whitespace
    other than single ASCII spaces, or an invisible or control character (``models.disguised_name``), so it could
    disguise another name.
    """

    kind = "name"

    def __init__(
        self,
        *,
        environment: str,
        business_unit: str | None,
        name: str,
        closest: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        self.business_unit = business_unit
        self.name = name
        self.closest = tuple(closest)
        self.reason = reason
        super().__init__(self._describe(environment), environment=environment)

    def _place(self, environment: str) -> str:
        return f"environment {environment}"

    def _describe(self, environment: str) -> str:
        if self.reason is not None:
            return (
                f"{self.kind} {self.name!r} is refused in {self._place(environment)}: it {self.reason} (a name holds "
                "single ASCII spaces between words and no invisible or control character)"
            )
        text = f"{self.kind} {self.name!r} does not exist in {self._place(environment)}"
        if self.closest:
            text += "; closest: " + ", ".join(repr(n) for n in self.closest)
        else:
            text += "; no similar names"
        return text


class UnknownSecurityRole(UnknownName):
    """The role name has no copy in the business unit the user sits in (or is being moved to)."""

    kind = "security role"

    def _place(self, environment: str) -> str:
        return f"business unit {self.business_unit!r} of environment {environment}"


class UnknownBusinessUnit(UnknownName):
    """No business unit of the environment has this name."""

    kind = "business unit"


def error_for_status(
    status: int,
    *,
    code: str | None,
    message: str,
    method: str,
    url: str,
    environment: str,
) -> DataverseError:
    """The typed error for a status the call did not accept (429/503 retries are decided by the caller)."""
    kind: type[DataverseError]
    if status == 401:
        kind = Unauthorized
    elif status == 403:
        kind = Forbidden
    elif status == 404:
        kind = NotFound
    elif status == 412 and (code or "").lower() == DUPLICATE_CODE:
        kind = Duplicate
    elif 400 <= status < 500:
        kind = Rejected
    elif status >= 500:
        kind = ServerError
    else:
        kind = UnexpectedResponse
    return kind(message, status=status, method=method, url=url, code=code, environment=environment)


def credential_error(failed: CredentialFailed, environment: str) -> Unauthorized:
    """The typed error of a credential that gave no token: not configured, refused by Entra ID, or otherwise."""
    message = f"could not get a token for {failed.scope}: {one_line(failed.detail, 300)}"
    if isinstance(failed, CredentialUnavailable):
        return CredentialNotConfigured(message, missing=failed.missing, environment=environment)
    if isinstance(failed, CredentialRefused):
        return CredentialRejected(message, aadsts=failed.aadsts, environment=environment)
    return Unauthorized(message, environment=environment)
