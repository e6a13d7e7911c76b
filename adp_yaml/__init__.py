"""The project's one strict YAML reader: what a reviewer sees is exactly what is loaded.

Both the desired-state files (service files arrive in pull requests) and the emulator's seeds (trusted local
files) are read here, so both follow the same rules. It is a package of its own, importing nothing of the product
or the emulator, so that both can use it and neither depends on the other (``.importlinter``).

PyYAML's safe loader still accepts things that hide meaning from a reviewer or hurt the machine reading it:
duplicate keys (the last silently wins), anchors and aliases (one line can expand to gigabytes, the
"billion laughs"), YAML 1.1 booleans (``production: no`` is ``False``, ``NO`` the country is ``False``),
sexagesimal numbers (``1:20`` is 80) and timestamps. This reader composes PyYAML's node tree itself and
refuses all of those, plus tabs in indentation, NUL bytes, invalid UTF-8, empty files, files over
``MAX_BYTES``, deep nesting and a top level that is not a mapping. Plain scalars resolve as in YAML 1.2's
core schema (``true``/``false``, ``null``/``~``, decimal/0x/0o integers, floats); everything else is a string.

Anchors and aliases are refused unless the caller passes ``allow_aliases=True`` (trusted files that share a
list, such as a seed's role catalogue). Even then an alias may not nest deeper than ``MAX_DEPTH`` (which also
stops a self-referencing alias) nor expand to more than ``MAX_ALIAS_NODES`` repeated nodes, so a billion
laughs is refused after a bounded amount of work. Merge keys (``<<``) are not interpreted: ``<<`` is a plain key.

Every refusal is a `YamlRefused` with a 1-based line. The result keeps the line of every key so that later
errors can point at the right line too (an aliased value has the lines of its anchor).

The words the reader uses about values (`kind_of`, `show`, `format_key_path`, `one_line`) live here too, so
that every error in the project describes a value the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32  # nesting of mappings and lists; the schemas need fewer than 8
MAX_ALIAS_NODES = 100_000  # nodes an alias may repeat in one file, in all (only with allow_aliases=True)

DOCUMENT = "(document)"  # the key path of an error about a whole file
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_SHOW_MAX = 60

_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT_DEC = re.compile(r"[-+]?[0-9]+")
_INT_OCT = re.compile(r"0o[0-7]+")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_TAB_INDENT = re.compile(r"^[ ]*\t", re.MULTILINE)
_MAX_NUMBER_CHARS = 40
_NO_ANCHORS = "plain values; repeat them instead of using anchors"


# ---------------------------------------------------------------------------------------------------------------
# Words about values, for one-line errors


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


# ---------------------------------------------------------------------------------------------------------------
# The reader


class YamlRefused(Exception):
    """The file is not acceptable YAML for this project; one line, with the 1-based line when known."""

    def __init__(self, message: str, allowed: str, *, line: int | None = None, key_path: KeyPath = ()) -> None:
        self.message = one_line(message)
        self.allowed = allowed
        self.line = line
        self.key_path = key_path
        super().__init__(f"line {line}: {self.message}" if line else self.message)


@dataclass(frozen=True)
class YamlDocument:
    """A loaded mapping plus the line of each key path, for errors found after loading."""

    data: dict[str, Any]
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key -> its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def read_yaml(path: Path, *, allow_aliases: bool = False) -> YamlDocument:
    """Read and strictly parse one YAML file whose top level must be a mapping."""
    try:
        if path.is_dir():
            raise YamlRefused("is a directory, not a file", "a YAML file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlRefused(_too_big(size), f"at most {MAX_BYTES // 1024} KiB")
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlRefused(f"cannot be read ({exc.strerror or type(exc).__name__})", "a readable file") from None
    return parse_yaml(data, allow_aliases=allow_aliases)


def parse_yaml(data: bytes, *, allow_aliases: bool = False) -> YamlDocument:
    """Strictly parse YAML bytes (see the module docstring for what is refused)."""
    if len(data) > MAX_BYTES:
        raise YamlRefused(_too_big(len(data)), f"at most {MAX_BYTES // 1024} KiB")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise YamlRefused("binary file (NUL byte)", "UTF-8 YAML text", line=data.count(b"\n", 0, nul) + 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlRefused(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x})",
            "UTF-8 YAML text",
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    tab = _TAB_INDENT.search(text)
    if tab is not None:
        raise YamlRefused(
            "tab character in indentation", "spaces for indentation", line=text.count("\n", 0, tab.start()) + 1
        )
    root = _compose(text, allow_aliases)
    if root is None:
        raise YamlRefused("file is empty", "a YAML mapping of keys", line=1)
    lines: dict[KeyPath, int] = {(): root.start_mark.line + 1}
    value = _Converter(lines).value(root, (), 1)
    if not isinstance(value, dict):
        raise YamlRefused(f"top level is {kind_of(value)}, not a mapping", "a YAML mapping of keys", line=lines[()])
    return YamlDocument(value, lines)


def _too_big(size: int) -> str:
    return f"file is larger than {MAX_BYTES // 1024} KiB ({size} bytes)"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's pure-Python loader, stopped before explicit tags, deep nesting and (by default) anchors."""

    def __init__(self, stream: str, allow_aliases: bool) -> None:
        super().__init__(stream)
        self._depth = 0
        self._allow_aliases = allow_aliases

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1 if event.start_mark else None
        if not self._allow_aliases:
            if isinstance(event, yaml.AliasEvent):
                used = f"alias '*{event.anchor}'"
            else:
                anchor = getattr(event, "anchor", None)
                used = f"anchor '&{anchor}'" if anchor is not None else ""
            if used:
                raise YamlRefused(f"{used} (anchors and aliases are refused)", _NO_ANCHORS, line=line)
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise YamlRefused(f"explicit tag '{tag}'", "plain, untagged values", line=line)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels", "the shape in the schema", line=line)
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


def _compose(text: str, allow_aliases: bool) -> yaml.Node | None:
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text, allow_aliases)  # the reader checks every character here
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):  # "expected a single document ..., but found ..."
            problem = f"{exc.context}, {problem}"
        raise YamlRefused(
            f"YAML syntax error: {problem}", "well-formed YAML", line=mark.line + 1 if mark else None
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise YamlRefused(
            f"unacceptable character #x{exc.character:04x}"
            if isinstance(exc.character, int)
            else "unacceptable character",
            "printable UTF-8 text",
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(f"YAML error: {exc}", "well-formed YAML") from None
    except RecursionError:
        raise YamlRefused("nested too deeply", "the shape in the schema") from None
    finally:
        if loader is not None:
            loader.dispose()


class _Converter:
    """Node tree -> Python values, recording lines; bounds what aliases can expand to.

    Without aliases every node is met once and the composer has already bounded the depth, so the checks here
    only ever refuse what an alias repeats: a node met again counts towards ``MAX_ALIAS_NODES``, and the depth
    of the expanded value (a self-referencing alias is infinitely deep) must stay within ``MAX_DEPTH``.
    """

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines
        self._met: set[int] = set()
        self._repeated = 0

    def value(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels", "the shape in the schema", line=line)
        if id(node) in self._met:
            self._repeated += 1
            if self._repeated > MAX_ALIAS_NODES:
                raise YamlRefused(
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes", "aliases of small values", line=line
                )
        else:
            self._met.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path, depth)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise YamlRefused(f"unsupported YAML node at {format_key_path(path)}", "mappings, lists and scalars")

    def _sequence(self, node: yaml.SequenceNode, path: KeyPath, depth: int) -> list[Any]:
        items: list[Any] = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            self._lines[item_path] = item.start_mark.line + 1
            items.append(self.value(item, item_path, depth + 1))
        return items

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else key_node
            if not isinstance(key, str):
                described = f"is {_node_kind(key)}" if isinstance(key, yaml.Node) else f"{show(key)} is {kind_of(key)}"
                raise YamlRefused(
                    f"key {described}, not a string",
                    "text keys (quote keys that look like numbers, e.g. '14')",
                    line=line,
                    key_path=path,
                )
            key_path = (*path, key)
            if key in mapping:
                raise YamlRefused(
                    f"duplicate key '{key}' (first at line {self._lines[key_path]})",
                    "each key once per mapping",
                    line=line,
                    key_path=key_path,
                )
            self._lines[key_path] = line
            mapping[key] = self.value(value_node, key_path, depth + 1)
        return mapping


def _scalar(node: yaml.ScalarNode) -> Any:
    """YAML 1.2 core schema for plain scalars; quoted and block scalars are always strings."""
    value: str = node.value
    if node.style is not None:
        return value
    if _NULL.fullmatch(value):
        return None
    if _TRUE.fullmatch(value):
        return True
    if _FALSE.fullmatch(value):
        return False
    if _INT_DEC.fullmatch(value) or _INT_OCT.fullmatch(value) or _INT_HEX.fullmatch(value):
        if len(value) > _MAX_NUMBER_CHARS:
            raise YamlRefused(
                f"number of {len(value)} digits", "numbers of at most 40 digits", line=node.start_mark.line + 1
            )
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value)
    if _FLOAT.fullmatch(value):
        if len(value) > _MAX_NUMBER_CHARS:
            raise YamlRefused(
                f"number of {len(value)} characters", "numbers of at most 40 digits", line=node.start_mark.line + 1
            )
        return float(value)
    if _INF.fullmatch(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.fullmatch(value):
        return float("nan")
    return value


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"
