"""Lineage pages: exposure search, version comparison, commit containment timeline."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from lineage_app import selectors
from models_app import selectors as catalog
from models_app.choices import Stage


@login_required
def exposure(request: HttpRequest) -> HttpResponse:
    """ "Was anything built with a vulnerable version of X?" — for people, not only scripts."""
    package = request.GET.get("package", "").strip()
    specifier = request.GET.get("specifier", "").strip()
    stage = request.GET.get("stage") or None
    rows, error = None, ""
    if package and specifier:
        try:
            rows = selectors.exposure(
                user=request.user,
                package=package,
                specifier=specifier,
                stage=stage if stage in Stage.values else None,
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
    return render(
        request,
        "lineage_app/exposure.html",
        {
            "package": package,
            "specifier": specifier,
            "stage": stage,
            "stages": Stage.choices,
            "rows": rows,
            "error": error,
        },
    )


@login_required
def compare(request: HttpRequest, name: str) -> HttpResponse:
    """Two versions side by side: what changed, and what moved the metric."""
    model = get_object_or_404(catalog.registered_model_list(user=request.user), name__iexact=name)
    versions = list(catalog.model_version_list(user=request.user, model=model).order_by("-version"))
    numbers = [v.version for v in versions]
    try:
        a = int(request.GET.get("a") or (numbers[1] if len(numbers) > 1 else 0))
        b = int(request.GET.get("b") or (numbers[0] if numbers else 0))
    except ValueError:
        a = b = 0
    by_number = {v.version: v for v in versions}
    result = selectors.compare(a=by_number[a], b=by_number[b]) if a in by_number and b in by_number else None
    return render(
        request,
        "lineage_app/compare.html",
        {"model": model, "numbers": numbers, "a": a, "b": b, "result": result},
    )


@login_required
def commits(request: HttpRequest) -> HttpResponse:
    """ "Was the fix in?" — a timeline of versions and whether their code contains a commit."""
    sha = request.GET.get("sha", "").strip()
    model = request.GET.get("model", "").strip() or None
    result, error = None, ""
    if sha:
        try:
            result = selectors.containment(user=request.user, sha=sha, model_name=model)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    return render(
        request,
        "lineage_app/commits.html",
        {"sha": sha, "model": model or "", "result": result, "error": error},
    )


@login_required
def advisories(request: HttpRequest) -> HttpResponse:
    """Imported vulnerability advisories and the model versions each affects (production first)."""
    from deployments_app.selectors import deployments_of_versions
    from lineage_app.models import Advisory
    from lineage_app.services import affected_version_ids

    rows = []
    visible = catalog.model_version_list(user=request.user)
    for advisory in Advisory.objects.prefetch_related("packages")[:200]:
        affected = affected_version_ids(advisory=advisory)
        versions = list(visible.filter(pk__in=affected).select_related("model"))
        deployed = deployments_of_versions(user=request.user, version_ids=[v.pk for v in versions])
        # Production and live-deployed versions first: those are the ones serving users now.
        live = {v.pk: any(d["live"] for d in deployed.get(v.pk, [])) for v in versions}
        versions.sort(
            key=lambda v: (
                v.stage != Stage.PRODUCTION and not live[v.pk],
                v.model.name,
                -v.version,
            )
        )
        rows.append(
            {
                "advisory": advisory,
                "versions": [(v, affected[v.pk], deployed.get(v.pk, []), live[v.pk]) for v in versions],
            }
        )
    return render(request, "lineage_app/advisories.html", {"rows": rows})
