"""Component behaviour the stack files cannot show: renames keep children, guards, secrets forced secret."""

from __future__ import annotations

import pulumi
import pytest

from adp_identity.desired import load_stack
from infra.components.dataverse_access import DataverseAccess, DataverseAccessArgs, EnvironmentGrant
from infra.components.key_vault_secrets import ServiceSecrets, ServiceSecretsArgs
from infra.components.service import Service
from infra.components.workload_identity import FederatedSubject, WorkloadIdentity, WorkloadIdentityArgs
from infra.program import service_args
from tests.program import mocks
from tests.program.mocks import APPLICATION_USER, IDENTITY, KV_SECRET, ProgramRun, run_inline, secret_value

DESIRED = load_stack(mocks.read_project(mocks.REPO).stack_config_dir, "defradev")


def _service_program(name: str, previous_names: tuple[str, ...] = ()) -> ProgramRun:
    """The ffc-pay-batch service (identity, secret, app registration, Dataverse users) as component `name`."""

    def program() -> None:
        secrets = {"secret-ffc-pay-batch-sftp-password": pulumi.Output.secret("not-a-real-password")}
        Service(name, service_args(DESIRED, "ffc-pay-batch", secrets), previous_names=previous_names)

    run = run_inline(program, stack="defradev")
    assert run.error is None, repr(run.error)
    return run


def _matches(old: ProgramRun, new: ProgramRun) -> dict[str, list[str]]:
    """For each old URN, the new resources the engine would match to it (by URN or alias)."""
    found: dict[str, list[str]] = {urn: [] for urn in old.urns()}
    for registration in new.registrations:
        for urn in {registration.urn} | mocks.engine_aliases(new, registration):
            if urn in found:
                found[urn].append(registration.urn)
    return found


def test_renaming_a_service_with_previous_names_keeps_every_child() -> None:
    old = _service_program("ffc-pay-batch")
    new = _service_program("payments-batch", previous_names=("ffc-pay-batch",))
    assert len(old.registrations) == len(new.registrations) > 10
    assert not old.urns() & new.urns()  # every URN changed with the rename
    matches = _matches(old, new)
    assert all(len(claimed) == 1 for claimed in matches.values()), matches
    assert len({claimed[0] for claimed in matches.values()}) == len(new.registrations)
    # the Azure names are untouched by a rename of the component
    assert (
        old.named(IDENTITY, "ffc-pay-batch-identity-mi").inputs
        == new.named(IDENTITY, "payments-batch-identity-mi").inputs
    )


def test_renaming_without_previous_names_would_replace_everything() -> None:
    old = _service_program("ffc-pay-batch")
    new = _service_program("payments-batch")
    assert all(not claimed for claimed in _matches(old, new).values())


def test_a_component_passes_aliases_given_in_its_options_through() -> None:
    def identity(name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        WorkloadIdentity(
            name,
            WorkloadIdentityArgs(
                service_name="demo",
                name_prefix="sndadpinfmi1401",
                team="platform",
                subscription_id="00000000-0000-0000-0000-000000000001",
                resource_group_name="rg",
                location="uksouth",
                federated_subjects=[FederatedSubject.service_account("https://issuer.example/", "NS", "Account")],
            ),
            opts,
        )

    old = run_inline(lambda: identity("demo-identity"))
    new = run_inline(lambda: identity("workload", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="demo-identity")])))
    assert old.error is None and new.error is None
    matches = _matches(old, new)
    assert all(len(claimed) == 1 for claimed in matches.values()), matches
    fic = new.named("azure-native:managedidentity:FederatedIdentityCredential", "workload-fic-0")
    assert fic.inputs["subject"] == "system:serviceaccount:ns:account"
    assert fic.inputs["federatedIdentityCredentialResourceName"] == "sndadpinfmi1401-demo-fic-0"


def test_secret_values_are_made_secret_even_when_given_in_plain_text() -> None:
    def program() -> None:
        ServiceSecrets(
            "demo-secrets",
            ServiceSecretsArgs(
                service_name="demo",
                values={"api-key": "plain-text-value"},
                subscription_id="00000000-0000-0000-0000-000000000001",
                resource_group_name="rg",
                vault_name="kv",
                reader_principal_id="00000000-0000-0000-0000-000000000002",
                reader_principal_key="/subscriptions/x/identity",
            ),
        )

    run = run_inline(program)
    assert run.error is None
    assert secret_value(run.named(KV_SECRET, "demo-secrets-api-key").inputs["properties"]) == {
        "value": "plain-text-value"
    }


def test_dataverse_access_for_an_app_registration_needs_one() -> None:
    def program() -> None:
        DataverseAccess(
            "demo-dataverse",
            DataverseAccessArgs(
                grants=[
                    EnvironmentGrant(
                        "dev", "https://org.crm11.dynamics.com", ["Basic User"], principal="app_registration"
                    )
                ],
                managed_identity_client_id="00000000-0000-0000-0000-000000000003",
            ),
        )

    run = run_inline(program)
    assert isinstance(run.error, ValueError)
    assert "principal app_registration needs an app registration" in str(run.error)
    assert not run.of_type(APPLICATION_USER)


@pytest.mark.parametrize("principal", ["managed_identity", "app_registration"])
def test_dataverse_access_binds_the_chosen_client_id(principal: str) -> None:
    def program() -> None:
        DataverseAccess(
            "demo-dataverse",
            DataverseAccessArgs(
                grants=[EnvironmentGrant("dev", "https://org.crm11.dynamics.com", ["Basic User"], principal=principal)],  # type: ignore[arg-type]
                managed_identity_client_id="00000000-0000-0000-0000-00000000000a",
                app_registration_client_id="00000000-0000-0000-0000-00000000000b",
            ),
        )

    run = run_inline(program)
    assert run.error is None
    wanted = (
        "00000000-0000-0000-0000-00000000000b"
        if principal == "app_registration"
        else "00000000-0000-0000-0000-00000000000a"
    )
    assert run.named(APPLICATION_USER, "demo-dataverse-dev").inputs["application_id"] == wanted


def test_a_run_leaves_the_callers_pulumi_runtime_untouched() -> None:
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings

    before = (settings.SETTINGS.monitor, settings.SETTINGS.stack, dict(runtime_config.CONFIG.get()))
    run = mocks.run_program(mocks.REPO, "defradev")
    assert run.error is None and run.registrations
    assert pulumi.runtime.get_root_resource() is None
    assert (settings.SETTINGS.monitor, settings.SETTINGS.stack, dict(runtime_config.CONFIG.get())) == before
    assert not pulumi.runtime.is_config_secret("adp-identity:secret-ffc-pay-batch-sftp-password")
