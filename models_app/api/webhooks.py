"""REST API of webhooks: subscribe, inspect deliveries and attempts, redeliver, ping."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from models_app import services_events
from models_app.models import DeliveryAttempt, Webhook, WebhookDelivery
from registry_project.api import StrictSerializer


class WebhookSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "events", "active", "owner", "created_at", "updated_at"]
        read_only_fields = fields


class WebhookInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(child=serializers.CharField(max_length=64), max_length=50)
    secret = serializers.CharField(max_length=200, min_length=16, required=False, write_only=True)
    active = serializers.BooleanField(required=False, default=True)


class WebhookUpdateInputSerializer(WebhookInputSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
        self.fields["active"].default = serializers.empty


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["attempted_at", "status_code", "duration_ms", "error"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event = serializers.CharField(source="event.type", read_only=True)
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "delivery_id",
            "event",
            "state",
            "attempts",
            "last_status_code",
            "next_attempt_at",
            "created_at",
            "delivered_at",
            "attempt_log",
        ]
        read_only_fields = fields


class WebhookViewSet(viewsets.ModelViewSet):
    """Your webhooks (admins: everyone's). The signing secret is shown once, at creation."""

    serializer_class = WebhookSerializer
    queryset = Webhook.objects.none()
    pagination_class = None
    filter_backends: list = []
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    method_permissions = {"GET": None, "POST": "models_app.add_webhook", "PATCH": None, "DELETE": None}
    action_permissions = {"ping": None, "redeliver": None, "deliveries": None}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Webhook.objects.none()
        qs = Webhook.objects.select_related("owner")
        return qs if self.request.user.is_superuser else qs.filter(owner=self.request.user)

    @extend_schema(request=WebhookInputSerializer, responses={201: WebhookSerializer})
    def create(self, request: Request) -> Response:
        serializer = WebhookInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook, secret = services_events.webhook_create(actor=request.user, **serializer.validated_data)
        return Response({**WebhookSerializer(hook).data, "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookUpdateInputSerializer)
    def partial_update(self, request: Request, pk=None) -> Response:
        serializer = WebhookUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook = services_events.webhook_update(
            actor=request.user, hook=self.get_object(), **serializer.validated_data
        )
        return Response(WebhookSerializer(hook).data)

    def destroy(self, request: Request, pk=None) -> Response:
        services_events.webhook_delete(actor=request.user, hook=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk=None) -> Response:
        items = self.get_object().deliveries.select_related("event").prefetch_related("attempt_log")[:200]
        return Response(DeliverySerializer(items, many=True).data)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk=None) -> Response:
        delivery = services_events.webhook_ping(actor=request.user, hook=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[0-9a-f-]{36})/redeliver")
    def redeliver(self, request: Request, pk=None, delivery_id=None) -> Response:
        delivery = get_object_or_404(self.get_object().deliveries, delivery_id=delivery_id)
        delivery = services_events.delivery_redeliver(actor=request.user, delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
