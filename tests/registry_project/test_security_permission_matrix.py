"""The permission matrix of every route, generated from the URL conf.

``test_every_route_has_a_matrix_entry`` walks ``get_resolver()`` — native API, lineage API,
UI pages, downloads; only Django admin, the schema/docs and the probes are left out — and fails
for any route with no row here or in ``tests/models_app/test_api_permission_matrix.py`` (the
native API on a private model). So a new endpoint (MLflow-compatible API, deployments, an
inference proxy) cannot be merged without deciding who may call it.

Personas: anonymous, outsider (contributor of another team), viewer, owner (contributor),
approver, deployer, admin; token scopes read / write / admin, and a session for UI pages.
Expected statuses are exact; 200 stands for any 2xx (and 302 for a UI redirect after a POST).
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from models_app import services
from models_app.models import AccessToken, AuditEvent, Promotion, Webhook, WebhookDelivery
from tests.models_app.test_api_permission_matrix import ENDPOINTS as MODEL_ENDPOINTS

# persona -> (user fixture key, token scopes)
TOKEN_PERSONAS = {
    "anonymous": (None, None),
    "outsider": ("outsider", ["read", "write"]),
    "viewer": ("viewer", ["read"]),
    "owner": ("owner", ["read", "write"]),
    "owner_read": ("owner", ["read"]),
    "approver": ("approver", ["read", "write"]),
    "deployer": ("deployer", ["read", "write"]),
    "admin": ("admin", ["read", "write", "admin"]),
    "admin_write": ("admin", ["read", "write"]),
}
P = list(TOKEN_PERSONAS)

# (method, path template, body): expected status by persona, in the order of P:
#    anonymous, outsider, viewer, owner, owner_read, approver, deployer, admin, admin_write
S = 200  # any 2xx
API_ROUTES = [
    ("GET", "/api/v1/tokens/", None, [401, S, S, S, S, S, S, S, S]),
    ("POST", "/api/v1/tokens/", {"name": "new", "scopes": ["read"]}, [401, S, 403, S, 403, S, S, S, S]),
    # The token belongs to the owner: it does not exist for anyone else, admins included.
    ("GET", "/api/v1/tokens/{token}/", None, [401, 404, 404, S, S, 404, 404, 404, 404]),
    ("DELETE", "/api/v1/tokens/{token}/", None, [401, 404, 403, S, 403, 404, 404, 404, 404]),
    ("GET", "/api/v1/teams/", None, [401, S, S, S, S, S, S, S, S]),
    ("POST", "/api/v1/teams/", {"name": "newteam"}, [401, 403, 403, 403, 403, 403, 403, S, S]),
    ("GET", "/api/v1/teams/risk/", None, [401, 404, S, S, S, S, S, S, S]),
    (
        "PUT",
        "/api/v1/teams/risk/members/viewer",
        {"role": "contributor"},
        [401, 403, 403, 403, 403, 403, 403, S, S],
    ),
    ("DELETE", "/api/v1/teams/risk/members/viewer", None, [401, 403, 403, 403, 403, 403, 403, S, S]),
    ("GET", "/api/v1/audit/", None, [401, S, S, S, S, S, S, S, S]),
    # An event of the private model: its team's contributors and approvers, and admins.
    ("GET", "/api/v1/audit/{audit}/", None, [401, 404, 404, S, S, S, 404, S, S]),
    ("GET", "/api/v1/promotions/", None, [401, S, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/promotions/{promotion}/", None, [401, S, S, S, S, S, S, S, S]),
    ("POST", "/api/v1/promotions/{promotion}/approve", {}, [401, 403, 403, 403, 403, S, 403, S, S]),
    (
        "POST",
        "/api/v1/promotions/{promotion}/reject",
        {"comment": "no"},
        [401, 403, 403, 403, 403, S, 403, S, S],
    ),
    ("POST", "/api/v1/promotions/{promotion}/cancel", {}, [401, 403, 403, S, 403, 403, 403, S, S]),
    ("GET", "/api/v1/webhooks/", None, [401, S, S, S, S, S, S, S, S]),
    (
        "POST",
        "/api/v1/webhooks/",
        {"name": "h", "url": "http://127.0.0.1:9/x", "events": ["*"]},
        [401, S, 403, S, 403, 403, 403, S, S],
    ),
    ("GET", "/api/v1/webhooks/{webhook}/", None, [401, 404, 404, S, S, 404, 404, S, S]),
    ("PATCH", "/api/v1/webhooks/{webhook}/", {"active": False}, [401, 404, 403, S, 403, 404, 404, S, S]),
    ("DELETE", "/api/v1/webhooks/{webhook}/", None, [401, 404, 403, S, 403, 404, 404, S, S]),
    ("GET", "/api/v1/webhooks/{webhook}/deliveries/", None, [401, 404, 404, S, S, 404, 404, S, S]),
    ("POST", "/api/v1/webhooks/{webhook}/ping", {}, [401, 404, 403, S, 403, 403, 403, S, S]),
    (
        "POST",
        "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver",
        {},
        [401, 404, 403, S, 403, 403, 403, S, S],
    ),
    (
        "GET",
        "/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1",
        None,
        [401, S, S, S, S, S, S, S, S],
    ),
    ("GET", "/api/v1/lineage/advisories", None, [401, S, S, S, S, S, S, S, S]),
    ("POST", "/api/v1/lineage/advisories", "ADVISORY", [401, S, 403, S, 403, 403, 403, S, S]),
    ("GET", "/api/v1/lineage/advisories/GHSA-test-tf01/affected", None, [401, S, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/lineage/commits/" + "a" * 40, None, [401, S, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/lineage/graph?model=fraud&version=2", None, [401, 404, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/lineage/graph?model=churn&version=1", None, [401, S, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/models/churn/versions/compare?a=1&b=1", None, [401, S, S, S, S, S, S, S, S]),
    ("GET", "/api/v1/schema/", None, [S, S, S, S, S, S, S, S, S]),  # public: the API's shape only
    ("GET", "/api/v1/docs/", None, [S, S, S, S, S, S, S, S, S]),
]

# Session (browser) personas for the UI pages; 302 for anonymous is the redirect to sign in.
UI_PERSONAS = ["anonymous", "outsider", "viewer", "owner", "approver", "deployer", "admin"]
UI_ROUTES = [
    ("GET", "/", None, [302, S, S, S, S, S, S]),
    ("GET", "/login/", None, [S, 302, 302, 302, 302, 302, 302]),
    ("POST", "/logout/", None, [302, 302, 302, 302, 302, 302, 302]),
    ("GET", "/models/fraud/", None, [302, 404, S, S, S, S, S]),
    ("GET", "/models/churn/", None, [302, S, S, S, S, S, S]),
    ("GET", "/models/fraud/versions/1/", None, [302, 404, S, S, S, S, S]),
    ("GET", "/models/fraud/policy/", None, [302, 404, 403, S, 403, 403, S]),
    ("GET", "/models/fraud/compare/", None, [302, 404, S, S, S, S, S]),
    ("GET", "/promotions/", None, [302, S, S, S, S, S, S]),
    # Decisions answer with a redirect and a message; the effect is asserted below.
    ("POST", "/promotions/{promotion}/approve/", {"comment": "ok"}, [302] * 7),
    ("POST", "/promotions/{promotion}/reject/", {"comment": "no"}, [302] * 7),
    ("GET", "/teams/", None, [302, S, S, S, S, S, S]),
    ("GET", "/tokens/", None, [302, S, S, S, S, S, S]),
    ("POST", "/tokens/{token}/revoke/", {}, [302, 404, 404, 302, 404, 404, 404]),
    ("GET", "/lineage/exposure/?package=tensorflow&specifier=<2.11.1", None, [302, S, S, S, S, S, S]),
    ("GET", "/lineage/commits/?sha=" + "a" * 40, None, [302, S, S, S, S, S, S]),
    ("GET", "/lineage/advisories/", None, [302, S, S, S, S, S, S]),
    ("GET", "/healthz", None, [S] * 7),  # probes are open (no catalog data in them)
    ("GET", "/readyz", None, [S] * 7),
    ("GET", "/metrics", None, [S] * 7),  # open unless MODELYARD_METRICS_TOKEN is set
]
DECIDERS = {"approver", "admin"}
NEW_ADVISORY = {
    "id": "GHSA-new-0001",
    "summary": "x",
    "modified": "2026-02-01T00:00:00Z",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "numpy"}, "versions": ["0.1"]}],
}


@pytest.fixture
def matrix_catalog(catalog, settings):
    """The seeded catalog plus a pending production promotion of ``churn`` v1 and a delivery."""
    from models_app import services_events, services_governance
    from models_app.models import ModelVersion

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True  # webhook creation is about roles here
    owner = catalog.users["owner"]
    services.access_token_create(actor=owner, user=owner, name="seeded", scopes=["read"])
    churn = ModelVersion.objects.get(model=catalog.churn, version=1)
    for name in ("loadable", "security_scan"):
        services_governance.check_report(actor=None, version=churn, name=name, status="passed", builtin=True)
    services_governance.promotion_request(actor=owner, version=churn, target_stage="production")
    services_events.webhook_ping(actor=owner, hook=Webhook.objects.get(owner=owner))
    return catalog


def _ids() -> dict[str, object]:
    return {
        "token": AccessToken.objects.get(name="seeded").pk,
        "audit": AuditEvent.objects.filter(model_name="fraud").order_by("pk").first().pk,
        "promotion": Promotion.objects.get(state="pending").pk,
        "webhook": Webhook.objects.get(owner__username="owner").pk,
        "delivery": WebhookDelivery.objects.filter(webhook__owner__username="owner").first().delivery_id,
    }


def _token_client(catalog, persona):
    from rest_framework.test import APIClient

    key, scopes = TOKEN_PERSONAS[persona]
    client = APIClient()
    if key is not None:
        user = catalog.users[key]
        _t, raw = services.access_token_create(actor=user, user=user, name=f"m-{persona}", scopes=scopes)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _check(response, expected: int, what: str) -> None:
    if expected == S:
        assert 200 <= response.status_code < 300, (what, response.status_code, response.content[:300])
    else:
        assert response.status_code == expected, (what, response.status_code, response.content[:300])


def _each_persona(personas, run) -> None:
    """Run ``run(persona)`` for each persona in a rolled-back savepoint; report all mismatches."""
    from django.db import transaction

    problems = []
    for persona in personas:
        with transaction.atomic():
            try:
                run(persona)
            except AssertionError as exc:
                problems.append(str(exc)[:400])
            transaction.set_rollback(True)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("method", "template", "body", "expected"), API_ROUTES, ids=[r[1] for r in API_ROUTES]
)
def test_api_matrix(matrix_catalog, method, template, body, expected):
    body = NEW_ADVISORY if body == "ADVISORY" else body
    data = json.dumps(body) if body is not None else None

    def run(persona):
        client = _token_client(matrix_catalog, persona)
        response = client.generic(
            method, template.format(**_ids()), data=data, content_type="application/json"
        )
        _check(response, expected[P.index(persona)], f"{method} {template} as {persona}")
        if response.status_code >= 400:
            assert response.json()["error"]  # the JSON error envelope, always

    _each_persona(P, run)


@pytest.mark.parametrize(("method", "template", "body", "expected"), UI_ROUTES, ids=[r[1] for r in UI_ROUTES])
def test_ui_matrix(matrix_catalog, method, template, body, expected):
    def run(persona):
        client = Client()
        if persona != "anonymous":
            client.force_login(matrix_catalog.users[persona])
        ids = _ids()
        response = client.generic(
            method,
            template.format(**ids),
            data="&".join(f"{k}={v}" for k, v in (body or {}).items()),
            content_type="application/x-www-form-urlencoded",
        )
        _check(response, expected[UI_PERSONAS.index(persona)], f"{method} {template} as {persona}")
        if "/promotions/" in template and method == "POST":
            state = Promotion.objects.get(pk=ids["promotion"]).state
            assert (state != "pending") == (persona in DECIDERS), (persona, state)
        if "/revoke/" in template:
            revoked = AccessToken.objects.get(pk=ids["token"]).revoked_at is not None
            assert revoked == (persona == "owner"), persona

    _each_persona(UI_PERSONAS, run)


# --- Zero leaks: what outsiders see of a private model -----------------------------------------

LEAK_PROBES_API = [
    "/api/v1/models/",
    "/api/v1/models/?q=fraud",
    "/api/v1/models/?name=fraud",
    "/api/v1/models/?tag=secret",
    "/api/v1/models/?team=risk",
    "/api/v1/models/?visibility=private",
    "/api/v1/audit/",
    "/api/v1/audit/?model=fraud",
    "/api/v1/promotions/",
    "/api/v1/webhooks/",
    "/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1",
    "/api/v1/lineage/advisories",
    "/api/v1/lineage/advisories/GHSA-test-tf01/affected",
    "/api/v1/lineage/commits/" + "a" * 40,
    "/api/v1/lineage/commits/aaaaaaa",
    "/api/v1/lineage/graph?model=churn&version=1",
    "/api/v1/models/churn/versions/compare?a=1&b=1",
    "/api/v1/teams/",
]
LEAK_PROBES_UI = [
    "/",
    "/?q=fraud",
    "/?tag=secret",
    "/?visibility=private",
    "/promotions/",
    "/teams/",
    "/lineage/exposure/?package=tensorflow&specifier=<2.11.1",
    "/lineage/commits/?sha=" + "a" * 40,
    "/lineage/advisories/",
    "/models/churn/",
    "/models/churn/compare/",
]


def _assert_no_trace(body: bytes, where: str) -> None:
    from urllib.parse import parse_qsl, urlsplit

    from tests.registry_project.conftest import SECRET_MARK

    for _key, value in parse_qsl(urlsplit(where).query):  # a search form shows what was typed
        body = body.replace(f'value="{value}"'.encode(), b"")
    assert SECRET_MARK.encode() not in body, f"private text leaked in {where}"
    assert b"fraud" not in body.lower(), f"the private model's name leaked in {where}"


def test_outsiders_never_see_the_private_model_anywhere(matrix_catalog):
    api = _token_client(matrix_catalog, "outsider")
    for path in LEAK_PROBES_API:
        response = api.get(path)
        assert response.status_code in (200, 400), (path, response.status_code)
        _assert_no_trace(response.content, path)
    listing = api.get("/api/v1/models/").json()
    assert listing["count"] == 1 and [m["name"] for m in listing["results"]] == ["churn"]
    assert api.get("/api/v1/models/?q=fraud").json()["count"] == 0
    affected = api.get("/api/v1/lineage/advisories/GHSA-test-tf01/affected").json()
    assert "fraud" not in json.dumps(affected).lower()
    browser = Client()
    browser.force_login(matrix_catalog.users["outsider"])
    for path in LEAK_PROBES_UI:
        response = browser.get(path)
        assert response.status_code == 200, (path, response.status_code)
        _assert_no_trace(response.content, path)


def test_the_team_sees_what_outsiders_do_not(matrix_catalog):
    """The same probes as the viewer find the private model: the leak test can fail."""
    api = _token_client(matrix_catalog, "viewer")
    assert api.get("/api/v1/models/?q=fraud").json()["count"] == 1
    affected = api.get("/api/v1/lineage/advisories/GHSA-test-tf01/affected").json()
    assert "fraud" in json.dumps(affected).lower()
    assert b"fraud" in api.get("/api/v1/lineage/commits/" + "a" * 40).content.lower()
    exposure = api.get("/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1")
    assert b"fraud" in exposure.content.lower()
    owner = _token_client(matrix_catalog, "owner")
    assert b"fraud" in owner.get("/api/v1/audit/").content.lower()


# --- Every route has an entry ----------------------------------------------------------------

# Not ours to test here: Django admin (its own permission system), static files.
EXCLUDED_PREFIXES = ("admin/",)


def _all_routes() -> set[str]:
    routes: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                routes.add((prefix + str(entry.pattern)).replace("^", ""))

    walk(get_resolver().url_patterns, "")
    return {r for r in routes if not r.startswith(EXCLUDED_PREFIXES)}


def _route_of(path: str) -> str:
    return resolve(path.split("?")[0]).route.replace("^", "")


def test_every_route_has_a_matrix_entry(db):
    """A new route anywhere in the URL conf (API, UI, downloads) fails here until it has a row."""
    ids = {
        "token": 1,
        "audit": 1,
        "promotion": 1,
        "webhook": 1,
        "delivery": "0b7c1a9e-5f7e-4c43-9d0c-6a4be0c2f001",
    }
    covered = {_route_of(path) for _m, path, _b, _k in MODEL_ENDPOINTS}
    covered |= {_route_of(t.format(**ids)) for _m, t, _b, _e in API_ROUTES + UI_ROUTES}
    missing = sorted(_all_routes() - covered)
    assert not missing, f"routes with no permission-matrix entry: {missing}"


def test_every_row_names_every_persona():
    """Each row gives one status per persona; prints the matrix size quoted in docs/operations.md."""
    from tests.models_app.test_api_permission_matrix import EXPECTED

    assert all(len(row[3]) == len(P) for row in API_ROUTES)
    assert all(len(row[3]) == len(UI_PERSONAS) for row in UI_ROUTES)
    cells = (
        len(API_ROUTES) * len(P) + len(UI_ROUTES) * len(UI_PERSONAS) + len(MODEL_ENDPOINTS) * len(EXPECTED)
    )
    print(f"permission matrix: {cells} cells")
