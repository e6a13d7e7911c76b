"""Clients of a running emulator as a script would build them: a secret credential (MSAL-based, so with
``disable_instance_discovery=True`` and the emulator's authority and CA) and a requests session carrying its
Dataverse token."""

from __future__ import annotations

import requests
from azure.identity import ClientSecretCredential

from adp_identity_emulator import Emulator


def secret_credential(
    emu: Emulator, tenant: str = "DefraDev", application: str = "adp-platform-admin"
) -> ClientSecretCredential:
    identity = emu.identity(tenant, application, "secret")
    return ClientSecretCredential(
        emu.tenant(tenant).id,
        identity["client_id"],
        identity["secret"],
        authority=emu.authority_host,
        disable_instance_discovery=True,  # MSAL's instance discovery would go to a fixed Microsoft host
        connection_verify=emu.ca_bundle,
    )


def dataverse_session(
    emu: Emulator, application: str = "adp-platform-admin", tenant: str = "DefraDev", environment: str | None = None
) -> requests.Session:
    """A session with the Web API headers and a token for ``environment`` (default: the tenant's first)."""
    name = environment or next(e["name"] for e in emu.info["environments"] if e["tenant"] == tenant)
    url = emu.environment_url(name)
    token = secret_credential(emu, tenant, application).get_token(f"{url}/.default").token
    session = requests.Session()
    session.trust_env = False  # no proxy, and no REQUESTS_CA_BUNDLE from the environment overriding verify
    session.verify = emu.ca_bundle
    session.headers.update(
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }
    )
    return session
