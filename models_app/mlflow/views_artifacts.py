"""The ``mlflow-artifacts`` proxy: PUT/GET/list under ``/api/2.0/mlflow-artifacts/artifacts/``.

Uploads are streamed into the content-addressed store (hashed on the way, never held in
memory) and recorded against the run or logged model whose artifact root holds the path;
downloads stream from the store. ``_registry/<model>/<version>/…`` serves a model version's own
files (what ``get-download-uri`` hands out), scoped by the catalog selectors. Multipart and
presigned endpoints answer 501 ``NOT_IMPLEMENTED``, which the client treats as "use plain PUT".
"""

from __future__ import annotations

import mimetypes
import posixpath
from urllib.parse import quote

from django.http import StreamingHttpResponse

from lineage_app import selectors_mlflow as sel
from lineage_app import services_mlflow as svc
from lineage_app.models import MlflowArtifact
from models_app import artifacts, selectors
from models_app.mlflow.errors import NOT_IMPLEMENTED, MlflowError, invalid, not_found
from models_app.mlflow.rpc import endpoint
from models_app.mlflow.views_registry import REGISTRY_ROOT
from models_app.models import ModelVersion, RegisteredModel, VersionFile


def _clean(path: str, *, allow_root: bool = False) -> str:
    path = (path or "").strip("/")
    if not path:
        if allow_root:
            return ""
        raise invalid("Invalid path: give the artifact's path.")
    if ".." in path.split("/") or "\\" in path:
        raise invalid("Invalid path")
    return path


def _registry_version(user, path: str) -> tuple[ModelVersion, str] | None:
    """``_registry/<model>/<version>[/<file>]`` → the visible version and the file path in it."""
    parts = path.split("/", 3)
    if parts[0] != REGISTRY_ROOT:
        return None
    if len(parts) < 3 or not parts[2].isdigit():
        raise not_found(f"No such artifact: '{path}'")
    try:
        model = selectors.registered_model_get(user=user, name=parts[1])
        version = selectors.model_version_get(user=user, model=model, version=int(parts[2]))
    except (RegisteredModel.DoesNotExist, ModelVersion.DoesNotExist) as exc:
        raise not_found(f"No such artifact: '{path}'") from exc
    return version, parts[3] if len(parts) == 4 else ""


def _files_under(user, path: str) -> list[tuple[str, int]]:
    """``(path relative to ``path``, size)`` of every file below the directory ``path``."""
    registry = _registry_version(user, path) if path else None
    if registry is not None:
        version, inner = registry
        files = VersionFile.objects.filter(version=version).select_related("blob")
        if inner:
            files = files.filter(path__startswith=inner + "/")
        cut = len(inner) + 1 if inner else 0
        return [(f.path[cut:], f.blob.size) for f in files]
    cut = len(path) + 1 if path else 0
    return [(a.path[cut:], a.blob.size) for a in sel.artifact_list(user=user, prefix=path)]


def _listing(user, path: str) -> dict:
    entries: dict[str, dict] = {}
    for rel, size in _files_under(user, path):
        head, sep, _rest = rel.partition("/")
        if sep:
            entries.setdefault(head, {"path": head, "is_dir": True})
        else:
            entries[head] = {"path": head, "is_dir": False, "file_size": size}
    return {"files": sorted(entries.values(), key=lambda e: e["path"])} if entries else {}


def _download(user, path: str) -> StreamingHttpResponse:
    registry = _registry_version(user, path)
    if registry is not None:
        version, inner = registry
        item = VersionFile.objects.filter(version=version, path=inner).select_related("blob").first()
    else:
        item = sel.artifact_list(user=user, prefix=posixpath.dirname(path)).filter(path=path).first()
    if item is None:
        raise not_found(f"No such artifact: '{path}'")
    blob = item.blob
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    response = StreamingHttpResponse(artifacts.get_store().iter_bytes(blob.sha256), content_type=content_type)
    response["Content-Length"] = str(blob.size)
    response["ETag"] = f'"{blob.sha256}"'
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(posixpath.basename(path))}"
    return response


@endpoint("GET", write=False)
def artifact_list(request, params):
    return _listing(request.user, _clean(params.str("path"), allow_root=True))


@endpoint("GET", "PUT", "DELETE", parse=False)
def artifact(request, params, path: str):
    path = _clean(path)
    if request.method == "GET":
        return _download(request.user, path)
    if path.split("/", 1)[0] == REGISTRY_ROOT:
        raise invalid("Model version files are written through the registry, not the artifact proxy.")
    if request.method == "DELETE":
        raise MlflowError(
            "Deleting artifacts is not supported: files may back model versions.", NOT_IMPLEMENTED
        )
    if request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        stream, size = request.META["wsgi.input"], None
    else:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        if not raw.isdigit():
            raise invalid("Content-Length is not a number.")
        stream, size = request, int(raw)
    try:
        svc.artifact_put(actor=request.user, path=path, stream=stream, size=size)
    except MlflowArtifact.DoesNotExist as exc:
        raise not_found(str(exc)) from exc
    return {}


@endpoint("POST", "GET", parse=False)
def not_enabled(request, params, path: str = ""):
    raise MlflowError(
        "Multipart and presigned artifact transfers are not enabled on this server: use plain PUT/GET.",
        NOT_IMPLEMENTED,
    )
