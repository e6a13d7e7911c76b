"""The import file: what the stack adopts when a service moves from the platform to adp-identity (no Pulumi import).

``stacks/<stack>/imports/<service>.yaml`` lists the Azure resources ADP's Helm library made for the service
(through Azure Service Operator): its user-assigned identity, its federated credentials and its "Key Vault
Secrets User" role assignments. ``adp-identity import-ids --stack S --service X --write`` reads them from Azure
and writes the file; the pull request that sets ``workload_identity.owner: adp-identity`` carries it; the program
registers each listed resource with Pulumi's ``import`` option, so the first ``pulumi up`` adopts what exists
instead of creating a second copy (docs/operations.md, "Moving a service between owners").

Why the file stays while the service is owned by adp-identity: the platform names what it creates its own way.
A federated credential is named after its place in the Helm values (``{mi}-fic-{index}``, per cluster), and a role
assignment gets a UUID that Azure Service Operator derives from its Kubernetes object. The program names
adopted resources as Azure has them, taken from these ids; without the file it would name them by its own rule
and Pulumi would replace them. Leaving ``import`` in place is what Pulumi intends: a resource already in the
stack with that id "is treated like any other resource" (pulumi/pulumi developer-docs/architecture/import.md).

The directory is not a service file (the loader reads only ``stacks/<stack>/*.yaml``); the file is read with
the project's strict YAML reader and checked against the service's declaration before anything is registered.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adp_identity.desired import naming as adp
from adp_identity.desired.errors import format_key_path, kind_of, one_line, show
from adp_identity.desired.schema import DesiredState
from adp_identity.desired.yamlsafe import YamlRefused, read_yaml
from infra import naming

IMPORTS_DIR = "imports"
FEDERATED_CREDENTIALS_SEGMENT = "/federatedIdentityCredentials/"
ROLE_ASSIGNMENTS_SEGMENT = "/providers/Microsoft.Authorization/roleAssignments/"
TOP_KEYS = ("service", "identity", "federated_credentials", "secret_grants")
_ARM_ID = re.compile(r"/subscriptions/[0-9A-Fa-f-]{36}/[A-Za-z0-9_./()-]+")


class ImportFileError(Exception):
    """The import file is unusable; ``lines`` are the one-line errors (file, key, what is allowed)."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


@dataclass(frozen=True)
class ImportedCredential:
    """A federated credential that exists in Azure, matched to a declared one by issuer and subject."""

    issuer: str
    subject: str
    id: str  # its ARM id

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImportedGrant:
    """A "Key Vault Secrets User" role assignment on one secret, as Azure has it."""

    secret: str  # the Key Vault secret's name (<service>-<name>, or the certificate's <service>-app-cert)
    id: str  # {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def scope(self) -> str:
        """The scope exactly as Azure returned it (ADP's Helm library writes ``resourcegroups`` in lower case)."""
        return self.id[: _segment_at(self.id, ROLE_ASSIGNMENTS_SEGMENT)]


@dataclass(frozen=True)
class ImportIds:
    """One service's import file."""

    service: str
    identity: str  # the user-assigned identity's ARM id
    federated_credentials: tuple[ImportedCredential, ...] = ()
    secret_grants: tuple[ImportedGrant, ...] = ()

    def credential(self, issuer: str, subject: str) -> ImportedCredential | None:
        for credential in self.federated_credentials:
            if credential.issuer == issuer and credential.subject == subject.lower():
                return credential
        return None

    def grant(self, secret: str) -> ImportedGrant | None:
        for grant in self.secret_grants:
            if grant.secret == secret:
                return grant
        return None


def import_file(stack_config_dir: Path, stack: str, service: str) -> Path:
    """Where a service's import file lives: ``<stackConfigDir>/<stack>/imports/<service>.yaml``."""
    return stack_config_dir / stack / IMPORTS_DIR / f"{service}.yaml"


def _segment_at(arm_id: str, segment: str) -> int:
    return arm_id.lower().rfind(segment.lower())


# -- reading --------------------------------------------------------------------------------------------------


def read_imports(path: Path, display: str) -> ImportIds:
    """The import file at ``path`` (shown as ``display``), its shape checked; `ImportFileError` lists every problem."""
    try:
        document = read_yaml(path)
    except YamlRefused as exc:
        where = f"{display}:{exc.line}" if exc.line else display
        raise ImportFileError(
            [one_line(f"{where}: {format_key_path(exc.key_path)}: {exc.message}; allowed: {exc.allowed}")]
        ) from None
    data = document.data
    errors: list[str] = []

    def error(path_: tuple[str | int, ...], message: str, allowed: str) -> None:
        line = document.line_of(path_)
        where = f"{display}:{line}" if line else display
        errors.append(one_line(f"{where}: {format_key_path(path_)}: {message}; allowed: {allowed}"))

    for key in data:
        if key not in TOP_KEYS:
            error((key,), "unknown key", ", ".join(TOP_KEYS))

    def text(path_: tuple[str | int, ...], value: Any, allowed: str) -> str:
        if not isinstance(value, str) or not value:
            error(path_, f"expected a non-empty string, got {kind_of(value)}", allowed)
            return ""
        return value

    def arm_id(path_: tuple[str | int, ...], value: Any) -> str:
        found = text(path_, value, "an ARM id as Azure returns it, /subscriptions/<id>/...")
        if found and not _ARM_ID.fullmatch(found):
            error(path_, f"{show(found)} is not an ARM id", "an ARM id as Azure returns it, /subscriptions/<id>/...")
            return ""
        return found

    def entries(key: str, fields: tuple[str, ...]) -> list[tuple[int, Mapping[str, Any]]]:
        value = data.get(key, [])
        if not isinstance(value, list):
            error((key,), f"expected a list, got {kind_of(value)}", f"a list of mappings with {', '.join(fields)}")
            return []
        found: list[tuple[int, Mapping[str, Any]]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                error((key, index), f"expected a mapping, got {kind_of(item)}", f"a mapping with {', '.join(fields)}")
                continue
            for extra in item:
                if extra not in fields:
                    error((key, index, extra), "unknown key", ", ".join(fields))
            for required in fields:
                if required not in item:
                    error((key, index, required), "required key is missing", f"a mapping with {', '.join(fields)}")
            found.append((index, item))
        return found

    service = text(("service",), data.get("service"), "the service's name (the file name without .yaml)")
    if path.name.endswith(".yaml") and service and service != path.name[: -len(".yaml")]:
        error(("service",), f"{show(service)} is not the file's service", path.name[: -len(".yaml")])
    identity = arm_id(("identity",), data.get("identity"))
    credentials: list[ImportedCredential] = []
    for index, item in entries("federated_credentials", ("issuer", "subject", "id")):
        issuer = text(("federated_credentials", index, "issuer"), item.get("issuer"), "the OIDC issuer URL, verbatim")
        subject = text(
            ("federated_credentials", index, "subject"), item.get("subject"), "system:serviceaccount:<ns>:<sa>"
        )
        credential_id = arm_id(("federated_credentials", index, "id"), item.get("id"))
        if issuer and subject and credential_id:
            credentials.append(ImportedCredential(issuer, subject.lower(), credential_id))
    grants: list[ImportedGrant] = []
    for index, item in entries("secret_grants", ("secret", "id")):
        secret = text(("secret_grants", index, "secret"), item.get("secret"), "the Key Vault secret's name")
        grant_id = arm_id(("secret_grants", index, "id"), item.get("id"))
        if secret and grant_id:
            grants.append(ImportedGrant(secret, grant_id))
    if errors:
        raise ImportFileError(errors)
    return ImportIds(service, identity, tuple(credentials), tuple(grants))


# -- checking against the service's declaration ---------------------------------------------------------------


def check_imports(
    ids: ImportIds,
    display: str,
    *,
    identity_id: str,
    credentials: Sequence[tuple[str, str, str]],
    secret_scopes: Mapping[str, str],
) -> list[str]:
    """Every way ``ids`` does not fit the service as declared, one line each (empty: usable).

    ``identity_id`` is the identity's ARM id by ADP's naming; ``credentials`` the declared federated credentials
    as (issuer, subject, name the program would give it); ``secret_scopes`` Key Vault secret name -> the scope
    the program grants on. ARM compares ids without regard to case; so does this check.
    """
    errors: list[str] = []

    def error(key: str, message: str, allowed: str) -> None:
        errors.append(one_line(f"{display}: {key}: {message}; allowed: {allowed}"))

    if ids.identity.lower() != identity_id.lower():
        error("identity", f"{show(ids.identity)} is not the service's identity", identity_id)
    declared = {(issuer, subject.lower()) for issuer, subject, _ in credentials}
    imported_names: dict[str, ImportedCredential] = {}
    for index, credential in enumerate(ids.federated_credentials):
        key = f"federated_credentials[{index}]"
        if (credential.issuer, credential.subject) not in declared:
            error(
                key,
                f"issuer {show(credential.issuer)} and subject {show(credential.subject)} are not declared",
                "a federated credential the service file declares (declare it, or delete it in Azure first)",
            )
        prefix = f"{identity_id}{FEDERATED_CREDENTIALS_SEGMENT}"
        if not credential.id.lower().startswith(prefix.lower()) or "/" in credential.id[len(prefix) :]:
            error(f"{key}.id", f"{show(credential.id)} is not a credential of the identity", f"{prefix}<name>")
        if credential.name.lower() in imported_names:
            error(f"{key}.id", f"the name {show(credential.name)} is listed twice", "each credential once")
        imported_names[credential.name.lower()] = credential
    seen: set[tuple[str, str]] = set()
    for index, credential in enumerate(ids.federated_credentials):
        pair = (credential.issuer, credential.subject)
        if pair in seen:
            error(f"federated_credentials[{index}]", "this issuer and subject are listed twice", "each credential once")
        seen.add(pair)
    for issuer, subject, name in credentials:
        taken = imported_names.get(name.lower())
        if ids.credential(issuer, subject) is None and taken is not None:
            error(
                "federated_credentials",
                f"the new credential for {show(subject)} would be named {name}, which the adopted credential for "
                f"{show(taken.subject)} already has",
                "rerun `adp-identity import-ids`, or delete the unused credential in Azure",
            )
    for index, grant in enumerate(ids.secret_grants):
        key = f"secret_grants[{index}]"
        scope = secret_scopes.get(grant.secret)
        if scope is None:
            error(f"{key}.secret", f"{show(grant.secret)} is not a secret the service declares", _names(secret_scopes))
            continue
        at = _segment_at(grant.id, ROLE_ASSIGNMENTS_SEGMENT)
        name = grant.name
        if at < 0 or grant.id[:at].lower() != scope.lower() or "/" in grant.id[at + len(ROLE_ASSIGNMENTS_SEGMENT) :]:
            error(
                f"{key}.id",
                f"{show(grant.id)} is not a role assignment on that secret",
                f"{scope}{ROLE_ASSIGNMENTS_SEGMENT}<guid>",
            )
        elif not _is_guid(name):
            error(f"{key}.id", f"{show(name)} is not a role assignment name", "a GUID")
    if len({grant.secret for grant in ids.secret_grants}) != len(ids.secret_grants):
        error("secret_grants", "a secret is listed twice", "each secret once (Azure holds one grant per principal)")
    return errors


def _names(values: Iterable[str]) -> str:
    listed = sorted(values)
    return ", ".join(listed) if listed else "none (the service declares no secret)"


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# -- writing --------------------------------------------------------------------------------------------------


def render_imports(ids: ImportIds, *, stack: str) -> str:
    """The import file's text: reviewable YAML, every value a JSON string (a valid YAML scalar, quoted)."""
    q = json.dumps
    lines = [
        f"# Azure resources the platform created for {ids.service}, adopted by stack {stack} with Pulumi's import",
        f"# option. Written by: adp-identity import-ids --stack {stack} --service {ids.service} --write",
        "# Keep this file while the service's owner is adp-identity: it names what was adopted",
        '# (docs/operations.md, "Moving a service between owners").',
        f"service: {q(ids.service)}",
        f"identity: {q(ids.identity)}",
    ]
    if ids.federated_credentials:
        lines.append("federated_credentials:")
        for credential in ids.federated_credentials:
            lines += [
                f"  - issuer: {q(credential.issuer)}",
                f"    subject: {q(credential.subject)}",
                f"    id: {q(credential.id)}",
            ]
    else:
        lines.append("federated_credentials: []")
    if ids.secret_grants:
        lines.append("secret_grants:")
        for grant in ids.secret_grants:
            lines += [f"  - secret: {q(grant.secret)}", f"    id: {q(grant.id)}"]
    else:
        lines.append("secret_grants: []")
    return "\n".join(lines) + "\n"


# -- a stack's import files -----------------------------------------------------------------------------------


def stack_imports(stack_config_dir: Path, desired: DesiredState) -> dict[str, ImportIds]:
    """Every import file of the stack, read and checked against its service; `ImportFileError` lists every problem.

    A file for a service the stack does not declare, or for a service whose identity the platform owns (once its
    release deploy is done), is refused: the file would silently stop meaning anything.
    """
    directory = stack_config_dir / desired.stack / IMPORTS_DIR
    if not directory.is_dir():
        return {}
    shown = f"{stack_config_dir.name}/{desired.stack}/{IMPORTS_DIR}"
    found: dict[str, ImportIds] = {}
    errors: list[str] = []
    for path in sorted(directory.iterdir()):
        display = f"{shown}/{path.name}"
        if path.name.startswith(".") or path.suffix != ".yaml":
            continue
        service = path.name[: -len(".yaml")]
        spec = desired.services.get(service)
        if spec is None:
            errors.append(
                f"{display}: (document): no service {service} in stack {desired.stack}; allowed: the "
                "import file of a declared service (delete it with the service file)"
            )
            continue
        if spec.workload_identity.owner == "platform" and not spec.workload_identity.release:
            errors.append(
                f"{display}: (document): the platform owns this service's identity; allowed: delete the "
                "file when the owner moves to the platform"
            )
            continue
        try:
            ids = read_imports(path, display)
        except ImportFileError as exc:
            errors.extend(exc.lines)
            continue
        problems = check_imports(ids, display, **declared_targets(desired, service))
        if problems:
            errors.extend(problems)
            continue
        found[service] = ids
    if errors:
        raise ImportFileError(errors)
    return found


def declared_targets(desired: DesiredState, service: str) -> dict[str, Any]:
    """What a service's import file must fit: the identity's id, the declared credentials, the granted scopes."""
    tenant = desired.tenant
    spec = desired.services[service]
    identity_name = desired.identity_name(service)
    vault_id = naming.key_vault_id(tenant.subscription_id, tenant.key_vault.resource_group, tenant.key_vault.name)
    secrets = [adp.key_vault_secret_name(spec.service, name) for name in spec.key_vault_secrets]
    if spec.app_registration is not None:
        secrets.append(adp.certificate_name(spec.service))
    return {
        "identity_id": naming.managed_identity_id(tenant.subscription_id, tenant.resource_group, identity_name),
        "credentials": [(c.issuer, c.subject, c.name) for c in desired.federated_credentials(service)],
        "secret_scopes": {secret: naming.key_vault_secret_scope(vault_id, secret) for secret in secrets},
    }
