"""The Pulumi dynamic provider for app-registration certificates created inside Key Vault (ADR 4, ADR 5).

This is the only module of ``providers.keyvault`` that imports Pulumi. How each call behaves:

- ``check`` reduces ``vault_url`` to its https origin and validates ``certificate_name`` (Key Vault's rule: 1-127
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

Nothing secret is on the provider instance (it is pickled into the state by reference): clients and credentials
are built inside the provider host, once per vault per process, and shared by its threads.
"""

from __future__ import annotations

import datetime as dt
import re
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
from providers.keyvault.client import KeyVaultCertificatesClient, vault_origin
from providers.keyvault.errors import CertificateNotFound
from providers.keyvault.models import CertificatePolicy, CertificateVersion
from providers.keyvault.slots import (
    SLOT_KEYS,
    Slot,
    Slots,
    in_renewal_window,
    newest,
    renewal_due,
    shortest_days,
    slot_to_rotate,
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
ADOPT_LOOKBACK = 10  # versions inspected (newest first) when adopting existing ones
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


def now() -> dt.datetime:
    """The provider's clock (tests replace it in-process)."""
    return dt.datetime.now(dt.UTC)


_CLIENTS: ProcessClients[KeyVaultCertificatesClient] = ProcessClients()


def _client(vault_url: str) -> KeyVaultCertificatesClient:
    """One client per vault per provider-host process (the token cache is shared by all of them)."""
    return _CLIENTS.get(vault_url, lambda: KeyVaultCertificatesClient(vault_url))


# -- normalisation (check) ------------------------------------------------------------------------------------


def normalise_vault_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the vault's https URL, e.g. https://sndadpinfkv1401.vault.azure.net")
    parts = urlsplit(value.strip())
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        return vault_origin(value)
    except ValueError:
        raise ValueError(
            f"must be an https URL (got {value!r}), e.g. https://sndadpinfkv1401.vault.azure.net"
        ) from None


def normalise_certificate_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
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

    def matches(self, version: CertificateVersion) -> bool:
        subject = version.subject()
        return subject is not None and subject == x509.Name.from_rfc4514_string(self.subject)


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
    """CRUD of one Key Vault certificate held as two slots (see the module docstring). Holds no state."""

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
        client = _client(desired.vault_url)
        name = desired.certificate_name
        pending = client.get_operation(name)
        if pending is not None and pending.in_progress:
            client.wait_for_operation(name)
        slots = self._adopt(client, desired)
        for key in SLOT_KEYS:
            if slots[key] is None:
                slots[key] = Slot.of(client.create_version(name, desired.policy))
        current = newest(slots)
        return CreateResult(desired.id, _outputs(desired, slots, current.version if current else None))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        vault_url, name = _split_id(id_, props)
        client = _client(vault_url)
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
            }
        )
        if imported:
            slots = self._newest_enabled(client, desired, latest)
        else:
            slots = self._live_slots(client, name, props, latest)
        outs = _outputs(desired, slots, _current(latest, slots))
        return ReadResult(desired.id, outs, desired.inputs())

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        desired = DesiredCertificate.of(news)
        client = _client(desired.vault_url)
        name = desired.certificate_name
        latest = client.get_certificate(name)
        slots = self._live_slots(client, name, olds, latest)
        policy_changed = any(_changed(k, olds.get(k), news.get(k)) for k in NEW_VERSION_KEYS)
        empty = [k for k in SLOT_KEYS if slots[k] is None]
        if empty:
            for key in empty:
                slots[key] = Slot.of(client.create_version(name, desired.policy))
        elif policy_changed or renewal_due(slots, desired.renew_before_days, now()):
            slots[slot_to_rotate(slots)] = Slot.of(client.create_version(name, desired.policy))
        current = newest(slots)
        return UpdateResult(_outputs(desired, slots, current.version if current else None))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        vault_url, name = _split_id(id_, props)
        client = _client(vault_url)
        for version in client.list_versions(name):
            if version.enabled:
                try:
                    client.set_enabled(name, version.version, False)
                except CertificateNotFound:
                    continue

    # -- helpers --------------------------------------------------------------------------------------------
    def _adopt(self, client: KeyVaultCertificatesClient, desired: DesiredCertificate) -> Slots:
        """The newest versions already in the vault that this resource can own (at most two, oldest in slot a).

        Walks from the newest version down and stops at the first that cannot be used, so whatever is adopted
        includes the version the workload reads.
        """
        name = desired.certificate_name
        try:
            latest = client.get_certificate(name)
        except CertificateNotFound:
            return {key: None for key in SLOT_KEYS}
        adopted: list[Slot] = []
        for version in _newest_first(client, name, latest)[:ADOPT_LOOKBACK]:
            full = version if version.cer is not None else client.get_certificate(name, version.version)
            usable = (
                full.enabled
                and full.issued
                and desired.matches(full)
                and not in_renewal_window(Slot.of(full), desired.renew_before_days, now())
            )
            if not usable:
                break
            adopted.append(Slot.of(full))
            if len(adopted) == 2:
                break
        adopted.reverse()  # oldest first: slot a, then slot b, as create fills them
        slots: Slots = {key: None for key in SLOT_KEYS}
        for key, slot in zip(SLOT_KEYS, adopted, strict=False):
            slots[key] = slot
        return slots

    def _newest_enabled(
        self, client: KeyVaultCertificatesClient, desired: DesiredCertificate, latest: CertificateVersion
    ) -> Slots:
        """On import (no stored slots): the two newest enabled, issued, unexpired versions."""
        found: list[Slot] = []
        for version in _newest_first(client, desired.certificate_name, latest)[:ADOPT_LOOKBACK]:
            if not (version.enabled and version.issued) or (version.not_after and version.not_after <= now()):
                continue
            full = (
                version
                if version.cer is not None
                else client.get_certificate(desired.certificate_name, version.version)
            )
            found.append(Slot.of(full))
            if len(found) == 2:
                break
        found.reverse()
        slots: Slots = {key: None for key in SLOT_KEYS}
        for key, slot in zip(SLOT_KEYS, found, strict=False):
            slots[key] = slot
        return slots

    def _live_slots(
        self,
        client: KeyVaultCertificatesClient,
        name: str,
        stored: Mapping[str, Any],
        latest: CertificateVersion,
    ) -> Slots:
        """The stored slots as the vault has them now, with a newer out-of-band version taking the older slot."""
        slots: Slots = {}
        for key, slot in slots_from_outputs(stored).items():
            if slot is None:
                slots[key] = None
                continue
            try:
                version = latest if latest.version == slot.version else client.get_certificate(name, slot.version)
            except CertificateNotFound:
                slots[key] = None
                continue
            slots[key] = Slot.of(version) if version.enabled and version.issued else None
        held = {s.version for s in slots.values() if s is not None}
        if latest.enabled and latest.issued and latest.version not in held:
            slots[slot_to_rotate(slots)] = Slot.of(latest)
        return slots


def _newest_first(
    client: KeyVaultCertificatesClient, name: str, latest: CertificateVersion
) -> list[CertificateVersion]:
    """The vault's latest version, then the others by creation time, newest first.

    ``created`` has one-second resolution: on a tie the later position in the listing counts as newer.
    """
    others = [v for v in reversed(client.list_versions(name)) if v.version != latest.version]
    others.sort(key=lambda v: v.created or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
    return [latest, *others]


def _current(latest: CertificateVersion, slots: Slots) -> str | None:
    """What the workload reads: the vault's latest issued version (the newest slot while one is pending)."""
    if latest.issued:
        return latest.version
    slot = newest(slots)
    return slot.version if slot else None


def _split_id(id_: str, props: Mapping[str, Any]) -> tuple[str, str]:
    """(vault origin, certificate name) from the stored inputs, else from the id ``<vault>/certificates/<name>``."""
    if props.get("vault_url") and props.get("certificate_name"):
        return normalise_vault_url(props["vault_url"]), str(props["certificate_name"])
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
