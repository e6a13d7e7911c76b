"""Reviewed exceptions to the rules: ``stacks/policy-exceptions.yaml``.

An exception waives ONE rule for ONE subject in ONE stack, names who approved it and until when, and says why::

    exceptions:
      - rule: no-privileged-role-in-production
        stack: defra
        subject: ffc-pay-batch/prd        # a service, <service>/<environment>, a Pulumi resource name, or *
        approved_by: jane.doe@defra.gov.uk # an e-mail address or @github-handle
        expires: 2026-09-30               # YYYY-MM-DD, at most a year ahead; expired = an error
        reason: one-off data migration (ADP-1234)

The file sits in ``stacks/`` so that it is reviewed like every other change to the desired state (the
repository's CODEOWNERS can require the platform team on it). Both front ends read it: `adp-identity validate`
reports a waived finding as waived (with the approver and the date), and the policy pack does not report it. An
expired exception waives nothing: validate reports it as an error, and the finding it covered comes back in both.

A subject matches the finding's subject exactly or as a prefix followed by ``/`` (``ffc-pay-batch`` covers
``ffc-pay-batch/prd``); ``*`` covers every subject of the stack.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from adp_yaml import KeyPath, kind_of, show

EXCEPTIONS_FILE = "policy-exceptions.yaml"
MAX_DAYS_AHEAD = 366
_KEYS = ("rule", "stack", "subject", "approved_by", "expires", "reason")
_SUBJECT = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_APPROVER = re.compile(
    r"[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}|@[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_REASON = 500
ENTRY_ALLOWED = "rule, stack, subject, approved_by, expires (YYYY-MM-DD), reason"


@dataclass(frozen=True)
class PolicyException:
    rule: str
    stack: str
    subject: str
    approved_by: str
    expires: dt.date
    reason: str
    index: int  # position in the file's list
    line: int | None = None

    def covers(self, rule: str, stack: str, subject: str) -> bool:
        if rule != self.rule or stack != self.stack:
            return False
        return self.subject in ("*", subject) or subject.startswith(self.subject + "/")

    def describe(self) -> str:
        return f"approved by {self.approved_by} until {self.expires.isoformat()}: {self.reason}"


@dataclass(frozen=True)
class ExceptionProblem:
    """Something wrong with the exceptions file, as a key path in it, what is wrong and what is allowed."""

    key_path: KeyPath
    message: str
    allowed: str
    line: int | None = None


@dataclass
class ExceptionSet:
    """The valid, unexpired exceptions of a tree; remembers which ones waived something."""

    exceptions: tuple[PolicyException, ...] = ()
    expired: tuple[PolicyException, ...] = ()
    used: set[int] = field(default_factory=set)

    def waiver(self, rule: str, stack: str, subject: str) -> PolicyException | None:
        for exception in self.exceptions:
            if exception.covers(rule, stack, subject):
                self.used.add(exception.index)
                return exception
        return None

    def expired_for(self, rule: str, stack: str, subject: str) -> PolicyException | None:
        return next((e for e in self.expired if e.covers(rule, stack, subject)), None)

    def unused(self, stacks: Collection[str]) -> list[PolicyException]:
        return [e for e in self.exceptions if e.stack in stacks and e.index not in self.used]


def parse_exceptions(
    data: Mapping[str, Any],
    line_of: Callable[[KeyPath], int | None],
    *,
    today: dt.date,
    rules: Collection[str],
    stacks: Collection[str] | None = None,
) -> tuple[ExceptionSet, list[ExceptionProblem]]:
    """The exceptions of a parsed file (`line_of(key_path)` gives lines); every problem, one each."""
    problems: list[ExceptionProblem] = []

    def problem(path: KeyPath, message: str, allowed: str) -> None:
        problems.append(ExceptionProblem(path, message, allowed, line_of(path)))

    for key in data:
        if key != "exceptions":
            problem((key,), "unknown key", "exceptions")
    entries = data.get("exceptions")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        problem(("exceptions",), f"expected a list, got {kind_of(entries)}", "a list of exceptions (or [])")
        entries = []
    valid: list[PolicyException] = []
    expired: list[PolicyException] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(entries):
        path: KeyPath = ("exceptions", index)
        if not isinstance(entry, dict):
            problem(path, f"expected a mapping, got {kind_of(entry)}", ENTRY_ALLOWED)
            continue
        before = len(problems)
        for key in entry:
            if key not in _KEYS:
                close = difflib.get_close_matches(str(key), _KEYS, n=1, cutoff=0.6)
                hint = f", did you mean '{close[0]}'?" if close else ""
                problem((*path, key), f"unknown key{hint}", ENTRY_ALLOWED)
        values: dict[str, str] = {}
        for key in _KEYS:
            value = entry.get(key)
            if value is None:
                problem((*path, key), "required key is missing", ENTRY_ALLOWED)
            elif not isinstance(value, str) or not value.strip():
                problem((*path, key), f"expected text, got {kind_of(value)} {show(value)}", ENTRY_ALLOWED)
            else:
                values[key] = value.strip()
        rule = values.get("rule")
        if rule is not None and rule not in rules:
            close = difflib.get_close_matches(rule, list(rules), n=1, cutoff=0.5)
            hint = f", did you mean '{close[0]}'?" if close else ""
            problem((*path, "rule"), f"unknown rule {show(rule)}{hint}", "rules: " + ", ".join(sorted(rules)))
        stack = values.get("stack")
        if stack is not None and stacks is not None and stack not in stacks:
            close = difflib.get_close_matches(stack, list(stacks), n=1, cutoff=0.5)
            hint = f", did you mean '{close[0]}'?" if close else ""
            problem((*path, "stack"), f"unknown stack {show(stack)}{hint}", "stacks: " + ", ".join(sorted(stacks)))
        subject = values.get("subject")
        if subject is not None and not _SUBJECT.fullmatch(subject):
            problem(
                (*path, "subject"),
                f"{show(subject)} is not a subject",
                "a service, <service>/<environment>, a Pulumi resource name, or * (the whole stack)",
            )
        approver = values.get("approved_by")
        if approver is not None and not _APPROVER.fullmatch(approver):
            problem((*path, "approved_by"), f"{show(approver)} names nobody", "an e-mail address or @github-handle")
        expires: dt.date | None = None
        text = values.get("expires")
        if text is not None:
            try:
                expires = dt.date.fromisoformat(text) if _DATE.fullmatch(text) else None
            except ValueError:
                expires = None
            if expires is None:
                problem((*path, "expires"), f"{show(text)} is not a date", "YYYY-MM-DD, e.g. 2026-09-30")
            elif expires > today + dt.timedelta(days=MAX_DAYS_AHEAD):
                problem(
                    (*path, "expires"),
                    f"{expires.isoformat()} is more than a year ahead",
                    f"a date until {(today + dt.timedelta(days=MAX_DAYS_AHEAD)).isoformat()}; renew it when it expires",
                )
        reason = values.get("reason")
        if reason is not None and len(reason) > _MAX_REASON:
            problem((*path, "reason"), f"has {len(reason)} characters", f"at most {_MAX_REASON} characters")
        if len(problems) != before or expires is None:
            continue
        assert rule is not None and stack is not None and subject is not None and approver is not None
        assert reason is not None
        key3 = (rule, stack, subject)
        if key3 in seen:
            problem(path, f"the same rule, stack and subject as exceptions[{seen[key3]}]", "each exception once")
            continue
        seen[key3] = index
        exception = PolicyException(rule, stack, subject, approver, expires, reason, index, line_of(path))
        if expires < today:
            problem(
                (*path, "expires"),
                f"exception for {rule} on {subject} in {stack} expired on {expires.isoformat()}",
                "a new approval with a new expiry date, or remove the exception and fix what it covered",
            )
            expired.append(exception)
        else:
            valid.append(exception)
    return ExceptionSet(tuple(valid), tuple(expired)), problems
