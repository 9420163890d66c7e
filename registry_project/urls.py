"""Top-level routes: UI, admin, REST API, API docs and health probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from registry_project import health, observability, views

api_v1 = [
    path("", include("models_app.api.urls")),
    path("", include("lineage_app.api.urls")),
    path("", include("deployments_app.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", observability.metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("", include("deployments_app.serve_urls")),
    path("", include("deployments_app.urls")),
    path("", include("lineage_app.urls")),
    path("", include("models_app.urls")),
]

handler404 = views.not_found
handler500 = views.server_error
