"""Template helpers of the catalog: permission checks, sanitized model cards, metric charts."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from models_app import cards, charts

register = template.Library()


@register.simple_tag
def has_perm(user, codename: str, obj=None) -> bool:
    """``{% has_perm user "change_registeredmodel" model as can_edit %}`` — the one permission check
    templates use to decide which buttons to show (the views check again on submit)."""
    return bool(user.has_perm(codename if "." in codename else f"models_app.{codename}", obj))


@register.filter
def markdown_card(text: str) -> SafeString:
    """A model card (Markdown) as sanitized HTML."""
    return mark_safe(cards.render_card(text or ""))  # noqa: S308 - sanitized by nh3 in render_card


@register.filter
def metric_chart(series: dict) -> SafeString:
    return charts.metric_chart(series)


@register.filter
def metric(value) -> str:
    """A metric value for people: 4 significant digits."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


# Metrics where a smaller number is the better result.
LOWER_IS_BETTER = ("rmse", "mse", "mae", "mape", "loss", "log_loss", "error", "perplexity", "wer", "cer")


@register.filter
def metric_verdict(delta, name: str) -> str:
    """``better`` or ``worse`` for a change of ``delta`` in metric ``name`` (``""`` when unchanged)."""
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        return ""
    if not delta:
        return ""
    lower = any(part in name.lower() for part in LOWER_IS_BETTER)
    return "better" if (delta < 0) == lower else "worse"
