"""The benchmark's seed: the packaged ADP-shaped seed plus as many extra applications as the runs need.

Every create needs an application that has no application user yet, so the default seed's three service
identities are not enough. The extra applications are app registrations with a service principal in DefraDev and
no credential (they never sign in; the pipeline identity creates their application users). Their ids are derived
from their names, so two runs of the benchmark use the same ids.
"""

from __future__ import annotations

import uuid
from typing import Any

import yaml

from adp_identity_emulator import DEFAULT_SEED
from adp_identity_emulator.seed import parse_seed
from adp_identity_emulator.seed_model import Seed

TENANT = "DefraDev"
APPLICATION_PREFIX = "bench-app-"
_NAMESPACE = uuid.UUID("5f0f3c1e-2a7b-4d8e-9c41-adb1e4d1a401")  # fixed: the same ids on every run


def application_name(index: int) -> str:
    return f"{APPLICATION_PREFIX}{index:04d}"


def bench_seed(applications: int) -> Seed:
    """The default seed with ``applications`` extra applications in DefraDev, validated by the seed loader."""
    if applications < 0:
        raise ValueError("applications must not be negative")
    data: Any = yaml.safe_load(DEFAULT_SEED.read_text(encoding="utf-8"))
    tenant = next(t for t in data["tenants"] if t["name"] == TENANT)
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


def bench_application_ids(seed: Seed) -> list[str]:
    """Client ids of the extra applications, in order."""
    tenant = next(t for t in seed.tenants if t.name == TENANT)
    return [a.client_id for a in tenant.applications if a.name.startswith(APPLICATION_PREFIX)]
