"""Lineage API: the provenance document of a version and the three questions."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from deployments_app.selectors import deployments_of_versions
from lineage_app import selectors, services
from lineage_app.api.serializers import (
    AmendmentInputSerializer,
    LineageDocumentSerializer,
    OSVRecordSerializer,
)
from lineage_app.models import Advisory, TrainingRun
from models_app import selectors as catalog
from models_app.api.file_views import VersionLookupMixin
from models_app.api.views import ModelLookupMixin
from models_app.choices import Stage

_READ = {"GET": "models_app.view_modelversion"}


class VersionLineageView(VersionLookupMixin, GenericAPIView):
    """``GET`` the provenance of a version; ``PUT`` replaces it while the version is PENDING."""

    queryset = TrainingRun.objects.none()
    serializer_class = LineageDocumentSerializer
    method_permissions = {**_READ, "PUT": "models_app.change_modelversion"}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, **kwargs) -> Response:
        version = self.get_version()
        document = services.lineage_document(version=version)
        document["amendments"] = [
            {
                "reason": a.reason,
                "changes": a.changes,
                "by": a.actor.username if a.actor else None,
                "at": a.created_at,
            }
            for a in version.lineage_amendments.select_related("actor")
        ]
        return Response(document)

    @extend_schema(request=LineageDocumentSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, **kwargs) -> Response:
        version = self.get_version()
        serializer = LineageDocumentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = serializer.validated_data
        visible = catalog.model_version_list(user=request.user)
        problems = {}
        for i, parent in enumerate(document.get("parents", [])):
            found = visible.filter(model__name__iexact=parent["model"], version=parent["version"]).first()
            if found is None:
                problems[str(i)] = [
                    f"No version {parent['version']} of '{parent['model']}' that you can see."
                ]
            elif found.pk == version.pk:
                problems[str(i)] = ["A version cannot be its own parent."]
            parent["version_obj"] = found
        if problems:
            raise ValidationError({"parents": problems})
        services.lineage_set(actor=request.user, version=version, document=document)
        return Response(services.lineage_document(version=version))


class LineageAmendmentView(VersionLookupMixin, GenericAPIView):
    """``POST`` a correction to a frozen version's provenance (appended and audited)."""

    queryset = TrainingRun.objects.none()
    serializer_class = AmendmentInputSerializer
    method_permissions = {"POST": "models_app.change_modelversion"}

    @extend_schema(request=AmendmentInputSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, **kwargs) -> Response:
        serializer = AmendmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        amendment = services.lineage_amend(
            actor=request.user, version=self.get_version(), **serializer.validated_data
        )
        return Response(
            {"reason": amendment.reason, "changes": amendment.changes, "at": amendment.created_at},
            status=status.HTTP_201_CREATED,
        )


class VersionCompareView(ModelLookupMixin, GenericAPIView):
    """``?a=3&b=4`` (``&model_b=other`` to compare across models): what changed and what moved."""

    queryset = TrainingRun.objects.none()
    serializer_class = serializers.Serializer
    method_permissions = _READ

    @extend_schema(
        parameters=[
            OpenApiParameter("a", int, required=True),
            OpenApiParameter("b", int, required=True),
            OpenApiParameter("model_b", str, description="The model of b, when not the same."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, name: str) -> Response:
        numbers = {}
        for key in ("a", "b"):
            raw = request.query_params.get(key, "")
            if not raw.isdigit():
                raise ValidationError({key: ["Give a version number."]})
            numbers[key] = int(raw)
        visible = catalog.model_version_list(user=request.user)
        a = get_object_or_404(visible, model=self.get_model(), version=numbers["a"])
        model_b = request.query_params.get("model_b") or self.get_model().name
        b = get_object_or_404(visible, model__name__iexact=model_b, version=numbers["b"])
        return Response(selectors.compare(a=a, b=b))


class ExposureView(GenericAPIView):
    """``?package=tensorflow&specifier=<2.11.1&stage=production``: which versions were built with it?"""

    queryset = TrainingRun.objects.none()
    serializer_class = serializers.Serializer
    method_permissions = {"GET": None}

    @extend_schema(
        parameters=[
            OpenApiParameter("package", str, required=True),
            OpenApiParameter("specifier", str, required=True, description="PEP 440, e.g. <2.11.1"),
            OpenApiParameter("stage", str, enum=Stage.values),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        package = request.query_params.get("package", "").strip()
        if not package:
            raise ValidationError({"package": ["Name the package."]})
        stage = request.query_params.get("stage") or None
        if stage and stage not in Stage.values:
            raise ValidationError({"stage": [f"Use one of: {', '.join(Stage.values)}."]})
        rows = selectors.exposure(
            user=request.user,
            package=package,
            specifier=request.query_params.get("specifier", ""),
            stage=stage,
        )
        return Response({"package": package, "count": len(rows), "versions": rows})


class AdvisoryListView(GenericAPIView):
    """``POST`` OSV records (one or a list, as osv.dev and pip-audit export them); ``GET`` lists them."""

    queryset = Advisory.objects.none()
    serializer_class = OSVRecordSerializer
    method_permissions = {"GET": None, "POST": "models_app.add_check"}
    pagination_class = None  # the newest 500, as a plain list

    @extend_schema(
        responses=inline_serializer(
            "AdvisorySummary",
            {
                "id": serializers.CharField(),
                "summary": serializers.CharField(),
                "aliases": serializers.ListField(child=serializers.CharField()),
                "packages": serializers.ListField(child=serializers.CharField()),
                "modified": serializers.DateTimeField(allow_null=True),
            },
            many=True,
        )
    )
    def get(self, request: Request) -> Response:
        items = Advisory.objects.prefetch_related("packages")[:500]
        return Response(
            [
                {
                    "id": a.osv_id,
                    "summary": a.summary,
                    "aliases": a.aliases,
                    "packages": [p.name for p in a.packages.all()],
                    "modified": a.modified,
                }
                for a in items
            ]
        )

    @extend_schema(request=OSVRecordSerializer(many=True), responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        data = request.data
        if isinstance(data, dict) and isinstance(data.get("vulns"), list):  # osv.dev query answers
            data = data["vulns"]
        records = data if isinstance(data, list) else [data]
        if not records or len(records) > 1000:
            raise ValidationError({"records": ["Send 1 to 1,000 OSV records."]})
        serializer = OSVRecordSerializer(data=records, many=True)
        serializer.is_valid(raise_exception=True)
        # Keep the whole record (unknown keys too), now that its shape is known to be sound.
        advisories = services.advisory_import(actor=request.user, records=records)
        return Response({"imported": [a.osv_id for a in advisories]}, status=status.HTTP_201_CREATED)


class AdvisoryAffectedView(GenericAPIView):
    """The versions an advisory affects, with stage and aliases."""

    queryset = Advisory.objects.none()
    serializer_class = serializers.Serializer
    method_permissions = {"GET": None}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, osv_id: str) -> Response:
        advisory = get_object_or_404(Advisory, osv_id=osv_id)
        affected = services.affected_version_ids(advisory=advisory)
        versions = list(
            catalog.model_version_list(user=request.user)
            .filter(pk__in=affected)
            .prefetch_related("aliases")
            .order_by("model__name", "-version")
        )
        deployments = deployments_of_versions(user=request.user, version_ids=[v.pk for v in versions])
        return Response(
            {
                "id": advisory.osv_id,
                "summary": advisory.summary,
                "versions": [
                    {
                        "model": v.model.name,
                        "version": v.version,
                        "stage": v.stage,
                        "packages": affected[v.pk],
                        "aliases": sorted(a.alias for a in v.aliases.all()),
                        "deployments": deployments.get(v.pk, []),
                    }
                    for v in versions
                ],
            }
        )


class CommitContainmentView(GenericAPIView):
    """``/lineage/commits/{sha}?model=churn``: was this commit in the code each version was trained from?"""

    queryset = TrainingRun.objects.none()
    serializer_class = serializers.Serializer
    method_permissions = {"GET": None}

    @extend_schema(parameters=[OpenApiParameter("model", str)], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, sha: str) -> Response:
        return Response(
            selectors.containment(user=request.user, sha=sha, model_name=request.query_params.get("model"))
        )


class LineageGraphView(GenericAPIView):
    """``?model=&version=&depth=``: nodes and edges around a version."""

    queryset = TrainingRun.objects.none()
    serializer_class = serializers.Serializer
    method_permissions = {"GET": None}

    @extend_schema(
        parameters=[
            OpenApiParameter("model", str, required=True),
            OpenApiParameter("version", int, required=True),
            OpenApiParameter("depth", int),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        raw_version, raw_depth = (
            request.query_params.get("version", ""),
            request.query_params.get("depth", "1"),
        )
        if not raw_version.isdigit():
            raise ValidationError({"version": ["Give a version number."]})
        if not raw_depth.isdigit() or not 0 <= int(raw_depth) <= 5:
            raise ValidationError({"depth": ["Give a depth from 0 to 5."]})
        version = get_object_or_404(
            catalog.model_version_list(user=request.user),
            model__name__iexact=request.query_params.get("model", ""),
            version=int(raw_version),
        )
        return Response(selectors.graph(user=request.user, version=version, depth=int(raw_depth)))
