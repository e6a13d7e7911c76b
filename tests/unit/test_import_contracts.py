"""The package boundaries of `.importlinter` hold today, and each kind of contract fails when it is broken.

A contract that cannot fail proves nothing, so the second test copies the project's packages into a scratch tree,
adds one forbidden import to it, and runs `lint-imports` there with the same configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("adp_identity", "adp_identity_emulator", "adp_identity_sandbox", "adp_yaml", "providers", "infra", "bench")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_the_contracts_hold_today() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("adp_identity_emulator/log.py", "import providers.dataverse.client", "The emulator imports nothing"),
        ("providers/dataverse/reconcile.py", "import pulumi", "No Pulumi import below the provider modules"),
        ("infra/naming.py", "import adp_identity_emulator", "The Pulumi program never imports the emulator"),
        ("adp_identity/commands/plan.py", "import providers.dataverse._transport", "The CLI reaches the Dataverse"),
        ("adp_yaml/__init__.py", "import adp_identity.desired", "The strict YAML reader imports nothing"),
        ("providers/_origin.py", "import adp_identity_sandbox", "The product (CLI, providers, program) never"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = _copy_tree(tmp_path)
    target = root / module
    target.write_text(target.read_text() + f"\n{line}  # added by the test\n")
    result = _lint(root)
    assert result.returncode != 0
    assert " 0 broken" not in result.stdout, result.stdout
    flat = " ".join(result.stdout.split())
    assert contract in flat, result.stdout
