"""``export``: the service files that would declare what a stack's environments hold today.

Every application user read (``application_users()``: ceil(N / 5000) GETs per environment, nothing else) maps to
a service in this order:

1. by client id, when the stack outputs are given (``--identities``): ``client_id`` is the service's managed
   identity, ``app_registration_client_id`` its app registration;
2. by ADP's identity naming: a managed identity is named ``{prefix}-{service}`` (``desired/naming.py``; the prefix
   from the tenant settings' naming), and an application user's full name is its identity's name;
3. by the display name of an app registration a service file already declares (``ADP-<AREA>-<Service>``).

Each mapped user becomes one ``dataverse`` entry: its business unit (left out for the root unit in a new entry)
and its roles exactly as Dataverse names them, privileged ones included, so that ``validate``'s production policy
flags them in the pull request. A service holds one application user per environment: a second user for the same
service and environment is listed, not written. Users that map to no service, or hold no role (a service entry
needs one), are listed with their roles. Existing files are merged by minimal edits (`servicefile`); new files
carry what Dataverse cannot say (the team, a guess from the business unit; the federations) as comments to check.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adp_identity.desired import naming
from adp_identity.desired.constraints import DISPLAY_NAME, KEBAB_NAME
from adp_identity.desired.schema import DesiredState
from adp_identity.drift.identities import Principal, ServiceIdentity
from adp_identity.drift.reading import EnvironmentReading
from adp_identity.drift.servicefile import AccessEntry, MergeRefused, merge_service_file, new_service_file
from adp_identity.drift.targets import ServiceFiles
from providers.dataverse.models import ActualUser, name_key

__all__ = [
    "ExportResult",
    "ExportedUser",
    "FileChange",
    "MergeRefused",
    "Unmapped",
    "export",
    "map_users",
    "write_changes",
]


@dataclass(frozen=True)
class ExportedUser:
    service: str
    environment: str  # stack short name
    principal: Principal
    user: ActualUser
    mapped_by: str  # how the user was matched, for the listing

    def entry(self) -> AccessEntry:
        roles = tuple(sorted(dict.fromkeys(self.user.roles.values()), key=name_key))
        return AccessEntry(
            environment=self.environment,
            business_unit=self.user.business_unit_name or "",
            security_roles=roles,
            disabled=self.user.disabled,
            principal=self.principal,
            root=bool(self.user.business_unit_is_root),
        )


@dataclass(frozen=True)
class Unmapped:
    environment: str
    user: ActualUser
    reason: str


@dataclass(frozen=True)
class FileChange:
    service: str
    path: Path
    display: str
    before: str | None  # None: a new file
    after: str
    environments: tuple[str, ...]

    @property
    def status(self) -> str:
        if self.before is None:
            return "new"
        return "unchanged" if self.before == self.after else "merged"


@dataclass(frozen=True)
class ExportResult:
    exported: tuple[ExportedUser, ...]
    unmapped: tuple[Unmapped, ...]
    changes: tuple[FileChange, ...]
    refused: tuple[str, ...]  # files that could not be merged safely (one line each)
    read: Mapping[str, int]  # environment -> application users read


def _valid(rule: object, value: str) -> bool:
    try:
        rule(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


def map_users(
    state: DesiredState,
    readings: Iterable[EnvironmentReading],
    identities: Mapping[str, ServiceIdentity] | None = None,
) -> tuple[list[ExportedUser], list[Unmapped]]:
    """Each listed application user -> (service, principal), or the reason it maps to none."""
    by_client: dict[str, tuple[str, Principal, str]] = {}
    for service, identity in sorted((identities or {}).items()):
        by_client.setdefault(identity.client_id, (service, "managed_identity", "client_id"))
        if identity.app_registration_client_id:
            by_client.setdefault(
                identity.app_registration_client_id, (service, "app_registration", "app_registration_client_id")
            )
    app_names: dict[str, str] = {}
    for service, spec in sorted(state.services.items()):
        if spec.app_registration is not None:
            display = spec.app_registration.display_name or naming.app_registration_display_name(service)
            app_names.setdefault(name_key(display), service)
    prefix = state.tenant.naming.identity_prefix + "-"
    exported: list[ExportedUser] = []
    unmapped: list[Unmapped] = []
    for reading in readings:
        environment = reading.environment.name
        taken: dict[str, ExportedUser] = {}
        candidates: list[ExportedUser] = []
        for user in sorted(
            reading.application_users or (), key=lambda u: (name_key(u.full_name or ""), u.systemuser_id)
        ):
            found = by_client.get((user.application_id or "").lower())
            name = (user.full_name or "").strip()
            if found is not None:
                service, principal, how = found
                candidates.append(ExportedUser(service, environment, principal, user, f"--identities {how}"))
            elif name.lower().startswith(prefix) and _valid(KEBAB_NAME, name.lower()[len(prefix) :]):
                service = name.lower()[len(prefix) :]
                candidates.append(
                    ExportedUser(service, environment, "managed_identity", user, f"identity name {prefix}{service}")
                )
            elif name_key(name) in app_names:
                candidates.append(
                    ExportedUser(
                        app_names[name_key(name)], environment, "app_registration", user, "app registration name"
                    )
                )
            else:
                unmapped.append(Unmapped(environment, user, f"no service: not named {prefix}<service>"))
        existing = _existing_principals(state, environment)
        # a service's principal as its file declares it first, then managed identities, then by name
        candidates.sort(
            key=lambda c: (c.service, existing.get(c.service) != c.principal, c.principal != "managed_identity")
        )
        for candidate in candidates:
            if not candidate.user.roles:
                unmapped.append(
                    Unmapped(environment, candidate.user, f"maps to {candidate.service} but holds no security role")
                )
            elif candidate.service in taken:
                other = taken[candidate.service]
                unmapped.append(
                    Unmapped(
                        environment,
                        candidate.user,
                        f"maps to {candidate.service}, which already takes {other.user.full_name!r} here "
                        "(one application user per service and environment)",
                    )
                )
            else:
                taken[candidate.service] = candidate
                exported.append(candidate)
    return exported, unmapped


def _existing_principals(state: DesiredState, environment: str) -> dict[str, str]:
    return {
        service: access.principal
        for service, spec in state.services.items()
        for access in spec.dataverse
        if access.environment == environment
    }


def _team_guess(service: str, entries: Sequence[AccessEntry]) -> tuple[str, str]:
    for entry in entries:
        if not entry.root and _valid(KEBAB_NAME, entry.business_unit):
            return entry.business_unit, f"guessed from business unit {entry.business_unit!r}: check it"
    area = service.split("-", 1)[0]
    return area, "guessed from the service name: check it"


def export(
    state: DesiredState,
    stacks_dir: Path,
    readings: Sequence[EnvironmentReading],
    identities: Mapping[str, ServiceIdentity] | None = None,
) -> ExportResult:
    """What exporting ``readings`` into the stack's service files gives: every file's text before and after."""
    exported, unmapped = map_users(state, readings, identities)
    files = ServiceFiles(stacks_dir, state.stack)
    by_service: dict[str, list[ExportedUser]] = {}
    for user in exported:
        by_service.setdefault(user.service, []).append(user)
    changes: list[FileChange] = []
    refused: list[str] = []
    for service, users in sorted(by_service.items()):
        entries = [user.entry() for user in users]
        path, display = files.path(service), files.display(service)
        app_users = [u for u in users if u.principal == "app_registration"]
        display_name = None
        if app_users and app_users[0].user.full_name and _valid(DISPLAY_NAME, app_users[0].user.full_name):
            display_name = app_users[0].user.full_name
        environments = tuple(user.environment for user in users)
        if service in state.services:
            try:
                before = path.read_text(encoding="utf-8")
                after = merge_service_file(before, entries, source=display, app_registration_display_name=display_name)
            except (OSError, UnicodeDecodeError) as exc:
                refused.append(f"{display}: cannot be read ({type(exc).__name__}); nothing was written to it")
                continue
            except MergeRefused as exc:
                refused.append(f"{exc}; nothing was written to it")
                continue
            changes.append(FileChange(service, path, display, before, after, environments))
        else:
            team, note = _team_guess(service, entries)
            text = new_service_file(
                service,
                team,
                entries,
                team_note=note,
                app_registration=bool(app_users),
                app_registration_display_name=display_name,
            )
            changes.append(FileChange(service, path, display, None, text, environments))
    read = {r.environment.name: len(r.application_users or ()) for r in readings if r.application_users is not None}
    return ExportResult(tuple(exported), tuple(unmapped), tuple(changes), tuple(refused), read)


def write_changes(changes: Iterable[FileChange]) -> list[FileChange]:
    """Write every changed file atomically (a temporary file in the same directory, then a rename); returns them.

    The temporary file is created with ``O_CREAT | O_EXCL`` under a random name (``tempfile.mkstemp``), so a name
    another user placed beforehand (or a symlink) is never written through.
    """
    written: list[FileChange] = []
    for change in changes:
        if change.status == "unchanged":
            continue
        change.path.parent.mkdir(parents=True, exist_ok=True)
        mode = change.path.stat().st_mode & 0o777 if change.path.exists() else 0o644
        descriptor, temporary = tempfile.mkstemp(dir=change.path.parent, prefix=f".{change.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
                handle.write(change.after)
            os.chmod(temporary, mode)
            os.replace(temporary, change.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(change)
    return written
