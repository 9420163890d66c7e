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

from deployments_app.models import Deployment
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
    # Inference-only tokens (a consumer's): ``predict`` sits outside read < write < admin, so
    # they are refused everywhere but the inference proxy (models_app.roles.scopes_allow).
    "deployer_predict": ("deployer", ["predict"]),
    "viewer_predict": ("viewer", ["predict"]),
    "outsider_predict": ("outsider", ["predict"]),
}
P = list(TOKEN_PERSONAS)

# (method, path template, body): expected status by persona, in the order of P:
#    anonymous, outsider, viewer, owner, owner_read, approver, deployer, admin, admin_write,
#    deployer_predict, viewer_predict, outsider_predict
S = 200  # any 2xx
API_ROUTES = [
    ("GET", "/api/v1/tokens/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/tokens/",
        {"name": "new", "scopes": ["read"]},
        [401, S, 403, S, 403, S, S, S, S, 403, 403, 403],
    ),
    # The token belongs to the owner: it does not exist for anyone else, admins included.
    ("GET", "/api/v1/tokens/{token}/", None, [401, 404, 404, S, S, 404, 404, 404, 404, 403, 403, 403]),
    ("DELETE", "/api/v1/tokens/{token}/", None, [401, 404, 403, S, 403, 404, 404, 404, 404, 403, 403, 403]),
    ("GET", "/api/v1/teams/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    ("POST", "/api/v1/teams/", {"name": "newteam"}, [401, 403, 403, 403, 403, 403, 403, S, S, 403, 403, 403]),
    ("GET", "/api/v1/teams/risk/", None, [401, 404, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "PUT",
        "/api/v1/teams/risk/members/viewer",
        {"role": "contributor"},
        [401, 403, 403, 403, 403, 403, 403, S, S, 403, 403, 403],
    ),
    (
        "DELETE",
        "/api/v1/teams/risk/members/viewer",
        None,
        [401, 403, 403, 403, 403, 403, 403, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/audit/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    # An event of the private model: its team's contributors and approvers, and admins.
    ("GET", "/api/v1/audit/{audit}/", None, [401, 404, 404, S, S, S, 404, S, S, 403, 403, 403]),
    ("GET", "/api/v1/promotions/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    ("GET", "/api/v1/promotions/{promotion}/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/promotions/{promotion}/approve",
        {},
        [401, 403, 403, 403, 403, S, 403, S, S, 403, 403, 403],
    ),
    (
        "POST",
        "/api/v1/promotions/{promotion}/reject",
        {"comment": "no"},
        [401, 403, 403, 403, 403, S, 403, S, S, 403, 403, 403],
    ),
    (
        "POST",
        "/api/v1/promotions/{promotion}/cancel",
        {},
        [401, 403, 403, S, 403, 403, 403, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/webhooks/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/webhooks/",
        {"name": "h", "url": "http://127.0.0.1:9/x", "events": ["*"]},
        [401, S, 403, S, 403, 403, 403, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/webhooks/{webhook}/", None, [401, 404, 404, S, S, 404, 404, S, S, 403, 403, 403]),
    (
        "PATCH",
        "/api/v1/webhooks/{webhook}/",
        {"active": False},
        [401, 404, 403, S, 403, 404, 404, S, S, 403, 403, 403],
    ),
    ("DELETE", "/api/v1/webhooks/{webhook}/", None, [401, 404, 403, S, 403, 404, 404, S, S, 403, 403, 403]),
    (
        "GET",
        "/api/v1/webhooks/{webhook}/deliveries/",
        None,
        [401, 404, 404, S, S, 404, 404, S, S, 403, 403, 403],
    ),
    ("POST", "/api/v1/webhooks/{webhook}/ping", {}, [401, 404, 403, S, 403, 403, 403, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver",
        {},
        [401, 404, 403, S, 403, 403, 403, S, S, 403, 403, 403],
    ),
    (
        "GET",
        "/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1",
        None,
        [401, S, S, S, S, S, S, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/lineage/advisories", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    ("POST", "/api/v1/lineage/advisories", "ADVISORY", [401, S, 403, S, 403, 403, 403, S, S, 403, 403, 403]),
    (
        "GET",
        "/api/v1/lineage/advisories/GHSA-test-tf01/affected",
        None,
        [401, S, S, S, S, S, S, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/lineage/commits/" + "a" * 40, None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "GET",
        "/api/v1/lineage/graph?model=fraud&version=2",
        None,
        [401, 404, S, S, S, S, S, S, S, 403, 403, 403],
    ),
    (
        "GET",
        "/api/v1/lineage/graph?model=churn&version=1",
        None,
        [401, S, S, S, S, S, S, S, S, 403, 403, 403],
    ),
    (
        "GET",
        "/api/v1/models/churn/versions/compare?a=1&b=1",
        None,
        [401, S, S, S, S, S, S, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/schema/", None, [S, S, S, S, S, S, S, S, S, S, S, S]),  # public: the API's shape only
    ("GET", "/api/v1/docs/", None, [S, S, S, S, S, S, S, S, S, S, S, S]),
    # Deployments: listed with the model they serve; deployers of its team (and admins) steer
    # them. ``{dep}`` serves the private ``fraud`` (external target, queued: no endpoint yet),
    # ``{dep_off}`` is a stopped one of ``fraud``, ``{dep_churn}`` serves the internal ``churn``.
    ("GET", "/api/v1/deployments/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/deployments/",
        {"name": "new-dep", "model": "fraud", "version": 2, "target": "external"},
        [401, 403, 403, 403, 403, 403, S, S, S, 403, 403, 403],
    ),
    ("GET", "/api/v1/deployments/{dep}/", None, [401, 404, S, S, S, S, S, S, S, 403, 403, 403]),
    ("GET", "/api/v1/deployments/{dep_churn}/", None, [401, S, S, S, S, S, S, S, S, 403, 403, 403]),
    ("GET", "/api/v1/deployments/{dep}/logs", None, [401, 404, S, S, S, S, S, S, S, 403, 403, 403]),
    ("POST", "/api/v1/deployments/{dep}/stop", {}, [401, 404, 403, 403, 403, 403, S, S, S, 403, 403, 403]),
    (
        "POST",
        "/api/v1/deployments/{dep_off}/start",
        {},
        [401, 404, 403, 403, 403, 403, S, S, S, 403, 403, 403],
    ),
    (
        "POST",
        "/api/v1/deployments/{dep}/redeploy",
        {},
        [401, 404, 403, 403, 403, 403, S, S, S, 403, 403, 403],
    ),
    (
        "POST",
        "/api/v1/deployments/{dep}/events",
        {"status": "building", "message": "pulling"},
        [401, 404, 403, 403, 403, 403, S, S, S, 403, 403, 403],
    ),
    ("DELETE", "/api/v1/deployments/{dep}/", None, [401, 404, 403, 403, 403, 403, S, S, S, 403, 403, 403]),
    # Inference needs the ``predict`` scope (or ``admin``) and a role in the model's team; an
    # allowed caller reaches the proxy, which answers 503 (no endpoint) — who gets that far is
    # the matrix, serving itself is tested in tests/deployments_app.
    (
        "POST",
        "/api/v1/deployments/{dep}/predict",
        {"inputs": [[1.0]]},
        [401, 403, 403, 403, 403, 403, 403, 503, 403, 503, 503, 404],
    ),
    (
        "POST",
        "/api/v1/deployments/{dep_churn}/predict",
        {"inputs": [[1.0]]},
        [401, 403, 403, 403, 403, 403, 403, 503, 403, 503, 503, 403],
    ),
    ("GET", "/serve/fraud-ext/ping", None, [401, 403, 403, 403, 403, 403, 403, 503, 403, 503, 503, 404]),
    (
        "POST",
        "/serve/churn-ext/invocations",
        {"inputs": [[1.0]]},
        [401, 403, 403, 403, 403, 403, 403, 503, 403, 503, 503, 403],
    ),
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
    ("GET", "/models/fraud/card/", None, [302, 404, 403, S, 403, 403, S]),
    # A saved card redirects to the model page; a refused one is a 403 (or 404 when unseen).
    ("POST", "/models/fraud/card/", {"card": "# Fraud card"}, [302, 404, 403, 302, 403, 403, 302]),
    ("GET", "/webhooks/", None, [302, S, S, S, S, S, S]),
    (
        "POST",
        "/webhooks/",
        {"name": "ui-hook", "url": "http://127.0.0.1:9/ui", "events": "*"},
        [302, S, 403, S, 403, 403, S],
    ),
    # Webhook and deployment actions redirect with a message; the effect is asserted below.
    ("POST", "/webhooks/{webhook}/ping/", {}, [302, 404, 404, 302, 404, 404, 302]),
    ("POST", "/webhooks/{webhook}/delete/", {}, [302, 404, 404, 302, 404, 404, 302]),
    (
        "POST",
        "/webhooks/{webhook}/deliveries/{delivery}/redeliver/",
        {},
        [302, 404, 404, 302, 404, 404, 302],
    ),
    ("GET", "/deployments/", None, [302, S, S, S, S, S, S]),
    ("GET", "/deployments/?q=churn&status=queued", None, [302, S, S, S, S, S, S]),
    ("GET", "/deployments/{dep}/", None, [302, 404, S, S, S, S, S]),
    ("GET", "/deployments/{dep_churn}/", None, [302, S, S, S, S, S, S]),
    ("POST", "/deployments/{dep}/stop/", {}, [302, 404, 302, 302, 302, 302, 302]),
    ("POST", "/deployments/{dep_off}/start/", {}, [302, 404, 302, 302, 302, 302, 302]),
    ("POST", "/deployments/{dep}/redeploy/", {}, [302, 404, 302, 302, 302, 302, 302]),
    ("POST", "/deployments/{dep}/delete/", {}, [302, 404, 302, 302, 302, 302, 302]),
    ("POST", "/deployments/{dep_churn}/stop/", {}, [302, 302, 302, 302, 302, 302, 302]),
    # The inference proxy with a browser session: no scope to narrow it, the same team rule.
    ("GET", "/serve/fraud-ext/ping", None, [401, 404, 503, 503, 503, 503, 503]),
    ("GET", "/serve/churn-ext/ping", None, [401, 403, 503, 503, 503, 503, 503]),
    ("GET", "/healthz", None, [S] * 7),  # probes are open (no catalog data in them)
    ("GET", "/readyz", None, [S] * 7),
    ("GET", "/metrics", None, [S] * 7),  # open unless MODELYARD_METRICS_TOKEN is set
]
DECIDERS = {"approver", "admin"}
DEPLOYERS = {"deployer", "admin"}
HOOK_OWNERS = {"owner", "admin"}  # the owner's webhook
CARD_EDITORS = {"owner", "admin"}  # contributors of the model's team
NEW_ADVISORY = {
    "id": "GHSA-new-0001",
    "summary": "x",
    "modified": "2026-02-01T00:00:00Z",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "numpy"}, "versions": ["0.1"]}],
}


@pytest.fixture
def matrix_catalog(catalog, settings, no_deployment_worker):
    """The seeded catalog plus a pending production promotion of ``churn`` v1, a delivery and
    three deployments on the ``external`` target (nothing is launched: an external tool would
    run them; the task queue is stubbed anyway so no test here can start a runtime)."""
    from deployments_app import services as deployments
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
    deployer = catalog.users["deployer"]
    fraud = ModelVersion.objects.get(model=catalog.fraud, version=2)
    services_governance.check_report(  # the seeded m.bin may be a pickle: scanned, so servable
        actor=None, version=fraud, name="security_scan", status="passed", builtin=True
    )
    for name, model, version in (("fraud-ext", catalog.fraud, 2), ("fraud-off", catalog.fraud, 2)):
        deployments.deployment_request(
            actor=deployer, name=name, model=model, version=version, target="external"
        )
    deployments.deployment_request(
        actor=deployer, name="churn-ext", model=catalog.churn, version=1, target="external"
    )
    deployments.deployment_event_report(
        actor=deployer, deployment=Deployment.objects.get(name="fraud-off"), status="stopped"
    )
    return catalog


def _ids() -> dict[str, object]:
    return {
        "token": AccessToken.objects.get(name="seeded").pk,
        "audit": AuditEvent.objects.filter(model_name="fraud").order_by("pk").first().pk,
        "promotion": Promotion.objects.get(state="pending").pk,
        "webhook": Webhook.objects.get(owner__username="owner").pk,
        "delivery": WebhookDelivery.objects.filter(webhook__owner__username="owner").first().delivery_id,
        "dep": Deployment.objects.get(name="fraud-ext").pk,
        "dep_off": Deployment.objects.get(name="fraud-off").pk,
        "dep_churn": Deployment.objects.get(name="churn-ext").pk,
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
        deliveries_before = WebhookDelivery.objects.filter(webhook_id=ids["webhook"]).count()
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
        if template.startswith("/webhooks/{webhook}/"):
            hook = Webhook.objects.filter(pk=ids["webhook"]).first()
            if template.endswith("/delete/"):
                assert (hook is None) == (persona in HOOK_OWNERS), persona
            elif template.endswith("/redeliver/"):  # the same delivery, queued again
                queued = AuditEvent.objects.filter(action="webhook.redelivered").exists()
                assert queued == (persona in HOOK_OWNERS), persona
            else:  # a ping queues one more delivery
                queued = hook.deliveries.count() > deliveries_before
                assert queued == (persona in HOOK_OWNERS), (persona, deliveries_before)
        if template == "/models/fraud/card/" and method == "POST":
            saved = matrix_catalog.fraud.__class__.objects.get(pk=matrix_catalog.fraud.pk).card
            assert (saved == "# Fraud card") == (persona in CARD_EDITORS), (persona, saved)
        if template.startswith("/deployments/{") and method == "POST":
            _assert_deployment_effect(template, ids, persona)

    _each_persona(UI_PERSONAS, run)


def _assert_deployment_effect(template: str, ids: dict, persona: str) -> None:
    """Only deployers of the model's team (and admins) change a deployment from the UI."""
    key = template.split("}")[0].split("{")[1]
    row = Deployment.objects.filter(pk=ids[key]).first()
    allowed = persona in DEPLOYERS
    if template.endswith("/delete/"):
        changed = row is None
    elif template.endswith("/stop/"):
        changed = row.desired_state == "stopped"
    elif template.endswith("/start/"):
        changed = row.status == "queued"
    else:  # redeploy: a new generation
        changed = row.generation > 1
    assert changed == allowed, (template, persona)


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
    "/api/v1/deployments/",
    "/api/v1/deployments/?model=fraud",
    "/api/v1/deployments/?q=fraud",
    "/api/v1/deployments/?status=queued",
    "/api/v1/deployments/?status=stopped",
    "/api/v1/deployments/?target=external",
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
    "/deployments/",
    "/deployments/?q=fraud",
    "/deployments/?model=fraud",
    "/deployments/?status=stopped",
    "/deployments/?target=external",
]


def _assert_no_trace(body: bytes, where: str) -> None:
    from urllib.parse import parse_qsl, urlsplit

    from tests.registry_project.conftest import SECRET_MARK

    for key, value in parse_qsl(urlsplit(where).query):  # a search page echoes what was typed:
        for echo in (f'value="{value}"', f"{key}={value}", f"“{value}”"):  # field, sort links, count
            body = body.replace(echo.encode(), b"")
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
    deployments = api.get("/api/v1/deployments/").json()
    assert [d["name"] for d in deployments["results"]] == ["churn-ext"]
    assert api.get("/api/v1/deployments/?model=fraud").json()["count"] == 0
    affected = api.get("/api/v1/lineage/advisories/GHSA-test-tf01/affected").json()
    assert "fraud" not in json.dumps(affected).lower()
    browser = Client()
    browser.force_login(matrix_catalog.users["outsider"])
    for path in LEAK_PROBES_UI:
        response = browser.get(path)
        assert response.status_code == 200, (path, response.status_code)
        _assert_no_trace(response.content, path)


def test_outsiders_get_404_on_the_private_models_deployments(matrix_catalog):
    """Detail, logs, actions, predict and serve of ``fraud``'s deployment: 404, whatever the scope."""
    dep = Deployment.objects.get(name="fraud-ext")
    paths = [
        ("get", f"/api/v1/deployments/{dep.pk}/"),
        ("get", f"/api/v1/deployments/{dep.pk}/logs"),
        ("post", f"/api/v1/deployments/{dep.pk}/stop"),
        ("post", f"/api/v1/deployments/{dep.pk}/predict"),
        ("get", "/serve/fraud-ext/ping"),
        ("post", "/serve/fraud-ext/invocations"),
        ("get", "/serve/fraud-ext/v2/models/fraud-ext"),
    ]
    for persona in ("outsider", "outsider_predict"):
        api = _token_client(matrix_catalog, persona)
        for method, path in paths:
            response = getattr(api, method)(path, data={"inputs": [[1]]}, format="json")
            scoped = ("predict" in path or "/serve/" in path) == (persona == "outsider_predict")
            assert response.status_code == (404 if scoped else 403), (persona, path, response.status_code)
            _assert_no_trace(response.content, path)
    browser = Client()
    browser.force_login(matrix_catalog.users["outsider"])
    assert browser.get(f"/deployments/{dep.pk}/").status_code == 404
    assert browser.post(f"/deployments/{dep.pk}/stop/").status_code == 404
    assert browser.get("/serve/fraud-ext/ping").status_code == 404  # a session, as in the UI
    assert Deployment.objects.get(pk=dep.pk).desired_state == "running"
    viewer = _token_client(matrix_catalog, "viewer_predict")  # the same calls can succeed
    assert viewer.get("/serve/fraud-ext/ping").status_code == 503


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
    assert owner.get("/api/v1/deployments/?model=fraud").json()["count"] == 2
    browser = Client()
    browser.force_login(matrix_catalog.users["viewer"])
    assert b"fraud-ext" in browser.get("/deployments/").content


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
        "dep": 1,
        "dep_off": 2,
        "dep_churn": 3,
    }
    covered = {_route_of(path) for _m, path, _b, _k in MODEL_ENDPOINTS}
    covered |= {_route_of(t.format(**ids)) for _m, t, _b, _e in API_ROUTES + UI_ROUTES}
    # The MLflow-compatible API has its own matrix (its answers are in MLflow's envelope); imported
    # here because that module builds on this one.
    from tests.mlflow.test_permission_matrix import covered_routes as mlflow_covered_routes

    covered |= mlflow_covered_routes()
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
