"""Server-rendered inline SVG charts (no JavaScript, no CDN): a metric across versions."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 420, 170, 52, 16, 16, 34
FONT = 'font-family="system-ui, sans-serif"'


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def describe(series: dict) -> str:
    """One sentence a screen reader can read: how the metric moved from first to last version."""
    points = series["points"]
    (v0, first), (v1, last) = points[0], points[-1]
    if len(points) == 1:
        return f"{series['name']} is {_fmt(first)} on version {v0}."
    trend = "rose" if last > first else "fell" if last < first else "stayed"
    return (
        f"{series['name']} {trend} from {_fmt(first)} on version {v0} to {_fmt(last)} on version {v1}, "
        f"over {len(points)} versions."
    )


def metric_chart(series: dict) -> SafeString:
    """A line chart of ``{"name", "points": [(version, value), ...]}`` as an accessible SVG."""
    points = series["points"]
    values = [v for _n, v in points]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - (abs(low) * 0.05 or 1), high + (abs(high) * 0.05 or 1)
    span = high - low
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def xy(i: int, value: float) -> tuple[float, float]:
        x = PAD_L + (inner_w * i / (len(points) - 1) if len(points) > 1 else inner_w / 2)
        return round(x, 1), round(PAD_T + inner_h * (1 - (value - low) / span), 1)

    label = escape(describe(series))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="metric-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{label}"><title>{label}</title>',
        f'<line x1="{PAD_L}" y1="{PAD_T + inner_h}" x2="{WIDTH - PAD_R}" y2="{PAD_T + inner_h}" '
        'stroke="#8c959f"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + inner_h}" stroke="#8c959f"/>',
        f'<text x="{PAD_L - 6}" y="{PAD_T + 4}" font-size="11" text-anchor="end" {FONT} fill="#57606a">'
        f"{escape(_fmt(high))}</text>",
        f'<text x="{PAD_L - 6}" y="{PAD_T + inner_h}" font-size="11" text-anchor="end" {FONT} fill="#57606a">'
        f"{escape(_fmt(low))}</text>",
    ]
    coords = [xy(i, v) for i, (_n, v) in enumerate(points)]
    if len(coords) > 1:
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0b5cad" stroke-width="2.5"/>')
    for (number, value), (x, y) in zip(points, coords, strict=True):
        parts.append(
            f'<g><circle cx="{x}" cy="{y}" r="4.5" fill="#0b5cad"><title>version {number}: '
            f"{escape(_fmt(value))}</title></circle>"
            f'<text x="{x}" y="{HEIGHT - 12}" font-size="11" text-anchor="middle" {FONT} fill="#1b1f24">'
            f"v{number}</text></g>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped or a number
