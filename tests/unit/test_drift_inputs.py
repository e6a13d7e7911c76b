"""Bounded inputs (issue 10 §0 Low) and the sandbox's inputs: the emulator's description and its variables.

``--identities`` never reads more than its size limit (not the whole of /dev/zero, not the whole of stdin), a
pipe is refused rather than waited on, and deep nesting or a 5,000-digit integer is a one-line refusal, never a
``RecursionError`` or ``ValueError`` traceback.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adp_identity.cli import cli
from adp_identity.desired import DesiredState, load_tree
from adp_identity.desired.yamlsafe import MAX_BYTES
from adp_identity.drift import DriftInputErrors, parse_identities, read_bounded, read_identities, sandbox_urls
from adp_identity.drift.identities import MAX_DIGITS
from adp_identity.drift.sandbox import (
    dataverse_url_variable,
    emulator_environment_name,
    parse_emulator_description,
    stack_outputs,
)

REPO = Path(__file__).resolve().parents[2]
WEB = "fc9fbebc-4fc2-484c-b463-1f766e4117e6"


def one_error(raised: pytest.ExceptionInfo[DriftInputErrors]) -> str:
    (error,) = raised.value.errors
    line = str(error)
    assert "\n" not in line
    return line


class EndlessStream(io.RawIOBase):
    """A stdin that never ends and records how much was asked of it."""

    def __init__(self) -> None:
        self.requested = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            pytest.fail("stdin was read to its end")
        self.requested += size
        return b"{" * size


def test_stdin_is_read_no_further_than_the_limit() -> None:
    stream = EndlessStream()
    with pytest.raises(DriftInputErrors) as raised:
        read_identities("-", stdin=stream)  # type: ignore[arg-type]
    assert one_error(raised) == f"(stdin): (document): is larger than {MAX_BYTES // 1024} KiB; allowed: at most 256 KiB"
    assert stream.requested == MAX_BYTES + 1


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused_after_the_limit_not_read_to_the_end() -> None:
    started = time.monotonic()
    with pytest.raises(DriftInputErrors) as raised:
        read_identities("/dev/zero")
    assert one_error(raised).startswith("/dev/zero: (document): is larger than 256 KiB")
    assert time.monotonic() - started < 5


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "outputs.json"
    os.mkfifo(fifo)
    with pytest.raises(DriftInputErrors) as raised:
        read_bounded(str(fifo), str(fifo), allowed="JSON or YAML file")  # would block forever if opened
    assert one_error(raised) == (
        f"{fifo}: (document): is a pipe, not a file; allowed: JSON or YAML file in a regular file, or - for stdin"
    )


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DriftInputErrors) as raised:
        read_identities(str(tmp_path))
    assert "is a directory, not a file" in one_error(raised)


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_json_nesting_is_one_line_not_a_recursion_error(opening: str) -> None:
    data = (opening * 200_000).encode()[: MAX_BYTES - 10]
    with pytest.raises(DriftInputErrors) as raised:
        parse_identities(data, "outputs.json")
    assert one_error(raised).startswith("outputs.json: (document): nested deeper than 32 levels")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    data = json.dumps({"ffc-pay-web": {"client_id": WEB, "identity_name": "[" * 1000}}).encode()
    assert parse_identities(data, "outputs.json")["ffc-pay-web"].client_id == WEB


def test_a_5000_digit_integer_is_one_line_in_json() -> None:
    data = ('{"ffc-pay-web": {"client_id": ' + "9" * 5000 + "}}").encode()
    with pytest.raises(DriftInputErrors) as raised:
        parse_identities(data, "outputs.json")
    assert one_error(raised) == (
        f"outputs.json: (document): an integer of 5000 digits; allowed: numbers of at most {MAX_DIGITS} digits"
    )


def test_a_5000_digit_integer_is_one_line_in_yaml() -> None:
    data = ("ffc-pay-web:\n  client_id: " + "9" * 5000 + "\n").encode()
    with pytest.raises(DriftInputErrors) as raised:
        parse_identities(data, "outputs.yaml")
    line = one_error(raised)
    assert line.startswith("outputs.yaml:2: ") and "9999999999" not in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[" * 100_000, "nested deeper than 32 levels"),
        (b'{"a": ' + b"1" * 5000 + b"}", "an integer of 5000 digits"),
    ],
)
def test_the_commands_refuse_bad_identities_in_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["plan", "--stacks", str(REPO / "stacks"), "--stack", "defradev",
                                      "--identities", str(path)])  # fmt: skip
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert expected in line and "Traceback" not in result.output


# -- the sandbox: which emulator environment a stack environment is -------------------------------------------------


@pytest.fixture(scope="module")
def state() -> DesiredState:
    return load_tree(REPO / "stacks", "defradev")["defradev"]


def description(**extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "authority_host": "https://127.0.0.1:1",
        "tenants": [
            {"name": "DefraDev", "id": "A798744B-41A1-41B0-B394-141DBF8496C4"},
            {"name": "Defra", "id": "f204cad1-9a84-48cc-a48e-3e1300dc5edc"},
        ],
        "environments": [
            {"name": "defradev-dev", "tenant": "DefraDev", "url": "https://127.0.0.1:1001"},
            {"name": "defradev-tst", "tenant": "DefraDev", "url": "https://127.0.0.1:1002/"},
            {"name": "defra-pre", "tenant": "Defra", "url": "https://127.0.0.1:1003"},
        ],
        "identities": [
            {"name": "sndadpinfmi1401-ffc-pay-web", "tenant": "DefraDev", "client_id": WEB, "object_id": WEB},
            {"name": "ADP-FFC-PayBatch", "tenant": "DefraDev", "client_id": "c2e9bff9-b82e-4a58-87b8-db1567810a40",
             "object_id": "36e91ce6-4f5d-470e-a454-f4339fdb79da"},
            {"name": "sndadpinfmi1401-ffc-pay-batch", "tenant": "DefraDev",
             "client_id": "f48a997a-a8ff-4598-b5a8-da4de8a0ce5c", "object_id": "b8a18eb9-3a94-4cc7-a3c3-7e59901b7246"},
        ],
    }  # fmt: skip
    document.update(extra)
    return document


def test_a_stack_environment_is_the_emulator_environment_named_like_its_host() -> None:
    assert emulator_environment_name("https://defradev-dev.crm11.dynamics.com") == "defradev-dev"
    assert emulator_environment_name("https://127.0.0.1:8443") is None
    assert dataverse_url_variable("defradev-dev") == "DATAVERSE_URL_DEFRADEV_DEV"


def test_the_emulator_file_gives_urls_and_the_tenant_of_the_stacks_name(state: DesiredState) -> None:
    found = sandbox_urls(state, description=parse_emulator_description(description(), "emu.json"), environ={})
    assert dict(found.urls) == {"dev": "https://127.0.0.1:1001", "tst": "https://127.0.0.1:1002"}
    assert found.tenant_id == "a798744b-41a1-41b0-b394-141dbf8496c4"
    assert set(found.url_from.values()) == {"--emulator emu.json"}
    only_tst = sandbox_urls(
        state,
        description=parse_emulator_description(description(), "emu.json"),
        environ={},
        overridden=frozenset({"dev"}),
    )
    assert dict(only_tst.urls) == {"tst": "https://127.0.0.1:1002"}


def test_the_emulator_file_must_hold_every_environment_in_the_stacks_tenant(state: DesiredState) -> None:
    moved = description(
        environments=[
            {"name": "defradev-dev", "tenant": "Defra", "url": "https://127.0.0.1:1001"},
        ]
    )
    with pytest.raises(DriftInputErrors) as raised:
        sandbox_urls(state, description=parse_emulator_description(moved, "emu.json"), environ={})
    assert [str(e) for e in raised.value.errors] == [
        "emu.json: environments.defradev-dev: no environment 'defradev-dev' of tenant DefraDev for stack environment "
        "'dev' (it is tenant Defra's); allowed: none",
        "emu.json: environments.defradev-tst: no environment 'defradev-tst' of tenant DefraDev for stack environment "
        "'tst'; allowed: none",
    ]


def test_a_broken_emulator_file_is_one_line_per_problem() -> None:
    with pytest.raises(DriftInputErrors) as raised:
        parse_emulator_description({"tenants": "x", "environments": [{"name": "a", "url": "http://x"}]}, "emu.json")
    assert [str(e) for e in raised.value.errors] == [
        "emu.json: tenants: is a string; allowed: a list of mappings, as the emulator writes it",
        "emu.json: environments.tenant: is null; allowed: a string, as the emulator writes it",
        "emu.json: identities: is null; allowed: a list of mappings, as the emulator writes it",
    ]


def test_dataverse_url_variables_point_the_environments_they_name(state: DesiredState) -> None:
    found = sandbox_urls(state, description=None, environ={"DATAVERSE_URL_DEFRADEV_TST": "https://127.0.0.1:7/"})
    assert dict(found.urls) == {"tst": "https://127.0.0.1:7"}
    assert dict(found.url_from) == {"tst": "DATAVERSE_URL_DEFRADEV_TST"}
    assert found.tenant_id is None  # variables carry URLs only: the stack's own tenant stays what is checked
    with pytest.raises(DriftInputErrors) as raised:
        sandbox_urls(state, description=None, environ={"DATAVERSE_URL_DEFRADEV_DEV": "http://127.0.0.1:7"})
    assert one_error(raised) == (
        "DATAVERSE_URL_DEFRADEV_DEV: (document): 'http://127.0.0.1:7' is not an https origin; allowed: https://<host>"
    )


def test_stack_outputs_name_the_seeds_identities_as_pulumi_would(state: DesiredState) -> None:
    outputs = stack_outputs(state, parse_emulator_description(description(), "emu.json"))
    assert outputs == {  # ahwr-claims has no identity in this description: a service not deployed yet
        "ffc-pay-batch": {
            "identity_name": "sndadpinfmi1401-ffc-pay-batch",
            "client_id": "f48a997a-a8ff-4598-b5a8-da4de8a0ce5c",
            "principal_id": "b8a18eb9-3a94-4cc7-a3c3-7e59901b7246",
            "tenant_id": "a798744b-41a1-41b0-b394-141dbf8496c4",
            "dataverse_application_users": {},
            "app_registration_client_id": "c2e9bff9-b82e-4a58-87b8-db1567810a40",
        },
        "ffc-pay-web": {
            "identity_name": "sndadpinfmi1401-ffc-pay-web",
            "client_id": WEB,
            "principal_id": WEB,
            "tenant_id": "a798744b-41a1-41b0-b394-141dbf8496c4",
            "dataverse_application_users": {},
        },
    }
    assert parse_identities(json.dumps(outputs).encode(), "x")["ffc-pay-batch"].app_registration_client_id
