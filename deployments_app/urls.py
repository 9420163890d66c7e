"""Routes of the deployment pages."""

from django.urls import path, re_path

from deployments_app import views

urlpatterns = [
    path("deployments/", views.deployment_list, name="deployment_list"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment_detail"),
    re_path(
        r"^deployments/(?P<pk>\d+)/(?P<verb>stop|start|redeploy|delete)/$",
        views.deployment_action,
        name="deployment_action",
    ),
]
