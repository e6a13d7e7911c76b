"""Input files from a pull request: regular files inside the tree only, bounded, never echoed (issue 10, Low).

Before: `validate` followed a symbolic link out of the tree and echoed what it read (the lines of /etc/shadow as
"unknown key"), and hung for ever on a FIFO. Now each of these is one line naming the file and what kind of file
it is, without reading it; what is read is bounded; deep nesting and huge numbers are one-line refusals.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adp_identity.desired import check_tree
from adp_identity.desired.yamlsafe import MAX_BYTES

from .test_desired_cases import WEB, make_tree, write

SECRETISH = "root:$6$rounds=5000$c2FsdHNhbHQ$not-a-real-hash:19000:0:99999:7:::\nsecret_token: hunter2-very-private\n"


def validate(stacks: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The console command, in its own process: a hang fails the test by timeout instead of hanging the run."""
    return subprocess.run(
        [sys.executable, "-m", "adp_identity.cli", "validate", "--stacks", str(stacks), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def lines_for(stacks: Path, file: str) -> list[str]:
    report = check_tree(stacks)
    return [str(e) for e in report.errors if e.file == file]


def test_a_symlink_out_of_the_tree_is_refused_without_reading_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(SECRETISH, encoding="utf-8")
    stacks = make_tree(tmp_path, ())
    (stacks / "defradev" / "ffc-pay-web.yaml").unlink()
    (stacks / "defradev" / "ffc-pay-web.yaml").symlink_to(outside)
    assert lines_for(stacks, WEB) == [
        f"{WEB}: (document): symbolic link to a file outside the stacks directory (not read); allowed: a regular"
        " file inside the stacks directory"
    ]
    result = validate(stacks)
    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr and "rounds=5000" not in result.stdout + result.stderr


def test_a_symlink_to_etc_passwd_or_a_device_is_refused(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, ())
    for name, target in (("ffc-pay-admin.yaml", "/etc/passwd"), ("ffc-pay-zero.yaml", "/dev/zero")):
        (stacks / "defradev" / name).symlink_to(target)
    report = check_tree(stacks)
    assert [(e.file, e.message) for e in report.errors] == [
        ("stacks/defradev/ffc-pay-admin.yaml", "symbolic link to a file outside the stacks directory (not read)"),
        ("stacks/defradev/ffc-pay-zero.yaml", "symbolic link to a file outside the stacks directory (not read)"),
    ]


def test_a_symlink_inside_the_tree_is_followed(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, ())
    target = stacks / "defradev" / "ffc-pay-web.yaml"
    moved = stacks / "shared-ffc-pay-web.yaml.txt"
    target.rename(moved)
    target.symlink_to(Path("..") / moved.name)
    assert check_tree(stacks).errors == []


def test_a_service_directory_linked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, ())
    elsewhere = tmp_path / "elsewhere"
    (stacks / "defradev").rename(elsewhere)
    (stacks / "defradev").symlink_to(elsewhere, target_is_directory=True)
    errors = [str(e) for e in check_tree(stacks).errors]
    assert errors[0] == (
        "stacks/defradev/: (document): symbolic link to a directory outside the stacks directory (not read); allowed:"
        " a directory inside the stacks directory"
    )


@pytest.mark.parametrize("name", ["defradev/ffc-pay-admin.yaml", "Pulumi.defratest.yaml", "policy-exceptions.yaml"])
def test_a_fifo_is_refused_at_once_and_never_opened_for_reading(tmp_path: Path, name: str) -> None:
    stacks = make_tree(tmp_path, ())
    fifo = stacks / name
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    result = validate(stacks)  # would block for ever reading a FIFO nobody writes to
    assert result.returncode == 1
    assert f"stacks/{name}: (document): is a FIFO (named pipe), not a file (not read); allowed: a regular file" in (
        result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_a_device_node_in_the_tree_is_refused(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, ())
    node = stacks / "defradev" / "ffc-pay-null.yaml"
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc.strerror})")
    assert lines_for(stacks, "stacks/defradev/ffc-pay-null.yaml") == [
        "stacks/defradev/ffc-pay-null.yaml: (document): is a device, not a file (not read); allowed: a regular file"
        " inside the stacks directory"
    ]


def test_a_huge_file_is_refused_from_its_size(tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, (write(WEB, b"#" * (MAX_BYTES * 8)),))
    assert lines_for(stacks, WEB) == [
        f"{WEB}: (document): file is larger than 256 KiB ({MAX_BYTES * 8} bytes); allowed: at most 256 KiB"
    ]


def test_deep_nesting_and_huge_numbers_are_one_line_refusals(tmp_path: Path) -> None:
    deep = "service: ffc-pay-web\nteam: " + "[" * 5000 + "]" * 5000 + "\n"
    digits = "service: ffc-pay-web\nteam: ffc-payments\nworkload_identity:\n  app_config_provider: " + "9" * 5000 + "\n"
    stacks = make_tree(tmp_path, (write(WEB, deep), write("stacks/defradev/ahwr-claims.yaml", digits)))
    assert lines_for(stacks, WEB) == [
        f"{WEB}:2: (document): nested deeper than 32 levels; allowed: the shape in the schema"
    ]
    assert lines_for(stacks, "stacks/defradev/ahwr-claims.yaml") == [
        "stacks/defradev/ahwr-claims.yaml:4: (document): number of 5000 digits; allowed: numbers of at most 40 digits"
    ]
    result = validate(stacks)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr


def test_an_unknown_key_is_echoed_as_a_short_excerpt_only(tmp_path: Path) -> None:
    key = "k" * 1000  # YAML's longest plain key
    stacks = make_tree(tmp_path, (write(WEB, f"service: ffc-pay-web\nteam: ffc-payments\n{key}: 1\n"),))
    (line,) = lines_for(stacks, WEB)
    assert len(line) < 700 and "k" * 147 + "..." in line and "k" * 148 not in line
