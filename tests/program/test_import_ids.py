"""``adp-identity import-ids`` against a strict fake of Azure Resource Manager, then the program with what it wrote.

The fake answers exactly the requests the command is expected to make (any other request fails the test) with
what ADP's Helm library leaves in Azure for defradev's ``ffc-pay-batch``: the identity, the two federated
credentials of the first cluster's Helm release (numbered ``-fic-0``, ``-fic-1`` in that release), and one "Key
Vault Secrets User" assignment on the service's secret, named by Azure Service Operator (a UUID) with the
scope as the Helm library writes it (``resourcegroups`` in lower case). The listing also returns an assignment
inherited from the vault, which must not be taken for the secret's.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from click.testing import CliRunner

from adp_identity.cli import cli
from adp_identity.commands import import_ids as command_module
from infra.arm import ArmReader
from infra.imports import read_imports
from tests.program import mocks
from tests.program.expected import load_expected
from tests.program.mocks import FEDERATED_CREDENTIAL, IDENTITY, ROLE_ASSIGNMENT, ExistingIdentity
from tests.program.test_owners import GROUP, IDENTITY_ID, IDENTITY_NAME, SERVICE_NAME, STACK, set_workload_identity

SUBSCRIPTION = "9cab3c00-bf5a-4d60-b843-facce1197081"
PRINCIPAL = "0c7d2e91-4b6a-4f3e-8d15-2a9b7c6e1f08"
CLIENT = "5b3c1f2e-8a47-4d1e-9c2b-7e1f0a9d3c41"
TOKEN = "fake-arm-token"
VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/SNDADPINFRG1401/providers/Microsoft.KeyVault/vaults/sndadpinfkv1401"
)
SECRET = f"{SERVICE_NAME}-sftp-password"
CERTIFICATE = f"{SERVICE_NAME}-app-cert"
ASO_GRANT = "3f1c2b7e-9d8a-5c4b-8e2f-1a0b9c8d7e6f"
KV_SECRETS_USER = (
    f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
    "4633458b-17de-408a-b874-0445c86b69e6"
)


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken(TOKEN, 4_102_444_800)


Answer = tuple[int, Any] | Callable[[], tuple[int, Any]]


@dataclass
class FakeArm(requests.adapters.BaseAdapter):
    """Answers (path, query) pairs it knows; records every request; anything else is a failure."""

    routes: dict[tuple[str, tuple[tuple[str, str], ...]], Answer] = field(default_factory=dict)
    requests_seen: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def route(self, path: str, answer: Answer, **query: str) -> None:
        self.routes[path.lower(), tuple(sorted(query.items()))] = answer

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(str(request.url))
        query = parse_qs(url.query)
        self.requests_seen.append((str(request.method), url.path, query))
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        key = (url.path.lower(), tuple(sorted((k, v[0]) for k, v in query.items())))
        answer = self.routes.get(key)
        if request.method != "GET" or url.netloc != "management.azure.com" or answer is None:
            self.unexpected.append(f"{request.method} {request.url}")
            status, body = 500, {"error": {"code": "Unexpected", "message": "the fake does not know this request"}}
        else:
            status, body = answer() if callable(answer) else answer
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        if status == 429:
            headers["Retry-After"] = "0"
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(data), headers=headers, status=status, preload_content=False, decode_content=False
        )
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def _fic(index: int, issuer: str, subject: str, name: str | None = None) -> dict[str, Any]:
    name = name or f"{IDENTITY_NAME}-fic-{index}"
    return {
        "id": f"{IDENTITY_ID}/federatedIdentityCredentials/{name}",
        "name": name,
        "properties": {"issuer": issuer, "subject": subject, "audiences": ["api://AzureADTokenExchange"]},
    }


def _assignments_path(secret: str) -> str:
    return f"{VAULT}/secrets/{secret}/providers/Microsoft.Authorization/roleAssignments"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> FakeArm:
    """What the platform made for ffc-pay-batch, as ARM shows it; the command reads through this fake."""
    expected = load_expected(mocks.read_project(mocks.REPO).stack_config_dir, STACK).services[SERVICE_NAME]
    own, app_config = expected.credentials[0], expected.credentials[1]  # the first cluster's release
    fake = FakeArm()
    fake.route(
        IDENTITY_ID,
        (200, {"id": IDENTITY_ID, "name": IDENTITY_NAME, "properties": {"principalId": PRINCIPAL, "clientId": CLIENT}}),
        **{"api-version": "2023-01-31"},
    )
    fake.route(
        f"{IDENTITY_ID}/federatedIdentityCredentials",
        (200, {"value": [_fic(0, own.issuer, own.subject), _fic(1, app_config.issuer, app_config.subject)]}),
        **{"api-version": "2023-01-31"},
    )
    aso_scope = f"{VAULT}/secrets/{SECRET}".replace("/resourceGroups/", "/resourcegroups/")
    inherited = {
        "id": f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/11111111-2222-3333-4444-555555555555",
        "properties": {"scope": VAULT, "roleDefinitionId": KV_SECRETS_USER, "principalId": PRINCIPAL},
    }
    grant = {
        "id": f"{aso_scope}/providers/Microsoft.Authorization/roleAssignments/{ASO_GRANT}",
        "properties": {"scope": aso_scope, "roleDefinitionId": KV_SECRETS_USER, "principalId": PRINCIPAL},
    }
    query = {"api-version": "2022-04-01", "$filter": f"principalId eq '{PRINCIPAL}'"}
    fake.route(_assignments_path(SECRET), (200, {"value": [inherited, grant]}), **query)
    fake.route(_assignments_path(CERTIFICATE), (200, {"value": [inherited]}), **query)

    session = requests.Session()
    session.mount("https://", fake)
    monkeypatch.setattr(
        command_module,
        "ArmReader",
        lambda: ArmReader(
            FakeCredential(), transport=RequestsTransport(session=session, session_owner=False), backoff=0.01
        ),
    )
    return fake


def _invoke(root: Path, *extra: str) -> Any:
    stacks = mocks.read_project(root).stack_config_dir
    return CliRunner().invoke(
        cli, ["import-ids", "--stacks", str(stacks), "--stack", STACK, "--service", SERVICE_NAME, *extra]
    )


def test_import_ids_prints_what_exists_matched_to_the_service_file(arm: FakeArm, tmp_path: Path) -> None:
    root = mocks.copy_project(tmp_path)
    result = _invoke(root)
    assert result.exit_code == 0, result.output
    assert not arm.unexpected
    assert [(method, path) for method, path, _ in arm.requests_seen] == [
        ("GET", IDENTITY_ID),
        ("GET", f"{IDENTITY_ID}/federatedIdentityCredentials"),
        ("GET", _assignments_path(SECRET)),
        ("GET", _assignments_path(CERTIFICATE)),
    ]
    printed = tmp_path / f"{SERVICE_NAME}.yaml"
    printed.write_text(result.stdout, encoding="utf-8")
    ids = read_imports(printed, "printed")
    assert ids.identity == IDENTITY_ID
    assert [c.name for c in ids.federated_credentials] == [f"{IDENTITY_NAME}-fic-0", f"{IDENTITY_NAME}-fic-1"]
    assert [(g.secret, g.name) for g in ids.secret_grants] == [(SECRET, ASO_GRANT)]  # not the inherited one
    assert ids.secret_grants[0].scope.endswith(
        f"/resourcegroups/SNDADPINFRG1401/providers/Microsoft.KeyVault/vaults/sndadpinfkv1401/secrets/{SECRET}"
    )
    assert result.stderr.splitlines() == [
        f"import-ids: {SERVICE_NAME}: adopt identity {IDENTITY_NAME}, 2 federated credential(s) and 1 secret "
        "grant(s); create 4 credential(s) and 1 grant(s)"
    ]


def test_what_import_ids_writes_the_program_imports(arm: FakeArm, tmp_path: Path) -> None:
    root = mocks.copy_project(tmp_path)
    set_workload_identity(root, {"owner": "platform"})  # the command runs before the owner changes
    result = _invoke(root, "--write")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    written = mocks.read_project(root).stack_config_dir / STACK / "imports" / f"{SERVICE_NAME}.yaml"
    assert written.is_file()
    assert result.stderr.rstrip().endswith(f"wrote stacks/{STACK}/imports/{SERVICE_NAME}.yaml")

    set_workload_identity(root, {"owner": "adp-identity"})
    run = mocks.run_program(
        root, STACK, platform_identities={(GROUP, IDENTITY_NAME): ExistingIdentity(CLIENT, PRINCIPAL)}
    )
    assert run.error is None, repr(run.error)
    assert run.named(IDENTITY, f"{SERVICE_NAME}-identity-mi").import_id == IDENTITY_ID
    imported = {r.name: r.import_id for r in run.of_type(FEDERATED_CREDENTIAL) if r.import_id}
    assert imported == {
        f"{SERVICE_NAME}-identity-fic-0": f"{IDENTITY_ID}/federatedIdentityCredentials/{IDENTITY_NAME}-fic-0",
        f"{SERVICE_NAME}-identity-fic-1": f"{IDENTITY_ID}/federatedIdentityCredentials/{IDENTITY_NAME}-fic-1",
    }
    reader = run.named(ROLE_ASSIGNMENT, f"{SERVICE_NAME}-secrets-sftp-password-reader")
    assert reader.inputs["roleAssignmentName"] == ASO_GRANT
    assert reader.import_id.endswith(ASO_GRANT)
    assert run.named(ROLE_ASSIGNMENT, f"{SERVICE_NAME}-app-cert-reader").import_id == ""


def test_an_identity_that_does_not_exist_is_one_line_and_nothing_written(arm: FakeArm, tmp_path: Path) -> None:
    arm.route(
        IDENTITY_ID,
        (404, {"error": {"code": "ResourceNotFound", "message": "not found"}}),
        **{"api-version": "2023-01-31"},
    )
    root = mocks.copy_project(tmp_path)
    result = _invoke(root, "--write")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"import-ids: managed identity {IDENTITY_NAME} was not found in resource group {GROUP} (subscription "
        f"{SUBSCRIPTION}): nothing to import; with owner: adp-identity the first deploy creates it"
    ]
    assert not (mocks.read_project(root).stack_config_dir / STACK / "imports").exists()


def test_a_credential_the_service_file_does_not_declare_is_refused(arm: FakeArm, tmp_path: Path) -> None:
    expected = load_expected(mocks.read_project(mocks.REPO).stack_config_dir, STACK).services[SERVICE_NAME]
    own = expected.credentials[0]
    extra = _fic(2, own.issuer, "system:serviceaccount:ffc-pay:someone-else")
    arm.route(
        f"{IDENTITY_ID}/federatedIdentityCredentials",
        (200, {"value": [_fic(0, own.issuer, own.subject), extra]}),
        **{"api-version": "2023-01-31"},
    )
    root = mocks.copy_project(tmp_path)
    result = _invoke(root, "--write")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"import-ids: federated credential {IDENTITY_NAME}-fic-2 (issuer {own.issuer}, subject ")
    assert line.endswith("allowed: declare it, or delete it in Azure first (nothing was written)")
    assert not (mocks.read_project(root).stack_config_dir / STACK / "imports").exists()


def test_a_refused_read_is_one_line_with_arms_code(arm: FakeArm, tmp_path: Path) -> None:
    arm.route(
        f"{IDENTITY_ID}/federatedIdentityCredentials",
        (403, {"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization\nto read"}}),
        **{"api-version": "2023-01-31"},
    )
    result = _invoke(mocks.copy_project(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"import-ids: federated credentials of {IDENTITY_NAME}: ARM answered 403 AuthorizationFailed: The client does "
        "not have authorization to read"
    ]
    assert TOKEN not in result.output


def test_throttling_is_retried_a_bounded_number_of_times(arm: FakeArm, tmp_path: Path) -> None:
    answers = iter([(429, {"error": {"code": "TooManyRequests", "message": "slow down"}})] * 2)
    good = arm.routes[IDENTITY_ID.lower(), (("api-version", "2023-01-31"),)]
    arm.route(IDENTITY_ID, lambda: next(answers, good), **{"api-version": "2023-01-31"})  # type: ignore[arg-type]
    result = _invoke(mocks.copy_project(tmp_path))
    assert result.exit_code == 0, result.output
    assert [path for _, path, _ in arm.requests_seen].count(IDENTITY_ID) == 3

    always = (429, {"error": {"code": "TooManyRequests", "message": "slow down"}})
    arm.route(IDENTITY_ID, always, **{"api-version": "2023-01-31"})
    arm.requests_seen.clear()
    (tmp_path / "again").mkdir()
    result = _invoke(mocks.copy_project(tmp_path / "again"))
    assert result.exit_code == 1
    assert [path for _, path, _ in arm.requests_seen].count(IDENTITY_ID) == 4  # 1 + 3 retries, then one line
    assert len(result.stderr.splitlines()) == 1


def test_the_command_imports_no_pulumi() -> None:
    """It runs in a pull request job without the Pulumi engine (as plan and audit do)."""
    code = "import sys, adp_identity.commands.import_ids; print('pulumi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
