"""The checked-in JSON Schemas (``schemas/*.schema.json``), generated from the pydantic models.

Editors validate service files against ``schemas/service.schema.json`` through the
``# yaml-language-server: $schema=../../schemas/service.schema.json`` comment at the top of each file. The
files are generated, never edited: ``adp-identity schema --write`` regenerates them and ``--check`` (and a
test) fails when they no longer match the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from adp_identity.desired.schema import ServiceSpec, TenantSettings

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "service.schema.json": ServiceSpec,
    "tenant-settings.schema.json": TenantSettings,
}
_COMMENTS = {
    "service.schema.json": "A service file: stacks/<stack>/<service>.yaml.",
    "tenant-settings.schema.json": "The value of the Pulumi config key adp-identity:tenant in "
    "stacks/Pulumi.<stack>.yaml.",
}


def render(name: str) -> str:
    """The text of one schema file (stable: same models, same bytes)."""
    document = {
        "$schema": DRAFT,
        "$comment": f"{_COMMENTS[name]} Generated from adp_identity/desired/schema.py by "
        "`adp-identity schema --write`; do not edit.",
        **SCHEMA_MODELS[name].model_json_schema(mode="validation"),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def stale_files(schemas_dir: Path) -> list[str]:
    """Names of schema files missing from `schemas_dir` or different from what the models generate."""
    stale: list[str] = []
    for name in SCHEMA_MODELS:
        path = schemas_dir / name
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            stale.append(name)
            continue
        if current != render(name):
            stale.append(name)
    return stale


def write_all(schemas_dir: Path) -> list[Path]:
    """(Re)write every schema file; returns the paths written."""
    schemas_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in SCHEMA_MODELS:
        path = schemas_dir / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written
