"""Program level: the ApplicationUser resource under Pulumi mocks registers with the right type and inputs."""

from __future__ import annotations

import base64
import subprocess
import sys

import dill

from providers.dataverse import ApplicationUser, ApplicationUserArgs, ApplicationUserProvider
from tests.program.mocks import plain, run_inline

URL = "https://defra-dev.crm11.dynamics.com"
APP = "3f9d8c2e-5b1a-4e7f-9a60-1c2b3d4e5f60"


def test_registers_as_a_dynamic_dataverse_application_user_with_its_inputs() -> None:
    def program() -> None:
        ApplicationUser(
            "ffc-pay-batch-dev",
            ApplicationUserArgs(
                environment_url=URL,
                application_id=APP,
                security_roles=["Basic User", "FFC Payments Reader"],
                business_unit="ffc-payments",
            ),
        )
        ApplicationUser("ahwr-claims-dev", ApplicationUserArgs(environment_url=URL, application_id=APP))

    run = run_inline(program)
    assert run.error is None
    # registration is asynchronous: the order in which the two arrive is not the program's order
    users = sorted(
        run.of_type("pulumi-python:dynamic/dataverse:ApplicationUser"), key=lambda u: u.name != "ffc-pay-batch-dev"
    )
    assert sorted(u.name for u in users) == ["ahwr-claims-dev", "ffc-pay-batch-dev"]
    assert users[0].name == "ffc-pay-batch-dev"
    first = {k: plain(v) for k, v in users[0].inputs.items()}
    assert first["environment_url"] == URL
    assert first["application_id"] == APP
    assert first["security_roles"] == ["Basic User", "FFC Payments Reader"]
    assert first["business_unit"] == "ffc-payments"
    assert first["disabled"] is False
    second = {k: plain(v) for k, v in users[1].inputs.items()}
    assert "business_unit" not in second  # left out = the root business unit (None inputs are dropped)
    assert second["security_roles"] == []
    # the serialized provider is the installed class, by reference, holding no secrets
    provider = dill.loads(base64.b64decode(plain(first["__provider"])))
    assert type(provider) is ApplicationUserProvider
    assert type(provider).__module__ == "providers.dataverse.provider"
    assert set(vars(provider)) == {"max_retry_wait", "serialize_as_secret_always"}


def test_importing_the_provider_modules_creates_no_resources() -> None:
    """The provider host imports these modules by reference: importing must have no side effects (pulumi#7453).

    Outside a Pulumi program, registering any resource raises; a clean import in a fresh interpreter proves none is.
    """
    code = "import providers.dataverse.provider, providers.keyvault.provider; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
