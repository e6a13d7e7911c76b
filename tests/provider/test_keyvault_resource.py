"""The KeyVaultCertificate resource as a Pulumi program declares it (mocks, in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

from .keyvault_support import REPO_ROOT

PROGRAM = r"""
import json
import pulumi

records = []

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        records.append({"type": args.typ, "name": args.name, "inputs": sorted(args.inputs)})
        return [f"{args.name}-id", dict(args.inputs)]

    def call(self, args):
        return {}

pulumi.runtime.set_mocks(Mocks(), preview=False)

import providers.keyvault as kv  # lazy exports: resolved through the package's __getattr__

cert = kv.KeyVaultCertificate(
    "ffc-pay-batch-app-cert",
    kv.KeyVaultCertificateArgs(
        vault_url="https://sndadpinfkv1401.vault.azure.net",
        certificate_name="ffc-pay-batch-app-cert",
        subject="CN=ADP-FFC-PayBatch",
    ),
)

@pulumi.runtime.test
def check():
    return cert.subject.apply(lambda s: records.append({"subject": s}))

check()
print(json.dumps(records))
"""


def test_resource_type_token_inputs_and_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    records = json.loads(done.stdout.strip().splitlines()[-1])
    resource = next(r for r in records if r.get("type"))
    assert resource["type"] == "pulumi-python:dynamic/keyvault:KeyVaultCertificate"
    assert resource["name"] == "ffc-pay-batch-app-cert"
    assert resource["inputs"] == [
        "__provider",
        "certificate_name",
        "renew_before_days",
        "subject",
        "validity_months",
        "vault_url",
    ]
    assert {"subject": "CN=ADP-FFC-PayBatch"} in records
