"""Tests drive the provider host through the same harness the demo uses."""

from adp_identity_sandbox.provider_host import UNKNOWN, ProviderCallError, ProviderHost

__all__ = ["UNKNOWN", "ProviderCallError", "ProviderHost"]
