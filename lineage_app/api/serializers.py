"""The lineage document, validated strictly: every problem is a 400 naming its field."""

from __future__ import annotations

import re

from rest_framework import serializers

from lineage_app.choices import DatasetRole, ParentRelation
from registry_project.api import StrictSerializer

_SHA = r"^[0-9a-fA-F]{7,64}$"
# PEP 508 project names.
_PACKAGE_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


class LineageDatasetSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    uri = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    digest = serializers.CharField(max_length=200, help_text="sha256:… or the store's version id / ETag")
    role = serializers.ChoiceField(choices=DatasetRole.choices, default=DatasetRole.TRAIN)
    rows = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    size = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    schema = serializers.JSONField(required=False, allow_null=True)


class LineageCodeSerializer(StrictSerializer):
    repo_url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    commit = serializers.RegexField(_SHA, help_text="The commit SHA the model was trained from.")
    branch = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    dirty = serializers.BooleanField(required=False, default=False)
    diff_digest = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    entrypoint = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    committed_at = serializers.DateTimeField(required=False, allow_null=True)
    ancestors = serializers.ListField(
        child=serializers.RegexField(_SHA), max_length=1000, required=False, default=list
    )

    def validate_commit(self, value: str) -> str:
        return value.lower()

    def validate_ancestors(self, value: list[str]) -> list[str]:
        return [sha.lower() for sha in value]


class LineagePackageSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=100)

    def validate_name(self, value: str) -> str:
        if not _PACKAGE_NAME.match(value):
            raise serializers.ValidationError("Not a valid Python package name (PEP 508).")
        return value


class LineageEnvironmentSerializer(StrictSerializer):
    python = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    platform = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    accelerator = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    packages = LineagePackageSerializer(many=True, required=False, default=list, max_length=5000)


class LineageRunSerializer(StrictSerializer):
    id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    pipeline = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    step = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    user = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    status = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)
    params = serializers.DictField(required=False, default=dict)
    metrics = serializers.DictField(child=serializers.FloatField(), required=False, default=dict)
    tags = serializers.DictField(
        child=serializers.CharField(max_length=5000, allow_blank=True), required=False, default=dict
    )

    def validate(self, attrs):
        for field in ("params", "metrics", "tags"):
            if len(attrs.get(field, {})) > 1000:
                raise serializers.ValidationError({field: "At most 1,000 entries."})
        if attrs.get("started_at") and attrs.get("ended_at") and attrs["ended_at"] < attrs["started_at"]:
            raise serializers.ValidationError({"ended_at": "The run cannot end before it starts."})
        return attrs


class LineageParentSerializer(StrictSerializer):
    model = serializers.CharField(max_length=128)
    version = serializers.IntegerField(min_value=1)
    relation = serializers.ChoiceField(choices=ParentRelation.choices)


class LineageDocumentSerializer(StrictSerializer):
    datasets = LineageDatasetSerializer(many=True, required=False, default=list, max_length=200)
    code = LineageCodeSerializer(required=False, allow_null=True)
    environment = LineageEnvironmentSerializer(required=False, allow_null=True)
    run = LineageRunSerializer(required=False, allow_null=True)
    parents = LineageParentSerializer(many=True, required=False, default=list, max_length=50)
    extra = serializers.DictField(required=False, default=dict, help_text="Anything else worth keeping.")


class AmendmentInputSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=5000)
    changes = serializers.DictField(help_text="The corrected parts of the document.")


class OSVRangeEventSerializer(serializers.Serializer):
    introduced = serializers.CharField(max_length=100, required=False)
    fixed = serializers.CharField(max_length=100, required=False)
    last_affected = serializers.CharField(max_length=100, required=False)
    limit = serializers.CharField(max_length=100, required=False)

    def validate(self, attrs):
        if len(attrs) != 1:
            raise serializers.ValidationError(
                "Each event has exactly one of introduced, fixed, last_affected, limit."
            )
        return attrs


class OSVRangeSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["ECOSYSTEM", "SEMVER", "GIT"])
    events = OSVRangeEventSerializer(many=True, allow_empty=False)


class OSVPackageSerializer(serializers.Serializer):
    ecosystem = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=200)


class OSVAffectedSerializer(serializers.Serializer):
    package = OSVPackageSerializer()
    ranges = OSVRangeSerializer(many=True, required=False)
    versions = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=5000
    )


class OSVRecordSerializer(serializers.Serializer):
    """An OSV record (https://ossf.github.io/osv-schema/); unknown keys are kept as they are."""

    id = serializers.RegexField(r"^[A-Za-z0-9._:-]{3,100}$")
    summary = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    details = serializers.CharField(required=False, allow_blank=True, max_length=50_000)
    aliases = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    published = serializers.DateTimeField(required=False)
    modified = serializers.DateTimeField(required=False)
    affected = OSVAffectedSerializer(many=True, allow_empty=False)
