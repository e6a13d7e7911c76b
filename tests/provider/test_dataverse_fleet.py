"""The ApplicationUser provider at fleet scale, through ``python -m pulumi.dynamic`` over gRPC, against the emulator.

Requests per operation (issue 8 §1), counted from the emulator's request log: a no-op update sends nothing, one role
changed is one request, a refresh of N users one listing (``ceil(N / 5000)`` GETs) plus the catalog, and the
engine's parallel calls share requests. Then the names checked during preview (issue 7 §3), names that could
disguise another (issue 10 §0), tenant isolation (issue 10 §2) and the soft-deleted users users report (§6).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from adp_identity_emulator import Emulator
from adp_identity_emulator.log import LogEntry
from adp_identity_sandbox.provider_host import UNKNOWN, ProviderCallError, ProviderHost
from providers.dataverse.client import DataverseClient
from tests.provider.dataverse_support import (
    ENVIRONMENT,
    TENANT,
    admin,
    app,
    checked,
    client_as,
    dataverse_requests,
    declared,
    provider_host,
    writes,
)

pytestmark = [pytest.mark.grpc, pytest.mark.emulator]

BATCH, WEB, CLAIMS = "ffc-pay-batch", "ffc-pay-web", "ahwr-claims"
DEFRA = "Defra"
DEFRA_ENVIRONMENT = "defra-prd"


@pytest.fixture
def host(emulator: Emulator) -> Iterator[ProviderHost]:
    with provider_host(emulator) as h:
        yield h


def dataverse(emulator: Emulator) -> list[LogEntry]:
    return dataverse_requests(emulator)


# -- requests per operation -------------------------------------------------------------------------------------


def test_requests_per_operation(emulator: Emulator) -> None:
    with provider_host(emulator) as host:
        made: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        for short, roles, unit in (
            (BATCH, ["Basic User", "FFC Payments Reader", "FFC Payments Writer"], "ffc-payments"),
            (CLAIMS, ["Basic User", "AHWR Claims Processor"], "animal-health"),
        ):
            props = checked(host, declared(emulator, short, roles, unit))
            emulator.log.clear()
            user_id, outs = host.create(props)
            assert len(writes(emulator)) == 1  # create with k roles: ONE write request
            made[short] = (user_id, outs, props)

        user_id, outs, props = made[BATCH]
        emulator.log.clear()
        unchanged = host.update(user_id, outs, props)
        assert dataverse(emulator) == []  # a no-op update: no request at all while the snapshot is fresh

        news = checked(host, {**props, "security_roles": ["Basic User", "FFC Payments Reader"]})
        emulator.log.clear()
        host.update(user_id, unchanged, news)
        assert [(e.method, e.path.rsplit("/", 1)[-1]) for e in dataverse(emulator)] == [("POST", "$batch")]

    # a refresh in a new provider-host process (as `pulumi refresh` starts one): every user at once
    with provider_host(emulator) as host:
        emulator.log.clear()
        with ThreadPoolExecutor(max_workers=4) as pool:
            read = list(pool.map(lambda m: host.read(m[0], m[1], m[2]), made.values()))
        assert all(r[0] for r in read)
        tables = sorted(e.path.rsplit("/", 1)[-1] for e in dataverse(emulator))
        assert tables == ["businessunits", "roles", "systemusers"]  # ceil(N / 5000) = 1 listing + the catalog


def test_parallel_updates_share_one_batch_and_each_gets_its_own_result(emulator: Emulator, host: ProviderHost) -> None:
    made = []
    for short in (BATCH, WEB, CLAIMS):
        props = checked(host, declared(emulator, short, ["Basic User"], "ffc-payments"))
        user_id, outs = host.create(props)
        made.append((user_id, outs, props))
    emulator.log.clear()
    barrier = threading.Barrier(len(made))

    def update(item: tuple[str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        user_id, outs, props = item
        barrier.wait()
        return host.update(user_id, outs, {**props, "security_roles": ["Basic User", "FFC Payments Reader"]})

    with ThreadPoolExecutor(max_workers=len(made)) as pool:
        results = list(pool.map(update, made))
    assert all(r["security_roles"] == ["Basic User", "FFC Payments Reader"] for r in results)
    batches = writes(emulator)
    change_sets = sum(1 for b in batches for m, _p, _s in b.operations if m == "GET")  # one read-back per user
    assert change_sets == len(made)
    assert len(batches) < len(made)  # the engine's parallel calls shared requests (1 when they arrive together)


def test_a_failing_change_set_fails_only_its_own_resource(emulator: Emulator, host: ProviderHost) -> None:
    good = checked(host, declared(emulator, BATCH, ["Basic User"]))
    elevated = checked(host, declared(emulator, CLAIMS, ["Basic User", "System Administrator"]))
    barrier = threading.Barrier(2)

    def create(props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        barrier.wait()
        return host.create(props)

    with ThreadPoolExecutor(max_workers=2) as pool:
        created, refused = pool.submit(create, good), pool.submit(create, elevated)
        user_id, outs = created.result()
        with pytest.raises(ProviderCallError) as failure:
            refused.result()
    assert outs["security_roles"] == ["Basic User"] and user_id
    message = failure.value.last_line
    assert "System Administrator" in message and "0x80040220" in message and "403" in message
    state = emulator.dataverse(ENVIRONMENT)
    assert state.user_by_application_id(app(emulator, CLAIMS)) is None  # atomic: no half-made user


# -- names checked in preview -----------------------------------------------------------------------------------


def test_a_typo_fails_the_preview_naming_environment_role_and_closest_before_any_write(
    emulator: Emulator, host: ProviderHost
) -> None:
    emulator.log.clear()
    result = host.check(declared(emulator, BATCH, ["Basic User", "FFC Payments Readr"], "ffc-payments"))
    ((prop, reason),) = result.failures
    assert prop == "security_roles"
    assert "FFC Payments Readr" in reason and emulator.environment_url(ENVIRONMENT) in reason
    assert "ffc-payments" in reason and "'FFC Payments Reader'" in reason and "\n" not in reason
    unit = host.check(declared(emulator, BATCH, ["Basic User"], "ffc-paymnets"))
    assert [p for p, _ in unit.failures] == ["business_unit"] and "'ffc-payments'" in unit.failures[0][1]
    requests_ = dataverse(emulator)
    assert requests_ and all(e.method == "GET" for e in requests_)  # read-only
    assert sorted(e.path.rsplit("/", 1)[-1] for e in requests_) == ["businessunits", "businessunits", "roles", "roles"]
    assert emulator.dataverse(ENVIRONMENT).user_by_application_id(app(emulator, BATCH)) is None


def test_the_check_reads_the_catalog_once_per_environment_per_process(emulator: Emulator, host: ProviderHost) -> None:
    emulator.log.clear()
    for short in (BATCH, WEB, CLAIMS):
        checked(host, declared(emulator, short, ["Basic User"], "ffc-payments"))
    assert len(dataverse(emulator)) == 2
    host.create(checked(host, declared(emulator, BATCH, ["Basic User"])))
    assert [e.path.rsplit("/", 1)[-1] for e in dataverse(emulator)].count("roles") == 1  # shared with the writer


def test_the_preview_of_a_new_stack_skips_the_lookup(emulator: Emulator, host: ProviderHost) -> None:
    emulator.log.clear()
    unknown_url = host.check({**declared(emulator, BATCH, ["No Such Role"]), "environment_url": UNKNOWN})
    unknown_unit = host.check(declared(emulator, BATCH, ["No Such Role"], business_unit=UNKNOWN))
    unknown_roles = host.check(declared(emulator, BATCH, [UNKNOWN]))
    assert unknown_url.failures == [] and unknown_unit.failures == [] and unknown_roles.failures == []
    assert [e for e in dataverse(emulator) if e.path.endswith(("roles", "businessunits"))] == dataverse(emulator)
    assert len(dataverse(emulator)) <= 2  # only the known case read the catalog


def test_an_environment_that_cannot_be_read_lets_the_check_pass(emulator: Emulator, host: ProviderHost) -> None:
    emulator.faults.script("throttle", count=5, service="dataverse", method="GET", retry_after=600)
    result = host.check(declared(emulator, BATCH, ["No Such Role"]))
    assert result.failures == []  # not a typo: the deploy resolves every name again before its first write
    assert all(e.method == "GET" for e in dataverse(emulator))


@pytest.mark.parametrize(
    "name",
    ["Basic\u00a0User", "Basic  User", "Basic\tUser", "Basic\u200bUser"],
    ids=["no-break-space", "two-spaces", "tab", "zero-width-space"],
)
def test_a_disguised_name_is_refused_by_the_check_in_one_line(
    emulator: Emulator, host: ProviderHost, name: str
) -> None:
    emulator.log.clear()
    role = host.check(declared(emulator, BATCH, [name]))
    unit = host.check(declared(emulator, BATCH, ["Basic User"], business_unit=name.replace("Basic", "ffc")))
    for result, prop in ((role, "security_roles"), (unit, "business_unit")):
        ((failed, reason),) = result.failures
        assert failed == prop and "is refused" in reason and ("U+" in reason or "two spaces" in reason)
        assert "\n" not in reason
    assert dataverse(emulator) == []  # refused before any lookup


def test_a_name_in_another_case_resolves_to_the_real_role(emulator: Emulator, host: ProviderHost) -> None:
    _, outs = host.create(checked(host, declared(emulator, BATCH, ["basic user", "ffc payments READER"])))
    assert outs["security_roles"] == ["Basic User", "FFC Payments Reader"]


# -- tenant isolation -------------------------------------------------------------------------------------------


def test_a_credential_pointed_at_another_tenants_environment_is_refused_before_any_request(
    emulator: Emulator, host: ProviderHost
) -> None:
    defra_tenant = emulator.tenant(DEFRA).id
    defradev_tenant = emulator.tenant(TENANT).id
    props = {
        "environment_url": emulator.environment_url(DEFRA_ENVIRONMENT),
        "application_id": next(
            str(a.client_id) for a in emulator.tenant(DEFRA).applications if a.name == f"prdadpinfmi1401-{BATCH}"
        ),
        "security_roles": ["Basic User"],
        "tenant_id": defra_tenant,
    }
    emulator.log.clear()
    failed = host.check(props)
    assert [p for p, _ in failed.failures] == ["tenant_id"]
    with pytest.raises(ProviderCallError) as refused:
        host.create({**props, "disabled": False})
    message = refused.value.last_line
    assert "WrongTenant" in message and defra_tenant in message and defradev_tenant in message
    assert dataverse(emulator) == []  # not a single request reached the environment

    # the reverse: a Defra credential pointed at a DefraDev environment
    with provider_host(emulator, tenant=DEFRA) as defra_host:
        reverse = {**declared(emulator, BATCH, ["Basic User"]), "tenant_id": defradev_tenant}
        with pytest.raises(ProviderCallError) as reversed_:
            defra_host.create(reverse)
        assert "WrongTenant" in reversed_.value.last_line
    assert dataverse(emulator) == []

    # a stack that declares the wrong tenant for the environment its credential can reach
    misdeclared = {**declared(emulator, BATCH, ["Basic User"]), "tenant_id": defra_tenant}
    with pytest.raises(ProviderCallError) as wrong:
        host.create(misdeclared)
    assert "WrongTenant" in wrong.value.last_line and dataverse(emulator) == []


def test_the_same_credential_with_its_own_tenant_works_and_read_and_delete_keep_the_tenant(
    emulator: Emulator, host: ProviderHost
) -> None:
    tenant = emulator.tenant(TENANT).id
    props = checked(host, {**declared(emulator, BATCH, ["Basic User"]), "tenant_id": tenant.upper()})
    assert props["tenant_id"] == tenant
    user_id, outs = host.create(props)
    assert outs["tenant_id"] == tenant and outs["security_roles"] == ["Basic User"]
    _, read_outs, read_inputs = host.read(user_id, outs, props)
    assert read_outs["tenant_id"] == tenant and read_inputs is not None and read_inputs["tenant_id"] == tenant
    assert not host.diff(user_id, read_outs, props).has_changes
    host.delete(user_id, read_outs)
    assert emulator.dataverse(ENVIRONMENT).role_names(user_id) == []


# -- soft-deleted users -----------------------------------------------------------------------------------------


def _admin_client(emulator: Emulator, sleeps: list[float]) -> DataverseClient:
    return client_as(emulator, TENANT, ENVIRONMENT, application="adp-platform-admin", sleep=sleeps.append)


def test_a_soft_deleted_user_is_gone_to_refresh_and_stops_a_create_with_how_to_purge_it(
    emulator: Emulator, host: ProviderHost
) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    user_id, outs = host.create(props)
    centre = admin(emulator)
    centre.set_disabled(user_id, True)
    centre.delete_user(user_id)  # deleted in the admin centre: soft-deleted, not gone
    assert host.read(user_id, outs, props)[0] == ""  # to a refresh it is gone

    emulator.log.clear()
    with pytest.raises(ProviderCallError) as failure:
        host.create(props)
    message = failure.value.last_line
    assert "SoftDeletedUser" in message and user_id in message and "soft-deleted" in message
    assert f"DELETE {emulator.environment_url(ENVIRONMENT)}/api/data/v9.2/systemusers({user_id})" in message
    assert writes(emulator) == []  # refused before any write

    # the administrator purges it: the first attempt meets the user's own usersettings row (0x80048610) and is
    # tried again after a bounded wait; then the create goes through
    sleeps: list[float] = []
    assert _admin_client(emulator, sleeps).purge_soft_deleted_user(user_id) is True
    assert sleeps == [2.0]
    statuses = [e.status for e in dataverse(emulator) if e.method == "DELETE"]
    assert statuses == [400, 204]
    new_id, new_outs = host.create(props)
    assert new_id != user_id and new_outs["security_roles"] == ["Basic User"]


def test_a_purge_never_deletes_a_live_user(emulator: Emulator, host: ProviderHost) -> None:
    user_id, _ = host.create(checked(host, declared(emulator, BATCH, ["Basic User"])))
    emulator.log.clear()
    with pytest.raises(Exception, match="not soft-deleted"):
        _admin_client(emulator, []).purge_soft_deleted_user(user_id)
    assert [e.method for e in dataverse(emulator) if e.method != "GET"] == []
    assert emulator.dataverse(ENVIRONMENT).user(user_id) is not None


def _deployer_client(emulator: Emulator, tenant: str, environment: str, tenant_id: str) -> DataverseClient:
    return client_as(emulator, tenant, environment, tenant_id=tenant_id)


@pytest.mark.parametrize(
    ("tenant", "environment", "other"),
    [(TENANT, DEFRA_ENVIRONMENT, DEFRA), (DEFRA, ENVIRONMENT, TENANT)],
    ids=["defradev-credential-at-defra", "defra-credential-at-defradev"],
)
def test_in_process_a_credential_of_one_tenant_is_refused_by_the_others_environment(
    emulator: Emulator, tenant: str, environment: str, other: str
) -> None:
    emulator.log.clear()
    refused = _deployer_client(emulator, tenant, environment, emulator.tenant(other).id)
    with pytest.raises(Exception) as raised:
        refused.application_users()
    assert "\n" not in str(raised.value) and emulator.tenant(other).id in str(raised.value)
    assert dataverse(emulator) == []
    own = _deployer_client(emulator, other, environment, emulator.tenant(other).id)
    assert own.application_users()  # the environment's own tenant: read as usual
    assert dataverse(emulator)
