"""Errors of the desired-state loader: one line each, naming the file, the key and what is allowed.

A reviewer reads these in a pull request check, so every error says where (file, line when known, key path),
what is wrong and what would be accepted. The loader collects every error of a run and raises them together
(`DesiredStateErrors`), so one run shows everything to fix. Secret values never reach an error: messages are
built from key names and, for non-secret keys only, short excerpts of the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The words about values are shared with the strict YAML reader and the emulator; desired-state modules import
# them from here.
from adp_yaml import DOCUMENT, KeyPath, format_key_path, kind_of, one_line, show

__all__ = [
    "DOCUMENT",
    "DesiredStateError",
    "DesiredStateErrors",
    "KeyPath",
    "format_key_path",
    "kind_of",
    "one_line",
    "show",
]


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
