"""The checked-in JSON Schemas match the models, and the example files satisfy them.

The ``jsonschema`` package is not in the project's virtualenv, so full JSON Schema validation is skipped
(see `test_examples_validate_with_jsonschema_when_installed`). `_violations` below is a small structural
check of the parts these schemas use (``$ref``, ``anyOf``, objects with ``additionalProperties: false``,
``required``, ``patternProperties``, arrays, ``enum``, string ``pattern``/lengths, integer bounds); it is
tested against a broken example too, so it cannot pass vacuously.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adp_identity.desired.schema_files import SCHEMA_MODELS, render, stale_files
from adp_identity.desired.yamlsafe import read_yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
SERVICE_FILES = sorted((REPO / "stacks").glob("*/*.yaml"))
STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))


def test_checked_in_schemas_are_up_to_date() -> None:
    assert stale_files(SCHEMAS) == [], "run: adp-identity schema --write"
    for name in SCHEMA_MODELS:
        assert (SCHEMAS / name).read_text(encoding="utf-8") == render(name)


def test_a_stale_schema_is_detected(tmp_path: Path) -> None:
    for name in SCHEMA_MODELS:
        (tmp_path / name).write_text(render(name), encoding="utf-8")
    assert stale_files(tmp_path) == []
    (tmp_path / "service.schema.json").write_text(render("service.schema.json").replace("lower-kebab", "kebab"))
    (tmp_path / "tenant-settings.schema.json").unlink()
    assert stale_files(tmp_path) == ["service.schema.json", "tenant-settings.schema.json"]


def test_every_service_file_names_its_schema_for_editors() -> None:
    assert len(SERVICE_FILES) == 6
    for path in SERVICE_FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../schemas/service.schema.json", path


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _violations(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "") -> list[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        options = [_violations(value, option, root, path) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{path}: matches no anyOf option"]
    problems: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        problems += [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                problems += _violations(item, properties[key], root, f"{path}.{key}")
                continue
            matching = [p for p in patterns if re.search(p, key)]
            if matching:
                problems += _violations(item, patterns[matching[0]], root, f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                problems.append(f"{path}.{key}: additional property")
        if len(value) < schema.get("minProperties", 0):
            problems.append(f"{path}: too few properties")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{path}: too few items")
        for index, item in enumerate(value):
            problems += _violations(item, schema.get("items", {}), root, f"{path}[{index}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: not a string"]
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: does not match {schema['pattern']}")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            problems.append(f"{path}: length out of range")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: not an integer"]
        if not schema.get("minimum", value) <= value <= schema.get("maximum", value):
            problems.append(f"{path}: out of range")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: not a boolean")
    elif kind == "null" and value is not None:
        problems.append(f"{path}: not null")
    return problems


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def test_examples_satisfy_the_checked_in_schemas() -> None:
    service = _schema("service.schema.json")
    for path in SERVICE_FILES:
        assert _violations(read_yaml(path).data, service, service) == [], path
    tenant = _schema("tenant-settings.schema.json")
    for path in STACK_FILES:
        settings = read_yaml(path).data["config"]["adp-identity:tenant"]
        assert _violations(settings, tenant, tenant) == [], path


def test_the_structural_check_finds_what_the_schema_forbids() -> None:
    service = _schema("service.schema.json")
    data = read_yaml(REPO / "stacks/defradev/ffc-pay-batch.yaml").data
    data["dataverse"][0]["security_role"] = data["dataverse"][0].pop("security_roles")
    data["dataverse"][1]["principal"] = "service_principal"
    data["workload_identity"]["federations"][0]["namespace"] = "FFC_Pay"
    data["app_registration"]["certificate"]["validity_months"] = 13
    assert _violations(data, service, service) == [
        ".workload_identity.federations[0].namespace: does not match ^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?)$",
        ".app_registration: matches no anyOf option",
        ".dataverse[0].security_roles: required",
        ".dataverse[0].security_role: additional property",
        ".dataverse[1].principal: 'service_principal' not in enum",
    ]


def test_examples_validate_with_jsonschema_when_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not in the project's virtualenv")
    service = _schema("service.schema.json")
    for path in SERVICE_FILES:
        jsonschema.validate(read_yaml(path).data, service)
