"""The ApplicationUser provider driven through ``python -m pulumi.dynamic`` over gRPC, against the emulator.

Exactly what ``pulumi up`` does: the engine starts the host, sends Configure, then Check/Diff/Create/Read/Update/
Delete with the serialized provider in ``__provider``. Tokens come from the real azure-identity
WorkloadIdentityCredential (``AZURE_TOKEN_CREDENTIALS=WorkloadIdentityCredential`` + a federated token file), and
every request is counted in the emulator's log.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from adp_identity_emulator import Emulator
from adp_identity_sandbox.provider_host import UNKNOWN, ProviderCallError, ProviderHost
from tests.provider.dataverse_support import (
    ENVIRONMENT,
    admin,
    app,
    checked,
    client_id,
    dataverse_requests,
    declared,
    provider_host,
    writes,
)

pytestmark = [pytest.mark.grpc, pytest.mark.emulator]

BATCH = "ffc-pay-batch"
WEB = "ffc-pay-web"  # seeded as a hand-made user: disabled, in animal-health, with System Administrator
CLAIMS = "ahwr-claims"


@pytest.fixture
def host(emulator: Emulator) -> Iterator[ProviderHost]:
    with provider_host(emulator) as h:
        yield h


def inner_writes(emulator: Emulator) -> list[tuple[str, str]]:
    """(method, last path segment) of every write, the requests inside each ``$batch`` included (in order)."""
    found: list[tuple[str, str]] = []
    for entry in writes(emulator):
        if entry.path.endswith("$batch"):
            found += [(m, p.rsplit("/", 1)[-1]) for m, p, _ in entry.operations if m != "GET"]
        else:
            found.append((entry.method, entry.path.rsplit("/", 1)[-1]))
    return found


# -- create -----------------------------------------------------------------------------------------------------


def test_create_makes_the_user_with_exactly_the_declared_roles_in_the_declared_business_unit(
    emulator: Emulator, host: ProviderHost
) -> None:
    state = emulator.dataverse(ENVIRONMENT)
    assert state.user_by_application_id(app(emulator, BATCH)) is None
    emulator.log.clear()

    inputs = checked(host, declared(emulator, BATCH, ["FFC Payments Reader", "Basic User"], "ffc-payments"))
    user_id, outs = host.create(inputs)

    user = state.user_by_application_id(app(emulator, BATCH))
    assert user is not None and user.id == user_id
    assert state.role_names(user_id) == ["Basic User", "FFC Payments Reader"]
    assert user.business_unit_id == state.business_unit_id("ffc-payments")
    assert outs["systemuser_id"] == user_id
    assert outs["security_roles"] == ["Basic User", "FFC Payments Reader"]
    assert outs["business_unit"] == "ffc-payments" and outs["business_unit_id"] == user.business_unit_id
    assert outs["root_business_unit"] is False
    assert outs["disabled"] is False
    assert outs["full_name"] == "sndadpinfmi1401-ffc-pay-batch"
    assert sorted(outs["security_role_ids"]) == sorted(r.id for r in state.roles_of(user_id))
    # The request budget: ONE write request (a $batch change set: the create and both associations, atomic);
    # the catalog once per process (read by check, which resolves the names during preview).
    methods = [(e.method, e.path.rsplit("/", 1)[-1]) for e in writes(emulator)]
    assert methods == [("POST", "$batch")], methods
    assert inner_writes(emulator) == [("POST", "systemusers"), ("POST", "$ref"), ("POST", "$ref")]
    gets = [e.path.rsplit("/", 1)[-1] for e in dataverse_requests(emulator) if e.method == "GET"]
    assert gets.count("businessunits") == 1 and gets.count("roles") == 1


def test_the_catalog_is_read_once_per_process_not_per_user(emulator: Emulator, host: ProviderHost) -> None:
    host.create(checked(host, declared(emulator, BATCH, ["Basic User"])))
    emulator.log.clear()
    host.create(checked(host, declared(emulator, CLAIMS, ["Basic User", "AHWR Claims Processor"], "animal-health")))
    paths = [e.path.rsplit("/", 1)[-1] for e in dataverse_requests(emulator)]
    assert "businessunits" not in paths and "roles" not in paths
    assert len(writes(emulator)) == 1  # the create and the two associations: one change set


def test_create_adopts_a_hand_made_user_instead_of_failing(emulator: Emulator, host: ProviderHost) -> None:
    state = emulator.dataverse(ENVIRONMENT)
    existing = state.user_by_application_id(app(emulator, WEB))
    assert existing is not None and existing.disabled
    assert state.role_names(existing.id) == ["System Administrator"]
    assert existing.business_unit_id == state.business_unit_id("animal-health")

    user_id, outs = host.create(
        checked(host, declared(emulator, WEB, ["Basic User", "FFC Payments Writer"], "ffc-payments"))
    )

    assert user_id == existing.id  # adopted, not a second user (Dataverse would answer 412)
    user = state.user(user_id)
    assert not user.disabled
    assert user.business_unit_id == state.business_unit_id("ffc-payments")
    assert state.role_names(user_id) == ["Basic User", "FFC Payments Writer"]  # System Administrator is gone
    assert outs["security_roles"] == ["Basic User", "FFC Payments Writer"]
    assert [u for u in state.users if u.application_id == app(emulator, WEB)] == [user]


# -- read, drift, update ------------------------------------------------------------------------------------------


def test_drift_made_by_hand_is_seen_by_read_and_shown_as_a_diff(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"], "ffc-payments"))
    user_id, outs = host.create(props)
    admin(emulator).grant(user_id, "System Administrator")

    emulator.log.clear()
    read_id, read_outs, read_inputs = host.read(user_id, outs, props)

    assert read_id == user_id
    assert read_outs["security_roles"] == ["Basic User", "System Administrator"]
    assert read_inputs is not None and read_inputs["security_roles"] == ["Basic User", "System Administrator"]
    assert len(dataverse_requests(emulator)) == 1  # reading one user with its business unit and roles = 1 request
    diff = host.diff(user_id, read_outs, props)
    assert diff.has_changes and diff.replaces == []
    assert not host.diff(user_id, outs, props).has_changes  # before the refresh, state and code agreed


def test_update_sends_only_the_difference(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User", "FFC Payments Reader"], "ffc-payments"))
    user_id, outs = host.create(props)
    state = emulator.dataverse(ENVIRONMENT)

    emulator.log.clear()
    unchanged = host.update(user_id, outs, props)
    assert writes(emulator) == []  # an update that changes nothing = 0 writes
    assert unchanged["security_roles"] == ["Basic User", "FFC Payments Reader"]

    emulator.log.clear()
    news = checked(host, {**props, "security_roles": ["Basic User", "FFC Payments Writer"]})
    assert host.diff(user_id, unchanged, news).has_changes
    updated = host.update(user_id, unchanged, news)
    assert len(writes(emulator)) == 1  # one role added and one removed = 1 write
    assert state.role_names(user_id) == ["Basic User", "FFC Payments Writer"]
    assert updated["security_roles"] == ["Basic User", "FFC Payments Writer"]


def test_drift_is_corrected_by_update(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    user_id, outs = host.create(props)
    centre = admin(emulator)
    centre.grant(user_id, "System Administrator")
    centre.set_disabled(user_id, True)
    _, read_outs, _ = host.read(user_id, outs, props)
    assert read_outs["disabled"] is True

    emulator.log.clear()
    fixed = host.update(user_id, read_outs, props)
    assert fixed["security_roles"] == ["Basic User"] and fixed["disabled"] is False
    assert centre.role_names(user_id) == ["Basic User"]
    assert len(writes(emulator)) == 1  # one change set: enable, then the one role removed
    assert inner_writes(emulator) == [("PATCH", f"systemusers({user_id})"), ("DELETE", "$ref")]


def test_business_unit_move_reassigns_roles_from_the_new_unit(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, CLAIMS, ["Basic User", "AHWR Claims Processor"], "animal-health"))
    user_id, outs = host.create(props)
    state = emulator.dataverse(ENVIRONMENT)

    news = checked(host, {**props, "business_unit": "ffc-payments"})
    assert host.diff(user_id, outs, news).has_changes
    emulator.log.clear()
    moved = host.update(user_id, outs, news)

    unit = state.business_unit_id("ffc-payments")
    assert state.user(user_id).business_unit_id == unit
    assert {r.business_unit_id for r in state.roles_of(user_id)} == {unit}
    assert state.role_names(user_id) == ["AHWR Claims Processor", "Basic User"]
    assert moved["business_unit"] == "ffc-payments"
    # ONE atomic change set: the move (which strips every role), then both re-assigned from the new unit
    assert len(writes(emulator)) == 1
    assert inner_writes(emulator) == [("PATCH", f"systemusers({user_id})"), ("POST", "$ref"), ("POST", "$ref")]


def test_a_business_unit_left_out_means_root_and_never_shows_as_a_change(
    emulator: Emulator, host: ProviderHost
) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    assert "business_unit" not in props
    user_id, outs = host.create(props)
    assert outs["business_unit"] == ENVIRONMENT and outs["root_business_unit"] is True
    assert not host.diff(user_id, outs, props).has_changes
    _, read_outs, read_inputs = host.read(user_id, outs, props)
    assert not host.diff(user_id, read_outs, props).has_changes
    assert read_inputs is not None
    # the root unit named explicitly is the same unit: no change either
    assert not host.diff(user_id, read_outs, {**props, "business_unit": ENVIRONMENT}).has_changes
    # but a user moved out of the root behind our back is drift, even with the same role names re-granted there
    state = emulator.dataverse(ENVIRONMENT)
    state.move_business_unit(user_id, "animal-health")
    state.associate(user_id, state.role_id("Basic User", "animal-health"))
    _, moved_outs, _ = host.read(user_id, outs, props)
    assert moved_outs["security_roles"] == ["Basic User"] and moved_outs["root_business_unit"] is False
    assert host.diff(user_id, moved_outs, props).has_changes


def test_a_user_gone_behind_our_back_reads_as_gone(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    user_id, outs = host.create(props)
    centre = admin(emulator)
    centre.set_disabled(user_id, True)
    centre.delete_user(user_id)  # someone deleted it in the admin centre
    read_id, _, _ = host.read(user_id, outs, props)
    assert read_id == ""


# -- delete = revoke ------------------------------------------------------------------------------------------------


def test_delete_revokes_access_and_never_deletes_the_record_or_touches_others(
    emulator: Emulator, host: ProviderHost
) -> None:
    state = emulator.dataverse(ENVIRONMENT)
    before = {u.id: (state.role_names(u.id), u.disabled, u.business_unit_id) for u in state.users}
    props = checked(host, declared(emulator, CLAIMS, ["Basic User", "AHWR Claims Processor"], "animal-health"))
    user_id, outs = host.create(props)

    emulator.log.clear()
    host.delete(user_id, outs)

    user = state.user(user_id)
    assert user is not None and user.disabled and state.role_names(user_id) == []
    # every role removed, then the user disabled (one change set) - and never a DELETE of the record itself
    assert inner_writes(emulator) == [("DELETE", "$ref"), ("DELETE", "$ref"), ("PATCH", f"systemusers({user_id})")]
    assert user.deleted_state == 0
    after = {u.id: (state.role_names(u.id), u.disabled, u.business_unit_id) for u in state.users if u.id != user_id}
    assert after == before
    # deleting again (the engine retries a delete that failed) is harmless
    host.delete(user_id, outs)


def test_recreate_after_revoke_adopts_and_re_enables(emulator: Emulator, host: ProviderHost) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    user_id, outs = host.create(props)
    host.delete(user_id, outs)
    again_id, again = host.create(props)
    assert again_id == user_id and again["disabled"] is False and again["security_roles"] == ["Basic User"]


# -- errors ---------------------------------------------------------------------------------------------------------


def test_an_unknown_role_fails_before_any_write_naming_role_environment_unit_and_closest(
    emulator: Emulator, host: ProviderHost
) -> None:
    emulator.log.clear()
    # (check fails on this typo too, during preview: tests/provider/test_dataverse_fleet.py; create must not rely on it)
    with pytest.raises(ProviderCallError) as failure:
        host.create(declared(emulator, BATCH, ["Basic User", "FFC Payments Readr"], "ffc-payments"))
    message = failure.value.last_line
    assert "FFC Payments Readr" in message
    assert emulator.environment_url(ENVIRONMENT) in message
    assert "ffc-payments" in message
    assert "FFC Payments Reader" in message  # the closest existing name
    assert writes(emulator) == []
    assert emulator.dataverse(ENVIRONMENT).user_by_application_id(app(emulator, BATCH)) is None


def test_an_application_without_a_service_principal_is_a_clear_error(emulator: Emulator, host: ProviderHost) -> None:
    no_sp = client_id(emulator, "ADP-FFC-PayReports-snd1")
    props = checked(host, {**declared(emulator, BATCH, ["Basic User"]), "application_id": no_sp})
    with pytest.raises(ProviderCallError) as failure:
        host.create(props)
    assert "applicationid" in failure.value.last_line or no_sp in failure.value.last_line


def test_check_returns_failures_instead_of_raising_and_tolerates_unknowns(host: ProviderHost) -> None:
    bad = host.check(
        {"environment_url": "http://org.crm11.dynamics.com", "application_id": "nope", "security_roles": "Basic User"}
    )
    assert {prop for prop, _ in bad.failures} == {"environment_url", "application_id", "security_roles"}
    assert all("\n" not in reason for _, reason in bad.failures)
    preview = host.check(
        {
            "environment_url": "https://Org.CRM11.dynamics.com/main.aspx",
            "application_id": UNKNOWN,
            "security_roles": ["basic user", "BASIC USER", UNKNOWN],
        }
    )
    # (the names are looked up in that environment, which this test cannot reach: the check lets them pass)
    assert preview.failures == []
    assert preview.inputs["environment_url"] == "https://org.crm11.dynamics.com"
    assert preview.inputs["application_id"] == UNKNOWN
    assert preview.inputs["security_roles"] == ["basic user", UNKNOWN]
    # two spaces no longer fold onto the real name: a name that could disguise another is refused (issue 10 §0)
    disguised = host.check({**preview.inputs, "security_roles": ["Basic  User"]})
    assert [prop for prop, _ in disguised.failures] == ["security_roles"]


def test_diff_replaces_on_application_or_environment_change_and_ignores_the_provider_blob(
    emulator: Emulator, host: ProviderHost
) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User"]))
    user_id, outs = host.create(props)
    assert host.diff(user_id, outs, {**props, "application_id": app(emulator, CLAIMS)}).replaces == ["application_id"]
    assert host.diff(
        user_id, outs, {**props, "environment_url": emulator.environment_url("defradev-tst")}
    ).replaces == ["environment_url"]
    assert host.diff(user_id, outs, {**props, "application_id": UNKNOWN}).replaces == ["application_id"]
    assert not host.diff(user_id, outs, {**props, "security_roles": ["BASIC USER"]}).has_changes


# -- faults -------------------------------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_honoured(emulator: Emulator, host: ProviderHost) -> None:
    emulator.faults.script("throttle", count=2, service="dataverse", method="POST", retry_after=1)
    emulator.log.clear()
    _, outs = host.create(checked(host, declared(emulator, BATCH, ["Basic User", "FFC Payments Reader"])))
    posts = writes(emulator)
    assert [(e.method, e.status) for e in posts[:2]] == [("POST", 429), ("POST", 429)]
    assert posts[2:] and all(e.status < 300 for e in posts[2:])
    # each retry came no sooner than the Retry-After (1 s) the 429 asked for: a lower bound, not a speed target
    assert posts[1].at - posts[0].at >= 0.95 and posts[2].at - posts[1].at >= 0.95
    assert outs["security_roles"] == ["Basic User", "FFC Payments Reader"]


def test_throttling_beyond_the_budget_is_a_clear_error_naming_the_environment(emulator: Emulator) -> None:
    emulator.faults.script("throttle", count=50, service="dataverse", method="GET", retry_after=1)
    with provider_host(emulator, max_retry_wait=1.5) as h, pytest.raises(ProviderCallError) as failure:
        h.create(checked(h, declared(emulator, BATCH, ["Basic User"])))
    assert emulator.environment_url(ENVIRONMENT) in failure.value.last_line
    assert "429" in failure.value.last_line or "throttl" in failure.value.last_line.lower()


def test_a_create_whose_response_is_lost_leaves_one_user(emulator: Emulator, host: ProviderHost) -> None:
    emulator.faults.script("lost_response", count=1, service="dataverse", method="POST", path_contains="$batch")
    user_id, outs = host.create(checked(host, declared(emulator, BATCH, ["Basic User", "FFC Payments Reader"])))
    users = [u for u in emulator.dataverse(ENVIRONMENT).users if u.application_id == app(emulator, BATCH)]
    assert [u.id for u in users] == [user_id]
    assert outs["security_roles"] == ["Basic User", "FFC Payments Reader"]
    assert any(e.fault == "lost_response" for e in emulator.log.entries)


def test_a_create_that_failed_half_way_converges_when_the_engine_retries_it(
    emulator: Emulator, host: ProviderHost
) -> None:
    props = checked(host, declared(emulator, BATCH, ["Basic User", "FFC Payments Reader"], "ffc-payments"))
    # the user is created, then every attempt to associate roles fails for good: create raises, nothing is stored
    emulator.faults.script("bad_gateway", count=20, service="dataverse", method="POST", path_contains="$batch")
    emulator.faults.script("bad_gateway", count=20, service="dataverse", method="POST", path_contains="$ref")
    with pytest.raises(ProviderCallError):
        host.create(props)
    emulator.faults.clear()
    user_id, outs = host.create(props)  # the engine's next `pulumi up` creates again
    users = [u for u in emulator.dataverse(ENVIRONMENT).users if u.application_id == app(emulator, BATCH)]
    assert [u.id for u in users] == [user_id]
    assert outs["security_roles"] == ["Basic User", "FFC Payments Reader"]


# -- secrets --------------------------------------------------------------------------------------------------------


def test_nothing_secret_in_the_serialized_provider_or_outputs(emulator: Emulator, host: ProviderHost) -> None:
    _, outs = host.create(checked(host, declared(emulator, BATCH, ["Basic User"])))
    blob = base64.b64decode(host.provider_blob)
    with open(emulator.credential_env("DefraDev")["AZURE_FEDERATED_TOKEN_FILE"]) as token_file:
        federated = token_file.read().strip()
    for secretish in (federated.encode(), b"Bearer", b"eyJ"):
        assert secretish not in blob
        assert secretish.decode() not in repr(outs)


def test_the_least_privilege_pipeline_cannot_grant_system_administrator(emulator: Emulator, host: ProviderHost) -> None:
    """Dataverse refuses privilege elevation: a role is only handed out by a caller holding all its privileges."""
    props = checked(host, declared(emulator, BATCH, ["Basic User", "System Administrator"]))
    with pytest.raises(ProviderCallError) as failure:
        host.create(props)
    message = failure.value.last_line
    assert "System Administrator" in message and "403" in message and "0x80040220" in message
    assert "eyJ" not in failure.value.details  # no token in what the engine shows
    user = emulator.dataverse(ENVIRONMENT).user_by_application_id(app(emulator, BATCH))
    assert user is None or "System Administrator" not in emulator.dataverse(ENVIRONMENT).role_names(user.id)
