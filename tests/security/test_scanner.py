"""The leak scanner finds what it must (so a clean scan means something)."""

from __future__ import annotations

import base64
import json

from tests.security.leaks import LeakScanner


def _jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'aud': 'api://AzureADTokenExchange', 'sub': 'x'})}.c2ln"


def test_finds_each_kind_and_never_repeats_the_secret() -> None:
    scanner = LeakScanner()
    scanner.know(["s3cr3t-value-of-a-client-0123456789", "short"])
    text = (
        f"token={_jwt()} \n-----BEGIN PRIVATE KEY-----\nMIIE\n"
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123\n"
        "error: s3cr3t-value-of-a-client-0123456789 refused; short"
    )
    kinds = sorted(f.kind for f in scanner.scan("stdout", text))
    assert kinds == [
        "Authorization bearer value",
        "JWT (token or assertion)",
        "PEM private key",
        "a known secret value",
    ]
    assert all("s3cr3t" not in str(f) for f in scanner.findings)
    assert scanner.scans == 1


def test_plain_text_and_public_material_are_clean() -> None:
    scanner = LeakScanner()
    clean = 'eyJhbGciOi is a prefix only; -----BEGIN CERTIFICATE----- is public; Bearer realm="x"'
    assert scanner.scan("stderr", clean) == []
    assert scanner.scan("bytes", b"\xff\xfe nothing") == []
