"""Real-browser scenarios of the discovery UI (Chromium via Playwright, live server)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from models_app import services, services_governance
from models_app.models import Promotion
from tests.models_app.catalog_data import build_catalog

pytestmark = pytest.mark.django_db(transaction=True)

CARD = """# Customer churn

## What it does
Tells account managers which customers will probably **cancel next month**, so they can call them first.

## Limitations
Not for customers younger than three months.
"""


@pytest.fixture
def catalog(owner, team, outsider, other_team):
    data = build_catalog(owner=owner, team=team, other_owner=outsider, other_team=other_team)
    services.registered_model_update(actor=owner, model=data["churn"], card=CARD)
    return data


def test_business_user_finds_a_model_despite_a_typo_and_reads_it(visit, shot, viewer, catalog):
    page = visit(viewer)
    page.goto("/")
    shot(page, "01-catalog")
    page.get_by_label("Search models").fill("custmer churn")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("close matches")
    result = page.locator(".result").first
    expect(result).to_contain_text("customer-churn")
    expect(result).to_contain_text("likely to cancel")
    expect(result).to_contain_text("accuracy 0.84")
    shot(page, "02-catalog-search-typo")
    result.get_by_role("link", name="customer-churn").click()
    expect(page).to_have_url(re.compile(r"/models/customer-churn/$"))
    expect(page.get_by_role("heading", name="Model card")).to_be_visible()
    expect(page.locator(".model-card strong")).to_have_text("cancel next month")
    chart = page.get_by_role("img", name=re.compile("accuracy rose from 0.81 on version 1 to 0.84"))
    expect(chart).to_be_visible()
    expect(page.locator("#use")).to_contain_text("mlflow.pyfunc.load_model")
    shot(page, "03-model-page")
    page.get_by_role("link", name=re.compile("Compare two versions")).click()
    expect(page.get_by_role("heading", name="In short")).to_be_visible()
    shot(page, "04-compare")
    page.goto("/models/customer-churn/versions/2/")
    expect(page.get_by_role("heading", name="Checks")).to_be_visible()
    shot(page, "05-version-page")
    phone = visit(viewer, width=390, height=844)
    phone.goto("/?q=churn")
    expect(phone.locator(".result").first).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
    shot(phone, "06-catalog-phone")
    assert page.errors == [] and phone.errors == []


def test_approver_approves_a_pending_promotion_from_the_queue(visit, shot, owner, approver, catalog):
    version = catalog["churn"].versions.get(version=2)
    for name in ("loadable", "security_scan"):
        services_governance.check_report(
            actor=None, version=version, name=name, status="passed", builtin=True
        )
    promotion = services_governance.promotion_request(actor=owner, version=version, target_stage="production")
    assert promotion.state == "pending"
    page = visit(approver)
    page.goto("/promotions/")
    item = page.locator(f"#promotion-{promotion.pk}")
    expect(item).to_contain_text("customer-churn version 2")
    shot(page, "07-promotion-queue")
    item.get_by_label("Comment (optional)").fill("Looks good")
    item.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages")).to_contain_text("approved")
    expect(page.locator(f"#promotion-{promotion.pk}")).to_have_count(0)
    page.goto("/models/customer-churn/")
    expect(page.locator(".model-head .stage")).to_have_text("In production (version 2)")
    shot(page, "08-model-in-production")
    promotion.refresh_from_db()
    assert promotion.state == "applied"
    page.goto("/?stage=production")
    expect(page.locator(".result")).to_have_count(1)


def test_outsider_cannot_see_a_private_model_anywhere(visit, shot, outsider, catalog):
    page = visit(outsider)
    page.goto("/?q=fraud")
    expect(page.locator("#result-count")).to_contain_text("0 models")
    page.goto("/")
    body = page.locator("body")
    expect(body).not_to_contain_text("fraud-detector")
    expect(page.locator(".facets")).not_to_contain_text("xgboost")
    expect(page.locator(".facets")).not_to_contain_text("payments")
    risk = page.locator('.facets a[data-facet="team"]', has_text="risk")
    expect(risk.locator(".count")).to_have_text("1")  # customer-churn only, not the private one
    shot(page, "09-catalog-outsider")
    response = page.goto("/models/fraud-detector/")
    assert response.status == 404
    response = page.goto("/models/fraud-detector/versions/1/")
    assert response.status == 404


def test_a_card_with_a_script_stays_inert(visit, shot, owner, catalog):
    evil = (
        "# Hello\n\n<script>window.__pwned = 1; alert('x')</script>\n\n"
        '<img src="x" onerror="window.__pwned = 2">\n\n[click me](javascript:window.__pwned=3)\n'
    )
    services.registered_model_update(actor=owner, model=catalog["churn"], card=evil)
    page = visit(owner)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/models/customer-churn/")
    card = page.locator(".model-card")
    expect(card).to_contain_text("<script>window.__pwned = 1")  # shown as text
    assert card.locator("script, img[onerror], a[href^=javascript]").count() == 0
    page.get_by_text("click me").click()
    assert page.evaluate("window.__pwned") is None and dialogs == []
    shot(page, "10-card-inert")


def test_owner_writes_the_card_in_the_page_and_manages_webhooks(visit, shot, owner, catalog, settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    page = visit(owner)
    page.goto("/models/customer-churn/")
    page.get_by_role("link", name="Edit the card").click()
    box = page.get_by_label("Model card (Markdown)")
    box.fill("# Churn\n\nCall the **top 100** first.")
    shot(page, "11-card-editor")
    page.get_by_role("button", name="Save the card").click()
    expect(page.locator(".model-card strong")).to_have_text("top 100")
    page.goto("/webhooks/")
    page.get_by_label("Name").fill("alerts")
    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_role("button", name="Add the webhook").click()
    expect(page.get_by_role("status")).to_contain_text("shown only once")
    page.get_by_role("button", name="Send a test ping").click()
    expect(page.locator(".webhook")).to_contain_text("webhook.ping")
    shot(page, "12-webhooks")
    for path, name in (
        ("/tokens/", "13-tokens"),
        ("/lineage/exposure/", "14-exposure"),
        ("/teams/", "15-teams"),
    ):
        page.goto(path)
        shot(page, name)
    assert page.errors == []
    assert Promotion.objects.count() == 0


def test_try_it_posts_dataframe_records_with_the_csrf_token(visit, owner, rf):
    """The prediction endpoint belongs to deployments (not on this branch): Playwright answers the
    POST itself (``page.route``), which is what this test mocks; the form and its script are real."""
    import json

    from django.template.loader import render_to_string

    from models_app.signature import signature_fields
    from tests.models_app.catalog_data import SIGNATURE

    request = rf.get("/")
    request.user = owner
    include = render_to_string(
        "models_app/_try_it.html",
        {"predict_url": "/deployments/7/predict", "signature_fields": signature_fields(SIGNATURE)},
        request,
    )
    page = visit(owner)
    seen = []

    def answer(route):
        seen.append((route.request.headers, route.request.post_data))
        route.fulfill(status=200, content_type="application/json", body='{"predictions": [0.73]}')

    page.route("**/deployments/7/predict", answer)
    page.goto("/tokens/")  # any page of the site, so the script's URL and the origin are ours
    page.set_content(f"<!doctype html><html><body><main>{include}</main></body></html>")
    page.get_by_label("tenure_months").fill("14")
    page.get_by_label("plan").fill("gold")
    page.get_by_label("has_complaint").check()
    page.get_by_role("button", name="Predict").click()
    expect(page.locator(".try-it-result")).to_contain_text("0.73")
    headers, body = seen[0]
    assert json.loads(body) == {
        "dataframe_records": [{"tenure_months": 14.0, "plan": "gold", "has_complaint": True}]
    }
    assert headers["content-type"] == "application/json" and headers["x-csrftoken"]
    assert page.errors == []
