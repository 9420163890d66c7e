"""Server-rendered catalog pages. Same selectors, FilterSets and services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from models_app import selectors, services
from models_app.filtersets import RegisteredModelFilterSet
from models_app.forms import AccessTokenCreateForm


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
    versions = selectors.model_version_list(user=request.user, model=model)
    return render(
        request,
        "models_app/registeredmodel_detail.html",
        {
            "model": model,
            "versions": versions,
            "can_change": request.user.has_perm("models_app.change_registeredmodel", model),
        },
    )


@login_required
def modelversion_detail(request: HttpRequest, name: str, version: int) -> HttpResponse:
    model = get_object_or_404(selectors.registered_model_list(user=request.user), name__iexact=name)
    obj = get_object_or_404(selectors.model_version_list(user=request.user, model=model), version=version)
    files = obj.files.select_related("blob").order_by("path")
    return render(
        request, "models_app/modelversion_detail.html", {"model": model, "version": obj, "files": files}
    )


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
