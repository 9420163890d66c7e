"""Draw a lineage graph as an inline SVG picture: data and code → run → version → derived versions."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLUMN = {"dataset": 0, "code": 0, "run": 1, "version": 2, "deployment": 3}  # children share column 3
COLORS = {
    "dataset": "#dbeafe",
    "code": "#ede9fe",
    "run": "#fef3c7",
    "version": "#dcfce7",
    "deployment": "#fce7f3",
    "focus": "#86efac",
}
FONT = 'font-family="system-ui, sans-serif"'
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 44, 70, 18, 12


def render(graph: dict, focus: str) -> SafeString:
    """The graph (from ``lineage_app.selectors.graph``) as an accessible SVG element."""
    nodes = graph["nodes"]
    edges = graph["edges"]
    parents_of_focus = {e["from"] for e in edges if e["to"] == focus and e["from"].startswith("version:")}
    columns: dict[int, list[dict]] = {}
    for node in nodes:
        col = COLUMN.get(node["kind"], 2)
        if node["kind"] == "version" and node["id"] != focus:
            col = 1 if node["id"] in parents_of_focus else 3
        columns.setdefault(col, []).append(node)
    position = {}
    for col, members in columns.items():
        for row, node in enumerate(members):
            position[node["id"]] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(columns, default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(m) for m in columns.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="Lineage of this version: where its data and code came from">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>',
    ]
    for edge in edges:
        if edge["from"] not in position or edge["to"] not in position:
            continue
        x1, y1 = position[edge["from"]]
        x2, y2 = position[edge["to"]]
        if x1 > x2:  # draw right to left edges from the left box's side
            (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
        parts.append(
            f'<line x1="{x1 + BOX_W}" y1="{y1 + BOX_H / 2}" x2="{x2}" y2="{y2 + BOX_H / 2}" stroke="#57606a" '
            f'stroke-width="1.5" marker-end="url(#arrow)"><title>{escape(edge["kind"])}</title></line>'
        )
    for node in nodes:
        x, y = position[node["id"]]
        fill = COLORS["focus"] if node["id"] == focus else COLORS.get(node["kind"], "#eee")
        sub = {"dataset": "data", "code": "code", "run": "training run"}.get(
            node["kind"], node.get("stage", "")
        )
        if node["kind"] == "deployment":
            sub = f"deployment · {node.get('status', '')}"
        label = node["label"] if len(node["label"]) <= 26 else node["label"][:25] + "…"
        parts.append(
            f'<g><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" '
            f'stroke="#8c959f"/><text x="{x + 10}" y="{y + 19}" font-size="13" {FONT} fill="#1b1f24">'
            f'{escape(label)}</text><text x="{x + 10}" y="{y + 35}" font-size="11" {FONT} fill="#57606a">'
            f"{escape(sub)}</text><title>{escape(node['label'])}</title></g>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
