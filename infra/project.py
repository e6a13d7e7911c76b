"""Where the project lives: the directory of Pulumi.yaml, its ``main`` and its ``stackConfigDir``.

The program reads the service files from the same ``stackConfigDir`` Pulumi reads the stack settings from, so a
stack's config and its services can never come from two different trees. The project directory is the one
Pulumi reports (``pulumi.get_root_directory()``); with a CLI too old to report it, the nearest Pulumi.yaml above
the working directory (Pulumi starts the program in ``main``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adp_identity.desired.yamlsafe import YamlRefused, read_yaml

PROJECT_FILE = "Pulumi.yaml"


class ProjectNotFound(Exception):
    """No readable Pulumi.yaml: one line saying where it was looked for and what it must hold."""


@dataclass(frozen=True)
class Project:
    root: Path  # the directory holding Pulumi.yaml
    name: str
    main: Path  # the program: a directory with __main__.py
    stack_config_dir: Path  # stacks/: Pulumi.<stack>.yaml and <stack>/<service>.yaml


def find_project(*candidates: str | Path | None) -> Project:
    """The first candidate directory holding Pulumi.yaml, else the nearest one above the working directory."""
    for candidate in candidates:
        if candidate and (Path(candidate) / PROJECT_FILE).is_file():
            return read_project(Path(candidate))
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return read_project(directory)
    raise ProjectNotFound(f"{PROJECT_FILE}: not found in {here} or above; allowed: run from the adp-identity project")


def read_project(root: Path) -> Project:
    """Read Pulumi.yaml strictly (the same YAML rules as every other file the project reviews)."""
    try:
        data = read_yaml(root / PROJECT_FILE).data
    except YamlRefused as exc:
        raise ProjectNotFound(f"{PROJECT_FILE}: {exc}; allowed: {exc.allowed}") from None
    values: dict[str, str] = {}
    for key, default in (("name", None), ("main", "."), ("stackConfigDir", ".")):
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            raise ProjectNotFound(f"{PROJECT_FILE}: {key}: missing or not a string; allowed: a non-empty string")
        values[key] = value
    return Project(
        root=root,
        name=values["name"],
        main=root / values["main"],
        stack_config_dir=root / values["stackConfigDir"],
    )
