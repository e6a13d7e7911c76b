"""``adp-identity demo``: the end-to-end story on the embedded emulator.

The demo and its harnesses (the provider host driver, the admin centre) live in ``adp_identity_sandbox``, outside
the product package; this module only hands the command to the CLI (an allowed import in ``.importlinter``).
"""

from adp_identity_sandbox.demo import command

__all__ = ["command"]
