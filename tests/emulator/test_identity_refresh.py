"""The default credential survives a federated token file that changed after azure-identity cached it.

azure-identity's workload-identity credential re-reads its token file at most every 10 minutes; GitHub's OIDC
tokens live 5. A provider process that first needs a new audience in between presents an expired assertion
(AADSTS700024). ``providers._identity`` then builds a fresh credential, which reads the current file, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adp_identity_emulator import Emulator
from providers._identity import TOKENS, CredentialFailed, bearer_token, default_credential, forget_default_credential


@pytest.fixture
def pipeline_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = emulator.credential_env("DefraDev")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_default_credential()
    TOKENS.clear()
    yield env
    forget_default_credential()
    TOKENS.clear()


def _write_expired_assertion(emulator: Emulator, token_file: str) -> None:
    subject = emulator.tenant("DefraDev").applications[0].federated_subject
    assert subject is not None
    expired = emulator.entra.issuer("github-actions").mint(subject, issued_at=int(time.time()) - 3600, lifetime_s=300)
    Path(token_file).write_text(expired)


def test_an_expired_cached_assertion_is_replaced_by_a_fresh_read(
    emulator: Emulator, pipeline_env: dict[str, str]
) -> None:
    dev = f"{emulator.environment_url('defradev-dev')}/.default"
    tst = f"{emulator.environment_url('defradev-tst')}/.default"
    _write_expired_assertion(emulator, pipeline_env["AZURE_FEDERATED_TOKEN_FILE"])
    with pytest.raises(Exception, match="AADSTS700024"):
        default_credential().get_token(dev)  # the credential has now cached the expired assertion
    emulator.remint_federated_tokens()  # the pipeline refreshed the file, as GitHub Actions' setup step does

    emulator.log.clear()
    assert bearer_token(None, tst)  # a new audience: refused once with the stale assertion, then a fresh read
    token_requests = [e for e in emulator.log.entries if e.service == "entra" and e.path.endswith("/token")]
    assert [e.status for e in token_requests] == [401, 200]


def test_other_credential_failures_are_not_retried(emulator: Emulator, pipeline_env: dict[str, str]) -> None:
    Path(pipeline_env["AZURE_FEDERATED_TOKEN_FILE"]).write_text("not-a-jwt")
    emulator.log.clear()
    with pytest.raises(CredentialFailed) as failed:
        bearer_token(None, f"{emulator.environment_url('defradev-dev')}/.default")
    assert not failed.value.expired_assertion
    assert len([e for e in emulator.log.entries if e.service == "entra" and e.path.endswith("/token")]) == 1
