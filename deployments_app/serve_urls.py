"""``/serve/{deployment}/...``: the inference proxy under the runtime's own paths."""

from django.urls import path

from deployments_app.api.views import ServeView

urlpatterns = [
    path("serve/<str:name>/<path:rest>", ServeView.as_view(), name="deployment_serve"),
]
