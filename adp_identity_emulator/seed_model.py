"""Typed seed of the emulator: what ``seed.py`` loads from YAML and every service is built from.

Only shapes live here; loading and validation (one-line errors naming file and key) live in ``seed.py``.
Credentials are not part of the seed: secrets, certificate keys and federated tokens are generated at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CredentialKind = Literal["federated", "secret", "certificate"]


@dataclass(frozen=True)
class ApplicationSeed:
    name: str  # display name of the app registration / service principal
    client_id: str  # appid
    object_id: str  # service principal object id (token `oid`)
    service_principal: bool = True  # False: registered, but no service principal in this tenant
    credentials: tuple[CredentialKind, ...] = ()
    federated_subject: str | None = None  # `sub` of the federated credential (with `federated`)


@dataclass(frozen=True)
class BusinessUnitSeed:
    name: str
    parent: str | None = None  # None = the root business unit (exactly one per environment)


@dataclass(frozen=True)
class RoleSeed:
    name: str
    # Privilege names this role carries for the emulator's authorization checks (e.g. "prvCreateUser").
    # "System Administrator" carries every privilege whatever is listed.
    privileges: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplicationUserSeed:
    application: str  # application name or client id, of this tenant
    business_unit: str | None = None  # None = root
    roles: tuple[str, ...] = ()
    disabled: bool = False


@dataclass(frozen=True)
class EnvironmentSeed:
    name: str  # unique across the seed, e.g. "defradev-dev"
    business_units: tuple[BusinessUnitSeed, ...]
    roles: tuple[RoleSeed, ...]
    application_users: tuple[ApplicationUserSeed, ...] = ()
    allow_role_assignment_on_disabled_users: bool = False  # the org setting; off by default as in Dataverse


@dataclass(frozen=True)
class KeyVaultSeed:
    name: str  # unique across the seed
    # (application name or client id, role name) pairs, e.g. ("adp-identity-pipeline", "Key Vault Certificates Officer")
    role_assignments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TenantSeed:
    name: str
    id: str
    domain: str
    applications: tuple[ApplicationSeed, ...]
    environments: tuple[EnvironmentSeed, ...] = ()
    key_vaults: tuple[KeyVaultSeed, ...] = ()


@dataclass(frozen=True)
class Seed:
    tenants: tuple[TenantSeed, ...] = field(default_factory=tuple)
