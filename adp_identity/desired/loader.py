"""Load the ``stacks/`` tree (or a running Pulumi program's config) into checked `DesiredState`s.

Layout (Pulumi.yaml has ``stackConfigDir: stacks``)::

    stacks/Pulumi.<stack>.yaml      Pulumi stack config: `adp-identity:tenant` (TenantSettings) and the
                                    secure values `adp-identity:secret-<service>-<name>`
    stacks/<stack>/<service>.yaml   one ServiceSpec per service

`load_tree` reads everything, keeps going after an error and raises one `DesiredStateErrors` with every
error of the run; it returns only when the whole selection is clean. No Pulumi import here: the Pulumi program
hands its config to `desired_state_from_pulumi_config` and gets the very same `DesiredState` and checks.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping
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
from adp_identity.desired.schema import DesiredState, ServiceSpec, TenantSettings
from adp_identity.desired.translate import translate
from adp_identity.desired.yamlsafe import YamlDocument, YamlRefused, read_yaml

# Top-level keys Pulumi itself writes in a stack settings file.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_STACK_FILE = re.compile(r"Pulumi\.(?P<stack>.+)\.yaml")
_TENANT_ALLOWED = "the tenant settings mapping (schemas/tenant-settings.schema.json)"
_PROJECT_KEYS_ALLOWED = f"{TENANT_KEY}, {SECRET_KEY_PREFIX}<service>-<name>"


def load_tree(stacks_dir: Path, stack: str | None = None) -> dict[str, DesiredState]:
    """Every stack under `stacks_dir` (or only `stack`), checked; raises `DesiredStateErrors` with all errors."""
    errors: list[DesiredStateError] = []
    root = stacks_dir.name or str(stacks_dir)
    if not stacks_dir.is_dir():
        raise DesiredStateErrors(
            [DesiredStateError(root, DOCUMENT, "directory not found", "a stacks directory (Pulumi stackConfigDir)")]
        )
    stacks = _discover(stacks_dir, root, errors)
    if stack is not None:
        if stack not in stacks:
            errors.append(
                DesiredStateError(
                    f"{root}/Pulumi.{stack}.yaml",
                    DOCUMENT,
                    f"unknown stack '{stack}' (no such stack settings file)",
                    "stacks: " + (", ".join(stacks) or "none found"),
                )
            )
            raise DesiredStateErrors(errors)
        stacks = [stack]
    states: dict[str, DesiredState] = {}
    files_checked = 0
    for name in stacks:
        state, checked = _load_stack_files(stacks_dir, root, name, errors)
        files_checked += checked
        if state is not None:
            states[name] = state
    if errors:
        raise DesiredStateErrors(errors, files_checked=files_checked)
    return states


def load_stack(stacks_dir: Path, stack: str) -> DesiredState:
    """One stack, checked; raises `DesiredStateErrors` (an unknown stack is one of them)."""
    return load_tree(stacks_dir, stack)[stack]


def desired_state_from_pulumi_config(
    stack: str, config: Mapping[str, Any], secret_keys: Collection[str], stacks_dir: Path
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
    Raises `DesiredStateErrors` with every error, as `load_tree` does.
    """
    errors: list[DesiredStateError] = []
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
    stack_config = _stack_config(stack, display, raw, None, errors, tenant_reported=tenant_unreadable)
    services = _load_services(stacks_dir / stack, root, stack, errors)
    state = _finish(stack_config, services, errors)
    if errors or state is None:
        raise DesiredStateErrors(errors, files_checked=1 + len(services))
    return state


class _PulumiSecret:
    """Marks a config value Pulumi reported as secret (its value is never kept)."""


_PULUMI_SECRET = _PulumiSecret()


def _discover(stacks_dir: Path, root: str, errors: list[DesiredStateError]) -> list[str]:
    stacks: list[str] = []
    for path in sorted(stacks_dir.iterdir()):
        match = _STACK_FILE.fullmatch(path.name)
        if match and path.is_file():
            name = match["stack"]
            if _STACK_NAME.fullmatch(name):
                stacks.append(name)
            else:
                errors.append(
                    DesiredStateError(
                        f"{root}/{path.name}",
                        DOCUMENT,
                        f"'{name}' is not a valid stack name",
                        "letters, digits, '-', '_' and '.'",
                    )
                )
        elif path.name.startswith("Pulumi.") and path.suffix == ".yml":
            errors.append(
                DesiredStateError(f"{root}/{path.name}", DOCUMENT, "stack file ends in .yml", "Pulumi.<stack>.yaml")
            )
    for path in sorted(stacks_dir.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and path.name not in stacks:
            errors.append(
                DesiredStateError(
                    f"{root}/{path.name}/",
                    DOCUMENT,
                    f"service directory without a stack settings file {root}/Pulumi.{path.name}.yaml",
                    "stacks: " + (", ".join(stacks) or "none found"),
                )
            )
    return stacks


def _load_stack_files(
    stacks_dir: Path, root: str, stack: str, errors: list[DesiredStateError]
) -> tuple[DesiredState | None, int]:
    display = f"{root}/Pulumi.{stack}.yaml"
    document = _read(stacks_dir / f"Pulumi.{stack}.yaml", display, errors)
    stack_config: StackConfig | None = None
    if document is not None:
        raw = _stack_file_config(document, display, errors)
        stack_config = _stack_config(stack, display, raw, document, errors)
    services = _load_services(stacks_dir / stack, root, stack, errors)
    return _finish(stack_config, services, errors), 1 + len(services)


def _finish(
    stack_config: StackConfig | None, services: list[ServiceFile], errors: list[DesiredStateError]
) -> DesiredState | None:
    before = len(errors)
    if stack_config is None:
        return None
    errors.extend(check_stack(stack_config, services))
    if len(errors) != before or stack_config.tenant is None or any(s.spec is None for s in services):
        return None
    return DesiredState(
        stack=stack_config.stack,
        tenant=stack_config.tenant,
        services={s.spec.service: s.spec for s in sorted(services, key=lambda s: s.stem) if s.spec is not None},
    )


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
    if TENANT_KEY not in raw:
        errors.append(_error(display, document, ("config", TENANT_KEY), "required key is missing", _TENANT_ALLOWED))
    elif not tenant_reported:
        try:
            tenant = TenantSettings.model_validate(raw[TENANT_KEY])
        except ValidationError as exc:
            errors.extend(
                translate(exc, TenantSettings, file=display, prefix=("config", TENANT_KEY), document=document)
            )
    return StackConfig(stack, display, tenant, secrets, provider_settings, document)


def _secret_status(value: object) -> SecretStatus:
    if isinstance(value, _PulumiSecret):
        return "secure"
    if isinstance(value, dict):
        ciphertext = value.get("secure")
        if set(value) == {"secure"} and isinstance(ciphertext, str) and ciphertext:
            return "secure"
        return "malformed"
    return "plaintext"


def _load_services(service_dir: Path, root: str, stack: str, errors: list[DesiredStateError]) -> list[ServiceFile]:
    if not service_dir.is_dir():
        return []
    files: list[ServiceFile] = []
    for path in sorted(service_dir.iterdir()):
        display = f"{root}/{stack}/{path.name}"
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix == ".yml":
            errors.append(DesiredStateError(display, DOCUMENT, "service file ends in .yml", "<service>.yaml"))
            continue
        if path.suffix != ".yaml":
            continue
        document = _read(path, display, errors)
        spec: ServiceSpec | None = None
        if document is not None:
            try:
                spec = ServiceSpec.model_validate(document.data)
            except ValidationError as exc:
                errors.extend(translate(exc, ServiceSpec, file=display, document=document))
        files.append(ServiceFile(display, path.name[: -len(".yaml")], spec, document))
    return files


def _read(path: Path, display: str, errors: list[DesiredStateError]) -> YamlDocument | None:
    try:
        return read_yaml(path)
    except YamlRefused as exc:
        errors.append(DesiredStateError(display, format_key_path(exc.key_path), exc.message, exc.allowed, exc.line))
        return None


def _error(display: str, document: YamlDocument | None, path: KeyPath, message: str, allowed: str) -> DesiredStateError:
    line = document.line_of(path) if document is not None else None
    return DesiredStateError(display, format_key_path(path), message, allowed, line)


def _unknown_key(display: str, document: YamlDocument, path: KeyPath, known: Collection[str]) -> DesiredStateError:
    close = difflib.get_close_matches(str(path[-1]), list(known), n=1, cutoff=0.6)
    message = f"unknown key, did you mean '{close[0]}'?" if close else "unknown key"
    return _error(display, document, path, message, ", ".join(known))
