"""Tenant isolation's first step: the tenant a credential signs in to, compared before any API request."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from providers._identity import TOKENS, WrongTenant, check_tenant, token_tenant

DEFRADEV = "a798744b-41a1-41b0-b394-141dbf8496c4"
DEFRA = "f204cad1-9a84-48cc-a48e-3e1300dc5edc"


def _jwt(payload: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2lnbmF0dXJl"


@dataclass
class _Token:
    token: str
    expires_on: int = 2**31


class _Credential:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> _Token:
        self.calls += 1
        return _Token(self.token)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    TOKENS.clear()
    yield
    TOKENS.clear()


@pytest.mark.parametrize(
    ("token", "tenant"),
    [
        (_jwt({"tid": DEFRA.upper()}), DEFRA),
        (_jwt({"aud": "x"}), None),
        (_jwt({"tid": 7}), None),
        ("not-a-jwt", None),
        ("a.%%%.c", None),
        ("a." + "A" * 20000 + ".c", None),
    ],
)
def test_token_tenant(token: str, tenant: str | None) -> None:
    assert token_tenant(token) == tenant


def test_the_same_tenant_passes_and_reuses_the_cached_token() -> None:
    credential = _Credential(_jwt({"tid": DEFRADEV}))
    check_tenant(credential, "https://org.crm11.dynamics.com/.default", DEFRADEV.upper(), "environment dev")
    check_tenant(credential, "https://org.crm11.dynamics.com/.default", DEFRADEV, "environment dev")
    assert credential.calls == 1


def test_another_tenant_is_refused_naming_both_and_never_the_token() -> None:
    token = _jwt({"tid": DEFRADEV, "secret": "eyJhbGciOi-not-to-be-shown"})
    with pytest.raises(WrongTenant) as caught:
        check_tenant(_Credential(token), "https://vault.azure.net/.default", DEFRA, "Key Vault prdadpinfkv1401")
    message = str(caught.value)
    assert DEFRA in message and DEFRADEV in message and "Key Vault prdadpinfkv1401" in message
    assert token not in message and "\n" not in message


def test_no_tenant_declared_checks_nothing() -> None:
    credential = _Credential("opaque")
    check_tenant(credential, "https://vault.azure.net/.default", None, "vault")
    assert credential.calls == 0


def test_another_federated_token_file_is_another_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sandboxes can reuse one port: the same authority and client with another token file must not share the
    first credential (its file holds an assertion the second issuer never signed)."""
    from providers._identity import environment_identity

    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/run/one/token")
    first = environment_identity()
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/run/two/token")
    assert environment_identity() != first
