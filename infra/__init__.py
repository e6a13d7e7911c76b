"""Pulumi components and the program that builds a tenant's stack from its desired state (run by ./__main__.py)."""
