"""Errors of the desired-state loader: one line each, naming the file, the key and what is allowed.

A reviewer reads these in a pull request check, so every error says where (file, line when known, key path),
what is wrong and what would be accepted. The loader collects every error of a run and raises them together
(`DesiredStateErrors`), so one run shows everything to fix. Secret values never reach an error: messages are
built from key names and, for non-secret keys only, short excerpts of the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str | int, ...]

DOCUMENT = "(document)"  # the key path of an error about a whole file
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_SHOW_MAX = 60


def format_key_path(path: Sequence[str | int]) -> str:
    """``("dataverse", 0, "security_roles")`` -> ``dataverse[0].security_roles``; ``()`` -> ``(document)``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or DOCUMENT


def one_line(text: str) -> str:
    """Collapse line breaks and control characters so that an error always stays on one line."""
    return _CONTROL.sub(" ", text).strip()


def show(value: Any) -> str:
    """A short, one-line rendering of a (non-secret) value for an error message."""
    if isinstance(value, str):
        text = value if len(value) <= _SHOW_MAX else value[: _SHOW_MAX - 3] + "..."
        return "'" + _CONTROL.sub(" ", text) + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def kind_of(value: Any) -> str:
    """The YAML word for the kind of a value: what a user wrote, not the Python type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


@dataclass(frozen=True)
class DesiredStateError:
    """One thing wrong in the desired state: ``<file>[:<line>]: <key.path>: <what is wrong>; allowed: <...>``."""

    file: str  # path as shown to the user, e.g. "stacks/defradev/ffc-pay-web.yaml"
    key_path: str  # e.g. "dataverse[0].security_roles" or "(document)"
    message: str  # what is wrong
    allowed: str  # what would be accepted
    line: int | None = None  # 1-based line in the file, when known

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return one_line(f"{where}: {self.key_path}: {self.message}; allowed: {self.allowed}")


class DesiredStateErrors(Exception):
    """Every error of one load, in file order. ``str()`` is one line per error."""

    def __init__(self, errors: Iterable[DesiredStateError], *, files_checked: int = 0) -> None:
        self.errors: tuple[DesiredStateError, ...] = tuple(errors)
        self.files_checked = files_checked
        super().__init__("\n".join(str(error) for error in self.errors))

    def __len__(self) -> int:
        return len(self.errors)
