"""The Pulumi program's entry point: Pulumi.yaml has no ``main``, so the CLI runs this directory.

The program itself is ``infra.entrypoint``. It lives at the project root (not in ``infra/``) so that Pulumi's program
directory is the directory of Pulumi.yaml: the CLI starts the dynamic providers there and resolves the ``.venv`` of
Pulumi.yaml against it (docs/adr/0009-uv-lock-for-the-pulumi-toolchain.md).
"""

from infra.entrypoint import main

main()
