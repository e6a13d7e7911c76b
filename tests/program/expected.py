"""What a stack should register, worked out from the stack files by hand, independently of the program.

The conventions are restated here on purpose (not imported from ``adp_identity.desired.naming`` or ``infra``), so
that a change to a naming rule in the code fails these tests instead of silently changing both sides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class Credential:
    name: str
    issuer: str
    subject: str


@dataclass(frozen=True)
class Grant:
    environment: str
    url: str
    roles: tuple[str, ...]
    business_unit: str | None
    disabled: bool
    principal: str


@dataclass
class ExpectedService:
    name: str
    team: str
    identity_name: str
    credentials: list[Credential]
    secrets: list[str]  # declared names
    app_display_name: str | None
    certificate: dict[str, Any] | None  # validity_months, renew_before_days
    grants: list[Grant]


@dataclass
class ExpectedStack:
    stack: str
    tenant: dict[str, Any]
    services: dict[str, ExpectedService] = field(default_factory=dict)

    @property
    def subscription(self) -> str:
        return str(self.tenant["subscription_id"])

    @property
    def vault_id(self) -> str:
        vault = self.tenant["key_vault"]
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{vault['resource_group']}"
            f"/providers/Microsoft.KeyVault/vaults/{vault['name']}"
        )

    @property
    def role_definition(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{KEY_VAULT_SECRETS_USER}"
        )

    def tags(self, service: str) -> dict[str, str]:
        """ADP's tags on a service's Azure resources: the stack's tags, then ServiceName and Team."""
        return {**self.tenant["tags"], "ServiceName": service, "Team": self.services[service].team}

    def entra_tags(self, service: str) -> list[str]:
        """The same tags as Entra applications take them: sorted ``Key:Value`` strings."""
        return sorted(f"{key}:{value}" for key, value in self.tags(service).items())

    def identity_arm_id(self, service: str) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.tenant['resource_group']}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.services[service].identity_name}"
        )


def load_expected(stacks_dir: Path, stack: str) -> ExpectedStack:
    config = yaml.safe_load((stacks_dir / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    tenant = config["adp-identity:tenant"]
    naming = tenant["naming"]
    prefix = (
        f"{naming['resource_name_prefix']}{naming.get('managed_identity_code', 'MI')}"
        f"{naming['region_id']}{naming.get('instance', '01')}"
    ).lower()
    expected = ExpectedStack(stack, tenant)
    for path in sorted((stacks_dir / stack).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        service = spec["service"]
        identity_name = f"{prefix}-{service}".lower()
        wi = spec.get("workload_identity") or {}
        accounts = [(f["namespace"], f["service_account"], f.get("clusters")) for f in wi.get("federations", [])]
        if wi.get("app_config_provider", True):
            accounts.append(("app-config-service", "az-appconfig-k8s-provider", None))
        credentials: list[Credential] = []
        for cluster, issuer in tenant["aks_clusters"].items():  # cluster by cluster, in the stack's order
            for namespace, account, clusters in accounts:
                if clusters is None or cluster in clusters:
                    credentials.append(
                        Credential(
                            f"{identity_name}-fic-{len(credentials)}",
                            issuer,
                            f"system:serviceaccount:{namespace}:{account}".lower(),
                        )
                    )
        app = spec.get("app_registration")
        display_name = None
        if app is not None:
            display_name = app.get("display_name") or _adp_display_name(service)
        grants = [
            Grant(
                environment=access["environment"],
                url=tenant["dataverse_environments"][access["environment"]]["url"],
                roles=tuple(access["security_roles"]),
                business_unit=access.get("business_unit"),
                disabled=bool(access.get("disabled", False)),
                principal=access.get("principal", "managed_identity"),
            )
            for access in spec.get("dataverse", [])
        ]
        expected.services[service] = ExpectedService(
            name=service,
            team=spec["team"],
            identity_name=identity_name,
            credentials=credentials,
            secrets=list(spec.get("key_vault_secrets", [])),
            app_display_name=display_name,
            certificate=None
            if app is None
            else {"validity_months": 12, "renew_before_days": 30, **app.get("certificate", {})},
            grants=grants,
        )
    return expected


def _adp_display_name(service: str) -> str:
    area, *rest = service.split("-")
    return "-".join(["ADP", area.upper(), "".join(part.capitalize() for part in rest)]).rstrip("-")


def is_guid(value: Any) -> bool:
    try:
        return str(uuid.UUID(str(value))) == str(value)
    except ValueError:
        return False
