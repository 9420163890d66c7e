"""Health probes and API documentation, open without authentication."""

from __future__ import annotations

from django.test import Client

from registry_project import health


def test_healthz_is_open_and_ok(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_storage_and_broker(db):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "storage", "broker"}


def test_readyz_is_503_naming_the_broken_part(db, monkeypatch):
    def broken() -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "error": "ConnectionRefusedError",
        "ms": response.json()["checks"]["broker"]["ms"],
    }
    assert response.json()["checks"]["database"]["ok"] is True


def test_schema_and_docs_are_served_offline(admin_user):
    client = Client()
    client.force_login(admin_user)
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/models/{name}/versions/{version}/" in paths
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()
