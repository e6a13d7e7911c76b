"""``adp-identity graph --live`` against the emulator: read-only, tenant-checked, unmanaged users drawn apart.

The emulator's default seed holds, in ``defradev-dev``, a hand-made application user for ffc-pay-web (named as
ADP names its identity, holding System Administrator, disabled) and the platform's own users (the pipeline and an
administrator) that no service declares. The stack's ``dev`` and ``tst`` point at the emulator's environments
with ``--environment-url``; the stack's tenant is the emulator's DefraDev tenant (as in a sandbox tree), except in
the test that proves a credential of another tenant is refused before any Dataverse request.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adp_identity.cli import cli
from adp_identity_emulator import Emulator

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]
STACK_TENANT = "6fb17b64-ece9-4b43-8acf-99e8d37b19ad"  # stacks/Pulumi.defradev.yaml
ENVIRONMENTS = {"dev": "defradev-dev", "tst": "defradev-tst"}


def _stacks(tmp_path: Path, tenant_id: str) -> Path:
    stacks = tmp_path / "stacks"
    shutil.copytree(REPO / "stacks", stacks)
    settings = stacks / "Pulumi.defradev.yaml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(STACK_TENANT, tenant_id), encoding="utf-8")
    return stacks


def _graph(emulator: Emulator, stacks: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Result:
    for name, value in emulator.credential_env("DefraDev").items():  # the read-only pipeline identity
        monkeypatch.setenv(name, value)
    urls = [
        arg
        for short, env in ENVIRONMENTS.items()
        for arg in ("--environment-url", f"{short}={emulator.environment_url(env)}")
    ]
    emulator.log.clear()
    return CliRunner().invoke(
        cli, ["graph", "--stacks", str(stacks), "--stack", "defradev", "--live", "--max-retry-wait", "0", *urls, *extra]
    )


def _dataverse_requests(emulator: Emulator) -> list[tuple[str, str]]:
    return [(entry.method, entry.path) for entry in emulator.log.entries if entry.service == "dataverse"]


def test_the_live_graph_reads_only_and_draws_what_the_environments_hold(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = _stacks(tmp_path, emulator.tenant("DefraDev").id)
    result = _graph(emulator, stacks, monkeypatch)
    assert result.exit_code == 0, result.output
    requests = _dataverse_requests(emulator)
    assert requests and {method for method, _ in requests} == {"GET"}
    # per environment: one listing and the catalog (the business unit is named from it: ADR 8); nothing else
    assert len(requests) == 3 * len(ENVIRONMENTS)
    text = result.stdout
    assert text.startswith("flowchart LR\n  %% adp-identity: stack defradev, as the environments hold it\n")
    assert '  subgraph unmanaged["Unmanaged application users"]' in text
    assert '["adp-platform-admin<br/>application user · ' in text
    # the hand-made ffc-pay-web user is the service's (ADP's naming), disabled, holding a privileged role
    (line,) = [line for line in text.splitlines() if line.startswith("  mi3 ")]
    target = line.rsplit(" ", 1)[-1]
    assert line.startswith("  mi3 -.->|") and "disabled" in line
    (privileged,) = [line for line in text.splitlines() if line.startswith("  class ") and line.endswith(" privileged")]
    assert target in privileged.split()[1].split(",")
    assert f'    {target}["⚠ System Administrator<br/>security role · privileged"]' in text


def test_a_credential_of_another_tenant_is_refused_before_any_request(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = _stacks(tmp_path, STACK_TENANT)  # the real stack's tenant, not the emulator's
    result = _graph(emulator, stacks, monkeypatch, "--format", "svg", "-o", str(tmp_path / "graph.svg"))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["graph", "graph"]
    actual = emulator.tenant("DefraDev").id
    for line, short in zip(lines, ENVIRONMENTS, strict=True):
        assert line.startswith(f"graph: environment {short}: Dataverse environment {short} (")
        assert f"belongs to tenant {STACK_TENANT}, but the credential signs in to tenant {actual}" in line
    assert _dataverse_requests(emulator) == []
    assert not (tmp_path / "graph.svg").exists()  # no partial drawing
