"""The Pulumi dynamic provider for app-registration certificates created inside Key Vault (ADR 4, ADR 5).

This is the only module of ``providers.keyvault`` that imports Pulumi, and it only translates: the decisions of
which versions to adopt, keep and renew are ``rotation``'s (pure), the requests are ``client``'s (the Azure SDK).
Its module path and ``KeyVaultCertificateProvider`` are pickled into Pulumi state: never move or rename them
(tests/provider/fixtures/keyvault_provider.serialized is a provider as state holds it). How each call behaves:

- ``check`` reduces ``vault_url`` to its https origin, which must be a Key Vault (``*.vault.azure.net``, or a
  loopback vault the emulator lists in ``ADP_IDENTITY_LOOPBACK_VAULTS``: the vault token goes nowhere else), and
  validates ``certificate_name`` (Key Vault's rule: 1-127
  letters, digits and ``-``), ``subject`` (a distinguished name with a CN), ``validity_months`` (1..12) and
  ``renew_before_days`` (at least 1 and shorter than the certificate's shortest lifetime). Unknown values
  (preview) pass untouched; failures are returned, never raised. No network.
- ``diff`` (old OUTPUTS vs new inputs, no network): a changed ``vault_url`` or ``certificate_name`` replaces;
  a changed ``subject``/``validity_months``/``renew_before_days`` updates; so does a renewal: the slot holding the
  OLDER version is inside its renewal window (by :func:`now`), or a slot is empty. A changed serialized provider
  alone is no change.
- ``create`` makes two versions, slot a then slot b. It is safe to retry: it first waits for a create still in
  progress, then adopts the newest versions of that name that are enabled, issued, of the same subject and not
  yet in their renewal window (so a create that failed half-way, or a certificate made before this resource,
  is taken over instead of duplicated).
- ``read`` (refresh) asks the vault: gone certificate -> id None; a slot whose version was disabled or deleted
  becomes empty; a newer version made behind our back (portal, CLI) takes the older slot, because the workload
  reads the newest version and it must be registered. Stored inputs are returned as the new inputs.
- ``update`` re-reads the slots, then fills empty slots, or puts ONE new version into the older slot when the
  subject/validity changed or the renewal window is reached. A changed ``renew_before_days`` alone makes no
  version.
- ``delete`` DISABLES every version and leaves the certificate in the vault. Why not delete it: ADP vaults have
  soft delete with purge protection, so a deleted certificate's name stays blocked for the retention period (a
  re-created resource of the same name would fail), and disabling is reversible while it already stops anyone
  from fetching the private key (Key Vault refuses the secret of a disabled version).

Every call that reaches the vault first validates what it takes from state (``vault_url``, ``certificate_name``,
the slots' versions: a name like ``x/../../secrets/s`` never becomes a request) and, when ``tenant_id`` is set,
checks that the credential signs in to that tenant (``TenantMismatch``, one line naming both, before the vault
sees a single request). Errors are the client's typed one-line errors (``providers.keyvault.errors``).

Nothing secret is on the provider instance (it is pickled into the state by reference): clients and credentials
are built inside the provider host, once per vault per process, and shared by its threads.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
from cryptography import x509
from cryptography.x509.oid import NameOID
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from providers._dynamic import ProcessClients, Property, check_properties, is_unknown
from providers.keyvault import rotation
from providers.keyvault._transport import bind_vault
from providers.keyvault.client import NAME, KeyVaultCertificatesClient, vault_origin
from providers.keyvault.errors import CertificateNotFound
from providers.keyvault.models import CertificatePolicy, CertificateVersion
from providers.keyvault.slots import (
    SLOT_KEYS,
    Slot,
    Slots,
    newest,
    renewal_due,
    shortest_days,
    slots_from_outputs,
)

TYPE_TOKEN = "pulumi-python:dynamic/keyvault:KeyVaultCertificate"
INPUT_KEYS = ("vault_url", "certificate_name", "subject", "validity_months", "renew_before_days", "tenant_id")
DIFF_KEYS = INPUT_KEYS[:-1]  # tenant_id only guards requests (contract tenant_id): changing it updates nothing
REPLACE_KEYS = ("vault_url", "certificate_name")
NEW_VERSION_KEYS = ("subject", "validity_months")  # take effect only in a new version
DEFAULT_VALIDITY_MONTHS = 12
DEFAULT_RENEW_BEFORE_DAYS = 30
MAX_VALIDITY_MONTHS = 12


def now() -> dt.datetime:
    """The provider's clock (tests replace it in-process)."""
    return dt.datetime.now(dt.UTC)


_CLIENTS: ProcessClients[KeyVaultCertificatesClient] = ProcessClients()


def _client(vault_url: str, tenant_id: str | None) -> KeyVaultCertificatesClient:
    """The vault's client (one per vault per provider-host process; the token cache is shared by all of them),
    after the tenant check: a credential of another tenant is refused before the vault sees a request."""
    client = _CLIENTS.get(vault_url, lambda: KeyVaultCertificatesClient(vault_url))
    client.check_tenant(tenant_id)
    return client


# -- normalisation (check) ------------------------------------------------------------------------------------


def normalise_vault_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the vault's https URL, e.g. https://sndadpinfkv1401.vault.azure.net")
    parts = urlsplit(value.strip())
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        vault_origin(value)
    except ValueError:
        raise ValueError(
            f"must be an https URL (got {value!r}), e.g. https://sndadpinfkv1401.vault.azure.net"
        ) from None
    return bind_vault(value)[0]  # the vault token goes to Key Vault only (issue 10)


def normalise_certificate_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"must be 1-127 letters, digits or '-' as Key Vault requires (got {value!r})")
    return value


def normalise_subject(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a distinguished name such as 'CN=ADP-FFC-PayBatch'")
    try:
        name = x509.Name.from_rfc4514_string(value.strip())
    except ValueError:
        raise ValueError(f"is not a distinguished name (got {value!r}); e.g. 'CN=ADP-FFC-PayBatch'") from None
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise ValueError(f"must contain a common name, e.g. 'CN=ADP-FFC-PayBatch' (got {value!r})")
    return value.strip()


def _whole_number(value: Any) -> int:
    """Numbers cross the wire as doubles (12 -> 12.0): accept integral floats, nothing else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"must be a whole number (got {value!r})")
    return int(value)


def normalise_validity_months(value: Any) -> int:
    months = _whole_number(value)
    if not 1 <= months <= MAX_VALIDITY_MONTHS:
        raise ValueError(f"must be between 1 and {MAX_VALIDITY_MONTHS} months (got {months})")
    return months


def normalise_renew_before_days(value: Any) -> int:
    days = _whole_number(value)
    if days < 1:
        raise ValueError(f"must be at least 1 day (got {days})")
    return days


def normalise_tenant_id(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value).strip().strip("{}")))
    except ValueError:
        raise ValueError(f"must be the vault's Entra tenant id, a GUID (got {value!r})") from None


PROPERTIES: Mapping[str, Property] = {
    "vault_url": Property(normalise_vault_url),
    "certificate_name": Property(normalise_certificate_name),
    "subject": Property(normalise_subject),
    "validity_months": Property(normalise_validity_months, default=DEFAULT_VALIDITY_MONTHS),
    "renew_before_days": Property(normalise_renew_before_days, default=DEFAULT_RENEW_BEFORE_DAYS),
    "tenant_id": Property(normalise_tenant_id),
}
assert tuple(PROPERTIES) == INPUT_KEYS


@dataclass(frozen=True)
class DesiredCertificate:
    vault_url: str
    certificate_name: str
    subject: str
    validity_months: int
    renew_before_days: int
    tenant_id: str | None = None

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> DesiredCertificate:
        return cls(
            vault_url=normalise_vault_url(props["vault_url"]),
            certificate_name=normalise_certificate_name(props["certificate_name"]),
            subject=normalise_subject(props["subject"]),
            validity_months=normalise_validity_months(props.get("validity_months", DEFAULT_VALIDITY_MONTHS)),
            renew_before_days=normalise_renew_before_days(props.get("renew_before_days", DEFAULT_RENEW_BEFORE_DAYS)),
            tenant_id=normalise_tenant_id(props.get("tenant_id")),
        )

    @property
    def id(self) -> str:
        return f"{self.vault_url}/certificates/{self.certificate_name}"

    @property
    def policy(self) -> CertificatePolicy:
        return CertificatePolicy(self.subject, self.validity_months, self.renew_before_days)

    def inputs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in INPUT_KEYS if getattr(self, k) is not None}


def _outputs(desired: DesiredCertificate, slots: Slots, current_version: str | None) -> dict[str, Any]:
    return {
        **desired.inputs(),
        "current_version": current_version,
        **{key: (slot.output() if slot is not None else None) for key, slot in slots.items()},
    }


def _changed(key: str, old: Any, new: Any) -> bool:
    if is_unknown(new):
        return True
    if key in ("validity_months", "renew_before_days"):
        try:
            return _whole_number(old) != _whole_number(new)
        except ValueError:
            return True
    return bool(old != new)


class KeyVaultCertificateProvider(ResourceProvider):
    """CRUD of one Key Vault certificate held as two slots (see the module docstring). Holds no state.

    It only translates: Pulumi's calls into client calls, what the vault has into ``rotation``'s pure decisions,
    and those into outputs.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs, failures = check_properties(news, PROPERTIES)
        months, days = inputs.get("validity_months"), inputs.get("renew_before_days")
        if (
            isinstance(months, int)
            and isinstance(days, int)
            and not any(f.property in ("validity_months", "renew_before_days") for f in failures)
        ):
            limit = shortest_days(months)
            if days >= limit:
                failures.append(
                    CheckFailure(
                        "renew_before_days",
                        f"renew_before_days must be less than {limit} (a {months}-month certificate can last "
                        f"{limit} days; got {days})",
                    )
                )
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if _changed(k, olds.get(k), news.get(k))]
        changed = [k for k in DIFF_KEYS if _changed(k, olds.get(k), news.get(k))]
        due = False
        if not replaces:
            days = news.get("renew_before_days")
            if is_unknown(days):
                days = olds.get("renew_before_days", DEFAULT_RENEW_BEFORE_DAYS)
            try:
                due = renewal_due(slots_from_outputs(olds), _whole_number(days), now())
            except ValueError:
                due = True
        return DiffResult(changes=bool(changed or due), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        desired = DesiredCertificate.of(props)
        client = _client(desired.vault_url, desired.tenant_id)
        name = desired.certificate_name
        client.wait_for_operation(name)  # a create left in progress would become a version to adopt
        slots = _adopt(client, desired)
        for key in rotation.empty_keys(slots):
            slots[key] = Slot.of(client.create_version(name, desired.policy))
        current = newest(slots)
        return CreateResult(desired.id, _outputs(desired, slots, current.version if current else None))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        vault_url, name = _split_id(id_, props)
        client = _client(vault_url, normalise_tenant_id(props.get("tenant_id")))
        try:
            latest = client.get_certificate(name)
        except CertificateNotFound:
            return ReadResult(None, {})
        imported = all(Slot.from_output(props.get(k)) is None for k in SLOT_KEYS) and "subject" not in props
        desired = DesiredCertificate.of(
            {
                "vault_url": vault_url,
                "certificate_name": name,
                "subject": props.get("subject") or latest.policy_subject,
                "validity_months": props.get("validity_months")
                or latest.policy_validity_months
                or DEFAULT_VALIDITY_MONTHS,
                "renew_before_days": props.get("renew_before_days")
                or latest.policy_renew_before_days
                or DEFAULT_RENEW_BEFORE_DAYS,
                "tenant_id": props.get("tenant_id"),
            }
        )
        if imported:
            ordered = rotation.newest_first(latest, client.list_versions(name))
            slots = rotation.fill([_full(client, v) for v in rotation.import_candidates(ordered, now())])
        else:
            slots = _live_slots(client, props, latest)
        outs = _outputs(desired, slots, rotation.current_version(latest, slots))
        return ReadResult(desired.id, outs, desired.inputs())

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        desired = DesiredCertificate.of(news)
        client = _client(desired.vault_url, desired.tenant_id)
        name = desired.certificate_name
        slots = _live_slots(client, olds, client.get_certificate(name))
        policy_changed = any(_changed(k, olds.get(k), news.get(k)) for k in NEW_VERSION_KEYS)
        for key in rotation.slots_to_fill(
            slots, policy_changed=policy_changed, renew_before_days=desired.renew_before_days, now=now()
        ):
            slots[key] = Slot.of(client.create_version(name, desired.policy))
        current = newest(slots)
        return UpdateResult(_outputs(desired, slots, current.version if current else None))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        vault_url, name = _split_id(id_, props)
        client = _client(vault_url, normalise_tenant_id(props.get("tenant_id")))
        for version in client.list_versions(name):
            if version.enabled:
                try:
                    client.set_enabled(name, version.version, False)
                except CertificateNotFound:
                    continue


# -- what the provider asks the vault for, on rotation's behalf ----------------------------------------------------


def _full(client: KeyVaultCertificatesClient, version: CertificateVersion) -> CertificateVersion:
    """The version with its ``cer`` (a listing has none)."""
    return version if version.cer is not None else client.get_certificate(version.name, version.version)


def _adopt(client: KeyVaultCertificatesClient, desired: DesiredCertificate) -> Slots:
    """The newest versions already in the vault that this resource can own (``rotation.adopt``)."""
    name = desired.certificate_name
    try:
        latest = client.get_certificate(name)
    except CertificateNotFound:
        return rotation.empty_slots()
    ordered = rotation.newest_first(latest, client.list_versions(name))
    subject, days = desired.subject, desired.renew_before_days
    candidates = rotation.adoption_candidates(ordered, subject, days, now())
    return rotation.adopt([_full(client, v) for v in candidates], subject, days, now())


def _live_slots(client: KeyVaultCertificatesClient, stored: Mapping[str, Any], latest: CertificateVersion) -> Slots:
    """The stored slots as the vault has them now (``rotation.live_slots``)."""
    slots = slots_from_outputs(stored)
    fetched: dict[str, CertificateVersion | None] = {}
    for version in rotation.to_refresh(slots, latest):
        try:
            fetched[version] = client.get_certificate(latest.name, version)
        except CertificateNotFound:
            fetched[version] = None
    return rotation.live_slots(slots, latest, fetched)


def _split_id(id_: str, props: Mapping[str, Any]) -> tuple[str, str]:
    """(vault origin, certificate name) from the stored inputs, else from the id ``<vault>/certificates/<name>``.

    Both come from state, so both are validated on every call (a name like ``x/../../secrets/s`` never reaches
    the vault).
    """
    if props.get("vault_url") and props.get("certificate_name"):
        return normalise_vault_url(props["vault_url"]), normalise_certificate_name(props["certificate_name"])
    head, sep, name = id_.rpartition("/certificates/")
    if not sep:
        raise ValueError(f"not a Key Vault certificate id: {id_!r} (expected <vault_url>/certificates/<name>)")
    return normalise_vault_url(head), normalise_certificate_name(name)


# -- the resource ------------------------------------------------------------------------------------------------


@dataclass
class KeyVaultCertificateArgs:
    """Inputs of :class:`KeyVaultCertificate` (each may be a Pulumi ``Input``)."""

    vault_url: pulumi.Input[str]
    certificate_name: pulumi.Input[str]
    subject: pulumi.Input[str]
    validity_months: pulumi.Input[int] = DEFAULT_VALIDITY_MONTHS
    renew_before_days: pulumi.Input[int] = DEFAULT_RENEW_BEFORE_DAYS
    tenant_id: pulumi.Input[str] | None = None  # the vault's Entra tenant; the program always sets it


class KeyVaultCertificate(Resource, module="keyvault", name="KeyVaultCertificate"):
    """A certificate created inside Key Vault, exposed as two slots for the app registration (ADR 5)."""

    vault_url: pulumi.Output[str]
    certificate_name: pulumi.Output[str]
    subject: pulumi.Output[str]
    validity_months: pulumi.Output[int]
    renew_before_days: pulumi.Output[int]
    current_version: pulumi.Output[str]
    slot_a: pulumi.Output[dict[str, str]]
    slot_b: pulumi.Output[dict[str, str]]

    def __init__(
        self, resource_name: str, args: KeyVaultCertificateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "vault_url": args.vault_url,
            "certificate_name": args.certificate_name,
            "subject": args.subject,
            "validity_months": args.validity_months,
            "renew_before_days": args.renew_before_days,
            "tenant_id": args.tenant_id,
            "current_version": None,
            "slot_a": None,
            "slot_b": None,
        }
        super().__init__(KeyVaultCertificateProvider(), resource_name, props, opts)
