"""Pydantic validation errors -> one-line `DesiredStateError`s a reviewer can act on.

Pydantic says ``Extra inputs are not permitted`` at ``('dataverse', 0, 'security_role')``; a reviewer needs
``dataverse[0].security_role: unknown key, did you mean 'security_roles'?; allowed: environment, ...``.
The translation walks the model classes along the error location to find the keys a mapping knows, the rule
a value breaks (`constraints.TextRule` and friends carry their own ``allowed`` text) or the field's
description, and looks up the line of the key in the YAML document.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from adp_identity.desired.constraints import ERROR_TYPE
from adp_identity.desired.errors import DesiredStateError, KeyPath, format_key_path, kind_of, show
from adp_identity.desired.yamlsafe import YamlDocument

_KEY_MARKER = "[key]"
# What to write when a required key is missing: (model, key) -> the fix (issue 11: say what to add).
MISSING_HINTS: dict[tuple[str, str], str] = {
    ("ServiceSpec", "service"): "add `service: <service>` (the file name without .yaml)",
    ("ServiceSpec", "team"): "add `team: <owning team>`",
    ("Federation", "namespace"): "add `namespace: <Kubernetes namespace>`",
    ("Federation", "service_account"): "add `service_account: <Kubernetes service account>`",
    ("DataverseAccess", "environment"): "add `environment: <environment short name>`",
    ("DataverseAccess", "security_roles"): "add `security_roles: [<role>, ...]`",
}
_TYPE_WORDS = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "a whole number",
    "float_type": "a number",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


@dataclass(frozen=True)
class _Site:
    """What the walk along an error location found: the owning model and the annotation at the location."""

    model: type[BaseModel] | None  # the model whose key the location ends on
    field: FieldInfo | None
    annotation: Any  # the (unwrapped) annotation at the location, None when unknown


def translate(
    exc: ValidationError,
    root: type[BaseModel],
    *,
    file: str,
    prefix: KeyPath = (),
    document: YamlDocument | None = None,
) -> list[DesiredStateError]:
    """One `DesiredStateError` per pydantic error, keyed ``prefix + location`` and placed at its YAML line."""
    return [_one(error, root, file, prefix, document) for error in exc.errors(include_url=False)]


def _one(
    error: ErrorDetails, root: type[BaseModel], file: str, prefix: KeyPath, document: YamlDocument | None
) -> DesiredStateError:
    raw_loc: tuple[str | int, ...] = tuple(error["loc"])
    is_key = _KEY_MARKER in raw_loc
    loc: KeyPath = tuple(part for part in raw_loc if part != _KEY_MARKER)
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    site = _walk(root, raw_loc)

    rule: str | None = None
    if kind == ERROR_TYPE:
        if "key" in ctx:
            loc = (*loc, str(ctx["key"]))
        message, allowed = str(ctx["problem"]), str(ctx["allowed"])
        rule = str(ctx["rule"]) if "rule" in ctx else None
    elif kind == "extra_forbidden":
        parent = _walk(root, raw_loc[:-1]).annotation
        known = list(parent.model_fields) if _is_model(parent) else []
        wrong = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(wrong, known, n=1, cutoff=0.6)
        message = f"unknown key, did you mean '{close[0]}'?" if close else "unknown key"
        allowed = ", ".join(known) if known else "no other keys"
    elif kind == "missing":
        hint = MISSING_HINTS.get((site.model.__name__, str(loc[-1]))) if site.model is not None and loc else None
        message = f"required key is missing: {hint}" if hint else "required key is missing"
        allowed = _allowed(site) or "a value"
    elif kind == "literal_error":
        message = f"{show(value)} is not allowed"
        allowed = str(ctx.get("expected", "")) or _allowed(site) or "see the schema"
    elif kind in _TYPE_WORDS:
        message = f"expected {_TYPE_WORDS[kind]}, got {kind_of(value)}"
        if isinstance(value, str | int | float | bool):
            message += f" {show(value)}"
        # the value's rule where the field has one, else the type itself: a field's prose description says what
        # the key is for, not what may be written there
        allowed = _rule_of(site.annotation) or _TYPE_WORDS[kind]
    elif kind in ("greater_than_equal", "greater_than"):
        message = f"{show(value)} is too small"
        allowed = _allowed(site) or f"at least {ctx.get('ge', ctx.get('gt'))}"
    elif kind in ("less_than_equal", "less_than"):
        message = f"{show(value)} is too large"
        allowed = _allowed(site) or f"at most {ctx.get('le', ctx.get('lt'))}"
    elif kind == "too_short":
        minimum = ctx.get("min_length", 1)
        message = "must not be empty" if minimum == 1 else f"needs at least {minimum} entries"
        allowed = _allowed(site) or f"at least {minimum} entries"
    elif kind == "too_long":
        message = f"has more than {ctx.get('max_length')} entries"
        allowed = _allowed(site) or f"at most {ctx.get('max_length')} entries"
    else:  # a pydantic error this table does not know: keep its own words
        message = str(error.get("msg", kind))
        allowed = _allowed(site) or "see the schema"

    if is_key:
        message = f"key {message}" if kind == ERROR_TYPE else f"key: {message}"
    full = (*prefix, *loc)
    line = document.line_of(full) if document is not None else None
    return DesiredStateError(file, format_key_path(full), message, allowed, line, rule=rule)


def _allowed(site: _Site) -> str:
    """The rule's own ``allowed`` text, else the field's description."""
    rule = _rule_of(site.annotation)
    if rule is not None:
        return rule
    if site.field is not None and site.field.description:
        return site.field.description
    return ""


def _rule_of(annotation: Any) -> str | None:
    for meta in typing.get_args(annotation)[1:] if typing.get_origin(annotation) is typing.Annotated else ():
        func = getattr(meta, "func", None)
        allowed = getattr(func, "allowed", None)
        if isinstance(allowed, str):
            return allowed
    return None


def _walk(root: type[BaseModel], loc: Sequence[str | int]) -> _Site:
    """Follow `loc` through model fields, tuples, dicts (values, or keys after ``[key]``) and optionals."""
    annotation: Any = root
    model: type[BaseModel] | None = None
    field: FieldInfo | None = None
    for part in loc:
        current = _strip_optional(annotation)
        if _is_model(current):
            if not isinstance(part, str) or part not in current.model_fields:
                return _Site(current, None, None)
            model, field = current, current.model_fields[part]
            annotation = _field_annotation(field)
            continue
        bare = _unannotated(current)
        origin = typing.get_origin(bare)
        args = typing.get_args(bare)
        if origin in (tuple, list) and args and isinstance(part, int):
            annotation = args[0]
        elif origin is dict and len(args) == 2:
            annotation = args[0] if part == _KEY_MARKER else args[1]
        else:
            return _Site(model, field, None)
        field = None
    return _Site(model, field, _strip_optional(annotation))


def _field_annotation(field: FieldInfo) -> Any:
    """A field's annotation with its own metadata (rules) re-attached, as ``Annotated[...]``."""
    if field.metadata:
        return typing.Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X`` (also inside ``Annotated``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    if origin is typing.Annotated:
        inner = typing.get_args(annotation)[0]
        stripped = _strip_optional(inner)
        if stripped is not inner and typing.get_origin(stripped) is not typing.Annotated:
            return typing.Annotated[(stripped, *typing.get_args(annotation)[1:])]
    return annotation


def _unannotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
