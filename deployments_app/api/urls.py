"""Routes of the deployments API under /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from deployments_app.api import views

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("deployments/<int:pk>/predict", views.DeploymentPredictView.as_view(), name="deployment_predict"),
    *router.urls,
]
