"""What the Dataverse provider tests share: a provider host wired to the emulator, and the admin centre."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adp_identity_emulator import Emulator
from adp_identity_sandbox.admin_centre import AdminCentre
from adp_identity_sandbox.provider_host import ProviderHost
from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"


def client_id(emulator: Emulator, application: str) -> str:
    for app in emulator.tenant(TENANT).applications:
        if app.name == application:
            return str(app.client_id)
    raise KeyError(application)


@contextmanager
def provider_host(emulator: Emulator, *, max_retry_wait: float = 30.0) -> Iterator[ProviderHost]:
    """``python -m pulumi.dynamic`` with the deploying identity's variables, as a pipeline would run it."""
    host = ProviderHost(
        ApplicationUserProvider(max_retry_wait=max_retry_wait),
        env=emulator.credential_env(TENANT),
        type_token=TYPE_TOKEN,
    )
    try:
        host.configure({})
        yield host
    finally:
        host.close()


def admin(emulator: Emulator, environment: str = ENVIRONMENT) -> AdminCentre:
    return AdminCentre.of(emulator, TENANT, environment)
