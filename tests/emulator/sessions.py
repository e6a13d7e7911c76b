"""Clients of a running emulator for the emulator's tests: ``adp_identity_sandbox.clients`` with these tests'
defaults (the System Administrator ``adp-platform-admin`` of DefraDev, in the tenant's first environment)."""

from __future__ import annotations

import requests
from azure.identity import ClientSecretCredential

from adp_identity_emulator import Emulator
from adp_identity_sandbox.clients import secret_credential as _secret_credential
from adp_identity_sandbox.clients import web_api_session


def secret_credential(
    emu: Emulator, tenant: str = "DefraDev", application: str | None = "adp-platform-admin"
) -> ClientSecretCredential:
    return _secret_credential(emu, tenant, application)


def dataverse_session(
    emu: Emulator, application: str = "adp-platform-admin", tenant: str = "DefraDev", environment: str | None = None
) -> requests.Session:
    """A session with the Web API headers and a token for ``environment`` (default: the tenant's first)."""
    name = environment or next(e["name"] for e in emu.info["environments"] if e["tenant"] == tenant)
    return web_api_session(emu, tenant, application, name)
