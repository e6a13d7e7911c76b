"""What no pipeline definition may contain, for the GitHub workflows and the Azure DevOps pipelines alike.

Azure access is workload identity federation everywhere (GitHub OIDC, Azure DevOps service connections), state and
secrets sit behind Entra RBAC: none of these variables has a reason to appear, and a literal GUID or JWT in a
pipeline is an identifier or a token that belongs in the CI system's configuration, never in the repository.
"""

from __future__ import annotations

import re

SECRET_VARIABLES = (
    "AZURE_CLIENT_SECRET",
    "ARM_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE",
    "ARM_CLIENT_CERTIFICATE",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "ARM_OIDC_TOKEN",
    "ARM_ACCESS_KEY",
)
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}")
SET_X = re.compile(r"set\s+-[a-z]*x")  # would print every value
