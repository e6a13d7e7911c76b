"""``adp-identity emulator`` as a user runs it: a foreground process printing export lines, writing the JSON
description, serving until SIGINT / SIGTERM, then exiting 0 with one line; a bad seed is one line and exit 2."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from click.testing import CliRunner

from adp_identity.cli import cli
from adp_identity.commands.emulator import MSAL_NOTE, export_lines
from adp_identity_emulator import Emulator

pytestmark = pytest.mark.emulator


def _read_lines_until(process: subprocess.Popen[bytes], marker: str, deadline: float) -> list[str]:
    """stdout lines up to and including the first containing ``marker`` (fails instead of hanging).

    Reads the raw pipe: a buffered reader would hold lines back from select()."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    data = b""
    while time.monotonic() < deadline and marker.encode() not in data:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    lines = data.decode().splitlines()
    for index, line in enumerate(lines):
        if marker in line:
            return lines[: index + 1]
    raise AssertionError(f"no line with {marker!r} in time; got {lines}")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_runs_in_the_foreground_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    json_file = tmp_path / "emulator.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adp_identity.cli",
            "emulator",
            "--json-file",
            str(json_file),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        lines = _read_lines_until(process, "DATAVERSE_URL_DEFRA_PRD", time.monotonic() + 30)
        info = json.loads(json_file.read_text())
        assert [t["name"] for t in info["tenants"]] == ["DefraDev", "Defra"]
        assert lines[1 : 1 + len(MSAL_NOTE)] == MSAL_NOTE  # what scripts need, right under the header
        comments = [line for line in lines if line.startswith("# tenant ")]
        assert len(comments) == 2 and "adp-identity-pipeline" in comments[0]
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export AZURE"))
        assert exports["AZURE_AUTHORITY_HOST"] == info["authority_host"]
        assert exports["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
        deployers = [
            i for i in info["identities"] if "federated_token_file" in i and i["name"] == "adp-identity-pipeline"
        ]
        assert exports["AZURE_CLIENT_ID"] == deployers[0]["client_id"]  # the first tenant by default; others commented
        assert exports["AZURE_FEDERATED_TOKEN_FILE"] == deployers[0]["federated_token_file"]
        assert f"# export AZURE_CLIENT_ID={deployers[-1]['client_id']}" in lines
        assert f"export DATAVERSE_URL_DEFRADEV_DEV={info['environments'][0]['url']}  # tenant DefraDev" in lines
        secrets = [i["secret"] for i in info["identities"] if "secret" in i]
        assert secrets and not any(secret in "\n".join(lines) for secret in secrets)
        reply = requests.get(
            f"{info['authority_host']}/{info['tenants'][0]['id']}/v2.0/.well-known/openid-configuration",
            verify=info["ca_bundle"],
            timeout=10,
        )
        assert reply.status_code == 200
        process.send_signal(stop_signal)
        _, raw_stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stderr = raw_stderr.decode()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "emulator stopped"
    with pytest.raises(requests.ConnectionError):
        requests.get(info["authority_host"], verify=info["ca_bundle"], timeout=5)


def test_a_bad_seed_is_one_line_and_exit_2(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("tenants:\n  - name: A\n    colour: blue\n")
    result = CliRunner().invoke(cli, ["emulator", "--seed", str(seed)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {seed}: tenants[0].colour: unknown key; "
        "allowed: name, id, domain, applications, environments, key_vaults"
    ]


def test_the_printed_msal_settings_are_what_a_client_secret_credential_needs(emulator: Emulator) -> None:
    """The export lines say what a script needs beyond them; following them, the admin's secret gets a token, and
    without ``disable_instance_discovery`` MSAL first calls a fixed Microsoft host (refused in tests)."""
    lines = export_lines(emulator)
    assert [line for line in lines if line in MSAL_NOTE] == MSAL_NOTE
    assert "disable_instance_discovery=True" in " ".join(MSAL_NOTE)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export AZURE"))
    admin = emulator.identity("DefraDev", "adp-platform-admin", "secret")
    scope = f"{emulator.environment_url('defradev-dev')}/.default"

    def credential(**extra: Any) -> ClientSecretCredential:
        return ClientSecretCredential(
            exports["AZURE_TENANT_ID"],
            admin["client_id"],
            admin["secret"],
            authority=exports["AZURE_AUTHORITY_HOST"],
            connection_verify=emulator.ca_bundle,
            **extra,
        )

    token = credential(disable_instance_discovery=True).get_token(scope)
    assert jwt.decode(token.token, options={"verify_signature": False})["appid"] == admin["client_id"]
    with pytest.raises(ClientAuthenticationError):
        credential().get_token(scope)
    assert emulator.log.count(service="entra", path_contains="/token") == 1


def test_a_state_dir_others_can_reach_is_refused_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "shared"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    result = CliRunner().invoke(cli, ["emulator", "--state-dir", str(state)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: --state-dir {state}: mode 0755, not 0700; allowed: a directory you own with mode 0700, "
        "or a path that does not exist yet (created so)"
    ]
    assert list(state.iterdir()) == []  # nothing was written into it
