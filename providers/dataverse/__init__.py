"""Dataverse application users as code.

Layers (no Pulumi import below the provider layer, so the CLI reuses client and reconcile unchanged):
- ``errors``, ``models``, ``client``: the Dataverse Web API client (requests + azure-identity);
- ``reconcile``: pure planning (desired + actual -> ordered operations) and applying a plan through the client;
- ``provider``: the thin ``pulumi.dynamic.ResourceProvider`` and the ``ApplicationUser`` resource.

``ApplicationUser`` and ``ApplicationUserArgs`` are loaded on first use, so importing the client does not import
Pulumi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.dataverse.provider import ApplicationUser, ApplicationUserArgs, ApplicationUserProvider

__all__ = ["ApplicationUser", "ApplicationUserArgs", "ApplicationUserProvider"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from providers.dataverse import provider

        return getattr(provider, name)
    raise AttributeError(f"module 'providers.dataverse' has no attribute {name!r}")
