"""Drift without a network: identities files, environment overrides, targets, reading, and the report as a view
of reconcile's plan.

Reading is exercised here through a strict in-memory reader (any write, or a read the code should not need,
fails the test); the same code runs over HTTPS against the emulator in tests/emulator/test_cli_plan_audit.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests

from adp_identity.desired import DesiredState, PolicySettings, load_tree
from adp_identity.drift import (
    ApplicationUserTarget,
    DriftInputErrors,
    EnvironmentReading,
    EnvironmentTarget,
    PrivilegedUser,
    ServiceIdentity,
    UserDrift,
    UserReading,
    UserView,
    WrongTenant,
    audit,
    environment_overrides,
    parse_identities,
    read_environment,
    read_stack,
    targets,
)
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import Forbidden, UnknownBusinessUnit, UnknownSecurityRole, WriteRefused
from providers.dataverse.models import ActualUser, BusinessUnit, RoleCatalog, SecurityRole
from providers.dataverse.reconcile import AdoptUser, CreateUser, DesiredUser, MoveBusinessUnit, plan

from .fake_dataverse import FakeCredential

REPO = Path(__file__).resolve().parents[2]
ENV = "https://defradev-dev.crm11.dynamics.com"
WEB = "fc9fbebc-4fc2-484c-b463-1f766e4117e6"
BATCH_MI = "f48a997a-a8ff-4598-b5a8-da4de8a0ce5c"
BATCH_APP = "0e4d8c21-3b7a-4f95-a6d2-9c81e5f3b7a0"
AHWR = "ad0fc23e-96e2-4cdf-9a6a-75b19b0ef689"
ROOT = BusinessUnit("b0000000-0000-4000-8000-000000000000", "defradev-dev", None)
PAYMENTS = BusinessUnit("b0000000-0000-4000-8000-000000000001", "ffc-payments", ROOT.id)
HEALTH = BusinessUnit("b0000000-0000-4000-8000-000000000002", "animal-health", ROOT.id)
ROLE_NAMES = ("Basic User", "FFC Payments Reader", "System Administrator", "System Customizer", "Service Deleter")


def role_id(unit: BusinessUnit, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{unit.id}/{name}"))


CATALOG = RoleCatalog(
    ENV,
    (ROOT, PAYMENTS, HEALTH),
    tuple(
        SecurityRole(role_id(unit, name), name, unit.id, role_id(ROOT, name))
        for unit in (ROOT, PAYMENTS, HEALTH)
        for name in ROLE_NAMES
    ),
)


@pytest.fixture(scope="module")
def state() -> DesiredState:
    return load_tree(REPO / "stacks", "defradev")["defradev"]


def outputs_json(**extra: Any) -> bytes:
    """`pulumi stack output --json` as Pulumi prints it (4-space indent, every output of the program)."""
    document: dict[str, Any] = {
        "ahwr-claims": {"client_id": AHWR.upper(), "identity_name": "sndadpinfmi1401-ahwr-claims"},
        "ffc-pay-batch": {
            "client_id": BATCH_MI,
            "app_registration_client_id": "{" + BATCH_APP + "}",
            "dataverse_application_users": {"dev": "11111111-2222-4333-8444-555555555555"},
            "principal_id": "0f9b7d2e-6c1a-4e8b-9d3f-2a5c7e9b1d4f",
            "tenant_id": "6fb17b64-ece9-4b43-8acf-99e8d37b19ad",
        },
        "ffc-pay-web": {"client_id": WEB, "dataverse_application_users": {}},
        **extra,
    }
    return json.dumps(document, indent=4).encode()


def errors_of(raised: pytest.ExceptionInfo[DriftInputErrors]) -> list[str]:
    return [str(error) for error in raised.value.errors]


# -- identities -------------------------------------------------------------------------------------------------


def test_pulumi_stack_outputs_give_normalised_ids_and_ignore_other_outputs() -> None:
    identities = parse_identities(outputs_json(), "outputs.json")
    assert identities == {
        "ahwr-claims": ServiceIdentity("ahwr-claims", AHWR),
        "ffc-pay-batch": ServiceIdentity(
            "ffc-pay-batch", BATCH_MI, BATCH_APP, {"dev": "11111111-2222-4333-8444-555555555555"}
        ),
        "ffc-pay-web": ServiceIdentity("ffc-pay-web", WEB),
    }
    assert identities["ffc-pay-batch"].application_id("app_registration") == BATCH_APP
    assert identities["ffc-pay-batch"].application_id("managed_identity") == BATCH_MI
    assert identities["ffc-pay-web"].application_id("app_registration") is None


def test_yaml_identities_read_the_same() -> None:
    text = f"ffc-pay-web:\n  client_id: {WEB}\nffc-pay-batch:\n  client_id: {BATCH_MI}\n"
    text += f"  app_registration_client_id: {BATCH_APP}\n"
    assert parse_identities(text.encode(), "ids.yaml") == {
        "ffc-pay-web": ServiceIdentity("ffc-pay-web", WEB),
        "ffc-pay-batch": ServiceIdentity("ffc-pay-batch", BATCH_MI, BATCH_APP),
    }


def test_every_problem_of_an_identities_file_is_listed_with_its_line() -> None:
    text = (
        "ffc-pay-web:\n"
        "  client_id: not-a-guid\n"
        "ahwr-claims: [one, two]\n"
        "ffc-pay-batch:\n"
        "  identity_name: x\n"
        "ffc-pay-api:\n"
        f"  client_id: {WEB}\n"
        "  app_registration_client_id: 12\n"
        "  dataverse_application_users: {dev: nope}\n"
    )
    with pytest.raises(DriftInputErrors) as raised:
        parse_identities(text.encode(), "ids.yaml")
    assert errors_of(raised) == [
        "ids.yaml:2: ffc-pay-web.client_id: 'not-a-guid' is not a GUID; allowed: an application (client) id GUID",
        "ids.yaml:3: ahwr-claims: is a list; allowed: the service's stack outputs (a mapping)",
        "ids.yaml:4: ffc-pay-batch: has no client_id; allowed: client_id: the managed identity's application "
        "(client) id",
        "ids.yaml:8: ffc-pay-api.app_registration_client_id: is a number; allowed: an application (client) id GUID",
        "ids.yaml:9: ffc-pay-api.dataverse_application_users.dev: 'nope' is not a GUID; allowed: an application "
        "(client) id GUID",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "ids.json: (document): is empty; allowed: the output of `pulumi stack output --json`"),
        (
            b'{\n  "a": {"client_id": 1}\n  "b": 2\n}',
            "ids.json:3: (document): not valid JSON (Expecting ',' delimiter)",
        ),
        (
            b'{"ffc-pay-web": {"client_id": "x"}, "ffc-pay-web": {"client_id": "y"}}',
            "ids.json: (document): duplicate key 'ffc-pay-web'; allowed: each key once",
        ),
        (b'["ffc-pay-web"]', "ids.json:1: (document): top level is a list, not a mapping"),
        (b"\xff\xfe{}", "ids.json:1: (document): invalid UTF-8 (byte 0xff)"),
    ],
)
def test_an_unreadable_identities_document_is_one_line(data: bytes, expected: str) -> None:
    with pytest.raises(DriftInputErrors) as raised:
        parse_identities(data, "ids.json")
    (line,) = errors_of(raised)
    assert line.startswith(expected)
    assert "\n" not in line


# -- environment overrides ----------------------------------------------------------------------------------------


def test_environment_overrides_become_origins(state: DesiredState) -> None:
    assert environment_overrides(["dev=https://127.0.0.1:8443/", "tst=https://LOCALHOST:9443"], state) == {
        "dev": "https://127.0.0.1:8443",
        "tst": "https://localhost:9443",
    }


def test_every_bad_environment_override_is_one_line(state: DesiredState) -> None:
    with pytest.raises(DriftInputErrors) as raised:
        environment_overrides(
            ["qa=https://127.0.0.1:1", "dev", "dev=http://127.0.0.1:1", "tst=https://a", "tst=https://b"], state
        )
    assert errors_of(raised) == [
        "--environment-url: qa: unknown environment 'qa' of stack 'defradev'; allowed: dev, tst",
        "--environment-url: (document): 'dev' is not NAME=URL; allowed: e.g. dev=https://...",
        "--environment-url: dev: 'http://127.0.0.1:1' is not an https origin; allowed: https://<host>[:<port>]",
        "--environment-url: tst: given more than once; allowed: each environment once",
    ]


# -- targets ------------------------------------------------------------------------------------------------------


def test_targets_pick_the_principal_each_environment_declares(state: DesiredState) -> None:
    identities = parse_identities(outputs_json(), "outputs.json")
    found = targets(state, identities, {"dev": "https://127.0.0.1:8443"})

    assert [(e.name, e.url, e.production) for e in found] == [
        ("dev", "https://127.0.0.1:8443", False),
        ("tst", "https://defradev-tst.crm11.dynamics.com", False),
    ]
    dev, tst = found
    assert [(t.service, t.principal, t.desired.application_id) for t in dev.users] == [
        ("ahwr-claims", "managed_identity", AHWR),
        ("ffc-pay-batch", "app_registration", BATCH_APP),
        ("ffc-pay-web", "managed_identity", WEB),
    ]
    batch = dev.users[1]
    assert batch == ApplicationUserTarget(
        "ffc-pay-batch",
        "dev",
        "app_registration",
        DesiredUser(
            "https://127.0.0.1:8443", BATCH_APP, "ffc-payments", frozenset({"Basic User", "FFC Payments Writer"})
        ),
        managed_id="11111111-2222-4333-8444-555555555555",
        declared_roles=("Basic User", "FFC Payments Writer"),
    )
    assert {e.tenant_id for e in found} == {state.tenant.tenant_id}  # what the credential must sign in to
    assert [e.url_from for e in found] == ["stack settings", "stack settings"]
    ahwr_tst = tst.users[0]
    assert (ahwr_tst.desired.environment_url, ahwr_tst.desired.disabled, ahwr_tst.managed_id) == (
        "https://defradev-tst.crm11.dynamics.com",
        True,
        None,
    )


def test_targets_refuse_unknown_and_missing_services_and_ids(state: DesiredState) -> None:
    identities = {
        "ffc-pay-batch": ServiceIdentity("ffc-pay-batch", BATCH_MI),  # no app registration id
        "ffc-pay-api": ServiceIdentity("ffc-pay-api", WEB),
        "ffc-pay-web": ServiceIdentity("ffc-pay-web", WEB),
    }
    with pytest.raises(DriftInputErrors) as raised:
        targets(state, identities, source="outputs.json")
    assert errors_of(raised) == [
        "outputs.json: ffc-pay-api: unknown service 'ffc-pay-api' of stack 'defradev'; allowed: services: "
        "ahwr-claims, ffc-pay-batch, ffc-pay-web",
        "outputs.json: ahwr-claims: missing: service 'ahwr-claims' declares Dataverse access; allowed: the "
        "service's stack outputs with client_id (or run `plan`, which plans it as to be created)",
        "outputs.json: ffc-pay-batch.app_registration_client_id: missing: environment 'dev' uses principal "
        "app_registration; allowed: the app registration's application (client) id",
        "outputs.json: ffc-pay-batch.app_registration_client_id: missing: environment 'tst' uses principal "
        "app_registration; allowed: the app registration's application (client) id",
    ]


def test_services_without_outputs_are_targets_to_be_created_when_allowed(state: DesiredState) -> None:
    identities = {"ffc-pay-web": ServiceIdentity("ffc-pay-web", WEB)}  # ahwr-claims and ffc-pay-batch are new
    dev, _ = targets(state, identities, new_services=True)
    assert [(t.service, t.new, t.application_id) for t in dev.users] == [
        ("ahwr-claims", True, None),
        ("ffc-pay-batch", True, None),
        ("ffc-pay-web", False, WEB),
    ]
    nothing = targets(state, None, new_services=True)
    assert all(t.new for e in nothing for t in e.users) and sum(len(e.users) for e in nothing) == 6


# -- the report: a view of reconcile's plan ---------------------------------------------------------------------


def target(
    roles: Iterable[str] = ("Basic User", "FFC Payments Reader"),
    business_unit: str | None = "ffc-payments",
    *,
    disabled: bool = False,
    service: str = "ffc-pay-web",
    application_id: str = WEB,
    managed_id: str | None = None,
) -> ApplicationUserTarget:
    desired = DesiredUser(ENV, application_id, business_unit, frozenset(roles), disabled)
    return ApplicationUserTarget(service, "dev", "managed_identity", desired, managed_id, declared_roles=tuple(roles))


def actual(
    roles: Iterable[str] = ("Basic User", "FFC Payments Reader"),
    unit: BusinessUnit = PAYMENTS,
    *,
    disabled: bool = False,
    named: bool = True,
    application_id: str = WEB,
    full_name: str = "sndadpinfmi1401-ffc-pay-web",
) -> ActualUser:
    return ActualUser(
        systemuser_id=str(uuid.uuid5(uuid.NAMESPACE_URL, application_id)),
        application_id=application_id,
        full_name=full_name,
        disabled=disabled,
        business_unit_id=unit.id,
        business_unit_name=unit.name if named else None,
        business_unit_is_root=unit.is_root,
        roles={role_id(unit, name): name for name in roles},
    )


def view(wanted: ApplicationUserTarget, held: ActualUser | None) -> UserView:
    """What plan and audit see: reconcile's own plan for the pair, read as a view."""
    the_plan = plan(wanted.desired, held, CATALOG, managed_id=wanted.managed_id)
    return UserView.of(UserReading(wanted, held, the_plan))


def drift(wanted: ApplicationUserTarget, held: ActualUser | None) -> UserDrift:
    return view(wanted, held).drift()


def test_a_user_as_declared_has_no_drift() -> None:
    held = actual()
    found = drift(target(managed_id=held.systemuser_id), held)
    assert not found.has_drift
    assert found == UserDrift(
        service="ffc-pay-web",
        environment="dev",
        principal="managed_identity",
        application_id=WEB,
        systemuser_id=held.systemuser_id,
        declared_business_unit="ffc-payments",
        declared_roles=("Basic User", "FFC Payments Reader"),
        declared_disabled=False,
    )


def test_role_names_compare_as_dataverse_shows_them() -> None:
    held = actual()
    assert not drift(target(["basic user", "FFC PAYMENTS READER"], managed_id=held.systemuser_id), held).has_drift
    # one way to compare names everywhere (issue 10): a disguised spelling never resolves, here as in the provider
    with pytest.raises(UnknownSecurityRole, match="two spaces in a row"):
        drift(target(["basic  user", "FFC PAYMENTS READER"], managed_id=held.systemuser_id), held)


def test_extra_and_missing_roles_are_named() -> None:
    found = drift(target(), actual(["Basic User", "System Administrator", "Service Deleter"]))
    assert found.has_drift
    assert found.extra_roles == ("Service Deleter", "System Administrator")
    assert found.missing_roles == ("FFC Payments Reader",)
    assert (found.missing, found.actual_disabled, found.actual_business_unit) == (False, None, None)


@pytest.mark.parametrize(("declared", "held"), [(False, True), (True, False)])
def test_enabled_or_disabled_the_other_way_is_drift(declared: bool, held: bool) -> None:
    found = drift(target(disabled=declared), actual(disabled=held))
    assert found.has_drift
    assert (found.actual_disabled, found.declared_disabled) == (held, declared)
    assert (found.extra_roles, found.missing_roles) == ((), ())


def test_disabled_as_declared_but_missing_a_role_is_not_a_disabled_difference() -> None:
    """Reconcile enables, associates, disables again: the plan holds both, the user's state is as declared."""
    found = drift(target(disabled=True), actual(["Basic User"], disabled=True))
    assert found.has_drift and found.actual_disabled is None and found.missing_roles == ("FFC Payments Reader",)


def test_another_business_unit_names_both_even_when_the_row_was_read_without_it() -> None:
    moved = actual([], HEALTH, named=False)
    found = drift(target(), moved)
    assert (found.actual_business_unit, found.declared_business_unit) == ("animal-health", "ffc-payments")
    assert found.missing_roles == ("Basic User", "FFC Payments Reader")
    root_user = actual(unit=ROOT)
    root = drift(target(business_unit=None, managed_id=root_user.systemuser_id), root_user)
    assert root.declared_business_unit == "defradev-dev" and not root.has_drift


def test_a_move_compares_roles_by_name_and_names_what_the_move_removes() -> None:
    held = actual(["Basic User", "System Administrator"], HEALTH)
    seen = view(target(), held)
    assert isinstance(seen.move, MoveBusinessUnit)
    assert seen.removed_by_move == ("Basic User", "System Administrator")
    found = seen.drift()
    assert found.extra_roles == ("System Administrator",)  # Basic User is re-associated in the new unit
    assert found.missing_roles == ("FFC Payments Reader",)


def test_a_missing_user_is_drift_and_says_what_was_declared() -> None:
    found = drift(target(), None)
    assert found.has_drift and found.missing and found.systemuser_id is None
    assert found.declared_roles == ("Basic User", "FFC Payments Reader")


def test_adopting_is_drift_only_when_the_outputs_name_another_user() -> None:
    held = actual()
    unmanaged = view(target(), held)  # outputs name no user: the next deployment adopts it
    assert isinstance(unmanaged.adopt, AdoptUser) and not unmanaged.has_drift
    assert unmanaged.categories == {"adopt"} and not unmanaged.up_to_date
    replaced = view(target(managed_id="11111111-2222-4333-8444-555555555555"), held)
    assert replaced.has_drift and replaced.drift().replaced_systemuser_id == "11111111-2222-4333-8444-555555555555"


def test_plan_and_audit_agree_on_every_user_of_a_table() -> None:
    """The audit's "differs" is the plan's "writes something" (or replaces the managed user), case by case."""
    cases = [
        (target(), actual()),
        (target(), None),
        (target(disabled=True), actual()),
        (target(), actual(disabled=True)),
        (target(), actual(["Basic User"])),
        (target(), actual(unit=HEALTH)),
        (target(["Basic User"]), actual(["Basic User", "System Customizer"])),
    ]
    for wanted, held in cases:
        seen = view(wanted, held)
        assert seen.drift().has_drift == (seen.writes > 0), (wanted, held)


def test_an_unknown_declared_business_unit_is_a_finding_not_drift() -> None:
    reading = read_environment(environment(target(business_unit="ffc-paymnets")), StrictReader([actual()]))
    (user,) = reading.users
    assert user.plan is None and isinstance(user.unknown[0], UnknownBusinessUnit)
    assert user.unknown[0].closest == ("ffc-payments",)


# -- reading (strict in-memory reader) ------------------------------------------------------------------------------


class StrictReader:
    """Serves the application-user list and the catalog; counts every read; anything else fails the test."""

    def __init__(self, users: Iterable[ActualUser], *, fail_listing: bool = False) -> None:
        self.users = list(users)
        self.fail_listing = fail_listing
        self.reads: list[str] = []
        self.environment_url = ENV

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        self.reads.append("catalog (after miss)" if after_miss else "catalog")
        return CATALOG

    def application_users(self) -> list[ActualUser]:
        self.reads.append("application users")
        if self.fail_listing:
            raise Forbidden("no prvReadUser", status=403, method="GET", url=f"{ENV}/api/data/v9.2/systemusers")
        return list(self.users)

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"plan and audit read the list and the catalog only; {name} was asked for")


def environment(*users: ApplicationUserTarget, name: str = "dev") -> EnvironmentTarget:
    return EnvironmentTarget(name, ENV, False, users, "6fb17b64-ece9-4b43-8acf-99e8d37b19ad")


def test_reading_costs_the_list_and_the_catalog_whatever_the_number_of_users() -> None:
    reader = StrictReader([actual()])
    ahwr = target(["Basic User"], "animal-health", service="ahwr-claims", application_id=AHWR)
    reading = read_environment(environment(ahwr, target(managed_id=actual().systemuser_id)), reader)
    assert reader.reads == ["application users", "catalog"]
    created, kept = reading.users
    assert created.actual is None and created.plan is not None
    assert isinstance(created.plan.operations[0], CreateUser)
    assert kept.actual == actual() and kept.plan is not None and kept.plan.is_noop
    assert reading.application_users == (actual(),) and reading.error is None


def test_an_environment_with_nothing_declared_costs_the_list_only() -> None:
    reader = StrictReader([actual()])
    reading = read_environment(environment(), reader)
    assert reader.reads == ["application users"] and reading.application_users == (actual(),)


def test_every_unknown_role_of_a_user_is_reported_and_the_others_still_read() -> None:
    reader = StrictReader([actual()])
    typo = target(["Basic Usr", "FFC Payments Raeder"], service="ffc-pay-api", application_id=AHWR)
    reading = read_environment(environment(typo, target()), reader)
    assert [str(e) for e in reading.users[0].unknown] == [
        f"security role 'Basic Usr' does not exist in business unit 'ffc-payments' of environment {ENV}; "
        "closest: 'Basic User'",
        f"security role 'FFC Payments Raeder' does not exist in business unit 'ffc-payments' of environment {ENV}; "
        "closest: 'FFC Payments Reader'",
    ]
    assert reading.users[1].plan is not None and reading.users[1].plan.writes == 0
    assert reader.reads == ["application users", "catalog"]  # the catalog is this run's: a miss refetches nothing


def test_a_new_service_is_planned_as_to_be_created_from_the_catalog() -> None:
    new = ApplicationUserTarget("ffc-pay-api", "dev", "managed_identity", replace_app(target(), ""), new=True)
    reading = read_environment(environment(new), StrictReader([actual()]))
    (user,) = reading.users
    assert user.actual is None and user.plan is not None and isinstance(user.plan.operations[0], CreateUser)
    assert user.plan.writes == 2  # create, then one request for both roles


def replace_app(wanted: ApplicationUserTarget, application_id: str) -> DesiredUser:
    d = wanted.desired
    return DesiredUser(d.environment_url, application_id, d.business_unit, d.security_roles, d.disabled)


def test_an_environment_that_refuses_is_one_error_line() -> None:
    reading = read_environment(environment(target()), StrictReader([actual()], fail_listing=True))
    assert reading.users == () and reading.application_users is None
    assert reading.error == f"no prvReadUser (GET {ENV}/api/data/v9.2/systemusers -> 403)"


def test_read_stack_checks_every_tenant_before_reading_any_environment() -> None:
    events: list[str] = []

    def check(credential: object, scope: str, tenant: str | None, what: str) -> None:
        events.append(f"check {scope} {tenant}")
        if "tst" in what:
            raise WrongTenant(what, str(tenant), "a798744b-41a1-41b0-b394-141dbf8496c4")

    def connect(env: EnvironmentTarget) -> StrictReader:
        events.append(f"connect {env.name}")
        return StrictReader([])

    environments = (environment(target()), environment(name="tst"))
    with pytest.raises(WrongTenant, match=r"tst .* belongs to tenant 6fb17b64"):
        read_stack(environments, connect, check=check)
    assert events == [f"check {ENV}/.default 6fb17b64-ece9-4b43-8acf-99e8d37b19ad"] * 2  # nothing connected

    events.clear()
    readings = read_stack(environments[:1], connect, check=lambda *a: events.append("check"))
    assert [r.environment.name for r in readings] == ["dev"] and events == ["check", "connect dev"]


def test_the_read_only_client_refuses_every_write_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    session = requests.Session()
    monkeypatch.setattr(session, "request", lambda *a, **k: pytest.fail("a request was sent"))
    client = DataverseClient(ENV, credential=FakeCredential(), session=session, read_only=True)
    writes = [
        lambda: client.create_user(WEB, PAYMENTS.id),
        lambda: client.set_disabled(WEB, True),
        lambda: client.move_business_unit(WEB, PAYMENTS.id),
        lambda: client.change_roles(WEB, add=[role_id(PAYMENTS, "Basic User")]),
    ]
    for write in writes:
        with pytest.raises(WriteRefused, match="read-only"):
            write()


# -- the audit report ---------------------------------------------------------------------------------------------


def admin(name: str, roles: Iterable[str], *, app: str, disabled: bool = False) -> ActualUser:
    return actual(roles, ROOT, application_id=app, full_name=name, disabled=disabled)


def test_audit_reports_drift_unmanaged_privileged_users_and_errors(state: DesiredState) -> None:
    strict = state.model_copy(
        update={
            "tenant": state.tenant.model_copy(
                update={"policy": PolicySettings(forbidden_roles_in_production=("Service Deleter",))}
            )
        }
    )
    web_target, ahwr_target = (
        target(),
        target(["Basic User", "X"], "animal-health", service="ahwr-claims", application_id=AHWR),
    )
    break_glass = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
    listed = (
        actual(["Basic User", "FFC Payments Reader", "System Administrator"]),  # managed: drift, not "unmanaged"
        admin("zz-deleter", ["Service Deleter"], app="aaaaaaaa-0000-4000-8000-000000000001", disabled=True),
        admin("hand-made", ["Basic User", "system customizer"], app="aaaaaaaa-0000-4000-8000-000000000002"),
        admin("break-glass", ["System Administrator"], app=break_glass),
        admin("reader", ["Basic User"], app="aaaaaaaa-0000-4000-8000-000000000003"),
    )
    dev = read_environment(environment(web_target, ahwr_target), StrictReader(listed))
    tst = EnvironmentReading(environment(name="tst"), error="could not connect")

    report = audit(strict, [dev, tst], allowed_privileged=[break_glass.upper()])

    assert report.has_drift
    assert [(u.service, u.extra_roles) for u in report.drifted] == [("ffc-pay-web", ("System Administrator",))]
    assert report.privileged == (
        PrivilegedUser("dev", listed[2].systemuser_id, listed[2].application_id, "hand-made", False, "defradev-dev",
                       ("system customizer",)),
        PrivilegedUser("dev", listed[1].systemuser_id, listed[1].application_id, "zz-deleter", True, "defradev-dev",
                       ("Service Deleter",)),
    )  # fmt: skip
    assert [str(error) for error in report.errors] == [
        "dev ahwr-claims: error: dataverse[0].security_roles[1]: security role 'X' does not exist in business unit "
        f"'animal-health' of environment dev ({ENV}); no security role of business unit 'animal-health' has a "
        "similar name",
        "tst: error: cannot read the environment: could not connect",
    ]
    document = report.to_json()
    assert document["drift"] is True and document["stack"] == "defradev"
    assert document["environments"] == [
        {"name": "dev", "url": ENV, "production": False},
        {"name": "tst", "url": ENV, "production": False},
    ]
    assert document["application_users"] == [
        {
            "service": "ffc-pay-web",
            "environment": "dev",
            "principal": "managed_identity",
            "application_id": WEB,
            "systemuser_id": listed[0].systemuser_id,
            "drift": True,
            "missing": False,
            "disabled": None,
            "business_unit": None,
            "extra_roles": ["System Administrator"],
            "missing_roles": [],
            "declared": {
                "business_unit": "ffc-payments",
                "security_roles": ["Basic User", "FFC Payments Reader"],
                "disabled": False,
            },
            "new": False,
            "adopt": listed[0].systemuser_id,
            "writes": 1,
            "requests": 1,
            "changes": ["disassociate security role 'System Administrator'"],
        }
    ]
    assert document["unmanaged_privileged_users"][1] == {
        "environment": "dev",
        "systemuser_id": listed[1].systemuser_id,
        "application_id": listed[1].application_id,
        "full_name": "zz-deleter",
        "disabled": True,
        "business_unit": "defradev-dev",
        "privileged_roles": ["Service Deleter"],
    }
    assert document["errors"][1] == {
        "environment": "tst",
        "service": None,
        "message": "cannot read the environment: could not connect",
    }
    assert document["summary"][0] == {
        "environment": "dev",
        "users": 2,
        "create": 0,
        "adopt": 1,
        "change": 1,
        "disable": 0,
        "unmanaged_privileged": 2,
        "up_to_date": 0,
        "errors": 1,
        "writes": 1,
        "requests": 1,
    }


def test_a_clean_audit_has_no_drift(state: DesiredState) -> None:
    held = actual()
    reading = read_environment(
        environment(target(managed_id=held.systemuser_id)),
        StrictReader([held, admin("reader", ["Basic User"], app=AHWR)]),
    )
    report = audit(state, [reading])
    assert not report.has_drift and report.errors == () and len(report.users) == 1
    assert report.to_json()["drift"] is False
    assert report.summary()[0].up_to_date == 1
