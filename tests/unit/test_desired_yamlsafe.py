"""The strict YAML reader: what a reviewer sees is exactly what is loaded, or a one-line refusal.

The desired-state loader reads through ``adp_identity.desired.yamlsafe``; the reader itself is the shared
``adp_yaml`` (the emulator's seeds use it too, with aliases allowed).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adp_identity.desired import yamlsafe
from adp_yaml import MAX_ALIAS_NODES, MAX_BYTES, YamlRefused, parse_yaml, read_yaml


def refused(data: bytes) -> YamlRefused:
    with pytest.raises(YamlRefused) as raised:
        parse_yaml(data)
    return raised.value


def test_plain_scalars_follow_yaml_1_2_core_not_1_1() -> None:
    data = parse_yaml(
        b"a: yes\nb: no\nc: on\nd: 1:20\ne: 2024-01-01\nf: 0x1F\ng: 0o17\nh: 012\ni: .5\nj: ~\nk: True\n"
        b"l: 'true'\nm: 1_000\nn: -7\no: .inf\np: null\nq:\n"
    ).data
    assert data == {
        "a": "yes",
        "b": "no",
        "c": "on",
        "d": "1:20",
        "e": "2024-01-01",
        "f": 31,
        "g": 15,
        "h": 12,
        "i": 0.5,
        "j": None,
        "k": True,
        "l": "true",
        "m": "1_000",
        "n": -7,
        "o": math.inf,
        "p": None,
        "q": None,
    }


def test_quoted_and_block_scalars_are_strings() -> None:
    data = parse_yaml(b"a: '14'\nb: \"true\"\nc: |\n  line one\n  line two\nd: >\n  folded\n  text\n").data
    assert data == {"a": "14", "b": "true", "c": "line one\nline two\n", "d": "folded text\n"}


def test_lines_of_keys_and_items_are_kept() -> None:
    document = parse_yaml(b"# comment\nservice: x\ndataverse:\n  - environment: dev\n    roles:\n      - A\n")
    assert document.line_of(("service",)) == 2
    assert document.line_of(("dataverse", 0, "environment")) == 4
    assert document.line_of(("dataverse", 0, "roles", 0)) == 6
    assert document.line_of(("dataverse", 0, "missing")) == 4  # nearest ancestor
    assert document.line_of(("nowhere",)) == 2  # the document's first line


def test_utf8_bom_is_accepted() -> None:
    assert parse_yaml("\ufeffteam: équipe\n".encode()).data == {"team": "équipe"}


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b"a: 1\na: 2\n", "duplicate key 'a' (first at line 1)", 2),
        (b"a:\n  b: 1\n  b: 2\n", "duplicate key 'b' (first at line 2)", 3),
        (b"a: &x 1\n", "anchor '&x' (anchors and aliases are refused)", 1),
        (b"a: 1\nb: *x\n", "alias '*x' (anchors and aliases are refused)", 2),
        (b"a: 1\n<<: &m {b: 2}\n", "anchor '&m' (anchors and aliases are refused)", 2),
        (b"a:\n\t- 1\n", "tab character in indentation", 2),
        (b"", "file is empty", 1),
        (b"# only a comment\n", "file is empty", 1),
        (b"a: 1\x00\n", "binary file (NUL byte)", 1),
        (b"a: 1\nb: \xc3\x28\n", "invalid UTF-8 (byte 0xc3)", 2),
        (b"a: 1\nb: \x07\n", "unacceptable character #x0007", 2),
        (b"- 1\n", "top level is a list, not a mapping", 1),
        (b"just text\n", "top level is a string, not a mapping", 1),
        (b"14: x\n", "key 14 is a number, not a string", 1),
        (b"? [a]\n: 1\n", "key is a list, not a string", 1),
        (b"a: !!binary aGVsbG8=\n", "explicit tag 'tag:yaml.org,2002:binary'", 1),
        (b"a: !custom x\n", "explicit tag '!custom'", 1),
        (
            b"a: 1\n---\nb: 2\n",
            "YAML syntax error: expected a single document in the stream, but found another document",
            2,
        ),
        (b"a: [1, 2\nb: 3\n", "YAML syntax error: expected ',' or ']', but got ':'", 2),
        (b"a: " + b"[" * 40 + b"]" * 40 + b"\n", "nested deeper than 32 levels", 1),
        (b"a: " + b"9" * 41 + b"\n", "number of 41 digits", 1),
    ],
)
def test_refusals_are_one_line_with_line_number(data: bytes, message: str, line: int) -> None:
    error = refused(data)
    assert (error.message, error.line) == (message, line)
    assert "\n" not in error.message


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    levels = ['lol0: &l0 "lol"'] + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    error = refused("\n".join(levels).encode())
    assert error.message == "anchor '&l0' (anchors and aliases are refused)"


def test_the_desired_state_face_is_the_shared_reader() -> None:
    assert (yamlsafe.parse_yaml, yamlsafe.read_yaml, yamlsafe.YamlRefused) == (parse_yaml, read_yaml, YamlRefused)


def test_aliases_share_values_only_when_allowed() -> None:
    data = b"base: &roles\n  - Reader\n  - Writer\nother: *roles\nnested: {a: *roles}\n"
    assert refused(data).message == "anchor '&roles' (anchors and aliases are refused)"
    document = parse_yaml(data, allow_aliases=True)
    assert document.data == {
        "base": ["Reader", "Writer"],
        "other": ["Reader", "Writer"],
        "nested": {"a": ["Reader", "Writer"]},
    }
    assert document.line_of(("other",)) == 4
    assert document.line_of(("other", 1)) == 3  # an aliased value keeps the lines of its anchor


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b"a: 1\nb: *x\n", "YAML syntax error: found undefined alias 'x'", 2),
        (b"a: &x [*x]\n", "nested deeper than 32 levels", 1),  # refers to itself: infinitely deep
        (
            b"a: &x " + b"[" * 20 + b"]" * 20 + b"\nb: " + b"[" * 15 + b"*x" + b"]" * 15 + b"\n",
            "nested deeper than 32 levels",
            1,
        ),
        (b"a: !!str &x 1\nb: *x\n", "explicit tag 'tag:yaml.org,2002:str'", 1),
    ],
)
def test_allowed_aliases_keep_the_other_limits(data: bytes, message: str, line: int) -> None:
    with pytest.raises(YamlRefused) as raised:
        parse_yaml(data, allow_aliases=True)
    assert (raised.value.message, raised.value.line) == (message, line)


def test_billion_laughs_is_refused_after_bounded_expansion_when_aliases_are_allowed() -> None:
    levels = ['lol0: &l0 "lol"'] + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    with pytest.raises(YamlRefused) as raised:
        parse_yaml("\n".join(levels).encode(), allow_aliases=True)
    assert raised.value.message == f"aliases expand to more than {MAX_ALIAS_NODES} nodes"
    small = "\n".join(levels[:5]).encode()  # 10 + 100 + 1,000 + 10,000 repeated nodes: within the limit
    assert len(parse_yaml(small, allow_aliases=True).data["lol4"]) == 10


def test_oversized_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * MAX_BYTES)
    with pytest.raises(YamlRefused) as raised:
        read_yaml(path)
    assert raised.value.message == f"file is larger than 256 KiB ({MAX_BYTES + 5} bytes)"
    assert refused(b"#" * (MAX_BYTES + 1)).message.startswith("file is larger than 256 KiB")


def test_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "limit.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * (MAX_BYTES - 5))
    assert read_yaml(path).data == {"a": 1}


def test_unreadable_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(YamlRefused) as raised:
        read_yaml(tmp_path)
    assert raised.value.message == "is a directory, not a file"
    with pytest.raises(YamlRefused) as raised:
        read_yaml(tmp_path / "absent.yaml")
    assert raised.value.message == "cannot be read (No such file or directory)"
