"""``EntityDefinitions``: the table definitions real clients read before their first query.

In-process tests pin the shapes Microsoft documents (query-metadata-web-api.md, retrieve-metadata-name-metadataid.md,
the entity reference pages); over HTTPS, a client written the way Microsoft's SDKs work resolves the entity set
through EntityDefinitions and then queries it; and, when it is installed, Microsoft's own Python SDK
(PowerPlatform-Dataverse-Client) does the same against the emulator.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from adp_identity_emulator import Emulator
from adp_identity_emulator.dataverse.metadata import DEFINITIONS
from tests.emulator.dataverse_helpers import API, DEPLOYER, DISABLED_APP, ORIGIN, STRANGER, DataverseHarness, q
from tests.emulator.sessions import dataverse_session, secret_credential

# From powerapps-docs reference/entities/{systemuser,role,businessunit}.md, "Properties".
DOCUMENTED = {
    "systemuser": ("SystemUser", "systemusers", "systemuserid", "fullname"),
    "role": ("Role", "roles", "roleid", "name"),
    "businessunit": ("BusinessUnit", "businessunits", "businessunitid", "name"),
}
SIX = ("MetadataId", "LogicalName", "SchemaName", "EntitySetName", "PrimaryIdAttribute", "PrimaryNameAttribute")


@pytest.fixture
def dv() -> DataverseHarness:
    return DataverseHarness()


def _metadata_id(logical_name: str) -> str:
    return next(d.metadata_id for d in DEFINITIONS if d.table.logical_name == logical_name)


# -- in process: shapes -------------------------------------------------------------------------------------------


def test_the_collection_lists_the_three_tables_as_documented(dv: DataverseHarness) -> None:
    reply = dv.call("GET", "EntityDefinitions")
    assert reply.status == 200
    assert reply.json["@odata.context"] == f"{ORIGIN}{API}$metadata#EntityDefinitions"
    rows = {row["LogicalName"]: row for row in reply.json["value"]}
    assert set(rows) == set(DOCUMENTED)
    for logical_name, (schema, entity_set, primary_id, primary_name) in DOCUMENTED.items():
        row = rows[logical_name]
        assert tuple(row) == SIX
        assert (row["SchemaName"], row["EntitySetName"], row["PrimaryIdAttribute"], row["PrimaryNameAttribute"]) == (
            schema,
            entity_set,
            primary_id,
            primary_name,
        )
        assert str(uuid.UUID(row["MetadataId"])) == row["MetadataId"]
    assert len({row["MetadataId"] for row in rows.values()}) == 3


def test_metadata_ids_are_stable_across_environments_and_runs() -> None:
    first, second = DataverseHarness(), DataverseHarness()
    ids = [
        [row["MetadataId"] for row in harness.call("GET", "EntityDefinitions").json["value"]]
        for harness in (first, second)
    ]
    assert ids[0] == ids[1]
    assert ids[0][0] == str(uuid.uuid5(uuid.UUID("a3c1f6e2-5b7d-4e0a-9c8f-2d4b6e8a0c13"), "systemuser"))


def test_filter_on_logical_name_with_select_is_what_the_sdk_sends(dv: DataverseHarness) -> None:
    logical_name = q("LogicalName eq 'systemuser'")
    query = f"$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter={logical_name}"
    reply = dv.call("GET", f"EntityDefinitions?{query}")
    assert reply.status == 200
    assert reply.json == {
        "@odata.context": f"{ORIGIN}{API}$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute)",
        "value": [
            {
                "LogicalName": "systemuser",
                "EntitySetName": "systemusers",
                "PrimaryIdAttribute": "systemuserid",
                "MetadataId": _metadata_id("systemuser"),  # "always returned"
            }
        ],
    }


def test_filter_spaces_as_plus_and_no_match_is_an_empty_list(dv: DataverseHarness) -> None:
    plus = dv.call("GET", "EntityDefinitions?$filter=LogicalName+eq+'role'&$select=EntitySetName")
    assert [row["EntitySetName"] for row in plus.json["value"]] == ["roles"]
    account = q("LogicalName eq 'account'")
    none = dv.call("GET", f"EntityDefinitions?$filter={account}")
    assert none.status == 200 and none.json["value"] == []


def test_by_logical_name_and_by_metadata_id_answer_one_entity(dv: DataverseHarness) -> None:
    by_name = dv.call("GET", "EntityDefinitions(LogicalName='businessunit')?$select=EntitySetName,SchemaName")
    assert by_name.status == 200
    assert by_name.json == {
        "@odata.context": f"{ORIGIN}{API}$metadata#EntityDefinitions(EntitySetName,SchemaName)/$entity",
        "EntitySetName": "businessunits",
        "SchemaName": "BusinessUnit",
        "MetadataId": _metadata_id("businessunit"),
    }
    by_id = dv.call("GET", f"EntityDefinitions({_metadata_id('role')})")
    assert by_id.status == 200
    assert by_id.json["@odata.context"] == f"{ORIGIN}{API}$metadata#EntityDefinitions/$entity"
    assert (by_id.json["LogicalName"], by_id.json["PrimaryIdAttribute"]) == ("role", "roleid")


def test_unknown_tables_and_properties_are_refused(dv: DataverseHarness) -> None:
    missing = dv.call("GET", "EntityDefinitions(LogicalName='account')")
    assert missing.status == 404
    assert missing.error == {
        "code": "0x80040217",
        "message": "Could not find an entity with name account and id 00000000-0000-0000-0000-000000000000.",
    }
    assert dv.call("GET", f"EntityDefinitions({uuid.uuid4()})").status == 404
    unknown = dv.call("GET", "EntityDefinitions?$select=DisplayName")
    assert unknown.status == 400
    assert (
        "Could not find a property named 'DisplayName' on type 'Microsoft.Dynamics.CRM.EntityMetadata'"
        in (unknown.error["message"])
    )
    assert dv.call("GET", "EntityDefinitions(SchemaName='Role')").status == 400
    assert dv.call("GET", "EntityDefinitions?$top=1").status == 400
    assert dv.call("POST", "EntityDefinitions", {"LogicalName": "x"}).status == 405


def test_reading_definitions_needs_an_enabled_application_user(dv: DataverseHarness) -> None:
    anonymous = dv.call("GET", "EntityDefinitions", app=None)
    assert anonymous.status == 401
    assert dv.call("GET", "EntityDefinitions", app=STRANGER).error["code"] == "0x80072560"  # not a user here
    assert dv.call("GET", "EntityDefinitions", app=DISABLED_APP).error["code"] == "0x80040225"
    assert dv.call("GET", "EntityDefinitions", app=DEPLOYER).status == 200


# -- over HTTPS: resolve the entity set first, then query, as Microsoft's SDKs do ---------------------------------


def test_a_client_resolves_the_entity_set_through_entity_definitions_before_its_first_query(
    emulator: Emulator,
) -> None:
    """The request sequence of PowerPlatform-Dataverse-Client's ``records.list("systemuser")``: the definition by
    ``$filter=LogicalName eq ...`` (``_entity_set_from_schema_name``), then the entity set it names."""
    url = emulator.environment_url("defradev-dev")
    session = dataverse_session(emulator)
    emulator.log.clear()
    definitions = session.get(
        f"{url}{API}EntityDefinitions",
        params={
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute",
            "$filter": "LogicalName eq 'systemuser'",
        },
        timeout=10,
    )
    assert definitions.status_code == 200, definitions.text
    definition = definitions.json()["value"][0]
    rows = session.get(
        f"{url}{API}{definition['EntitySetName']}",
        params={"$select": f"{definition['PrimaryIdAttribute']},fullname"},
        timeout=10,
    )
    assert rows.status_code == 200, rows.text
    assert "adp-identity-pipeline" in {row["fullname"] for row in rows.json()["value"]}
    assert [e.path for e in emulator.log.filter(service="dataverse")] == [
        f"{API}EntityDefinitions",
        f"{API}systemusers",
    ]


def test_microsofts_python_sdk_works_against_the_emulator(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """PowerPlatform-Dataverse-Client (Microsoft's Python SDK, on PyPI as ``powerplatform-dataverse-client``),
    unchanged: it resolves each table through EntityDefinitions, then reads the rows."""
    client_module = pytest.importorskip(
        "PowerPlatform.Dataverse.client", reason="powerplatform-dataverse-client is not installed"
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle)  # its requests.Session trusts the environment
    url = emulator.environment_url("defradev-dev")
    pipeline = emulator.identity("DefraDev")
    emulator.log.clear()
    client: Any = client_module.DataverseClient(url, secret_credential(emulator))
    with client:
        table = client.tables.get("systemuser")
        users = client.records.list(
            "systemuser",
            select=["systemuserid", "fullname", "applicationid"],
            filter=f"applicationid eq {pipeline['client_id']}",
        )
        unit = client.records.list("businessunit", select=["name"], filter="_parentbusinessunitid_value eq null")
    assert table["entity_set_name"] == "systemusers"
    assert table["primary_id_attribute"] == "systemuserid"
    assert table["metadata_id"] == _metadata_id("systemuser")
    assert [record["fullname"] for record in users] == ["adp-identity-pipeline"]
    assert [record["name"] for record in unit] == ["defradev-dev"]
    paths = [e.path.removeprefix(API) for e in emulator.log.filter(service="dataverse")]
    assert paths[0] == "EntityDefinitions"  # the metadata first, before any row is read
    assert {"systemusers", "businessunits"} <= set(paths)
    assert all(e.status == 200 for e in emulator.log.filter(service="dataverse"))
