"""Files of a version over HTTP: streamed uploads, resumable parts, ranged downloads, archives.

Request and response bodies are streamed: no file is ever held whole in memory.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from models_app import artifacts, selectors, services
from models_app.api.views import ModelLookupMixin
from models_app.choices import UsageKind
from models_app.models import ModelVersion, UploadSession, VersionFile
from registry_project.api import StrictSerializer

_CHANGE = "models_app.change_modelversion"
_FILE_METHODS = {
    "GET": "models_app.view_modelversion",
    "HEAD": "models_app.view_modelversion",
    "PUT": _CHANGE,
    "POST": _CHANGE,
    "DELETE": _CHANGE,
}


class VersionFileSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob_id", read_only=True)
    size = serializers.IntegerField(source="blob.size", read_only=True)

    class Meta:
        model = VersionFile
        fields = ["path", "size", "sha256"]
        read_only_fields = fields


class FileRefSerializer(StrictSerializer):
    path = serializers.CharField(max_length=artifacts.MAX_PATH_LENGTH)
    sha256 = serializers.CharField(max_length=71)


class AttachInputSerializer(StrictSerializer):
    files = FileRefSerializer(many=True, allow_empty=False, max_length=10_000)


class UploadBeginInputSerializer(StrictSerializer):
    size = serializers.IntegerField(min_value=0)
    sha256 = serializers.CharField(max_length=71)
    part_size = serializers.IntegerField(min_value=1, required=False)


def request_body_stream(request: Request) -> tuple[object, int | None]:
    """The raw request body as a stream, and its announced length (None when chunked)."""
    django_request = request._request
    if django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return django_request.META["wsgi.input"], None  # the server has de-chunked it
    raw_length = django_request.META.get("CONTENT_LENGTH")
    if raw_length in (None, ""):
        return django_request, 0  # RFC 9112: no Content-Length and no chunking means no body
    try:
        length = int(raw_length)
    except ValueError as exc:
        raise ValidationError({"Content-Length": ["Not a number."]}) from exc
    return django_request, length


class VersionLookupMixin(ModelLookupMixin):
    """Finds the version by ``{version}`` or by ``{alias}`` in the URL."""

    def get_version(self) -> ModelVersion:
        if "alias" in self.kwargs:
            alias = get_object_or_404(
                selectors.model_alias_list(model=self.get_model()), alias=self.kwargs["alias"]
            )
            return selectors.model_version_list(user=self.request.user).get(pk=alias.version_id)
        return super().get_version()


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """``(start, end)`` for one satisfiable range, ``None`` to send everything, ``False`` if unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # multiple or malformed ranges: RFC 9110 lets us ignore Range
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        return False
    return start, end


def file_download_response(request: Request, item: VersionFile) -> HttpResponse:
    """Stream one file with ETag (its SHA-256) and HTTP Range; on S3 optionally redirect."""
    sha256, size = item.blob_id, item.blob.size
    etag = f'"{sha256}"'
    store = artifacts.get_store()
    filename = item.path.rsplit("/", 1)[-1]
    if request.headers.get("If-None-Match") in (etag, f"W/{etag}"):
        response = HttpResponse(status=304)
        response["ETag"] = etag
        return response
    redirect = request.query_params.get("redirect", "true").lower() not in ("0", "false", "no")
    if redirect and settings.MODELYARD_S3_DOWNLOAD_REDIRECT and request.method == "GET":
        url = store.download_url(sha256, filename)
        if url:
            return HttpResponseRedirect(url)
    start, end = 0, size - 1
    status_code = 200
    if "Range" in request.headers and size > 0:
        parsed = _parse_range(request.headers["Range"], size)
        if parsed is False:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        if parsed:
            start, end = parsed
            status_code = 206
    if request.method == "HEAD" or size == 0:
        response = HttpResponse(status=status_code)
    else:
        response = StreamingHttpResponse(store.iter_bytes(sha256, start, end), status=status_code)
    response["Content-Type"] = "application/octet-stream"
    response["Content-Length"] = str(end - start + 1 if size else 0)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["X-Content-SHA256"] = sha256
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    response["Last-Modified"] = http_date(item.created_at.timestamp())
    if status_code == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


class VersionFileListView(VersionLookupMixin, GenericAPIView):
    """``GET`` the file tree of a version; ``POST`` attaches content the registry already holds."""

    queryset = VersionFile.objects.none()  # for the schema; reads go through get_version()
    serializer_class = VersionFileSerializer
    method_permissions = _FILE_METHODS
    pagination_class = None  # the whole tree, as a plain list

    @extend_schema(responses=VersionFileSerializer(many=True))
    def get(self, request: Request, **kwargs) -> Response:
        files = self.get_version().files.select_related("blob").order_by("path")
        return Response(VersionFileSerializer(files, many=True).data)

    @extend_schema(
        request=AttachInputSerializer,
        responses=inline_serializer(
            "AttachResult",
            {"attached": VersionFileSerializer(many=True), "missing": FileRefSerializer(many=True)},
        ),
    )
    def post(self, request: Request, **kwargs) -> Response:
        serializer = AttachInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.version_files_attach(
            actor=request.user, version=self.get_version(), files=serializer.validated_data["files"]
        )
        return Response(result)


class VersionFileView(VersionLookupMixin, GenericAPIView):
    """One file: ``GET``/``HEAD`` download (Range, ETag), ``PUT`` uploads the raw body, ``DELETE`` removes."""

    serializer_class = VersionFileSerializer
    method_permissions = _FILE_METHODS

    def _file(self) -> VersionFile:
        return get_object_or_404(self.get_version().files.select_related("blob"), path=self.kwargs["path"])

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            206: OpenApiTypes.BINARY,
            302: None,
        },
        parameters=[
            OpenApiParameter("redirect", bool, description="On S3, redirect to a presigned URL (default).")
        ],
    )
    def get(self, request: Request, **kwargs) -> HttpResponse:
        item = self._file()
        response = file_download_response(request, item)
        if response.status_code in (200, 302) and "Range" not in request.headers:
            # A whole download (streamed or redirected); resumed ranges and 304s are not new uses.
            services.usage_record(model=item.version.model_id, kind=UsageKind.DOWNLOAD)
        return response

    def head(self, request: Request, **kwargs) -> HttpResponse:
        return file_download_response(request, self._file())

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: VersionFileSerializer},
        parameters=[
            OpenApiParameter("X-Content-SHA256", str, OpenApiParameter.HEADER, description="Expected digest.")
        ],
    )
    def put(self, request: Request, **kwargs) -> Response:
        version = self.get_version()
        stream, length = request_body_stream(request)
        try:
            item = services.version_file_upload(
                actor=request.user,
                version=version,
                path=self.kwargs["path"],
                stream=stream,
                size=length,
                expected_sha256=request.headers.get("X-Content-SHA256"),
            )
        except artifacts.IncompleteUpload as exc:
            raise ValidationError({"body": [f"The upload was cut short ({exc}); nothing was kept."]}) from exc
        return Response(VersionFileSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, **kwargs) -> Response:
        services.version_file_delete(actor=request.user, version=self.get_version(), path=self.kwargs["path"])
        return Response(status=status.HTTP_204_NO_CONTENT)


def upload_session_body(request: Request, session: UploadSession) -> dict:
    """The state of an upload and where to send each part not uploaded yet."""
    store = artifacts.get_store()
    done = store.parts_list(session.staging_key, session.backend_upload_id) if session.state == "open" else []
    have = {p["part_number"] for p in done}
    parts = []
    for number in range(1, session.part_count + 1):
        if number in have:
            continue
        url = store.part_url(session.staging_key, session.backend_upload_id, number)
        if url is None:
            url = request.build_absolute_uri(reverse("uploadsession_part", args=[session.id, number]))
        parts.append({"part_number": number, "url": url})
    return {
        "upload_id": str(session.id),
        "path": session.path,
        "size": session.size,
        "sha256": session.sha256,
        "part_size": session.part_size,
        "part_count": session.part_count,
        "state": session.state,
        # "s3": PUT parts to the presigned URLs without credentials; "registry": with your token.
        "target": "s3" if session.backend == "s3" else "registry",
        "expires_at": session.expires_at,
        "uploaded_parts": done,
        "parts": parts,
        "complete_url": request.build_absolute_uri(reverse("uploadsession_complete", args=[session.id])),
    }


class VersionFileMultipartView(VersionLookupMixin, GenericAPIView):
    """``POST .../files/{path}/multipart`` opens a resumable upload in parts.

    Other methods on this URL mean a file whose name ends in ``/multipart``.
    """

    serializer_class = UploadBeginInputSerializer
    method_permissions = _FILE_METHODS

    @extend_schema(request=UploadBeginInputSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, **kwargs) -> Response:
        serializer = UploadBeginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        session = services.upload_session_begin(
            actor=request.user,
            version=self.get_version(),
            path=self.kwargs["path"],
            size=data["size"],
            sha256=data["sha256"],
            part_size=data.get("part_size"),
        )
        return Response(upload_session_body(request, session), status=status.HTTP_201_CREATED)

    def _as_file_view(self, request: Request) -> HttpResponse:
        view = VersionFileView()
        view.request, view.args = request, self.args
        view.kwargs = {**self.kwargs, "path": f"{self.kwargs['path']}/multipart"}
        view.format_kwarg = None
        return getattr(view, request.method.lower())(request, **view.kwargs)

    @extend_schema(exclude=True)
    def get(self, request: Request, **kwargs) -> HttpResponse:
        return self._as_file_view(request)

    @extend_schema(exclude=True)
    def put(self, request: Request, **kwargs) -> HttpResponse:
        return self._as_file_view(request)

    @extend_schema(exclude=True)
    def delete(self, request: Request, **kwargs) -> HttpResponse:
        return self._as_file_view(request)


class UploadSessionMixin:
    def get_session(self) -> UploadSession:
        visible = selectors.model_version_list(user=self.request.user).values("pk")
        return get_object_or_404(
            UploadSession.objects.select_related("version__model").filter(version__in=visible),
            pk=self.kwargs["upload_id"],
        )


class UploadSessionView(UploadSessionMixin, GenericAPIView):
    """``GET`` an upload's state and the parts still to send (to resume); ``DELETE`` aborts it."""

    method_permissions = _FILE_METHODS
    serializer_class = UploadBeginInputSerializer

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, upload_id) -> Response:
        return Response(upload_session_body(request, self.get_session()))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, upload_id) -> Response:
        services.upload_session_abort(actor=request.user, session=self.get_session())
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadPartView(UploadSessionMixin, GenericAPIView):
    """``PUT`` one part's raw bytes (folder storage; on S3 parts go to presigned URLs)."""

    method_permissions = _FILE_METHODS
    serializer_class = UploadBeginInputSerializer

    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY}, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, upload_id, part_number: int) -> Response:
        stream, length = request_body_stream(request)
        try:
            result = services.upload_session_part_write(
                actor=request.user,
                session=self.get_session(),
                part_number=part_number,
                stream=stream,
                size=length,
            )
        except artifacts.IncompleteUpload as exc:
            raise ValidationError({"body": [f"The part was cut short ({exc}); send it again."]}) from exc
        return Response(result)


class UploadCompleteView(UploadSessionMixin, GenericAPIView):
    """``POST`` when every part is sent: size and SHA-256 are checked before the file is added."""

    method_permissions = _FILE_METHODS
    serializer_class = VersionFileSerializer

    @extend_schema(request=None, responses={201: VersionFileSerializer})
    def post(self, request: Request, upload_id) -> Response:
        item = services.upload_session_complete(actor=request.user, session=self.get_session())
        return Response(VersionFileSerializer(item).data, status=status.HTTP_201_CREATED)


class VersionFinalizeView(VersionLookupMixin, GenericAPIView):
    """``POST`` verifies every file, records the manifest digest and makes the version READY."""

    method_permissions = _FILE_METHODS

    def get_serializer_class(self):
        from models_app.api.serializers import ModelVersionSerializer

        return ModelVersionSerializer

    @extend_schema(request=None)
    def post(self, request: Request, **kwargs) -> Response:
        version = services.model_version_finalize(actor=request.user, version=self.get_version())
        fresh = selectors.model_version_list(user=request.user).get(pk=version.pk)
        return Response(self.get_serializer(fresh).data)


class VersionArchiveView(VersionLookupMixin, GenericAPIView):
    """``GET`` the whole file tree as a tar, streamed as it is read from the store."""

    method_permissions = _FILE_METHODS
    serializer_class = VersionFileSerializer

    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY})
    def get(self, request: Request, **kwargs) -> HttpResponse:
        version = self.get_version()
        files = list(version.files.select_related("blob").order_by("path"))
        store = artifacts.get_store()
        entries = (
            (f.path, f.blob.size, f.created_at.timestamp(), store.iter_bytes(f.blob_id)) for f in files
        )
        response = StreamingHttpResponse(artifacts.stream_tar(entries), content_type="application/x-tar")
        services.usage_record(model=version.model_id, kind=UsageKind.DOWNLOAD)
        name = f"{version.model.name}-v{version.version}.tar"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        if version.manifest_digest:
            response["X-Manifest-Digest"] = version.manifest_digest
        return response
