"""The graph in Graphviz DOT, for those who lay it out with their own tools (``dot -Tpng``); nothing here runs
Graphviz. Strings are quoted with ``"`` and ``\\`` escaped, so a role name cannot end a label."""

from __future__ import annotations

from adp_identity.graph.model import Graph, Node, caption, edge_text

PRIVILEGED = 'color="#c0392b", fillcolor="#fde2e1", fontcolor="#7b1d14", penwidth=2'
UNMANAGED = 'color="#b9770e", fillcolor="#fff4e5", style="rounded,filled,dashed"'
NOTE = 'color="#aab7b8", fillcolor="#f4f6f7", fontcolor="#566573"'


def quote(text: str) -> str:
    """A DOT string: backslash and double quote escaped; a line break becomes DOT's newline escape."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(node: Node) -> str:
    title = f"\u26a0 {node.label}" if node.privileged else node.label
    second = caption(node)
    return quote(f"{title}\n{second}" if second else title)


def _attributes(node: Node) -> str:
    parts = [f"label={_label(node)}"]
    if node.kind == "service":
        parts.append('shape=box, style="rounded,filled,bold"')
    if node.privileged:
        parts.append(PRIVILEGED)
    elif node.kind == "unmanaged_user":
        parts.append(UNMANAGED)
    elif node.kind == "note":
        parts.append(NOTE)
    parts.append(f"class={quote(node.kind + (' privileged' if node.privileged else ''))}")
    return ", ".join(parts)


def render(graph: Graph) -> str:
    out = [
        f"digraph {quote(graph.title)} {{",
        "  rankdir=LR;",
        '  graph [fontname="Helvetica", fontsize=12];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#5d6d7e"];',
    ]
    for group in graph.groups:
        members = graph.in_group(group.id)
        if not members:
            continue
        out.append(f"  subgraph cluster_{group.id} {{")
        style = 'style="rounded,dashed", color="#b9770e"' if group.unmanaged else 'style=rounded, color="#aab7b8"'
        if group.production:
            style = 'style="rounded,bold", color="#c0392b"'
        out.append(f"    label={quote(group.label)}; {style};")
        out.extend(f"    {node.id} [{_attributes(node)}];" for node in members)
        out.append("  }")
    for edge in graph.edges:
        attributes = []
        label = edge_text(edge)
        if label:
            attributes.append(f"label={quote(label)}")
        if edge.disabled:
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        out.append(f"  {edge.source} -> {edge.target}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"
