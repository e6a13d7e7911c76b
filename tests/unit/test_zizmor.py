"""The GitHub workflows pass their own security linter: `zizmor --offline` finds nothing at medium severity or above.

zizmor (locked in uv.lock and requirements.lock, installed in .venv by `make install`) audits every workflow and the
composite setup action: unpinned actions, template injection, credential persistence, excessive permissions,
dangerous triggers, cache poisoning, environment-file writes and the rest (https://docs.zizmor.sh/audits/). It runs
offline (no GitHub API), with no configuration file, so nothing but the files themselves decides the result. The one
audit silenced in-file is `github-env` on the setup action's two writes of runner-owned paths, each with its reason
beside it; a test below keeps it that way, and another proves the audit still fails a workflow that breaks a rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ZIZMOR = Path(sys.executable).parent / "zizmor"
needs_zizmor = pytest.mark.skipif(not ZIZMOR.exists(), reason="make install puts the locked zizmor in .venv/bin")


def zizmor(target: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run(
        [str(ZIZMOR), "--offline", "--no-config", "--format", "json", "--min-severity", "medium", *extra, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=target.parent,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return result.returncode, findings


def summary(findings: list[dict[str, Any]]) -> list[str]:
    lines = []
    for finding in findings:
        where = finding.get("locations", [{}])[0].get("symbolic", {}).get("key", {})
        lines.append(f"{finding.get('ident')}: {finding.get('desc')} ({where})")
    return lines


@needs_zizmor
def test_zizmor_finds_nothing_at_medium_severity_or_above() -> None:
    code, findings = zizmor(REPO / ".github")
    assert findings == [], "\n".join(summary(findings))
    assert code == 0


@needs_zizmor
def test_zizmor_still_fails_a_workflow_that_breaks_a_rule(tmp_path: Path) -> None:
    """The check above can fail: an action pinned by tag again, and a checkout that keeps its token, are reported."""
    copy = tmp_path / ".github"
    shutil.copytree(REPO / ".github", copy)
    preview = copy / "workflows" / "preview.yml"
    text = preview.read_text(encoding="utf-8")
    text = re.sub(r"pulumi/actions@[0-9a-f]{40} # v[0-9.]+", "pulumi/actions@v7", text, count=1)
    text = text.replace("        with:\n          persist-credentials: false\n", "", 1)  # the default keeps the token
    preview.write_text(text, encoding="utf-8")
    code, findings = zizmor(copy)
    idents = {f.get("ident") for f in findings}
    assert "unpinned-uses" in idents
    assert "artipacked" in idents
    assert code != 0


def test_the_only_silenced_audit_is_github_env_on_the_setup_actions_own_paths() -> None:
    ignores = []
    for path in sorted((REPO / ".github").rglob("*.y*ml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if "zizmor:" in line:
                ignores.append((path.relative_to(REPO).as_posix(), line.strip()))
                # the reason sits on the comment lines just above the ignore
                reason = " ".join(prev.strip() for prev in lines[max(0, number - 2) : number])
                assert reason.startswith("#") and "never event data" in reason, f"{path.name}:{number + 1}"
    assert ignores == [
        (".github/actions/setup/action.yml", "run: | # zizmor: ignore[github-env]"),
        (".github/actions/setup/action.yml", "run: | # zizmor: ignore[github-env]"),
    ]
    assert not (REPO / ".github" / "zizmor.yml").exists() and not (REPO / "zizmor.yml").exists()
