"""Seed YAML -> :mod:`seed_model` objects, strictly.

A seed describes the tenants, app registrations and Dataverse environments the emulator starts with. A typo in
a seed would otherwise surface much later as a puzzling 403 from the emulator, so the loader refuses anything
it does not understand, up front, with one line a person can act on::

    <file>: <key.path>: <problem>; allowed: <what would be accepted>

Checked: unknown keys, duplicate keys, wrong types, malformed GUIDs, duplicate names, references to unknown
applications / business units / roles, the number of root business units, credential kinds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from adp_identity_emulator.seed_model import (
    ApplicationSeed,
    ApplicationUserSeed,
    BusinessUnitSeed,
    CredentialKind,
    EnvironmentSeed,
    KeyVaultSeed,
    RoleSeed,
    Seed,
    TenantSeed,
)
from adp_yaml import YamlRefused, format_key_path, kind_of, read_yaml

DEFAULT_SEED = Path(__file__).with_name("default_seed.yaml")
"""The packaged ADP-shaped seed (tenants Defra and DefraDev)."""

CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("federated", "secret", "certificate")
KEY_VAULT_ROLES = (
    "Key Vault Administrator",
    "Key Vault Certificates Officer",
    "Key Vault Reader",
    "Key Vault Secrets User",
)
RESERVED_ORIGIN_NAMES = ("entra",)  # the authority host's key in Emulator(ports=...)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PRIVILEGE = re.compile(r"^prv[A-Za-z0-9]+$")
_GUID_EXAMPLE = "a GUID like 00000000-0000-0000-0000-000000000000"


class SeedError(Exception):
    """A seed the emulator refuses; ``str(error)`` is the one line to show."""


class _Problem(Exception):
    def __init__(self, path: str, problem: str, allowed: str) -> None:
        super().__init__(f"{path}: {problem}; allowed: {allowed}")


def load_seed(path: str | Path) -> Seed:
    """Read and validate a seed file; every problem is a :class:`SeedError` with one line.

    The file is read by the project's strict YAML reader (duplicate keys, explicit tags, YAML 1.1 surprises
    refused), with anchors and aliases allowed: seeds are trusted local files, and the default seed shares
    its role catalogue between environments with one anchor.
    """
    source = str(path)
    try:
        document = read_yaml(Path(path), allow_aliases=True)
    except YamlRefused as refused:
        at = f"line {refused.line}: " if refused.line else ""
        raise SeedError(
            f"{source}: {format_key_path(refused.key_path)}: {at}{refused.message}; allowed: {refused.allowed}"
        ) from None
    return parse_seed(document.data, source)


def parse_seed(data: Any, source: str = "<seed>") -> Seed:
    """Validate already-parsed YAML data (a dict) into a :class:`Seed`."""
    try:
        return _seed(data)
    except _Problem as problem:
        raise SeedError(f"{source}: {problem}") from None


# ---------------------------------------------------------------------------------------------------------------
# Typed readers


def _mapping(value: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    allowed_keys = [*required, *optional]
    if not isinstance(value, dict):
        raise _Problem(
            path, f"expected a mapping, got {kind_of(value)}", "a mapping with keys " + ", ".join(allowed_keys)
        )
    for key in value:
        if key not in allowed_keys:
            raise _Problem(_join(path, key), "unknown key", ", ".join(allowed_keys))
    for key in required:
        if key not in value:
            raise _Problem(_join(path, key), "missing", "a value for every one of " + ", ".join(required))
    return cast(dict[str, Any], value)


def _join(path: str, key: str) -> str:
    return key if path == "(root)" else f"{path}.{key}"


def _str(value: Any, path: str, allowed: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Problem(path, f"expected a non-empty string, got {kind_of(value)}", allowed)
    return value


def _name(value: Any, path: str) -> str:
    text = _str(value, path, "letters, digits, '.', '_' and '-', starting with a letter or digit")
    if not _NAME.match(text):
        raise _Problem(
            path, f"invalid name {text!r}", "letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return text


def _guid(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _GUID.match(value):
        shown = repr(value) if isinstance(value, str) else kind_of(value)
        raise _Problem(path, f"not a GUID: {shown}", _GUID_EXAMPLE)
    return value.lower()


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Problem(path, f"expected true or false, got {kind_of(value)}", "true, false")
    return value


def _list(value: Any, path: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Problem(path, f"expected a list, got {kind_of(value)}", f"a list of {what}")
    return value


def _unique(names: Iterable[tuple[str, str]], what: str) -> None:
    seen: set[str] = set()
    for path, name in names:
        key = name.lower()
        if key in seen:
            raise _Problem(path, f"duplicate {what} {name!r}", f"each {what} once")
        seen.add(key)


def _choices(wanted: str, names: Sequence[str], what: str) -> str:
    """What to tell the user instead of an unknown name: the closest ones, or a short list."""
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    shown = close or list(names[:5])
    listed = ", ".join(repr(n) for n in shown)
    if close:
        return f"one of the {len(names)} {what} (closest: {listed})"
    more = ", ..." if len(names) > len(shown) else ""
    return f"one of the {len(names)} {what}: {listed}{more}" if names else f"none: no {what} are declared"


# ---------------------------------------------------------------------------------------------------------------
# The seed


def _seed(data: Any) -> Seed:
    root = _mapping(data, "(root)", ["tenants"])
    items = _list(root["tenants"], "tenants", "tenants")
    if not items:
        raise _Problem("tenants", "no tenants", "a list of at least one tenant")
    tenants = tuple(_tenant(item, f"tenants[{i}]") for i, item in enumerate(items))
    _unique(((f"tenants[{i}].name", t.name) for i, t in enumerate(tenants)), "tenant name")
    _unique(((f"tenants[{i}].id", t.id) for i, t in enumerate(tenants)), "tenant id")
    _unique(((f"tenants[{i}].domain", t.domain) for i, t in enumerate(tenants)), "tenant domain")
    origins: list[tuple[str, str]] = []
    for i, tenant in enumerate(tenants):
        origins += [(f"tenants[{i}].environments[{j}].name", e.name) for j, e in enumerate(tenant.environments)]
        origins += [(f"tenants[{i}].key_vaults[{j}].name", k.name) for j, k in enumerate(tenant.key_vaults)]
    for path, name in origins:
        if name.lower() in RESERVED_ORIGIN_NAMES:
            raise _Problem(path, f"{name!r} is reserved for the authority host", "any other name")
    _unique(origins, "environment or key vault name")
    return Seed(tenants)


def _tenant(value: Any, path: str) -> TenantSeed:
    m = _mapping(value, path, ["name", "id", "domain", "applications"], ["environments", "key_vaults"])
    name = _str(m["name"], f"{path}.name")
    domain = _str(m["domain"], f"{path}.domain", "a domain name like contoso.onmicrosoft.com")
    if not _DOMAIN.match(domain):
        raise _Problem(f"{path}.domain", f"not a domain name: {domain!r}", "a domain name like contoso.onmicrosoft.com")
    app_items = _list(m["applications"], f"{path}.applications", "applications")
    if not app_items:
        raise _Problem(f"{path}.applications", "no applications", "at least one: the first one deploys")
    apps = tuple(_application(a, f"{path}.applications[{i}]") for i, a in enumerate(app_items))
    _unique(((f"{path}.applications[{i}].name", a.name) for i, a in enumerate(apps)), "application name")
    _unique(((f"{path}.applications[{i}].client_id", a.client_id) for i, a in enumerate(apps)), "client_id")
    _unique(((f"{path}.applications[{i}].object_id", a.object_id) for i, a in enumerate(apps)), "object_id")
    deployer = apps[0]
    if not deployer.service_principal or not deployer.credentials:
        raise _Problem(
            f"{path}.applications[0]",
            f"the first application ({deployer.name!r}) deploys, so it needs a service principal and a credential",
            "service_principal: true with at least one of credentials: " + ", ".join(CREDENTIAL_KINDS),
        )
    env_items = _list(m.get("environments", []), f"{path}.environments", "environments")
    environments = tuple(_environment(e, f"{path}.environments[{i}]", apps) for i, e in enumerate(env_items))
    vault_items = _list(m.get("key_vaults", []), f"{path}.key_vaults", "key vaults")
    vaults = tuple(_key_vault(k, f"{path}.key_vaults[{i}]", apps) for i, k in enumerate(vault_items))
    return TenantSeed(name, _guid(m["id"], f"{path}.id"), domain.lower(), apps, environments, vaults)


def _application(value: Any, path: str) -> ApplicationSeed:
    m = _mapping(
        value,
        path,
        ["name", "client_id", "object_id"],
        ["service_principal", "credentials", "federated_subject"],
    )
    kinds: list[CredentialKind] = []
    for i, item in enumerate(_list(m.get("credentials", []), f"{path}.credentials", "credential kinds")):
        where = f"{path}.credentials[{i}]"
        if item not in CREDENTIAL_KINDS:
            shown = repr(item) if isinstance(item, str) else kind_of(item)
            raise _Problem(where, f"unknown credential kind {shown}", ", ".join(CREDENTIAL_KINDS))
        if item in kinds:
            raise _Problem(where, f"duplicate credential kind {item!r}", "each kind once")
        kinds.append(cast(CredentialKind, item))
    subject: str | None = None
    if "federated_subject" in m:
        subject = _str(m["federated_subject"], f"{path}.federated_subject")
        if "federated" not in kinds:
            raise _Problem(
                f"{path}.federated_subject", "set without a 'federated' credential", "add federated to credentials"
            )
    elif "federated" in kinds:
        raise _Problem(
            f"{path}.federated_subject",
            "missing for a 'federated' credential",
            "the subject the federated token carries, e.g. repo:DEFRA/adp-identity:environment:dev",
        )
    return ApplicationSeed(
        name=_str(m["name"], f"{path}.name"),
        client_id=_guid(m["client_id"], f"{path}.client_id"),
        object_id=_guid(m["object_id"], f"{path}.object_id"),
        service_principal=_bool(m.get("service_principal", True), f"{path}.service_principal"),
        credentials=tuple(kinds),
        federated_subject=subject,
    )


def _find_application(ref: Any, path: str, apps: Sequence[ApplicationSeed], tenant_hint: str) -> ApplicationSeed:
    text = _str(ref, path)
    for app in apps:
        if text == app.name or text.lower() == app.client_id:
            if not app.service_principal:
                raise _Problem(
                    path,
                    f"application {app.name!r} has no service principal in this tenant",
                    "applications with service_principal: true",
                )
            return app
    names = [a.name for a in apps]
    raise _Problem(path, f"unknown application {text!r}", _choices(text, names, f"applications of {tenant_hint}"))


def _environment(value: Any, path: str, apps: Sequence[ApplicationSeed]) -> EnvironmentSeed:
    m = _mapping(
        value,
        path,
        ["name", "business_units", "roles"],
        ["application_users", "allow_role_assignment_on_disabled_users"],
    )
    name = _name(m["name"], f"{path}.name")
    units = _business_units(m["business_units"], f"{path}.business_units")
    unit_names = [u.name for u in units]
    role_items = _list(m["roles"], f"{path}.roles", "role names or {name, privileges} mappings")
    roles = tuple(_role(r, f"{path}.roles[{i}]") for i, r in enumerate(role_items))
    _unique(((f"{path}.roles[{i}]", r.name) for i, r in enumerate(roles)), "role name")
    role_names = [r.name for r in roles]
    users: list[ApplicationUserSeed] = []
    user_paths: list[tuple[str, str]] = []
    for i, item in enumerate(_list(m.get("application_users", []), f"{path}.application_users", "application users")):
        where = f"{path}.application_users[{i}]"
        u = _mapping(item, where, ["application"], ["business_unit", "roles", "disabled"])
        app = _find_application(u["application"], f"{where}.application", apps, "this tenant")
        unit: str | None = None
        if "business_unit" in u:
            unit = _str(u["business_unit"], f"{where}.business_unit")
            if unit not in unit_names:
                raise _Problem(
                    f"{where}.business_unit",
                    f"unknown business unit {unit!r}",
                    _choices(unit, unit_names, f"business units of {name}"),
                )
        user_roles: list[str] = []
        for j, role in enumerate(_list(u.get("roles", []), f"{where}.roles", "role names")):
            role_name = _str(role, f"{where}.roles[{j}]")
            if role_name not in role_names:
                raise _Problem(
                    f"{where}.roles[{j}]",
                    f"unknown role {role_name!r}",
                    _choices(role_name, role_names, f"roles of {name}"),
                )
            if role_name in user_roles:
                raise _Problem(f"{where}.roles[{j}]", f"duplicate role {role_name!r}", "each role once")
            user_roles.append(role_name)
        disabled = _bool(u.get("disabled", False), f"{where}.disabled")
        users.append(ApplicationUserSeed(app.name, unit, tuple(user_roles), disabled))
        user_paths.append((f"{where}.application", app.name))
    _unique(user_paths, "application user for application")
    allow = _bool(
        m.get("allow_role_assignment_on_disabled_users", False), f"{path}.allow_role_assignment_on_disabled_users"
    )
    return EnvironmentSeed(name, units, roles, tuple(users), allow)


def _business_units(value: Any, path: str) -> tuple[BusinessUnitSeed, ...]:
    items = _list(value, path, "business units ({name, parent})")
    units: list[BusinessUnitSeed] = []
    for i, item in enumerate(items):
        m = _mapping(item, f"{path}[{i}]", ["name"], ["parent"])
        parent = _str(m["parent"], f"{path}[{i}].parent") if m.get("parent") is not None else None
        units.append(BusinessUnitSeed(_str(m["name"], f"{path}[{i}].name"), parent))
    _unique(((f"{path}[{i}].name", u.name) for i, u in enumerate(units)), "business unit name")
    roots = [u.name for u in units if u.parent is None]
    if len(roots) != 1:
        found = f"{len(roots)} root business units" + (f" ({', '.join(map(repr, roots))})" if roots else "")
        raise _Problem(path, found, "exactly one business unit without a parent (the root)")
    names = [u.name for u in units]
    parents = {u.name: u.parent for u in units}
    for i, unit in enumerate(units):
        if unit.parent is not None and unit.parent not in parents:
            raise _Problem(
                f"{path}[{i}].parent",
                f"unknown business unit {unit.parent!r}",
                _choices(unit.parent, names, "business units of this environment"),
            )
    for i, unit in enumerate(units):
        seen = {unit.name}
        current = unit.parent
        while current is not None:
            if current in seen:
                raise _Problem(f"{path}[{i}].parent", "business units form a cycle", "a tree under the root")
            seen.add(current)
            current = parents[current]
    return tuple(units)


def _role(value: Any, path: str) -> RoleSeed:
    if isinstance(value, str):
        return RoleSeed(_str(value, path))
    m = _mapping(value, path, ["name"], ["privileges"])
    privileges: list[str] = []
    for i, item in enumerate(_list(m.get("privileges", []), f"{path}.privileges", "privilege names")):
        text = _str(item, f"{path}.privileges[{i}]", "privilege names like prvReadUser")
        if not _PRIVILEGE.match(text):
            raise _Problem(f"{path}.privileges[{i}]", f"not a privilege name: {text!r}", "names like prvReadUser")
        if text in privileges:
            raise _Problem(f"{path}.privileges[{i}]", f"duplicate privilege {text!r}", "each privilege once")
        privileges.append(text)
    return RoleSeed(_str(m["name"], f"{path}.name"), tuple(privileges))


def _key_vault(value: Any, path: str, apps: Sequence[ApplicationSeed]) -> KeyVaultSeed:
    m = _mapping(value, path, ["name"], ["role_assignments"])
    name = _name(m["name"], f"{path}.name")
    assignments: list[tuple[str, str]] = []
    for i, item in enumerate(_list(m.get("role_assignments", []), f"{path}.role_assignments", "{application, role}")):
        where = f"{path}.role_assignments[{i}]"
        a = _mapping(item, where, ["application", "role"])
        app = _find_application(a["application"], f"{where}.application", apps, "this tenant")
        role = _str(a["role"], f"{where}.role")
        if role not in KEY_VAULT_ROLES:
            raise _Problem(f"{where}.role", f"unknown Key Vault role {role!r}", ", ".join(KEY_VAULT_ROLES))
        if (app.name, role) in assignments:
            raise _Problem(where, f"duplicate assignment of {role!r} to {app.name!r}", "each assignment once")
        assignments.append((app.name, role))
    return KeyVaultSeed(name, tuple(assignments))
