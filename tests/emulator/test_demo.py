"""The demo tells the story it claims, with the request counts it prints (the demo is part of the product)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from adp_identity_sandbox.demo import WIDTH, run_demo, summarise


def test_demo_runs_the_whole_story_and_counts_requests(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, highlight=False, color_system=None)
    steps = run_demo(console, tmp_path)
    summarise(console, steps)
    text = out.getvalue()

    assert len(steps) == 13
    titles = [step.title for step in steps]
    assert titles[1] == "the provider, as `pulumi up` runs it: create two users"
    assert steps[0].tokens == 1  # one token request for the workload identity
    create = steps[1]
    assert create.writes == 2  # 2 users x 1 atomic $batch (the user and all its roles)
    assert create.tokens == 1  # the provider host fetched one token for the environment, reused after
    assert steps[2].writes == 1  # adopt: enable, move and roles in one change set
    assert steps[3].writes == 0 and steps[3].admin > 0  # the admin centre's changes are counted apart
    assert steps[4].writes == 0  # the refresh only reads
    assert steps[5].writes == 2  # exactly the two differences, one request per user
    assert steps[6].writes == 1  # revoke: roles removed and disabled in one change set
    # chapter 2: nothing the tool does there writes to Dataverse
    assert all(step.writes == 0 for step in steps[7:])
    assert steps[7].admin > 0  # the hand-made users
    assert "drift: roles added by hand: System Administrator" in text
    assert "drift: enabled: yes -> no" in text
    assert "ffc-pay-web: in sync" in text
    assert "changed stacks/defradev/ahwr-claims.yaml" in text and "changed stacks/defradev/ffc-pay-web.yaml" in text
    assert "validate: OK" in text
    assert "ahwr-claims in tst: 0 write(s) to send in 0 request(s)" in text
    assert "ffc-pay-web in tst: 0 write(s) to send in 0 request(s)" in text
    assert "did you mean 'AHWR Claims Processor'?" in text and "plan exit status 1" in text
    assert "check failed: security role 'AHWR Claim Processor' does not exist" in text
    assert "total" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH  # never wraps mid-word at 80 columns
    assert "eyJ" not in text  # no token (JWTs start with eyJ) is ever printed
    assert "disabled=" not in text and "False" not in text  # plain words, no Python values
