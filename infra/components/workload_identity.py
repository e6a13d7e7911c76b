"""A service's workload identity: one user-assigned managed identity and its federated credentials.

The identity is named by ADP's convention (``{teamMIPrefix}-{service}``, lower-cased) and tagged as
automated-only; each (cluster issuer, namespace, service account) gets one federated identity credential
``{miName}-fic-{index}`` so that pods running under that Kubernetes service account exchange their projected
token for an Entra token — no secret anywhere. The identity's client, principal and tenant ids are what the
workload's ConfigMap needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import managedidentity

from adp_identity.desired import naming as adp
from infra import naming
from infra.components._options import child_of, with_previous_names

TYPE_TOKEN = "adp-identity:identity:WorkloadIdentity"


@dataclass(frozen=True)
class FederatedSubject:
    """Who may act as the identity: a token subject as one cluster's OIDC issuer names it."""

    issuer: str
    subject: str
    import_id: str | None = None  # an existing credential to adopt (its ARM id names it): docs/operations.md

    @classmethod
    def service_account(cls, issuer: str, namespace: str, service_account: str) -> FederatedSubject:
        """A Kubernetes service account: ``system:serviceaccount:<namespace>:<service account>``, lower-cased."""
        return cls(issuer, adp.federation_subject(namespace, service_account))


@dataclass
class WorkloadIdentityArgs:
    service_name: str
    name_prefix: str  # ADP's teamMIPrefix, e.g. "sndadpinfmi1401"
    team: str
    subscription_id: str
    resource_group_name: str
    location: str
    federated_subjects: Sequence[FederatedSubject] = ()  # in order: they are numbered -fic-0, -fic-1, ...
    tags: Mapping[str, str] = field(default_factory=dict)  # tenant tags; ServiceName and Team are added
    import_id: str | None = None  # the existing identity to adopt (owner moved from the platform)
    retain_on_delete: bool = False  # keep identity and credentials in Azure when they leave the stack


class WorkloadIdentity(pulumi.ComponentResource):
    """``adp-identity:identity:WorkloadIdentity``: children ``{name}-mi`` and ``{name}-fic-{index}``."""

    identity_name: str
    arm_id: str  # known before creation: the stable principal key of role assignment names
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    tenant_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: WorkloadIdentityArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        previous_names: Sequence[str] = (),
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, with_previous_names(opts, previous_names))
        self.identity_name = adp.managed_identity_name(args.name_prefix, args.service_name)
        self.arm_id = naming.managed_identity_id(args.subscription_id, args.resource_group_name, self.identity_name)
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-mi",
            resource_name_=self.identity_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=naming.resource_tags(args.service_name, args.team, args.tags),
            opts=child_of(self, import_id=args.import_id, retain_on_delete=args.retain_on_delete),
        )
        # Entra ID refuses concurrent writes of federated credentials under one identity (409 Conflict), so
        # each credential waits for the one before it (Microsoft Learn, "Workload identity federation
        # considerations").
        self.federated_credentials: list[managedidentity.FederatedIdentityCredential] = []
        for index, federated in enumerate(args.federated_subjects):
            self.federated_credentials.append(
                managedidentity.FederatedIdentityCredential(
                    f"{name}-fic-{index}",
                    # an adopted credential keeps the name the platform gave it (renaming would replace it)
                    federated_identity_credential_resource_name=(
                        federated.import_id.rsplit("/", 1)[-1]
                        if federated.import_id
                        else adp.federated_credential_name(self.identity_name, index)
                    ),
                    resource_name_=identity.name,
                    resource_group_name=args.resource_group_name,
                    issuer=federated.issuer,
                    subject=federated.subject,
                    audiences=[adp.FEDERATION_AUDIENCE],
                    opts=child_of(
                        self,
                        *self.federated_credentials[-1:],
                        import_id=federated.import_id,
                        retain_on_delete=args.retain_on_delete,
                    ),
                )
            )
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.tenant_id = identity.tenant_id
        self.register_outputs(
            {
                "identity_name": self.identity_name,
                "client_id": self.client_id,
                "principal_id": self.principal_id,
                "tenant_id": self.tenant_id,
            }
        )
