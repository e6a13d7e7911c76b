"""The demo tells the story it claims, with the request counts it prints (the demo is part of the product)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from adp_identity_sandbox.demo import run_demo, summarise


def test_demo_runs_the_whole_story_and_counts_requests(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, highlight=False, color_system=None)
    steps = run_demo(console, tmp_path)
    summarise(console, steps)
    text = out.getvalue()

    by_title = {step.title.split(":")[0]: step for step in steps}
    assert len(steps) == 8
    assert steps[0].tokens == 1  # one token request for the workload identity
    create = steps[2]
    assert create.writes == 2  # 2 users x 1 request (the create and all its roles: one change set)
    assert create.tokens == 1  # the provider host fetched one token for the environment, reused after
    adopt = steps[3]
    assert adopt.writes == 1  # enable, move business unit, the roles: one change set
    assert steps[5].writes == 0  # the drift run only reads
    assert steps[6].writes == 2  # exactly the two differences: one role removed, one user re-enabled
    assert steps[7].writes == 1  # revoke: roles removed, then disabled, in one change set
    assert "pulumi up" in by_title
    assert "DRIFT roles added by hand: System Administrator" in text
    assert "DRIFT disabled: False -> True" in text
    assert "sndadpinfmi1401-ffc-pay-web: in sync" in text
    assert "eyJ" not in text  # no token (JWTs start with eyJ) is ever printed
