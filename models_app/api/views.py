"""Native REST API views: thin adapters from HTTP to selectors and services."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from models_app import selectors, services
from models_app.api.serializers import (
    AccessTokenCreatedSerializer,
    AccessTokenCreateInputSerializer,
    AccessTokenSerializer,
    AliasSetInputSerializer,
    ModelAliasSerializer,
    ModelVersionSerializer,
    ModelVersionUpdateInputSerializer,
    RegisteredModelSerializer,
    RegisteredModelUpdateInputSerializer,
    TagSerializer,
    TagValueInputSerializer,
)
from models_app.filtersets import ModelVersionFilterSet, RegisteredModelFilterSet
from models_app.models import AccessToken, ModelAlias, ModelVersion, RegisteredModel
from models_app.roles import scopes_allow
from models_app.validators import MODEL_NAME_RE


class ModelLookupMixin:
    """Resolves the ``{name}`` of the URL to a model the caller may see (404 otherwise)."""

    def get_model(self) -> RegisteredModel:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request kwargs
            raise RegisteredModel.DoesNotExist
        if not hasattr(self, "_model"):
            self._model = get_object_or_404(
                selectors.registered_model_list(user=self.request.user), name__iexact=self.kwargs["name"]
            )
        return self._model

    def get_version(self) -> ModelVersion:
        return get_object_or_404(
            selectors.model_version_list(user=self.request.user, model=self.get_model()),
            version=self.kwargs["version"],
        )


class RegisteredModelViewSet(viewsets.ModelViewSet):
    """Registered models: list, register, read, change and delete."""

    serializer_class = RegisteredModelSerializer
    filterset_class = RegisteredModelFilterSet
    ordering_fields = {"name": "name", "created": "created_at", "updated": "updated_at"}
    lookup_field = "name"
    lookup_value_regex = MODEL_NAME_RE
    permission_model = RegisteredModel
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @property
    def ordering(self) -> list[str] | None:
        """By name, unless the FilterSet orders: a search ranks by relevance, ``?sort=`` sorts."""
        params = self.request.query_params if getattr(self, "request", None) else {}
        if params.get("q") or params.get("sort"):
            return None
        return ["name"]

    def get_queryset(self):
        return selectors.registered_model_list(user=self.request.user)

    def get_object(self) -> RegisteredModel:
        obj = get_object_or_404(self.get_queryset(), name__iexact=self.kwargs["name"])
        self.check_object_permissions(self.request, obj)
        return obj

    def _refetch(self, model: RegisteredModel) -> dict:
        return self.get_serializer(self.get_queryset().get(pk=model.pk)).data

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = data.get("team") or self._default_team()
        model = services.registered_model_create(
            actor=request.user,
            name=data["name"],
            team=team,
            description=data.get("description", ""),
            card=data.get("card", ""),
            visibility=data["visibility"],
            tags=data.get("tags"),
        )
        return Response(self._refetch(model), status=status.HTTP_201_CREATED)

    def _default_team(self) -> Group:
        teams = list(selectors.team_list_for_contribution(user=self.request.user)[:2])
        if len(teams) != 1:
            raise ValidationError(
                {"team": ["Name the owning team: you contribute to more than one (or none)."]}
            )
        return teams[0]

    @extend_schema(request=RegisteredModelUpdateInputSerializer)
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        model = self.get_object()
        serializer = RegisteredModelUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.registered_model_update(actor=request.user, model=model, **serializer.validated_data)
        return Response(self._refetch(model))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.registered_model_delete(actor=request.user, model=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelVersionViewSet(ModelLookupMixin, viewsets.ModelViewSet):
    """Versions of one model, numbered 1, 2, 3…"""

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilterSet
    ordering_fields = {"version": "version", "created": "created_at", "updated": "updated_at"}
    ordering = ["-version"]
    permission_model = ModelVersion
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelVersion.objects.none()
        return selectors.model_version_list(user=self.request.user, model=self.get_model())

    def get_object(self) -> ModelVersion:
        obj = get_object_or_404(self.get_queryset(), version=self.kwargs["version"])
        self.check_object_permissions(self.request, obj)
        return obj

    def _refetch(self, version: ModelVersion) -> dict:
        return self.get_serializer(self.get_queryset().get(pk=version.pk)).data

    def create(self, request: Request, *args, **kwargs) -> Response:
        model = self.get_model()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.model_version_create(actor=request.user, model=model, **serializer.validated_data)
        return Response(self._refetch(version), status=status.HTTP_201_CREATED)

    @extend_schema(request=ModelVersionUpdateInputSerializer)
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        version = self.get_object()
        serializer = ModelVersionUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.model_version_update(
            actor=request.user, version=version, **serializer.validated_data
        )
        return Response(self._refetch(version))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.model_version_delete(actor=request.user, version=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelTagView(ModelLookupMixin, GenericAPIView):
    """``PUT`` sets a model tag, ``DELETE`` removes it."""

    serializer_class = TagSerializer
    method_permissions = {
        "PUT": "models_app.change_registeredmodel",
        "DELETE": "models_app.change_registeredmodel",
    }

    @extend_schema(request=TagValueInputSerializer, responses=TagSerializer)
    def put(self, request: Request, name: str, key: str) -> Response:
        serializer = TagValueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag = services.model_tag_set(
            actor=request.user, model=self.get_model(), key=key, value=serializer.validated_data["value"]
        )
        return Response(TagSerializer(tag).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, key: str) -> Response:
        services.model_tag_delete(actor=request.user, model=self.get_model(), key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionTagView(ModelLookupMixin, GenericAPIView):
    """``PUT`` sets a version tag, ``DELETE`` removes it."""

    serializer_class = TagSerializer
    method_permissions = {"PUT": "models_app.change_modelversion", "DELETE": "models_app.change_modelversion"}

    @extend_schema(request=TagValueInputSerializer, responses=TagSerializer)
    def put(self, request: Request, name: str, version: int, key: str) -> Response:
        serializer = TagValueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag = services.version_tag_set(
            actor=request.user, version=self.get_version(), key=key, value=serializer.validated_data["value"]
        )
        return Response(TagSerializer(tag).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, version: int, key: str) -> Response:
        services.version_tag_delete(actor=request.user, version=self.get_version(), key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelAliasListView(ModelLookupMixin, mixins.ListModelMixin, GenericAPIView):
    """The aliases of a model."""

    serializer_class = ModelAliasSerializer
    permission_model = ModelAlias
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelAlias.objects.none()
        return selectors.model_alias_list(model=self.get_model())

    def get(self, request: Request, *args, **kwargs) -> Response:
        return self.list(request, *args, **kwargs)


class ModelAliasView(ModelLookupMixin, GenericAPIView):
    """``GET`` the version an alias points to, ``PUT`` to set or move it, ``DELETE`` it."""

    serializer_class = ModelAliasSerializer
    permission_model = ModelAlias
    method_permissions = {"PUT": "models_app.change_modelalias"}

    def _alias(self) -> ModelAlias:
        return get_object_or_404(
            selectors.model_alias_list(model=self.get_model()), alias=self.kwargs["alias"]
        )

    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request: Request, name: str, alias: str) -> Response:
        version = selectors.model_version_list(user=request.user).get(pk=self._alias().version_id)
        return Response(ModelVersionSerializer(version).data)

    @extend_schema(request=AliasSetInputSerializer, responses=ModelAliasSerializer)
    def put(self, request: Request, name: str, alias: str) -> Response:
        serializer = AliasSetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = self.get_model()
        number = serializer.validated_data["version"]
        version = ModelVersion.objects.filter(model=model, version=number).first()
        if version is None:
            raise ValidationError({"version": [f"Model '{model.name}' has no version {number}."]})
        item = services.model_alias_set(actor=request.user, model=model, alias=alias, version=version)
        return Response(ModelAliasSerializer(item).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, alias: str) -> Response:
        services.model_alias_delete(actor=request.user, model=self.get_model(), alias=alias)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccessTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Your personal access tokens. ``DELETE`` revokes one; the secret is shown only at creation."""

    serializer_class = AccessTokenSerializer
    pagination_class = None
    filter_backends: list = []
    # Any signed-in user manages their own tokens; the selector and services scope them.
    method_permissions = {"GET": None, "POST": None, "DELETE": None}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccessToken.objects.none()
        return selectors.access_token_list(user=self.request.user)

    @extend_schema(request=AccessTokenCreateInputSerializer, responses={201: AccessTokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        serializer = AccessTokenCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        current = request.auth
        if isinstance(current, AccessToken) and not all(
            scopes_allow(current.scopes, s) for s in data["scopes"]
        ):
            raise PermissionDenied("A token cannot create a token with more scopes than its own.")
        token, raw = services.access_token_create(
            actor=request.user,
            user=request.user,
            name=data["name"],
            scopes=data["scopes"],
            expires_in_days=data.get("expires_in_days"),
        )
        body = AccessTokenCreatedSerializer(token).data
        body["token"] = raw
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.access_token_revoke(actor=request.user, token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
