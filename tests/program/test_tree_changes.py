"""Editing the stacks tree: what a removed service file removes, and what an invalid tree is refused with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest

from adp_identity.desired import DesiredStateErrors, load_stack
from tests.program import mocks
from tests.program.mocks import KV_SECRET, SERVICE, ProgramRun, StackConfig, inputs_without_provider

STACKS = ("defra", "defradev")


def _project(tmp_path: Path) -> tuple[Path, Path]:
    root = mocks.copy_project(tmp_path)
    return root, mocks.read_project(root).stack_config_dir


def _comparable(run: ProgramRun) -> dict[str, object]:
    return {r.urn: (r.parent, inputs_without_provider(r)) for r in run.registrations}


@pytest.mark.parametrize("stack", STACKS)
def test_removing_a_service_file_removes_exactly_its_resources(tmp_path: Path, stack: str) -> None:
    root, stacks_dir = _project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), stack)
    before = mocks.run_program(root, stack, config)
    assert before.error is None

    removed = "ffc-pay-web"
    (stacks_dir / stack / f"{removed}.yaml").unlink()
    # as `pulumi config rm` (the loader refuses a secret no service declares any more): out of the stack file too
    key = f"adp-identity:secret-{removed}-session-cookie-password"
    stack_file = stacks_dir / f"Pulumi.{stack}.yaml"
    text, count = re.subn(rf"\n  {re.escape(key)}:\n    secure: [^\n]*", "", stack_file.read_text(encoding="utf-8"))
    assert count == 1
    stack_file.write_text(text, encoding="utf-8")
    after = mocks.run_program(root, stack, config.without(key))
    assert after.error is None

    service = before.named(SERVICE, removed)
    subtree = {service.urn} | {r.urn for r in before.descendants(service)}
    assert len(subtree) > 5  # identity, credentials, secret, reader, Dataverse users...
    assert before.urns() - after.urns() == subtree
    assert after.urns() <= before.urns()
    # everything else is registered exactly as before
    kept = _comparable(before)
    assert {urn: kept[urn] for urn in after.urns()} == _comparable(after)


def _broken_tree(stacks_dir: Path, stack: str) -> None:
    path = stacks_dir / stack / "ffc-pay-web.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("security_roles:", "security_role:", 1)  # a typo in a key
    text = text.replace("team: ffc-payments", "team: FFC Payments")  # not lower-kebab
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("stack", STACKS)
def test_an_invalid_tree_is_refused_whole_before_anything_is_registered(tmp_path: Path, stack: str) -> None:
    root, stacks_dir = _project(tmp_path)
    _broken_tree(stacks_dir, stack)
    with pytest.raises(DesiredStateErrors) as loaded:
        load_stack(stacks_dir, stack)
    loader_lines = [str(error) for error in loaded.value.errors]
    assert len(loader_lines) >= 2

    run = mocks.run_program(root, stack)

    assert run.registrations == []
    assert run.stack_outputs == {}
    assert isinstance(run.error, pulumi.RunError)
    message = str(run.error)
    lines = message.splitlines()
    assert f"stack '{stack}'" in lines[0] and "nothing was changed" in lines[0]
    # the loader's one-line messages, every one of them, and nothing else
    assert lines[1:] == loader_lines
    assert all(line.startswith(f"stacks/{stack}/ffc-pay-web.yaml:") for line in lines[1:])
    assert "Traceback" not in message


@pytest.mark.parametrize("stack", STACKS)
def test_a_missing_secret_value_is_refused(tmp_path: Path, stack: str) -> None:
    root, _ = _project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), stack)
    key = "adp-identity:secret-ffc-pay-batch-sftp-password"
    run = mocks.run_program(root, stack, config.without(key))
    assert run.registrations == []
    assert isinstance(run.error, pulumi.RunError)
    assert f"no secure config value '{key}'" in str(run.error)


def test_a_secret_value_in_plain_text_is_refused_without_showing_it(tmp_path: Path) -> None:
    root, _ = _project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), "defradev")
    key = "adp-identity:secret-ffc-pay-batch-sftp-password"
    plaintext = StackConfig(config.values, [k for k in config.secret_keys if k != key], config.secret_values)
    run = mocks.run_program(root, "defradev", plaintext)
    assert run.registrations == []
    assert isinstance(run.error, pulumi.RunError)
    assert key in str(run.error) and "plaintext" in str(run.error)
    assert config.secret_values[key] not in str(run.error)


def test_the_unchanged_tree_registers_the_same_resources_every_run(tmp_path: Path) -> None:
    root, _ = _project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), "defradev")
    first, second = mocks.run_program(root, "defradev", config), mocks.run_program(root, "defradev", config)
    assert first.error is None and second.error is None
    assert _comparable(first) == _comparable(second)
    assert len(first.of_type(KV_SECRET)) == 3


def test_config_handed_over_in_the_environment_gives_the_same_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The language host passes config as PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS; the program reads both ways."""
    root, _ = _project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), "defra")
    from_settings = mocks.run_program(root, "defra", config)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config.values))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(config.secret_keys))
    from_environment = mocks.run_program(root, "defra", StackConfig({}, [], {}))
    assert from_settings.error is None and from_environment.error is None
    assert _comparable(from_environment) == _comparable(from_settings)
    secret = from_environment.named(KV_SECRET, "ffc-pay-batch-secrets-sftp-password")
    assert mocks.secret_value(secret.inputs["properties"]) == {
        "value": config.secret_values["adp-identity:secret-ffc-pay-batch-sftp-password"]
    }
