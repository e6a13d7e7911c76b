"""Credential errors kept apart, as azure-identity keeps them (issue 9 section 6).

"Unavailable": no credential is configured, and the error names the AZURE_* variables still missing. "Refused":
Entra ID said no, and the error carries its AADSTS code. Both are one line and never hold a secret or a token.
The credentials are azure-identity's own; the refusals come from the emulated Entra ID.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ClientSecretCredential

from adp_identity_emulator import Emulator
from providers._identity import (
    TOKENS,
    CredentialFailed,
    CredentialRefused,
    CredentialUnavailable,
    bearer_token,
    credential_failure,
    forget_default_credential,
)
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import CredentialNotConfigured, CredentialRejected, Unauthorized

from .fake_dataverse import APP, standard_environment

SCOPE = "https://org.crm11.dynamics.com/.default"
TENANT = "a798744b-41a1-41b0-b394-141dbf8496c4"
CLIENT = "4b505029-61c0-4287-a3f0-6bdbb69836b2"
WORKLOAD = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No AZURE_* variable from outside the test; no credential or token cached from another test."""
    import os

    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-az-cli"))  # never a developer's `az login`
    forget_default_credential()
    TOKENS.clear()
    yield monkeypatch
    forget_default_credential()
    TOKENS.clear()


# -- unavailable: what is missing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ((), WORKLOAD),
        (("AZURE_TENANT_ID", "AZURE_CLIENT_ID"), ("AZURE_FEDERATED_TOKEN_FILE",)),
        (("AZURE_FEDERATED_TOKEN_FILE",), ("AZURE_TENANT_ID", "AZURE_CLIENT_ID")),
    ],
)
def test_workload_identity_without_its_variables_names_the_missing_ones(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, present: tuple[str, ...], missing: tuple[str, ...]
) -> None:
    clean_env.setenv("AZURE_TOKEN_CREDENTIALS", "WorkloadIdentityCredential")
    values = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "t")}
    for name in present:
        clean_env.setenv(name, values[name])
    with pytest.raises(CredentialUnavailable) as raised:
        bearer_token(None, SCOPE)  # azure-identity's real DefaultAzureCredential; nothing reaches the network
    error = raised.value
    assert error.missing == missing
    assert str(error) == (
        f"could not get a token for {SCOPE}: no credential is configured: AZURE_TOKEN_CREDENTIALS="
        f"WorkloadIdentityCredential needs {', '.join(WORKLOAD)}; missing: {', '.join(missing)}"
    )
    assert isinstance(error, CredentialFailed)  # the Key Vault helper keeps catching the base


def test_an_environment_credential_without_a_secret_names_both_ways_to_give_one(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    clean_env.setenv("AZURE_TENANT_ID", TENANT)
    clean_env.setenv("AZURE_CLIENT_ID", CLIENT)
    with pytest.raises(CredentialUnavailable) as raised:
        bearer_token(None, SCOPE)
    assert raised.value.missing == ("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",)
    assert "\n" not in str(raised.value)


def test_a_credential_name_azure_identity_does_not_know_is_unavailable_in_one_line(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AZURE_TOKEN_CREDENTIALS", "WorkloadIdentity")  # "Credential" left off
    with pytest.raises(CredentialUnavailable) as raised:
        bearer_token(None, SCOPE)
    text = str(raised.value)
    assert "Invalid value for AZURE_TOKEN_CREDENTIALS: workloadidentity" in text
    assert "workloadidentitycredential" in text and "\n" not in text


def test_the_dataverse_client_says_credential_not_configured_before_any_request(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AZURE_TOKEN_CREDENTIALS", "WorkloadIdentityCredential")
    fake = standard_environment()
    client = DataverseClient(fake.origin, session=fake.session(), sleep=lambda _: None)
    with pytest.raises(CredentialNotConfigured) as raised:
        client.get_application_user(APP)
    assert isinstance(raised.value, Unauthorized)
    assert raised.value.missing == WORKLOAD
    assert raised.value.environment == fake.origin
    assert fake.requests == []


# -- how azure-identity's reasons are read --------------------------------------------------------------------------

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4In0.c2lnbmF0dXJl"
CHAIN_REFUSED = (
    "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
    "Attempted credentials:\n"
    "\tEnvironmentCredential: Authentication failed: AADSTS7000215: Invalid client secret provided. Ensure the "
    "secret being sent in the request is the client secret value.\r\nTrace ID: 1\r\nCorrelation ID: 2\n"
    "To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/x."
)
CHAIN_UNAVAILABLE = (
    "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
    "Attempted credentials:\n"
    "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are not "
    "fully configured.\nVisit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot.\n"
    "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable, no response from the IMDS "
    "endpoint.\nTo mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/x."
)


@pytest.mark.parametrize(
    ("reason", "kind", "detail"),
    [
        (
            CHAIN_REFUSED,
            CredentialRefused,
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
            "client secret value.",
        ),
        (
            "Authentication failed: AADSTS700016: Application with identifier 'x' was not found.\r\nTrace ID: 1",
            CredentialRefused,
            "AADSTS700016: Application with identifier 'x' was not found.",
        ),
        (
            CHAIN_UNAVAILABLE,
            CredentialUnavailable,
            "no credential is configured: ManagedIdentityCredential: ManagedIdentityCredential authentication "
            "unavailable, no response from the IMDS endpoint.",
        ),
        (
            "Authentication failed: 503 Service Unavailable",
            CredentialFailed,  # Entra ID being down is not "no credential is configured"
            "Authentication failed: 503 Service Unavailable",
        ),
        (
            f"Authentication failed: <urllib3 error> while sending {JWT}\nmore",
            CredentialFailed,
            "Authentication failed: <urllib3 error> while sending ***",
        ),
    ],
)
def test_reasons_are_sorted_into_kinds_in_one_line(reason: str, kind: type[CredentialFailed], detail: str) -> None:
    failed = credential_failure(SCOPE, RuntimeError(reason), environ={})
    assert type(failed) is kind
    assert failed.detail == detail
    assert "\n" not in str(failed) and "\r" not in str(failed)
    if isinstance(failed, CredentialRefused):
        assert failed.aadsts == detail.split(":", maxsplit=1)[0]


def test_a_secret_or_assertion_echoed_in_a_reason_is_blanked(tmp_path: Path) -> None:
    secret = "s3cr3t-value-from-the-pipeline"
    token_file = tmp_path / "federated-token"
    token_file.write_text("header.payload-of-an-assertion.signature")
    reason = f"AADSTS50027: JWT token is invalid: {secret} header.payload-of-an-assertion.signature"
    environ = {"AZURE_CLIENT_SECRET": secret, "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    failed = credential_failure(SCOPE, RuntimeError(reason), environ=environ)
    assert isinstance(failed, CredentialRefused) and failed.aadsts == "AADSTS50027"
    assert secret not in str(failed) and "payload-of-an-assertion" not in str(failed)
    assert str(failed).count("***") == 2


# -- refused: Entra ID's AADSTS code, from azure-identity against the emulator ---------------------------------------


def _secret_credential(emulator: Emulator, client_id: str, secret: str) -> Any:
    return ClientSecretCredential(
        emulator.tenant("DefraDev").id,
        client_id,
        secret,
        authority=emulator.authority_host,
        disable_instance_discovery=True,
        connection_verify=emulator.ca_bundle,
    )


def _dataverse_requests(emulator: Emulator) -> int:
    return len([e for e in emulator.log.entries if e.service == "dataverse"])


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("which", "code"),
    [("wrong secret", "AADSTS7000215"), ("unknown client", "AADSTS700016")],
)
def test_entra_refusing_the_credential_is_credential_rejected_with_its_code(
    emulator: Emulator, clean_env: pytest.MonkeyPatch, which: str, code: str
) -> None:
    identity = emulator.identity("DefraDev", kind="secret")
    secret = "this-is-not-the-secret-0123456789"
    client_id = identity["client_id"] if which == "wrong secret" else "00000000-0000-4000-8000-00000000dead"
    url = emulator.environment_url("defradev-dev")
    client = DataverseClient(url, _secret_credential(emulator, client_id, secret))
    emulator.log.clear()
    with pytest.raises(CredentialRejected) as raised:
        client.get_application_user(APP)
    error = raised.value
    assert error.aadsts == code
    assert str(error).startswith(f"could not get a token for {url}/.default: {code}: ")
    assert "\n" not in str(error) and "\r" not in str(error) and "Trace ID" not in str(error)
    assert secret not in str(error) and identity["secret"] not in str(error)
    assert _dataverse_requests(emulator) == 0  # refused before a single request reached the environment


@pytest.mark.emulator
def test_a_wrong_secret_through_the_default_credential_is_refused_not_unavailable(
    emulator: Emulator, clean_env: pytest.MonkeyPatch
) -> None:
    identity = emulator.identity("DefraDev", kind="secret")
    secret = "this-is-not-the-secret-0123456789"
    env = emulator.credential_env("DefraDev")
    for name in ("AZURE_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        clean_env.setenv(name, env[name])
    clean_env.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    clean_env.setenv("AZURE_TENANT_ID", emulator.tenant("DefraDev").id)
    clean_env.setenv("AZURE_CLIENT_ID", identity["client_id"])
    clean_env.setenv("AZURE_CLIENT_SECRET", secret)
    with pytest.raises(CredentialRejected) as raised:
        DataverseClient(emulator.environment_url("defradev-dev")).get_application_user(APP)
    assert raised.value.aadsts == "AADSTS7000215"
    assert "DefaultAzureCredential failed" not in str(raised.value) and secret not in str(raised.value)


@pytest.mark.emulator
def test_the_pipeline_identity_without_its_token_file_is_not_configured(
    emulator: Emulator, clean_env: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.credential_env("DefraDev").items():
        if name != "AZURE_FEDERATED_TOKEN_FILE":
            clean_env.setenv(name, value)
    emulator.log.clear()
    with pytest.raises(CredentialNotConfigured) as raised:
        DataverseClient(emulator.environment_url("defradev-dev")).get_application_user(APP)
    assert raised.value.missing == ("AZURE_FEDERATED_TOKEN_FILE",)
    assert emulator.log.entries == []  # nothing was asked of Entra ID or Dataverse
