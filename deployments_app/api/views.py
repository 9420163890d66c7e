"""REST API of deployments: lifecycle, external tools' events, and the inference proxy."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, parsers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments_app import proxy, selectors, services
from deployments_app.choices import DeploymentStatus, Target
from deployments_app.filtersets import DeploymentFilterSet
from deployments_app.models import Deployment, DeploymentEvent, DeploymentLogLine
from models_app import selectors as catalog_selectors
from models_app.choices import TokenScope, Visibility
from models_app.models import RegisteredModel
from models_app.roles import PREDICT_DEPLOYMENT, ROLE_PERMISSIONS
from registry_project.api import StrictSerializer, error_body

# --- Serializers ----------------------------------------------------------------------------


class DeploymentEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = DeploymentEvent
        fields = ["status", "message", "actor", "created_at"]
        read_only_fields = fields


class DeploymentLogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeploymentLogLine
        fields = ["id", "generation", "source", "line", "created_at"]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    env = serializers.SerializerMethodField(help_text="Variable names only: values are never shown back.")
    predict_url = serializers.SerializerMethodField()
    serve_url = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "model",
            "version",
            "alias",
            "follow_alias",
            "target",
            "replicas",
            "env",
            "status",
            "desired_state",
            "generation",
            "endpoint_url",
            "predict_url",
            "serve_url",
            "image",
            "error",
            "restarts",
            "requested_by",
            "started_at",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_env(self, obj: Deployment) -> dict[str, str]:
        return dict.fromkeys(obj.env_keys, "********")

    def get_predict_url(self, obj: Deployment) -> str:
        return f"{settings.SITE_URL}/api/v1/deployments/{obj.pk}/predict"

    def get_serve_url(self, obj: Deployment) -> str:
        return f"{settings.SITE_URL}/serve/{obj.name}/"


class DeploymentDetailSerializer(DeploymentSerializer):
    events = serializers.SerializerMethodField()
    logs = serializers.SerializerMethodField()

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "events", "logs"]
        read_only_fields = fields

    def get_events(self, obj: Deployment) -> list[dict]:
        return DeploymentEventSerializer(selectors.deployment_events(deployment=obj), many=True).data

    def get_logs(self, obj: Deployment) -> list[dict]:
        rows = selectors.deployment_log_tail(deployment=obj, limit=100)
        return DeploymentLogLineSerializer(rows, many=True).data


class DeploymentRequestInputSerializer(StrictSerializer):
    name = serializers.RegexField(
        r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        error_messages={
            "invalid": "Use 1-63 lowercase letters, digits and dashes (no leading/trailing dash)."
        },
    )
    model = serializers.CharField(max_length=128)
    version = serializers.IntegerField(min_value=1, required=False)
    alias = serializers.CharField(max_length=255, required=False)
    target = serializers.ChoiceField(choices=Target.choices, required=False)
    replicas = serializers.IntegerField(min_value=1, max_value=20, required=False, default=1)
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=10_000), required=False
    )
    follow_alias = serializers.BooleanField(required=False, default=False)
    allow_pickle = serializers.BooleanField(
        required=False, default=False, help_text="Admins only: serve pickle files without a passed scan."
    )

    def validate(self, attrs):
        if ("version" in attrs) == ("alias" in attrs):
            raise serializers.ValidationError({"version": "Give exactly one of 'version' and 'alias'."})
        return attrs


class DeploymentRedeployInputSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1, required=False)
    alias = serializers.CharField(max_length=255, required=False)
    allow_pickle = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if "version" in attrs and "alias" in attrs:
            raise serializers.ValidationError({"version": "Give 'version' or 'alias', not both."})
        return attrs


class DeploymentEventInputSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=[s for s in services.EXTERNAL_STATUSES])
    message = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)
    endpoint_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)


# --- Views ----------------------------------------------------------------------------------


class DeploymentViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Deployments of models you can see. Deployers of the model's team launch and steer them."""

    filterset_class = DeploymentFilterSet
    queryset = Deployment.objects.none()
    permission_model = Deployment
    ordering_fields = {"name": "name", "created": "created_at", "updated": "updated_at"}
    ordering = ["name"]
    # Object actions are checked on the deployment by the services (after a 404 for those who
    # cannot see it), so an outsider learns nothing from a 403.
    action_permissions = {"stop": None, "start": None, "redeploy": None, "events": None, "destroy": None}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Deployment.objects.none()
        return selectors.deployment_list(user=self.request.user)

    def get_serializer_class(self):
        if self.action == "create":
            return DeploymentRequestInputSerializer
        if self.action == "list":
            return DeploymentSerializer
        return DeploymentDetailSerializer

    def _answer(self, deployment: Deployment, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=deployment.pk)
        return Response(DeploymentDetailSerializer(fresh).data, status=code)

    @extend_schema(request=DeploymentRequestInputSerializer, responses={202: DeploymentDetailSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = DeploymentRequestInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            model = catalog_selectors.registered_model_get(user=request.user, name=data.pop("model"))
        except RegisteredModel.DoesNotExist as exc:
            raise ValidationError({"model": "No model of that name that you can see."}) from exc
        deployment = services.deployment_request(actor=request.user, model=model, **data)
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(responses={202: None, 204: None})
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        deleted = services.deployment_delete(actor=request.user, deployment=self.get_object())
        if deleted:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"status": DeploymentStatus.STOPPING, "detail": "Stopping, then deleting."}, 202)

    @extend_schema(request=None, responses={202: DeploymentDetailSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk=None) -> Response:
        deployment = services.deployment_stop(actor=request.user, deployment=self.get_object())
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DeploymentDetailSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk=None) -> Response:
        deployment = services.deployment_start(actor=request.user, deployment=self.get_object())
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(request=DeploymentRedeployInputSerializer, responses={202: DeploymentDetailSerializer})
    @action(detail=True, methods=["post"])
    def redeploy(self, request: Request, pk=None) -> Response:
        serializer = DeploymentRedeployInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_redeploy(
            actor=request.user, deployment=self.get_object(), **serializer.validated_data
        )
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(request=DeploymentEventInputSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def events(self, request: Request, pk=None) -> Response:
        """An external deployment tool reports status (and endpoint) of an ``external`` deployment."""
        serializer = DeploymentEventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_event_report(
            actor=request.user, deployment=self.get_object(), **serializer.validated_data
        )
        if not Deployment.objects.filter(pk=deployment.pk).exists():
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self._answer(deployment)

    @extend_schema(responses=DeploymentLogLineSerializer(many=True))
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk=None) -> Response:
        """Captured log lines after ``?after=<id>`` (the UI polls this), plus the live runtime tail."""
        deployment = self.get_object()
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            raise ValidationError({"after": "Give a log line id (an integer)."})
        rows = selectors.deployment_log_tail(deployment=deployment, limit=500, after_id=int(after))
        return Response(
            {
                "status": deployment.status,
                "endpoint_url": deployment.endpoint_url,
                "error": deployment.error,
                "events": DeploymentEventSerializer(
                    selectors.deployment_events(deployment=deployment, limit=20), many=True
                ).data,
                "lines": DeploymentLogLineSerializer(rows, many=True).data,
            }
        )


class _RawBody(parsers.BaseParser):
    """Accepts any media type; the proxy reads the raw bytes itself."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):  # pragma: no cover - unused
        return None


def _proxy_error(exc: proxy.ProxyError) -> Response:
    response = Response(error_body(exc.status, exc.message), status=exc.status)
    # A deployment that is stopped or not answering is not the registry failing: ``forward``
    # logged it at WARNING, so Django's ERROR line for every 5xx ("Service Unavailable: ...") is
    # left out through its own marker (``django.utils.log.log_response``).
    response._has_been_logged = exc.status >= 500
    return response


class _ProxyView(APIView):
    """Authenticates and authorizes like the API (``predict`` scope), then forwards."""

    required_scope = TokenScope.PREDICT
    method_permissions = {"GET": None, "POST": None, "HEAD": None}
    parser_classes = [_RawBody]

    def _deployment(self, request: Request, **lookup) -> Deployment:
        """The deployment to call: 404 unless visible, 403 without ``predict_deployment`` on it.

        The same rules as ``deployment_list`` and ``has_perm``, answered from one query that also
        reads the caller's role in the model's team (the proxy's hot path); only a refusal asks
        ``has_perm`` itself, so permissions granted to a user directly still count.
        """
        user = request.user
        found = selectors.deployment_route(user=user, **lookup)
        if found is None:
            raise NotFound("No deployment of that name or id.")
        deployment, _team_id, visibility, role = found
        if user.is_superuser:
            return deployment
        if role is None and visibility != Visibility.INTERNAL:
            raise NotFound("No deployment of that name or id.")
        if role is not None and PREDICT_DEPLOYMENT in ROLE_PERMISSIONS[role]:
            return deployment
        full = get_object_or_404(selectors.deployment_list(user=user), pk=deployment.pk)
        if not user.has_perm(PREDICT_DEPLOYMENT, full):
            raise PermissionDenied("You may not call this deployment (a role in its model's team is needed).")
        return deployment

    def _body(self, request: Request) -> bytes:
        limit = settings.MODELYARD_DEPLOY_MAX_REQUEST_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > limit:
            raise ParseError(f"The request body is larger than {limit} bytes.")
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise ParseError(f"The request body is larger than {limit} bytes.")
        return body

    def _forward(self, request: Request, deployment: Deployment, path: str, body: bytes = b""):
        try:
            return proxy.forward(
                deployment=deployment,
                method=request.method,
                path=path,
                query=request.META.get("QUERY_STRING", ""),
                body=body,
                headers=request.headers,
            )
        except proxy.ProxyError as exc:
            return _proxy_error(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        if not isinstance(response, Response):
            return response  # the model server's own answer, passed through untouched
        return super().finalize_response(request, response, *args, **kwargs)


class DeploymentPredictView(_ProxyView):
    """``POST`` a prediction request in either protocol (MLflow scoring or Open Inference v2)."""

    @extend_schema(request=None, responses=None)
    def post(self, request: Request, pk: int):
        deployment = self._deployment(request, pk=pk)
        body = self._body(request)
        try:
            path = proxy.protocol_path(deployment, body, request.query_params.get("protocol"))
        except proxy.ProxyError as exc:
            return _proxy_error(exc)
        request.META["QUERY_STRING"] = ""
        return self._forward(request, deployment, path, body)


class ServeView(_ProxyView):
    """``/serve/{deployment}/...``: the runtime's own paths (``v2/...``, ``invocations``, ``ping``)."""

    ALLOWED = ("v2/", "invocations", "ping", "metrics", "v2")

    def _check_path(self, rest: str) -> str:
        if not rest.startswith(self.ALLOWED) or ".." in rest:
            raise NotFound("Unknown serving path: use v2/..., invocations or ping.")
        return rest

    @extend_schema(request=None, responses=None)
    def get(self, request: Request, name: str, rest: str = ""):
        deployment = self._deployment(request, name=name)
        return self._forward(request, deployment, self._check_path(rest))

    @extend_schema(request=None, responses=None)
    def post(self, request: Request, name: str, rest: str = ""):
        deployment = self._deployment(request, name=name)
        return self._forward(request, deployment, self._check_path(rest), self._body(request))
