"""``adp-identity graph``: the model, the three drawings and the command, on a small tree written here.

The tree has what every part of a drawing needs: two services (one with an app registration), a production and
a non-production environment, a privileged role held outside production (policy forbids it only in production),
a business unit, and a disabled user. The SVG is parsed with ``xml.etree`` and checked node by node; the Mermaid
text is compared with a snapshot; DOT is checked statement by statement; hostile names are escaped in each.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from adp_identity.cli import cli
from adp_identity.desired import DesiredState, load_tree
from adp_identity.drift import ServiceIdentity
from adp_identity.graph import dot, mermaid, svg
from adp_identity.graph.model import Graph, LiveEnvironment, from_desired, from_live
from providers.dataverse.models import ActualUser

SVG = "{http://www.w3.org/2000/svg}"
TENANT = "11111111-2222-3333-4444-555555555555"
STACK_FILE = f"""\
config:
  adp-identity:tenant:
    name: DefraDev
    tenant_id: {TENANT}
    subscription_id: 22222222-3333-4444-5555-666666666666
    resource_group: SNDADPINFRG1401
    naming:
      resource_name_prefix: SNDADPINF
      region_id: "14"
    tags: {{ServiceCode: ADP, ServiceType: Dedicated, Environment: SND}}
    aks_clusters:
      SNDADPINFAK1401: https://oidc.example/one/
    key_vault:
      name: sndadpinfkv1401
      resource_group: SNDADPINFRG1401
    dataverse_environments:
      dev:
        url: https://demo-dev.crm11.dynamics.com
        production: false
      prd:
        url: https://demo-prd.crm11.dynamics.com
        production: true
"""
SERVICES = {
    "ffc-pay-batch": """\
service: ffc-pay-batch
team: ffc-payments
app_registration: {}
dataverse:
  - environment: dev
    business_unit: ffc-payments
    security_roles: [Basic User, System Customizer]
    principal: app_registration
  - environment: prd
    security_roles: [Basic User]
    disabled: true
""",
    "ahwr-claims": """\
service: ahwr-claims
team: animal-health
dataverse:
  - environment: dev
    security_roles: [Basic User]
""",
}


def write_demo_tree(root: Path) -> Path:
    """The small stacks tree of these tests (stack ``demo``) under ``root``."""
    (root / "demo").mkdir(parents=True)
    (root / "Pulumi.demo.yaml").write_text(STACK_FILE, encoding="utf-8")
    for name, text in SERVICES.items():
        (root / "demo" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    return write_demo_tree(tmp_path / "stacks")


@pytest.fixture
def state(stacks: Path) -> DesiredState:
    return load_tree(stacks, "demo")["demo"]


@pytest.fixture
def graph(state: DesiredState) -> Graph:
    return from_desired(state)


# -- the model ------------------------------------------------------------------------------------------------


def test_the_declared_graph_has_services_identities_environments_and_roles(graph: Graph) -> None:
    kinds = [(node.kind, node.label) for node in graph.nodes]
    assert kinds == [
        ("service", "ahwr-claims"),
        ("service", "ffc-pay-batch"),
        ("managed_identity", "sndadpinfmi1401-ahwr-claims"),
        ("managed_identity", "sndadpinfmi1401-ffc-pay-batch"),
        ("app_registration", "ADP-FFC-PayBatch"),
        ("role", "Basic User"),  # dev
        ("role", "System Customizer"),  # dev
        ("role", "Basic User"),  # prd
    ]
    assert [(group.label, group.production) for group in graph.groups if group.column == 2] == [
        ("dev", False),
        ("prd: production", True),
    ]
    assert [node.label for node in graph.privileged] == ["System Customizer"]
    edges = {
        (graph.node(e.source).label, graph.node(e.target).label, graph.node(e.target).group, e.label, e.disabled)
        for e in graph.edges
    }
    assert edges == {
        ("ahwr-claims", "sndadpinfmi1401-ahwr-claims", "identities", "", False),
        ("ffc-pay-batch", "sndadpinfmi1401-ffc-pay-batch", "identities", "", False),
        ("ffc-pay-batch", "ADP-FFC-PayBatch", "identities", "", False),
        ("sndadpinfmi1401-ahwr-claims", "Basic User", "env1", "", False),
        ("ADP-FFC-PayBatch", "Basic User", "env1", "BU ffc-payments", False),
        ("ADP-FFC-PayBatch", "System Customizer", "env1", "BU ffc-payments", False),
        ("sndadpinfmi1401-ffc-pay-batch", "Basic User", "env2", "", True),
    }


def _user(
    name: str, application: str, roles: dict[str, str], *, disabled: bool = False, unit: str = "root"
) -> ActualUser:
    return ActualUser(
        systemuser_id=f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
        application_id=application,
        full_name=name,
        disabled=disabled,
        business_unit_id="33333333-0000-0000-0000-000000000000",
        business_unit_name=unit,
        business_unit_is_root=unit == "root",
        roles=roles,
    )


ADMIN = "a0000000-0000-0000-0000-000000000001"
CLAIMS = "c0000000-0000-0000-0000-000000000002"


def _live(state: DesiredState, identities: dict[str, ServiceIdentity] | None = None) -> Graph:
    dev = [
        _user("sndadpinfmi1401-ahwr-claims", CLAIMS, {"r1": "Basic User"}),
        _user("break-glass admin", ADMIN, {"r2": "System Administrator", "r1": "Basic User"}),
        _user("ADP-FFC-PayBatch", "b0000000-0000-0000-0000-000000000003", {"r3": "Basic User"}, unit="ffc-payments"),
    ]
    prd = [_user("break-glass admin", ADMIN, {"r9": "System Administrator"}, disabled=True)]
    return from_live(state, [LiveEnvironment("dev", dev), LiveEnvironment("prd", prd)], identities)


def test_the_live_graph_maps_users_by_adp_naming_and_draws_the_rest_apart(state: DesiredState) -> None:
    graph = _live(state)
    unmanaged = [node for node in graph.nodes if node.kind == "unmanaged_user"]
    assert [(n.label, n.detail, n.group) for n in unmanaged] == [("break-glass admin", ADMIN, "unmanaged")]
    assert [g.label for g in graph.groups] == [
        "Services",
        "Identities",
        "Unmanaged application users",
        "dev",
        "prd: production",
    ]
    held = {
        (graph.node(e.source).label, graph.node(e.target).label, graph.node(e.target).group, e.label, e.disabled)
        for e in graph.edges
        if graph.node(e.target).kind == "role"
    }
    assert held == {
        ("sndadpinfmi1401-ahwr-claims", "Basic User", "env1", "", False),
        ("ADP-FFC-PayBatch", "Basic User", "env1", "BU ffc-payments", False),
        ("break-glass admin", "Basic User", "env1", "", False),
        ("break-glass admin", "System Administrator", "env1", "", False),
        ("break-glass admin", "System Administrator", "env2", "", True),
    }
    assert sorted((n.label, n.group) for n in graph.privileged) == [
        ("System Administrator", "env1"),
        ("System Administrator", "env2"),
    ]
    # ffc-pay-batch's managed identity holds nothing live, and its declared grants are not drawn
    assert not [e for e in graph.edges if graph.node(e.source).label == "sndadpinfmi1401-ffc-pay-batch"]


def test_with_stack_outputs_the_live_graph_maps_users_by_client_id(state: DesiredState) -> None:
    """The name says ahwr-claims, but the client id is another service's: the client id wins."""
    identities = {"ffc-pay-batch": ServiceIdentity("ffc-pay-batch", CLAIMS)}
    graph = _live(state, identities)
    sources = {graph.node(e.source).label for e in graph.edges if graph.node(e.target).kind == "role"}
    assert "sndadpinfmi1401-ffc-pay-batch" in sources  # the user with CLAIMS' client id
    assert "sndadpinfmi1401-ahwr-claims" not in sources
    unmanaged = sorted(node.label for node in graph.nodes if node.kind == "unmanaged_user")
    assert unmanaged == ["ADP-FFC-PayBatch", "break-glass admin"]  # no client id given for it: unmanaged


# -- SVG --------------------------------------------------------------------------------------------------------


def _svg(graph: Graph) -> ET.Element:
    text = svg.render(graph)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')
    return ET.fromstring(text)


def test_the_svg_has_every_node_edge_and_label_of_the_graph(graph: Graph) -> None:
    root = _svg(graph)
    width, height = (float(v) for v in root.attrib["viewBox"].split()[2:])
    nodes = {g.attrib["data-id"]: g for g in root.iter(f"{SVG}g") if "node" in g.attrib.get("class", "").split()}
    assert list(nodes) == [node.id for node in graph.nodes]
    boxes = {}
    for node in graph.nodes:
        element = nodes[node.id]
        assert element.attrib["data-kind"] == node.kind
        assert node.kind in element.attrib["class"].split()
        texts = [t.text for t in element.iter(f"{SVG}text")]
        assert texts[0] == (f"\u26a0 {node.label}" if node.privileged else node.label)
        assert element.find(f"{SVG}title") is not None
        rect = element.find(f"{SVG}rect")
        assert rect is not None
        box = tuple(float(rect.attrib[k]) for k in ("x", "y", "width", "height"))
        assert box[0] >= 0 and box[0] + box[2] <= width and box[1] >= 0 and box[1] + box[3] <= height
        boxes[node.id] = box
    # no two nodes overlap
    placed = list(boxes.values())
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
    paths = [p for p in root.iter(f"{SVG}path") if "edge" in p.attrib.get("class", "").split()]
    assert [(p.attrib["data-source"], p.attrib["data-target"]) for p in paths] == [
        (e.source, e.target) for e in graph.edges
    ]
    for path, edge in zip(paths, graph.edges, strict=True):
        assert ("disabled" in path.attrib["class"].split()) == edge.disabled
        assert ("stroke-dasharray" in path.attrib) == edge.disabled
        start = path.attrib["d"].split()[1:3]  # the edge leaves its source's right edge
        x, y, w, h = boxes[edge.source]
        assert float(start[0]) == pytest.approx(x + w, abs=0.1) and float(start[1]) == pytest.approx(y + h / 2, abs=0.1)
    labels = [t.text for t in root.iter(f"{SVG}text") if t.attrib.get("class") == "edge-label"]
    # once per application user (its business unit and state), however many roles it holds
    assert labels == ["BU ffc-payments", "disabled"]
    groups = {
        g.attrib["data-id"]: g.attrib["class"].split()
        for g in root.iter(f"{SVG}g")
        if "group" in g.attrib.get("class", "").split()
    }
    assert groups == {
        "services": ["group"],
        "identities": ["group"],
        "env1": ["group"],
        "env2": ["group", "production"],
    }


def test_privileged_roles_are_marked_in_the_svg(graph: Graph) -> None:
    root = _svg(graph)
    marked = [g for g in root.iter(f"{SVG}g") if "privileged" in g.attrib.get("class", "").split()]
    assert [g.attrib["data-id"] for g in marked] == [node.id for node in graph.privileged]
    (element,) = marked
    texts = [t.text for t in element.iter(f"{SVG}text")]
    assert texts == ["\u26a0 System Customizer", "security role \u00b7 privileged"]
    rect = element.find(f"{SVG}rect")
    assert rect is not None and rect.attrib["stroke"] == "#c0392b" and rect.attrib["fill"] == "#fde2e1"
    plain = [g for g in root.iter(f"{SVG}g") if g.attrib.get("data-kind") == "role" and g not in marked]
    assert all(g.find(f"{SVG}rect").attrib["stroke"] != "#c0392b" for g in plain)  # type: ignore[union-attr]


def test_the_live_svg_draws_unmanaged_users_apart(state: DesiredState) -> None:
    root = _svg(_live(state))
    (group,) = [
        g
        for g in root.iter(f"{SVG}g")
        if "unmanaged" in g.attrib.get("class", "").split() and "group" in g.attrib["class"].split()
    ]
    assert group.find(f"{SVG}rect").attrib["stroke-dasharray"]  # type: ignore[union-attr]
    users = [g for g in root.iter(f"{SVG}g") if g.attrib.get("data-kind") == "unmanaged_user"]
    assert [u.find(f"{SVG}text").text for u in users] == ["break-glass admin"]  # type: ignore[union-attr]


# -- Mermaid and DOT --------------------------------------------------------------------------------------------

MERMAID = """\
flowchart LR
  %% adp-identity: stack demo, as declared
  subgraph services["Services"]
    direction TB
    s1(["ahwr-claims<br/>team animal-health"])
    s2(["ffc-pay-batch<br/>team ffc-payments"])
  end
  subgraph identities["Identities"]
    direction TB
    mi1["sndadpinfmi1401-ahwr-claims<br/>managed identity"]
    mi2["sndadpinfmi1401-ffc-pay-batch<br/>managed identity"]
    app2["ADP-FFC-PayBatch<br/>app registration · certificate in Key Vault"]
  end
  subgraph env1["dev"]
    direction TB
    r1["Basic User<br/>security role"]
    r2["⚠ System Customizer<br/>security role · privileged"]
  end
  subgraph env2["prd: production"]
    direction TB
    r3["Basic User<br/>security role"]
  end
  s1 --> mi1
  s2 --> mi2
  s2 --> app2
  mi1 --> r1
  app2 -->|"BU ffc-payments"| r1
  app2 -->|"BU ffc-payments"| r2
  mi2 -.->|"disabled"| r3
  classDef privileged fill:#fde2e1,stroke:#c0392b,stroke-width:2px,color:#7b1d14
  classDef unmanaged fill:#fff4e5,stroke:#b9770e,stroke-dasharray:4 3
  classDef note fill:#f4f6f7,stroke:#aab7b8,color:#566573
  class r2 privileged
"""


def test_the_mermaid_text_matches_its_snapshot(graph: Graph) -> None:
    assert mermaid.render(graph) == MERMAID


def test_dot_has_a_cluster_per_group_a_statement_per_node_and_edge(graph: Graph) -> None:
    text = dot.render(graph)
    lines = text.splitlines()
    assert lines[0] == 'digraph "adp-identity: stack demo, as declared" {' and lines[-1] == "}"
    assert [line.strip() for line in lines if line.strip().startswith("subgraph")] == [
        "subgraph cluster_services {",
        "subgraph cluster_identities {",
        "subgraph cluster_env1 {",
        "subgraph cluster_env2 {",
    ]
    for node in graph.nodes:
        (statement,) = [line for line in lines if line.strip().startswith(f"{node.id} [")]
        assert node.label in statement
        assert ("penwidth=2" in statement) == node.privileged
    edges = [line.strip() for line in lines if " -> " in line]
    assert [e.split(" [")[0].rstrip(";") for e in edges] == [f"{e.source} -> {e.target}" for e in graph.edges]
    assert 'mi2 -> r3 [label="disabled", style=dashed];' in edges
    assert 'label="prd: production"; style="rounded,bold", color="#c0392b";' in text


HOSTILE = 'x"] --> evil[<b>#owned</b>'


def test_hostile_names_cannot_break_out_of_a_label(state: DesiredState) -> None:
    graph = from_live(state, [LiveEnvironment("dev", [_user(HOSTILE, ADMIN, {"r": 'Role "quoted" \\ back'})])])
    text = mermaid.render(graph)
    (line,) = [line for line in text.splitlines() if line.strip().startswith("u1[")]
    assert (
        line.strip() == 'u1["x#quot;] --#gt; evil[#lt;b#gt;#35;owned#lt;/b#gt;<br/>application user · ' + ADMIN + '"]'
    )
    assert '"' not in line.strip()[4:-2]
    dot_text = dot.render(graph)
    assert 'label="x\\"] --> evil[<b>#owned</b>\\napplication user' in dot_text
    assert 'label="Role \\"quoted\\" \\\\ back\\nsecurity role"' in dot_text
    root = ET.fromstring(svg.render(graph))  # parses: etree escaped it
    assert any(t.text == HOSTILE for t in root.iter(f"{SVG}text"))


# -- the command --------------------------------------------------------------------------------------------------


def test_graph_prints_mermaid_by_default_and_writes_svg_and_dot(stacks: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["graph", "--stacks", str(stacks), "--stack", "demo"])
    assert result.exit_code == 0, result.output
    assert result.stdout == MERMAID
    for fmt, check in (
        ("svg", lambda t: ET.fromstring(t).tag == f"{SVG}svg"),
        ("dot", lambda t: t.startswith("digraph")),
    ):
        out = tmp_path / f"graph.{fmt}"
        result = runner.invoke(
            cli, ["graph", "--stacks", str(stacks), "--stack", "demo", "--format", fmt, "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert result.stderr == f"graph: wrote {out} ({fmt})\n"
        assert check(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--identities", "outputs.json"],
            "graph: --identities and --environment-url read the environments; allowed: with --live",
        ),
        (
            ["--environment-url", "dev=https://127.0.0.1:1"],
            "graph: --identities and --environment-url read the environments; allowed: with --live",
        ),
    ],
)
def test_live_only_options_without_live_are_one_line(stacks: Path, args: list[str], line: str) -> None:
    result = CliRunner().invoke(cli, ["graph", "--stacks", str(stacks), "--stack", "demo", *args])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [line]


def test_an_unknown_stack_is_one_line(stacks: Path) -> None:
    result = CliRunner().invoke(cli, ["graph", "--stacks", str(stacks), "--stack", "nope"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "unknown stack 'nope'" in line and "allowed: stacks: demo" in line
