"""Secrets and tokens never leak (issue 10 §3), proven by scanning everything that comes out.

Each test drives real code paths against the emulator, successes and failures (throttled, refused, lost
connection, bad input), and scans every output it can reach: stdout, stderr, provider outputs, the serialized
provider as it is stored in state, error messages, Markdown/JSON reports and the emulator's request log. The
scanner (tests/security/leaks.py) knows every secret the emulator generated for the run, so a leak is found in
any shape that keeps the value whole, and flags JWT-shaped strings (tokens, assertions) and PEM private keys.

Run with ``-s`` to see the counts: each test prints ``leak scans: N, findings: 0``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adp_identity.cli import cli
from adp_identity_emulator import Emulator
from adp_identity_sandbox.provider_host import ProviderCallError, ProviderHost
from providers.dataverse.provider import TYPE_TOKEN, ApplicationUserProvider
from tests.security.leaks import LeakScanner

pytestmark = [pytest.mark.emulator, pytest.mark.grpc]

TENANT = "DefraDev"
ENVIRONMENT = "defradev-dev"


def _known_secrets(emulator: Emulator) -> list[str]:
    values: list[str] = []
    for identity in emulator.info["identities"]:
        values += [identity.get("secret", "")]
        for key in ("federated_token_file", "certificate_path"):
            path = identity.get(key)
            if path and Path(path).is_file():
                text = Path(path).read_text()
                values.append(text.strip())
                values += [line for line in text.splitlines() if len(line) > 40 and "CERTIFICATE" not in line]
    state = emulator.state_dir
    assert state is not None
    for key_file in state.glob("*key*.pem"):
        values += [line for line in key_file.read_text().splitlines() if len(line) > 40]
    return [v for v in values if v]


@pytest.fixture
def scanner(emulator: Emulator) -> Iterator[LeakScanner]:
    found = LeakScanner()
    found.know(_known_secrets(emulator))
    assert len(found.secrets) >= 10  # the scan knows real secrets, so a clean result means something
    yield found
    for entry in emulator.log.entries:
        found.scan(f"emulator log #{entry.seq}", repr(entry))
    if emulator.state_dir is not None and (emulator.state_dir / "requests.log").exists():
        found.scan("emulator request log file", (emulator.state_dir / "requests.log").read_text())
    print(f"\nleak scans: {found.scans}, findings: {len(found.findings)}")
    assert not found.findings, "\n".join(map(str, found.findings))


def _scan_outputs(scanner: LeakScanner, where: str, value: Any) -> None:
    text = json.dumps(value, default=str, sort_keys=True)
    scanner.scan(where, text)
    provider = value.get("__provider") if isinstance(value, dict) else None
    if isinstance(provider, str):  # the serialized provider, exactly as Pulumi keeps it in state
        scanner.scan(f"{where}: serialized provider", base64.b64decode(provider))


def _client_id(emulator: Emulator, application: str) -> str:
    return next(str(a.client_id) for a in emulator.tenant(TENANT).applications if a.name == application)


def test_provider_operations_successes_and_failures_leak_nothing(emulator: Emulator, scanner: LeakScanner) -> None:
    url = emulator.environment_url(ENVIRONMENT)
    app = _client_id(emulator, "sndadpinfmi1401-ffc-pay-batch")
    declared = {
        "environment_url": url,
        "application_id": app,
        "security_roles": ["Basic User", "FFC Payments Reader"],
        "business_unit": "ffc-payments",
        "tenant_id": str(emulator.tenant(TENANT).id),
    }
    env = emulator.credential_env(TENANT)
    with ProviderHost(ApplicationUserProvider(max_retry_wait=1.0), env=env, type_token=TYPE_TOKEN) as host:
        host.configure({})
        bad = host.check({**declared, "application_id": "not-a-guid", "security_roles": "Basic User"})
        scanner.scan("check failures", json.dumps([f.__dict__ if hasattr(f, "__dict__") else f for f in bad.failures]))
        checked = host.check(declared)
        _scan_outputs(scanner, "check", checked.inputs)
        id_, outs = host.create(checked.inputs, name="batch")
        _scan_outputs(scanner, "create", outs)
        _, live, inputs = host.read(id_, outs, checked.inputs, name="batch")
        _scan_outputs(scanner, "read", live)
        _scan_outputs(scanner, "read inputs", inputs)
        changed = {**checked.inputs, "security_roles": ["Basic User"]}
        _scan_outputs(scanner, "update", host.update(id_, outs, changed, name="batch"))

        # throttled until the retry budget runs out
        emulator.faults.script("throttle", count=50, retry_after=0)
        with pytest.raises(ProviderCallError) as throttled:
            host.update(id_, outs, {**checked.inputs, "security_roles": ["Delegate"]}, name="batch")
        scanner.scan("throttled error", str(throttled.value))
        emulator.faults.clear()

        # a response lost after the commit, then a dropped connection
        emulator.faults.script("lost_response", count=1, method="POST")
        try:
            host.update(id_, outs, {**checked.inputs, "security_roles": ["Service Reader"]}, name="batch")
        except ProviderCallError as exc:
            scanner.scan("lost response error", str(exc))
        emulator.faults.script("drop", count=50)  # a delete reads the user on its own first: that read is dropped
        with pytest.raises(ProviderCallError) as dropped:
            host.delete(id_, outs, name="batch")
        scanner.scan("dropped connection error", str(dropped.value))
        emulator.faults.clear()

        # refused: an application the environment does not know as a user
        no_principal = {**checked.inputs, "application_id": _client_id(emulator, "ADP-FFC-PayReports-snd1")}
        with pytest.raises(ProviderCallError) as refused:
            host.create(no_principal, name="no-principal")
        scanner.scan("refused error", str(refused.value))
        host.delete(id_, outs, name="batch")
        scanner.scan("provider host stderr", host.stderr)

    # the other tenant's credential: refused before any request, and still nothing leaks
    other = emulator.credential_env("Defra")
    with ProviderHost(ApplicationUserProvider(max_retry_wait=1.0), env=other, type_token=TYPE_TOKEN) as host:
        host.configure({})
        with pytest.raises(ProviderCallError) as wrong_tenant:
            host.create(checked.inputs, name="wrong-tenant")
        scanner.scan("wrong tenant error", str(wrong_tenant.value))
        scanner.scan("provider host stderr (other tenant)", host.stderr)


def _identities(emulator: Emulator) -> dict[str, Any]:
    ids = {a.name: str(a.client_id) for a in emulator.tenant(TENANT).applications}
    return {
        "ffc-pay-web": {"value": {"client_id": ids["sndadpinfmi1401-ffc-pay-web"]}},
        "ahwr-claims": {"value": {"client_id": ids["sndadpinfmi1401-ahwr-claims"]}},
        "ffc-pay-batch": {
            "value": {
                "client_id": ids["sndadpinfmi1401-ffc-pay-batch"],
                "app_registration_client_id": ids["ADP-FFC-PayBatch"],
            }
        },
    }


def test_commands_leak_nothing(
    emulator: Emulator, scanner: LeakScanner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in emulator.credential_env(TENANT).items():
        monkeypatch.setenv(key, value)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(_identities(emulator)))
    urls = [
        arg
        for short, name in (("dev", "defradev-dev"), ("tst", "defradev-tst"))
        for arg in ("--environment-url", f"{short}={emulator.environment_url(name)}")
    ]
    stacks = str(Path(__file__).resolve().parents[2] / "stacks")
    base = ["--stacks", stacks, "--stack", "defradev", "--identities", str(outputs), *urls, "--max-retry-wait", "0"]
    runs = [
        ["validate", "--stacks", stacks],
        ["plan", *base],
        ["audit", *base],
        ["audit", *base, "--format", "json"],
        ["plan", *base, "--format", "markdown"],
        ["audit", *base, "--format", "markdown"],
        ["export", "--stacks", stacks, "--stack", "defradev", *urls, "--max-retry-wait", "0"],
        ["graph", "--stacks", stacks, "--stack", "defradev", "--format", "svg"],
        ["graph", "--stacks", stacks, "--stack", "defradev", "--live", "--identities", str(outputs), *urls],
        ["plan", *base[:-2], "--max-retry-wait", "0", "--identities", "/dev/null"],  # bad input
        ["plan", *base[:-2], "--max-retry-wait", "0", "--identities", str(outputs) + ".missing"],  # bad input
    ]
    emulator.faults.script("throttle", count=3, retry_after=0)  # a throttled first read
    for args in runs:
        result = CliRunner().invoke(cli, args, catch_exceptions=True)
        scanner.scan(f"{args[0]} output (exit {result.exit_code})", result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            scanner.scan(f"{args[0]} exception", repr(result.exception))
    emulator.faults.clear()


def test_key_vault_provider_operations_leak_nothing(emulator: Emulator, scanner: LeakScanner) -> None:
    from providers.keyvault.provider import TYPE_TOKEN as KV_TYPE
    from providers.keyvault.provider import KeyVaultCertificateProvider

    vault = emulator.info["key_vaults"][0]
    tenant = (
        next(t for t in emulator.info["tenants"] if t["name"] == vault["tenant"])
        if "tenants" in emulator.info
        else None
    )
    env = emulator.credential_env(vault["tenant"])
    declared = {
        "vault_url": vault["url"],
        "certificate_name": "leak-scan-cert",
        "subject": "CN=ADP-Leak-Scan",
        "validity_months": 6,
        "renew_before_days": 30,
    }
    if tenant is not None and "id" in tenant:
        declared["tenant_id"] = tenant["id"]
    with ProviderHost(KeyVaultCertificateProvider(), env=env, type_token=KV_TYPE) as host:
        host.configure({})
        bad = host.check({**declared, "certificate_name": "x/../../secrets/some-secret"})
        scanner.scan("kv check failures", repr(bad.failures))
        checked = host.check(declared)
        id_, outs = host.create(checked.inputs, name="cert")
        _scan_outputs(scanner, "kv create", outs)
        _, live, inputs = host.read(id_, outs, checked.inputs, name="cert")
        _scan_outputs(scanner, "kv read", live)
        _scan_outputs(scanner, "kv read inputs", inputs)
        emulator.faults.script("throttle", count=50, retry_after=0, service="keyvault")
        with pytest.raises(ProviderCallError) as throttled:
            host.create({**checked.inputs, "certificate_name": "leak-scan-other"}, name="other")
        scanner.scan("kv throttled error", str(throttled.value))
        emulator.faults.clear()
        scanner.scan("kv provider host stderr", host.stderr)


def test_the_demo_leaks_nothing(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from adp_identity_sandbox.demo import run_demo, summarise

    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    found = LeakScanner()
    summarise(console, run_demo(console, tmp_path / "demo"))
    for secret_file in (tmp_path / "demo").rglob("*.federated-token"):
        found.know([secret_file.read_text()])
    found.scan("demo output", out.getvalue())
    print(f"\nleak scans: {found.scans}, findings: {len(found.findings)}")
    assert not found.findings, "\n".join(map(str, found.findings))
