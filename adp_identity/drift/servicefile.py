"""Minimal edits of a service file's ``dataverse`` list: what ``export`` merges into files people wrote.

Decision (issue 7 §2, "merged, not overwritten"): edit the text, never re-render the file. Comments, key order,
quoting and every other key stay byte for byte; only what differs changes:

* an entry for the environment exists: each of ``business_unit``, ``security_roles``, ``disabled`` and
  ``principal`` is compared by meaning (role and unit names as Dataverse compares them, a missing
  ``business_unit`` as the root unit, a missing ``disabled`` as false); an equal one is left alone, a different
  scalar has its value replaced in place (a comment after it stays), a different role list is rewritten in the
  entry's own style, a missing key is added as the entry's last line;
* no entry for the environment: one is appended to the list, in the list's indentation;
* no ``dataverse`` key: the list is appended at the end of the file.

So exporting twice changes nothing the second time. The result is parsed again with the project's strict reader
and compared with what was meant (the edited entries, and every other key unchanged); any difference is a
`MergeRefused` naming the file, and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from adp_identity.desired.yamlsafe import YamlRefused, parse_yaml
from providers.dataverse.models import name_key

__all__ = ["AccessEntry", "MergeRefused", "merge_service_file", "new_service_file", "render_scalar"]

SCHEMA_COMMENT = "# yaml-language-server: $schema=../../schemas/service.schema.json"


class MergeRefused(Exception):
    """The file cannot be edited safely; one line."""


@dataclass(frozen=True)
class AccessEntry:
    """One ``dataverse`` entry as ``export`` found it in Dataverse."""

    environment: str
    business_unit: str  # the name Dataverse shows
    security_roles: tuple[str, ...]
    disabled: bool = False
    principal: str = "managed_identity"
    root: bool = False  # the environment's root business unit: a new entry leaves business_unit out

    def same_unit(self, declared: Any) -> bool:
        """Whether a declared ``business_unit`` (None: the root unit) names this entry's unit."""
        if declared is None:
            return self.root
        return name_key(str(declared)) == name_key(self.business_unit)

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"environment": self.environment}
        if not self.root:
            data["business_unit"] = self.business_unit
        data["security_roles"] = list(self.security_roles)
        if self.principal != "managed_identity":
            data["principal"] = self.principal
        if self.disabled:
            data["disabled"] = True
        return data


def render_scalar(value: str | bool) -> str:
    """A YAML scalar that reads back as ``value``: plain when both the strict reader (YAML 1.2) and a YAML 1.1
    reader (PyYAML, where ``yes`` is a boolean) agree on it, else JSON-quoted (a valid YAML double-quoted string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value and "\n" not in value:
        line = f"k: {value}\n"
        try:
            if parse_yaml(line.encode()).data == {"k": value} and yaml.safe_load(line) == {"k": value}:
                return value
        except (YamlRefused, yaml.YAMLError):
            pass
    return json.dumps(value, ensure_ascii=False)


def _entry_lines(entry: AccessEntry, indent: int) -> list[str]:
    """A block-style list item whose ``-`` sits at column ``indent``."""
    pad, inner = " " * indent, " " * (indent + 2)
    lines = [f"{pad}- environment: {render_scalar(entry.environment)}"]
    if not entry.root:
        lines.append(f"{inner}business_unit: {render_scalar(entry.business_unit)}")
    lines.append(f"{inner}security_roles:")
    lines += [f"{inner}  - {render_scalar(role)}" for role in entry.security_roles]
    if entry.principal != "managed_identity":
        lines.append(f"{inner}principal: {entry.principal}")
    if entry.disabled:
        lines.append(f"{inner}disabled: true")
    return lines


def new_service_file(
    service: str,
    team: str,
    entries: Sequence[AccessEntry],
    *,
    team_note: str,
    app_registration_display_name: str | None = None,
    app_registration: bool = False,
) -> str:
    """A new service file declaring ``entries``; the parts Dataverse cannot tell (team, federations) are marked."""
    lines = [
        SCHEMA_COMMENT,
        "# Written by `adp-identity export` from what Dataverse holds. Before merging: check the team, and add the",
        "# workload identity's federations (the Kubernetes service accounts that sign in as it).",
        f"service: {render_scalar(service)}",
        f"team: {render_scalar(team)}  # {team_note}",
    ]
    if app_registration:
        if app_registration_display_name is not None:
            lines += ["app_registration:", f"  display_name: {render_scalar(app_registration_display_name)}"]
        else:
            lines.append("app_registration: {}")
    lines.append("dataverse:")
    for entry in entries:
        lines += _entry_lines(entry, 2)
    return "\n".join(lines) + "\n"


# -- merging into an existing file -------------------------------------------------------------------------------


def _content_end(node: yaml.Node) -> int:
    """Where a node's own text ends (PyYAML's end mark of a block collection runs on to the next token)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return _content_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return _content_end(node.value[-1])
    return int(node.end_mark.index)


def _line_after(text: str, index: int) -> int:
    """The offset of the line following the one that holds ``text[index - 1]``."""
    newline = text.find("\n", max(index - 1, 0))
    return len(text) if newline < 0 else newline + 1


def _get(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


Edit = tuple[int, int, str]  # replace text[start:end] with the string


class _Merger:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.edits: list[Edit] = []
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise MergeRefused(f"{source}: cannot be parsed for editing ({type(exc).__name__})") from None
        if not isinstance(root, yaml.MappingNode):
            raise MergeRefused(f"{source}: the top level is not a mapping")
        self.root = root
        self.data: dict[str, Any] = parse_yaml(text.encode("utf-8")).data

    def merge(self, entries: Sequence[AccessEntry], *, app_registration_display_name: str | None) -> str:
        found = _get(self.root, "dataverse")
        needs_app = (
            any(e.principal == "app_registration" for e in entries) and self.data.get("app_registration") is None
        )
        if found is None or not isinstance(found[1], yaml.SequenceNode) or found[1].flow_style or not found[1].value:
            self._replace_whole_list(found, entries)
        else:
            sequence = found[1]
            for entry in entries:
                found_item = self._item_for(sequence, entry.environment)
                if found_item is None:
                    at = _line_after(self.text, _content_end(sequence))
                    indent = int(sequence.start_mark.column)
                    self._insert(at, _entry_lines(entry, indent))
                    continue
                index, item = found_item
                data = dict(self.data["dataverse"][index])
                if self._same_entry(data, entry):
                    continue
                if item.flow_style:
                    self._replace_flow_item(item, data, entry)
                else:
                    self._edit_item(item, data, entry)
        if needs_app:
            block = ["app_registration: {}"]
            if app_registration_display_name is not None:
                block = ["app_registration:", f"  display_name: {render_scalar(app_registration_display_name)}"]
            self._insert(len(self.text), block)
        return self._apply(entries)

    # -- finding and editing entries -------------------------------------------------------------------------

    @staticmethod
    def _item_for(sequence: yaml.SequenceNode, environment: str) -> tuple[int, yaml.MappingNode] | None:
        for index, item in enumerate(sequence.value):
            if isinstance(item, yaml.MappingNode):
                found = _get(item, "environment")
                if found is not None and isinstance(found[1], yaml.ScalarNode) and found[1].value == environment:
                    return index, item
        return None

    def _edit_item(self, item: yaml.MappingNode, data: dict[str, Any], entry: AccessEntry) -> None:
        indent = int(item.value[0][0].start_mark.column)
        current = {k.value: v for k, v in item.value if isinstance(k, yaml.ScalarNode)}
        missing: list[str] = []

        def scalar(key: str, value: str | bool, same: bool) -> None:
            if same:
                return
            node = current.get(key)
            if node is None:
                missing.append(f"{' ' * indent}{key}: {render_scalar(value)}")
            else:
                self.edits.append((node.start_mark.index, _content_end(node), render_scalar(value)))

        scalar("business_unit", entry.business_unit, entry.same_unit(data.get("business_unit")))
        if not _same_roles(data.get("security_roles"), entry.security_roles):
            node = current.get("security_roles")
            if node is None:
                missing.append(f"{' ' * indent}security_roles:")
                missing += [f"{' ' * indent}  - {render_scalar(r)}" for r in entry.security_roles]
            elif isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
                column = int(node.start_mark.column)
                items = f"\n{' ' * column}".join(f"- {render_scalar(r)}" for r in entry.security_roles)
                self.edits.append((node.start_mark.index, _content_end(node), items))
            else:
                flow = "[" + ", ".join(json.dumps(r, ensure_ascii=False) for r in entry.security_roles) + "]"
                self.edits.append((node.start_mark.index, _content_end(node), flow))
        scalar("principal", entry.principal, data.get("principal", "managed_identity") == entry.principal)
        scalar("disabled", entry.disabled, bool(data.get("disabled", False)) == entry.disabled)
        if missing:
            self._insert(_line_after(self.text, _content_end(item)), missing)

    def _replace_flow_item(self, item: yaml.MappingNode, data: dict[str, Any], entry: AccessEntry) -> None:
        wanted = {**data, **entry.as_data()}
        if not entry.disabled and "disabled" in data:
            wanted["disabled"] = False
        if entry.principal == "managed_identity" and "principal" in data:
            wanted["principal"] = "managed_identity"
        flow = "{" + ", ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in wanted.items()) + "}"
        self.edits.append((item.start_mark.index, item.end_mark.index, flow))

    def _replace_whole_list(self, found: tuple[yaml.Node, yaml.Node] | None, entries: Sequence[AccessEntry]) -> None:
        existing = [dict(e) for e in self.data.get("dataverse") or []]
        by_environment = {e.environment: e for e in entries}
        merged: list[AccessEntry] = []
        for data in existing:
            entry = by_environment.pop(str(data.get("environment")), None)
            merged.append(entry if entry is not None else _entry_from_data(data))
        merged += by_environment.values()
        lines = [line for entry in merged for line in _entry_lines(entry, 2)]
        if found is None:
            self._insert(len(self.text), ["dataverse:", *lines])
        else:
            key, value = found
            self.edits.append((key.start_mark.index, _content_end(value), "\n".join(["dataverse:", *lines])))

    @staticmethod
    def _same_entry(data: dict[str, Any], entry: AccessEntry) -> bool:
        return (
            entry.same_unit(data.get("business_unit"))
            and _same_roles(data.get("security_roles"), entry.security_roles)
            and data.get("principal", "managed_identity") == entry.principal
            and bool(data.get("disabled", False)) == entry.disabled
        )

    def _insert(self, at: int, lines: Sequence[str]) -> None:
        prefix = "" if at == 0 or self.text[at - 1 : at] == "\n" else "\n"
        self.edits.append((at, at, prefix + "\n".join(lines) + "\n"))

    # -- applying and checking -----------------------------------------------------------------------------

    def _apply(self, entries: Sequence[AccessEntry]) -> str:
        text = self.text
        # Last first, so offsets stay valid; at one offset, the later edit first, so the earlier one ends up first.
        ordered = sorted(enumerate(self.edits), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
        for _, (start, end, replacement) in ordered:
            text = text[:start] + replacement + text[end:]
        self._check(text, entries)
        return text

    def _check(self, text: str, entries: Sequence[AccessEntry]) -> None:
        try:
            after = parse_yaml(text.encode("utf-8")).data
        except YamlRefused as exc:
            raise MergeRefused(f"{self.source}: the merged file would not read back ({exc.message})") from None
        before = self.data
        others = {k: v for k, v in before.items() if k not in ("dataverse", "app_registration")}
        if {k: v for k, v in after.items() if k in others} != others:
            raise MergeRefused(f"{self.source}: merging would change keys other than dataverse; edit it by hand")
        if before.get("app_registration") is not None and after.get("app_registration") != before["app_registration"]:
            raise MergeRefused(f"{self.source}: merging would change app_registration; edit it by hand")
        wanted = {e.environment: e for e in entries}
        listed = after.get("dataverse") or []
        kept = [d for d in before.get("dataverse") or [] if d.get("environment") not in wanted]
        if [d for d in listed if d.get("environment") not in wanted] != kept:
            raise MergeRefused(f"{self.source}: merging would change other environments' entries; edit it by hand")
        for environment, entry in wanted.items():
            matches = [d for d in listed if d.get("environment") == environment]
            if len(matches) != 1 or not self._same_entry(matches[0], entry):
                raise MergeRefused(
                    f"{self.source}: the merged entry for '{environment}' would not read back as exported"
                )


def _same_roles(declared: Any, found: Sequence[str]) -> bool:
    held = {name_key(str(r)) for r in declared or ()}
    return held == {name_key(r) for r in found} and len(list(declared or ())) == len(held)


def _entry_from_data(data: dict[str, Any]) -> AccessEntry:
    unit = data.get("business_unit")
    return AccessEntry(
        environment=str(data.get("environment")),
        business_unit=str(unit or ""),
        root=unit is None,
        security_roles=tuple(str(r) for r in data.get("security_roles") or ()),
        disabled=bool(data.get("disabled", False)),
        principal=str(data.get("principal", "managed_identity")),
    )


def merge_service_file(
    text: str, entries: Sequence[AccessEntry], *, source: str, app_registration_display_name: str | None = None
) -> str:
    """``text`` with ``entries`` merged into its ``dataverse`` list (see the module docstring); `MergeRefused`."""
    return _Merger(text, source).merge(entries, app_registration_display_name=app_registration_display_name)
