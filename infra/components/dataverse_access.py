"""A service's access to Dataverse: one application user per environment, with exactly the declared roles.

Each application user is bound to an application (client) id: the service's managed identity by default, or its
app registration where the service file says ``principal: app_registration`` for that environment. Removing an
environment revokes access (the provider removes every role and disables the user; ADR 3), it never deletes the
record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi

from infra.components._options import child_of, with_previous_names
from providers.dataverse import ApplicationUser, ApplicationUserArgs

TYPE_TOKEN = "adp-identity:dataverse:DataverseAccess"
Principal = Literal["managed_identity", "app_registration"]


@dataclass(frozen=True)
class EnvironmentGrant:
    """What one Dataverse environment grants the service."""

    environment: str  # the environment's name, used in resource names and outputs
    environment_url: str
    security_roles: Sequence[str]
    business_unit: str | None = None  # None = the root business unit
    disabled: bool = False
    principal: Principal = "managed_identity"


@dataclass
class DataverseAccessArgs:
    grants: Sequence[EnvironmentGrant]
    managed_identity_client_id: pulumi.Input[str]
    app_registration_client_id: pulumi.Input[str] | None = None  # needed by grants whose principal says so
    tenant_id: str | None = None  # the environments' Entra tenant: the provider refuses a credential of another


class DataverseAccess(pulumi.ComponentResource):
    """``adp-identity:dataverse:DataverseAccess``: one ``ApplicationUser`` child ``{name}-{environment}`` each."""

    application_user_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        args: DataverseAccessArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        previous_names: Sequence[str] = (),
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, with_previous_names(opts, previous_names))
        users: dict[str, pulumi.Output[str]] = {}
        for grant in args.grants:
            if grant.principal == "app_registration":
                if args.app_registration_client_id is None:
                    raise ValueError(
                        f"Dataverse environment {grant.environment!r}: principal app_registration needs an "
                        "app registration"
                    )
                application_id = args.app_registration_client_id
            else:
                application_id = args.managed_identity_client_id
            user = ApplicationUser(
                f"{name}-{grant.environment}",
                ApplicationUserArgs(
                    environment_url=grant.environment_url,
                    application_id=application_id,
                    security_roles=list(grant.security_roles),
                    business_unit=grant.business_unit,
                    disabled=grant.disabled,
                    tenant_id=args.tenant_id,
                ),
                child_of(self),
            )
            users[grant.environment] = user.systemuser_id
        self.application_user_ids = pulumi.Output.all(**users) if users else pulumi.Output.from_input({})
        self.register_outputs({"application_user_ids": self.application_user_ids})
