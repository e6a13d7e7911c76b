"""The recorded real Dataverse responses parse through the models' mapping functions (contract fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.dataverse.errors import UnexpectedResponse, UnknownBusinessUnit, UnknownSecurityRole
from providers.dataverse.models import (
    RoleCatalog,
    application_user_from_wire,
    business_unit_from_wire,
    collection_from_wire,
    security_role_from_wire,
)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded-dataverse"
RECORDED_BU = "1360fdcb-b6e1-ee11-904c-002248dad9c1"  # the business unit every recorded row points at


def _load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def test_recorded_roles_catalog_parses() -> None:
    rows = collection_from_wire(_load("roles-catalog.json"))
    roles = [security_role_from_wire(r) for r in rows]
    assert len(roles) == 72
    assert {r.business_unit_id for r in roles} == {RECORDED_BU}
    maker = next(r for r in roles if r.name == "Environment Maker")
    assert maker.id == "d58407f2-48d5-e711-a82c-000d3a37c848"
    assert maker.root_role_id == maker.id  # the root business unit's copy is its own root role

    root = {"businessunitid": RECORDED_BU.upper(), "name": "orgfceb6ae4", "_parentbusinessunitid_value": None}
    catalog = RoleCatalog.from_wire("https://orgfceb6ae4.crm17.dynamics.com", [root], rows)
    assert catalog.root.id == RECORDED_BU  # GUIDs are normalised to lower case
    assert catalog.resolve("environment maker") == maker.id
    assert len(catalog.roles_in(catalog.root)) == 72
    with pytest.raises(UnknownSecurityRole) as raised:
        catalog.resolve("Enviroment Maker")
    assert raised.value.closest[0] == "Environment Maker"


@pytest.mark.parametrize(
    ("name", "role_ids"),
    [
        (
            "systemuser-with-roles.json",
            {
                "00000000-0000-0000-0000-000000000002",
                "00000000-0000-0000-0000-000000000003",
                "00000000-0000-0000-0000-000000000004",
            },
        ),
        (
            "systemuser-before-update.json",
            {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"},
        ),
    ],
)
def test_recorded_systemuser_rows_parse(name: str, role_ids: set[str]) -> None:
    user = application_user_from_wire(_load(name))
    assert user.systemuser_id == "00000000-0000-0000-0000-000000000002"
    assert user.application_id is None  # recorded rows are interactive users
    assert user.full_name == "# Joh Doe"
    assert user.disabled is False
    assert user.business_unit_id == RECORDED_BU
    assert user.business_unit_name is None  # recorded without the business unit expanded
    assert set(user.roles) == role_ids
    assert all(n.startswith("Role ") for n in user.roles.values())


def test_recorded_filtered_collection_parses() -> None:
    rows = collection_from_wire(_load("systemusers-filtered.json"))
    assert len(rows) == 1
    user = application_user_from_wire(rows[0])
    assert user.systemuser_id == "00000000-0000-0000-0000-000000000002"
    assert len(user.roles) == 3


def test_application_user_row_with_business_unit_expanded() -> None:
    row = {
        "systemuserid": "AAAAAAAA-0000-0000-0000-000000000001",
        "applicationid": "bbbbbbbb-0000-0000-0000-000000000002",
        "fullname": "ffc-pay-batch",
        "isdisabled": True,
        "_businessunitid_value": "cccccccc-0000-0000-0000-000000000003",
        "systemuserroles_association": [],
        "businessunitid": {"businessunitid": "cccccccc-0000-0000-0000-000000000003", "name": "ffc-payments"},
    }
    user = application_user_from_wire(row)
    assert user.systemuser_id == "aaaaaaaa-0000-0000-0000-000000000001"
    assert user.application_id == "bbbbbbbb-0000-0000-0000-000000000002"
    assert user.business_unit_name == "ffc-payments"
    assert user.disabled is True
    assert user.roles == {}


@pytest.mark.parametrize(
    "row",
    [
        {"systemuserid": "x", "isdisabled": False, "_businessunitid_value": "y", "systemuserroles_association": []},
        {
            "isdisabled": False,
            "_businessunitid_value": "cccccccc-0000-0000-0000-000000000003",
            "systemuserroles_association": [],
        },
        {
            "systemuserid": "aaaaaaaa-0000-0000-0000-000000000001",
            "_businessunitid_value": "cccccccc-0000-0000-0000-000000000003",
            "systemuserroles_association": [],
        },
        {
            "systemuserid": "aaaaaaaa-0000-0000-0000-000000000001",
            "isdisabled": False,
            "_businessunitid_value": "cccccccc-0000-0000-0000-000000000003",
        },
    ],
    ids=["bad-guid", "no-id", "no-isdisabled", "roles-not-expanded"],
)
def test_malformed_user_rows_are_typed_errors(row: dict[str, Any]) -> None:
    with pytest.raises(UnexpectedResponse) as raised:
        application_user_from_wire(row)
    assert "\n" not in str(raised.value)


def test_collection_without_value_is_a_typed_error() -> None:
    with pytest.raises(UnexpectedResponse):
        collection_from_wire({"error": {"code": "0x0", "message": "no"}})


def test_business_unit_lookup_and_closest_names() -> None:
    units = [
        business_unit_from_wire(
            {
                "businessunitid": "11111111-0000-0000-0000-000000000001",
                "name": "defradev-dev",
                "_parentbusinessunitid_value": None,
            }
        ),
        business_unit_from_wire(
            {
                "businessunitid": "11111111-0000-0000-0000-000000000002",
                "name": "ffc-payments",
                "_parentbusinessunitid_value": "11111111-0000-0000-0000-000000000001",
            }
        ),
    ]
    catalog = RoleCatalog("https://org.crm11.dynamics.com", tuple(units), ())
    assert catalog.business_unit(None).name == "defradev-dev"
    assert catalog.business_unit("FFC-Payments").id.endswith("0002")
    with pytest.raises(UnknownBusinessUnit) as raised:
        catalog.business_unit("ffc-payment")
    error = raised.value
    assert error.closest == ("ffc-payments",)
    assert error.environment == "https://org.crm11.dynamics.com"
    assert str(error) == (
        "business unit 'ffc-payment' does not exist in environment https://org.crm11.dynamics.com; "
        "closest: 'ffc-payments'"
    )


def test_expanded_business_unit_tells_whether_the_user_sits_in_the_root_unit() -> None:
    from providers.dataverse.models import application_user_from_wire

    base = {
        "systemuserid": "00000000-0000-0000-0000-000000000002",
        "applicationid": "00000000-0000-0000-0000-00000000000a",
        "isdisabled": False,
        "_businessunitid_value": "00000000-0000-0000-0000-0000000000b1",
        "systemuserroles_association": [],
    }
    root = application_user_from_wire(
        {
            **base,
            "businessunitid": {
                "businessunitid": base["_businessunitid_value"],
                "name": "org",
                "_parentbusinessunitid_value": None,
            },
        }
    )
    child = application_user_from_wire(
        {
            **base,
            "businessunitid": {
                "businessunitid": base["_businessunitid_value"],
                "name": "ffc-payments",
                "_parentbusinessunitid_value": "00000000-0000-0000-0000-0000000000b0",
            },
        }
    )
    unexpanded = application_user_from_wire(base)
    assert (root.business_unit_is_root, child.business_unit_is_root, unexpanded.business_unit_is_root) == (
        True,
        False,
        None,
    )


# -- the business unit from the catalog, soft-deleted rows, disguised names ----------------------------------------


def _catalog() -> RoleCatalog:
    units = [
        {"businessunitid": RECORDED_BU, "name": "orgfceb6ae4", "_parentbusinessunitid_value": None},
        {"businessunitid": "2360fdcb-b6e1-ee11-904c-002248dad9c1", "name": "ffc-payments",
         "_parentbusinessunitid_value": RECORDED_BU},
    ]  # fmt: skip
    return RoleCatalog.from_wire(
        "https://orgfceb6ae4.crm17.dynamics.com", units, collection_from_wire(_load("roles-catalog.json"))
    )


def test_a_recorded_row_names_its_business_unit_from_the_catalog_without_expanding_it() -> None:
    row = _load("systemuser-with-roles.json")
    assert "businessunitid" not in row or not isinstance(row.get("businessunitid"), dict)
    user = application_user_from_wire(row, _catalog())
    assert (user.business_unit_name, user.business_unit_is_root) == ("orgfceb6ae4", True)
    assert user.deleted is False  # the recording's deletedstate is 0
    assert application_user_from_wire(row).business_unit_name is None  # without a catalog: unnamed, not guessed


def test_deletedstate_marks_a_soft_deleted_row() -> None:
    row = {**_load("systemuser-with-roles.json"), "deletedstate": 1}
    assert application_user_from_wire(row, _catalog()).deleted is True
    with pytest.raises(UnexpectedResponse, match="deletedstate"):
        application_user_from_wire({**row, "deletedstate": "1"})


@pytest.mark.parametrize(
    "name",
    ["System\u00a0Administrator", "System  Administrator", "System\tAdministrator", "System\u200bAdministrator",
     " System Administrator"],
    ids=["no-break-space", "two-spaces", "tab", "zero-width-space", "leading-space"],
)  # fmt: skip
def test_a_disguised_name_never_resolves_even_where_name_key_would_fold_it(name: str) -> None:
    catalog = _catalog()
    with pytest.raises(UnknownSecurityRole) as role:
        catalog.role(name)
    assert role.value.reason is not None and "is refused" in str(role.value) and "\n" not in str(role.value)
    with pytest.raises(UnknownBusinessUnit) as unit:
        catalog.business_unit(name.replace("System", "ffc").replace("Administrator", "payments"))
    assert unit.value.reason is not None


def test_another_case_resolves_to_the_real_role() -> None:
    catalog = _catalog()
    assert catalog.role("system administrator").name == "System Administrator"
    assert catalog.business_unit("FFC-PAYMENTS").name == "ffc-payments"
