"""The origin of an https URL: what Dataverse environments and Key Vaults are identified by (no Pulumi import)."""

from __future__ import annotations

from urllib.parse import urlsplit


def https_origin(url: str, *, what: str, example: str) -> str:
    """``https://Org.CRM11.dynamics.com/main.aspx?x`` -> ``https://org.crm11.dynamics.com`` (port kept unless 443).

    ``what`` and ``example`` name the URL in the one-line ``ValueError`` a wrong one gets.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError(f"{what} must be an https URL such as {example} (got {url!r})")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry credentials")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"https://{host}:{parts.port}" if parts.port and parts.port != 443 else f"https://{host}"
