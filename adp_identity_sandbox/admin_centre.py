"""Changes made "by hand", as someone in the Power Platform admin centre makes them.

They go through the Dataverse Web API as a System Administrator application user (in the emulator's default seed:
``adp-platform-admin`` with a client secret), so drift in the demo and the tests is created the way it happens in
real life, not by editing the emulator's state. Used only against the local emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from adp_identity_emulator import Emulator
from adp_identity_sandbox.clients import web_api_session

API = "/api/data/v9.2/"
ADMIN_APPLICATION = "adp-platform-admin"
TIMEOUT = 30.0  # seconds per request: the emulator is local


class AdminCentreError(RuntimeError):
    """A change "by hand" was refused; the demo or test that asked for it cannot go on as written."""


class _TimedSession(requests.Session):
    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)


@dataclass
class AdminCentre:
    """The System Administrator application user, making changes through the Web API."""

    url: str
    session: requests.Session

    @classmethod
    def of(cls, emulator: Emulator, tenant: str, environment: str) -> AdminCentre:
        session = web_api_session(emulator, tenant, ADMIN_APPLICATION, environment, session=_TimedSession())
        return cls(emulator.environment_url(environment), session)

    def _ok(self, response: requests.Response) -> Any:
        if response.status_code >= 300:
            raise AdminCentreError(
                f"the admin centre's {response.request.method} {response.url} was answered {response.status_code}: "
                f"{response.text[:300]}"
            )
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
        if len(rows) != 1:
            raise AdminCentreError(f"{len(rows)} roles named {name!r} in business unit {business_unit_id}; expected 1")
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

    def business_unit_id(self, name: str) -> str:
        rows = self._ok(
            self.session.get(
                f"{self.url}{API}businessunits",
                params={"$select": "businessunitid,name", "$filter": f"name eq '{name}'"},
            )
        )["value"]
        if len(rows) != 1:
            raise AdminCentreError(f"{len(rows)} business units named {name!r}; expected 1")
        return str(rows[0]["businessunitid"])

    def create_user(self, application_id: str, business_unit: str, roles: list[str]) -> str:
        """Settings > Users + permissions > Application users > New app user: the app, a unit, some roles."""
        unit = self.business_unit_id(business_unit)
        response = self.session.post(
            f"{self.url}{API}systemusers",
            json={"applicationid": application_id, "businessunitid@odata.bind": f"/businessunits({unit})"},
            headers={"Prefer": "return=representation"},
        )
        systemuser_id = str(self._ok(response)["systemuserid"])
        for role in roles:
            self.grant(systemuser_id, role)
        return systemuser_id

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
