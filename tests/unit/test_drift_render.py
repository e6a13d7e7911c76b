"""Snapshot tests of what ``plan`` and ``audit`` print (issue 11 §4): Markdown for a pull request, text for logs.

One stack, read through strict in-memory readers (no network, fixed ids), covering every kind of line: a user to
create, a hand-made user to adopt (enable, move, roles), one to disable, a service with no stack outputs yet, an
unknown role, unmanaged privileged users, a user up to date. The expected renderings are committed under
``tests/snapshots/``; after a deliberate change of wording, regenerate them with::

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest -q tests/unit/test_drift_render.py

and review the diff like any other change.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from adp_identity.desired import load_tree
from adp_identity.drift import (
    ServiceFiles,
    ServiceIdentity,
    StackReport,
    audit_lines,
    audit_markdown,
    plan_lines,
    plan_markdown,
    read_environment,
    report,
    targets,
)
from adp_identity.drift.render import code
from providers.dataverse.models import ActualUser, BusinessUnit, RoleCatalog, SecurityRole

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "tests" / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
URLS = {"dev": "https://defradev-dev.crm11.dynamics.com", "tst": "https://defradev-tst.crm11.dynamics.com"}
ROLES = (
    "Basic User",
    "FFC Payments Reader",
    "FFC Payments Writer",
    "AHWR Claims Processor",
    "System Administrator",
    "System Customizer",
)
WEB, AHWR, ADMIN = (str(uuid.uuid5(uuid.NAMESPACE_DNS, name)) for name in ("web", "ahwr", "admin"))


def guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


class Environment:
    """A catalog and a list of application users with fixed ids, served as the client would."""

    def __init__(self, name: str, url: str) -> None:
        self.environment_url = url
        root = BusinessUnit(guid(name), name, None)
        self.units = {
            unit.name: unit
            for unit in (root, BusinessUnit(guid(name, "p"), "ffc-payments", root.id),
                         BusinessUnit(guid(name, "h"), "animal-health", root.id))
        }  # fmt: skip
        self._catalog = RoleCatalog(
            url,
            tuple(self.units.values()),
            tuple(SecurityRole(guid(u.id, r), r, u.id, guid(root.id, r)) for u in self.units.values() for r in ROLES),
        )
        self.users: list[ActualUser] = []

    def add(self, app: str, name: str, unit: str, roles: Iterable[str], *, disabled: bool = False) -> ActualUser:
        held = self.units[unit]
        user = ActualUser(
            systemuser_id=guid(self.environment_url, app),
            application_id=app,
            full_name=name,
            disabled=disabled,
            business_unit_id=held.id,
            business_unit_name=held.name,
            business_unit_is_root=held.is_root,
            roles={guid(held.id, r): r for r in roles},
        )
        self.users.append(user)
        return user

    def catalog(self, *, after_miss: bool = False) -> RoleCatalog:
        return self._catalog

    def application_users(self) -> list[ActualUser]:
        return list(self.users)


BATCH_APP = str(uuid.uuid5(uuid.NAMESPACE_DNS, "batch-app"))


def build(tmp_path_factory: pytest.TempPathFactory, *, audit: bool) -> StackReport:
    stacks = tmp_path_factory.mktemp("snapshot") / "stacks"
    shutil.copytree(REPO / "stacks", stacks)
    web_file = stacks / "defradev" / "ffc-pay-web.yaml"
    text = web_file.read_text()
    web_file.write_text(text[::-1].replace("FFC Payments Reader"[::-1], "FFC Payments Raeder"[::-1], 1)[::-1])  # tst
    state = load_tree(stacks, "defradev")["defradev"]
    dev, tst = Environment("defradev-dev", URLS["dev"]), Environment("defradev-tst", URLS["tst"])
    for environment in (dev, tst):
        root = next(iter(environment.units))
        environment.add(ADMIN, "adp-platform-admin", root, ["System Administrator"])
    dev.add(WEB, "sndadpinfmi1401-ffc-pay-web", "animal-health", ["System Administrator"], disabled=True)
    ahwr_dev = dev.add(AHWR, "sndadpinfmi1401-ahwr-claims", "animal-health", ["Basic User", "AHWR Claims Processor"])
    tst.add(
        AHWR,
        "sndadpinfmi1401-ahwr-claims",
        "animal-health",
        ["Basic User", "AHWR Claims Processor", "System Customizer"],
    )
    identities = {  # for plan, ffc-pay-batch has no outputs yet: planned as to be created
        "ahwr-claims": ServiceIdentity("ahwr-claims", AHWR, application_users={"dev": ahwr_dev.systemuser_id}),
        "ffc-pay-web": ServiceIdentity("ffc-pay-web", WEB),
    }
    if audit:  # audit needs every service's outputs
        identities["ffc-pay-batch"] = ServiceIdentity("ffc-pay-batch", guid("batch-mi"), BATCH_APP)
    environments = targets(state, identities, URLS, new_services=not audit)
    readers = {"dev": dev, "tst": tst}
    readings = [read_environment(environment, readers[environment.name]) for environment in environments]
    return report(state, readings, files=ServiceFiles(stacks, "defradev"))


@pytest.fixture(scope="module")
def stack_report(tmp_path_factory: pytest.TempPathFactory) -> StackReport:
    return build(tmp_path_factory, audit=False)


@pytest.fixture(scope="module")
def audit_report(tmp_path_factory: pytest.TempPathFactory) -> StackReport:
    return build(tmp_path_factory, audit=True)


def check(name: str, rendered: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_SNAPSHOTS=1 to write it"
    assert rendered == path.read_text(encoding="utf-8"), f"{name} differs: see the module docstring to regenerate"


def test_plan_markdown_snapshot(stack_report: StackReport) -> None:
    check("plan.md", plan_markdown(stack_report))


def test_audit_markdown_snapshot(audit_report: StackReport) -> None:
    check("audit.md", audit_markdown(audit_report))


def test_plan_text_snapshot(stack_report: StackReport) -> None:
    check("plan.txt", "\n".join(plan_lines(stack_report)) + "\n")


def test_audit_text_snapshot(audit_report: StackReport) -> None:
    check("audit.txt", "\n".join(audit_lines(audit_report)) + "\n")


def test_the_markdown_is_one_comment_with_the_table_first_and_the_details_folded(
    stack_report: StackReport, audit_report: StackReport
) -> None:
    for rendered in (plan_markdown(stack_report), audit_markdown(audit_report)):
        lines = rendered.splitlines()
        table = next(i for i, line in enumerate(lines) if line.startswith("| Environment |"))
        assert lines[table + 2].startswith("| `dev` |") and lines[table + 4].startswith("| **Total** |")
        assert table < next(i for i, line in enumerate(lines) if line == "<details>")
        assert rendered.count("<details>") == rendered.count("</details>") == 2
        assert lines[table].split(" | ")[1:6] == ["Create", "Adopt", "Change", "Disable", "Unmanaged privileged"]


def test_each_user_lists_exactly_as_many_writes_as_its_count(stack_report: StackReport) -> None:
    lines = plan_lines(stack_report)
    for index, line in enumerate(lines):
        found = re.search(r"(\d+) writes? in (\d+) requests?$", line)
        if found:
            assert found.group(2) == "1", line  # all of a user's writes go in one change set
            bullets = 0
            for following in lines[index + 1 :]:
                if not following.startswith("    - "):
                    break
                bullets += 1
            assert bullets == int(found.group(1)), line
    markdown = plan_markdown(stack_report).splitlines()
    checked = 0
    for index, line in enumerate(markdown):
        found = re.search(r"(\d+) writes? in 1 request$", line)
        if found and line.startswith("- **"):
            numbered = 0
            for item in markdown[index + 1 :]:
                if not re.match(r"  \d+\. ", item):
                    break
                numbered += 1
            assert numbered == int(found.group(1)), line
            checked += 1
    assert checked == 4  # every user with writes in the snapshot


def test_a_move_names_the_roles_it_removes(stack_report: StackReport) -> None:
    assert (
        "    - move from business unit 'animal-health' to 'ffc-payments' (Dataverse removes its security role "
        "'System Administrator' on the move)"
    ) in plan_lines(stack_report)


def test_an_unknown_role_names_the_file_line_environment_and_the_fix(stack_report: StackReport) -> None:
    (error,) = stack_report.errors
    assert re.fullmatch(
        r"stacks/defradev/ffc-pay-web\.yaml:\d+: dataverse\[1\]\.security_roles\[1\]: security role 'FFC Payments "
        r"Raeder' does not exist in business unit 'ffc-payments' of environment tst \(https://defradev-tst\.crm11\."
        r"dynamics\.com\); did you mean 'FFC Payments Reader' \(or 'FFC Payments Writer'\)\?",
        error.message,
    ), error.message


@pytest.mark.parametrize(
    ("text", "span"),
    [("plain", "`plain`"), ("a`b", "``a`b``"), ("`x", "`` `x ``"), ("<img src=x>", "`<img src=x>`")],
)
def test_names_from_dataverse_cannot_break_out_of_their_code_span(text: str, span: str) -> None:
    assert code(text) == span
