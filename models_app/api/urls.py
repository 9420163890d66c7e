"""Routes of the catalog API under /api/v1/."""

from django.urls import path, register_converter
from rest_framework.routers import SimpleRouter

from models_app.api import views
from models_app.validators import MODEL_NAME_RE


class ModelNameConverter:
    regex = MODEL_NAME_RE

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ModelNameConverter, "modelname")

router = SimpleRouter()
router.register("models", views.RegisteredModelViewSet, basename="registeredmodel")
router.register("tokens", views.AccessTokenViewSet, basename="accesstoken")

version_list = views.ModelVersionViewSet.as_view({"get": "list", "post": "create"})
version_detail = views.ModelVersionViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    *router.urls,
    path("models/<modelname:name>/tags/<path:key>", views.ModelTagView.as_view(), name="modeltag_detail"),
    path("models/<modelname:name>/aliases/", views.ModelAliasListView.as_view(), name="modelalias_list"),
    path("models/<modelname:name>/aliases/<str:alias>", views.ModelAliasView.as_view(), name="modelalias_detail"),
    path("models/<modelname:name>/versions/", version_list, name="modelversion_list"),
    path("models/<modelname:name>/versions/<int:version>/", version_detail, name="modelversion_detail"),
    path(
        "models/<modelname:name>/versions/<int:version>/tags/<path:key>",
        views.VersionTagView.as_view(),
        name="versiontag_detail",
    ),
]
