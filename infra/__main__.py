"""Pulumi entry point (Pulumi.yaml ``main: infra/``): the program lives in ``infra.entrypoint``."""

from infra.entrypoint import main

main()
