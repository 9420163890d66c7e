"""Serializers of the native REST API. Output shapes are documented in docs/api.md."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from models_app.choices import TokenScope, Visibility
from models_app.models import AccessToken, ModelAlias, ModelVersion, RegisteredModel
from models_app.validators import TAG_VALUE_MAX, validate_model_name, validate_tag_key
from registry_project.api import StrictModelSerializer, StrictSerializer


class TagsField(serializers.DictField):
    """Tags as a JSON object ``{"key": "value"}``; keys are validated like tag keys."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=TAG_VALUE_MAX, allow_blank=True), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > 100:
            raise serializers.ValidationError("At most 100 tags can be given at once.")
        errors = {}
        for key in value:
            try:
                validate_tag_key(key)
            except DjangoValidationError as exc:
                errors[key] = exc.messages
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def to_representation(self, value):
        return {tag.key: tag.value for tag in value.all()}


class RegisteredModelSerializer(StrictModelSerializer):
    name = serializers.CharField(max_length=128, validators=[validate_model_name])
    team = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Group.objects.all(),
        required=False,
        help_text="Owning team. May be omitted when you contribute to exactly one team.",
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.INTERNAL)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tags = TagsField(required=False)
    aliases = serializers.SerializerMethodField()
    latest_version = serializers.IntegerField(source="last_version_number", read_only=True)

    class Meta:
        model = RegisteredModel
        fields = [
            "name",
            "description",
            "card",
            "team",
            "visibility",
            "tags",
            "aliases",
            "latest_version",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {"card": {"help_text": "The model card, Markdown (rendered sanitized in the UI)."}}

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_aliases(self, obj: RegisteredModel) -> dict[str, int]:
        return {alias.alias: alias.version.version for alias in obj.aliases.all()}


class RegisteredModelUpdateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=128, validators=[validate_model_name], required=False)
    description = serializers.CharField(max_length=20_000, allow_blank=True, required=False)
    card = serializers.CharField(
        max_length=100_000, allow_blank=True, required=False, trim_whitespace=False, help_text="Markdown."
    )
    team = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)


class ModelVersionSerializer(StrictModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tags = TagsField(required=False)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "status",
            "stage",
            "status_message",
            "description",
            "source",
            "tags",
            "aliases",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["version", "status", "stage", "status_message", "created_at", "updated_at"]
        extra_kwargs = {"source": {"allow_blank": True}, "description": {"allow_blank": True}}

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.alias for alias in obj.aliases.all())


class ModelVersionUpdateInputSerializer(StrictSerializer):
    description = serializers.CharField(max_length=20_000, allow_blank=True, required=False)
    source = serializers.CharField(max_length=2048, allow_blank=True, required=False)


class TagValueInputSerializer(StrictSerializer):
    value = serializers.CharField(max_length=TAG_VALUE_MAX, allow_blank=True)


class TagSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField()


class AliasSetInputSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class ModelAliasSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.version", read_only=True)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["alias", "version", "updated_by", "updated_at"]
        read_only_fields = fields


class AccessTokenSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = AccessToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
            "active",
        ]
        read_only_fields = fields


class AccessTokenCreateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TokenScope.choices), min_length=1, max_length=4
    )
    expires_in_days = serializers.IntegerField(min_value=1, required=False)


class AccessTokenCreatedSerializer(AccessTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret. Shown once; store it now.")

    class Meta(AccessTokenSerializer.Meta):
        fields = [*AccessTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields
