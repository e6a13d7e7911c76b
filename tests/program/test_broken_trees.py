"""Every broken tree that `adp-identity validate` refuses is refused by the Pulumi program too, whole.

The same cases as tests/unit/test_desired_cases.py (each a valid tree plus one breakage), run as `pulumi preview`
would run the program: nothing is registered, no stack output is set, and the error is the loader's one-line
messages and nothing else — never a traceback, never a partly applied change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pytest

from adp_identity.desired import DesiredStateErrors, load_stack
from tests.program import mocks
from tests.unit.test_desired_cases import CASES, Case

_STACK_OF_FILE = re.compile(r"^stacks/(?:Pulumi\.(?P<settings>[a-z0-9-]+)\.yaml|(?P<dir>[a-z0-9-]+)/)")


def _stacks_of(case: Case) -> list[str]:
    found: list[str] = []
    for expected in case.expected:
        match = _STACK_OF_FILE.match(expected.file)
        stack = match and (match.group("settings") or match.group("dir"))
        if stack and stack not in found:
            found.append(stack)
    return found


PROGRAM_CASES = [pytest.param(case, stack, id=f"{case.id}-{stack}") for case in CASES for stack in _stacks_of(case)]


def test_most_broken_trees_reach_the_program() -> None:
    assert len({p.values[0].id for p in PROGRAM_CASES}) >= 25  # type: ignore[union-attr]


@pytest.mark.parametrize(("case", "stack"), PROGRAM_CASES)
def test_the_program_refuses_the_broken_tree_before_registering_anything(
    case: Case, stack: str, tmp_path: Path
) -> None:
    root = mocks.copy_project(tmp_path)
    for edit in case.edits:
        edit(root)
    stacks_dir = mocks.read_project(root).stack_config_dir
    with pytest.raises(DesiredStateErrors) as loaded:
        load_stack(stacks_dir, stack)
    try:
        config = mocks.stack_config(mocks.read_project(root), stack)
    except Exception:
        # No stack file, or one that is not YAML at all: no stack for the Pulumi CLI to run the program in.
        stack_file = f"stacks/Pulumi.{stack}.yaml"
        files = {e.file.split(":")[0] for e in loaded.value.errors}
        assert not (root / stack_file).is_file() or files == {stack_file}
        return

    run = mocks.run_program(root, stack, config)

    assert run.registrations == []
    assert run.stack_outputs == {}
    assert isinstance(run.error, pulumi.RunError)
    lines = str(run.error).splitlines()
    assert "nothing was changed" in lines[0]
    assert lines[1:] == [str(error) for error in loaded.value.errors]
    assert "Traceback" not in str(run.error)
