"""REST API of governance: checks, promotions, policies, alias history, audit log, teams."""

from __future__ import annotations

import csv
import io

import django_filters
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from models_app import selectors, services, services_governance
from models_app.api.file_views import VersionLookupMixin
from models_app.api.views import ModelLookupMixin
from models_app.choices import CheckStatus, PromotionState, Stage, TeamRole
from models_app.models import AliasHistory, AuditEvent, Check, Promotion, PromotionPolicy
from models_app.roles import APPROVE_PROMOTION
from registry_project.api import StrictSerializer

# --- Serializers ----------------------------------------------------------------------------


class CheckSerializer(serializers.ModelSerializer):
    # Built-in checks have no reporter: null.
    reported_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    details_url = serializers.CharField(read_only=True, help_text="A URL, or empty.")

    class Meta:
        model = Check
        fields = [
            "name",
            "status",
            "summary",
            "details_url",
            "metrics",
            "builtin",
            "reported_by",
            "updated_at",
        ]
        read_only_fields = fields


class CheckReportInputSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,100}$", help_text="e.g. 'integration', 'data-drift'")
    status = serializers.ChoiceField(choices=CheckStatus.choices)
    summary = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")
    details_url = serializers.URLField(max_length=2000, allow_blank=True, required=False, default="")
    metrics = serializers.DictField(required=False, default=dict)


class PromotionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="version.model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    approvals = serializers.SerializerMethodField()

    class Meta:
        model = Promotion
        fields = [
            "id",
            "model",
            "version",
            "from_stage",
            "target_stage",
            "alias",
            "state",
            "comment",
            "requested_by",
            "approvals",
            "decided_by",
            "decision_comment",
            "override_reason",
            "created_at",
            "decided_at",
        ]
        read_only_fields = fields

    def get_approvals(self, obj: Promotion) -> list[dict]:
        return [
            {"approver": a.approver.username, "comment": a.comment, "at": a.created_at}
            for a in obj.approvals.all()
        ]


class PromotionRequestInputSerializer(StrictSerializer):
    target_stage = serializers.ChoiceField(choices=Stage.choices)
    comment = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")
    alias = serializers.CharField(max_length=255, allow_blank=True, required=False, default="")
    override_reason = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")


class DecisionInputSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")


class PolicySerializer(serializers.ModelSerializer):
    # null until an owner first changes the policy (until then it is MODELYARD_POLICY_DEFAULTS)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = PromotionPolicy
        fields = [
            "required_checks",
            "production_approvals",
            "staging_approvals",
            "allow_self_approval",
            "single_production",
            "on_new_production",
            "protected_aliases",
            "updated_at",
        ]
        read_only_fields = ["updated_at"]


class PolicyInputSerializer(StrictSerializer):
    required_checks = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
    production_approvals = serializers.IntegerField(min_value=0, max_value=10, required=False)
    staging_approvals = serializers.IntegerField(min_value=0, max_value=10, required=False)
    allow_self_approval = serializers.BooleanField(required=False)
    single_production = serializers.BooleanField(required=False)
    on_new_production = serializers.ChoiceField(choices=["archive", "none"], required=False)
    protected_aliases = serializers.ListField(child=serializers.CharField(max_length=255), required=False)


class AliasHistorySerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AliasHistory
        fields = ["alias", "from_version", "to_version", "actor", "reason", "promotion", "created_at"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", read_only=True)
    model = serializers.CharField(source="model_name", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "token_id",
            "client_ip",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "model",
            "before",
            "after",
        ]
        read_only_fields = fields


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = Group
        fields = ["name", "members"]

    def get_members(self, obj: Group) -> list[dict]:
        return [{"username": m.user.username, "role": m.role} for m in obj.memberships.all()]


class TeamCreateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=150)


class MemberInputSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=TeamRole.choices)


# --- Views ----------------------------------------------------------------------------------


class VersionCheckView(VersionLookupMixin, GenericAPIView):
    """``GET`` a version's checks; ``POST`` reports one (idempotent per name, history kept)."""

    serializer_class = CheckSerializer
    queryset = Check.objects.none()  # for the schema; reads go through get_version()
    method_permissions = {"GET": "models_app.view_modelversion", "POST": "models_app.add_check"}

    pagination_class = None  # a version has a handful of checks: a plain list

    @extend_schema(responses=CheckSerializer(many=True))
    def get(self, request: Request, **kwargs) -> Response:
        return Response(
            CheckSerializer(self.get_version().checks.select_related("reported_by"), many=True).data
        )

    @extend_schema(request=CheckReportInputSerializer, responses={201: CheckSerializer})
    def post(self, request: Request, **kwargs) -> Response:
        serializer = CheckReportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = services_governance.check_report(
            actor=request.user, version=self.get_version(), **serializer.validated_data
        )
        return Response(CheckSerializer(check).data, status=status.HTTP_201_CREATED)


class VersionPromotionView(VersionLookupMixin, GenericAPIView):
    """``POST`` asks to move the version to a stage: 201 pending, or applied when no approval is needed."""

    serializer_class = PromotionSerializer
    queryset = Promotion.objects.none()
    method_permissions = {"GET": "models_app.view_modelversion", "POST": "models_app.add_promotion"}

    pagination_class = None  # a plain list

    @extend_schema(responses=PromotionSerializer(many=True))
    def get(self, request: Request, **kwargs) -> Response:
        items = selectors.promotion_list(user=request.user).filter(version=self.get_version())
        return Response(PromotionSerializer(items, many=True).data)

    @extend_schema(request=PromotionRequestInputSerializer, responses={201: PromotionSerializer})
    def post(self, request: Request, **kwargs) -> Response:
        serializer = PromotionRequestInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        promotion = services_governance.promotion_request(
            actor=request.user, version=self.get_version(), **serializer.validated_data
        )
        fresh = selectors.promotion_list(user=request.user).get(pk=promotion.pk)
        return Response(PromotionSerializer(fresh).data, status=status.HTTP_201_CREATED)


class PromotionFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=PromotionState.choices)
    target_stage = django_filters.ChoiceFilter(choices=Stage.choices)
    model = django_filters.CharFilter(field_name="version__model__name", lookup_expr="iexact")
    requested_by = django_filters.CharFilter(field_name="requested_by__username", lookup_expr="iexact")

    class Meta:
        model = Promotion
        fields = ["state", "target_stage", "model", "requested_by"]


class PromotionViewSet(viewsets.ReadOnlyModelViewSet):
    """Promotion requests on models you can see; approvers work the ``?state=pending`` queue."""

    serializer_class = PromotionSerializer
    filterset_class = PromotionFilterSet
    queryset = Promotion.objects.none()
    ordering_fields = {"created": "created_at"}
    ordering = ["-created_at"]
    action_permissions = {"approve": APPROVE_PROMOTION, "reject": APPROVE_PROMOTION, "cancel": None}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Promotion.objects.none()
        return selectors.promotion_list(user=self.request.user)

    def _decide(self, request: Request, service, **extra) -> Response:
        serializer = DecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        promotion = service(
            actor=request.user, promotion=self.get_object(), **serializer.validated_data, **extra
        )
        return Response(PromotionSerializer(self.get_queryset().get(pk=promotion.pk)).data)

    @extend_schema(request=DecisionInputSerializer, responses=PromotionSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk=None) -> Response:
        return self._decide(request, services_governance.promotion_approve)

    @extend_schema(request=DecisionInputSerializer, responses=PromotionSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk=None) -> Response:
        return self._decide(request, services_governance.promotion_reject)

    @extend_schema(request=None, responses=PromotionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        promotion = services_governance.promotion_cancel(actor=request.user, promotion=self.get_object())
        return Response(PromotionSerializer(self.get_queryset().get(pk=promotion.pk)).data)


class ModelPolicyView(ModelLookupMixin, GenericAPIView):
    """``GET`` the model's promotion policy; ``PATCH`` changes it (owners and admins)."""

    serializer_class = PolicySerializer
    method_permissions = {
        "GET": "models_app.view_registeredmodel",
        "PATCH": "models_app.change_promotionpolicy",
    }

    def get(self, request: Request, name: str) -> Response:
        return Response(PolicySerializer(services.policy_get(model=self.get_model())).data)

    @extend_schema(request=PolicyInputSerializer)
    def patch(self, request: Request, name: str) -> Response:
        serializer = PolicyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy = services_governance.policy_update(
            actor=request.user, model=self.get_model(), **serializer.validated_data
        )
        return Response(PolicySerializer(policy).data)


class AliasHistoryView(ModelLookupMixin, mixins.ListModelMixin, GenericAPIView):
    """Every move of the model's aliases, newest first (``?alias=champion`` for one)."""

    serializer_class = AliasHistorySerializer
    method_permissions = {"GET": "models_app.view_registeredmodel"}
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AliasHistory.objects.none()
        qs = self.get_model().alias_history.select_related("actor")
        if alias := self.request.query_params.get("alias"):
            qs = qs.filter(alias=alias)
        return qs

    def get(self, request: Request, *args, **kwargs) -> Response:
        return self.list(request, *args, **kwargs)


class CSVRenderer(renderers.BaseRenderer):
    """``?format=csv``: the audit log as a spreadsheet-friendly file."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"
    columns = [
        "id",
        "created_at",
        "actor",
        "token_id",
        "client_ip",
        "request_id",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "model",
        "before",
        "after",
    ]

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        rows = data.get("results", data) if isinstance(data, dict) else data
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        if isinstance(rows, list):
            for row in rows:
                # Neutralize spreadsheet formulas in free text (CSV injection).
                writer.writerow(
                    {k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in row.items()}
                )
        else:  # an error body
            writer.writerow({"action": str(data)})
        return out.getvalue().encode("utf-8")


class AuditEventFilterSet(django_filters.FilterSet):
    model = django_filters.CharFilter(field_name="model_name", lookup_expr="iexact")
    actor = django_filters.CharFilter(field_name="actor_username", lookup_expr="iexact")
    action = django_filters.CharFilter(field_name="action")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["model", "actor", "action", "since", "until"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: admins see everything, owners their models' events. ``?format=csv`` exports."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    queryset = AuditEvent.objects.none()
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]
    method_permissions = {"GET": None}
    ordering = ["-created_at", "-id"]
    ordering_fields = {"created": "created_at"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return selectors.audit_event_list(user=self.request.user)

    def paginate_queryset(self, queryset):
        if self.request.accepted_renderer.format == "csv":
            return None  # an export is the whole filtered log, streamed by the database cursor
        return super().paginate_queryset(queryset)


class TeamViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Teams (Django groups that own models). Admins create teams and manage members."""

    serializer_class = TeamSerializer
    queryset = Group.objects.none()
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"
    pagination_class = None
    filter_backends: list = []
    method_permissions = {"GET": None, "POST": None, "PUT": None, "DELETE": None}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Group.objects.none()
        return selectors.team_list(user=self.request.user)

    @extend_schema(request=TeamCreateInputSerializer, responses={201: TeamSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = TeamCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_create(actor=request.user, name=serializer.validated_data["name"])
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)


class TeamMemberView(GenericAPIView):
    """``PUT`` gives a user a role in a team, ``DELETE`` removes them (admins)."""

    serializer_class = MemberInputSerializer
    method_permissions = {"PUT": None, "DELETE": None}

    def _objects(self, team: str, username: str):
        services.require_admin(self.request.user)  # 403 before revealing which users exist
        group = get_object_or_404(Group, name=team)
        user = get_object_or_404(get_user_model(), username=username)
        return group, user

    @extend_schema(request=MemberInputSerializer, responses=TeamSerializer)
    def put(self, request: Request, team: str, username: str) -> Response:
        serializer = MemberInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        group, user = self._objects(team, username)
        services.team_member_set(
            actor=request.user, team=group, user=user, role=serializer.validated_data["role"]
        )
        return Response(TeamSerializer(selectors.team_list(user=request.user).get(pk=group.pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team: str, username: str) -> Response:
        group, user = self._objects(team, username)
        services.team_member_remove(actor=request.user, team=group, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
