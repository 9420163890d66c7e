"""Routes of the lineage pages."""

from django.urls import path

from lineage_app import views

urlpatterns = [
    path("lineage/exposure/", views.exposure, name="lineage_exposure_page"),
    path("lineage/commits/", views.commits, name="lineage_commits_page"),
    path("lineage/advisories/", views.advisories, name="lineage_advisories_page"),
    path("models/<str:name>/compare/", views.compare, name="version_compare_page"),
]
