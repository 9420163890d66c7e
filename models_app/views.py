"""Server-rendered catalog pages. Same selectors, FilterSets and services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from models_app import selectors, services, services_governance
from models_app.choices import PromotionState
from models_app.filtersets import RegisteredModelFilterSet
from models_app.forms import (
    AccessTokenCreateForm,
    DecisionForm,
    MemberForm,
    PolicyForm,
    PromotionRequestForm,
    TeamCreateForm,
)
from registry_project.errors import Conflict


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """The searchable list of models the user may see."""
    filterset = RegisteredModelFilterSet(
        request.GET, queryset=selectors.registered_model_list(user=request.user)
    )
    models = filterset.qs.order_by("-updated_at") if filterset.is_valid() else filterset.queryset.none()
    page = Paginator(models, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "models_app/registeredmodel_list.html",
        {"filterset": filterset, "page": page, "query": query.urlencode()},
    )


@login_required
def registeredmodel_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    versions = selectors.model_version_list(user=request.user, model=model).prefetch_related("checks")
    history = selectors.audit_event_list(user=request.user).filter(model_name__iexact=model.name)[:20]
    return render(
        request,
        "models_app/registeredmodel_detail.html",
        {
            "model": model,
            "versions": versions,
            "policy": services.policy_get(model=model),
            "history": history,
            "can_change": request.user.has_perm("models_app.change_registeredmodel", model),
            "can_edit_policy": request.user.has_perm("models_app.change_promotionpolicy", model),
        },
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
            form.add_error(None, _error_text(exc))
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


def _error_text(exc: Exception) -> str:
    if isinstance(exc, Conflict):
        return exc.message
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or "Not allowed."


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
        messages.error(request, _error_text(exc))
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
            messages.error(request, _error_text(exc))
    return render(
        request,
        "models_app/team_list.html",
        {
            "teams": selectors.team_list(user=request.user),
            "create_form": create_form,
            "member_form": member_form,
        },
    )
