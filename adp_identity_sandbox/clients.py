"""Clients of a running emulator, built as a script outside the project would build them.

A secret credential is MSAL's underneath, so it gets ``disable_instance_discovery=True`` (MSAL would otherwise ask
a fixed Microsoft host about the authority), the emulator's authority and its CA. Sessions never read proxies or
``REQUESTS_CA_BUNDLE`` from the environment (``trust_env = False``) and verify against the emulator's CA. Used by
the admin centre, the benchmark and the tests; the product builds its own clients (``providers/``).
"""

from __future__ import annotations

import requests
from azure.identity import ClientSecretCredential

from adp_identity_emulator import Emulator

WEB_API_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


def secret_credential(emu: Emulator, tenant: str, application: str | None = None) -> ClientSecretCredential:
    """The client-secret credential of ``application`` in ``tenant`` (default: the tenant's deploying identity)."""
    identity = emu.identity(tenant, application, "secret")
    return ClientSecretCredential(
        emu.tenant(tenant).id,
        identity["client_id"],
        identity["secret"],
        authority=emu.authority_host,
        disable_instance_discovery=True,  # a private authority: never ask login.microsoftonline.com
        connection_verify=emu.ca_bundle,
    )


def emulator_session(emu: Emulator, session: requests.Session | None = None) -> requests.Session:
    """``session`` (default: a new one) set to reach the emulator: its CA, and nothing read from the environment."""
    session = session if session is not None else requests.Session()
    session.trust_env = False
    session.verify = emu.ca_bundle
    return session


def web_api_session(
    emu: Emulator,
    tenant: str,
    application: str | None,
    environment: str,
    *,
    session: requests.Session | None = None,
) -> requests.Session:
    """An emulator session carrying the Web API headers and a token of ``application`` for ``environment``."""
    url = emu.environment_url(environment)
    token = secret_credential(emu, tenant, application).get_token(f"{url}/.default").token
    session = emulator_session(emu, session)
    session.headers.update({**WEB_API_HEADERS, "Authorization": f"Bearer {token}"})
    return session
