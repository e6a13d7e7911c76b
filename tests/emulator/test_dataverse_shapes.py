"""The emulator's rows have the shape of rows recorded from a real Dataverse environment: same key names,
same JSON value types (a recorded null allows any type), key by key and nested."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.dataverse_helpers import DEPLOYER, DataverseHarness

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded-dataverse"
ROLES_EXPAND = "systemuserroles_association($select=roleid,name,ismanaged,_businessunitid_value)"


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def _same_shape(ours: Any, recorded: Any, where: str = "$") -> list[str]:
    """Differences in key names and value types; a recorded null accepts any value."""
    if recorded is None:
        return []
    if type(ours) is not type(recorded):
        return [f"{where}: {type(ours).__name__} where the recording has {type(recorded).__name__}"]
    problems: list[str] = []
    if isinstance(recorded, dict):
        missing = [k for k in recorded if k not in ours]
        extra = [k for k in ours if k not in recorded]
        problems += [f"{where}: missing {k}" for k in missing] + [f"{where}: extra {k}" for k in extra]
        for key in recorded:
            if key in ours:
                problems += _same_shape(ours[key], recorded[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        for index, item in enumerate(ours):
            problems += _same_shape(item, recorded[0], f"{where}[{index}]") if recorded else []
    return problems


def test_shape_checker_catches_differences() -> None:
    assert _same_shape({"a": 1, "b": "y", "c": None}, {"a": 2, "b": None, "c": None}) == []
    assert _same_shape({"b": None}, {"b": "x"}) == ["$.b: NoneType where the recording has str"]
    assert _same_shape({"a": "1"}, {"a": 2}) == ["$.a: str where the recording has int"]
    assert _same_shape({"a": True}, {"a": 1}) == ["$.a: bool where the recording has int"]
    assert _same_shape({"a": 1, "z": 0}, {"a": 1, "b": None}) == ["$: missing b", "$: extra z"]
    assert _same_shape({"v": [{"x": 1}]}, {"v": [{"x": "s"}]}) == ["$.v[0].x: int where the recording has str"]


@pytest.fixture
def dv() -> DataverseHarness:
    harness = DataverseHarness()
    deployer = harness.user_id(DEPLOYER)
    harness.state.associate(deployer, harness.state.role_id("Basic User"))
    return harness


@pytest.mark.parametrize("recording", ["systemuser-with-roles.json", "systemuser-before-update.json"])
def test_systemuser_row_matches_recording(dv: DataverseHarness, recording: str) -> None:
    recorded = _recorded(recording)
    reply = dv.call("GET", f"systemusers({dv.user_id(DEPLOYER)})?$expand={ROLES_EXPAND}")
    assert reply.status == 200
    ours = reply.json
    assert ours.pop("@odata.context").endswith("/$entity")  # recorder dropped the context annotation
    assert list(ours) == list(recorded)  # same columns, same order
    assert _same_shape(ours, recorded) == []
    assert len(ours["systemuserroles_association"]) == 2
    # what distinguishes an application user from the recorded interactive one
    assert ours["accessmode"] == 4
    assert ours["applicationid"] == DEPLOYER[1]


def test_filtered_systemusers_collection_matches_recording(dv: DataverseHarness) -> None:
    recorded = _recorded("systemusers-filtered.json")
    reply = dv.call("GET", f"systemusers?$filter=applicationid eq {DEPLOYER[1]}&$expand={ROLES_EXPAND}")
    ours = reply.json
    assert set(recorded) <= set(ours)
    assert ours["@odata.context"].endswith(
        "$metadata#systemusers(systemuserroles_association(roleid,name,ismanaged,_businessunitid_value))"
    )
    assert len(ours["value"]) == 1
    assert _same_shape(ours["value"], recorded["value"]) == []


def test_roles_collection_matches_recording(dv: DataverseHarness) -> None:
    recorded = _recorded("roles-catalog.json")
    root = dv.state.root_business_unit.id
    reply = dv.call("GET", f"roles?$filter=_businessunitid_value eq {root}")
    ours = reply.json
    assert set(ours) == set(recorded) == {"@odata.context", "value"}
    assert ours["@odata.context"].endswith("$metadata#roles")
    assert len(ours["value"]) == 4
    for row in ours["value"]:
        assert list(row) == list(recorded["value"][0])
        assert _same_shape(row, recorded["value"][0]) == []
        assert row["_parentrootroleid_value"] == row["roleid"]  # as recorded: root-unit roles are their own root


def test_child_unit_roles_point_at_their_parent_copies(dv: DataverseHarness) -> None:
    child = dv.state.business_unit_id("ffc-payments")
    rows = dv.call("GET", f"roles?$filter=_businessunitid_value eq {child}").json["value"]
    root_ids = {dv.state.role_id(r["name"]) for r in rows}
    assert {r["_parentrootroleid_value"] for r in rows} == root_ids
    assert {r["_parentroleid_value"] for r in rows} == root_ids  # the parent unit is the root here
