"""Load the ``stacks/`` tree (or a running Pulumi program's config) into checked `DesiredState`s.

Layout (Pulumi.yaml has ``stackConfigDir: stacks``)::

    stacks/Pulumi.<stack>.yaml      Pulumi stack config: `adp-identity:tenant` (TenantSettings) and the
                                    secure values `adp-identity:secret-<service>-<name>`
    stacks/<stack>/<service>.yaml   one ServiceSpec per service
    stacks/policy-exceptions.yaml   reviewed exceptions to the platform rules (optional; adp_identity.rules)

`check_tree` reads everything, keeps going after an error and returns a `TreeReport` with every error, warning
and waived finding of the run, schema, cross-file and policy alike; `load_tree` raises one `DesiredStateErrors`
with every error and returns only when the whole selection is clean. Files are read through
`yamlsafe.read_tree_file`: regular files inside the tree only, bounded. No Pulumi import here: the Pulumi program
hands its config to `desired_state_from_pulumi_config` and gets the very same `DesiredState` and checks.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adp_identity.desired.checks import (
    PROJECT,
    SECRET_KEY_PREFIX,
    TENANT_KEY,
    SecretStatus,
    ServiceFile,
    StackConfig,
    check_stack,
)
from adp_identity.desired.errors import (
    DOCUMENT,
    DesiredStateError,
    DesiredStateErrors,
    KeyPath,
    format_key_path,
    kind_of,
)
from adp_identity.desired.partial import service_view, tenant_view
from adp_identity.desired.schema import DesiredState, ServiceSpec, TenantSettings, WorkloadIdentitySpec
from adp_identity.desired.translate import translate
from adp_identity.desired.yamlsafe import OutsideTree, YamlDocument, YamlRefused, inside_tree, read_tree_file
from adp_identity.rules.catalog import RULE_IDS
from adp_identity.rules.context import origin
from adp_identity.rules.exceptions import EXCEPTIONS_FILE, ExceptionSet, parse_exceptions

# Top-level keys Pulumi itself writes in a stack settings file.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_STACK_FILE = re.compile(r"Pulumi\.(?P<stack>.+)\.yaml")
_TENANT_ALLOWED = "the tenant settings mapping (schemas/tenant-settings.schema.json)"
_PROJECT_KEYS_ALLOWED = f"{TENANT_KEY}, {SECRET_KEY_PREFIX}<service>-<name>"
# Keys a team may write to ask for a password credential: refused by the rule, not as "unknown keys". At the top
# level of a service file `secret`/`secrets` more likely mean key_vault_secrets, so they stay unknown keys there.
_PASSWORD_KEYS = ("password", "passwords", "client_secret", "client_secrets")
_APP_PASSWORD_KEYS = (*_PASSWORD_KEYS, "secret", "secrets")
_NO_PASSWORD_ALLOWED = (
    "app_registration.certificate (a certificate Key Vault creates and rotates: validity_months,"
    " renew_before_days); never a password or client secret (ADR 4)"
)


@dataclass
class TreeReport:
    """Everything one check of the tree found. `states` holds the stacks without errors."""

    states: dict[str, DesiredState] = field(default_factory=dict)
    errors: list[DesiredStateError] = field(default_factory=list)
    warnings: list[DesiredStateError] = field(default_factory=list)
    waived: list[DesiredStateError] = field(default_factory=list)
    files_checked: int = 0
    exceptions: ExceptionSet = field(default_factory=ExceptionSet)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise DesiredStateErrors(
                self.errors, files_checked=self.files_checked, warnings=self.warnings, waived=self.waived
            )


def check_tree(
    stacks_dir: Path, stack: str | None = None, *, strict: bool = False, today: dt.date | None = None
) -> TreeReport:
    """Check every stack under `stacks_dir` (or only `stack`) and report everything at once.

    `strict` (deploy): findings that are warnings for a team's pull request (a declared secret whose value the
    platform team has not set yet) are errors. `today` dates the exceptions (tests pass one).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    report = TreeReport()
    errors = report.errors
    root = stacks_dir.name or str(stacks_dir)
    if not stacks_dir.is_dir():
        errors.append(
            DesiredStateError(root, DOCUMENT, "directory not found", "a stacks directory (Pulumi stackConfigDir)")
        )
        return report
    stacks = _discover(stacks_dir, root, errors)
    checked = [stack] if stack is not None else stacks
    exceptions, exception_file_checked = _load_exceptions(
        stacks_dir, root, stacks=stacks, checked=checked, today=today, errors=errors
    )
    report.exceptions = exceptions
    if stack is not None:
        if stack not in stacks:
            errors.append(
                DesiredStateError(
                    f"{root}/Pulumi.{stack}.yaml",
                    DOCUMENT,
                    f"unknown stack '{stack}' (no such stack settings file)" + _did_you_mean(stack, stacks),
                    "stacks: " + (", ".join(stacks) or "none found"),
                )
            )
            return report
        stacks = [stack]
    report.files_checked = int(exception_file_checked)
    tenants: dict[str, StackConfig] = {}
    for name in stacks:
        config, services = _read_stack(stacks_dir, root, name, errors)
        report.files_checked += 1 + len(services)
        state = _finish(config, services, report, strict=strict)
        if config is not None:
            tenants[name] = config
        if state is not None:
            report.states[name] = state
    _check_tenants_apart(tenants, report)
    for unused in exceptions.unused(stacks):
        state = report.states.get(unused.stack)
        subjects = _subjects(state) if state is not None else []
        report.warnings.append(
            DesiredStateError(
                f"{root}/{EXCEPTIONS_FILE}",
                format_key_path(("exceptions", unused.index)),
                f"exception for {unused.rule} on {unused.subject} in {unused.stack} waives nothing"
                + _did_you_mean(unused.subject, subjects),
                "remove it, or correct its rule, stack or subject",
                unused.line,
                severity="warning",
            )
        )
    for name in [n for n in report.states if any(_stack_of(e, root) == n for e in errors)]:
        del report.states[name]
    return report


def load_tree(
    stacks_dir: Path, stack: str | None = None, *, strict: bool = True, today: dt.date | None = None
) -> dict[str, DesiredState]:
    """Every stack under `stacks_dir` (or only `stack`), checked; raises `DesiredStateErrors` with all errors.

    Strict by default (what the program and deploy use); `adp-identity validate` reports warnings apart.
    """
    report = check_tree(stacks_dir, stack, strict=strict, today=today)
    report.raise_for_errors()
    return report.states


def load_stack(stacks_dir: Path, stack: str, *, strict: bool = True, today: dt.date | None = None) -> DesiredState:
    """One stack, checked; raises `DesiredStateErrors` (an unknown stack is one of them)."""
    return load_tree(stacks_dir, stack, strict=strict, today=today)[stack]


def desired_state_from_pulumi_config(
    stack: str,
    config: Mapping[str, Any],
    secret_keys: Collection[str],
    stacks_dir: Path,
    *,
    today: dt.date | None = None,
) -> DesiredState:
    """The `DesiredState` of a running Pulumi program: its config plus the service files of `stack`.

    `config` maps full keys (``adp-identity:tenant``) to values as Pulumi hands them to a program: strings,
    with structured values as JSON text (a mapping is accepted too); `secret_keys` are the keys Pulumi
    decrypted from ``secure:`` values. Secret values are never read here, only whether they are secret. In
    the program (``infra.entrypoint``)::

        import pulumi
        from pulumi.runtime import config as runtime_config
        values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
        secret_keys = set(runtime_config.get_config_secret_keys_env())
        secret_keys |= {key for key in values if pulumi.runtime.is_config_secret(key)}
        state = desired_state_from_pulumi_config(pulumi.get_stack(), values, secret_keys, STACKS_DIR)

    Under mocks, ``pulumi.runtime.set_all_config({...}, secret_keys=[...])`` fills the same two places.
    Raises `DesiredStateErrors` with every error, as `load_tree` does (always strict: this is a deployment).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    report = TreeReport()
    errors = report.errors
    root = stacks_dir.name or str(stacks_dir)
    display = f"Pulumi.{stack}.yaml (Pulumi config)"
    raw: dict[str, Any] = {}
    tenant_unreadable = False
    for key, value in config.items():
        if key in secret_keys:
            raw[key] = _PULUMI_SECRET  # the value itself is never kept
        elif key == TENANT_KEY and isinstance(value, str):
            try:
                raw[key] = json.loads(value)
            except json.JSONDecodeError:
                tenant_unreadable = True
                raw[key] = None
                errors.append(DesiredStateError(display, f"config.{TENANT_KEY}", "value is not JSON", _TENANT_ALLOWED))
        else:
            raw[key] = value
    known = sorted({*_stack_names(stacks_dir), stack})
    report.exceptions, _ = _load_exceptions(stacks_dir, root, stacks=known, checked=[stack], today=today, errors=errors)
    stack_config = _stack_config(stack, display, raw, None, errors, tenant_reported=tenant_unreadable)
    services = _load_services(stacks_dir, stacks_dir / stack, root, stack, errors)
    state = _finish(stack_config, services, report, strict=True)
    if errors or state is None:
        raise DesiredStateErrors(errors, files_checked=1 + len(services), waived=report.waived)
    return state


class _PulumiSecret:
    """Marks a config value Pulumi reported as secret (its value is never kept)."""


_PULUMI_SECRET = _PulumiSecret()


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _subjects(state: DesiredState) -> list[str]:
    """What an exception of the stack could name: each service, and each service in each of its environments."""
    subjects: list[str] = []
    for name, spec in state.services.items():
        subjects += [name, *(f"{name}/{access.environment}" for access in spec.dataverse)]
    return subjects


def _stack_of(error: DesiredStateError, root: str) -> str | None:
    match = re.match(rf"{re.escape(root)}/(?:Pulumi\.(?P<file>[^/]+)\.yaml|(?P<dir>[^/]+)/)", error.file)
    return (match.group("file") or match.group("dir")) if match else None


def _entry_kind(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _outside(path: Path, stacks_dir: Path) -> bool:
    try:
        inside_tree(path, stacks_dir)
    except OutsideTree:
        return True
    return False


def _discover(stacks_dir: Path, root: str, errors: list[DesiredStateError]) -> list[str]:
    stacks: list[str] = []
    entries = sorted(stacks_dir.iterdir())
    for path in entries:
        match = _STACK_FILE.fullmatch(path.name)
        mode = _entry_kind(path)
        if match and mode is not None and not stat.S_ISDIR(mode):
            name = match["stack"]
            if _STACK_NAME.fullmatch(name):
                stacks.append(name)  # any kind of entry: one that is not a regular file is refused when read
            else:
                errors.append(
                    DesiredStateError(
                        f"{root}/{path.name}",
                        DOCUMENT,
                        f"'{name[:40]}' is not a valid stack name",
                        "letters, digits, '-', '_' and '.'",
                    )
                )
        elif path.name.startswith("Pulumi.") and path.suffix == ".yml":
            errors.append(
                DesiredStateError(f"{root}/{path.name}", DOCUMENT, "stack file ends in .yml", "Pulumi.<stack>.yaml")
            )
    for path in entries:
        if path.name.startswith(".") or path.name in stacks or not path.is_dir():
            continue
        errors.append(
            DesiredStateError(
                f"{root}/{path.name}/",
                DOCUMENT,
                f"service directory without a stack settings file {root}/Pulumi.{path.name}.yaml",
                "stacks: " + (", ".join(stacks) or "none found"),
            )
        )
    return stacks


def _stack_names(stacks_dir: Path) -> list[str]:
    """The stacks a tree has a settings file for (names only; nothing is read)."""
    try:
        names = [m["stack"] for p in stacks_dir.iterdir() if (m := _STACK_FILE.fullmatch(p.name))]
    except OSError:
        return []
    return [name for name in names if _STACK_NAME.fullmatch(name)]


def _load_exceptions(
    stacks_dir: Path,
    root: str,
    *,
    stacks: Collection[str],
    checked: Collection[str],
    today: dt.date,
    errors: list[DesiredStateError],
) -> tuple[ExceptionSet, bool]:
    """The tree's exceptions; its problems, except those of entries for stacks this run does not check."""
    path = stacks_dir / EXCEPTIONS_FILE
    if _entry_kind(path) is None:
        return ExceptionSet(), False
    display = f"{root}/{EXCEPTIONS_FILE}"
    document = _read(path, stacks_dir, display, errors)
    if document is None:
        return ExceptionSet(), True
    exceptions, problems = parse_exceptions(
        document.data, document.line_of, today=today, rules=RULE_IDS, stacks=stacks or None
    )
    entries = document.data.get("exceptions")
    for problem in problems:
        index = problem.key_path[1] if len(problem.key_path) > 1 else None
        entry = entries[index] if isinstance(entries, list) and isinstance(index, int) else None
        entry_stack = entry.get("stack") if isinstance(entry, dict) else None
        if entry_stack in stacks and entry_stack not in checked:
            continue  # another stack's exception: its own run reports it
        errors.append(
            DesiredStateError(
                display, format_key_path(problem.key_path), problem.message, problem.allowed, problem.line
            )
        )
    return exceptions, True


def _read_stack(
    stacks_dir: Path, root: str, stack: str, errors: list[DesiredStateError]
) -> tuple[StackConfig | None, list[ServiceFile]]:
    display = f"{root}/Pulumi.{stack}.yaml"
    document = _read(stacks_dir / f"Pulumi.{stack}.yaml", stacks_dir, display, errors)
    stack_config: StackConfig | None = None
    if document is not None:
        raw = _stack_file_config(document, display, errors)
        stack_config = _stack_config(stack, display, raw, document, errors)
    services = _load_services(stacks_dir, stacks_dir / stack, root, stack, errors)
    return stack_config, services


def _finish(
    stack_config: StackConfig | None, services: list[ServiceFile], report: TreeReport, *, strict: bool
) -> DesiredState | None:
    """Cross-file and policy checks, exceptions applied; the state when this stack is clean."""
    if stack_config is None:
        return None
    errors = report.errors
    before = len(errors)
    for finding in check_stack(stack_config, services, strict=strict):
        waiver = (
            report.exceptions.waiver(finding.rule, stack_config.stack, finding.subject)
            if finding.waivable and finding.rule and finding.subject
            else None
        )
        if waiver is not None:
            line = f":{waiver.line}" if waiver.line else ""
            report.waived.append(replace(finding, waived_by=f"stacks/{EXCEPTIONS_FILE}{line}, {waiver.describe()}"))
        elif finding.severity == "warning":
            report.warnings.append(finding)
        else:
            expired = (
                report.exceptions.expired_for(finding.rule, stack_config.stack, finding.subject)
                if finding.rule and finding.subject
                else None
            )
            if expired is not None:
                message = f"{finding.message} (its exception expired on {expired.expires.isoformat()})"
                errors.append(replace(finding, message=message))
            else:
                errors.append(finding)
    tenant = stack_config.tenant
    if len(errors) != before or tenant is None or any(s.spec is None for s in services):
        return None
    specs = {s.spec.service: s.spec for s in sorted(services, key=lambda s: s.stem) if s.spec is not None}
    return DesiredState(
        stack=stack_config.stack,
        tenant=tenant,
        services={name: _with_owner(spec, tenant) for name, spec in specs.items()},
        secure_config_keys=frozenset(k for k, status in stack_config.secrets.items() if status == "secure"),
    )


def _with_owner(spec: ServiceSpec, tenant: TenantSettings) -> ServiceSpec:
    """The service with its effective workload identity owner: its own, else the stack's default."""
    identity = spec.workload_identity
    if "owner" in identity.model_fields_set or identity.owner == tenant.workload_identity_owner:
        return spec
    owned: WorkloadIdentitySpec = identity.model_copy(update={"owner": tenant.workload_identity_owner})
    return spec.model_copy(update={"workload_identity": owned})


def _check_tenants_apart(tenants: Mapping[str, StackConfig], report: TreeReport) -> None:
    """A Dataverse environment belongs to one tenant: the same URL in stacks of two tenants is refused."""
    seen: dict[str, tuple[str, str, str]] = {}  # origin -> (stack, environment, tenant id)
    for stack, config in tenants.items():
        parts = config.parts
        if parts.environments is None or parts.tenant_id is None:
            continue
        for name, environment in parts.environments.items():
            key = origin(environment.url)
            first = seen.setdefault(key, (stack, name, parts.tenant_id))
            if first[0] != stack and first[2] != parts.tenant_id:
                path: KeyPath = ("config", TENANT_KEY, "dataverse_environments", name, "url")
                report.errors.append(
                    DesiredStateError(
                        config.display,
                        format_key_path(path),
                        f"{environment.url} is also environment '{first[1]}' of stack '{first[0]}' (tenant"
                        f" {first[2]}): its application users would be bound to identities of two tenants",
                        "each Dataverse environment in the stack of its own tenant only",
                        config.document.line_of(path) if config.document is not None else None,
                        rule="application-user-identity-in-tenant",
                    )
                )
                report.states.pop(stack, None)


def _stack_file_config(document: YamlDocument, display: str, errors: list[DesiredStateError]) -> dict[str, Any] | None:
    """The ``config:`` mapping of a stack settings file, after checking Pulumi's own top-level keys."""
    for key in document.data:
        if key not in STACK_FILE_KEYS:
            errors.append(_unknown_key(display, document, (key,), STACK_FILE_KEYS))
    if "config" not in document.data:
        errors.append(
            DesiredStateError(
                display,
                "config",
                "required key is missing",
                f"a mapping of Pulumi config keys, with {TENANT_KEY}",
                document.line_of(()),
            )
        )
        return None
    config = document.data["config"]
    if not isinstance(config, dict):
        errors.append(
            DesiredStateError(
                display,
                "config",
                f"expected a mapping, got {kind_of(config)}",
                f"a mapping of Pulumi config keys, with {TENANT_KEY}",
                document.line_of(("config",)),
            )
        )
        return None
    return config


def _stack_config(
    stack: str,
    display: str,
    raw: Mapping[str, Any] | None,
    document: YamlDocument | None,
    errors: list[DesiredStateError],
    *,
    tenant_reported: bool = False,
) -> StackConfig | None:
    """Sort a stack's config keys: the tenant settings, the secrets, other namespaces; refuse the rest."""
    if raw is None:
        return None
    secrets: dict[str, SecretStatus] = {}
    provider_settings: dict[str, object] = {}
    for key, value in raw.items():
        path: KeyPath = ("config", key)
        namespace, sep, name = key.partition(":")
        if not sep or not namespace or not name:
            errors.append(
                _error(
                    display, document, path, "config key without a namespace", f"<namespace>:<key>, e.g. {TENANT_KEY}"
                )
            )
        elif key.startswith(SECRET_KEY_PREFIX) and len(key) > len(SECRET_KEY_PREFIX):
            secrets[key] = _secret_status(value)
        elif namespace == PROJECT and key != TENANT_KEY:
            known = (TENANT_KEY, f"{SECRET_KEY_PREFIX}<service>-<name>")
            close = difflib.get_close_matches(key, [TENANT_KEY], n=1, cutoff=0.6)
            message = f"unknown config key, did you mean '{close[0]}'?" if close else "unknown config key"
            errors.append(_error(display, document, path, message, ", ".join(known)))
        elif namespace != PROJECT and not isinstance(value, dict | _PulumiSecret):
            provider_settings[key] = value

    tenant: TenantSettings | None = None
    tenant_raw = raw.get(TENANT_KEY)
    if TENANT_KEY not in raw:
        errors.append(_error(display, document, ("config", TENANT_KEY), "required key is missing", _TENANT_ALLOWED))
    elif not tenant_reported:
        try:
            tenant = TenantSettings.model_validate(tenant_raw)
        except ValidationError as exc:
            errors.extend(
                translate(exc, TenantSettings, file=display, prefix=("config", TENANT_KEY), document=document)
            )
    view = tenant_view(tenant_raw if not tenant_reported else None, tenant)
    return StackConfig(stack, display, tenant, secrets, provider_settings, document, view)


def _secret_status(value: object) -> SecretStatus:
    if isinstance(value, _PulumiSecret):
        return "secure"
    if isinstance(value, dict):
        ciphertext = value.get("secure")
        if set(value) == {"secure"} and isinstance(ciphertext, str) and ciphertext:
            return "secure"
        return "malformed"
    return "plaintext"


def _load_services(
    stacks_dir: Path, service_dir: Path, root: str, stack: str, errors: list[DesiredStateError]
) -> list[ServiceFile]:
    mode = _entry_kind(service_dir)
    if mode is None:
        return []
    if _outside(service_dir, stacks_dir):
        errors.append(
            DesiredStateError(
                f"{root}/{stack}/",
                DOCUMENT,
                "symbolic link to a directory outside the stacks directory (not read)",
                "a directory inside the stacks directory",
            )
        )
        return []
    if not service_dir.is_dir():
        return []
    files: list[ServiceFile] = []
    for path in sorted(service_dir.iterdir()):
        display = f"{root}/{stack}/{path.name}"
        if path.name.startswith(".") or (path.is_dir() and not path.is_symlink()):
            continue
        if path.suffix == ".yml":
            errors.append(DesiredStateError(display, DOCUMENT, "service file ends in .yml", "<service>.yaml"))
            continue
        if path.suffix != ".yaml":
            continue
        document = _read(path, stacks_dir, display, errors)
        spec: ServiceSpec | None = None
        data: object = None
        if document is not None:
            data = _refuse_password_keys(document, display, errors)
            try:
                spec = ServiceSpec.model_validate(data)
            except ValidationError as exc:
                errors.extend(translate(exc, ServiceSpec, file=display, document=document))
        view = service_view(data, spec) if document is not None else service_view(None, None)
        files.append(ServiceFile(display, path.name[: -len(".yaml")], spec, document, view))
    return files


def _refuse_password_keys(document: YamlDocument, display: str, errors: list[DesiredStateError]) -> dict[str, Any]:
    """The file's data without keys asking for a password credential; each one refused by its rule."""
    data = dict(document.data)
    places: list[tuple[KeyPath, dict[str, Any]]] = [((), data)]
    registration = data.get("app_registration")
    if isinstance(registration, dict):
        data["app_registration"] = dict(registration)
        places.append((("app_registration",), data["app_registration"]))
    for prefix, mapping in places:
        for key in [k for k in mapping if k in (_APP_PASSWORD_KEYS if prefix else _PASSWORD_KEYS)]:
            del mapping[key]
            errors.append(
                _error(
                    display,
                    document,
                    (*prefix, key),
                    "a password credential (client secret) for the app registration: app registrations authenticate"
                    " with a certificate only, so there is no secret to store, leak or rotate",
                    _NO_PASSWORD_ALLOWED,
                    rule="no-password-credentials",
                )
            )
    return data


def _read(path: Path, stacks_dir: Path, display: str, errors: list[DesiredStateError]) -> YamlDocument | None:
    try:
        return read_tree_file(path, stacks_dir)
    except YamlRefused as exc:
        errors.append(DesiredStateError(display, format_key_path(exc.key_path), exc.message, exc.allowed, exc.line))
        return None


def _error(
    display: str,
    document: YamlDocument | None,
    path: KeyPath,
    message: str,
    allowed: str,
    *,
    rule: str | None = None,
) -> DesiredStateError:
    line = document.line_of(path) if document is not None else None
    return DesiredStateError(display, format_key_path(path), message, allowed, line, rule=rule)


def _unknown_key(display: str, document: YamlDocument, path: KeyPath, known: Collection[str]) -> DesiredStateError:
    close = difflib.get_close_matches(str(path[-1]), list(known), n=1, cutoff=0.6)
    message = f"unknown key, did you mean '{close[0]}'?" if close else "unknown key"
    return _error(display, document, path, message, ", ".join(known))
