"""What a rule needs to know about the stack it checks: tenant, clusters, environments, services, secrets.

Built from the checked desired state (``adp_identity.desired.policy_context``): the very files `validate` reads,
so both front ends judge a resource against the same declarations. Plain frozen data, no Pulumi, no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def origin(url: str) -> str:
    """``https://Org.crm11.dynamics.com/`` -> ``https://org.crm11.dynamics.com`` (how environments are compared)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.strip().lower()
    return f"{parts.scheme.lower()}://{host}{port}"


@dataclass(frozen=True)
class Environment:
    name: str  # short name in the stack, e.g. prd
    url: str
    production: bool


@dataclass(frozen=True)
class ServiceFacts:
    """What a service file declares that a rule checks resources against."""

    name: str
    secrets: tuple[str, ...] = ()  # declared names (the Key Vault secret is <service>-<name>)


@dataclass(frozen=True)
class StackContext:
    """One stack's declarations. ``secret_values`` (policy pack only) are the decrypted Pulumi config values the
    CLI hands a policy pack; a rule compares with them and never prints them."""

    stack: str
    tenant_id: str
    clusters: Mapping[str, str]  # AKS cluster name -> OIDC issuer URL (verbatim)
    environments: Mapping[str, Environment]
    forbidden_roles: tuple[str, ...]
    tags: Mapping[str, str]  # the stack's tags (tenant settings, with the defaults)
    services: Mapping[str, ServiceFacts]
    secure_config_keys: frozenset[str] = frozenset()  # adp-identity:secret-... keys held as `secure:` values
    secret_values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def environment_at(self, url: str) -> Environment | None:
        wanted = origin(url)
        for environment in self.environments.values():
            if origin(environment.url) == wanted:
                return environment
        return None

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self.clusters.values())
