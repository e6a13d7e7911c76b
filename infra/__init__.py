"""Pulumi components and the program that builds a tenant's stack from its desired state (Pulumi.yaml main)."""
