"""What the Dataverse provider tests share: a provider host wired to the emulator, and the admin centre."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adp_identity_emulator import Emulator
from adp_identity_emulator.log import LogEntry
from adp_identity_sandbox.admin_centre import AdminCentre
from adp_identity_sandbox.clients import emulator_session, secret_credential
from adp_identity_sandbox.provider_host import ProviderHost
from providers.dataverse.client import DataverseClient
from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"


def client_id(emulator: Emulator, application: str) -> str:
    for app in emulator.tenant(TENANT).applications:
        if app.name == application:
            return str(app.client_id)
    raise KeyError(application)


@contextmanager
def provider_host(emulator: Emulator, *, max_retry_wait: float = 30.0, tenant: str = TENANT) -> Iterator[ProviderHost]:
    """``python -m pulumi.dynamic`` with the deploying identity's variables (of ``tenant``), as a pipeline would
    run it."""
    host = ProviderHost(
        ApplicationUserProvider(max_retry_wait=max_retry_wait),
        env=emulator.credential_env(tenant),
        type_token=TYPE_TOKEN,
    )
    try:
        host.configure({})
        yield host
    finally:
        host.close()


def admin(emulator: Emulator, environment: str = ENVIRONMENT) -> AdminCentre:
    return AdminCentre.of(emulator, TENANT, environment)


def app(emulator: Emulator, short: str) -> str:
    """The client id of a DefraDev service's managed identity (``sndadpinfmi1401-<short>``)."""
    return client_id(emulator, f"sndadpinfmi1401-{short}")


def declared(
    emulator: Emulator, short: str, roles: list[str], business_unit: str | None = None, **extra: Any
) -> dict[str, Any]:
    """ApplicationUser inputs for a DefraDev service in the test environment."""
    props: dict[str, Any] = {
        "environment_url": emulator.environment_url(ENVIRONMENT),
        "application_id": app(emulator, short),
        "security_roles": roles,
        "disabled": False,
        **extra,
    }
    if business_unit is not None:
        props["business_unit"] = business_unit
    return props


def dataverse_requests(emulator: Emulator) -> list[LogEntry]:
    return [e for e in emulator.log.entries if e.service == "dataverse"]


def writes(emulator: Emulator) -> list[LogEntry]:
    return [e for e in dataverse_requests(emulator) if e.method != "GET"]


def checked(host: ProviderHost, props: dict[str, Any]) -> dict[str, Any]:
    result = host.check(props)
    assert result.failures == []
    return result.inputs


def client_as(
    emulator: Emulator, tenant: str, environment: str, *, application: str | None = None, **kwargs: Any
) -> DataverseClient:
    """An in-process client acting as an identity of ``tenant`` with its client secret (default: the deploying
    identity; ``application="adp-platform-admin"`` is the System Administrator who changes things by hand)."""
    kwargs.setdefault("rng", random.Random(0))
    return DataverseClient(
        emulator.environment_url(environment),
        secret_credential(emulator, tenant, application),
        session=emulator_session(emulator),
        **kwargs,
    )
