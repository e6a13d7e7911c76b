"""The seed loader: the packaged ADP-shaped seed, and one actionable line for each kind of bad seed."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adp_identity_emulator import DEFAULT_SEED, SeedError, load_seed

ROLES_CATALOG = Path(__file__).parents[1] / "fixtures" / "recorded-dataverse" / "roles-catalog.json"
MANAGER_PRIVILEGES = (
    "prvReadUser",
    "prvCreateUser",
    "prvWriteUser",
    "prvReadRole",
    "prvAssignRole",
    "prvReadBusinessUnit",
)


def test_default_seed_is_shaped_like_adp() -> None:
    seed = load_seed(DEFAULT_SEED)
    assert [(t.name, t.domain) for t in seed.tenants] == [
        ("DefraDev", "defradev.onmicrosoft.com"),
        ("Defra", "defra.onmicrosoft.com"),
    ]
    catalog = {row["name"] for row in json.loads(ROLES_CATALOG.read_text())["value"]}
    assert len(catalog) == 72
    expected_envs = {"DefraDev": ["defradev-dev", "defradev-tst"], "Defra": ["defra-pre", "defra-prd"]}
    for tenant in seed.tenants:
        pipeline = tenant.applications[0]
        assert pipeline.name == "adp-identity-pipeline"
        assert set(pipeline.credentials) == {"federated", "secret", "certificate"}
        assert pipeline.federated_subject is not None
        assert pipeline.federated_subject.startswith("repo:DEFRA/adp-identity:environment:")
        names = [a.name for a in tenant.applications]
        assert "adp-platform-admin" in names
        assert any(not a.service_principal for a in tenant.applications)
        assert sum(n.endswith(("-ffc-pay-batch", "-ffc-pay-web", "-ahwr-claims")) for n in names) == 3
        assert [e.name for e in tenant.environments] == expected_envs[tenant.name]
        for env in tenant.environments:
            roots = [u for u in env.business_units if u.parent is None]
            assert [r.name for r in roots] == [env.name]
            assert {"ffc-payments", "animal-health"} <= {u.name for u in env.business_units}
            roles = {r.name: r for r in env.roles}
            assert catalog <= set(roles)
            manager = set(roles["ADP Identity Manager"].privileges)
            assert manager >= set(MANAGER_PRIVILEGES)  # user and role management...
            for service_role in ("FFC Payments Reader", "FFC Payments Writer", "AHWR Claims Processor"):
                assert manager >= set(roles[service_role].privileges)  # ...and what it hands out (no elevation)
            assert "prvDeleteUser" not in manager
            assert {"FFC Payments Reader", "FFC Payments Writer", "AHWR Claims Processor"} <= set(roles)
            users = {u.application: u for u in env.application_users}
            assert users["adp-identity-pipeline"].roles == ("ADP Identity Manager",)
            assert users["adp-platform-admin"].roles == ("System Administrator",)
    hand_made = {u.application: u for u in seed.tenants[0].environments[0].application_users}
    web = hand_made["sndadpinfmi1401-ffc-pay-web"]
    assert (web.disabled, web.business_unit, web.roles) == (True, "animal-health", ("System Administrator",))


# ---------------------------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "tenants": [
        {
            "name": "Contoso",
            "id": "11111111-1111-4111-8111-111111111111",
            "domain": "contoso.onmicrosoft.com",
            "applications": [
                {
                    "name": "deployer",
                    "client_id": "22222222-2222-4222-8222-222222222222",
                    "object_id": "33333333-3333-4333-8333-333333333333",
                    "credentials": ["federated", "secret"],
                    "federated_subject": "repo:org/repo:environment:dev",
                },
                {
                    "name": "registered-only",
                    "client_id": "44444444-4444-4444-8444-444444444444",
                    "object_id": "55555555-5555-4555-8555-555555555555",
                    "service_principal": False,
                },
            ],
            "environments": [
                {
                    "name": "contoso-dev",
                    "business_units": [{"name": "contoso-dev"}, {"name": "team-a", "parent": "contoso-dev"}],
                    "roles": ["System Administrator", {"name": "Reader", "privileges": ["prvReadUser"]}],
                    "application_users": [{"application": "deployer", "roles": ["System Administrator"]}],
                }
            ],
        }
    ]
}


def _write(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None, text: str | None = None) -> Path:
    path = tmp_path / "seed.yaml"
    if text is None:
        data = copy.deepcopy(BASE)
        if change is not None:
            change(data)
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def _tenant(d: dict[str, Any]) -> dict[str, Any]:
    tenant: dict[str, Any] = d["tenants"][0]
    return tenant


def _env(d: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = _tenant(d)["environments"][0]
    return env


def _refusal(path: Path) -> str:
    """The seed's refusal, checked for its shape: ``<file>: <key>: <problem>; allowed: <...>`` on one line."""
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert "; allowed: " in message
    return message


def test_the_minimal_seed_loads(tmp_path: Path) -> None:
    seed = load_seed(_write(tmp_path))
    env = seed.tenants[0].environments[0]
    assert env.roles[1].privileges == ("prvReadUser",)
    assert env.application_users[0].business_unit is None


BAD_SEEDS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown top key", lambda d: d.update(tenant=[]), "tenant: unknown key; allowed: tenants"),
    (
        "unknown tenant key",
        lambda d: _tenant(d).update(domian="x"),
        "tenants[0].domian: unknown key; allowed: name, id, domain, applications, environments, key_vaults",
    ),
    (
        "wrong type",
        lambda d: _tenant(d).update(applications="deployer"),
        "tenants[0].applications: expected a list, got a string; allowed: a list of applications",
    ),
    (
        "bad GUID",
        lambda d: _tenant(d)["applications"][0].update(client_id="not-a-guid"),
        "tenants[0].applications[0].client_id: not a GUID: 'not-a-guid'; allowed: a GUID like",
    ),
    (
        "missing key",
        lambda d: _tenant(d).pop("id"),
        "tenants[0].id: missing; allowed: a value for every one of name, id, domain, applications",
    ),
    (
        "duplicate tenant",
        lambda d: d["tenants"].append({**copy.deepcopy(_tenant(d)), "id": "66666666-6666-4666-8666-666666666666"}),
        "tenants[1].name: duplicate tenant name 'Contoso'; allowed: each tenant name once",
    ),
    (
        "duplicate application",
        lambda d: _tenant(d)["applications"][1].update(name="deployer"),
        "tenants[0].applications[1].name: duplicate application name 'deployer'",
    ),
    (
        "unknown credential kind",
        lambda d: _tenant(d)["applications"][0].update(credentials=["secret", "password"]),
        "tenants[0].applications[0].credentials[1]: unknown credential kind 'password'; "
        "allowed: federated, secret, certificate",
    ),
    (
        "federated without subject",
        lambda d: _tenant(d)["applications"][0].pop("federated_subject"),
        "tenants[0].applications[0].federated_subject: missing for a 'federated' credential",
    ),
    (
        "deployer without service principal",
        lambda d: _tenant(d)["applications"][0].update(service_principal=False),
        "tenants[0].applications[0]: the first application ('deployer') deploys",
    ),
    (
        "unknown application",
        lambda d: _env(d)["application_users"].append({"application": "deployr"}),
        "tenants[0].environments[0].application_users[1].application: unknown application 'deployr'; "
        "allowed: one of the 2 applications of this tenant (closest: 'deployer')",
    ),
    (
        "application without service principal",
        lambda d: _env(d)["application_users"].append({"application": "registered-only"}),
        "application_users[1].application: application 'registered-only' has no service principal",
    ),
    (
        "unknown business unit",
        lambda d: _env(d)["application_users"][0].update(business_unit="team-b"),
        "application_users[0].business_unit: unknown business unit 'team-b'; "
        "allowed: one of the 2 business units of contoso-dev (closest: 'team-a')",
    ),
    (
        "unknown role",
        lambda d: _env(d)["application_users"][0].update(roles=["System Administrater"]),
        "application_users[0].roles[0]: unknown role 'System Administrater'; "
        "allowed: one of the 2 roles of contoso-dev (closest: 'System Administrator')",
    ),
    (
        "two roots",
        lambda d: _env(d)["business_units"][1].pop("parent"),
        "tenants[0].environments[0].business_units: 2 root business units ('contoso-dev', 'team-a'); "
        "allowed: exactly one",
    ),
    (
        "no root",
        lambda d: _env(d)["business_units"][0].update(parent="team-a"),
        "tenants[0].environments[0].business_units: 0 root business units; allowed: exactly one",
    ),
    (
        "unknown parent",
        lambda d: _env(d)["business_units"][1].update(parent="nowhere"),
        "business_units[1].parent: unknown business unit 'nowhere'",
    ),
    (
        "bad privilege",
        lambda d: _env(d)["roles"][1].update(privileges=["ReadUser"]),
        "roles[1].privileges[0]: not a privilege name: 'ReadUser'; allowed: names like prvReadUser",
    ),
    (
        "duplicate role",
        lambda d: _env(d)["roles"].append("System Administrator"),
        "tenants[0].environments[0].roles[2]: duplicate role name 'System Administrator'",
    ),
    (
        "boolean expected",
        lambda d: _tenant(d)["applications"][1].update(service_principal="no"),
        "applications[1].service_principal: expected true or false, got a string; allowed: true, false",
    ),
    (
        "reserved origin name",
        lambda d: _env(d).update(name="entra"),
        "environments[0].name: 'entra' is reserved for the authority host",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BAD_SEEDS], ids=[n for n, _, _ in BAD_SEEDS])
def test_a_bad_seed_is_one_line_naming_file_key_and_what_is_allowed(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    assert expected in _refusal(_write(tmp_path, change))


RAW_SEEDS = [
    (
        "duplicate key",
        "tenants:\n  - name: A\n    name: B\n",
        "tenants[0].name: line 3: duplicate key 'name' (first at",
    ),
    ("syntax", "tenants: [\n  - name: A\n", "(document): line 2: YAML syntax error: expected the node content"),
    ("not a mapping", "- a\n- b\n", "(document): line 1: top level is a list, not a mapping; allowed: a YAML mapping"),
    ("empty", "", "(document): line 1: file is empty; allowed: a YAML mapping of keys"),
    ("python tag", "tenants: !!python/object:os.system {}\n", "(document): line 1: explicit tag 'tag:yaml.org"),
    ("python scalar", "tenants: !!python/name:os.system\n", "line 1: explicit tag 'tag:yaml.org,2002:python/name"),
    ("tab indentation", "tenants:\n\t- name: A\n", "(document): line 2: tab character in indentation"),
    ("yaml 1.1 boolean", "tenants: no\n", "tenants: expected a list, got a string; allowed: a list of tenants"),
    ("null", "tenants:\n", "tenants: expected a list, got null; allowed: a list of tenants"),
    (
        "alias bomb",
        "\n".join(['l0: &l0 "lol"'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]),
        "(document): line 1: aliases expand to more than 100000 nodes; allowed: aliases of small values",
    ),
    ("self-referencing alias", "tenants: &t [*t]\n", "(document): line 1: nested deeper than 32 levels"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in RAW_SEEDS], ids=[n for n, _, _ in RAW_SEEDS])
def test_unreadable_yaml_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _refusal(_write(tmp_path, text=text))


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SeedError) as caught:
        load_seed(missing)
    assert str(caught.value) == (
        f"{missing}: (document): cannot be read (No such file or directory); allowed: a readable file"
    )


def test_anchors_and_aliases_share_values_in_a_seed(tmp_path: Path) -> None:
    def second_environment(d: dict[str, Any]) -> None:
        _tenant(d)["environments"].append({**_env(d), "name": "contoso-tst"})  # shares the lists, not copies

    path = _write(tmp_path, second_environment)
    assert "&id001" in path.read_text() and "*id001" in path.read_text()  # PyYAML writes shared lists as aliases
    dev, tst = load_seed(path).tenants[0].environments
    assert tst.name == "contoso-tst"
    assert tst.roles == dev.roles
    assert [r.name for r in tst.roles] == ["System Administrator", "Reader"]
    assert [u.name for u in tst.business_units] == ["contoso-dev", "team-a"]


def test_references_by_client_id_resolve_to_the_application_name(tmp_path: Path) -> None:
    def by_client_id(d: dict[str, Any]) -> None:
        _env(d)["application_users"][0]["application"] = "22222222-2222-4222-8222-222222222222"

    seed = load_seed(_write(tmp_path, by_client_id))
    assert seed.tenants[0].environments[0].application_users[0].application == "deployer"
