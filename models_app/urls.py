"""Routes of the catalog UI."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from models_app import views
from models_app.signin import SignInView

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("models/<str:name>/", views.registeredmodel_detail, name="registeredmodel_detail"),
    path("models/<str:name>/versions/<int:version>/", views.modelversion_detail, name="modelversion_detail"),
    path("models/<str:name>/policy/", views.promotionpolicy_edit, name="promotionpolicy_edit"),
    path("models/<str:name>/card/", views.registeredmodel_card_edit, name="registeredmodel_card_edit"),
    path("promotions/", views.promotion_queue, name="promotion_list"),
    re_path(
        r"^promotions/(?P<pk>\d+)/(?P<decision>approve|reject)/$",
        views.promotion_decide,
        name="promotion_decide",
    ),
    path("teams/", views.team_list, name="team_list"),
    path("tokens/", views.accesstoken_list, name="accesstoken_list"),
    path("tokens/<int:pk>/revoke/", views.accesstoken_revoke, name="accesstoken_revoke"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    re_path(r"^webhooks/(?P<pk>\d+)/(?P<action>delete|ping)/$", views.webhook_action, name="webhook_action"),
    path(
        "webhooks/<int:pk>/deliveries/<uuid:delivery_id>/redeliver/",
        views.webhook_redeliver,
        name="webhook_redeliver",
    ),
]
