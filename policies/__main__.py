"""The adp-identity CrossGuard policy pack: ``pulumi preview --policy-pack policies`` (docs/policies.md).

The Pulumi CLI runs this file as ``<virtualenv>/bin/python -u -m pulumi.policy <engine> .`` in this directory
(the virtualenv is PulumiPolicy.yaml's ``runtime.options.virtualenv``: the project's own ``.venv`` made by
``make install``, which holds the locked pulumi-policy). The rules live in ``adp_identity.rules``; this pack only
adapts them (``policies/guardrails.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a virtualenv made from requirements.txt has the project's dependencies, not it
    sys.path.insert(0, str(ROOT))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.guardrails import DEFAULT_ENFORCEMENT, PACK_NAME, policies  # noqa: E402

PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=DEFAULT_ENFORCEMENT)
