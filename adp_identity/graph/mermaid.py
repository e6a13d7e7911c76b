"""The graph as a Mermaid flowchart: GitHub and Azure DevOps render it in a pull request (a ```mermaid block).

Labels are quoted, with Mermaid's entity codes for the characters that would end or break them (``#quot;``,
``#lt;``, ``#gt;``, ``#35;`` for ``#``), so a role name can never inject syntax. Privileged roles get the class
``privileged`` (red) and a warning sign; production environments say so in their title; a disabled user's edges
are dotted.
"""

from __future__ import annotations

from adp_identity.graph.model import Graph, Node, caption, edge_text

PRIVILEGED_STYLE = "fill:#fde2e1,stroke:#c0392b,stroke-width:2px,color:#7b1d14"
UNMANAGED_STYLE = "fill:#fff4e5,stroke:#b9770e,stroke-dasharray:4 3"
NOTE_STYLE = "fill:#f4f6f7,stroke:#aab7b8,color:#566573"
WARNING = "\u26a0"


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;").replace("\n", " ")


def _label(node: Node) -> str:
    title = f"{WARNING} {node.label}" if node.privileged else node.label
    second = caption(node)
    return escape(title) + (f"<br/>{escape(second)}" if second else "")


def render(graph: Graph) -> str:
    """The flowchart text, ending with a newline; the same graph always gives the same text."""
    out = ["flowchart LR", f"  %% {escape(graph.title)}"]
    for group in graph.groups:
        members = graph.in_group(group.id)
        if not members:
            continue
        out.append(f'  subgraph {group.id}["{escape(group.label)}"]')
        out.append("    direction TB")
        for node in members:
            shape = ("([", "])") if node.kind == "service" else ("[", "]")
            out.append(f'    {node.id}{shape[0]}"{_label(node)}"{shape[1]}')
        out.append("  end")
    for edge in graph.edges:
        arrow = "-.->" if edge.disabled else "-->"
        label = edge_text(edge)
        out.append(
            f'  {edge.source} {arrow}|"{escape(label)}"| {edge.target}'
            if label
            else f"  {edge.source} {arrow} {edge.target}"
        )
    out.append(f"  classDef privileged {PRIVILEGED_STYLE}")
    out.append(f"  classDef unmanaged {UNMANAGED_STYLE}")
    out.append(f"  classDef note {NOTE_STYLE}")
    privileged = [node.id for node in graph.nodes if node.privileged]
    unmanaged = [node.id for node in graph.nodes if node.kind == "unmanaged_user"]
    notes = [node.id for node in graph.nodes if node.kind == "note"]
    for name, ids in (("privileged", privileged), ("unmanaged", unmanaged), ("note", notes)):
        if ids:
            out.append(f"  class {','.join(ids)} {name}")
    return "\n".join(out) + "\n"
