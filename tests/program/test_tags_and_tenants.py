"""ADP's tags on every taggable resource, and the stack's tenant on every resource that talks to a tenant.

Tags (issue 10 §1, "the platform's tags on every taggable resource"): Azure resources take a mapping, Entra
applications and service principals a list of strings (``Key:Value``). The required keys are restated here, not
imported, so a change to them in ``infra/naming.py`` fails this test. Tenant ids (contract ``tenant_id``): the
Dataverse application users and the Key Vault certificates carry the stack's tenant, from its settings, so the
providers can refuse a credential of another tenant before any request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.program import mocks
from tests.program.mocks import (
    APPLICATION,
    APPLICATION_USER,
    IDENTITY,
    KV_CERTIFICATE,
    KV_SECRET,
    REPO,
    SERVICE_PRINCIPAL,
    ExistingIdentity,
    ProgramRun,
)

# ADP's tag keys (DEFRA/adp-aso-helm-library commonTags: ManagedBy, Restriction; DEFRA/adp-infrastructure-core
# default-tags.json: ServiceCode, ServiceName) and the owning team
REQUIRED_TAG_KEYS = ("ManagedBy", "Restriction", "ServiceCode", "ServiceName", "Team")
MAPPING_TAGGED = (IDENTITY, KV_SECRET)  # azure-native: tags is a mapping
LIST_TAGGED = (APPLICATION, SERVICE_PRINCIPAL)  # azuread: tags is a list of strings
# every type the program may register that has a `tags` input of its own (the rest have none to set)
TAGGABLE = frozenset({*MAPPING_TAGGED, *LIST_TAGGED})
UNTAGGABLE = frozenset(mocks.EXPECTED_CUSTOM_TYPES - TAGGABLE)


def _service_of(run: ProgramRun, urn: str) -> str:
    by_urn = run.by_urn()
    registration = by_urn[urn]
    while registration.type != mocks.SERVICE:
        registration = by_urn[registration.parent]
    return registration.name


def _platform_run(tmp_path: Path) -> ProgramRun:
    """defradev with every service's identity owned by the platform (what stays must still be tagged)."""
    root = mocks.copy_project(tmp_path)
    stacks = mocks.read_project(root).stack_config_dir / "defradev"
    existing: dict[tuple[str, str], ExistingIdentity] = {}
    for path in sorted(stacks.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec.setdefault("workload_identity", {})["owner"] = "platform"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        name = f"sndadpinfmi1401-{spec['service']}"
        existing["SNDADPINFRG1401", name] = ExistingIdentity(mocks.fake_guid(name, "c"), mocks.fake_guid(name, "p"))
    run = mocks.run_program(root, "defradev", platform_identities=existing)
    assert run.error is None, repr(run.error)
    return run


@dataclass
class Stack:
    run: ProgramRun
    tenant: dict[str, Any]  # adp-identity:tenant as the stack file holds it
    teams: dict[str, str]  # service -> team, from the service files


@pytest.fixture(scope="module", params=["defra", "defradev", "defradev-platform"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    name = str(request.param).split("-")[0]
    config = yaml.safe_load((REPO / "stacks" / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))["config"]
    teams = {
        path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))["team"]
        for path in sorted((REPO / "stacks" / name).glob("*.yaml"))
    }
    if request.param == "defradev-platform":
        run = _platform_run(tmp_path_factory.mktemp("platform"))
    else:
        run = mocks.run_program(REPO, name)
        assert run.error is None, repr(run.error)
    return Stack(run, config["adp-identity:tenant"], teams)


def test_every_taggable_registration_carries_adps_tags(stack: Stack) -> None:
    program = stack.run
    tagged = [r for r in program.registrations if r.type in TAGGABLE]
    # all four kinds occur (the platform-owned variant registers no identity)
    assert {r.type for r in tagged} == TAGGABLE - (set() if program.of_type(IDENTITY) else {IDENTITY})
    for registration in tagged:
        service = _service_of(program, registration.urn)
        wanted = {**stack.tenant["tags"], "ServiceName": service, "Team": stack.teams[service]}
        assert set(REQUIRED_TAG_KEYS) <= set(wanted)
        assert wanted["Restriction"] == "AUTOMATED CHANGES ONLY"
        tags = registration.inputs.get("tags")
        if registration.type in MAPPING_TAGGED:
            assert tags == wanted, registration.name
        else:
            assert tags == sorted(f"{key}:{value}" for key, value in wanted.items()), registration.name


def test_untaggable_registrations_have_no_tags_input(stack: Stack) -> None:
    """The other types take no `tags` input (the Key Vault certificate provider has none; RoleAssignment,
    FederatedIdentityCredential, ApplicationCertificate and the Dataverse user have none in their APIs)."""
    for registration in stack.run.registrations:
        if registration.type in UNTAGGABLE:
            assert "tags" not in registration.inputs, registration.name


def test_users_and_certificates_carry_the_stacks_tenant(stack: Stack) -> None:
    program, tenant = stack.run, stack.tenant
    targets = program.of_type(APPLICATION_USER) + program.of_type(KV_CERTIFICATE)
    assert program.of_type(APPLICATION_USER) and program.of_type(KV_CERTIFICATE)
    for registration in targets:
        assert registration.inputs["tenant_id"] == tenant["tenant_id"], registration.name
