"""The Dataverse Web API (``/api/data/v9.2/``) of one environment: authentication, authorization, routing.

Who may call: a bearer token whose ``aud`` is exactly this environment's origin (else 401 with Dataverse's
``WWW-Authenticate`` challenge), from this environment's tenant, whose ``appid`` is an enabled application
user of the environment (else 403). What it may do: what its security roles' privileges allow (else 403
``0x80040220``). Then the request is served from :class:`DataverseEnvironment` under the environment's lock,
so concurrent requests see one consistent state and a ``$batch`` change set is atomic.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..http import Claims, Directory, EmuRequest, EmuResponse, InvalidToken, TokenVerifier
from . import errors, privileges
from .batch import BatchRun, parse_batch
from .errors import WebApiError
from .metadata import ENTITY_SET as ENTITY_DEFINITIONS
from .metadata import entity_definitions
from .odata import (
    MAX_PAGE_SIZE,
    QueryOptions,
    Segment,
    context_url,
    is_guid,
    make_skiptoken,
    order_rows,
    page_size,
    parse_path,
    parse_prefer,
    parse_query,
    parse_skiptoken,
    project,
    split_query,
)
from .rows import (
    BUSINESSUNIT,
    ROLE,
    SYSTEMUSER,
    TABLES,
    Table,
    business_unit_row,
    etag,
    role_row,
    systemuser_row,
)
from .state import ApplicationUser, DataverseEnvironment

API_PATH = "/api/data/v9.2/"
_ENTITY_ONLY = ("$select", "$expand")
_USER_ROLES = "systemuserroles_association"
_CREATE_COLUMNS = frozenset({"applicationid", "businessunitid@odata.bind", "isdisabled", "systemuserid"})


@dataclass(frozen=True)
class Caller:
    """The authenticated application user behind a request."""

    user: ApplicationUser
    privileges: frozenset[str]
    role_count: int
    claims: Claims
    system_administrator: bool = False  # holds every privilege there is, not only the ones this slice checks


class DataverseService:
    """Serves one environment's Web API; ``handle`` is thread-safe (one lock per environment)."""

    def __init__(
        self,
        state: DataverseEnvironment,
        *,
        origin: str,
        tenant_id: str,
        verify: TokenVerifier,
        directory: Directory,
        authority: str = "https://login.microsoftonline.com",
    ) -> None:
        self.state = state
        self.origin = origin.rstrip("/")
        self.tenant_id = tenant_id
        self.verify = verify
        self.directory = directory
        self.authority = authority.rstrip("/")
        self.base = f"{self.origin}{API_PATH}"

    # ------------------------------------------------------------------------------------------ entry
    def handle(self, req: EmuRequest) -> EmuResponse:
        with self.state.lock:
            try:
                response = self._handle(req)
            except WebApiError as error:
                response = self._error(error)
        response.headers.setdefault("OData-Version", "4.0")
        return response

    def _handle(self, req: EmuRequest) -> EmuResponse:
        if not req.path.startswith("/api/data/"):
            raise WebApiError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{req.path}'.")
        caller = self._authenticate(req)
        if not req.path.startswith(API_PATH):
            version = req.path[len("/api/data/") :].split("/")[0]
            raise WebApiError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{version}'.")
        return self._dispatch(req, caller, in_batch=False)

    @staticmethod
    def _error(error: WebApiError) -> EmuResponse:
        return EmuResponse.json(error.status, error.body(), error.headers)

    # ---------------------------------------------------------------------------------- authentication
    def _unauthorized(self, reason: str) -> WebApiError:
        challenge = (
            f"Bearer authorization_uri={self.authority}/{self.tenant_id}/oauth2/authorize, resource_id={self.origin}/"
        )
        return WebApiError(
            401,
            errors.ACCESS_TOKEN_EXPIRED,
            f"The requested resource requires authentication. ({reason})",
            {"WWW-Authenticate": challenge},
        )

    def _authenticate(self, req: EmuRequest) -> Caller:
        header = req.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthorized("no bearer token")
        try:
            claims = self.verify(token.strip(), self.origin)
        except InvalidToken as refused:
            if refused.wrong_tenant:
                raise errors.user_not_member() from None
            raise self._unauthorized(refused.reason) from None
        if str(claims.get("tid", "")).lower() != self.tenant_id.lower():
            raise errors.user_not_member()
        application_id = claims.get("appid") or claims.get("azp")
        user = self.state.user_by_application_id(str(application_id)) if application_id else None
        if user is None:
            raise errors.user_not_member()
        if user.disabled:
            raise WebApiError(
                403,
                errors.USER_NOT_ENABLED,
                f"The user with SystemUserId={user.id} in OrganizationContext={self.state.organization_id} is "
                "disabled. Disabled users cannot access the system. Consider enabling this user. Also, users are "
                "disabled if they don't have a license assigned to them.",
            )
        roles = self.state.roles_of(user.id)
        held = privileges.held_privileges((r.name, r.privileges) for r in roles)
        is_admin = any(r.name == privileges.SYSTEM_ADMINISTRATOR for r in roles)
        return Caller(user, held, len(roles), claims, is_admin)

    def _require(self, caller: Caller, privilege: str) -> None:
        if privilege not in caller.privileges:
            raise privileges.missing_privilege(
                user_id=caller.user.id,
                object_id=caller.user.object_id,
                business_unit_id=caller.user.business_unit_id,
                role_count=caller.role_count,
                privilege_count=len(caller.privileges),
                privilege=privilege,
            )

    def _refuse_elevation(self, caller: Caller, role_id: str) -> None:
        """A caller cannot hand out a role carrying privileges it does not hold itself (Microsoft Learn: "prevent
        elevation of security role privilege"). The exact error is undocumented: PrincipalPrivilegeDenied naming
        the role and the privileges missing (inferred)."""
        role = self.state.role(role_id)
        if role is None or caller.system_administrator:
            return  # the association itself answers the 404; a System Administrator holds every privilege
        wanted = privileges.held_privileges([(role.name, role.privileges)])
        missing = sorted(wanted - caller.privileges)
        if missing:
            raise WebApiError(
                403,
                errors.PRINCIPAL_PRIVILEGE_DENIED,
                f"Principal user (Id={caller.user.id}) cannot assign security role '{role.name}' (Id={role.id}): "
                f"the role holds privileges the principal does not hold ({', '.join(missing)}).",
            )

    # ----------------------------------------------------------------------------------------- routing
    def _dispatch(self, req: EmuRequest, caller: Caller, *, in_batch: bool) -> EmuResponse:
        try:
            return self._route(req, caller, in_batch=in_batch)
        except WebApiError as error:
            if not in_batch:
                raise
            return self._error(error)

    def _route(self, req: EmuRequest, caller: Caller, *, in_batch: bool) -> EmuResponse:
        segments = parse_path(req.path[len(API_PATH) :])
        method = req.method.upper()
        if not segments:
            self._only(method, "GET")
            return self._service_document()
        first = segments[0]
        if first.name == "$batch" and len(segments) == 1 and first.key is None:
            if in_batch:
                raise errors.query_error("A batch request cannot contain another batch request.")
            self._only(method, "POST")
            return self._batch(req, caller)
        if first.name == "WhoAmI" and len(segments) == 1:
            self._only(method, "GET")
            return self._who_am_i(caller)
        if first.name == ENTITY_DEFINITIONS and len(segments) == 1:
            # Table definitions: any authenticated, enabled application user may read them (no table privilege)
            self._only(method, "GET")
            status, body = entity_definitions(self.base, req.query, first)
            return EmuResponse.json(status, body)
        table = TABLES.get(first.name)
        if table is None:
            raise WebApiError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{first.name}'.")
        if len(segments) == 1 and first.key is None:
            if method == "GET":
                return self._list(req, caller, table)
            if method == "POST" and table is SYSTEMUSER:
                return self._create_user(req, caller)
            raise self._not_allowed(method)
        if len(segments) == 1:
            if method == "GET":
                return self._retrieve(req, caller, table, first)
            if method == "PATCH" and table is SYSTEMUSER:
                return self._update_user(req, caller, first)
            if method == "DELETE" and table is SYSTEMUSER:
                return self._delete_user(caller, first)
            raise self._not_allowed(method)
        if first.key is None:
            raise errors.query_error(f"Bad Request - Error in query syntax: '{first.name}' needs a key here.")
        if table is SYSTEMUSER and segments[1].name == _USER_ROLES:
            return self._user_roles(req, caller, first, segments[1:])
        if len(segments) == 2 and segments[1].name in table.navigations and segments[1].key is None:
            self._only(method, "GET")
            return self._retrieve_related(req, caller, table, first, segments[1].name)
        raise WebApiError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segments[1].name}'.")

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise self._not_allowed(method)

    @staticmethod
    def _not_allowed(method: str) -> WebApiError:
        return WebApiError(405, errors.QUERY_SYNTAX, f"The requested resource does not support http method '{method}'.")

    def _service_document(self) -> EmuResponse:
        sets = [{"name": name, "kind": "EntitySet", "url": name} for name in TABLES]
        return EmuResponse.json(200, {"@odata.context": f"{self.base}$metadata", "value": sets})

    def _who_am_i(self, caller: Caller) -> EmuResponse:
        return EmuResponse.json(
            200,
            {
                "@odata.context": f"{self.base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": caller.user.business_unit_id,
                "UserId": caller.user.id,
                "OrganizationId": self.state.organization_id,
            },
        )

    def _batch(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        items = parse_batch(req.headers.get("Content-Type") or "", req.body)
        run = BatchRun(req, self.state, lambda inner: self._dispatch(inner, caller, in_batch=True), API_PATH)
        return run.run(items)

    # ------------------------------------------------------------------------------------------- reads
    def _read_privilege(self, table: Table) -> str:
        return {
            "systemusers": privileges.READ_USER,
            "roles": privileges.READ_ROLE,
            "businessunits": privileges.READ_BUSINESS_UNIT,
        }[table.entity_set]

    def _user_row(self, user: ApplicationUser) -> dict[str, Any]:
        """The row of a user, soft-deleted ones included (``deletedstate`` 1 until purged)."""
        row = systemuser_row(self.state, user)
        row["deletedstate"] = user.deleted_state
        return row

    def _rows(self, table: Table) -> list[dict[str, Any]]:
        if table is SYSTEMUSER:
            return [self._user_row(u) for u in self.state.users]
        if table is ROLE:
            return [role_row(self.state, r) for r in self.state.roles]
        return [business_unit_row(self.state, b) for b in self.state.business_units]

    def _find(self, table: Table, segment: Segment) -> dict[str, Any]:
        """The full row a key segment names; 404 when there is none."""
        guid = segment.key_guid()
        alternate = segment.alternate_key()
        if guid is not None:
            if table is SYSTEMUSER and (user := self.state.user(guid)) is not None:
                return self._user_row(user)
            if table is ROLE and (role := self.state.role(guid)) is not None:
                return role_row(self.state, role)
            if table is BUSINESSUNIT and (unit := self.state.business_unit(guid)) is not None:
                return business_unit_row(self.state, unit)
            raise errors.not_found(table.logical_name, guid)
        if table is SYSTEMUSER and alternate is not None and alternate[0] == "azureactivedirectoryobjectid":
            if not is_guid(alternate[1]):
                raise errors.query_error(f"The key value '{alternate[1]}' is not a valid Edm.Guid.")
            user = self.state.user_by_object_id(alternate[1])
            if user is None:
                raise WebApiError(
                    404,
                    errors.OBJECT_DOES_NOT_EXIST,
                    "A record with the specified key values does not exist in systemuser entity",
                )
            return systemuser_row(self.state, user)
        if alternate is not None:
            raise errors.query_error(
                f"The key '{alternate[0]}' is not an alternate key of the '{table.logical_name}' table."
            )
        raise errors.query_error(f"Bad Request - Error in query syntax: invalid key '({segment.key})'.")

    def _list(self, req: EmuRequest, caller: Caller, table: Table) -> EmuResponse:
        self._require(caller, self._read_privilege(table))
        options = parse_query(req.query, table)
        self._require_expansions(caller, table, options)
        return self._collection(req, caller, table, self._rows(table), options)

    def _retrieve(self, req: EmuRequest, caller: Caller, table: Table, segment: Segment) -> EmuResponse:
        self._require(caller, self._read_privilege(table))
        options = parse_query(req.query, table, allow=_ENTITY_ONLY)
        self._require_expansions(caller, table, options)
        row = self._find(table, segment)
        body = {"@odata.context": context_url(self.base, table.entity_set, options, entity=True)}
        body.update(self._shape(req, table, row, options))
        return EmuResponse.json(200, body, self._annotation_header(req))

    def _retrieve_related(
        self, req: EmuRequest, caller: Caller, table: Table, segment: Segment, navigation: str
    ) -> EmuResponse:
        self._require(caller, self._read_privilege(table))
        target = TABLES[table.navigations[navigation].target]
        self._require(caller, self._read_privilege(target))
        options = parse_query(req.query, target, allow=_ENTITY_ONLY)
        related = self._related(table, self._find(table, segment), navigation)
        if not isinstance(related, dict):
            return EmuResponse.empty(204)
        body = {"@odata.context": context_url(self.base, target.entity_set, options, entity=True)}
        body.update(self._shape(req, target, related, options))
        return EmuResponse.json(200, body, self._annotation_header(req))

    def _require_expansions(self, caller: Caller, table: Table, options: QueryOptions) -> None:
        for item in options.expand:
            target = TABLES[table.navigations[item.navigation].target]
            self._require(caller, self._read_privilege(target))

    def _collection(
        self, req: EmuRequest, caller: Caller, table: Table, rows: list[dict[str, Any]], options: QueryOptions
    ) -> EmuResponse:
        prefer = parse_prefer(req.headers.get("Prefer"))
        matching = [r for r in rows if options.filter is None or options.filter(r)]
        matching = order_rows(matching, options, table)
        headers = self._annotation_header(req)
        size = page_size(prefer)
        if size is not None:
            headers["Preference-Applied"] = ", ".join(
                p for p in (headers.get("Preference-Applied"), f"odata.maxpagesize={size}") if p
            )
        elif options.top is not None:
            matching = matching[: options.top]  # $top is ignored when odata.maxpagesize is set (as documented)
        size = size or MAX_PAGE_SIZE
        page_number = 1
        remaining = matching
        if options.skiptoken is not None:
            page_number, last_key = parse_skiptoken(options.skiptoken, table)
            if options.orderby:
                remaining = matching[(page_number - 1) * size :]
            else:
                remaining = [r for r in matching if str(r[table.key]).lower() > last_key]
        page, rest = remaining[:size], remaining[size:]
        body: dict[str, Any] = {"@odata.context": context_url(self.base, table.entity_set, options)}
        if options.count:
            body["@odata.count"] = len(matching)
        body["value"] = [self._shape(req, table, row, options) for row in page]
        if rest:
            token = make_skiptoken(table, page_number, str(page[0][table.key]), str(page[-1][table.key]))
            query = "&".join([*options.passthrough, f"$skiptoken={token}"])
            body["@odata.nextLink"] = f"{self.origin}{req.path}?{query}"
        return EmuResponse.json(200, body, headers)

    # ------------------------------------------------------------------------------- shaping and expand
    def _shape(self, req: EmuRequest, table: Table, row: dict[str, Any], options: QueryOptions) -> dict[str, Any]:
        shaped = project(row, options.select, table)
        shaped = self._annotate(req, table, shaped)
        for item in options.expand:
            nav = table.navigations[item.navigation]
            target = TABLES[nav.target]
            related = self._related(table, row, item.navigation)
            if isinstance(related, list):
                chosen = [r for r in related if item.options.filter is None or item.options.filter(r)]
                chosen = order_rows(chosen, item.options, target)
                if item.options.top is not None:
                    chosen = chosen[: item.options.top]
                # A single-level collection expansion is not paged (up to 5000 rows).
                shaped[item.navigation] = [self._shape(req, target, r, item.options) for r in chosen[:MAX_PAGE_SIZE]]
            else:
                shaped[item.navigation] = None if related is None else self._shape(req, target, related, item.options)
        return shaped

    def _related(
        self, table: Table, row: dict[str, Any], navigation: str
    ) -> list[dict[str, Any]] | dict[str, Any] | None:
        if table is SYSTEMUSER and navigation == _USER_ROLES:
            return [role_row(self.state, r) for r in self.state.roles_of(row["systemuserid"])]
        column = {"businessunitid": "_businessunitid_value", "parentbusinessunitid": "_parentbusinessunitid_value"}[
            navigation
        ]
        unit = self.state.business_unit(row[column]) if row.get(column) else None
        return business_unit_row(self.state, unit) if unit is not None else None

    def _annotations_wanted(self, req: EmuRequest) -> list[str]:
        wanted = parse_prefer(req.headers.get("Prefer")).get("odata.include-annotations")
        return [p.strip() for p in wanted.split(",") if p.strip()] if wanted else []

    def _annotation_header(self, req: EmuRequest) -> dict[str, str]:
        wanted = parse_prefer(req.headers.get("Prefer")).get("odata.include-annotations")
        return {"Preference-Applied": f'odata.include-annotations="{wanted}"'} if wanted else {}

    def _annotate(self, req: EmuRequest, table: Table, shaped: dict[str, Any]) -> dict[str, Any]:
        """Lookup annotations (formatted value, navigation, logical name) when the caller asks for them."""
        patterns = self._annotations_wanted(req)
        if not patterns:
            return shaped

        def wanted(annotation: str) -> bool:
            return any(p == "*" or annotation.startswith(p.rstrip("*")) for p in patterns)

        annotated: dict[str, Any] = {}
        for column, value in shaped.items():
            lookup = table.lookups.get(column)
            if lookup is not None and value is not None:
                unit = self.state.business_unit(value)
                extra = {
                    "OData.Community.Display.V1.FormattedValue": unit.name if unit else None,
                    "Microsoft.Dynamics.CRM.associatednavigationproperty": lookup.navigation,
                    "Microsoft.Dynamics.CRM.lookuplogicalname": lookup.target_logical_name,
                }
                annotated.update({f"{column}@{name}": v for name, v in extra.items() if wanted(name)})
            annotated[column] = value
        return annotated

    # ------------------------------------------------------------------------------------------ writes
    def _json_body(self, req: EmuRequest, entity_set: str) -> dict[str, Any]:
        content_type = (req.headers.get("Content-Type") or "").lower()
        if not content_type.startswith("application/json"):
            raise WebApiError(
                415,
                errors.QUERY_SYNTAX,
                f"The content type '{content_type or 'none'}' is not supported; send 'Content-Type: application/json'.",
            )
        try:
            document = json.loads(req.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError) as problem:
            raise errors.payload_error(entity_set, f"The request body is not valid JSON: {problem}") from None
        if not isinstance(document, dict):
            raise errors.payload_error(entity_set, "The request body must be a JSON object.")
        return document

    def _entity_url(self, user_id: str) -> str:
        return f"{self.base}systemusers({user_id})"

    def _bound_id(self, value: Any, entity_set: str, target_set: str) -> str:
        """The GUID of ``/businessunits(<id>)`` (also relative or absolute); 400 for anything else."""
        text = value if isinstance(value, str) else ""
        path = text
        if "://" in text:
            split = urllib.parse.urlsplit(text)
            if f"{split.scheme}://{split.netloc}".lower() != self.origin.lower():
                raise errors.payload_error(entity_set, f"The URL '{text}' does not belong to this environment.")
            path = split.path
        if path.startswith(API_PATH):
            path = path[len(API_PATH) :]
        segments = parse_path(path.lstrip("/")) if path else []
        if len(segments) != 1 or segments[0].name != target_set or segments[0].key_guid() is None:
            raise errors.payload_error(
                entity_set, f"The value '{text}' is not a valid reference; expected '/{target_set}(<guid>)'."
            )
        guid = segments[0].key_guid()
        assert guid is not None
        return guid

    def _representation(
        self, req: EmuRequest, user: ApplicationUser, options: QueryOptions, status: int
    ) -> EmuResponse:
        body = {"@odata.context": context_url(self.base, "systemusers", options, entity=True)}
        body.update(self._shape(req, SYSTEMUSER, self._user_row(user), options))
        annotations = self._annotation_header(req).get("Preference-Applied")
        applied = ", ".join(p for p in ("return=representation", annotations) if p)
        return EmuResponse.json(status, body, {"Preference-Applied": applied})

    def _create_user(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        self._require(caller, privileges.CREATE_USER)
        options = parse_query(req.query, SYSTEMUSER, allow=_ENTITY_ONLY)
        body = self._json_body(req, "systemusers")
        for column in body:
            if column in _CREATE_COLUMNS or column.startswith("@odata."):
                continue
            if column in SYSTEMUSER.read_only:
                raise errors.not_valid_for_create("systemuser", column)
            raise errors.payload_error("systemusers", _no_property(column))
        application_id = body.get("applicationid")
        if not isinstance(application_id, str) or not is_guid(application_id):
            raise WebApiError(
                400,
                errors.INVALID_ARGUMENT,
                "An application user needs 'applicationid': the application (client) id of an Entra ID "
                f"application, as a GUID; got {json.dumps(application_id)}.",
            )
        user_id = body.get("systemuserid")
        if user_id is not None and (not isinstance(user_id, str) or not is_guid(user_id)):
            raise errors.payload_error("systemusers", f"Cannot convert the literal '{user_id}' to 'Edm.Guid'.")
        disabled = body.get("isdisabled", False)
        if not isinstance(disabled, bool):
            raise errors.payload_error("systemusers", f"Cannot convert the literal '{disabled}' to 'Edm.Boolean'.")
        if "businessunitid@odata.bind" in body:
            unit_id = self._bound_id(body["businessunitid@odata.bind"], "systemusers", "businessunits")
            if self.state.business_unit(unit_id) is None:
                raise errors.not_found("businessunit", unit_id)
        else:
            unit_id = self.state.root_business_unit.id
        principal = self.directory.service_principal(self.tenant_id, application_id)
        if principal is None:
            raise WebApiError(
                400,
                errors.INVALID_ARGUMENT,
                f"applicationid {application_id.lower()}: the tenant {self.tenant_id} has no service principal "
                "(enterprise application) for this application, so no application user can be created for it.",
            )
        user = self.state.create_application_user(
            application_id=application_id,
            object_id=principal.object_id,
            display_name=principal.display_name,
            business_unit_id=unit_id,
            user_id=user_id,
            disabled=disabled,
            created_by=caller.user.id,
        )
        if parse_prefer(req.headers.get("Prefer")).get("return") == "representation":
            return self._representation(req, user, options, 201)
        url = self._entity_url(user.id)
        return EmuResponse.empty(204, {"OData-EntityId": url, "Location": url})

    def _delete_user(self, caller: Caller, segment: Segment) -> EmuResponse:
        self._require(caller, privileges.DELETE_USER)
        self.state.delete_user(str(self._find(SYSTEMUSER, segment)["systemuserid"]))
        return EmuResponse.empty(204)

    def _update_user(self, req: EmuRequest, caller: Caller, segment: Segment) -> EmuResponse:
        self._require(caller, privileges.WRITE_USER)
        options = parse_query(req.query, SYSTEMUSER, allow=_ENTITY_ONLY)
        user = self.state.user(str(self._find(SYSTEMUSER, segment)["systemuserid"]))
        assert user is not None
        body = self._json_body(req, "systemusers")
        if_match = req.headers.get("If-Match")
        if if_match is not None and if_match.strip() != "*" and if_match.strip() != etag(user.version):
            raise WebApiError(
                412,
                errors.CONCURRENCY_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            )
        move_to: str | None = None
        disable: bool | None = None
        for column, value in body.items():
            if column == "isdisabled":
                if not isinstance(value, bool):
                    raise errors.payload_error("systemusers", f"Cannot convert the literal '{value}' to 'Edm.Boolean'.")
                disable = value
            elif column == "businessunitid@odata.bind":
                move_to = self._bound_id(value, "systemusers", "businessunits")
                if self.state.business_unit(move_to) is None:
                    raise errors.not_found("businessunit", move_to)
            elif column.startswith("@odata.") or (
                column == "applicationid" and isinstance(value, str) and value.lower() == user.application_id
            ):
                continue
            elif column in SYSTEMUSER.columns:
                raise errors.not_valid_for_update("systemuser", column)
            else:
                raise errors.payload_error("systemusers", _no_property(column))
        if move_to is not None:
            self.state.move_business_unit(user.id, move_to, by=caller.user.id)
        if disable is not None:
            self.state.set_disabled(user.id, disable, by=caller.user.id)
        self.state.touch(user.id, caller.user.id)
        if parse_prefer(req.headers.get("Prefer")).get("return") == "representation":
            return self._representation(req, user, options, 200)
        return EmuResponse.empty(204, {"OData-EntityId": self._entity_url(user.id)})

    # -------------------------------------------------------------------------------- role association
    def _user_roles(self, req: EmuRequest, caller: Caller, user_segment: Segment, rest: list[Segment]) -> EmuResponse:
        method = req.method.upper()
        navigation = rest[0]
        is_ref = len(rest) == 2 and rest[1].name == "$ref" and rest[1].key is None
        if len(rest) == 1 and navigation.key is None:
            self._only(method, "GET")
            self._require(caller, privileges.READ_USER)
            self._require(caller, privileges.READ_ROLE)
            options = parse_query(req.query, ROLE)
            user_row = self._find(SYSTEMUSER, user_segment)
            related = self._related(SYSTEMUSER, user_row, _USER_ROLES)
            assert isinstance(related, list)
            return self._collection(req, caller, ROLE, related, options)
        if not is_ref:
            raise WebApiError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{rest[-1].name}'.")
        if navigation.key is None and method == "GET":
            self._require(caller, privileges.READ_USER)
            user_row = self._find(SYSTEMUSER, user_segment)
            refs = [{"@odata.id": f"{self.base}roles({r.id})"} for r in self.state.roles_of(user_row["systemuserid"])]
            return EmuResponse.json(200, {"@odata.context": f"{self.base}$metadata#Collection($ref)", "value": refs})
        if navigation.key is None and method == "POST":
            self._require(caller, privileges.ASSIGN_ROLE)
            user_id = str(self._find(SYSTEMUSER, user_segment)["systemuserid"])
            body = self._json_body(req, "systemusers")
            role_id = self._bound_id(body.get("@odata.id"), "systemusers", "roles")
            self._refuse_elevation(caller, role_id)
            self.state.associate(user_id, role_id)
            self.state.touch(user_id, caller.user.id)
            return EmuResponse.empty(204)
        if method == "DELETE":
            self._require(caller, privileges.ASSIGN_ROLE)
            if navigation.key is not None:
                if req.query:
                    raise errors.query_error("No query options are allowed when the role is named in the URL.")
                named = navigation.key_guid()
                if named is None:
                    raise errors.query_error(f"Bad Request - Error in query syntax: invalid key '({navigation.key})'.")
                role_id = named
            else:
                role_id = self._ref_id(req)
            user_id = str(self._find(SYSTEMUSER, user_segment)["systemuserid"])
            self.state.disassociate(user_id, role_id)
            self.state.touch(user_id, caller.user.id)
            return EmuResponse.empty(204)
        raise self._not_allowed(method)

    def _ref_id(self, req: EmuRequest) -> str:
        """The role of ``DELETE .../systemuserroles_association/$ref?$id=<role URL>``."""
        pieces = split_query(req.query)
        ids = [value for name, value, _ in pieces if name == "$id"]
        if len(ids) != 1 or len(pieces) != 1:
            raise errors.query_error("Disassociating a collection-valued navigation property needs exactly one $id.")
        return self._bound_id(ids[0], "systemusers", "roles")


def _no_property(column: str) -> str:
    return (
        f"The property '{column}' does not exist on type 'Microsoft.Dynamics.CRM.systemuser'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type."
    )
