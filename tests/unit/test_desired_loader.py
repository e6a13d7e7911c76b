"""The real stacks/ tree loads clean; what it loads is what the files say; errors come all at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adp_identity.desired import (
    DesiredState,
    DesiredStateErrors,
    desired_state_from_pulumi_config,
    load_stack,
    load_tree,
)
from adp_identity.desired.yamlsafe import read_yaml

from .test_desired_cases import AHWR, DEV, PROD_WEB, WEB, make_tree, replace, write

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"


def test_real_tree_loads_clean_for_both_stacks() -> None:
    states = load_tree(STACKS)
    assert sorted(states) == ["defra", "defradev"]
    for state in states.values():
        assert sorted(state.services) == ["ahwr-claims", "ffc-pay-batch", "ffc-pay-web"]
    assert states["defradev"].tenant.name == "DefraDev"
    assert states["defra"].tenant.name == "Defra"
    assert sorted(states["defradev"].tenant.dataverse_environments) == ["dev", "tst"]
    assert {k: v.production for k, v in states["defra"].tenant.dataverse_environments.items()} == {
        "pre": False,
        "prd": True,
    }


def test_load_stack_loads_one_stack() -> None:
    state = load_stack(STACKS, "defradev")
    assert state.stack == "defradev"
    assert state == load_tree(STACKS)["defradev"]


def test_loaded_state_follows_adp_conventions() -> None:
    state = load_tree(STACKS)["defradev"]
    tenant = state.tenant
    assert tenant.naming.identity_prefix == "sndadpinfmi1401"
    assert state.identity_name("ffc-pay-batch") == "sndadpinfmi1401-ffc-pay-batch"
    assert tenant.key_vault.url == "https://sndadpinfkv1401.vault.azure.net"
    assert tenant.dataverse_environments["dev"].url == "https://defradev-dev.crm11.dynamics.com"
    assert tenant.tags["Restriction"] == "AUTOMATED CHANGES ONLY"
    assert tenant.policy.forbidden_roles_in_production == ("System Administrator", "System Customizer")

    credentials = state.federated_credentials("ffc-pay-batch")
    # cluster by cluster, the service's own account first, then the App Configuration provider
    assert [(c.name, c.cluster, c.subject) for c in credentials[:3]] == [
        ("sndadpinfmi1401-ffc-pay-batch-fic-0", "SNDADPINFAK1401", "system:serviceaccount:ffc-pay:ffc-pay-batch"),
        (
            "sndadpinfmi1401-ffc-pay-batch-fic-1",
            "SNDADPINFAK1401",
            "system:serviceaccount:app-config-service:az-appconfig-k8s-provider",
        ),
        ("sndadpinfmi1401-ffc-pay-batch-fic-2", "SNDADPINFAK1402", "system:serviceaccount:ffc-pay:ffc-pay-batch"),
    ]
    assert len(credentials) == 6
    assert {c.audience for c in credentials} == {"api://AzureADTokenExchange"}
    assert credentials[0].issuer == tenant.aks_clusters["SNDADPINFAK1401"]

    # ahwr-claims federates on two of the three clusters; the App Configuration provider on all three
    ahwr = state.federated_credentials("ahwr-claims")
    assert [(c.cluster, c.subject.rsplit(":", 1)[1]) for c in ahwr] == [
        ("SNDADPINFAK1401", "ahwr-claims"),
        ("SNDADPINFAK1401", "az-appconfig-k8s-provider"),
        ("SNDADPINFAK1402", "az-appconfig-k8s-provider"),
        ("DEVADPINFAK1401", "ahwr-claims"),
        ("DEVADPINFAK1401", "az-appconfig-k8s-provider"),
    ]


def test_one_service_per_stack_uses_its_app_registration_in_dataverse() -> None:
    for state in load_tree(STACKS).values():
        with_app = [s for s in state.services.values() if s.app_registration is not None]
        assert [s.service for s in with_app] == ["ffc-pay-batch"]
        assert {a.principal for a in with_app[0].dataverse} == {"app_registration"}
        others = [a.principal for s in state.services.values() if s.app_registration is None for a in s.dataverse]
        assert set(others) == {"managed_identity"}
    defra = load_tree(STACKS)["defra"].services["ffc-pay-batch"]
    assert defra.app_registration is not None and defra.app_registration.display_name is None
    assert defra.app_registration_display_name == "ADP-FFC-PayBatch"  # derived
    assert defra.app_registration.certificate.validity_months == 12
    assert defra.app_registration.certificate.renew_before_days == 30


def test_defaults_fill_what_a_service_file_leaves_out(tmp_path: Path) -> None:
    stacks = make_tree(
        tmp_path, (write("stacks/defradev/ffc-pay-admin.yaml", "service: ffc-pay-admin\nteam: ffc-payments\n"),)
    )
    spec = load_tree(stacks)["defradev"].services["ffc-pay-admin"]
    assert spec.workload_identity.federations == ()
    assert spec.workload_identity.app_config_provider is True
    assert spec.app_registration is None and spec.key_vault_secrets == () and spec.dataverse == ()


def test_forbidden_roles_are_accepted_outside_production(tmp_path: Path) -> None:
    edit = replace(
        PROD_WEB,
        "  - environment: pre\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User",
        "  - environment: pre\n    business_unit: ffc-payments\n    security_roles:\n      - System Customizer",
    )
    state = load_tree(make_tree(tmp_path, (edit,)))["defra"]
    assert state.services["ffc-pay-web"].dataverse[0].security_roles == ("System Customizer", "FFC Payments Reader")


def test_policy_is_a_setting(tmp_path: Path) -> None:
    """A stack can widen the forbidden list; the check follows the stack's policy, not a constant."""
    edits = (
        replace(
            "stacks/Pulumi.defra.yaml",
            "        - System Customizer\n",
            "        - System Customizer\n        - FFC Payments Writer\n",
        ),
    )
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(make_tree(tmp_path, edits), "defra")
    assert [(e.file, e.key_path) for e in raised.value.errors] == [
        ("stacks/defra/ffc-pay-batch.yaml", "dataverse[1].security_roles[1]")
    ]


def test_every_error_of_a_tree_is_reported_together(tmp_path: Path) -> None:
    edits = (
        replace(DEV, "    name: DefraDev", "    name: DefraTest"),
        replace(WEB, "  - environment: tst", "  - environment: uat"),
        replace(AHWR, "namespace: ahwr", "namespace: AHWR"),
        write("stacks/defradev/ffc-pay-batch.yaml", b"\x00"),
        replace(
            PROD_WEB,
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User",
            "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - System Customizer",
        ),
    )
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(make_tree(tmp_path, edits))
    assert [(e.file, e.key_path) for e in raised.value.errors] == [
        ("stacks/defra/ffc-pay-web.yaml", "dataverse[1].security_roles[0]"),
        (DEV, "config.adp-identity:tenant.name"),
        (AHWR, "workload_identity.federations[0].namespace"),
        ("stacks/defradev/ffc-pay-batch.yaml", "(document)"),
        # the tenant name is wrong, but its environments are valid: the unknown environment is reported in the
        # same run (issue 11), not after the name is fixed
        (WEB, "dataverse[1].environment"),
    ]
    assert raised.value.files_checked == 9  # 2 stack files, 6 service files, the exceptions file


def test_environment_checked_once_tenant_settings_are_valid(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(make_tree(tmp_path, (replace(WEB, "  - environment: tst", "  - environment: uat"),)))
    assert [e.key_path for e in raised.value.errors] == ["dataverse[1].environment"]


def test_missing_stacks_directory_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(tmp_path / "nowhere")
    assert [str(e) for e in raised.value.errors] == [
        "nowhere: (document): directory not found; allowed: a stacks directory (Pulumi stackConfigDir)"
    ]


def test_a_stack_without_service_directory_has_no_services(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    text = (STACKS / "Pulumi.defra.yaml").read_text(encoding="utf-8")
    secrets_start = text.index("  adp-identity:secret-")
    (stacks / "Pulumi.defra.yaml").write_text(text[:secrets_start], encoding="utf-8")
    state = load_tree(stacks)["defra"]
    assert state.services == {}


# --- the Pulumi program's way in ------------------------------------------------------------------------


def _pulumi_config(stack: str) -> tuple[dict[str, Any], set[str]]:
    """What Pulumi hands a program for this stack: JSON text for objects, decrypted secrets + their keys."""
    config = read_yaml(STACKS / f"Pulumi.{stack}.yaml").data["config"]
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = "decrypted-secret-value"
            secret_keys.add(key)
        elif isinstance(value, dict):
            values[key] = json.dumps(value)
        else:
            values[key] = str(value)
    return values, secret_keys


@pytest.mark.parametrize("stack", ["defra", "defradev"])
def test_pulumi_config_gives_the_same_state_as_the_stack_file(stack: str) -> None:
    values, secret_keys = _pulumi_config(stack)
    state = desired_state_from_pulumi_config(stack, values, secret_keys, STACKS)
    assert isinstance(state, DesiredState)
    assert state == load_tree(STACKS)[stack]


def test_pulumi_config_accepts_a_mapping_for_the_tenant() -> None:
    values, secret_keys = _pulumi_config("defradev")
    values["adp-identity:tenant"] = json.loads(values["adp-identity:tenant"])
    assert desired_state_from_pulumi_config("defradev", values, secret_keys, STACKS) == load_stack(STACKS, "defradev")


def test_pulumi_config_refuses_a_secret_that_is_not_secret() -> None:
    values, secret_keys = _pulumi_config("defradev")
    key = "adp-identity:secret-ffc-pay-batch-sftp-password"
    secret_keys.discard(key)
    values[key] = "hunter2-plaintext"
    with pytest.raises(DesiredStateErrors) as raised:
        desired_state_from_pulumi_config("defradev", values, secret_keys, STACKS)
    assert [str(e) for e in raised.value.errors] == [
        f"Pulumi.defradev.yaml (Pulumi config): config.{key}: plaintext value; secret values must be encrypted; "
        "allowed: secure: <ciphertext>, written by pulumi config set --secret --stack defradev "
        "secret-ffc-pay-batch-sftp-password [rule key-vault-secret-from-secret-config]"
    ]
    assert "hunter2" not in str(raised.value)


def test_pulumi_config_reports_missing_secret_and_bad_tenant_together() -> None:
    values, secret_keys = _pulumi_config("defradev")
    del values["adp-identity:secret-ahwr-claims-notify-api-key"]
    tenant = json.loads(values["adp-identity:tenant"])
    tenant["tenant_id"] = "not-a-guid"
    values["adp-identity:tenant"] = json.dumps(tenant)
    with pytest.raises(DesiredStateErrors) as raised:
        desired_state_from_pulumi_config("defradev", values, secret_keys, STACKS)
    assert [(e.file, e.key_path, e.message) for e in raised.value.errors] == [
        ("Pulumi.defradev.yaml (Pulumi config)", "config.adp-identity:tenant.tenant_id", "'not-a-guid' is not a GUID"),
        (
            "stacks/defradev/ahwr-claims.yaml",
            "key_vault_secrets[0]",
            "no secure config value 'adp-identity:secret-ahwr-claims-notify-api-key' in "
            "Pulumi.defradev.yaml (Pulumi config) yet: the platform team (or the pipeline's deployer) sets it on this"
            " branch, and deploy (validate --strict) refuses the tree until then",
        ),
    ]


def test_pulumi_config_with_unreadable_tenant_json() -> None:
    values, secret_keys = _pulumi_config("defradev")
    values["adp-identity:tenant"] = "{not json"
    with pytest.raises(DesiredStateErrors) as raised:
        desired_state_from_pulumi_config("defradev", values, secret_keys, STACKS)
    assert [str(e) for e in raised.value.errors] == [
        "Pulumi.defradev.yaml (Pulumi config): config.adp-identity:tenant: value is not JSON; "
        "allowed: the tenant settings mapping (schemas/tenant-settings.schema.json)"
    ]


def test_pulumi_config_without_tenant_settings() -> None:
    values, secret_keys = _pulumi_config("defradev")
    del values["adp-identity:tenant"]
    with pytest.raises(DesiredStateErrors) as raised:
        desired_state_from_pulumi_config("defradev", values, secret_keys, STACKS)
    assert [(e.key_path, e.message) for e in raised.value.errors] == [
        ("config.adp-identity:tenant", "required key is missing")
    ]


# --- who owns the workload identity (issue 7 §1, schema) ------------------------------------------------------


def test_workload_identity_owner_defaults_to_adp_identity() -> None:
    for state in load_tree(STACKS).values():
        assert state.tenant.workload_identity_owner == "adp-identity"
        assert {spec.workload_identity.owner for spec in state.services.values()} == {"adp-identity"}


def test_the_stack_default_applies_where_a_service_sets_no_owner(tmp_path: Path) -> None:
    edits = (
        replace(DEV, "    workload_identity_owner: adp-identity", "    workload_identity_owner: platform"),
        replace(AHWR, "workload_identity:\n", "workload_identity:\n  owner: adp-identity\n"),
    )
    stacks = make_tree(tmp_path, edits)
    state = load_tree(stacks)["defradev"]
    owners = {name: spec.workload_identity.owner for name, spec in state.services.items()}
    assert owners == {"ahwr-claims": "adp-identity", "ffc-pay-batch": "platform", "ffc-pay-web": "platform"}
    # the Pulumi program's way in gives the same effective owners
    values, secret_keys = _pulumi_config_of(stacks, "defradev")
    assert desired_state_from_pulumi_config("defradev", values, secret_keys, stacks) == state


def _pulumi_config_of(stacks: Path, stack: str) -> tuple[dict[str, Any], set[str]]:
    config = read_yaml(stacks / f"Pulumi.{stack}.yaml").data["config"]
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key], secret_keys = "decrypted", secret_keys | {key}
        else:
            values[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    return values, secret_keys


def test_an_unknown_owner_is_refused(tmp_path: Path) -> None:
    edits = (
        replace(WEB, "workload_identity:\n", "workload_identity:\n  owner: aso\n"),
        replace(DEV, "    workload_identity_owner: adp-identity", "    workload_identity_owner: ADP"),
    )
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(make_tree(tmp_path, edits), "defradev")
    assert [(e.key_path, e.message, e.allowed) for e in raised.value.errors] == [
        ("config.adp-identity:tenant.workload_identity_owner", "'ADP' is not allowed", "'platform' or 'adp-identity'"),
        ("workload_identity.owner", "'aso' is not allowed", "'platform' or 'adp-identity'"),
    ]


def test_the_service_schema_offers_the_owner_without_a_fixed_default() -> None:
    schema = json.loads((REPO / "schemas" / "service.schema.json").read_text(encoding="utf-8"))
    owner = schema["$defs"]["WorkloadIdentitySpec"]["properties"]["owner"]
    assert owner["enum"] == ["platform", "adp-identity"] and "default" not in owner
    tenant = json.loads((REPO / "schemas" / "tenant-settings.schema.json").read_text(encoding="utf-8"))
    assert tenant["properties"]["workload_identity_owner"]["default"] == "adp-identity"
