"""How ``plan`` and ``audit`` print a `StackReport`: text for a terminal or a CI log, Markdown for a pull request.

Counts always match what is listed: a user's header says how many writes it needs and exactly that many bullets
follow, one per write, and in how many requests the provider sends them: one, an atomic ``$batch`` change set per
user (adopting an existing user is no write: it is said in the header). A move to
another business unit names the roles Dataverse removes with it. The Markdown form is one comment: a summary table
per environment (create, adopt, change, disable, unmanaged privileged, up to date, errors), errors unfolded, then
each environment's details folded in ``<details>`` (GitHub and Azure DevOps both render it). Names read from
Dataverse are shown in code spans, so a hand-made display name cannot inject Markdown or HTML into the comment.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from adp_identity.desired.errors import one_line
from adp_identity.drift.report import EnvironmentSummary, PrivilegedUser, StackReport, UserDrift, UserView

__all__ = [
    "audit_lines",
    "audit_markdown",
    "count",
    "drift_lines",
    "plan_lines",
    "plan_markdown",
    "privileged_line",
    "request_lines",
    "writes_text",
]


def count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def writes_text(writes: int, requests: int) -> str:
    """``9 writes in 4 requests``: what a plan holds, and what the provider sends for it."""
    return f"{count(writes, 'write')} in {count(requests, 'request')}"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _roles(names: Sequence[str]) -> str:
    return ("security role " if len(names) == 1 else "security roles ") + _quoted(names)


# -- one user's plan -------------------------------------------------------------------------------------------


def principal_label(view: UserView) -> str:
    target = view.target
    kind = "app registration" if target.principal == "app_registration" else "managed identity"
    return f"{kind}, not created yet" if target.new else f"{kind} {target.desired.application_id}"


def request_lines(view: UserView) -> list[str]:
    """One line per write of the plan, in execution order (all of them go in one atomic change set)."""
    lines: list[str] = []
    if view.create is not None:
        unit = view.create.business_unit.name
        if view.target.new:
            lines.append(f"create the application user in business unit {unit!r} (its principal is created first)")
        else:
            lines.append(
                f"create the application user for application {view.create.application_id} in business unit {unit!r}"
            )
    if view.enable:
        lines.append("enable the user")
    if view.move is not None:
        source = repr(view.moved_from)
        removed = view.removed_by_move
        loses = f"Dataverse removes its {_roles(removed)} on the move" if removed else "it holds no role to lose"
        lines.append(f"move from business unit {source} to {view.move.target.name!r} ({loses})")
    if view.roles is not None:
        add = sorted((r.name for r in view.roles.associate), key=str.casefold)
        remove = sorted((r.name for r in view.roles.disassociate), key=str.casefold)
        parts = [f"associate {_roles(add)}"] if add else []
        parts += [f"disassociate {_roles(remove)}"] if remove else []
        lines.append(" and ".join(parts) + (" (one request)" if add and remove else ""))
    if view.disable:
        lines.append("disable the user")
    return lines


def _adopt_text(view: UserView) -> str:
    assert view.adopt is not None
    name = f"{view.adopt.full_name!r} " if view.adopt.full_name else ""
    text = f"adopt the existing application user {name}({view.adopt.systemuser_id})"
    if view.replaced:
        text += f" instead of {view.target.managed_id}, which the stack's outputs name"
    return text


def user_header(view: UserView) -> str:
    """``<service> (<principal>): [adopt ...; ]N writes in 1 request`` or ``<service>: up to date``."""
    service = view.target.service
    if view.up_to_date:
        return f"{service}: up to date"
    parts = []
    if view.target.new:
        parts.append("to be created")
    if view.adopt is not None:
        parts.append(_adopt_text(view))
    parts.append(writes_text(view.writes, view.requests) if view.writes else "no write")
    return f"{service} ({principal_label(view)}): {'; '.join(parts)}"


# -- plan, text ------------------------------------------------------------------------------------------------


def plan_lines(report: StackReport) -> list[str]:
    """The plan grouped by environment, then the summary line."""
    lines: list[str] = []
    for environment in report.environments:
        lines.append(f"{environment.name} ({environment.url})")
        errors_by_service: dict[str, list[str]] = {}
        for error in report.errors_in(environment.name):
            if error.service is not None:
                errors_by_service.setdefault(error.service, []).append(error.message)
        for view in report.views_in(environment.name):
            if not view.planned:
                lines.extend(
                    f"  {view.target.service}: error: {m}" for m in errors_by_service.pop(view.target.service, [])
                )
                continue
            lines.append(f"  {user_header(view)}")
            lines.extend(f"    - {line}" for line in request_lines(view))
        for privileged in report.privileged_in(environment.name):
            lines.append(f"  {privileged_line(privileged)}")
        for error in report.errors_in(environment.name):
            if error.service is None:
                lines.append(str(error))
    lines.append(plan_summary(report))
    return lines


def plan_summary(report: StackReport) -> str:
    total = report.total()
    changing = sum(1 for view in report.views if view.writes)
    text = (
        f"plan: {changing} of {count(total.users, 'application user')} would change "
        f"({writes_text(total.writes, total.requests)})"
    )
    if total.adopt:
        text += f"; {total.adopt} to adopt"
    text += f"; {total.up_to_date} up to date; {count(len(report.environments), 'environment')} read"
    if total.unmanaged_privileged:
        text += f"; {count(total.unmanaged_privileged, 'unmanaged privileged application user')}"
    text += "; nothing was written"
    if report.errors:
        text += f"; {count(len(report.errors), 'error')}"
    return text


# -- audit, text -----------------------------------------------------------------------------------------------


def drift_lines(user: UserDrift) -> list[str]:
    if user.missing:
        roles = _roles(user.declared_roles) if user.declared_roles else "no security roles"
        application = f"application {user.application_id}" if user.application_id else "no stack outputs yet"
        return [
            f"application user missing ({application}; declared in business unit "
            f"{user.declared_business_unit!r} with {roles})"
        ]
    lines: list[str] = []
    if user.replaced_systemuser_id is not None:
        lines.append(
            f"the stack's outputs name systemuser {user.replaced_systemuser_id}, but the application's user is now "
            f"{user.systemuser_id} (recreated by hand?)"
        )
    if user.actual_disabled is not None:
        lines.append("disabled, declared enabled" if user.actual_disabled else "enabled, declared disabled")
    if user.actual_business_unit is not None:
        lines.append(f"business unit {user.actual_business_unit!r}, declared {user.declared_business_unit!r}")
    if user.extra_roles:
        lines.append(f"extra {_roles(user.extra_roles)} (not declared)")
    if user.missing_roles:
        lines.append(f"missing {_roles(user.missing_roles)}")
    return lines


def privileged_line(user: PrivilegedUser) -> str:
    name = f"{user.full_name!r} " if user.full_name else ""
    state = "disabled " if user.disabled else ""
    return (
        f"unmanaged {state}application user {name}(application {user.application_id}, systemuser "
        f"{user.systemuser_id}) holds privileged {_roles(user.roles)}"
    )


def audit_lines(report: StackReport) -> list[str]:
    """Per environment, one line per difference (``<environment> <service>: <what>``); then the summary."""
    lines: list[str] = []
    drifted = report.drifted
    for environment in report.environments:
        for user in drifted:
            if user.environment == environment.name:
                lines.extend(f"{user.environment} {user.service}: {line}" for line in drift_lines(user))
        lines.extend(f"{environment.name}: {privileged_line(p)}" for p in report.privileged_in(environment.name))
        lines.extend(str(error) for error in report.errors_in(environment.name))
    lines.append(audit_summary(report))
    return lines


def audit_summary(report: StackReport) -> str:
    users = report.users
    checked = f"{count(len(users), 'application user')} in {count(len(report.environments), 'environment')} checked"
    parts: list[str] = []
    if report.drifted:
        parts.append(f"{len(report.drifted)} of {count(len(users), 'application user')} differ")
    if report.privileged:
        parts.append(count(len(report.privileged), "unmanaged privileged application user"))
    text = f"audit: drift: {'; '.join(parts)}" if parts else f"audit: no drift: {checked}"
    adopt = report.total().adopt - sum(1 for v in report.views if v.replaced)
    if adopt:
        text += f"; {adopt} to adopt (the stack's outputs do not name them yet)"
    if report.errors:
        text += f"; {count(len(report.errors), 'error')}: the audit is incomplete"
    return text


# -- Markdown --------------------------------------------------------------------------------------------------


def code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds (CommonMark: a longer fence)."""
    text = one_line(text)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_COLUMNS = (
    ("Create", "create"),
    ("Adopt", "adopt"),
    ("Change", "change"),
    ("Disable", "disable"),
    ("Unmanaged privileged", "unmanaged_privileged"),
    ("Up to date", "up_to_date"),
    ("Errors", "errors"),
)


def _table(report: StackReport) -> list[str]:
    header = "| Environment | " + " | ".join(title for title, _ in _COLUMNS) + " |"
    rule = "| :-- | " + " | ".join("--:" for _ in _COLUMNS) + " |"

    def row(label: str, summary: EnvironmentSummary, bold: bool = False) -> str:
        cells = [str(getattr(summary, key)) for _, key in _COLUMNS]
        if bold:
            cells = [f"**{cell}**" for cell in cells]
        return f"| {label} | " + " | ".join(cells) + " |"

    rows = [row(code(summary.environment), summary) for summary in report.summary()]
    if len(rows) > 1:
        rows.append(row("**Total**", report.total(), bold=True))
    return [header, rule, *rows]


def _md(text: str) -> str:
    """A sentence built from `request_lines` / `drift_lines`: quoted names become code spans."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in "'\"":
            end = text.find(char, index + 1)
            if end > index:
                out.append(code(text[index + 1 : end]))
                index = end + 1
                continue
        out.append(html.escape(char, quote=False))
        index += 1
    return "".join(out)


def _summary_tag(text: str) -> str:
    return f"<summary>{html.escape(text)}</summary>"


def _errors(report: StackReport, what: str) -> list[str]:
    if not report.errors:
        return []
    lines = ["", f"**{count(len(report.errors), 'error')}: the {what} is incomplete.**", ""]
    lines += [f"- {code(str(error))}" for error in report.errors]
    return lines


def plan_markdown(report: StackReport) -> str:
    """One pull-request comment: the summary table, errors, then each environment's plan folded."""
    total = report.total()
    changing = sum(1 for view in report.views if view.writes)
    lines = [
        f"### adp-identity plan: stack {code(report.stack)}",
        "",
        f"{changing} of {count(total.users, 'application user')} would change "
        f"({writes_text(total.writes, total.requests)}); nothing was written.",
        "",
        *_table(report),
        *_errors(report, "plan"),
    ]
    for environment in report.environments:
        views = report.views_in(environment.name)
        summary = next(row for row in report.summary() if row.environment == environment.name)
        lines += [
            "",
            "<details>",
            _summary_tag(
                f"{environment.name} ({environment.url}): {count(summary.users, 'application user')}, "
                f"{writes_text(summary.writes, summary.requests)}"
            ),
            "",
        ]
        for view in views:
            if not view.planned:
                lines.append(f"- **{view.target.service}**: not planned (see the errors above)")
                continue
            header = user_header(view).removeprefix(view.target.service)
            lines.append(f"- **{view.target.service}**{_md(header)}")
            lines += [f"  {number}. {_md(line)}" for number, line in enumerate(request_lines(view), 1)]
        for privileged in report.privileged_in(environment.name):
            lines.append(f"- {_md(privileged_line(privileged))}")
        if not views and not report.privileged_in(environment.name):
            lines.append("- no application user declared here")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def audit_markdown(report: StackReport) -> str:
    """One pull-request (or run-summary) comment: the verdict, the summary table, errors, details folded."""
    verdict = audit_summary(report).removeprefix("audit: ")
    verdict = verdict.replace("no drift: ", "**No drift**: ", 1).replace("drift: ", "**Drift**: ", 1)
    lines = [
        f"### adp-identity audit: stack {code(report.stack)}",
        "",
        f"{verdict}.",
        "",
        *_table(report),
        *_errors(report, "audit"),
    ]
    drifted = report.drifted
    for environment in report.environments:
        mine = [user for user in drifted if user.environment == environment.name]
        privileged = report.privileged_in(environment.name)
        in_sync = sum(1 for user in report.users if user.environment == environment.name and not user.has_drift)
        lines += [
            "",
            "<details>",
            _summary_tag(
                f"{environment.name} ({environment.url}): {count(len(mine), 'application user')} differ, "
                f"{count(len(privileged), 'unmanaged privileged user')}, {in_sync} in sync"
            ),
            "",
        ]
        for user in mine:
            lines.append(f"- **{user.service}**")
            lines += [f"  - {_md(line)}" for line in drift_lines(user)]
        lines += [f"- {_md(privileged_line(p))}" for p in privileged]
        if not mine and not privileged:
            lines.append("- nothing differs")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
