"""The sandbox: reading a stack against the local emulator instead of Azure, with no Pulumi CLI.

The emulator (``adp-identity emulator``) serves each Dataverse environment of its seed on a loopback origin and
describes itself in its ``--json-file`` (`EmulatorDescription`); it also prints one ``DATAVERSE_URL_<NAME>``
variable per environment. A stack environment stands for the emulator environment named like the first label of
its URL's host (``https://defradev-dev.crm11.dynamics.com`` -> ``defradev-dev`` -> ``DATAVERSE_URL_DEFRADEV_DEV``),
so the real ``stacks/`` tree runs against the sandbox unchanged.

Tenants: the emulator's tenants have ids of their own. With ``--emulator FILE`` the stack's tenant is the emulator
tenant of the same name (``DefraDev``), and every environment of the stack must belong to it; tenant isolation is
then checked against that id. ``DATAVERSE_URL_*`` variables carry URLs only, so the stack's own tenant id stays
what the credential must sign in to.

`stack_outputs` is what ``adp-identity emulator --outputs-file DIR`` writes per stack: the outputs the program
(``infra/components/service.py``) would give the services whose identities the seed holds, in the shape of
``pulumi stack output --json``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adp_identity.desired import naming
from adp_identity.desired.constraints import LOOPBACK_HOSTS
from adp_identity.desired.errors import DOCUMENT, DesiredStateError, kind_of, show
from adp_identity.desired.schema import DesiredState
from adp_identity.drift.identities import parse_document, read_bounded, refuse
from providers.dataverse.client import environment_origin
from providers.dataverse.models import normalise_guid

__all__ = [
    "EmulatorDescription",
    "SandboxUrls",
    "dataverse_url_variable",
    "emulator_environment_name",
    "read_emulator_description",
    "sandbox_urls",
    "stack_outputs",
    "write_stack_outputs",
]

_ALLOWED = "the emulator's --json-file (authority_host, tenants, environments, identities)"
_VARIABLE_CHARS = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True)
class EmulatorDescription:
    """What the drift commands need from the emulator's ``--json-file``."""

    source: str
    tenants: Mapping[str, str]  # tenant name -> tenant id
    environments: Mapping[str, tuple[str, str]]  # environment name -> (origin, tenant name)
    applications: Mapping[tuple[str, str], tuple[str, str]]  # (tenant name, app name) -> (client id, object id)


def read_emulator_description(path: str) -> EmulatorDescription:
    """Read and check the emulator's JSON file (bounded); `DriftInputErrors` on anything unusable."""
    data = read_bounded(path, path, allowed=_ALLOWED)
    document, _ = parse_document(data, path, allowed=_ALLOWED)
    return parse_emulator_description(document, path)


def parse_emulator_description(document: Mapping[str, Any], source: str) -> EmulatorDescription:
    errors: list[DesiredStateError] = []

    def error(key: str, message: str, allowed: str) -> None:
        errors.append(DesiredStateError(source, key, message, allowed))

    def rows(key: str) -> list[Mapping[str, Any]]:
        value = document.get(key)
        if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
            error(key, f"is {kind_of(value)}", "a list of mappings, as the emulator writes it")
            return []
        return value

    def text(key: str, row: Mapping[str, Any], field: str) -> str | None:
        value = row.get(field)
        if not isinstance(value, str) or not value:
            error(f"{key}.{field}", f"is {kind_of(value)}", "a string, as the emulator writes it")
            return None
        return value

    tenants: dict[str, str] = {}
    for row in rows("tenants"):
        name, tenant_id = text("tenants", row, "name"), text("tenants", row, "id")
        if name and tenant_id:
            try:
                tenants[name] = normalise_guid(tenant_id)
            except ValueError:
                error("tenants.id", f"{show(tenant_id)} is not a GUID", "a tenant id")
    environments: dict[str, tuple[str, str]] = {}
    for row in rows("environments"):
        name, url, tenant = (text("environments", row, f) for f in ("name", "url", "tenant"))
        if name and url and tenant:
            try:
                environments[name] = (environment_origin(url), tenant)
            except ValueError:
                error("environments.url", f"{show(url)} is not an https origin", "https://127.0.0.1:<port>")
    applications: dict[tuple[str, str], tuple[str, str]] = {}
    for row in rows("identities"):
        name, tenant = text("identities", row, "name"), text("identities", row, "tenant")
        client_id, object_id = text("identities", row, "client_id"), text("identities", row, "object_id")
        if name and tenant and client_id and object_id:
            applications.setdefault((tenant, name), (client_id.lower(), object_id.lower()))
    if errors:
        refuse(errors[:10])
    return EmulatorDescription(source, tenants, environments, applications)


def emulator_environment_name(stack_url: str) -> str | None:
    """``https://defradev-dev.crm11.dynamics.com`` -> ``defradev-dev``; None for a loopback or IP address URL."""
    host = (urlsplit(stack_url).hostname or "").lower()
    if not host or host in LOOPBACK_HOSTS or re.fullmatch(r"[0-9.]+|\[?[0-9a-f:]+\]?", host):
        return None
    return host.split(".", 1)[0]


def dataverse_url_variable(environment_name: str) -> str:
    """The variable the emulator prints for an environment: ``defradev-dev`` -> ``DATAVERSE_URL_DEFRADEV_DEV``."""
    return "DATAVERSE_URL_" + _VARIABLE_CHARS.sub("_", environment_name.upper())


@dataclass(frozen=True)
class SandboxUrls:
    """Where to read each stack environment in the sandbox, why, and the tenant id the credential must hold."""

    urls: Mapping[str, str]  # stack short name -> origin
    url_from: Mapping[str, str]  # stack short name -> where the URL came from
    tenant_id: str | None  # the emulator's id of the stack's tenant (None: keep the stack's)


def sandbox_urls(
    state: DesiredState,
    *,
    description: EmulatorDescription | None,
    environ: Mapping[str, str],
    overridden: frozenset[str] = frozenset(),
) -> SandboxUrls:
    """The emulator's URL of every stack environment not in ``overridden`` (``--environment-url`` wins).

    With ``description`` (``--emulator FILE``): every environment must have its emulator counterpart, in the
    emulator tenant of the stack's tenant name; otherwise a one-line error each. Without it, ``DATAVERSE_URL_*``
    variables of ``environ`` point the environments they name at the emulator; the others keep the stack's URL.
    """
    urls: dict[str, str] = {}
    url_from: dict[str, str] = {}
    errors: list[DesiredStateError] = []
    tenant_name = state.tenant.name
    tenant_id: str | None = None
    if description is not None:
        tenant_id = description.tenants.get(tenant_name)
        if tenant_id is None:
            errors.append(
                DesiredStateError(
                    description.source,
                    "tenants",
                    f"no tenant named '{tenant_name}' (stack '{state.stack}')",
                    ", ".join(description.tenants) or "none",
                )
            )
    for short, environment in state.tenant.dataverse_environments.items():
        if short in overridden:
            continue
        name = emulator_environment_name(environment.url)
        if name is None:  # a sandbox copy of the settings already names a loopback URL
            continue
        if description is not None:
            found = description.environments.get(name)
            in_tenant = [n for n, (_, t) in description.environments.items() if t == tenant_name]
            if found is None or found[1] != tenant_name:
                where = "" if found is None else f" (it is tenant {found[1]}'s)"
                errors.append(
                    DesiredStateError(
                        description.source,
                        f"environments.{name}",
                        f"no environment '{name}' of tenant {tenant_name} for stack environment '{short}'{where}",
                        ", ".join(in_tenant) or "none",
                    )
                )
                continue
            urls[short], url_from[short] = found[0], f"--emulator {description.source}"
            continue
        variable = dataverse_url_variable(name)
        value = environ.get(variable)
        if value:
            try:
                urls[short], url_from[short] = environment_origin(value), variable
            except ValueError:
                errors.append(
                    DesiredStateError(variable, DOCUMENT, f"{show(value)} is not an https origin", "https://<host>")
                )
    if errors:
        refuse(errors)
    return SandboxUrls(urls, url_from, tenant_id)


def stack_outputs(state: DesiredState, description: EmulatorDescription) -> dict[str, dict[str, Any]]:
    """What ``pulumi stack output --json`` would print for ``state`` had ``pulumi up`` run against the emulator.

    Per service whose managed identity (``{prefix}-{service}``) the seed holds in the emulator tenant of the
    stack's tenant name: ``identity_name``, ``client_id``, ``principal_id``, ``tenant_id``,
    ``dataverse_application_users`` (empty: the stack has created none yet) and, when the service declares an app
    registration the seed holds (by its display name), ``app_registration_client_id``. Services the seed has no
    identity for are left out, as a service not deployed yet has no outputs (``plan`` plans it as to be created).
    """
    tenant = state.tenant.name
    tenant_id = description.tenants.get(tenant)
    if tenant_id is None:
        return {}
    outputs: dict[str, dict[str, Any]] = {}
    for service, spec in sorted(state.services.items()):
        identity_name = state.identity_name(service)
        identity = description.applications.get((tenant, identity_name))
        if identity is None:
            continue
        client_id, object_id = identity
        entry: dict[str, Any] = {
            "identity_name": identity_name,
            "client_id": client_id,
            "principal_id": object_id,
            "tenant_id": tenant_id,
            "dataverse_application_users": {},
        }
        if spec.app_registration is not None:
            display = spec.app_registration.display_name or naming.app_registration_display_name(service)
            app = description.applications.get((tenant, display))
            if app is not None:
                entry["app_registration_client_id"] = app[0]
        outputs[service] = entry
    return outputs


def write_stack_outputs(
    directory: Path, states: Mapping[str, DesiredState], description: EmulatorDescription
) -> list[tuple[Path, int, tuple[str, ...]]]:
    """Write ``<directory>/<stack>.json`` for every stack (4-space indent, as Pulumi prints them); returns each
    file with the number of services written and the services left out (no identity in the seed).

    The directory is created owner-only when missing; each file is written through a random temporary name
    opened with ``O_CREAT | O_EXCL`` (``tempfile.mkstemp``) and renamed into place, so nothing is ever written
    through a name or symlink someone else prepared.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[tuple[Path, int, tuple[str, ...]]] = []
    for stack, state in sorted(states.items()):
        outputs = stack_outputs(state, description)
        path = directory / f"{stack}.json"
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{stack}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(outputs, indent=4) + "\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append((path, len(outputs), tuple(sorted(set(state.services) - set(outputs)))))
    return written
