"""``export`` without a network: how users map to services, and minimal edits of service files.

Merging is text editing (comments, key order and quoting stay as people wrote them); every case here checks the
edited file reads back as meant, and that merging the same users again changes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adp_identity.desired import DesiredState, load_tree
from adp_identity.desired.yamlsafe import parse_yaml
from adp_identity.drift import EnvironmentReading, EnvironmentTarget, ServiceIdentity
from adp_identity.drift.export import export, map_users
from adp_identity.drift.servicefile import AccessEntry, merge_service_file, new_service_file, render_scalar
from providers.dataverse.models import ActualUser

REPO = Path(__file__).resolve().parents[2]
WEB_FILE = (REPO / "stacks" / "defradev" / "ffc-pay-web.yaml").read_text()
AHWR_FILE = (REPO / "stacks" / "defradev" / "ahwr-claims.yaml").read_text()


def merge(text: str, *entries: AccessEntry, display: str | None = None) -> str:
    merged = merge_service_file(text, entries, source="f.yaml", app_registration_display_name=display)
    assert merge_service_file(merged, entries, source="f.yaml", app_registration_display_name=display) == merged
    return merged


def entry(environment: str = "dev", unit: str = "ffc-payments", *roles: str, **extra: object) -> AccessEntry:
    return AccessEntry(environment, unit, roles or ("Basic User",), **extra)  # type: ignore[arg-type]


def test_an_entry_as_declared_leaves_the_file_byte_for_byte() -> None:
    same = entry("dev", "FFC-Payments", "basic user", "FFC Payments Reader")  # names compare as Dataverse does
    assert merge(WEB_FILE, same) == WEB_FILE


def test_a_changed_entry_is_edited_in_place_and_everything_else_kept() -> None:
    merged = merge(AHWR_FILE, entry("tst", "animal-health", "Basic User", "AHWR Claims Processor", "Service Reader"))
    assert merged == AHWR_FILE.replace(
        "      - AHWR Claims Processor\n    disabled: true",
        "      - Basic User\n      - AHWR Claims Processor\n      - Service Reader\n    disabled: false",
    ).replace("      - Basic User\n      - Basic User\n", "      - Basic User\n", 1)
    assert "disabled: false   # paused while the tst environment is refreshed from pre" in merged  # comment stays


def test_a_new_environment_is_appended_in_the_lists_indentation() -> None:
    merged = merge(WEB_FILE, entry("qa", "animal-health", "System Administrator", disabled=True))
    assert merged == WEB_FILE + (
        "  - environment: qa\n    business_unit: animal-health\n    security_roles:\n      - System Administrator\n"
        "    disabled: true\n"
    )
    compact = "service: a\nteam: b\ndataverse:\n- environment: dev\n  security_roles: [Basic User]\n"
    assert merge(compact, entry("tst", "x", root=True)).endswith(
        "- environment: tst\n  security_roles:\n    - Basic User\n"
    )


def test_the_root_business_unit_is_the_missing_key_or_its_own_name() -> None:
    root = entry("dev", "defradev-dev", "Basic User", root=True)
    unnamed = "service: a\nteam: b\ndataverse:\n  - environment: dev\n    security_roles:\n      - Basic User\n"
    assert merge(unnamed, root) == unnamed
    named = unnamed.replace("    security_roles", "    business_unit: defradev-dev\n    security_roles")
    assert merge(named, root) == named
    moved = merge(unnamed, entry("dev", "ffc-payments"))
    assert parse_yaml(moved.encode()).data["dataverse"][0]["business_unit"] == "ffc-payments"


def test_flow_styles_are_edited_as_flow() -> None:
    flow = (
        "service: a\nteam: b\ndataverse:\n  - {environment: dev, security_roles: [Basic User], disabled: true}  # c\n"
    )
    merged = merge(flow, entry("dev", "x", "Basic User", "Service Reader", root=True))
    assert merged.endswith(
        '  - {environment: "dev", security_roles: ["Basic User", "Service Reader"], disabled: false}  # c\n'
    )
    empty = "service: a\nteam: b\ndataverse: []  # none yet\n"
    assert parse_yaml(merge(empty, entry()).encode()).data["dataverse"] == [
        {"environment": "dev", "business_unit": "ffc-payments", "security_roles": ["Basic User"]}
    ]


def test_a_file_without_dataverse_gets_the_list_and_an_app_registration_when_it_needs_one() -> None:
    text = "# mine\nservice: a\nteam: b\n"
    merged = merge(text, entry(principal="app_registration"), display="ADP-A")
    data = parse_yaml(merged.encode()).data
    assert merged.startswith(text)
    assert data["app_registration"] == {"display_name": "ADP-A"}
    assert data["dataverse"][0]["principal"] == "app_registration"


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("Basic User", "Basic User"),
        ("Export Customizations (Solution Checker)", "Export Customizations (Solution Checker)"),
        ("yes", '"yes"'),
        ("123", '"123"'),
        ("a: b", '"a: b"'),
        ("# not a comment", '"# not a comment"'),
        ("null", '"null"'),
        (True, "true"),
    ],
)
def test_scalars_read_back_as_themselves(value: str | bool, rendered: str) -> None:
    assert render_scalar(value) == rendered
    assert parse_yaml(f"k: {rendered}\n".encode()).data == {"k": value}


def test_a_new_file_marks_what_dataverse_cannot_tell() -> None:
    text = new_service_file("ffc-pay-api", "ffc-payments", [entry()], team_note="guessed: check it")
    assert text.splitlines()[:5] == [
        "# yaml-language-server: $schema=../../schemas/service.schema.json",
        "# Written by `adp-identity export` from what Dataverse holds. Before merging: check the team, and add the",
        "# workload identity's federations (the Kubernetes service accounts that sign in as it).",
        "service: ffc-pay-api",
        "team: ffc-payments  # guessed: check it",
    ]
    assert merge(text, entry()) == text


# -- mapping users to services --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state() -> DesiredState:
    return load_tree(REPO / "stacks", "defradev")["defradev"]


def user(name: str, *roles: str, app: str | None = None, unit: str = "ffc-payments") -> ActualUser:
    app = app or str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    return ActualUser(
        systemuser_id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        application_id=app,
        full_name=name,
        disabled=False,
        business_unit_id=str(uuid.uuid5(uuid.NAMESPACE_OID, unit)),
        business_unit_name=unit,
        business_unit_is_root=False,
        roles={str(uuid.uuid5(uuid.NAMESPACE_OID, r)): r for r in roles},
    )


def reading(*users: ActualUser, name: str = "dev") -> EnvironmentReading:
    return EnvironmentReading(EnvironmentTarget(name, "https://x", False, ()), (), users)


def test_users_map_by_client_id_then_identity_name_then_app_registration_name(state: DesiredState) -> None:
    by_id = user("hand-made", "Basic User", app="0b7e3a52-1c9d-4f60-8e2a-7d5b4c3a2f1e")
    by_name = user("sndadpinfmi1401-ffc-pay-web", "Basic User")
    by_app_name = user("ADP-FFC-PayBatch", "FFC Payments Writer")
    stranger = user("adp-platform-admin", "System Administrator")
    identities = {"ahwr-claims": ServiceIdentity("ahwr-claims", "0b7e3a52-1c9d-4f60-8e2a-7d5b4c3a2f1e")}
    exported, unmapped = map_users(state, [reading(by_id, by_name, by_app_name, stranger)], identities)
    assert sorted((e.service, e.principal, e.mapped_by) for e in exported) == [
        ("ahwr-claims", "managed_identity", "--identities client_id"),
        ("ffc-pay-batch", "app_registration", "app registration name"),
        ("ffc-pay-web", "managed_identity", "identity name sndadpinfmi1401-ffc-pay-web"),
    ]
    assert [(u.user.full_name, u.reason) for u in unmapped] == [
        ("adp-platform-admin", "no service: not named sndadpinfmi1401-<service>")
    ]


def test_one_user_per_service_and_environment_the_files_principal_first(state: DesiredState) -> None:
    mi = user("sndadpinfmi1401-ffc-pay-batch", "Basic User")
    app = user("ADP-FFC-PayBatch", "FFC Payments Writer")  # the file declares principal app_registration in dev
    roleless = user("sndadpinfmi1401-ffc-pay-api")
    exported, unmapped = map_users(state, [reading(mi, app, roleless)])
    assert [(e.service, e.principal) for e in exported] == [("ffc-pay-batch", "app_registration")]
    assert sorted(u.reason for u in unmapped) == [
        "maps to ffc-pay-api but holds no security role",
        "maps to ffc-pay-batch, which already takes 'ADP-FFC-PayBatch' here (one application user per service and "
        "environment)",
    ]


def test_names_that_are_no_adp_service_name_map_to_none(state: DesiredState) -> None:
    odd = user("sndadpinfmi1401-Not_A_Service", "Basic User")
    exported, unmapped = map_users(state, [reading(odd)])
    assert exported == [] and len(unmapped) == 1


def test_export_of_a_tree_gives_each_files_text_before_and_after(state: DesiredState) -> None:
    result = export(
        state, REPO / "stacks", [reading(user("sndadpinfmi1401-ffc-pay-web", "Basic User", "FFC Payments Reader"))]
    )
    (change,) = result.changes
    assert (change.service, change.status, change.display) == (
        "ffc-pay-web",
        "unchanged",
        "stacks/defradev/ffc-pay-web.yaml",
    )
    assert result.read == {"dev": 1}
