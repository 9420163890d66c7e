"""The server-rendered catalog: sign-in, search, model and version pages, tokens — with permissions."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from models_app import services
from models_app.models import AccessToken


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_sign_in(db):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_sign_in_with_password(owner):
    response = Client().post("/login/", {"username": "owner", "password": "pw-owner"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_catalog_searches_and_hides_private_models(owner, outsider, internal_model, private_model):
    page = signed_in(outsider).get("/?q=churn").content.decode()
    assert "churn" in page and "1 model" in page
    everything = signed_in(outsider).get("/").content.decode()
    assert "fraud" not in everything and "Flags fraud" not in everything
    assert "fraud" in signed_in(owner).get("/").content.decode()


def test_model_and_version_pages(owner, viewer, internal_model):
    version = services.model_version_create(actor=owner, model=internal_model, description="First try")
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=version)
    client = signed_in(viewer)
    page = client.get("/models/churn/").content.decode()
    assert "Predicts customer churn." in page and "@candidate" in page and "First try" in page
    page = client.get("/models/churn/versions/1/").content.decode()
    assert "m.bin" in page and "/api/v1/models/churn/versions/1/files/m.bin" in page


def test_private_model_pages_are_404_for_outsiders(outsider, private_model):
    assert signed_in(outsider).get("/models/fraud/").status_code == 404


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"])
def test_free_text_is_escaped(owner, team, text):
    services.registered_model_create(
        actor=owner, name="xss", team=team, description=text, tags={"note": text}
    )
    page = signed_in(owner).get("/models/xss/").content.decode()
    assert text not in page and "&lt;" in page


def test_tokens_page_creates_shows_once_and_revokes(owner):
    client = signed_in(owner)
    page = client.post(
        "/tokens/", {"name": "laptop", "scopes": ["read"], "expires_in_days": 30}
    ).content.decode()
    token = AccessToken.objects.get()
    assert "Copy it now" in page and token.prefix in page
    assert "Copy it now" not in client.get("/tokens/").content.decode()
    client.post(f"/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_forms_are_csrf_protected(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post("/tokens/", {"name": "x", "scopes": ["read"], "expires_in_days": 1}).status_code == 403
    assert not AccessToken.objects.exists()


def _ready(owner, model, checks=("loadable", "security_scan")):
    from models_app import services_governance

    version = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=version)
    for name in checks:
        services_governance.check_report(
            actor=None, version=version, name=name, status="passed", builtin=True
        )
    return version


def test_an_owner_requests_and_an_approver_approves_in_the_ui(owner, approver, internal_model):
    from models_app.models import ModelVersion

    _ready(owner, internal_model)
    page = signed_in(owner).post(
        "/models/churn/versions/1/", {"target_stage": "production", "comment": "better AUC"}
    )
    assert page.status_code == 302
    queue = signed_in(approver).get("/promotions/").content.decode()
    assert "churn version 1" in queue and "better AUC" in queue and "Approve" in queue
    promotion_id = internal_model.versions.get().promotions.get().pk
    assert (
        signed_in(approver).post(f"/promotions/{promotion_id}/approve/", {"comment": "ok"}).status_code == 302
    )
    assert ModelVersion.objects.get().stage == "production"
    page = signed_in(approver).get("/models/churn/").content.decode()
    assert "Production" in page and "promotion.applied" in page  # the team's approvers read its history


def test_reject_without_a_reason_is_refused_in_the_ui(owner, approver, internal_model):
    _ready(owner, internal_model)
    signed_in(owner).post("/models/churn/versions/1/", {"target_stage": "production"})
    promotion = internal_model.versions.get().promotions.get()
    client = signed_in(approver)
    response = client.post(f"/promotions/{promotion.pk}/reject/", {"comment": ""}, follow=True)
    assert "Say why" in response.content.decode()
    promotion.refresh_from_db()
    assert promotion.state == "pending"


def test_viewers_see_no_request_form_and_no_approve_buttons(owner, viewer, internal_model):
    _ready(owner, internal_model)
    assert "Request the move" not in signed_in(viewer).get("/models/churn/versions/1/").content.decode()
    signed_in(owner).post("/models/churn/versions/1/", {"target_stage": "production"})
    assert ">Approve<" not in signed_in(viewer).get("/promotions/").content.decode()


def test_policy_form_is_for_owners(owner, viewer, internal_model):
    assert signed_in(viewer).get("/models/churn/policy/").status_code == 403
    response = signed_in(owner).post(
        "/models/churn/policy/",
        {
            "staging_checks": "loadable",
            "production_checks": "loadable, integration",
            "production_approvals": 2,
            "staging_approvals": 0,
            "on_new_production": "archive",
            "protected_aliases": "champion, prod",
        },
    )
    assert response.status_code == 302
    policy = services.policy_get(model=internal_model)
    assert policy.production_approvals == 2 and policy.checks_for("production") == ["loadable", "integration"]
    assert policy.protected_aliases == ["champion", "prod"]


def test_admins_manage_teams_in_the_ui(admin_user, owner, viewer):
    from django.contrib.auth.models import Group

    from models_app.models import TeamMembership

    client = signed_in(admin_user)
    assert client.post("/teams/", {"team-name": "vision"}).status_code == 302
    team = Group.objects.get(name="vision")
    response = client.post(
        "/teams/", {"team": team.pk, "member-username": "viewer", "member-role": "approver"}
    )
    assert response.status_code == 302
    assert TeamMembership.objects.get(team=team, user=viewer).role == "approver"
    client.post(
        "/teams/", {"team": team.pk, "member-username": "viewer", "member-role": "approver", "remove": "1"}
    )
    assert not TeamMembership.objects.filter(team=team).exists()
    page = signed_in(owner).get("/teams/").content.decode()
    assert "risk" in page and "vision" not in page and "Create a team" not in page
    signed_in(owner).post("/teams/", {"team-name": "sneaky"})
    assert not Group.objects.filter(name="sneaky").exists()


def test_page_titles_are_plain_text(owner, internal_model):
    page = signed_in(owner).get("/models/churn/").content.decode()
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == "churn · Modelyard"
