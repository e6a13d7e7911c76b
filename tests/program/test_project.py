"""Pulumi.yaml: what the CLI needs to run the program unchanged, and how the program finds its project."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml

from infra.project import ProjectNotFound, find_project, read_project
from tests.program import mocks


def test_pulumi_yaml_runs_infra_with_uv_and_reads_stacks() -> None:
    data = yaml.safe_load((mocks.REPO / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert data["name"] == "adp-identity"
    assert data["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": ".venv"}}
    # no `main`: the program directory is the project root, where the CLI also starts the dynamic providers and
    # resolves `virtualenv` (pulumi/pulumi#7061; tests/unit/test_pulumi_toolchain.py starts them as it does)
    assert "main" not in data
    assert data["stackConfigDir"] == "stacks"
    assert data["description"]
    assert (mocks.REPO / "__main__.py").is_file()
    assert sorted(p.name for p in (mocks.REPO / "stacks").glob("Pulumi.*.yaml")) == [
        "Pulumi.defra.yaml",
        "Pulumi.defradev.yaml",
    ]


def test_the_project_is_found_from_a_directory_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(mocks.REPO / "infra")  # a working directory below the project
    project = find_project(None, "root_directory")  # an old CLI reports no usable root
    assert project.root == mocks.REPO
    assert project.stack_config_dir == mocks.REPO / "stacks"
    assert project.main == mocks.REPO


def test_a_broken_pulumi_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: [adp-identity\n", encoding="utf-8")
    with pytest.raises(ProjectNotFound) as refused:
        read_project(tmp_path)
    assert str(refused.value).startswith("Pulumi.yaml: ")
    assert "\n" not in str(refused.value)


def test_a_stack_without_its_service_directory_is_refused_not_emptied(tmp_path: Path) -> None:
    """A missing directory must not read as "no services": that update would delete every identity."""
    root = mocks.copy_project(tmp_path)
    config = mocks.stack_config(mocks.read_project(root), "defradev")
    for path in (root / "stacks" / "defradev").iterdir():
        path.unlink()
    (root / "stacks" / "defradev").rmdir()
    run = mocks.run_program(root, "defradev", config)
    assert run.registrations == []
    assert isinstance(run.error, pulumi.RunError)
    assert str(run.error).startswith("stacks/defradev/: directory not found")
    assert "\n" not in str(run.error)
