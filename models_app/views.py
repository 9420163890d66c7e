"""Server-rendered catalog pages. Same selectors, FilterSets and services as the API."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from models_app import selectors, services, services_events, services_governance
from models_app.cards import card_draft
from models_app.choices import PromotionState, Stage
from models_app.filtersets import SORTS, RegisteredModelFilterSet
from models_app.forms import (
    AccessTokenCreateForm,
    DecisionForm,
    MemberForm,
    ModelCardForm,
    PolicyForm,
    PromotionRequestForm,
    TeamCreateForm,
    WebhookCreateForm,
)
from models_app.models import RegisteredModel
from models_app.signature import signature_fields, version_signature
from registry_project.errors import Conflict, error_text

PAGE_SIZE = 20
SEARCH_RESULTS_MAX = 5000  # a search lists (and counts) at most this many best matches
_MARKUP = re.compile(r"[#*_`>|\[\]()!~-]+")


def plain_summary(model: RegisteredModel, limit: int = 220) -> str:
    """What a model does, in a sentence or two: its description, else the start of its card."""
    text = model.description.strip()
    if not text and model.card:
        paragraphs = [p for p in model.card.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
        text = _MARKUP.sub(" ", paragraphs[0]) if paragraphs else ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _with(query: QueryDict, key: str, value: str | None) -> str:
    """The query string with ``key`` set to ``value`` (or removed), back on the first page."""
    changed = query.copy()
    changed.pop("page", None)
    changed.pop(key, None)
    if value is not None:
        changed[key] = value
    return changed.urlencode()


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """The searchable catalog: one search box, facets with counts, sort, result cards.

    Everything is counted and listed from the user's visible models only (the selector), so a
    private model of another team shows up nowhere, not even as a number.
    """
    visible = selectors.registered_model_list(user=request.user)
    filterset = RegisteredModelFilterSet(request.GET, queryset=visible)
    valid = filterset.is_valid()
    models = filterset.qs if valid else visible.none()
    if valid and not filterset.form.cleaned_data.get("sort") and not filterset.form.cleaned_data.get("q"):
        models = models.order_by("-updated_at", "pk")
    searching = valid and bool(filterset.form.cleaned_data.get("q"))
    if searching:
        # A search is the expensive part: run it once for the ordered ids, then page, count and
        # facet on those ids instead of re-running it in every query.
        ids = list(models.values_list("pk", flat=True)[:SEARCH_RESULTS_MAX])
        page = Paginator(ids, PAGE_SIZE).get_page(request.GET.get("page"))
        by_id = visible.order_by().in_bulk(list(page.object_list))
        items = [by_id[pk] for pk in page.object_list if pk in by_id]
    else:
        ids = None
        page = Paginator(models, PAGE_SIZE).get_page(request.GET.get("page"))
        items = list(page.object_list)
    headlines = selectors.headline_metrics(models=items)
    stages = selectors.model_stages(models=items)
    results = [
        {"model": m, "summary": plain_summary(m), "headline": headlines.get(m.pk), "stage": stages.get(m.pk)}
        for m in items
    ]
    facets = selectors.catalog_facets(queryset=models, ids=ids) if valid else {}
    active = {key: request.GET.get(key, "") for key in ("task", "framework", "team", "stage", "tag")}
    facet_groups = []
    for key, title in (
        ("stage", "Stage"),
        ("task", "Task"),
        ("framework", "Framework"),
        ("team", "Team"),
        ("tag", "Tags"),
    ):
        entries = []
        for row in facets.get(key, []):
            value, count = row[0], row[1]
            label = row[2] if len(row) > 2 else value
            on = active[key].lower() == value.lower()
            entries.append(
                {"value": value, "label": label, "count": count, "on": on,
                 "url": "?" + _with(request.GET, key, None if on else value)}
            )  # fmt: skip
        if entries:
            facet_groups.append({"key": key, "title": title, "entries": entries})
    sorts = [
        {"value": value, "label": label, "url": "?" + _with(request.GET, "sort", value)}
        for value, label in SORTS
        if value != "relevance" or request.GET.get("q")
    ]
    current_sort = request.GET.get("sort") or ("relevance" if request.GET.get("q") else "updated")
    return render(
        request,
        "models_app/registeredmodel_list.html",
        {
            "filterset": filterset,
            "page": page,
            "results": results,
            "facet_groups": facet_groups,
            "sorts": sorts,
            "current_sort": current_sort,
            "fuzzy": valid and filterset.fuzzy,
            "active_filters": [
                {"key": k, "value": v, "url": "?" + _with(request.GET, k, None)}
                for k, v in active.items()
                if v
            ],
            "query": _with(request.GET, "page", None),
        },
    )


def _snippets(request: HttpRequest, model: RegisteredModel, versions: list) -> dict | None:
    """'Use this model': the Python client, the MLflow URI and curl, for a good alias or version."""
    if not versions:
        return None
    aliases = {a.alias: a.version.version for a in model.aliases.all()}
    production = next((v for v in versions if v.stage == Stage.PRODUCTION), None)
    if "champion" in aliases:
        ref, number = "@champion", aliases["champion"]
    elif aliases:
        alias = sorted(aliases)[0]
        ref, number = f"@{alias}", aliases[alias]
    elif production is not None:
        ref, number = f"/{production.version}", production.version
    else:
        ref, number = f"/{versions[0].version}", versions[0].version
    base = settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")
    archive = f"{base}/api/v1/models/{model.name}/versions/{number}/archive"
    return {
        "ref": ref,
        "version": number,
        "client": f"modelyard pull {model.name}{ref}",
        "mlflow": f'import mlflow\n\nmodel = mlflow.pyfunc.load_model("models:/{model.name}{ref}")\n'
        f"predictions = model.predict(data)",
        "curl": f'curl -fL -H "Authorization: Bearer $MODELYARD_TOKEN" \\\n'
        f"  -o {model.name}-v{number}.tar {archive}",
    }


def _model_deployments(user, model: RegisteredModel):
    """The model's deployments ``user`` may see, and the running one they may predict on (or None)."""
    from deployments_app.choices import DeploymentStatus
    from deployments_app.selectors import deployment_list

    deployments = list(deployment_list(user=user).filter(model=model).order_by("name"))
    tryable = next(
        (
            d
            for d in deployments
            if d.status == DeploymentStatus.RUNNING and user.has_perm("deployments_app.predict_deployment", d)
        ),
        None,
    )
    return deployments, tryable


@login_required
def registeredmodel_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    versions = list(selectors.model_version_list(user=request.user, model=model).prefetch_related("checks"))
    history = selectors.audit_event_list(user=request.user).filter(model_name__iexact=model.name)[:20]
    headline = selectors.headline_metrics(models=[model]).get(model.pk)
    featured = next((v for v in versions if v.stage == Stage.PRODUCTION), versions[0] if versions else None)
    deployments, tryable = _model_deployments(request.user, model)
    if tryable is not None:  # "Try it" asks the running deployment, so show its version's inputs
        featured = next((v for v in versions if v.pk == tryable.version_id), featured)
    fields = signature_fields(version_signature(version=featured)) if featured else None
    return render(
        request,
        "models_app/registeredmodel_detail.html",
        {
            "model": model,
            "versions": versions,
            "policy": services.policy_get(model=model),
            "history": history,
            "headline": headline,
            "series": selectors.metric_series(model=model, versions=versions),
            "snippets": _snippets(request, model, versions),
            "featured": featured,
            "signature_fields": fields,
            # Deployments of this model, and the endpoint the "Try it" form posts to (the form is
            # shown only to those who may predict on a running deployment).
            "deployments": deployments,
            "predict_url": reverse("deployment_predict", args=[tryable.pk]) if tryable else None,
            "can_change": request.user.has_perm("models_app.change_registeredmodel", model),
            "can_edit_policy": request.user.has_perm("models_app.change_promotionpolicy", model),
        },
    )


@login_required
def registeredmodel_card_edit(request: HttpRequest, name: str) -> HttpResponse:
    """Owners write the model card; a new card starts from what the registry knows."""
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    if not request.user.has_perm("models_app.change_registeredmodel", model):
        raise PermissionDenied
    draft = ""
    if not model.card:
        from lineage_app.services import lineage_document

        versions = list(selectors.model_version_list(user=request.user, model=model))
        headline = selectors.headline_metrics(models=[model]).get(model.pk)
        source = next((v for v in versions if headline and v.version == headline["version"]), None)
        source = source or (versions[0] if versions else None)
        document = lineage_document(version=source) if source else None
        draft = card_draft(model=model, versions=versions, headline=headline, document=document)
    form = ModelCardForm(request.POST or None, initial={"card": model.card or draft})
    if request.method == "POST" and form.is_valid():
        try:
            services.registered_model_update(actor=request.user, model=model, card=form.cleaned_data["card"])
        except ValidationError as exc:
            form.add_error("card", " ".join(exc.messages))
        else:
            messages.success(request, "Model card saved.")
            return redirect("registeredmodel_detail", name=model.name)
    return render(
        request,
        "models_app/registeredmodel_card_form.html",
        {"model": model, "form": form, "is_draft": not model.card},
    )


@login_required
def promotionpolicy_edit(request: HttpRequest, name: str) -> HttpResponse:
    """Owners change how versions of their model move up."""
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    if not request.user.has_perm("models_app.change_promotionpolicy", model):
        raise PermissionDenied
    policy = services.policy_get(model=model)
    initial = {
        "staging_checks": ", ".join(policy.checks_for("staging")),
        "production_checks": ", ".join(policy.checks_for("production")),
        "production_approvals": policy.production_approvals,
        "staging_approvals": policy.staging_approvals,
        "allow_self_approval": policy.allow_self_approval,
        "on_new_production": policy.on_new_production,
        "protected_aliases": ", ".join(policy.protected_aliases),
    }
    form = PolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services_governance.policy_update(actor=request.user, model=model, **form.to_policy())
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(None, f"{field}: {' '.join(errors)}")
        else:
            messages.success(request, "Promotion policy saved.")
            return redirect("registeredmodel_detail", name=model.name)
    return render(request, "models_app/promotionpolicy_form.html", {"model": model, "form": form})


@login_required
def modelversion_detail(request: HttpRequest, name: str, version: int) -> HttpResponse:
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    obj = get_object_or_404(selectors.model_version_list(user=request.user, model=model), version=version)
    form = PromotionRequestForm(request.POST or None)
    can_request = request.user.has_perm("models_app.add_promotion", obj)
    if request.method == "POST" and can_request and form.is_valid():
        try:
            promotion = services_governance.promotion_request(
                actor=request.user, version=obj, **form.cleaned_data
            )
        except (Conflict, ValidationError, PermissionDenied) as exc:
            form.add_error(None, error_text(exc))
        else:
            verb = "applied" if promotion.state == PromotionState.APPLIED else "sent for approval"
            messages.success(
                request, f"Request to move version {obj.version} to {promotion.target_stage} {verb}."
            )
            return redirect("modelversion_detail", name=model.name, version=obj.version)
    context = {
        "model": model,
        "version": obj,
        "files": obj.files.select_related("blob").order_by("path"),
        "checks": obj.checks.all(),
        "promotions": selectors.promotion_list(user=request.user).filter(version=obj)[:20],
        "form": form if can_request else None,
        "history": selectors.audit_event_list(user=request.user).filter(
            model_name__iexact=model.name, object_type="ModelVersion", object_id=str(obj.pk)
        )[:20],
    }
    return render(request, "models_app/modelversion_detail.html", context)


@login_required
def promotion_queue(request: HttpRequest) -> HttpResponse:
    """The approvers' queue: pending requests on models the user can see."""
    pending = selectors.promotion_list(user=request.user).filter(state=PromotionState.PENDING)
    recent = selectors.promotion_list(user=request.user).exclude(state=PromotionState.PENDING)[:20]
    return render(
        request,
        "models_app/promotion_list.html",
        {
            "pending": pending,
            "recent": recent,
            "can_approve": request.user.has_perm("models_app.approve_promotion"),
        },
    )


@login_required
@require_POST
def promotion_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    """Approve or reject from the queue, through the same services as the API."""
    promotion = get_object_or_404(selectors.promotion_list(user=request.user), pk=pk)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    service = (
        services_governance.promotion_approve
        if decision == "approve"
        else services_governance.promotion_reject
    )
    try:
        service(actor=request.user, promotion=promotion, comment=comment)
    except (Conflict, ValidationError, PermissionDenied) as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Request #{promotion.pk} {decision}d.")
    return redirect("promotion_list")


@login_required
def accesstoken_list(request: HttpRequest) -> HttpResponse:
    """List the user's tokens and create new ones (the secret is shown once)."""
    form = AccessTokenCreateForm(request.POST or None)
    created_secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _token, created_secret = services.access_token_create(
                actor=request.user,
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form = AccessTokenCreateForm()
    tokens = selectors.access_token_list(user=request.user)
    return render(
        request,
        "models_app/accesstoken_list.html",
        {"form": form, "tokens": tokens, "created_secret": created_secret},
    )


@login_required
@require_POST
def accesstoken_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(selectors.access_token_list(user=request.user), pk=pk)
    services.access_token_revoke(actor=request.user, token=token)
    messages.success(request, f"Token '{token.name}' revoked.")
    return redirect("accesstoken_list")


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    """Teams and their members; administrators create teams and set roles here."""
    create_form, member_form = TeamCreateForm(prefix="team"), MemberForm(prefix="member")
    if request.method == "POST":
        try:
            if "team-name" in request.POST:
                create_form = TeamCreateForm(request.POST, prefix="team")
                if create_form.is_valid():
                    services.team_create(actor=request.user, name=create_form.cleaned_data["name"])
                    messages.success(request, "Team created.")
                    return redirect("team_list")
            else:
                team = get_object_or_404(selectors.team_list(user=request.user), pk=request.POST.get("team"))
                member_form = MemberForm(request.POST, prefix="member")
                if member_form.is_valid():
                    user = get_object_or_404(get_user_model(), username=member_form.cleaned_data["username"])
                    if request.POST.get("remove"):
                        services.team_member_remove(actor=request.user, team=team, user=user)
                    else:
                        services.team_member_set(
                            actor=request.user, team=team, user=user, role=member_form.cleaned_data["role"]
                        )
                    messages.success(request, f"{team.name} updated.")
                    return redirect("team_list")
        except (Conflict, ValidationError, PermissionDenied, ObjectDoesNotExist) as exc:
            messages.error(request, error_text(exc))
    return render(
        request,
        "models_app/team_list.html",
        {
            "teams": selectors.team_list(user=request.user),
            "create_form": create_form,
            "member_form": member_form,
        },
    )


@login_required
def webhook_list(request: HttpRequest) -> HttpResponse:
    """The user's webhooks (admins: everyone's), with recent deliveries; create one here."""
    can_add = request.user.has_perm("models_app.add_webhook")
    form = WebhookCreateForm(request.POST or None) if can_add else None
    created_secret = None
    if request.method == "POST":
        if not can_add:
            raise PermissionDenied
        if form.is_valid():
            try:
                hook, created_secret = services_events.webhook_create(actor=request.user, **form.cleaned_data)
            except (ValidationError, PermissionDenied) as exc:
                form.add_error(None, error_text(exc))
            else:
                messages.success(request, f"Webhook '{hook.name}' created.")
                form = WebhookCreateForm()
    hooks = selectors.webhook_list(user=request.user)
    return render(
        request,
        "models_app/webhook_list.html",
        {
            "hooks": hooks,
            "form": form,
            "created_secret": created_secret,
            "event_types": services_events.EVENT_TYPES,
        },
    )


@login_required
@require_POST
def webhook_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Delete or ping a webhook, through the same services as the API."""
    hook = get_object_or_404(selectors.webhook_list(user=request.user), pk=pk)
    try:
        if action == "delete":
            services_events.webhook_delete(actor=request.user, hook=hook)
            messages.success(request, f"Webhook '{hook.name}' deleted.")
        else:
            services_events.webhook_ping(actor=request.user, hook=hook)
            messages.success(request, f"Ping queued for '{hook.name}'.")
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, error_text(exc))
    return redirect("webhook_list")


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, pk: int, delivery_id: str) -> HttpResponse:
    hook = get_object_or_404(selectors.webhook_list(user=request.user), pk=pk)
    delivery = get_object_or_404(hook.deliveries.all(), delivery_id=delivery_id)
    try:
        services_events.delivery_redeliver(actor=request.user, delivery=delivery)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Delivery {delivery.delivery_id} queued again.")
    return redirect("webhook_list")
