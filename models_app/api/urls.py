"""Routes of the catalog API under /api/v1/."""

from django.urls import path, register_converter
from rest_framework.routers import SimpleRouter

from models_app.api import file_views, governance, views, webhooks
from models_app.validators import MODEL_NAME_RE


class ModelNameConverter:
    regex = MODEL_NAME_RE

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ModelNameConverter, "modelname")

router = SimpleRouter()
router.trailing_slash = "/?"  # both /promotions/1/approve (as documented) and .../approve/ work
router.register("models", views.RegisteredModelViewSet, basename="registeredmodel")
router.register("tokens", views.AccessTokenViewSet, basename="accesstoken")
router.register("promotions", governance.PromotionViewSet, basename="promotion")
router.register("audit", governance.AuditEventViewSet, basename="auditevent")
router.register("teams", governance.TeamViewSet, basename="team")
router.register("webhooks", webhooks.WebhookViewSet, basename="webhook")

version_list = views.ModelVersionViewSet.as_view({"get": "list", "post": "create"})
version_detail = views.ModelVersionViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

V = "models/<modelname:name>/versions/<int:version>"
A = "models/<modelname:name>/aliases/<str:alias>"

urlpatterns = [
    *router.urls,
    path("models/<modelname:name>/tags/<path:key>", views.ModelTagView.as_view(), name="modeltag_detail"),
    path("models/<modelname:name>/aliases/", views.ModelAliasListView.as_view(), name="modelalias_list"),
    path(
        "models/<modelname:name>/aliases/<str:alias>",
        views.ModelAliasView.as_view(),
        name="modelalias_detail",
    ),
    path("models/<modelname:name>/versions/", version_list, name="modelversion_list"),
    path("models/<modelname:name>/versions/<int:version>/", version_detail, name="modelversion_detail"),
    path(f"{V}/tags/<path:key>", views.VersionTagView.as_view(), name="versiontag_detail"),
    # Files, by version number…
    path(f"{V}/files/", file_views.VersionFileListView.as_view(), name="versionfile_list"),
    path(
        f"{V}/files/<path:path>/multipart",
        file_views.VersionFileMultipartView.as_view(),
        name="versionfile_multipart",
    ),
    path(f"{V}/files/<path:path>", file_views.VersionFileView.as_view(), name="versionfile_detail"),
    path(f"{V}/finalize", file_views.VersionFinalizeView.as_view(), name="modelversion_finalize"),
    path(f"{V}/archive", file_views.VersionArchiveView.as_view(), name="modelversion_archive"),
    # …and by alias (read-only).
    path(
        f"{A}/files/",
        file_views.VersionFileListView.as_view(http_method_names=["get", "head", "options"]),
        name="aliasfile_list",
    ),
    path(
        f"{A}/files/<path:path>",
        file_views.VersionFileView.as_view(http_method_names=["get", "head", "options"]),
        name="aliasfile_detail",
    ),
    path(f"{A}/archive", file_views.VersionArchiveView.as_view(), name="alias_archive"),
    # Governance.
    path(f"{V}/checks", governance.VersionCheckView.as_view(), name="modelversion_checks"),
    path(f"{V}/promotions", governance.VersionPromotionView.as_view(), name="modelversion_promotions"),
    path(
        "models/<modelname:name>/policy", governance.ModelPolicyView.as_view(), name="promotionpolicy_detail"
    ),
    path(
        "models/<modelname:name>/alias-history/",
        governance.AliasHistoryView.as_view(),
        name="aliashistory_list",
    ),
    path("teams/<str:team>/members/<str:username>", governance.TeamMemberView.as_view(), name="team_member"),
    # Resumable uploads in parts.
    path("uploads/<uuid:upload_id>", file_views.UploadSessionView.as_view(), name="uploadsession_detail"),
    path(
        "uploads/<uuid:upload_id>/parts/<int:part_number>",
        file_views.UploadPartView.as_view(),
        name="uploadsession_part",
    ),
    path(
        "uploads/<uuid:upload_id>/complete",
        file_views.UploadCompleteView.as_view(),
        name="uploadsession_complete",
    ),
]
