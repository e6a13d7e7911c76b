"""The Dataverse error vocabulary: one exception carrying the HTTP status and the documented error code.

Dataverse answers every failure with ``{"error": {"code": "0x...", "message": "..."}}``. The codes and message
shapes below come from Microsoft's published error table (powerapps-docs
``developer/data-platform/reference/web-service-error-codes.md``) wherever it has one; the few places where the
emulator has to choose are marked "(chosen)".
"""

from __future__ import annotations

from typing import Any

OBJECT_DOES_NOT_EXIST = "0x80040217"  # ObjectDoesNotExist
DUPLICATE_RECORD = "0x80040237"  # DuplicateRecord: "A record with matching key values already exists."
PRINCIPAL_PRIVILEGE_DENIED = "0x80040220"  # PrincipalPrivilegeDenied
USER_NOT_ENABLED = "0x80040225"  # unManagedidsusernotenabled
USER_NOT_MEMBER_OF_ORG = "0x80072560"  # UserNotMemberOfOrg: "The user is not a member of the organization."
USER_IN_WRONG_BUSINESS = "0x80041409"  # UserInWrongBusiness
ACCESS_TOKEN_EXPIRED = "0x8005F101"  # AccessTokenExpired: "The requested resource requires authentication."
QUERY_SYNTAX = "0x80060888"  # OData URI / query option errors
RESOURCE_NOT_FOUND = "0x8006088a"  # "Resource not found for the segment '...'."
PAYLOAD_ERROR = "0x80048d19"  # "Error identified in Payload provided by the user for Entity ..."
INVALID_ARGUMENT = "0x80040203"  # InvalidArgument
INVALID_PAGING_COOKIE = "0x8004112A"  # QueryBuilderInvalidPagingCookie
NOT_VALID_FOR_UPDATE = "0x80041a02"  # unManagedidsxmlinvalidupdate: "A field that is not valid for update ..."
CONCURRENCY_MISMATCH = "0x80060882"  # ConcurrencyVersionMismatch
NOT_VALID_FOR_CREATE = "0x80041a01"  # unManagedidsxmlinvalidcreate: "A field that is not valid for create ..."


class WebApiError(Exception):
    """A refusal the service turns into ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(entity: str, record_id: str) -> WebApiError:
    return WebApiError(404, OBJECT_DOES_NOT_EXIST, f"{entity} With Id = {record_id} Does Not Exist")


def duplicate() -> WebApiError:
    return WebApiError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")


def query_error(message: str) -> WebApiError:
    return WebApiError(400, QUERY_SYNTAX, message)


def payload_error(entity_set: str, detail: str) -> WebApiError:
    return WebApiError(
        400,
        PAYLOAD_ERROR,
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on "
        f"this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
        f"InnerException : Microsoft.OData.ODataException: {detail}",
    )


def not_valid_for_update(entity: str, column: str) -> WebApiError:
    return WebApiError(
        400,
        NOT_VALID_FOR_UPDATE,
        f"A field that is not valid for update was specified: the '{column}' column of '{entity}' is read-only.",
    )


def not_valid_for_create(entity: str, column: str) -> WebApiError:
    return WebApiError(
        400,
        NOT_VALID_FOR_CREATE,
        f"A field that is not valid for create was specified: the '{column}' column of '{entity}' is read-only.",
    )


def user_not_member() -> WebApiError:
    return WebApiError(403, USER_NOT_MEMBER_OF_ORG, "The user is not a member of the organization.")
