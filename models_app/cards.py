"""Model cards: Markdown written by people, rendered to HTML that cannot run code.

Two layers, so one mistake is not enough for an XSS: markdown-it-py renders with raw HTML
disabled (``<script>`` in a card becomes text) and refuses ``javascript:`` links, then nh3
(Ammonia) keeps only the tags and attributes a card needs and forces ``rel`` on links.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "img",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"align"},
    "td": {"align"},
}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_card(text: str) -> str:
    """The card as safe HTML (to be marked safe by the caller only after this function)."""
    if not text.strip():
        return ""
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def card_draft(*, model, versions: list, headline: dict | None, document: dict | None) -> str:
    """A first card from what the registry knows, for the owner to correct and complete.

    ``versions`` are the model's versions (newest first), ``headline`` the headline metrics
    (see ``models_app.selectors.headline_metrics``) and ``document`` the lineage document of the
    version the headline comes from.
    """
    lines = [f"# {model.name}", ""]
    lines += [
        "## What it does",
        "",
        model.description.strip() or "_Say in one or two sentences what it predicts, for whom._",
        "",
    ]
    lines += [
        "## Intended use",
        "",
        "_Who should use it, for which decisions, and where it must not be used._",
        "",
        "## Data",
        "",
    ]
    datasets = (document or {}).get("datasets") or []
    if datasets:
        for d in datasets:
            rows = f", {d['rows']:,} rows" if d.get("rows") else ""
            lines.append(f"- {str(d.get('role') or 'train').capitalize()}: `{d['name']}`{rows}")
    else:
        lines.append("_Which data it was trained and evaluated on, and how recent it is._")
    lines += ["", "## How good it is", ""]
    metrics = (headline or {}).get("metrics") or {}
    if metrics:
        lines.append(f"Measured on version {headline['version']}:")
        lines.append("")
        lines += ["| Metric | Value |", "| --- | --- |"]
        lines += [f"| {name} | {value:g} |" for name, value in metrics.items()]
    else:
        lines.append("_The metrics that matter, on which data._")
    lines += ["", "## Versions", ""]
    for v in versions[:5]:
        lines.append(f"- Version {v.version}: {v.get_stage_display().lower()}, {v.created_at:%Y-%m-%d}")
    if not versions:
        lines.append("_No versions yet._")
    lines += [
        "",
        "## Limitations",
        "",
        "_Known weaknesses, groups it works less well for, and when to retrain._",
        "",
        f"Owner: team {model.team.name}.",
        "",
    ]
    return "\n".join(lines)
