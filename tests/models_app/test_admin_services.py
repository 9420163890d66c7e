"""Django admin writes go through the services: permission checks, audit records and events."""

from __future__ import annotations

import pytest
from django.test import Client

from models_app import services
from models_app.models import AuditEvent, ModelAlias, ModelTag, RegisteredModel, TeamMembership


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _inline_management(prefix: str, total: int = 0, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def test_registering_a_model_in_admin_uses_the_service(admin_client_, team):
    data = {"name": "churn", "description": "d", "team": team.pk, "visibility": "internal"}
    data |= _inline_management("tags", total=1) | {"tags-0-key": "task", "tags-0-value": "clf"}
    data |= _inline_management("aliases")
    response = admin_client_.post("/admin/models_app/registeredmodel/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    model = RegisteredModel.objects.get(name="churn")
    assert model.created_by.username == "admin"
    assert list(ModelTag.objects.filter(model=model).values_list("key", "value")) == [("task", "clf")]
    actions = list(
        AuditEvent.objects.filter(model_name="churn").order_by("id").values_list("action", flat=True)
    )
    assert actions == ["model.created", "model.tag_set"]


def test_changing_and_deleting_a_model_in_admin_is_audited(admin_client_, owner, internal_model):
    tag = internal_model.tags.get()
    data = {
        "name": "churn",
        "description": "new words",
        "team": internal_model.team_id,
        "visibility": "private",
    }
    data |= _inline_management("tags", total=1, initial=1)
    data |= {
        "tags-0-id": tag.pk,
        "tags-0-model": internal_model.pk,
        "tags-0-key": "task",
        "tags-0-value": "reg",
    }
    data |= _inline_management("aliases")
    response = admin_client_.post(f"/admin/models_app/registeredmodel/{internal_model.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = AuditEvent.objects.get(action="model.updated")
    assert updated.after["visibility"] == "private" and updated.after["description"] == "new words"
    assert AuditEvent.objects.get(action="model.tag_set").after == {"task": "reg"}
    response = admin_client_.post(
        f"/admin/models_app/registeredmodel/{internal_model.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not RegisteredModel.objects.exists()
    assert AuditEvent.objects.filter(action="model.deleted", model_name="churn").exists()


def test_aliases_are_not_editable_in_the_model_admin(admin_client_, owner, internal_model):
    version = services.model_version_create(actor=owner, model=internal_model)
    services.model_alias_set(actor=owner, model=internal_model, alias="shadow", version=version)
    page = admin_client_.get(
        f"/admin/models_app/registeredmodel/{internal_model.pk}/change/"
    ).content.decode()
    assert "aliases-0-alias" not in page  # shown read-only: moves go through the alias API
    assert ModelAlias.objects.count() == 1


def test_memberships_in_admin_go_through_the_team_services(admin_client_, team, outsider):
    response = admin_client_.post(
        "/admin/models_app/teammembership/add/", {"team": team.pk, "user": outsider.pk, "role": "approver"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = TeamMembership.objects.get(team=team, user=outsider)
    assert AuditEvent.objects.get(action="membership.set").after == {"user": "outsider", "role": "approver"}
    response = admin_client_.post(
        f"/admin/models_app/teammembership/{membership.pk}/change/", {"role": "viewer"}
    )
    assert response.status_code == 302
    assert TeamMembership.objects.get(pk=membership.pk).role == "viewer"
    response = admin_client_.post(
        f"/admin/models_app/teammembership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not TeamMembership.objects.filter(team=team, user=outsider).exists()
    assert list(
        AuditEvent.objects.filter(action__startswith="membership.")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["membership.set", "membership.set", "membership.removed"]


def test_admins_create_tokens_in_admin_and_see_the_secret_once(admin_user, owner):
    from django.test import Client

    from models_app.models import AccessToken

    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/models_app/accesstoken/add/",
        {"user": owner.pk, "name": "ci", "scopes": ["read", "write"], "expires_in_days": 30},
        follow=True,
    )
    assert response.status_code == 200
    token = AccessToken.objects.get(user=owner)
    assert token.scopes == ["read", "write"]
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.prefix in m and "copy it now" in m for m in shown)


def test_adding_a_policy_in_admin_is_its_first_change(admin_client_, internal_model):
    from models_app.models import PromotionPolicy

    data = {
        "model": internal_model.pk,
        "required_checks": '{"production": ["loadable"]}',
        "production_approvals": 2,
        "staging_approvals": 0,
        "allow_self_approval": "",
        "single_production": "on",
        "on_new_production": "archive",
        "protected_aliases": '["champion"]',
    }
    response = admin_client_.post("/admin/models_app/promotionpolicy/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = PromotionPolicy.objects.get(model=internal_model)
    assert policy.production_approvals == 2 and policy.required_checks == {"production": ["loadable"]}
    assert AuditEvent.objects.filter(action="policy.updated", model_name="churn").count() == 1
    again = admin_client_.post("/admin/models_app/promotionpolicy/add/", data)
    assert again.status_code == 200 and PromotionPolicy.objects.count() == 1  # one per model
