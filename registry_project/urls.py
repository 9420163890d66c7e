"""Top-level routes: UI, admin, REST API, API docs and health probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from models_app.mlflow import urls as mlflow_urls
from models_app.mlflow import views_tracking as mlflow_views
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
    # The MLflow-compatible API (docs/mlflow.md): the stock mlflow client works against it.
    path("api/2.0/mlflow/", include(mlflow_urls.tracking_patterns)),
    path("ajax-api/2.0/mlflow/", include(mlflow_urls.tracking_patterns)),
    path("api/3.0/mlflow/", include(mlflow_urls.tracking_patterns)),
    path("api/2.0/mlflow-artifacts/", include(mlflow_urls.artifact_patterns)),
    path("health", mlflow_views.health),
    path("version", mlflow_views.version),
    path("admin/", admin.site.urls),
    path("", include("deployments_app.serve_urls")),
    path("", include("deployments_app.urls")),
    path("", include("lineage_app.urls")),
    path("", include("models_app.urls")),
]

handler404 = views.not_found
handler500 = views.server_error
