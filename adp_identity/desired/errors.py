"""Errors of the desired-state loader: one line each, naming the file, the key and what is allowed.

A reviewer reads these in a pull request check, so every error says where (file, line when known, key path),
what is wrong and what would be accepted. The loader collects every error of a run and raises them together
(`DesiredStateErrors`), so one run shows everything to fix. Secret values never reach an error: messages are
built from key names and, for non-secret keys only, short excerpts of the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

# The words about values are shared with the strict YAML reader and the emulator; desired-state modules import
# them from here.
from adp_yaml import DOCUMENT, KeyPath, kind_of, one_line, show
from adp_yaml import format_key_path as _format_key_path

__all__ = [
    "DOCUMENT",
    "DesiredStateError",
    "DesiredStateErrors",
    "KeyPath",
    "Severity",
    "format_key_path",
    "kind_of",
    "one_line",
    "show",
]

Severity = Literal["error", "warning"]
_KEY_EXCERPT = 150  # characters of one key shown in a key path (the longest secret config key is 147)


def format_key_path(path: Sequence[str | int]) -> str:
    """``dataverse[0].security_roles``; each key cut to a short excerpt, so that a file that is not a desired-state
    file (a mistaken symlink target, a log) can never be echoed line by line as "unknown keys"."""
    short = [p if isinstance(p, int) or len(p) <= _KEY_EXCERPT else p[: _KEY_EXCERPT - 3] + "..." for p in path]
    return _format_key_path(short)


@dataclass(frozen=True)
class DesiredStateError:
    """One thing wrong in the desired state: ``<file>[:<line>]: <key.path>: <what is wrong>; allowed: <...>``."""

    file: str  # path as shown to the user, e.g. "stacks/defradev/ffc-pay-web.yaml"
    key_path: str  # e.g. "dataverse[0].security_roles" or "(document)"
    message: str  # what is wrong
    allowed: str  # what would be accepted
    line: int | None = None  # 1-based line in the file, when known
    rule: str | None = None  # the platform rule (adp_identity.rules) this error enforces, if any
    subject: str | None = None  # what an exception would name: <service>, <service>/<environment> or *
    severity: Severity = "error"
    waivable: bool = False  # a reviewed exception (stacks/policy-exceptions.yaml) may waive it
    waived_by: str | None = None  # "stacks/policy-exceptions.yaml:7, approved by ... until ...: reason"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        label = "waived: " if self.waived_by else "warning: " if self.severity == "warning" else ""
        text = f"{where}: {self.key_path}: {label}{self.message}; allowed: {self.allowed}"
        if self.rule:
            text += f" [rule {self.rule}]"
        if self.waived_by:
            text += f" (exception {self.waived_by})"
        return one_line(text)

    def as_warning(self) -> DesiredStateError:
        return replace(self, severity="warning")


class DesiredStateErrors(Exception):
    """Every error of one load, in file order. ``str()`` is one line per error (warnings are kept apart)."""

    def __init__(
        self,
        errors: Iterable[DesiredStateError],
        *,
        files_checked: int = 0,
        warnings: Iterable[DesiredStateError] = (),
        waived: Iterable[DesiredStateError] = (),
    ) -> None:
        self.errors: tuple[DesiredStateError, ...] = tuple(errors)
        self.warnings: tuple[DesiredStateError, ...] = tuple(warnings)
        self.waived: tuple[DesiredStateError, ...] = tuple(waived)
        self.files_checked = files_checked
        super().__init__("\n".join(str(error) for error in self.errors))

    def __len__(self) -> int:
        return len(self.errors)
