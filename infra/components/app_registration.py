"""An app registration that authenticates with Key Vault-held certificates, never with a client secret (ADR 4).

For the few services a managed identity cannot serve. The certificate is created inside Key Vault by the
``providers.keyvault`` dynamic resource, so its private key never passes through the pipeline or state; only
each slot's public certificate is registered on the application, one ``ApplicationCertificate`` per slot
(ADR 5: the newest version stays registered while the older slot is renewed). The service's own managed
identity gets "Key Vault Secrets User" on the certificate's secret alone, so the workload reads its own
certificate and nothing else. No ``password`` block and no ``ApplicationPassword`` exist in this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azuread as azuread

from infra.components._options import child_of, with_previous_names
from infra.components.key_vault_secrets import secret_reader
from infra.imports import ImportedGrant
from providers.keyvault import KeyVaultCertificate, KeyVaultCertificateArgs

TYPE_TOKEN = "adp-identity:identity:AppRegistration"
SLOTS = ("a", "b")


@dataclass
class CertificateSettings:
    """Where the certificate lives and how long each version is valid (at most 12 months, ADR 4)."""

    vault_url: str
    vault_id: str  # ARM id of the vault: the prefix of the secret scope
    certificate_name: str
    subject: str
    validity_months: int = 12
    renew_before_days: int = 30
    tenant_id: str | None = None  # the vault's Entra tenant: the provider refuses a credential of another tenant


@dataclass
class AppRegistrationArgs:
    display_name: str
    certificate: CertificateSettings
    subscription_id: str
    # the service's managed identity, which reads the certificate; None when the platform owns the identity and
    # grants it access itself (owner: platform)
    reader_principal_id: pulumi.Input[str] | None
    reader_principal_key: str  # a stable name of that identity (its ARM id), for the role assignment's GUID
    owners: Sequence[pulumi.Input[str]] = ()
    tags: Sequence[str] = ()  # Entra tags (``Key:Value``) on the application and its service principal
    reader_import: ImportedGrant | None = None  # the platform's existing grant on the certificate, to adopt
    retain_reader: bool = False  # keep the grant in Azure when it leaves the stack (moving to the platform)


def _slot_field(slot: pulumi.Output[Any], key: str) -> pulumi.Output[str]:
    def pick(value: Any) -> str:
        if not isinstance(value, Mapping) or not isinstance(value.get(key), str):
            raise ValueError(f"the Key Vault certificate's slot has no {key!r}")
        return str(value[key])

    return slot.apply(pick)


class AppRegistration(pulumi.ComponentResource):
    """``adp-identity:identity:AppRegistration``: application, service principal, certificate, slot a/b, reader."""

    client_id: pulumi.Output[str]
    application_object_id: pulumi.Output[str]
    service_principal_object_id: pulumi.Output[str]
    certificate_version: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: AppRegistrationArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        previous_names: Sequence[str] = (),
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, with_previous_names(opts, previous_names))
        owners = list(args.owners) or None
        tags = list(args.tags) or None
        application = azuread.Application(
            f"{name}-application",
            display_name=args.display_name,
            owners=owners,
            tags=tags,
            opts=child_of(self),
        )
        service_principal = azuread.ServicePrincipal(
            f"{name}-sp",
            client_id=application.client_id,
            owners=owners,
            tags=tags,
            opts=child_of(self),
        )
        settings = args.certificate
        certificate = KeyVaultCertificate(
            f"{name}-cert",
            KeyVaultCertificateArgs(
                vault_url=settings.vault_url,
                certificate_name=settings.certificate_name,
                subject=settings.subject,
                validity_months=settings.validity_months,
                renew_before_days=settings.renew_before_days,
                tenant_id=settings.tenant_id,
            ),
            child_of(self),
        )
        slots = {"a": certificate.slot_a, "b": certificate.slot_b}
        self.slot_certificates = [
            azuread.ApplicationCertificate(
                f"{name}-cert-slot-{slot}",
                application_id=application.id,
                type="AsymmetricX509Cert",
                encoding="base64",
                value=_slot_field(slots[slot], "cer"),
                start_date=_slot_field(slots[slot], "not_before"),
                end_date=_slot_field(slots[slot], "not_after"),
                opts=child_of(self),
            )
            for slot in SLOTS
        ]
        # the workload reads its own certificate (Key Vault keeps it as a secret of the same name)
        if args.reader_principal_id is not None:
            secret_reader(
                f"{name}-cert-reader",
                subscription_id=args.subscription_id,
                vault_id=settings.vault_id,
                secret_name=settings.certificate_name,
                principal_id=args.reader_principal_id,
                principal_key=args.reader_principal_key,
                opts=child_of(self, certificate),
                imported=args.reader_import,
                retain_on_delete=args.retain_reader,
            )
        self.client_id = application.client_id
        self.application_object_id = application.object_id
        self.service_principal_object_id = service_principal.object_id
        self.certificate_version = certificate.current_version
        self.register_outputs(
            {
                "client_id": self.client_id,
                "application_object_id": self.application_object_id,
                "service_principal_object_id": self.service_principal_object_id,
                "certificate_version": self.certificate_version,
            }
        )
