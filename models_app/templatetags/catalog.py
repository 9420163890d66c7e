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
