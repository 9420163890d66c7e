"""Routes of the lineage API (under /api/v1/)."""

from django.urls import path

from lineage_app.api import views

V = "models/<modelname:name>/versions/<int:version>"

urlpatterns = [
    path(f"{V}/lineage", views.VersionLineageView.as_view(), name="version_lineage"),
    path(f"{V}/lineage/amendments", views.LineageAmendmentView.as_view(), name="lineage_amendments"),
    path(
        "models/<modelname:name>/versions/compare", views.VersionCompareView.as_view(), name="version_compare"
    ),
    path("lineage/exposure", views.ExposureView.as_view(), name="lineage_exposure"),
    path("lineage/advisories", views.AdvisoryListView.as_view(), name="advisory_list"),
    path(
        "lineage/advisories/<str:osv_id>/affected",
        views.AdvisoryAffectedView.as_view(),
        name="advisory_affected",
    ),
    path("lineage/commits/<str:sha>", views.CommitContainmentView.as_view(), name="lineage_commit"),
    path("lineage/graph", views.LineageGraphView.as_view(), name="lineage_graph"),
]
