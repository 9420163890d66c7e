"""``{% version_lineage version user %}``: the lineage section of a version page."""

from django import template

from lineage_app import selectors, svg
from lineage_app.services import lineage_document

register = template.Library()


@register.inclusion_tag("lineage_app/_version_lineage.html")
def version_lineage(version, user):
    graph = selectors.graph(user=user, version=version, depth=1)
    focus = f"version:{version.model.name}:{version.version}"
    return {
        "version": version,
        "document": lineage_document(version=version),
        "picture": svg.render(graph, focus) if len(graph["nodes"]) > 1 else None,
    }
