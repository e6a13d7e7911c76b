"""The program under mocks, for both real stacks, loaded the way ``pulumi preview`` loads them.

Every resource a stack file and its service files declare must be registered with the right inputs under the
right parent, and nothing else may be: no client secret in any form, no secret value anywhere but inside its
Key Vault secret (and there only as a secret), stable role assignment names.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from tests.program import mocks
from tests.program.expected import AUDIENCE, ExpectedStack, is_guid, load_expected
from tests.program.mocks import (
    APP_REGISTRATION,
    APPLICATION,
    APPLICATION_CERTIFICATE,
    APPLICATION_PASSWORD,
    APPLICATION_USER,
    DATAVERSE_ACCESS,
    FEDERATED_CREDENTIAL,
    IDENTITY,
    KV_CERTIFICATE,
    KV_SECRET,
    REPO,
    ROLE_ASSIGNMENT,
    SERVICE,
    SERVICE_PRINCIPAL,
    SERVICE_SECRETS,
    STACK,
    WORKLOAD_IDENTITY,
    ProgramRun,
    Registration,
    plain,
    secret_value,
)

STACKS = ("defra", "defradev")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[ProgramRun, ExpectedStack]:
    name = request.param
    run = mocks.run_program(REPO, name)
    assert run.error is None, f"the program failed: {run.error!r}"
    return run, load_expected(mocks.read_project(REPO).stack_config_dir, name)


def expected_tree(expected: ExpectedStack) -> set[tuple[str, str, str]]:
    """(type, name, parent name) of every resource the stack declares."""
    root = f"adp-identity-{expected.stack}"
    tree: set[tuple[str, str, str]] = set()
    for s, service in expected.services.items():
        tree |= {
            (SERVICE, s, root),
            (WORKLOAD_IDENTITY, f"{s}-identity", s),
            (IDENTITY, f"{s}-identity-mi", f"{s}-identity"),
        }
        tree |= {
            (FEDERATED_CREDENTIAL, f"{s}-identity-fic-{i}", f"{s}-identity") for i in range(len(service.credentials))
        }
        if service.secrets:
            tree.add((SERVICE_SECRETS, f"{s}-secrets", s))
            for secret in service.secrets:
                tree |= {(KV_SECRET, f"{s}-secrets-{secret}", f"{s}-secrets")}
                tree |= {(ROLE_ASSIGNMENT, f"{s}-secrets-{secret}-reader", f"{s}-secrets")}
        if service.app_display_name is not None:
            app = f"{s}-app"
            tree |= {
                (APP_REGISTRATION, app, s),
                (APPLICATION, f"{app}-application", app),
                (SERVICE_PRINCIPAL, f"{app}-sp", app),
                (KV_CERTIFICATE, f"{app}-cert", app),
                (APPLICATION_CERTIFICATE, f"{app}-cert-slot-a", app),
                (APPLICATION_CERTIFICATE, f"{app}-cert-slot-b", app),
                (ROLE_ASSIGNMENT, f"{app}-cert-reader", app),
            }
        if service.grants:
            tree.add((DATAVERSE_ACCESS, f"{s}-dataverse", s))
            tree |= {(APPLICATION_USER, f"{s}-dataverse-{g.environment}", f"{s}-dataverse") for g in service.grants}
    return tree


def test_every_declared_resource_and_nothing_else_is_registered(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    registered = [(r.type, r.name, r.parent.split("::")[-1]) for r in run.registrations]
    assert len(registered) == len(set(registered)), "a resource was registered twice"
    assert set(registered) == expected_tree(expected)
    # services hang off the stack itself; everything else off a registered component
    by_urn = run.by_urn()
    for registration in run.registrations:
        if registration.type == SERVICE:
            assert registration.parent.split("::")[2] == STACK
        else:
            assert by_urn[registration.parent].type in mocks.COMPONENT_TYPES


def test_identities_follow_adp_naming_and_tags(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    tenant = expected.tenant
    for s, service in expected.services.items():
        identity = run.named(IDENTITY, f"{s}-identity-mi")
        assert identity.custom
        assert identity.inputs == {
            "resourceName": service.identity_name,
            "resourceGroupName": tenant["resource_group"],
            "location": tenant["location"],
            "tags": {**tenant["tags"], "ServiceName": s, "Team": service.team},
        }
        assert identity.inputs["tags"]["Restriction"] == "AUTOMATED CHANGES ONLY"
        assert identity.inputs["tags"]["ManagedBy"]


def test_federated_credentials_name_issuer_subject_audience(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    for s, service in expected.services.items():
        identity = run.named(IDENTITY, f"{s}-identity-mi")
        previous: Registration | None = None
        assert service.credentials, "ADP services federate at least the App Configuration provider"
        for index, credential in enumerate(service.credentials):
            fic = run.named(FEDERATED_CREDENTIAL, f"{s}-identity-fic-{index}")
            assert fic.inputs == {
                "federatedIdentityCredentialResourceName": credential.name,
                "resourceName": service.identity_name,
                "resourceGroupName": expected.tenant["resource_group"],
                "issuer": credential.issuer,
                "subject": credential.subject,
                "audiences": [AUDIENCE],
            }
            assert identity.urn in fic.dependencies
            # Entra ID refuses concurrent writes under one identity: each waits for the one before it
            if previous is not None:
                assert previous.urn in fic.dependencies
            previous = fic


def test_secrets_hold_their_config_value_only_as_a_secret(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    vault = expected.tenant["key_vault"]
    for s, service in expected.services.items():
        for name in service.secrets:
            secret = run.named(KV_SECRET, f"{s}-secrets-{name}")
            assert secret.inputs["secretName"] == f"{s}-{name}"
            assert secret.inputs["vaultName"] == vault["name"]
            assert secret.inputs["resourceGroupName"] == vault["resource_group"]
            assert secret.inputs["tags"] == {**expected.tenant["tags"], "ServiceName": s, "Team": service.team}
            value = secret_value(secret.inputs["properties"])
            assert value == {"value": run.secret_values[f"adp-identity:secret-{s}-{name}"]}


def test_each_secret_is_readable_by_its_service_identity_alone(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    for s, service in expected.services.items():
        principal = run.named(IDENTITY, f"{s}-identity-mi").outputs["principalId"]
        for name in service.secrets:
            reader = run.named(ROLE_ASSIGNMENT, f"{s}-secrets-{name}-reader")
            assert reader.inputs["scope"] == f"{expected.vault_id}/secrets/{s}-{name}"
            assert reader.inputs["roleDefinitionId"] == expected.role_definition
            assert reader.inputs["roleDefinitionId"].endswith("/4633458b-17de-408a-b874-0445c86b69e6")
            assert reader.inputs["principalId"] == principal
            assert reader.inputs["principalType"] == "ServicePrincipal"
            assert is_guid(reader.inputs["roleAssignmentName"])
            assert run.named(KV_SECRET, f"{s}-secrets-{name}").urn in reader.dependencies


def test_role_assignment_names_are_distinct_guids_and_stable_between_runs(
    stack: tuple[ProgramRun, ExpectedStack],
) -> None:
    run, expected = stack
    names = {r.name: r.inputs["roleAssignmentName"] for r in run.of_type(ROLE_ASSIGNMENT)}
    assert len(set(names.values())) == len(names)
    assert all(is_guid(value) for value in names.values())
    again = mocks.run_program(REPO, expected.stack)
    assert {r.name: r.inputs["roleAssignmentName"] for r in again.of_type(ROLE_ASSIGNMENT)} == names


def test_app_registrations_use_key_vault_certificates_in_two_slots(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    apps = [service for service in expected.services.values() if service.app_display_name is not None]
    assert apps, "each example stack declares an app registration"
    for service in apps:
        s, app = service.name, f"{service.name}-app"
        application = run.named(APPLICATION, f"{app}-application")
        entra_tags = expected.entra_tags(s)
        assert application.inputs == {"displayName": service.app_display_name, "tags": entra_tags}
        sp = run.named(SERVICE_PRINCIPAL, f"{app}-sp")
        assert sp.inputs == {"clientId": application.outputs["clientId"], "tags": entra_tags}
        certificate = run.named(KV_CERTIFICATE, f"{app}-cert")
        assert "__provider" in certificate.inputs
        assert {k: v for k, v in certificate.inputs.items() if k != "__provider"} == {
            "vault_url": expected.tenant["key_vault"]["uri"],
            "certificate_name": f"{s}-app-cert",
            "subject": f"CN={service.app_display_name}",
            "validity_months": service.certificate["validity_months"],  # type: ignore[index]
            "renew_before_days": service.certificate["renew_before_days"],  # type: ignore[index]
            "tenant_id": expected.tenant["tenant_id"],  # the vault's tenant, from the stack settings
        }
        for slot in ("a", "b"):
            registered = run.named(APPLICATION_CERTIFICATE, f"{app}-cert-slot-{slot}")
            slot_output = certificate.outputs[f"slot_{slot}"]
            assert plain(registered.inputs) == {
                "applicationId": f"/applications/{application.outputs['objectId']}",
                "type": "AsymmetricX509Cert",
                "encoding": "base64",
                "value": slot_output["cer"],
                "startDate": slot_output["not_before"],
                "endDate": slot_output["not_after"],
            }
            # only a public certificate: DER that parses as X.509, no key material
            x509.load_der_x509_certificate(base64.b64decode(plain(registered.inputs["value"])))
            assert "PRIVATE KEY" not in str(registered.inputs)
        reader = run.named(ROLE_ASSIGNMENT, f"{app}-cert-reader")
        assert reader.inputs["scope"] == f"{expected.vault_id}/secrets/{s}-app-cert"
        assert reader.inputs["roleDefinitionId"] == expected.role_definition
        assert reader.inputs["principalId"] == run.named(IDENTITY, f"{s}-identity-mi").outputs["principalId"]
        assert reader.inputs["principalType"] == "ServicePrincipal"
        assert certificate.urn in reader.dependencies


def test_no_client_secret_in_any_form(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, _ = stack
    assert not run.of_type(APPLICATION_PASSWORD)
    assert not [r for r in run.registrations if "password" in r.type.lower()]
    for registration in run.registrations:
        keys = {key.lower() for key in mocks.walk_keys(registration.inputs)}
        assert not {key for key in keys if "password" in key}, f"{registration.name} has a password input"


def test_dataverse_application_users_bind_the_declared_principal(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    for s, service in expected.services.items():
        identity_client = run.named(IDENTITY, f"{s}-identity-mi").outputs["clientId"]
        for grant in service.grants:
            user = run.named(APPLICATION_USER, f"{s}-dataverse-{grant.environment}")
            assert user.type == "pulumi-python:dynamic/dataverse:ApplicationUser"
            assert "__provider" in user.inputs
            if grant.principal == "app_registration":
                application_id = run.named(APPLICATION, f"{s}-app-application").outputs["clientId"]
            else:
                application_id = identity_client
            inputs = {k: v for k, v in user.inputs.items() if k != "__provider"}
            expected_inputs: dict[str, Any] = {
                "environment_url": grant.url,
                "application_id": application_id,
                "security_roles": list(grant.roles),
                "disabled": grant.disabled,
                "tenant_id": expected.tenant["tenant_id"],  # the environment's tenant, from the stack settings
            }
            if grant.business_unit is not None:  # None inputs are dropped on the wire
                expected_inputs["business_unit"] = grant.business_unit
            assert inputs == expected_inputs


def test_secret_values_appear_nowhere_but_inside_their_secret(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, _ = stack
    assert run.secret_values
    for key, plaintext in run.secret_values.items():
        owner = f"{key.removeprefix('adp-identity:secret-')}"
        found = [
            (registration.name, path, secret)
            for registration in run.registrations
            for path, secret in _everywhere(registration, plaintext)
        ]
        assert len(found) == 1, f"{key} found at {found}"
        name, path, secret = found[0]
        assert secret, f"{key} reached {name}{path} in plain text"
        assert path == "inputs.properties.value"
        assert run.named(KV_SECRET, name).inputs["secretName"] == owner
        assert not list(mocks.occurrences(run.stack_outputs, plaintext))


def _everywhere(registration: Registration, needle: str) -> Iterator[tuple[str, bool]]:
    yield from ((f"inputs{path}", secret) for path, secret in mocks.occurrences(registration.inputs, needle))
    if registration.type != KV_SECRET:  # the fake echoes a secret's own inputs back as its state
        yield from ((f"outputs{path}", secret) for path, secret in mocks.occurrences(registration.outputs, needle))


def test_stack_outputs_give_each_workload_its_ids(stack: tuple[ProgramRun, ExpectedStack]) -> None:
    run, expected = stack
    assert set(run.stack_outputs) == set(expected.services)
    for s, service in expected.services.items():
        identity = run.named(IDENTITY, f"{s}-identity-mi").outputs
        outputs = plain(run.stack_outputs[s])
        wanted: dict[str, Any] = {
            "identity_name": service.identity_name,
            "client_id": identity["clientId"],
            "principal_id": identity["principalId"],
            "tenant_id": identity["tenantId"],
            "dataverse_application_users": {
                grant.environment: run.named(APPLICATION_USER, f"{s}-dataverse-{grant.environment}").outputs[
                    "systemuser_id"
                ]
                for grant in service.grants
            },
        }
        if service.app_display_name is not None:
            wanted["app_registration_client_id"] = run.named(APPLICATION, f"{s}-app-application").outputs["clientId"]
        assert outputs == wanted
