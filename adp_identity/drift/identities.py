"""The stack-outputs file: each service's application (client) ids, as ``pulumi stack output --json`` prints them.

A service's application id exists only after ``pulumi up`` created its managed identity or app registration; it
is a stack output (``infra/components/service.py``: per service ``client_id`` and, with an app registration,
``app_registration_client_id``; ``dataverse_application_users`` by environment). The drift commands take that
file rather than importing Pulumi. It is read bounded (never more than ``MAX_BYTES + 1`` bytes, whether a file,
``/dev/zero`` or stdin), and every problem is a one-line `DesiredStateError` naming the file, the key and what is
allowed, as the desired-state loader's are.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, NoReturn

from adp_identity.desired.errors import (
    DOCUMENT,
    DesiredStateError,
    DesiredStateErrors,
    KeyPath,
    format_key_path,
    kind_of,
    show,
)
from adp_identity.desired.yamlsafe import MAX_BYTES, MAX_DEPTH, YamlRefused, parse_yaml
from providers.dataverse.models import normalise_guid

__all__ = [
    "MAX_DIGITS",
    "STDIN",
    "DriftInputErrors",
    "Principal",
    "ServiceIdentity",
    "parse_identities",
    "read_bounded",
    "read_identities",
    "refuse",
]

Principal = Literal["managed_identity", "app_registration"]
STDIN = "-"
# Integers in a stack-outputs file are never ids (ids are GUID strings); 5,000 digits would cost the parser
# quadratic time (CPython refuses above 4,300), so anything longer than this is refused before it is converted.
MAX_DIGITS = 40

_IDENTITIES_ALLOWED = "the output of `pulumi stack output --json`: service -> {client_id, app_registration_client_id}"
_GUID_ALLOWED = "an application (client) id GUID"


class DriftInputErrors(DesiredStateErrors):
    """Problems with the identities file, the emulator file or ``--environment-url``; one line each."""


def refuse(errors: Sequence[DesiredStateError]) -> NoReturn:
    raise DriftInputErrors(errors)


@dataclass(frozen=True)
class ServiceIdentity:
    """A service's application ids as ``pulumi up`` made them (the program's stack outputs)."""

    service: str
    client_id: str  # the managed identity's application (client) id
    app_registration_client_id: str | None = None
    # environment short name -> systemuserid the stack manages (output dataverse_application_users), if known
    application_users: Mapping[str, str] = field(default_factory=dict)

    def application_id(self, principal: Principal) -> str | None:
        return self.app_registration_client_id if principal == "app_registration" else self.client_id


# -- reading, bounded -----------------------------------------------------------------------------------------


def read_bounded(
    path: str, source: str, *, allowed: str, limit: int = MAX_BYTES, stdin: BinaryIO | None = None
) -> bytes:
    """At most ``limit`` bytes of ``path`` (``-``: stdin); larger input is refused after reading ``limit + 1``.

    A FIFO, socket or directory is refused before it is opened for reading (a FIFO with no writer would block).
    Character devices are read like files, bounded: ``/dev/zero`` is refused as too large, not read to the end.
    """

    def fail(message: str, what: str = allowed) -> NoReturn:
        refuse([DesiredStateError(source, DOCUMENT, message, what)])

    if path == STDIN:
        data = (stdin or sys.stdin.buffer).read(limit + 1)
    else:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            fail(f"cannot be read ({exc.strerror or type(exc).__name__})", f"a readable {allowed}")
        if stat.S_ISDIR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a socket"
            fail(f"is {kind}, not a file", f"{allowed} in a regular file, or - for stdin")
        try:
            with open(path, "rb") as stream:
                data = stream.read(limit + 1)
        except OSError as exc:
            fail(f"cannot be read ({exc.strerror or type(exc).__name__})", f"a readable {allowed}")
    if len(data) > limit:
        fail(f"is larger than {limit // 1024} KiB", f"at most {limit // 1024} KiB")
    return data


def read_identities(path: str, *, stdin: BinaryIO | None = None) -> dict[str, ServiceIdentity]:
    """`parse_identities` of ``path`` (``-`` for stdin), read bounded."""
    source = "(stdin)" if path == STDIN else path
    return parse_identities(read_bounded(path, source, allowed="JSON or YAML file", stdin=stdin), source)


# -- parsing ----------------------------------------------------------------------------------------------------


def parse_identities(data: bytes, source: str) -> dict[str, ServiceIdentity]:
    """Service name -> its ids, from JSON or YAML bytes; `DriftInputErrors` lists every problem.

    Only ``client_id``, ``app_registration_client_id`` and ``dataverse_application_users`` are read; other stack
    outputs (``identity_name``, ``principal_id``, ``tenant_id``, ...) are accepted and ignored.
    """
    document, lines = parse_document(data, source, allowed=_IDENTITIES_ALLOWED)
    errors: list[DesiredStateError] = []

    def error(path: KeyPath, message: str, allowed: str) -> None:
        line = lines.get(path) if lines else None
        errors.append(DesiredStateError(source, format_key_path(path), message, allowed, line))

    def guid(path: KeyPath, value: Any) -> str | None:
        if not isinstance(value, str):
            error(path, f"is {kind_of(value)}", _GUID_ALLOWED)
            return None
        try:
            return normalise_guid(value)
        except ValueError:
            error(path, f"{show(value)} is not a GUID", _GUID_ALLOWED)
            return None

    identities: dict[str, ServiceIdentity] = {}
    for service, outputs in document.items():
        if not isinstance(outputs, Mapping):
            error((service,), f"is {kind_of(outputs)}", "the service's stack outputs (a mapping)")
            continue
        if "client_id" not in outputs:
            error((service,), "has no client_id", "client_id: the managed identity's application (client) id")
            continue
        client_id = guid((service, "client_id"), outputs["client_id"])
        app_id = None
        if outputs.get("app_registration_client_id") is not None:
            app_id = guid((service, "app_registration_client_id"), outputs["app_registration_client_id"])
        users: dict[str, str] = {}
        raw_users = outputs.get("dataverse_application_users") or {}
        if not isinstance(raw_users, Mapping):
            error(
                (service, "dataverse_application_users"),
                f"is {kind_of(raw_users)}",
                "environment -> systemuserid (a mapping)",
            )
        else:
            for environment, user_id in raw_users.items():
                checked = guid((service, "dataverse_application_users", str(environment)), user_id)
                if checked is not None:
                    users[str(environment)] = checked
        if client_id is not None:
            identities[service] = ServiceIdentity(service, client_id, app_id, users)
    if errors:
        refuse(errors)
    return identities


def parse_document(data: bytes, source: str, *, allowed: str) -> tuple[dict[str, Any], Mapping[KeyPath, int] | None]:
    """The top-level mapping of JSON (first: Pulumi prints JSON) or strict YAML bytes, and YAML's key lines.

    Refused in one line each: more than ``MAX_BYTES``, empty, invalid UTF-8, invalid JSON, a duplicate key,
    nesting deeper than ``MAX_DEPTH``, an integer of more than ``MAX_DIGITS`` digits, a top level that is not a
    mapping; YAML goes through the project's strict reader, which refuses the same.
    """

    def fail(message: str, what: str = allowed, line: int | None = None) -> NoReturn:
        refuse([DesiredStateError(source, DOCUMENT, message, what, line)])

    if len(data) > MAX_BYTES:
        fail(f"is larger than {MAX_BYTES // 1024} KiB ({len(data)} bytes)", f"at most {MAX_BYTES // 1024} KiB")
    if not data.strip():
        fail("is empty")
    if data.lstrip().startswith((b"{", b"[")):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            fail(f"invalid UTF-8 (byte 0x{data[exc.start]:02x})", "UTF-8 JSON or YAML text")
        depth = _json_depth(text)
        if depth > MAX_DEPTH:
            fail(f"nested deeper than {MAX_DEPTH} levels", "the shape of `pulumi stack output --json`")
        try:
            value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_bounded_int)
        except json.JSONDecodeError as exc:
            fail(f"not valid JSON ({exc.msg})", line=exc.lineno)
        except _DuplicateKey as exc:
            fail(f"duplicate key {show(exc.key)}", "each key once")
        except _TooManyDigits as exc:
            fail(f"an integer of {exc.digits} digits", f"numbers of at most {MAX_DIGITS} digits")
        if not isinstance(value, dict):
            fail(f"top level is {kind_of(value)}, not a mapping", line=1)
        return value, None
    try:
        document = parse_yaml(data)
    except YamlRefused as exc:
        fail(exc.message, exc.allowed, exc.line)
    return document.data, document.lines


def _json_depth(text: str) -> int:
    """How deeply ``[`` / ``{`` nest outside strings: checked before parsing, so no parser recursion is risked."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _TooManyDigits(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _TooManyDigits(digits)
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
