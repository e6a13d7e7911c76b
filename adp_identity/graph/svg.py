"""The graph as a standalone SVG, laid out here in pure Python: it opens in any browser, no Graphviz, no script.

The layout follows the model's three columns (services, identities, environments with their roles). Each column
stacks its groups top to bottom, each group its nodes; columns are centred on the tallest. Edges are cubic Bézier
curves from the right edge of a node to the left edge of the next column's node, with an arrowhead; an
application user's label (its business unit, "disabled") is written once per environment, on its first edge near
the identity, on a white halo. Text width is estimated from the
character count (the file must not depend on fonts being measured), so boxes are sized generously.

The document is built with ``xml.etree`` (every text is escaped by it) and carries what a test or a reader
needs: each node is a ``<g class="node <kind>[ privileged]" data-id=... data-kind=...>`` with a ``<title>``
tooltip; each edge a ``<path class="edge[ disabled]" data-source=... data-target=...>``; privileged roles are
red, with a warning sign and "privileged" on their second line; production environments have a red frame.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from adp_identity.graph.model import Graph, Group, Node, caption, edge_text

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "Segoe UI, Helvetica, Arial, sans-serif"
LABEL_SIZE = 12
CAPTION_SIZE = 10
CHAR_WIDTH = 7.2  # px per character at LABEL_SIZE, generous for proportional fonts
CAPTION_CHAR_WIDTH = 6.0
MAX_LABEL = 60  # characters shown; the full text is in the node's tooltip
NODE_HEIGHT = 40
NODE_GAP = 12
GROUP_PAD = 14
GROUP_HEADER = 24
GROUP_GAP = 26
COLUMN_GAP = 150
MARGIN = 24
TITLE_HEIGHT = 34
LEGEND_HEIGHT = 40
MIN_NODE_WIDTH = 150
LABEL_AT = 0.3  # where on its edge a label sits (0: the identity, 1: the role)

# fill, stroke
STYLE: Mapping[str, tuple[str, str]] = {
    "service": ("#eaf2f8", "#2e86c1"),
    "managed_identity": ("#e9f7ef", "#239b56"),
    "app_registration": ("#f4ecf7", "#7d3c98"),
    "unmanaged_user": ("#fff4e5", "#b9770e"),
    "role": ("#ffffff", "#5d6d7e"),
    "note": ("#f4f6f7", "#aab7b8"),
}
PRIVILEGED = ("#fde2e1", "#c0392b")
WARNING = "\u26a0"


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def middle(self) -> float:
        return self.y + self.height / 2


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def _title(node: Node) -> str:
    return f"{WARNING} {node.label}" if node.privileged else node.label


def _node_width(node: Node) -> float:
    label = len(_short(_title(node))) * CHAR_WIDTH
    second = len(_short(caption(node))) * CAPTION_CHAR_WIDTH
    return max(MIN_NODE_WIDTH, label + 24, second + 24)


def layout(graph: Graph) -> tuple[dict[str, Box], dict[str, Box], float, float]:
    """Node boxes by id, group boxes by id, and the drawing's width and height."""
    columns: dict[int, list[Group]] = {0: [], 1: [], 2: []}
    for group in graph.groups:
        if graph.in_group(group.id):
            columns[group.column].append(group)
    widths = {
        column: max(
            (_node_width(node) for group in groups for node in graph.in_group(group.id)), default=MIN_NODE_WIDTH
        )
        for column, groups in columns.items()
    }
    heights = {
        column: sum(
            GROUP_HEADER + 2 * GROUP_PAD + len(graph.in_group(group.id)) * (NODE_HEIGHT + NODE_GAP) - NODE_GAP
            for group in groups
        )
        + GROUP_GAP * max(len(groups) - 1, 0)
        for column, groups in columns.items()
    }
    tallest = max(heights.values())
    nodes: dict[str, Box] = {}
    groups: dict[str, Box] = {}
    x: float = MARGIN
    for column in (0, 1, 2):
        group_width = widths[column] + 2 * GROUP_PAD
        y = MARGIN + TITLE_HEIGHT + (tallest - heights[column]) / 2
        for group in columns[column]:
            members = graph.in_group(group.id)
            height = GROUP_HEADER + 2 * GROUP_PAD + len(members) * (NODE_HEIGHT + NODE_GAP) - NODE_GAP
            groups[group.id] = Box(x, y, group_width, height)
            node_y = y + GROUP_HEADER + GROUP_PAD
            for node in members:
                nodes[node.id] = Box(x + GROUP_PAD, node_y, widths[column], NODE_HEIGHT)
                node_y += NODE_HEIGHT + NODE_GAP
            y += height + GROUP_GAP
        x += group_width + COLUMN_GAP
    width = x - COLUMN_GAP + MARGIN
    height = MARGIN + TITLE_HEIGHT + tallest + LEGEND_HEIGHT + MARGIN
    return nodes, groups, width, height


def _bezier(x1: float, y1: float, x2: float, y2: float, t: float) -> tuple[float, float]:
    dx = (x2 - x1) / 2
    points = ((x1, y1), (x1 + dx, y1), (x2 - dx, y2), (x2, y2))
    u = 1 - t
    weights = (u**3, 3 * u * u * t, 3 * u * t * t, t**3)
    return (
        sum(w * p[0] for w, p in zip(weights, points, strict=True)),
        sum(w * p[1] for w, p in zip(weights, points, strict=True)),
    )


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(parent: ET.Element, x: float, y: float, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, "text", {"x": _n(x), "y": _n(y), **attributes})
    element.text = text
    return element


def render(graph: Graph) -> str:
    """The SVG document as text (UTF-8, with its XML declaration); the same graph always gives the same text."""
    boxes, group_boxes, width, height = layout(graph)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": _n(width),
            "height": _n(height),
            "viewBox": f"0 0 {_n(width)} {_n(height)}",
            "role": "img",
            "aria-label": graph.title,
            "font-family": FONT,
        },
    )
    ET.SubElement(svg, "title").text = graph.title
    defs = ET.SubElement(svg, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        {
            "id": "arrow",
            "viewBox": "0 0 10 10",
            "refX": "10",
            "refY": "5",
            "markerWidth": "7",
            "markerHeight": "7",
            "orient": "auto-start-reverse",
        },
    )
    ET.SubElement(marker, "path", {"d": "M 0 0 L 10 5 L 0 10 z", "fill": "#5d6d7e"})
    ET.SubElement(svg, "rect", {"x": "0", "y": "0", "width": _n(width), "height": _n(height), "fill": "#ffffff"})
    _text(
        svg,
        MARGIN,
        MARGIN + 16,
        graph.title,
        **{"class": "title", "font-size": "16", "font-weight": "bold", "fill": "#1b2631"},
    )
    _draw_groups(svg, graph, group_boxes)
    _draw_edges(svg, graph, boxes)
    _draw_nodes(svg, graph, boxes)
    _draw_legend(svg, height)
    body = ET.tostring(svg, encoding="unicode", short_empty_elements=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _draw_groups(svg: ET.Element, graph: Graph, group_boxes: Mapping[str, Box]) -> None:
    groups_layer = ET.SubElement(svg, "g", {"class": "groups"})
    for group in graph.groups:
        box = group_boxes.get(group.id)
        if box is None:
            continue
        stroke = "#c0392b" if group.production else "#b9770e" if group.unmanaged else "#aab7b8"
        classes = "group" + (" production" if group.production else "") + (" unmanaged" if group.unmanaged else "")
        element = ET.SubElement(groups_layer, "g", {"class": classes, "data-id": group.id})
        ET.SubElement(element, "title").text = group.label
        rect = {
            "x": _n(box.x),
            "y": _n(box.y),
            "width": _n(box.width),
            "height": _n(box.height),
            "rx": "8",
            "fill": "#fbfcfc",
            "stroke": stroke,
            "stroke-width": "2" if group.production else "1",
        }
        if group.unmanaged:
            rect["stroke-dasharray"] = "6 4"
        ET.SubElement(element, "rect", rect)
        _text(
            element,
            box.x + GROUP_PAD,
            box.y + 17,
            group.label,
            **{"font-size": "12", "font-weight": "bold", "fill": stroke if group.production else "#34495e"},
        )


def _draw_edges(svg: ET.Element, graph: Graph, boxes: Mapping[str, Box]) -> None:
    edges_layer = ET.SubElement(svg, "g", {"class": "edges"})
    labels: list[tuple[float, float, str]] = []
    said: set[tuple[str, str, str]] = set()
    for edge in graph.edges:
        source, target = boxes[edge.source], boxes[edge.target]
        x1, y1, x2, y2 = source.right, source.middle, target.x, target.middle
        dx = (x2 - x1) / 2
        attributes = {
            "class": "edge" + (" disabled" if edge.disabled else ""),
            "data-source": edge.source,
            "data-target": edge.target,
            "d": f"M {_n(x1)} {_n(y1)} C {_n(x1 + dx)} {_n(y1)}, {_n(x2 - dx)} {_n(y2)}, {_n(x2)} {_n(y2)}",
            "fill": "none",
            "stroke": "#c0392b" if graph.node(edge.target).privileged else "#7f8c8d",
            "stroke-width": "1.4",
            "marker-end": "url(#arrow)",
        }
        if edge.disabled:
            attributes["stroke-dasharray"] = "5 4"
        ET.SubElement(edges_layer, "path", attributes)
        label = edge_text(edge)
        # one user per environment has one business unit: say it once, on its first edge, near the identity
        key = (edge.source, graph.node(edge.target).group, label)
        if label and key not in said:
            said.add(key)
            x, y = _bezier(x1, y1, x2, y2, LABEL_AT)
            labels.append((x, y, label))
    label_layer = ET.SubElement(svg, "g", {"class": "edge-labels"})
    for x, y, label in labels:
        _text(
            label_layer,
            x,
            y + 3,
            label,
            **{
                "class": "edge-label",
                "text-anchor": "middle",
                "font-size": "9",
                "fill": "#34495e",
                "stroke": "#ffffff",
                "stroke-width": "3",
                "paint-order": "stroke",
            },
        )


def _draw_nodes(svg: ET.Element, graph: Graph, boxes: Mapping[str, Box]) -> None:
    nodes_layer = ET.SubElement(svg, "g", {"class": "nodes"})
    for node in graph.nodes:
        box = boxes[node.id]
        fill, stroke = PRIVILEGED if node.privileged else STYLE[node.kind]
        classes = f"node {node.kind}" + (" privileged" if node.privileged else "")
        element = ET.SubElement(nodes_layer, "g", {"class": classes, "data-id": node.id, "data-kind": node.kind})
        second = caption(node)
        tooltip = _title(node) + (f"\n{second}" if second else "")
        ET.SubElement(element, "title").text = tooltip
        rect = {
            "x": _n(box.x),
            "y": _n(box.y),
            "width": _n(box.width),
            "height": _n(box.height),
            "rx": "18" if node.kind == "service" else "5",
            "fill": fill,
            "stroke": stroke,
            "stroke-width": "2.2" if node.privileged else "1.2",
        }
        if node.kind == "unmanaged_user":
            rect["stroke-dasharray"] = "5 3"
        ET.SubElement(element, "rect", rect)
        label_y = box.y + (17 if second else 24)
        _text(
            element,
            box.x + 12,
            label_y,
            _short(_title(node)),
            **{
                "class": "label",
                "font-size": str(LABEL_SIZE),
                "fill": "#7b1d14" if node.privileged else "#1b2631",
                "font-weight": "bold" if node.privileged or node.kind == "service" else "normal",
            },
        )
        if second:
            _text(
                element,
                box.x + 12,
                box.y + 32,
                _short(second),
                **{
                    "class": "caption",
                    "font-size": str(CAPTION_SIZE),
                    "fill": "#c0392b" if node.privileged else "#566573",
                },
            )


def _draw_legend(svg: ET.Element, height: float) -> None:
    legend = ET.SubElement(svg, "g", {"class": "legend"})
    y = height - MARGIN - 14
    x: float = MARGIN
    for key, text in (
        ("service", "service"),
        ("managed_identity", "managed identity"),
        ("app_registration", "app registration"),
        ("role", "security role"),
        ("privileged", f"{WARNING} privileged role"),
        ("unmanaged_user", "unmanaged application user"),
    ):
        fill, stroke = PRIVILEGED if key == "privileged" else STYLE[key]
        ET.SubElement(
            legend,
            "rect",
            {"x": _n(x), "y": _n(y - 10), "width": "14", "height": "14", "rx": "3", "fill": fill, "stroke": stroke},
        )
        _text(legend, x + 20, y + 1, text, **{"font-size": "11", "fill": "#34495e"})
        x += 36 + len(text) * 6.4
    ET.SubElement(
        legend,
        "path",
        {"d": f"M {_n(x)} {_n(y - 3)} h 26", "stroke": "#7f8c8d", "stroke-dasharray": "5 4", "fill": "none"},
    )
    _text(legend, x + 32, y + 1, "disabled application user", **{"font-size": "11", "fill": "#34495e"})
