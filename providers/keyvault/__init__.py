"""Key Vault certificates for app registrations: a small data-plane client and a Pulumi dynamic provider.

``KeyVaultCertificate`` and ``KeyVaultCertificateArgs`` are exported lazily (module ``__getattr__``), so importing
``providers.keyvault.client`` (or this package) never imports Pulumi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.keyvault.provider import KeyVaultCertificate, KeyVaultCertificateArgs

__all__ = ["KeyVaultCertificate", "KeyVaultCertificateArgs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from providers.keyvault import provider

        return getattr(provider, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
