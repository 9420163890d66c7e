"""Server-rendered deployment pages. Same selectors, FilterSet and services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from deployments_app import selectors, services
from deployments_app.filtersets import DeploymentFilterSet
from deployments_app.forms import RedeployForm
from models_app.roles import PREDICT_DEPLOYMENT
from registry_project.errors import Conflict, error_text


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    """Deployments of the models the user may see, filterable like the API."""
    filterset = DeploymentFilterSet(request.GET, queryset=selectors.deployment_list(user=request.user))
    rows = filterset.qs.order_by("name") if filterset.is_valid() else filterset.queryset.none()
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "deployments_app/deployment_list.html", {"filterset": filterset, "page": page})


@login_required
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Status, endpoint, events and build log (updated live by static/js/deployments.js)."""
    deployment = get_object_or_404(selectors.deployment_list(user=request.user), pk=pk)
    can_change = request.user.has_perm("deployments_app.change_deployment", deployment)
    lines = selectors.deployment_log_tail(deployment=deployment, limit=200)
    return render(
        request,
        "deployments_app/deployment_detail.html",
        {
            "deployment": deployment,
            "events": selectors.deployment_events(deployment=deployment),
            "lines": lines,
            "last_line_id": lines[-1].id if lines else 0,
            "can_change": can_change,
            "can_delete": request.user.has_perm("deployments_app.delete_deployment", deployment),
            "can_predict": request.user.has_perm(PREDICT_DEPLOYMENT, deployment),
            "redeploy_form": RedeployForm(initial={"alias": deployment.alias}),
        },
    )


@login_required
@require_POST
def deployment_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Stop, start, redeploy or delete from the detail page, through the services."""
    deployment = get_object_or_404(selectors.deployment_list(user=request.user), pk=pk)
    try:
        if verb == "stop":
            services.deployment_stop(actor=request.user, deployment=deployment)
        elif verb == "start":
            services.deployment_start(actor=request.user, deployment=deployment)
        elif verb == "redeploy":
            form = RedeployForm(request.POST)
            if not form.is_valid():
                raise ValidationError(" ".join(e for errors in form.errors.values() for e in errors))
            services.deployment_redeploy(
                actor=request.user,
                deployment=deployment,
                version=form.cleaned_data.get("version"),
                alias=form.cleaned_data.get("alias") or None,
            )
        elif verb == "delete":
            services.deployment_delete(actor=request.user, deployment=deployment)
            messages.success(request, f"Deployment {deployment.name} is being deleted.")
            return redirect("deployment_list")
        else:  # pragma: no cover - the URL pattern lists the verbs
            raise PermissionDenied
    except (Conflict, ValidationError, PermissionDenied) as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{verb.capitalize()} of {deployment.name} requested.")
    return redirect("deployment_detail", pk=pk)
