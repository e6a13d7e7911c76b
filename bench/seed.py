"""The benchmark's seed: the packaged ADP-shaped seed plus as many extra applications as the runs need.

Every create needs an application that has no application user yet, so the default seed's three service
identities are not enough. The extra applications are app registrations with a service principal in DefraDev and
no credential (they never sign in; the pipeline identity creates their application users). Their ids are derived
from their names, so two runs of the benchmark use the same ids.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import yaml

from adp_identity_emulator import DEFAULT_SEED
from adp_identity_emulator.seed import parse_seed
from adp_identity_emulator.seed_model import Seed

TENANT = "DefraDev"
APPLICATION_PREFIX = "bench-app-"
TEMPLATE_ENVIRONMENT = "defradev-tst"
_NAMESPACE = uuid.UUID("5f0f3c1e-2a7b-4d8e-9c41-adb1e4d1a401")  # fixed: the same ids on every run


def application_name(index: int) -> str:
    return f"{APPLICATION_PREFIX}{index:04d}"


def bench_seed(applications: int, *, extra_environments: tuple[str, ...] = ()) -> Seed:
    """The default seed with ``applications`` extra applications in DefraDev, validated by the seed loader.

    ``extra_environments``: more DefraDev environments (the fleet part needs three, the seed has two), each a copy
    of ``defradev-tst`` under its own name: the same business units below its own root unit, the same roles, and
    the pipeline and the platform administrator as its application users.
    """
    if applications < 0:
        raise ValueError("applications must not be negative")
    data: Any = yaml.safe_load(DEFAULT_SEED.read_text(encoding="utf-8"))
    tenant = next(t for t in data["tenants"] if t["name"] == TENANT)
    template = next(e for e in tenant["environments"] if e["name"] == TEMPLATE_ENVIRONMENT)
    for name in extra_environments:
        tenant["environments"].append(_copy_environment(template, name))
    for index in range(applications):
        name = application_name(index)
        tenant["applications"].append(
            {
                "name": name,
                "client_id": str(uuid.uuid5(_NAMESPACE, f"{name}/client")),
                "object_id": str(uuid.uuid5(_NAMESPACE, f"{name}/object")),
            }
        )
    return parse_seed(data, source=f"{DEFAULT_SEED.name} + {applications} benchmark applications")


def _copy_environment(template: dict[str, Any], name: str) -> dict[str, Any]:
    old_root = template["name"]
    units = [
        {"name": name if unit["name"] == old_root else unit["name"], **_parent(unit, old_root, name)}
        for unit in template["business_units"]
    ]
    return {**copy.deepcopy(template), "name": name, "business_units": units}


def _parent(unit: dict[str, Any], old_root: str, new_root: str) -> dict[str, str]:
    parent = unit.get("parent")
    if parent is None:
        return {}
    return {"parent": new_root if parent == old_root else parent}


def bench_application_ids(seed: Seed) -> list[str]:
    """Client ids of the extra applications, in order."""
    tenant = next(t for t in seed.tenants if t.name == TENANT)
    return [a.client_id for a in tenant.applications if a.name.startswith(APPLICATION_PREFIX)]
