"""``EntityDefinitions``: the table definitions (``EntityMetadata``) of the tables this slice serves.

Clients resolve a table's entity set through the metadata endpoint before their first query - Microsoft's Python
SDK (PowerPlatform-Dataverse-Client) sends ``GET EntityDefinitions?$select=LogicalName,EntitySetName,
PrimaryIdAttribute&$filter=LogicalName eq 'systemuser'`` and reads ``value[0].EntitySetName``. Served here, as
powerapps-docs documents them (``webapi/query-metadata-web-api.md``, ``webapi/retrieve-metadata-name-metadataid.md``):

- ``GET EntityDefinitions`` with ``$select`` and ``$filter`` (on the primitive properties); every match in one
  response, no paging; ``@odata.context`` is ``$metadata#EntityDefinitions(<selected>)``;
- ``GET EntityDefinitions(LogicalName='systemuser')`` (the alternate key) and ``EntityDefinitions(<MetadataId>)``,
  with ``$select``; ``@odata.context`` ends ``/$entity``;
- "The ``MetadataId`` property value is always returned."

The property values come from powerapps-docs ``reference/entities/{systemuser,role,businessunit}.md``
("Properties"). The ``MetadataId`` values are NOT Microsoft's (neither the documents nor the recorded traffic of
``tests/fixtures/recorded-dataverse/`` hold them): they are stable generated GUIDs, ``uuid5`` of the logical name
under :data:`_METADATA_NAMESPACE`, the same in every environment and every run. Only the six properties below
exist here; any other ``EntityMetadata`` property (``DisplayName``, ``Attributes``...) is refused as unknown.
An unknown table answers 404 ``0x80040217`` with the Organization service's message "Could not find an entity
with name ... and id ..." (inferred for the Web API).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .errors import OBJECT_DOES_NOT_EXIST, WebApiError, query_error
from .odata import QueryOptions, Segment, context_url, parse_query
from .rows import BUSINESSUNIT, ROLE, SYSTEMUSER, G, S, Table

ENTITY_SET = "EntityDefinitions"
_METADATA_NAMESPACE = uuid.UUID("a3c1f6e2-5b7d-4e0a-9c8f-2d4b6e8a0c13")
_EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

# EntityMetadata as a table, so $select and $filter use the same parser (and its errors) as the data tables.
ENTITY_METADATA = Table(
    "EntityMetadata",
    ENTITY_SET,
    "MetadataId",
    {
        "MetadataId": G,
        "LogicalName": S,
        "SchemaName": S,
        "EntitySetName": S,
        "PrimaryIdAttribute": S,
        "PrimaryNameAttribute": S,
    },
)


@dataclass(frozen=True)
class EntityDefinition:
    schema_name: str
    table: Table
    primary_name: str

    @property
    def metadata_id(self) -> str:
        return str(uuid.uuid5(_METADATA_NAMESPACE, self.table.logical_name))

    def row(self) -> dict[str, Any]:
        return {
            "MetadataId": self.metadata_id,
            "LogicalName": self.table.logical_name,
            "SchemaName": self.schema_name,
            "EntitySetName": self.table.entity_set,
            "PrimaryIdAttribute": self.table.key,
            "PrimaryNameAttribute": self.primary_name,
        }


DEFINITIONS: tuple[EntityDefinition, ...] = (
    EntityDefinition("SystemUser", SYSTEMUSER, "fullname"),
    EntityDefinition("Role", ROLE, "name"),
    EntityDefinition("BusinessUnit", BUSINESSUNIT, "name"),
)


def _project(row: dict[str, Any], options: QueryOptions) -> dict[str, Any]:
    if options.select is None:
        return dict(row)
    shaped = {column: row[column] for column in options.select}
    shaped.setdefault("MetadataId", row["MetadataId"])
    return shaped


def entity_definitions(base: str, query: str, segment: Segment) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of a GET on ``EntityDefinitions`` or ``EntityDefinitions(<key>)``."""
    if segment.key is None:
        options = parse_query(query, ENTITY_METADATA, allow=("$select", "$filter"))
        rows = [d.row() for d in DEFINITIONS]
        matching = [r for r in rows if options.filter is None or options.filter(r)]
        body: dict[str, Any] = {"@odata.context": context_url(base, ENTITY_SET, options)}
        body["value"] = [_project(r, options) for r in matching]
        return 200, body
    options = parse_query(query, ENTITY_METADATA, allow=("$select",))
    row = _find(segment).row()
    entity = {"@odata.context": context_url(base, ENTITY_SET, options, entity=True)}
    entity.update(_project(row, options))
    return 200, entity


def _find(segment: Segment) -> EntityDefinition:
    guid = segment.key_guid()
    if guid is not None:
        for definition in DEFINITIONS:
            if definition.metadata_id == guid:
                return definition
        raise _not_found("", guid)
    alternate = segment.alternate_key()
    if alternate is None or alternate[0] != "LogicalName":
        raise query_error(
            f"Bad Request - Error in query syntax: invalid key '({segment.key})'; "
            "use EntityDefinitions(<MetadataId>) or EntityDefinitions(LogicalName='<name>')."
        )
    name = alternate[1]
    for definition in DEFINITIONS:
        if definition.table.logical_name == name:
            return definition
    raise _not_found(name, _EMPTY_GUID)


def _not_found(name: str, metadata_id: str) -> WebApiError:
    return WebApiError(404, OBJECT_DOES_NOT_EXIST, f"Could not find an entity with name {name} and id {metadata_id}.")
