"""Who owns a service's identity (``workload_identity.owner``), and moving it either way without loss, under mocks.

The service moved here is defradev's ``ffc-pay-batch``: it has everything a service can have (an identity with
six federated credentials, a Key Vault secret, an app registration with a certificate, two Dataverse users bound
to the app registration), so each rule shows on every kind of resource.

How a move would delete or recreate something, and what each test checks against it:
- a resource that leaves the program is deleted by the engine unless its state says ``retainOnDelete``, which it
  takes from the registration of the deploy before: so every resource that leaves must carry the option one
  deploy earlier (the ``release`` deploy);
- a resource that enters the program is created unless it carries ``import``: so every resource the platform
  made must arrive with its ARM id, under the Azure name it already has;
- a resource whose URN or replace-on-change inputs change is replaced: so everything that stays (secrets, app
  registration, certificate, Dataverse users) must keep its URN and inputs, the users their application id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.imports import ImportIds, render_imports
from tests.program import mocks
from tests.program.expected import load_expected
from tests.program.mocks import (
    APP_REGISTRATION,
    APPLICATION,
    APPLICATION_USER,
    FEDERATED_CREDENTIAL,
    GET_IDENTITY,
    IDENTITY,
    KV_CERTIFICATE,
    KV_SECRET,
    REPO,
    ROLE_ASSIGNMENT,
    SERVICE,
    SERVICE_PRINCIPAL,
    WORKLOAD_IDENTITY,
    ExistingIdentity,
    ProgramRun,
    Registration,
    inputs_without_provider,
    plain,
)

STACK = "defradev"
SERVICE_NAME = "ffc-pay-batch"
GROUP = "SNDADPINFRG1401"
IDENTITY_NAME = "sndadpinfmi1401-ffc-pay-batch"
SUBSCRIPTION = "9cab3c00-bf5a-4d60-b843-facce1197081"
IDENTITY_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ManagedIdentity/"
    f"userAssignedIdentities/{IDENTITY_NAME}"
)
PLATFORM = ExistingIdentity(
    client_id="5b3c1f2e-8a47-4d1e-9c2b-7e1f0a9d3c41",
    principal_id="0c7d2e91-4b6a-4f3e-8d15-2a9b7c6e1f08",
    tenant_id="6fb17b64-ece9-4b43-8acf-99e8d37b19ad",
)
# what ADP's Helm library manages for a service (and so what owner: platform must not register)
PLATFORM_OWNED = (WORKLOAD_IDENTITY, IDENTITY, FEDERATED_CREDENTIAL, ROLE_ASSIGNMENT)


def _project(tmp_path: Path, workload_identity: dict[str, Any] | None = None) -> Path:
    root = mocks.copy_project(tmp_path)
    if workload_identity is not None:
        set_workload_identity(root, workload_identity)
    return root


def set_workload_identity(root: Path, changes: dict[str, Any]) -> None:
    """Edit the service file's workload_identity as a pull request would (``None`` removes a key)."""
    path = mocks.read_project(root).stack_config_dir / STACK / f"{SERVICE_NAME}.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    section = spec.setdefault("workload_identity", {})
    for key, value in changes.items():
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


# one decryption of the stack's secure values for every run, so that runs compare input for input
CONFIG = mocks.stack_config(mocks.read_project(REPO), STACK)


def _run(root: Path, *, identities: dict[tuple[str, str], ExistingIdentity] | None = None) -> ProgramRun:
    return mocks.run_program(root, STACK, CONFIG, platform_identities=identities)


def _of_service(run: ProgramRun) -> list[Registration]:
    service = run.named(SERVICE, SERVICE_NAME)
    return [service, *run.descendants(service)]


def _by_urn(registrations: list[Registration]) -> dict[str, Registration]:
    return {r.urn: r for r in registrations}


@pytest.fixture(scope="module")
def baseline() -> ProgramRun:
    """The repository's stack as it is: every service owned by adp-identity."""
    run = mocks.run_program(REPO, STACK, CONFIG)
    assert run.error is None, repr(run.error)
    return run


# -- owner: adp-identity (the default) ---------------------------------------------------------------------------


def test_the_default_owner_registers_everything_and_neither_imports_nor_retains(baseline: ProgramRun) -> None:
    assert not baseline.invokes  # no lookup: the stack owns every identity
    assert {r.type for r in _of_service(baseline)} >= set(PLATFORM_OWNED)
    assert not [r.name for r in baseline.registrations if r.import_id or r.retain_on_delete]


# -- owner: platform ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform_run(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    root = _project(tmp_path_factory.mktemp("platform"), {"owner": "platform"})
    run = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert run.error is None, repr(run.error)
    return run


def test_platform_owner_looks_the_identity_up_by_adp_name_in_the_stack_resource_group(platform_run: ProgramRun) -> None:
    assert platform_run.invokes == [(GET_IDENTITY, {"resourceGroupName": GROUP, "resourceName": IDENTITY_NAME})]


def test_platform_owner_registers_no_identity_credential_or_secret_grant(platform_run: ProgramRun) -> None:
    registered = _of_service(platform_run)
    assert not [r.name for r in registered if r.type in PLATFORM_OWNED]
    # what stays the stack's: the secret, the app registration and its certificate, the Dataverse users
    assert {r.type for r in registered} == {
        SERVICE,
        mocks.SERVICE_SECRETS,
        KV_SECRET,
        APP_REGISTRATION,
        APPLICATION,
        SERVICE_PRINCIPAL,
        KV_CERTIFICATE,
        mocks.APPLICATION_CERTIFICATE,
        mocks.DATAVERSE_ACCESS,
        APPLICATION_USER,
    }


def test_platform_owner_keeps_users_app_registration_secrets_as_with_adp_identity(
    platform_run: ProgramRun, baseline: ProgramRun
) -> None:
    before = _by_urn(_of_service(baseline))
    after = _by_urn(_of_service(platform_run))
    kept = {urn: r for urn, r in before.items() if r.type not in PLATFORM_OWNED}
    assert set(after) == set(kept)  # the same resources, under the same URNs
    for urn, registration in after.items():
        assert inputs_without_provider(registration) == inputs_without_provider(kept[urn]), registration.name
    # every other service is untouched
    others = {r.urn: inputs_without_provider(r) for r in baseline.registrations if r.urn not in before}
    assert {r.urn: inputs_without_provider(r) for r in platform_run.registrations if r.urn not in after} == others


def test_platform_owner_binds_managed_identity_users_to_the_platform_identity(tmp_path: Path) -> None:
    """ffc-pay-batch's users are its app registration's; bind them to the managed identity to see the client id."""
    root = _project(tmp_path, {"owner": "platform"})
    path = mocks.read_project(root).stack_config_dir / STACK / f"{SERVICE_NAME}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("principal: app_registration", "principal: managed_identity")
    )
    run = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert run.error is None, repr(run.error)
    users = [r for r in _of_service(run) if r.type == APPLICATION_USER]
    assert len(users) == 2
    assert {r.inputs["application_id"] for r in users} == {PLATFORM.client_id}


def test_platform_owner_outputs_the_platform_identity(platform_run: ProgramRun, baseline: ProgramRun) -> None:
    outputs = plain(platform_run.stack_outputs[SERVICE_NAME])
    before = plain(baseline.stack_outputs[SERVICE_NAME])
    assert set(outputs) == set(before)  # the same stack outputs as with adp-identity
    assert outputs["identity_name"] == IDENTITY_NAME
    assert (outputs["client_id"], outputs["principal_id"], outputs["tenant_id"]) == (
        PLATFORM.client_id,
        PLATFORM.principal_id,
        PLATFORM.tenant_id,
    )
    assert outputs["app_registration_client_id"] == before["app_registration_client_id"]
    assert outputs["dataverse_application_users"] == before["dataverse_application_users"]


def test_a_platform_identity_that_does_not_exist_fails_the_preview_with_nothing_registered(tmp_path: Path) -> None:
    root = _project(tmp_path, {"owner": "platform"})
    run = _run(root)  # the fake Azure holds no such identity: its lookup raises, as the provider's 404 does
    assert isinstance(run.error, pulumi.RunError)
    assert run.registrations == []
    heading, *lines = str(run.error).splitlines()
    assert heading == "adp-identity: 1 platform-owned identity not found; nothing was changed:"
    assert len(lines) == 1
    assert lines[0].startswith(
        f"service {SERVICE_NAME}: workload_identity.owner is platform, but the managed identity {IDENTITY_NAME} was "
        f"not found in resource group {GROUP} (subscription {SUBSCRIPTION})"
    )
    assert "ResourceNotFound" in lines[0]  # the provider's reason, on the same line
    assert run.invokes == [(GET_IDENTITY, {"resourceGroupName": GROUP, "resourceName": IDENTITY_NAME})]


def test_every_missing_platform_identity_is_named_at_once(tmp_path: Path) -> None:
    root = _project(tmp_path, {"owner": "platform"})
    other = mocks.read_project(root).stack_config_dir / STACK / "ahwr-claims.yaml"
    spec = yaml.safe_load(other.read_text(encoding="utf-8"))
    spec.setdefault("workload_identity", {})["owner"] = "platform"
    other.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    run = _run(root)
    assert isinstance(run.error, pulumi.RunError)
    assert run.registrations == []
    lines = str(run.error).splitlines()
    assert lines[0] == "adp-identity: 2 platform-owned identities not found; nothing was changed:"
    assert [line.split(":")[0] for line in lines[1:]] == ["service ahwr-claims", f"service {SERVICE_NAME}"]


def test_release_is_refused_while_adp_identity_owns_the_identity(tmp_path: Path) -> None:
    root = _project(tmp_path, {"release": True})
    run = _run(root)
    assert isinstance(run.error, pulumi.RunError)
    assert run.registrations == []
    assert f"{SERVICE_NAME}.yaml" in str(run.error)
    assert "workload_identity.release: release: true hands the identity over to the platform" in str(run.error)


# -- moving adp-identity -> platform: release, then let go ---------------------------------------------------


def test_moving_to_the_platform_retains_what_leaves_and_keeps_everything_else(
    tmp_path: Path, baseline: ProgramRun
) -> None:
    root = _project(tmp_path, {"owner": "platform", "release": True})
    release = _run(root)  # deploy 1: owner platform, release: true
    assert release.error is None, repr(release.error)
    assert not release.invokes  # the stack still owns the identity during the release deploy
    # the release deploy changes no input and no URN: only the retain option is recorded in the state
    assert {r.urn: inputs_without_provider(r) for r in release.registrations} == {
        r.urn: inputs_without_provider(r) for r in baseline.registrations
    }
    moved = _by_urn(_of_service(release))
    retained = {urn for urn, r in moved.items() if r.retain_on_delete}
    assert {moved[urn].type for urn in retained} == {IDENTITY, FEDERATED_CREDENTIAL, ROLE_ASSIGNMENT}
    expected = load_expected(mocks.read_project(root).stack_config_dir, STACK).services[SERVICE_NAME]
    assert len(retained) == 1 + len(expected.credentials) + len(expected.secrets) + 1  # + the certificate's grant
    assert not [r.name for r in release.registrations if r.import_id]
    assert not [r.name for r in release.registrations if r.retain_on_delete and r.urn not in moved]

    # deploy 2: release removed; the platform's Helm library now owns the identity the stack made
    set_workload_identity(root, {"release": None})
    made = release.named(IDENTITY, f"{SERVICE_NAME}-identity-mi").outputs
    existing = ExistingIdentity(made["clientId"], made["principalId"], made["tenantId"])
    after = _run(root, identities={(GROUP, IDENTITY_NAME): existing})
    assert after.error is None, repr(after.error)
    left = release.urns() - after.urns()
    # every custom resource that leaves the stack was retained one deploy earlier: the engine deletes none of them
    assert {urn for urn in left if moved[urn].custom} == retained
    assert {moved[urn].type for urn in left if not moved[urn].custom} == {WORKLOAD_IDENTITY}
    # nothing arrives, and what stays is registered exactly as before (the users keep their application id)
    assert after.urns() <= release.urns()
    before = release.by_urn()
    for registration in after.registrations:
        assert inputs_without_provider(registration) == inputs_without_provider(before[registration.urn])
    assert plain(after.stack_outputs) == plain(release.stack_outputs)


# -- moving platform -> adp-identity: import ---------------------------------------------------------------


def _aso_grant_id(secret: str, guid: str) -> str:
    """A role assignment as ADP's Helm library writes its scope (``resourcegroups``) and ASO names it (a UUID)."""
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}/providers/Microsoft.KeyVault/vaults/sndadpinfkv1401"
        f"/secrets/{secret}/providers/Microsoft.Authorization/roleAssignments/{guid}"
    )


ASO_SECRET_GRANT = "0e6f7a1b-2c3d-5e4f-8a9b-0c1d2e3f4a5b"


def _import_ids(root: Path) -> ImportIds:
    """What `adp-identity import-ids` finds for a service the platform made: its identity, two of its credentials
    (one under a name of the platform's own), and the grant on its secret (not on the certificate, which the
    platform never knew of)."""
    expected = load_expected(mocks.read_project(root).stack_config_dir, STACK).services[SERVICE_NAME]
    first, second = expected.credentials[0], expected.credentials[3]  # cluster 1: own account; cluster 2: App Config
    from infra.imports import ImportedCredential, ImportedGrant

    return ImportIds(
        service=SERVICE_NAME,
        identity=IDENTITY_ID,
        federated_credentials=(
            ImportedCredential(first.issuer, first.subject, f"{IDENTITY_ID}/federatedIdentityCredentials/{first.name}"),
            ImportedCredential(
                second.issuer, second.subject, f"{IDENTITY_ID}/federatedIdentityCredentials/{IDENTITY_NAME}-fic-9"
            ),
        ),
        secret_grants=(
            ImportedGrant(
                f"{SERVICE_NAME}-sftp-password", _aso_grant_id(f"{SERVICE_NAME}-sftp-password", ASO_SECRET_GRANT)
            ),
        ),
    )


def _write_imports(root: Path, ids: ImportIds) -> Path:
    path = mocks.read_project(root).stack_config_dir / STACK / "imports" / f"{SERVICE_NAME}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(render_imports(ids, stack=STACK), encoding="utf-8")
    return path


def test_moving_from_the_platform_imports_what_exists_under_its_own_names(tmp_path: Path) -> None:
    root = _project(tmp_path, {"owner": "platform"})
    platform = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert platform.error is None, repr(platform.error)

    set_workload_identity(root, {"owner": None})  # back to the default, adp-identity
    ids = _import_ids(root)
    _write_imports(root, ids)
    adopted = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert adopted.error is None, repr(adopted.error)
    assert not adopted.invokes  # the stack owns the identity again: no lookup

    identity = adopted.named(IDENTITY, f"{SERVICE_NAME}-identity-mi")
    assert identity.import_id == IDENTITY_ID
    assert identity.inputs["resourceName"] == IDENTITY_NAME
    expected = load_expected(mocks.read_project(root).stack_config_dir, STACK).services[SERVICE_NAME]
    imported = {(c.issuer, c.subject): c for c in ids.federated_credentials}
    for index, credential in enumerate(expected.credentials):
        fic = adopted.named(FEDERATED_CREDENTIAL, f"{SERVICE_NAME}-identity-fic-{index}")
        found = imported.get((credential.issuer, credential.subject))
        if found is None:  # not in Azure: created, under the stack's own name
            assert fic.import_id == ""
            assert fic.inputs["federatedIdentityCredentialResourceName"] == credential.name
        else:  # in Azure: adopted under the name the platform gave it
            assert fic.import_id == found.id
            assert fic.inputs["federatedIdentityCredentialResourceName"] == found.name
        assert (fic.inputs["issuer"], fic.inputs["subject"]) == (credential.issuer, credential.subject)
    assert [r.import_id for r in adopted.of_type(FEDERATED_CREDENTIAL) if r.import_id] == [
        c.id for c in ids.federated_credentials
    ]
    assert (
        adopted.named(FEDERATED_CREDENTIAL, f"{SERVICE_NAME}-identity-fic-3").inputs[
            "federatedIdentityCredentialResourceName"
        ]
        == f"{IDENTITY_NAME}-fic-9"
    )

    reader = adopted.named(ROLE_ASSIGNMENT, f"{SERVICE_NAME}-secrets-sftp-password-reader")
    grant = _aso_grant_id(f"{SERVICE_NAME}-sftp-password", ASO_SECRET_GRANT)
    assert reader.import_id == grant
    assert reader.inputs["roleAssignmentName"] == ASO_SECRET_GRANT  # Azure's name, not the stack's own GUID
    assert reader.inputs["scope"] == grant.split("/providers/Microsoft.Authorization/")[0]  # exactly as Azure has it
    assert reader.inputs["principalId"] == PLATFORM.principal_id  # the adopted identity's
    certificate_reader = adopted.named(ROLE_ASSIGNMENT, f"{SERVICE_NAME}-app-cert-reader")
    assert certificate_reader.import_id == ""  # the platform never granted it: created

    # nothing is retained, nothing else is imported
    assert not [r.name for r in adopted.registrations if r.retain_on_delete]
    moved = _by_urn(_of_service(adopted))
    assert not [r.name for r in adopted.registrations if r.import_id and r.urn not in moved]
    # what the platform run had stays as it was: same URNs, same inputs (the users keep the same client id)
    before = _by_urn(_of_service(platform))
    assert set(before) <= set(moved)
    for urn, registration in before.items():
        assert inputs_without_provider(moved[urn]) == inputs_without_provider(registration), registration.name
    assert plain(adopted.stack_outputs[SERVICE_NAME]) == plain(platform.stack_outputs[SERVICE_NAME])


def test_an_import_file_stays_valid_on_the_next_deploy(tmp_path: Path) -> None:
    """The file is kept (it names what was adopted): a second run registers the same ids and names."""
    root = _project(tmp_path)
    _write_imports(root, _import_ids(root))
    first = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    second = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert first.error is None and second.error is None
    assert [r.name for r in first.registrations if r.import_id]  # it does import
    assert sorted((r.urn, r.import_id, str(inputs_without_provider(r))) for r in first.registrations) == sorted(
        (r.urn, r.import_id, str(inputs_without_provider(r))) for r in second.registrations
    )


# -- import files the program refuses ---------------------------------------------------------------------------


def _refused(root: Path) -> list[str]:
    run = _run(root, identities={(GROUP, IDENTITY_NAME): PLATFORM})
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    assert run.registrations == []
    heading, *lines = str(run.error).splitlines()
    assert heading.startswith(f"adp-identity: the import files of stack '{STACK}' have {len(lines)} error")
    return lines


def test_import_files_that_do_not_fit_the_service_are_refused_whole(tmp_path: Path) -> None:
    root = _project(tmp_path)
    ids = _import_ids(root)
    from infra.imports import ImportedCredential, ImportedGrant

    wrong = ImportIds(
        service=SERVICE_NAME,
        identity=IDENTITY_ID.replace(IDENTITY_NAME, "sndadpinfmi1401-someone-else"),
        federated_credentials=(
            *ids.federated_credentials,
            ImportedCredential(
                "https://elsewhere.example/",
                "system:serviceaccount:x:y",
                f"{IDENTITY_ID}/federatedIdentityCredentials/x",
            ),
        ),
        secret_grants=(
            ImportedGrant("ffc-pay-batch-unknown", _aso_grant_id("ffc-pay-batch-unknown", ASO_SECRET_GRANT)),
        ),
    )
    path = _write_imports(root, wrong)
    shown = f"stacks/{STACK}/imports/{path.name}"
    lines = _refused(root)
    assert [line.split(": ")[1] for line in lines] == [
        "identity",
        "federated_credentials[2]",
        "secret_grants[0].secret",
    ]
    assert all(line.startswith(f"{shown}: ") and "; allowed: " in line for line in lines)
    assert f"allowed: {IDENTITY_ID}" in lines[0]


def test_a_malformed_import_file_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write_imports(root, _import_ids(root))
    path.write_text(path.read_text(encoding="utf-8").replace("secret_grants:", "secret_grant:"), encoding="utf-8")
    (lines,) = [_refused(root)]
    assert len(lines) == 1
    assert lines[0].startswith(f"stacks/{STACK}/imports/{path.name}:")
    assert "secret_grant: unknown key; allowed: service, identity, federated_credentials, secret_grants" in lines[0]


def test_an_import_file_for_a_platform_owned_or_unknown_service_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, {"owner": "platform"})
    path = _write_imports(root, _import_ids(root))
    (path.parent / "no-such-service.yaml").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    lines = _refused(root)
    assert len(lines) == 2
    assert lines[0].startswith(f"stacks/{STACK}/imports/{SERVICE_NAME}.yaml: (document): the platform owns")
    assert lines[1].startswith(f"stacks/{STACK}/imports/no-such-service.yaml: (document): no service no-such-service")
