"""The Pulumi program: load the desired state, refuse it whole if anything is wrong, then build the stack.

Nothing is registered until the whole tree has passed the desired-state loader's checks: a pull request with one
wrong line fails ``pulumi preview`` with every problem listed, one line each, and no resource touched. The error
is a ``pulumi.RunError``, which Pulumi reports without a traceback. Secret values are read only after that, with
``require_secret``, so they stay secrets from config to the Key Vault secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from adp_identity.desired import DesiredState, DesiredStateErrors, desired_state_from_pulumi_config, load_stack
from adp_identity.desired import naming as adp
from infra.imports import ImportFileError, stack_imports
from infra.program import build_stack
from infra.project import Project, ProjectNotFound, find_project


def main() -> None:
    """Run by ``__main__.py`` (Pulumi.yaml: the project root) for ``pulumi preview`` / ``pulumi up`` and under mocks."""
    try:
        project = find_project(pulumi.get_root_directory())
    except ProjectNotFound as exc:
        raise pulumi.RunError(str(exc)) from None
    desired = load_desired_state(project)
    try:
        imports = stack_imports(project.stack_config_dir, desired)
    except ImportFileError as exc:
        count = len(exc.lines)
        heading = f"adp-identity: the import files of stack '{desired.stack}' have {count} error" + (
            "s" if count != 1 else ""
        )
        raise pulumi.RunError(f"{heading}; nothing was changed:\n{exc}") from None
    config = pulumi.Config(project.name)
    secrets = {
        key: config.require_secret(key)
        for spec in desired.services.values()
        for key in (adp.secret_config_key(spec.service, name) for name in spec.key_vault_secrets)
    }
    for service, outputs in build_stack(desired, secrets, imports).items():
        pulumi.export(service, outputs)


def load_desired_state(project: Project) -> DesiredState:
    """The stack's desired state from Pulumi's config and the service files; ``RunError`` listing every error."""
    stack = pulumi.get_stack()
    service_dir = project.stack_config_dir / stack
    if not service_dir.is_dir():
        # No directory would read as "no services": the update would delete every identity of the stack.
        shown = service_dir.relative_to(project.root) if service_dir.is_relative_to(project.root) else service_dir
        raise pulumi.RunError(
            f"{shown}/: directory not found, so no service would be kept; allowed: the stack's service files "
            f"directory (keep it, with a .gitkeep, even when it has no services)"
        )
    try:
        if (project.stack_config_dir / f"Pulumi.{stack}.yaml").is_file():
            # The files first, through the very loader `adp-identity validate` uses: the same messages, with file
            # and line, as the pull request's validate step printed.
            load_stack(project.stack_config_dir, stack)
        # Then what Pulumi hands the program (the stack file plus any `pulumi config` given another way).
        values, secret_keys = _pulumi_config()
        return desired_state_from_pulumi_config(stack, values, secret_keys, project.stack_config_dir)
    except DesiredStateErrors as exc:
        count = len(exc)
        heading = f"adp-identity: the desired state of stack '{stack}' has {count} error" + ("s" if count != 1 else "")
        raise pulumi.RunError(f"{heading}; nothing was changed:\n{exc}") from None


def _pulumi_config() -> tuple[Mapping[str, Any], set[str]]:
    """Every config value Pulumi gave the program, and which of them are secrets (values are not logged)."""
    from pulumi.runtime import config as runtime_config

    values: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys |= {key for key in values if pulumi.runtime.is_config_secret(key)}
    return values, secret_keys
