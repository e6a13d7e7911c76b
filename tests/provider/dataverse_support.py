"""What the Dataverse provider tests share: a provider host wired to the emulator, and ways to act "by hand".

"By hand" changes go through the Web API as the seeded System Administrator application user
(``adp-platform-admin``, client-secret credential), exactly as someone in the admin centre would make them — not
through the emulator's Python state — so drift is created the way it happens in real life.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from azure.identity import ClientSecretCredential

from adp_identity.emulator import Emulator
from adp_identity.provider_host import ProviderHost
from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"
API = "/api/data/v9.2/"


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


@dataclass
class Admin:
    """The System Administrator application user, making changes through the Web API."""

    url: str
    session: requests.Session

    @classmethod
    def of(cls, emulator: Emulator, environment: str = ENVIRONMENT) -> Admin:
        identity = emulator.identity(TENANT, "adp-platform-admin", "secret")
        credential = ClientSecretCredential(
            emulator.tenant(TENANT).id,
            identity["client_id"],
            identity["secret"],
            authority=emulator.authority_host,
            disable_instance_discovery=True,
            connection_verify=emulator.ca_bundle,
        )
        url = emulator.environment_url(environment)
        session = requests.Session()
        session.trust_env = False
        session.verify = emulator.ca_bundle
        token = credential.get_token(f"{url}/.default").token
        session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            }
        )
        return cls(url, session)

    def _ok(self, response: requests.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def role_id(self, name: str, business_unit_id: str) -> str:
        rows = self._ok(
            self.session.get(
                f"{self.url}{API}roles",
                params={
                    "$select": "roleid,name",
                    "$filter": f"_businessunitid_value eq {business_unit_id} and name eq '{name}'",
                },
            )
        )["value"]
        assert len(rows) == 1, rows
        return str(rows[0]["roleid"])

    def user(self, systemuser_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self._ok(
            self.session.get(
                f"{self.url}{API}systemusers({systemuser_id})",
                params={
                    "$select": "systemuserid,isdisabled,_businessunitid_value,applicationid",
                    "$expand": "systemuserroles_association($select=roleid,name)",
                },
            )
        )
        return row

    def users_of(self, application_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._ok(
            self.session.get(
                f"{self.url}{API}systemusers",
                params={"$select": "systemuserid,isdisabled", "$filter": f"applicationid eq {application_id}"},
            )
        )["value"]
        return rows

    def role_names(self, systemuser_id: str) -> list[str]:
        return sorted(r["name"] for r in self.user(systemuser_id)["systemuserroles_association"])

    def grant(self, systemuser_id: str, role_name: str) -> None:
        business_unit_id = self.user(systemuser_id)["_businessunitid_value"]
        role = self.role_id(role_name, business_unit_id)
        self._ok(
            self.session.post(
                f"{self.url}{API}systemusers({systemuser_id})/systemuserroles_association/$ref",
                json={"@odata.id": f"{self.url}{API}roles({role})"},
            )
        )

    def set_disabled(self, systemuser_id: str, disabled: bool) -> None:
        self._ok(self.session.patch(f"{self.url}{API}systemusers({systemuser_id})", json={"isdisabled": disabled}))

    def delete_user(self, systemuser_id: str) -> None:
        self._ok(self.session.delete(f"{self.url}{API}systemusers({systemuser_id})"))
