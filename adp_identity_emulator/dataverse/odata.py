"""The OData slice Dataverse's Web API speaks: resource paths, query options, ``$filter`` and paging cookies.

Strict on purpose: an option Dataverse refuses (``$skip``), a property the table does not have, or a GUID
column compared with a quoted string is answered with the 400 Dataverse gives, so a client that would fail
against a real environment fails here too.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import INVALID_PAGING_COOKIE, WebApiError, query_error
from .rows import I32, TABLES, B, C, D, F, G, L, M, S, Table, X

GUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID = re.compile(GUID_PATTERN)
_GUID_FULL = re.compile(rf"^{GUID_PATTERN}$")

MAX_PAGE_SIZE = 5000
_SUPPORTED_OPTIONS = ("$select", "$filter", "$expand", "$orderby", "$top", "$count", "$skiptoken")


def is_guid(text: str) -> bool:
    return bool(_GUID_FULL.match(text))


# ------------------------------------------------------------------------------------------ resource path
@dataclass(frozen=True)
class Segment:
    name: str
    key: str | None = None  # the raw text between parentheses, if any

    def key_guid(self) -> str | None:
        """The key as a lower-case GUID when it is a plain GUID key (``systemusers(<id>)``)."""
        if self.key is not None and is_guid(self.key.strip("{}")):
            return self.key.strip("{}").lower()
        return None

    def alternate_key(self) -> tuple[str, str] | None:
        """``(column, value)`` for an alternate key such as ``(azureactivedirectoryobjectid=<oid>)``."""
        if self.key is None or "=" not in self.key or "," in self.key:
            return None
        column, _, value = self.key.partition("=")
        return column.strip(), value.strip().strip("'")


_SEGMENT = re.compile(r"^([A-Za-z_$][\w.$]*)(?:\((.*)\))?$")


def parse_path(path: str) -> list[Segment]:
    """Split the resource path after ``/api/data/v9.2/`` into segments; 400 when one is malformed."""
    segments: list[Segment] = []
    for raw in urllib.parse.unquote(path).split("/"):
        if raw == "":
            continue
        match = _SEGMENT.match(raw)
        if match is None:
            raise query_error(f"Bad Request - Error in query syntax: the segment '{raw}' is not valid.")
        segments.append(Segment(match.group(1), match.group(2)))
    return segments


# ----------------------------------------------------------------------------------------- query options
@dataclass
class Literal:
    kind: str  # "guid" | "string" | "bool" | "null" | "int" | "decimal" | "datetime"
    value: Any

    @property
    def edm(self) -> str:
        return {
            "guid": G,
            "string": S,
            "bool": B,
            "int": I32,
            "decimal": M,
            "datetime": D,
            "null": "null",
        }[self.kind]


Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class ExpandItem:
    navigation: str
    options: QueryOptions


@dataclass
class QueryOptions:
    select: list[str] | None = None
    filter: Predicate | None = None
    expand: list[ExpandItem] = field(default_factory=list)
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending)
    top: int | None = None
    count: bool = False
    skiptoken: str | None = None
    # the raw "name=value" pieces of the query string other than $skiptoken, to rebuild @odata.nextLink
    passthrough: list[str] = field(default_factory=list)


def split_query(query: str) -> list[tuple[str, str, str]]:
    """``[(name, decoded value, raw piece)]`` of a query string (``+`` is a space, as IIS reads it)."""
    pieces: list[tuple[str, str, str]] = []
    for raw in query.split("&"):
        if not raw:
            continue
        name, _, value = raw.partition("=")
        pieces.append((urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value), raw))
    return pieces


def parse_query(query: str, table: Table, *, allow: tuple[str, ...] = _SUPPORTED_OPTIONS) -> QueryOptions:
    """Parse and validate the query options of a request on ``table``."""
    options: dict[str, str] = {}
    passthrough: list[str] = []
    for name, value, raw in split_query(query):
        if name == "$skip":
            raise query_error("The query parameter $skip is not supported")
        if name not in _SUPPORTED_OPTIONS:
            raise query_error(f"The query parameter {name} is not supported")
        if name not in allow:
            raise query_error(f"The query parameter {name} is not supported for this request")
        if name in options:
            raise query_error(
                f"Query option '{name}' was specified more than once, but it must be specified at most once."
            )
        options[name] = value
        if name != "$skiptoken":
            passthrough.append(raw)
    parsed = _options(options, table)
    parsed.passthrough = passthrough
    return parsed


def _options(options: dict[str, str], table: Table) -> QueryOptions:
    parsed = QueryOptions()
    if "$select" in options:
        parsed.select = _select(options["$select"], table)
    if "$filter" in options:
        parsed.filter = parse_filter(options["$filter"], table)
    if "$expand" in options:
        parsed.expand = _expand(options["$expand"], table)
    if "$orderby" in options:
        parsed.orderby = _orderby(options["$orderby"], table)
    if "$top" in options:
        text = options["$top"]
        if not text.isdigit():
            raise query_error(
                f"Invalid value '{text}' for $top query option found. "
                "The $top query option requires a non-negative integer value."
            )
        parsed.top = int(text)
    if "$count" in options:
        if options["$count"] not in ("true", "false"):
            raise query_error(f"'{options['$count']}' is not a valid count option.")
        parsed.count = options["$count"] == "true"
    parsed.skiptoken = options.get("$skiptoken")
    return parsed


def _unknown_property(name: str, table: Table) -> WebApiError:
    return query_error(f"Could not find a property named '{name}' on type '{table.type_name}'.")


def _select(text: str, table: Table) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    for column in columns:
        if column not in table.columns:
            raise _unknown_property(column, table)
    return columns


def _orderby(text: str, table: Table) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise query_error(f"Syntax error in $orderby: '{text}'.")
        if words[0] not in table.columns:
            raise _unknown_property(words[0], table)
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return order


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current = ""
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == separator and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0 or quoted:
        raise query_error(f"Syntax error: unbalanced parentheses or quotes in '{text}'.")
    parts.append(current)
    return parts


_EXPAND_ITEM = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def _expand(text: str, table: Table) -> list[ExpandItem]:
    items: list[ExpandItem] = []
    for part in _split_top_level(text, ","):
        match = _EXPAND_ITEM.match(part)
        if match is None:
            raise query_error(f"Syntax error in $expand: '{text}'.")
        navigation, inner = match.group(1), match.group(2)
        nav = table.navigations.get(navigation)
        if nav is None:
            raise _unknown_property(navigation, table)
        target = TABLES[nav.target]
        nested: dict[str, str] = {}
        for option in _split_top_level(inner, ";") if inner else []:
            name, eq, value = option.partition("=")
            name = name.strip()
            if not eq or name not in ("$select", "$filter", "$orderby", "$top"):
                raise query_error(f"The query option '{name}' is not supported inside $expand of '{navigation}'.")
            nested[name] = value
        if not nav.collection and set(nested) - {"$select"}:
            raise query_error(f"Only $select is supported when expanding the single-valued '{navigation}'.")
        items.append(ExpandItem(navigation, _options(nested, target)))
    if len(items) > 15:
        raise query_error("Number of expands exceeded the limit of 15.")
    return items


# ------------------------------------------------------------------------------------------------ $filter
_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<guid>{GUID_PATTERN})(?![\w-])
      | (?P<datetime>\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?:Z|[+-]\d{{2}}:\d{{2}}))
      | (?P<number>-?\d+(?:\.\d+)?)(?![\w-])
      | (?P<string>'(?:[^']|'')*')
      | (?P<word>[A-Za-z_][\w.]*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_OPERATORS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_STRING_FUNCTIONS = ("contains", "startswith", "endswith")


@dataclass
class _Token:
    kind: str
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise query_error(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _FilterParser:
    """Recursive descent over: or-expr := and-expr ('or' and-expr)*; and-expr := unary ('and' unary)*."""

    def __init__(self, text: str, table: Table) -> None:
        self.text = text
        self.table = table
        self.tokens = _tokenize(text)
        self.index = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            raise query_error("The $filter query option must not be empty.")
        predicate = self._or()
        if self.index != len(self.tokens):
            raise self._syntax(self.tokens[self.index])
        return predicate

    def _syntax(self, token: _Token | None) -> WebApiError:
        position = token.position if token else len(self.text)
        return query_error(f"Syntax error at position {position} in '{self.text}'.")

    def _peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self) -> _Token:
        token = self._peek()
        if token is None:
            raise self._syntax(None)
        self.index += 1
        return token

    def _expect(self, text: str) -> None:
        token = self._next()
        if token.text != text:
            raise self._syntax(token)

    def _or(self) -> Predicate:
        left = self._and()
        while (token := self._peek()) is not None and token.text == "or":
            self.index += 1
            right = self._and()
            left = _either(left, right)
        return left

    def _and(self) -> Predicate:
        left = self._unary()
        while (token := self._peek()) is not None and token.text == "and":
            self.index += 1
            right = self._unary()
            left = _both(left, right)
        return left

    def _unary(self) -> Predicate:
        token = self._next()
        if token.text == "(":
            inner = self._or()
            self._expect(")")
            return inner
        if token.text == "not":
            negated = self._unary()
            return lambda row: not negated(row)
        if token.kind == "word" and token.text in _STRING_FUNCTIONS:
            return self._function(token.text)
        if token.kind != "word":
            raise self._syntax(token)
        column = self._column(token.text)
        operator = self._next()
        if operator.text not in _OPERATORS:
            raise self._syntax(operator)
        literal = self._literal()
        self._check_types(column, operator.text, literal)
        return _comparison(column, operator.text, literal, self.table.columns[column])

    def _column(self, name: str) -> str:
        if name not in self.table.columns:
            raise _unknown_property(name, self.table)
        if self.table.columns[name] in (X, C):
            raise query_error(f"The property '{name}' cannot be used in $filter.")
        return name

    def _function(self, name: str) -> Predicate:
        self._expect("(")
        column = self._column(self._next().text)
        self._expect(",")
        literal = self._literal()
        self._expect(")")
        if self.table.columns[column] != S or literal.kind != "string":
            raise query_error(
                f"No function signature for the function with name '{name}' matches the specified arguments."
            )
        needle = str(literal.value).casefold()

        def test(row: dict[str, Any]) -> bool:
            value = row.get(column)
            if not isinstance(value, str):
                return False
            hay = value.casefold()
            return {"contains": needle in hay, "startswith": hay.startswith(needle), "endswith": hay.endswith(needle)}[
                name
            ]

        return test

    def _literal(self) -> Literal:
        token = self._next()
        if token.kind == "guid":
            return Literal("guid", token.text.lower())
        if token.kind == "string":
            return Literal("string", token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return Literal("decimal", float(token.text)) if "." in token.text else Literal("int", int(token.text))
        if token.kind == "datetime":
            return Literal("datetime", token.text)
        if token.kind == "word" and token.text in ("true", "false"):
            return Literal("bool", token.text == "true")
        if token.kind == "word" and token.text == "null":
            return Literal("null", None)
        raise self._syntax(token)

    def _check_types(self, column: str, operator: str, literal: Literal) -> None:
        edm = self.table.columns[column]
        allowed = {
            G: {"guid"},
            S: {"string"},
            B: {"bool"},
            I32: {"int"},
            L: {"int"},
            F: {"int", "decimal"},
            M: {"int", "decimal"},
            D: {"datetime"},
        }[edm] | {"null"}
        if literal.kind not in allowed:
            raise query_error(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{edm}' and '{literal.edm}' for operator kind '{_OPERATORS[operator]}'."
            )
        if literal.kind == "null" and operator not in ("eq", "ne"):
            raise query_error(f"The operator '{operator}' cannot be used with null.")


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) or right(row)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) and right(row)


def comparable(value: Any, edm: str) -> Any:
    """The value as Dataverse compares it: GUIDs and strings case-insensitively."""
    if value is None:
        return None
    if edm == G:
        return str(value).lower()
    if edm == S:
        return str(value).casefold()
    return value


def _comparison(column: str, operator: str, literal: Literal, edm: str) -> Predicate:
    expected = comparable(literal.value, edm)

    def test(row: dict[str, Any]) -> bool:
        actual = comparable(row.get(column), edm)
        if expected is None:
            return (actual is None) == (operator == "eq")
        if actual is None:
            return False  # SQL semantics: a comparison with a null column is never true
        return bool(
            {
                "eq": lambda: actual == expected,
                "ne": lambda: actual != expected,
                "gt": lambda: actual > expected,
                "ge": lambda: actual >= expected,
                "lt": lambda: actual < expected,
                "le": lambda: actual <= expected,
            }[operator]()
        )

    return test


def parse_filter(text: str, table: Table) -> Predicate:
    return _FilterParser(text, table).parse()


# ----------------------------------------------------------------------------------- shaping the results
def order_rows(rows: list[dict[str, Any]], options: QueryOptions, table: Table) -> list[dict[str, Any]]:
    """Sort by ``$orderby`` then by primary key (the order Dataverse pages in)."""
    ordered = sorted(rows, key=lambda r: str(r[table.key]))
    for column, descending in reversed(options.orderby):
        edm = table.columns[column]
        present = [r for r in ordered if r.get(column) is not None]
        missing = [r for r in ordered if r.get(column) is None]
        present.sort(key=lambda r: comparable(r[column], edm), reverse=descending)
        ordered = present + missing if descending else missing + present
    return ordered


def project(row: dict[str, Any], select: list[str] | None, table: Table) -> dict[str, Any]:
    """Keep ``@odata.etag``, the selected columns and the primary key (Dataverse always returns it)."""
    if select is None:
        return dict(row)
    shaped: dict[str, Any] = {"@odata.etag": row["@odata.etag"]}
    for column in select:
        shaped[column] = row[column]
    shaped.setdefault(table.key, row[table.key])
    return shaped


def context_url(base: str, entity_set: str, options: QueryOptions, *, entity: bool = False) -> str:
    """``@odata.context``: ``<base>$metadata#systemusers(col,nav(col))[/$entity]``."""
    parts = list(options.select or [])
    for item in options.expand:
        parts.append(f"{item.navigation}({','.join(item.options.select or [])})")
    shape = f"({','.join(parts)})" if parts else ""
    return f"{base}$metadata#{entity_set}{shape}{'/$entity' if entity else ''}"


# ------------------------------------------------------------------------------------------ paging cookie
def make_skiptoken(table: Table, page_number: int, first_key: str, last_key: str) -> str:
    """The ``$skiptoken`` value (already URL-encoded) of the page after ``page_number``.

    Same shape as Dataverse's: an XML ``cookie`` element whose ``pagingcookie`` attribute holds a second,
    doubly encoded cookie naming the first and last primary key of the page just served.
    """
    inner = (
        f'<cookie page="{page_number}"><{table.key} last="{{{last_key.upper()}}}" '
        f'first="{{{first_key.upper()}}}" /></cookie>'
    )
    inner_encoded = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(inner, safe=""))
    cookie = f'<cookie pagenumber="{page_number + 1}" pagingcookie="{inner_encoded}" istracking="False" />'
    return urllib.parse.quote(cookie, safe="=/")


_COOKIE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([^"]*)" istracking="False" />$')


def parse_skiptoken(token: str, table: Table) -> tuple[int, str]:
    """``(page number, last key of the previous page)`` from a decoded ``$skiptoken``; 400 if tampered."""
    match = _COOKIE.match(token)
    inner = urllib.parse.unquote(match.group(2)) if match else ""
    last = re.search(rf'<{table.key} last="\{{({GUID_PATTERN})\}}"', inner)
    if match is None or last is None or int(match.group(1)) < 2:
        raise WebApiError(400, INVALID_PAGING_COOKIE, "Invalid page number in paging cookie.")
    return int(match.group(1)), last.group(1).lower()


def page_size(prefer: dict[str, str]) -> int | None:
    """The ``odata.maxpagesize`` preference (capped at 5000), or None when absent."""
    text = prefer.get("odata.maxpagesize")
    if text is None:
        return None
    if not text.isdigit() or int(text) == 0:
        raise query_error(f"The value '{text}' of the odata.maxpagesize preference is not a positive integer.")
    return min(int(text), MAX_PAGE_SIZE)


def parse_prefer(header: str | None) -> dict[str, str]:
    """``Prefer: return=representation, odata.maxpagesize=2`` -> ``{"return": "representation", ...}``."""
    preferences: dict[str, str] = {}
    for part in _split_top_level(header or "", ","):
        name, _, value = part.strip().partition("=")
        if name:
            preferences[name.strip().lower()] = value.strip().strip('"')
    return preferences
