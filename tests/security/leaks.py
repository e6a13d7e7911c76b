"""A scanner for what must never leave the process: bearer tokens, client assertions, federated tokens, private
keys and secret values.

Two kinds of evidence:

* shapes: a JWT (three base64url parts, the first two decoding to JSON objects: access tokens, client assertions
  and federated tokens all are JWTs), and PEM private-key blocks;
* known values: every secret the emulator generated for this run (client secrets, the federated token files'
  contents, certificate private keys, Key Vault secret values), so a leak in another shape (URL-encoded, inside
  an error message, base64 of a PKCS#12) is still found when the value appears as it is.

`LeakScanner.scan(where, text)` records each scan and each finding; a test asserts there are no findings and
reports the counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{20,}")


def _is_json_object(part: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return isinstance(json.loads(decoded), dict)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    excerpt: str  # never the secret itself: its kind and position only

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} ({self.excerpt})"


@dataclass
class LeakScanner:
    secrets: set[str] = field(default_factory=set)
    scans: int = 0
    findings: list[Finding] = field(default_factory=list)

    def know(self, values: Iterable[str]) -> None:
        """Secret values to look for as they are (ignores short ones that would match by chance)."""
        self.secrets.update(v.strip() for v in values if v and len(v.strip()) >= 16)

    def scan(self, where: str, text: str | bytes | None) -> list[Finding]:
        self.scans += 1
        if text is None:
            return []
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        found: list[Finding] = []
        for match in _JWT.finditer(text):
            header, payload = match.group(0).split(".")[:2]
            if _is_json_object(header) and _is_json_object(payload):
                found.append(Finding(where, "JWT (token or assertion)", f"at {match.start()}"))
        for match in _PRIVATE_KEY.finditer(text):
            found.append(Finding(where, "PEM private key", f"at {match.start()}"))
        for match in _BEARER.finditer(text):
            found.append(Finding(where, "Authorization bearer value", f"at {match.start()}"))
        for secret in self.secrets:
            index = text.find(secret)
            if index >= 0:
                found.append(Finding(where, "a known secret value", f"at {index}"))
        self.findings.extend(found)
        return found
