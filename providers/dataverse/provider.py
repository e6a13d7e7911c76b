"""The Pulumi dynamic provider for Dataverse application users — a thin layer over client + reconcile.

This is the only module of ``providers.dataverse`` that imports Pulumi. Everything it decides comes from the pure
reconcile step; everything it sends goes through the client; it only translates between Pulumi's calls and those.

How the engine runs it (docs/reference/pulumi-dynamic-providers.md):
- The provider instance is pickled by reference (this module is installed), so the instance carries only
  non-secret settings. Clients and credentials are built lazily inside the provider host, once per environment per
  process, and shared by the host's threads (``_clients``, guarded by a lock).
- ``check`` validates and normalises, tolerates unknown values during preview, and returns failures (one line each)
  instead of raising. A name that could disguise another (``models.disguised_name``: a no-break space, two spaces,
  a tab, a zero-width space...) is refused outright. Then it resolves the role and business-unit names against the
  environment, read-only (a ``read_only=True`` client; the catalog is read once per environment per process and
  shared with the writing client), so a typo fails ``pulumi preview`` before any write, naming the environment, the
  role and the closest existing names. It skips that lookup while the environment URL or the business unit is
  unknown (the preview of a new stack), and lets the inputs pass when the environment cannot be read (unreachable,
  throttled, refused, no token): a check fails only on what its inputs say, never on the environment's health, and
  a deploy resolves every name again before its first write. A ``tenant_id`` the credential does not sign in to is a
  failure (``WrongTenant``), found before any request to the environment.
- ``diff`` gets the OLD OUTPUTS; it compares only what the user declares, so a changed serialized provider
  (pulumi/pulumi#12401) never shows as a change, and a ``business_unit`` left out (= the root unit) never shows as a
  change once the user sits in the root unit.
- Every operation first checks ``tenant_id`` (contract: tenant isolation) against the credential's token, before
  its first request to the environment; ``tenant_id`` is kept in the outputs so ``read`` and ``delete`` have it.
- ``create`` adopts an existing application user for the same application (ADR 3) and is safe to retry after any
  failure; ``create`` and ``update`` plan from the environment snapshot (docs/adr/0008) and send ONE request per
  user, shared with the operations the engine runs alongside. ``read`` returns what Dataverse holds now (one
  listing answers a whole refresh) and rewrites the stored inputs so the next preview shows drift as a diff;
  ``delete`` reads the user on its own and revokes access (every role removed, then disabled); it never deletes
  the record. A soft-deleted user of the application stops a create with a one-line ``SoftDeletedUser`` saying how
  to purge it: the deploying identity cannot, and a purge erases the user from the audit history.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
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
from providers._identity import WrongTenant
from providers._origin import https_origin
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import DataverseError, UnknownBusinessUnit, UnknownName
from providers.dataverse.models import RoleCatalog, disguised_name, name_key
from providers.dataverse.reconcile import ActualUser, DesiredUser, ensure, revoke

TYPE_TOKEN = "pulumi-python:dynamic/dataverse:ApplicationUser"
INPUT_KEYS = ("environment_url", "application_id", "security_roles", "business_unit", "disabled", "tenant_id")
REPLACE_KEYS = ("environment_url", "application_id")

CHECK_RETRY_WAIT = 15.0  # seconds the name check may wait on throttling before it lets the inputs pass

_CLIENTS: ProcessClients[DataverseClient] = ProcessClients()
_CHECK_CLIENTS: ProcessClients[DataverseClient] = ProcessClients()


def _client(environment_url: str, max_retry_wait: float, tenant_id: Any = None) -> DataverseClient:
    """One client per environment per provider-host process (the environment snapshot lives in it), after the
    environment's tenant was checked against the credential (before any request to it)."""
    client = _CLIENTS.get(
        (environment_url, max_retry_wait), lambda: DataverseClient(environment_url, max_retry_wait=max_retry_wait)
    )
    if isinstance(tenant_id, str) and tenant_id:
        client.verify_tenant(tenant_id)
    return client


def _check_client(environment_url: str) -> DataverseClient:
    """The read-only client ``check`` resolves names with; it shares the process-wide role catalog."""
    return _CHECK_CLIENTS.get(
        environment_url, lambda: DataverseClient(environment_url, read_only=True, max_retry_wait=CHECK_RETRY_WAIT)
    )


# -- normalisation (check) ------------------------------------------------------------------------------------


def normalise_environment_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the environment's https URL, e.g. https://org.crm11.dynamics.com")
    return https_origin(value, what="the environment URL", example="https://org.crm11.dynamics.com")


def normalise_guid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a GUID such as 00000000-0000-0000-0000-000000000000")
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError:
        raise ValueError(f"must be a GUID such as 00000000-0000-0000-0000-000000000000 (got {value!r})") from None


_PLAIN_NAMES = "names hold single ASCII spaces between words and no invisible or control character"


def normalise_roles(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError("must be a list of security role names")
    names: dict[str, str] = {}  # name_key -> the first spelling declared
    unknowns: list[Any] = []
    for item in value:
        if is_unknown(item):
            unknowns.append(item)
            continue
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"role names must be non-empty strings (got {item!r})")
        disguise = disguised_name(item)
        if disguise is not None:
            raise ValueError(f"role name {item!r} is refused: it {disguise} ({_PLAIN_NAMES})")
        names.setdefault(name_key(item), item)
    return [names[key] for key in sorted(names)] + unknowns


def normalise_business_unit(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a business unit name, or left out for the root business unit")
    disguise = disguised_name(value)
    if disguise is not None:
        raise ValueError(f"name {value!r} is refused: it {disguise} ({_PLAIN_NAMES})")
    return value


def normalise_disabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false (got {value!r})")
    return value


PROPERTIES: Mapping[str, Property] = {
    "environment_url": Property(normalise_environment_url, required=True),
    "application_id": Property(normalise_guid, required=True),
    "security_roles": Property(normalise_roles),
    "business_unit": Property(normalise_business_unit),
    "disabled": Property(normalise_disabled, default=False),
    # The Entra tenant the environment belongs to (contract tenant_id): checked against the credential's token
    # before any request; never a diff key (adding it to an existing resource changes nothing in Dataverse).
    "tenant_id": Property(lambda value: None if value is None else normalise_guid(value)),
}
assert tuple(PROPERTIES) == INPUT_KEYS


def check_inputs(news: Mapping[str, Any]) -> tuple[dict[str, Any], list[CheckFailure]]:
    return check_properties(news, PROPERTIES)


def check_names(inputs: Mapping[str, Any], client_for: Any = None) -> list[CheckFailure]:
    """The declared business unit and roles resolved against the environment, read-only; a failure per name.

    Skipped while the environment URL or the business unit is unknown; role names still unknown are skipped too.
    An environment that cannot be read lets the inputs pass (see the module docstring); ``WrongTenant`` fails.
    """
    url = inputs.get("environment_url")
    unit = inputs.get("business_unit")
    tenant_id = inputs.get("tenant_id")
    if not isinstance(url, str) or is_unknown(url) or is_unknown(unit):
        return []
    names = [r for r in inputs.get("security_roles") or () if isinstance(r, str) and not is_unknown(r)]
    client = (client_for or _check_client)(url)
    try:
        if isinstance(tenant_id, str) and not is_unknown(tenant_id):
            client.verify_tenant(tenant_id)
        failures = _unresolved(client.catalog(), unit, names)
        if failures:
            fresher = client.catalog(after_miss=True)  # a role created since the catalog was read
            failures = _unresolved(fresher, unit, names)
    except WrongTenant as exc:
        return [CheckFailure("tenant_id", str(exc))]
    except DataverseError:
        return []  # could not read the environment: not the inputs' fault, and a deploy resolves every name again
    return failures


def _unresolved(catalog: RoleCatalog, unit_name: Any, roles: Sequence[str]) -> list[CheckFailure]:
    try:
        unit = catalog.business_unit(unit_name if isinstance(unit_name, str) else None)
    except UnknownBusinessUnit as exc:
        return [CheckFailure("business_unit", str(exc))]
    failures: list[CheckFailure] = []
    for name in roles:
        try:
            catalog.role(name, unit)
        except UnknownName as exc:
            failures.append(CheckFailure("security_roles", str(exc)))
    return failures


# -- mapping between Pulumi properties and reconcile's types --------------------------------------------------


def desired_from(props: Mapping[str, Any]) -> DesiredUser:
    return DesiredUser(
        environment_url=normalise_environment_url(props["environment_url"]),
        application_id=normalise_guid(props["application_id"]),
        business_unit=normalise_business_unit(props.get("business_unit")),
        security_roles=frozenset(normalise_roles(props.get("security_roles"))),
        disabled=bool(props.get("disabled", False)),
    )


def outputs_from(
    desired: DesiredUser, actual: ActualUser, *, root: bool, tenant_id: str | None = None
) -> dict[str, Any]:
    """Outputs = the normalised inputs as Dataverse now holds them, plus what only Dataverse knows.

    Inputs and outputs share one namespace in a dynamic resource: ``business_unit`` holds the unit's actual name,
    and ``root_business_unit`` says whether that is the root unit, so that a ``business_unit`` left out (= root)
    never shows as a change once the user sits there (see ``diff_properties``).
    """
    roles = sorted(actual.roles.items(), key=lambda item: (name_key(item[1]), item[0]))
    outputs = {
        "environment_url": desired.environment_url,
        "application_id": desired.application_id,
        "security_roles": [name for _, name in roles],
        "business_unit": actual.business_unit_name,
        "disabled": actual.disabled,
        "systemuser_id": actual.systemuser_id,
        "business_unit_id": actual.business_unit_id,
        "root_business_unit": root,
        "security_role_ids": [role_id for role_id, _ in roles],
        "full_name": actual.full_name,
    }
    if tenant_id:
        outputs["tenant_id"] = tenant_id  # read and delete get the outputs: they check the tenant too
    return outputs


def inputs_from_actual(olds: Mapping[str, Any], actual: ActualUser) -> dict[str, Any]:
    """The inputs that would produce what Dataverse holds now: stored after a refresh so drift shows as a diff."""
    inputs = {
        "environment_url": olds["environment_url"],
        "application_id": olds["application_id"],
        "security_roles": sorted(actual.roles.values(), key=name_key),
        "business_unit": actual.business_unit_name,
        "disabled": actual.disabled,
    }
    if olds.get("tenant_id"):
        inputs["tenant_id"] = olds["tenant_id"]
    return inputs


def _tenant(props: Mapping[str, Any]) -> str | None:
    value = props.get("tenant_id")
    return normalise_guid(value) if isinstance(value, str) and value and not is_unknown(value) else None


def _same_roles(old: Any, new: Any) -> bool:
    if is_unknown(new) or (isinstance(new, list) and any(is_unknown(x) for x in new)):
        return False
    return {name_key(str(x)) for x in (old or [])} == {name_key(str(x)) for x in (new or [])}


def _business_unit_changed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    new = news.get("business_unit")
    if is_unknown(new):
        return True
    if new is None:
        # left out = root: a change only if the user does not sit in the root unit now
        return olds.get("root_business_unit") is False
    old = olds.get("business_unit")
    return old is None or name_key(str(old)) != name_key(str(new))


def diff_properties(olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(changed keys, keys forcing replacement). ``olds`` are the old outputs."""
    changed: list[str] = []
    for key in REPLACE_KEYS:
        new = news.get(key)
        if is_unknown(new) or str(olds.get(key, "")).casefold() != str(new or "").casefold():
            changed.append(key)
    if not _same_roles(olds.get("security_roles"), news.get("security_roles")):
        changed.append("security_roles")
    if _business_unit_changed(olds, news):
        changed.append("business_unit")
    new_disabled = news.get("disabled", False)
    if is_unknown(new_disabled) or bool(olds.get("disabled", False)) != bool(new_disabled):
        changed.append("disabled")
    replaces = [key for key in changed if key in REPLACE_KEYS]
    return changed, replaces


# -- the provider ---------------------------------------------------------------------------------------------


@dataclass
class ApplicationUserProvider(ResourceProvider):
    """Serialized into state by reference: holds only these non-secret settings."""

    max_retry_wait: float = 120.0
    serialize_as_secret_always: bool = field(default=False)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs, failures = check_inputs(news)
        if not failures:
            failures = check_names(inputs)
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed, replaces = diff_properties(olds, news)
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        desired = desired_from(props)
        tenant_id = _tenant(props)
        client = _client(desired.environment_url, self.max_retry_wait, tenant_id)
        actual, _plan = ensure(client, desired)
        root = _sits_in_root(client, actual)
        return CreateResult(actual.systemuser_id, outputs_from(desired, actual, root=root, tenant_id=tenant_id))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        environment_url = normalise_environment_url(props["environment_url"])
        tenant_id = _tenant(props)
        client = _client(environment_url, self.max_retry_wait, tenant_id)
        actual = client.refresh_user(id_)
        if actual is None:
            return ReadResult(None, {})
        inputs = inputs_from_actual(props, actual)
        # as Dataverse holds it: its names are not the declaration's, so they are not checked like one
        held = DesiredUser(
            environment_url=environment_url,
            application_id=normalise_guid(props["application_id"]),
            business_unit=actual.business_unit_name,
            security_roles=frozenset(actual.roles.values()),
            disabled=actual.disabled,
        )
        outs = outputs_from(held, actual, root=_sits_in_root(client, actual), tenant_id=tenant_id)
        return ReadResult(actual.systemuser_id, outs, inputs)

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        desired = desired_from(news)
        tenant_id = _tenant(news)
        client = _client(desired.environment_url, self.max_retry_wait, tenant_id)
        actual, _plan = ensure(client, desired, managed_id=id_)
        root = _sits_in_root(client, actual)
        return UpdateResult(outputs_from(desired, actual, root=root, tenant_id=tenant_id))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        environment_url = normalise_environment_url(props["environment_url"])
        revoke(_client(environment_url, self.max_retry_wait, _tenant(props)), id_)


def _sits_in_root(client: DataverseClient, actual: ActualUser) -> bool:
    """From the catalog the client named the unit with (no request); the cached catalog if the row lacked it."""
    if actual.business_unit_is_root is not None:
        return actual.business_unit_is_root
    return client.catalog().root.id == actual.business_unit_id


# -- the resource ---------------------------------------------------------------------------------------------


@dataclass
class ApplicationUserArgs:
    """What a reviewer reads: one application (client) id, one environment, the exact set of roles."""

    environment_url: pulumi.Input[str]
    application_id: pulumi.Input[str]
    security_roles: pulumi.Input[Sequence[pulumi.Input[str]]] = ()
    business_unit: pulumi.Input[str] | None = None  # name; None = the root business unit
    disabled: pulumi.Input[bool] = False
    tenant_id: pulumi.Input[str] | None = None  # the environment's Entra tenant; the program always sets it


class ApplicationUser(Resource, module="dataverse", name="ApplicationUser"):
    """A Dataverse application user whose business unit, security roles and enabled state are enforced exactly."""

    systemuser_id: pulumi.Output[str]
    environment_url: pulumi.Output[str]
    application_id: pulumi.Output[str]
    business_unit: pulumi.Output[str]
    business_unit_id: pulumi.Output[str]
    security_roles: pulumi.Output[list[str]]
    security_role_ids: pulumi.Output[list[str]]
    disabled: pulumi.Output[bool]
    full_name: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: ApplicationUserArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "environment_url": args.environment_url,
            "application_id": args.application_id,
            "security_roles": list(args.security_roles)
            if isinstance(args.security_roles, Sequence)
            else args.security_roles,
            "business_unit": args.business_unit,
            "disabled": args.disabled,
            "tenant_id": args.tenant_id,
            # outputs, declared so that they are readable as attributes
            "systemuser_id": None,
            "business_unit_id": None,
            "security_role_ids": None,
            "full_name": None,
        }
        super().__init__(ApplicationUserProvider(), resource_name, props, opts)
