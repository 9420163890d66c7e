"""Personal access tokens: shown once, stored as a hash, scoped, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from models_app.models import AccessToken, AuditEvent


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_is_shown_once_and_stored_only_as_a_hash(owner):
    client = APIClient()
    client.force_login(owner)  # the UI session creates the first token
    response = client.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json")
    assert response.status_code == 201, response.content
    raw = response.json()["token"]
    assert raw.startswith("myd_") and len(raw) > 40
    stored = AccessToken.objects.get()
    assert raw not in (stored.digest, stored.prefix) and stored.digest == AccessToken.digest_of(raw)
    listed = client.get("/api/v1/tokens/").json()
    assert "token" not in listed[0] and listed[0]["prefix"] == raw[:12]
    assert raw not in str(list(AuditEvent.objects.values()))
    assert bearer(raw).get("/api/v1/models/").status_code == 200


def test_read_token_cannot_write(api, owner, internal_model):
    response = api(owner, ["read"]).patch("/api/v1/models/churn/", {"description": "x"}, format="json")
    assert response.status_code == 403
    assert "write" in response.json()["message"]


@pytest.mark.parametrize("header", ["Bearer myd_nope", "Bearer", "Bearer a b", "Bearer ünïcode"])
def test_bad_tokens_are_401(header, db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"] in ("authentication_failed", "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_and_revoked_tokens_are_refused(owner):
    client = APIClient()
    client.force_login(owner)
    raw = client.post("/api/v1/tokens/", {"name": "t", "scopes": ["read"]}, format="json").json()["token"]
    token = AccessToken.objects.get()
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(raw).get("/api/v1/models/").status_code == 401
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(days=1))
    assert bearer(raw).get("/api/v1/models/").status_code == 200
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert bearer(raw).get("/api/v1/models/").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


def test_tokens_of_others_are_invisible(api, owner, viewer):
    api(owner)  # creates a token for owner
    other_id = AccessToken.objects.get(user=owner).pk
    client = api(viewer)
    assert all(t["id"] != other_id for t in client.get("/api/v1/tokens/").json())
    assert client.delete(f"/api/v1/tokens/{other_id}/").status_code == 404


def test_a_token_cannot_mint_a_stronger_token(api, owner):
    response = api(owner, ["read"]).post("/api/v1/tokens/", {"name": "x", "scopes": ["write"]}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["admin"]}, "scopes"),  # not staff
        ({"name": "x", "scopes": ["read"], "expires_in_days": 100000}, "expires_in_days"),
        ({"scopes": ["read"]}, "name"),
    ],
)
def test_bad_token_requests_are_400(owner, body, field):
    client = APIClient()
    client.force_login(owner)
    response = client.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not AccessToken.objects.exists()


def test_anonymous_cannot_touch_tokens(db):
    assert APIClient().get("/api/v1/tokens/").status_code == 401
    assert APIClient().post("/api/v1/tokens/", {}, format="json").status_code == 401


def test_create_token_command_prints_a_working_token(owner, capsys):
    call_command("create_token", "owner", "--scopes", "read,write", "--name", "automation")
    raw = capsys.readouterr().out.strip()
    assert bearer(raw).get("/api/v1/models/").status_code == 200
    assert AccessToken.objects.get().scopes == ["read", "write"]
